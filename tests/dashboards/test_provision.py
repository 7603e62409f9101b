"""Provisioning: the exported files (and the copy in deploy/grafana) and push against a fake
Grafana that answers the HTTP API endpoints push calls, with the documented shapes."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest
from aiohttp import web

from finsa.dashboards import grafana, grafana_alerting, provision
from finsa.dashboards.dashboards_command import add_arguments, main

REPO = Path(__file__).resolve().parents[2]
TOKEN = "glsa_test_token"


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_export_layout_parses_and_matches_the_committed_copy(tmp_path):
    yaml = pytest.importorskip("yaml")
    written = provision.export(tmp_path)
    names = {str(p.relative_to(tmp_path)) for p in written}
    assert {"datasources/finsa-clickhouse.yaml", "dashboards/finsa.yaml", "dashboards/finsa-sector.json",
            "alerting/finsa-rules.yaml", "alerting/finsa-contact-points.yaml",
            "alerting/finsa-policies.yaml"} <= names
    sources = yaml.safe_load((tmp_path / "datasources/finsa-clickhouse.yaml").read_text())
    assert sources["datasources"][0]["type"] == "grafana-clickhouse-datasource"
    assert sources["datasources"][0]["jsonData"]["port"] == 8123
    rules = yaml.safe_load((tmp_path / "alerting/finsa-rules.yaml").read_text())
    assert rules["groups"][0]["rules"] == [
        {k: v for k, v in r.items() if k not in ("folderUID", "ruleGroup")}
        for r in grafana_alerting.alert_rules("finsa", grafana.CLICKHOUSE_UID)]
    policy = yaml.safe_load((tmp_path / "alerting/finsa-policies.yaml").read_text())["policies"][0]
    assert policy["routes"][0]["object_matchers"][1] == ["severity", "=", "critical"]
    board = json.loads((tmp_path / "dashboards/finsa-sector.json").read_text())
    assert board == grafana.build_dashboards()["finsa-sector"]
    committed = REPO / "deploy" / "grafana"
    assert _tree(committed) == _tree(tmp_path), "run: finsa dashboards export deploy/grafana"


class FakeGrafana:
    """The Grafana HTTP API endpoints push uses, keeping objects in dicts."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, object]] = []
        self.datasources: dict[str, dict] = {}
        self.folders: dict[str, dict] = {}
        self.dashboards: dict[str, dict] = {}
        self.rules: dict[str, dict] = {}
        self.auth_ok = True

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        r = app.router
        r.add_get("/api/datasources/uid/{uid}", self.get_datasource)
        r.add_post("/api/datasources", self.post_datasource)
        r.add_put("/api/datasources/uid/{uid}", self.put_datasource)
        r.add_get("/api/folders/{uid}", self.get_folder)
        r.add_post("/api/folders", self.post_folder)
        r.add_put("/api/folders/{uid}", self.put_folder)
        r.add_get("/api/dashboards/uid/{uid}", self.get_dashboard)
        r.add_post("/api/dashboards/db", self.post_dashboard)
        r.add_get("/api/v1/provisioning/alert-rules/{uid}", self.get_rule)
        r.add_post("/api/v1/provisioning/alert-rules", self.post_rule)
        r.add_put("/api/v1/provisioning/alert-rules/{uid}", self.put_rule)
        return app

    @web.middleware
    async def _record(self, request, handler):
        body = await request.json() if request.can_read_body else None
        self.calls.append((request.method, request.path, body))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.auth_ok = False
            return web.json_response({"message": "Unauthorized"}, status=401)
        return await handler(request)

    @staticmethod
    def _missing(what: str) -> web.Response:
        return web.json_response({"message": f"{what} not found"}, status=404)

    async def get_datasource(self, request):
        ds = self.datasources.get(request.match_info["uid"])
        return web.json_response(ds) if ds else self._missing("Data source")

    async def post_datasource(self, request):
        body = await request.json()
        if any(d["name"] == body["name"] for d in self.datasources.values()):
            return web.json_response({"message": "data source with the same name already exists"}, status=409)
        ds = {**body, "id": len(self.datasources) + 1}
        self.datasources[body["uid"]] = ds
        return web.json_response({"datasource": ds, "id": ds["id"], "message": "Datasource added", "name": ds["name"]})

    async def put_datasource(self, request):
        uid = request.match_info["uid"]
        if uid not in self.datasources:
            return self._missing("Data source")
        ds = {**await request.json(), "id": self.datasources[uid]["id"]}
        self.datasources[uid] = ds
        return web.json_response({"datasource": ds, "id": ds["id"], "message": "Datasource updated", "name": ds["name"]})

    async def get_folder(self, request):
        folder = self.folders.get(request.match_info["uid"])
        return web.json_response(folder) if folder else self._missing("Folder")

    async def post_folder(self, request):
        body = await request.json()
        if body.get("uid") in self.folders:
            return web.json_response({"message": "a folder with the same uid already exists"}, status=409)
        folder = {"id": len(self.folders) + 1, "uid": body["uid"], "title": body["title"],
                  "url": f"/dashboards/f/{body['uid']}/", "version": 1}
        self.folders[body["uid"]] = folder
        return web.json_response(folder)

    async def put_folder(self, request):
        folder = self.folders[request.match_info["uid"]]
        folder.update(title=(await request.json())["title"], version=folder["version"] + 1)
        return web.json_response(folder)

    async def get_dashboard(self, request):
        entry = self.dashboards.get(request.match_info["uid"])
        return web.json_response(entry) if entry else self._missing("Dashboard")

    async def post_dashboard(self, request):
        body = await request.json()
        board, uid = body["dashboard"], body["dashboard"]["uid"]
        if uid in self.dashboards and not body.get("overwrite"):
            return web.json_response({"message": "The dashboard has been changed by someone else",
                                      "status": "version-mismatch"}, status=412)
        version = self.dashboards[uid]["meta"]["version"] + 1 if uid in self.dashboards else 1
        number = self.dashboards[uid]["dashboard"]["id"] if uid in self.dashboards else len(self.dashboards) + 1
        self.dashboards[uid] = {"dashboard": {**board, "id": number, "version": version},
                                "meta": {"folderUid": body.get("folderUid"), "version": version}}
        return web.json_response({"id": number, "uid": uid, "url": f"/d/{uid}/{uid}", "status": "success",
                                  "version": version, "slug": uid})

    async def get_rule(self, request):
        rule = self.rules.get(request.match_info["uid"])
        return web.json_response(rule) if rule else web.Response(status=404)

    async def post_rule(self, request):
        body = await request.json()
        if body["uid"] in self.rules:
            return web.json_response({"message": "rule with the same uid already exists"}, status=409)
        self.rules[body["uid"]] = {**body, "id": len(self.rules) + 1, "provenance": "api"}
        return web.json_response(self.rules[body["uid"]], status=201)

    async def put_rule(self, request):
        uid = request.match_info["uid"]
        if uid not in self.rules:
            return self._missing("Rule")
        self.rules[uid] = {**await request.json(), "id": self.rules[uid]["id"], "provenance": "api"}
        return web.json_response(self.rules[uid])


@pytest.fixture
def fake_grafana():
    fake = FakeGrafana()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict = {}

    async def start():
        runner = web.AppRunner(fake.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        state["runner"], state["port"] = runner, site._server.sockets[0].getsockname()[1]

    def run():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    fake.url = f"http://127.0.0.1:{state['port']}"
    yield fake
    asyncio.run_coroutine_threadsafe(state["runner"].cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def _push(fake) -> int:
    import argparse
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["push", "--grafana-url", fake.url, "--token", TOKEN,
                              "--clickhouse-url", "https://ch.example:8443"])
    return main(args)


def test_push_creates_then_updates_without_duplicates(fake_grafana, capsys):
    assert _push(fake_grafana) == 0
    assert fake_grafana.auth_ok
    first = capsys.readouterr().out
    assert "created dashboard:finsa-sector" in first and "updated" not in first
    posts = [(m, p) for m, p, _ in fake_grafana.calls if m == "POST"]
    assert posts.count(("POST", "/api/datasources")) == 2
    assert posts.count(("POST", "/api/folders")) == 1
    assert posts.count(("POST", "/api/dashboards/db")) == len(grafana.DASHBOARDS)
    assert posts.count(("POST", "/api/v1/provisioning/alert-rules")) == 3
    ch = fake_grafana.datasources[grafana.CLICKHOUSE_UID]
    assert ch["type"] == "grafana-clickhouse-datasource"
    assert (ch["jsonData"]["host"], ch["jsonData"]["port"], ch["jsonData"]["secure"]) == ("ch.example", 8443, True)
    dash_body = next(b for m, p, b in fake_grafana.calls if p == "/api/dashboards/db")
    assert dash_body["overwrite"] is True and dash_body["folderUid"] == "finsa"
    assert dash_body["dashboard"]["id"] is None
    rule = fake_grafana.rules["finsa-institution-level-high"]
    assert (rule["folderUID"], rule["ruleGroup"], rule["orgID"], rule["condition"]) == ("finsa", "finsa-threat", 1, "C")

    fake_grafana.calls.clear()
    assert _push(fake_grafana) == 0
    second = capsys.readouterr().out
    assert "created" not in second and "updated dashboard:finsa-sector" in second
    methods = {(m, p) for m, p, _ in fake_grafana.calls}
    assert ("POST", "/api/datasources") not in methods and ("POST", "/api/folders") not in methods
    assert ("POST", "/api/v1/provisioning/alert-rules") not in methods
    assert ("PUT", f"/api/datasources/uid/{grafana.CLICKHOUSE_UID}") in methods
    assert ("PUT", "/api/v1/provisioning/alert-rules/finsa-early-warning") in methods
    assert len(fake_grafana.datasources) == 2 and len(fake_grafana.folders) == 1
    assert len(fake_grafana.dashboards) == len(grafana.DASHBOARDS) and len(fake_grafana.rules) == 3
    assert fake_grafana.dashboards["finsa-sector"]["meta"]["version"] == 2


def test_push_reports_a_refusal(fake_grafana, capsys):
    import argparse
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["push", "--grafana-url", fake_grafana.url, "--token", "wrong"])
    assert main(args) == 1
    assert "Grafana refused" in capsys.readouterr().err
