"""Grafana's ClickHouse data source against the embedded store: the requests its HTTP protocol mode
sends (clickhouse-go: POST, Basic auth, ``database``, ``default_format=Native``, settings and
``query_id`` in the URL, the SQL in the body, ``SELECT timeZone()`` first) with every query of the
provisioned dashboards (deploy/grafana), through the per-tenant guard of TenantHTTPEndpoint."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from finsa.dashboards.grafana_sql import expand
from finsa.storage.tenant_http import TenantHTTPEndpoint, tenant_credentials
from tests.dashboards.webview_support import load_picture

HOUR_MS = 3_600_000
DASHBOARDS = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"
AGENT = "clickhouse-go/2.30.0 (database/sql; lv:go/1.22.5; os:linux) grafana-datasource/4.5.0"


def _targets() -> list[tuple[str, str]]:
    out = []

    def walk(panels):
        for panel in panels:
            out.extend((panel.get("title", ""), t["rawSql"]) for t in panel.get("targets", []) if t.get("rawSql"))
            walk(panel.get("panels", []))

    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        walk(board["panels"])
        out.extend((f"variable {v['name']}", v["query"]) for v in board.get("templating", {}).get("list", [])
                   if isinstance(v.get("query"), str) and v.get("type") == "query")
    return out


@pytest.fixture(scope="module")
def endpoint(store, sector, tmp_path_factory):
    load_picture(store, sector.now_ms)
    users = tenant_credentials(tmp_path_factory.mktemp("creds"), ["bank-a", "pay-d"])
    served = TenantHTTPEndpoint(store, users).start()
    yield served, users
    served.stop()


def _grafana(endpoint, user: str, sql: str, fmt: str = "Native") -> tuple[int, bytes, dict]:
    served, users = endpoint
    params = f"database=finsa&default_format={fmt}&max_execution_time=60&allow_experimental_object_type=1" \
             f"&query_id={uuid.uuid4()}"
    token = base64.b64encode(f"{user}:{users[user][1]}".encode()).decode()
    request = urllib.request.Request(f"{served.url}/?{params}", data=sql.encode(), method="POST",
                                     headers={"Authorization": f"Basic {token}", "User-Agent": AGENT})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_the_plugin_handshake_and_wrong_passwords(endpoint):
    status, body, headers = _grafana(endpoint, "finsa_regulator", "SELECT timeZone()")
    assert status == 200 and headers["X-ClickHouse-Format"] == "Native" and b"UTC" in body
    served, users = endpoint
    request = urllib.request.Request(f"{served.url}/?default_format=Native", data=b"SELECT 1", method="POST",
                                     headers={"Authorization": "Basic " + base64.b64encode(b"finsa_bank-a:wrong").decode()})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 500 and refused.value.headers["X-ClickHouse-Exception-Code"] == "516"


def test_every_provisioned_query_runs_for_the_regulator(endpoint, sector):
    targets = _targets()
    assert len(targets) > 10
    for title, raw in targets:
        sql = expand(raw, sector.now_ms - 6 * HOUR_MS, sector.now_ms, {"institution": None, "entity": sector.attacker})
        status, body, _ = _grafana(endpoint, "finsa_regulator", sql)
        assert status == 200, (title, body[:300])


def test_an_institution_reads_attack_sources_by_country_from_the_k_anonymous_figures(endpoint, sector, store):
    # the panel merges the roll-up's sketch states; the tenant's view of it holds final numbers
    (raw,) = [sql for title, sql in _targets() if title == "Attack sources by country"]
    sql = expand(raw, sector.now_ms - 6 * HOUR_MS, sector.now_ms, {})
    status, body, _ = _grafana(endpoint, "finsa_pay-d", sql, "JSONCompact")
    assert status == 200, body[:300]
    rows = json.loads(body)["data"]
    regulator = json.loads(_grafana(endpoint, "finsa_regulator", sql, "JSONCompact")[1])["data"]
    assert rows and regulator
    assert all(int(row[2]) >= 3 for row in rows), rows  # every country row counts k institutions or more
    assert sum(int(r[1]) for r in rows) <= sum(int(r[1]) for r in regulator)


def test_an_institution_gets_its_own_rows_or_a_refusal_never_others(endpoint, sector, store):
    answered = 0
    for title, raw in _targets():
        sql = expand(raw, sector.now_ms - 6 * HOUR_MS, sector.now_ms, {"institution": None, "entity": sector.attacker})
        status, body, headers = _grafana(endpoint, "finsa_pay-d", sql, "JSONCompact")
        if status != 200:  # refused by the guard (164) or a table not in the tenant's views (60, 47)
            assert headers["X-ClickHouse-Exception-Code"] in ("164", "60", "47", "497"), (title, body[:300])
            continue
        answered += 1
        result = json.loads(body)
        names = [m["name"] for m in result["meta"]]
        if "institution_id" in names:  # the map lists every institution: the others without figures
            k = names.index("institution_id")
            figures = [names.index(c) for c in ("alerts", "detectors", "max_severity") if c in names]
            for row in result["data"]:
                if row[k] != "pay-d":
                    assert figures and all(row[i] in (0, "0", None, "") for i in figures), (title, row)
        for marker in ("Alpine Bank: internal finding", "10.1.0.", "Compromised host"):  # ids and names are shared
            assert marker not in body.decode(), (title, marker)
    assert answered >= 5
    for statement in ("INSERT INTO alerts (alert_id) VALUES ('x')", "SELECT * FROM finsa.alerts",
                      "SELECT * FROM file('/etc/passwd')", "DROP TABLE alerts"):
        status, _, headers = _grafana(endpoint, "finsa_pay-d", statement)
        assert status == 500 and headers["X-ClickHouse-Exception-Code"] in ("164", "60"), statement
    audited = store.query("SELECT count(), countIf(outcome = 'refused') FROM audit_log WHERE principal = 'pay-d' "
                          "AND action = 'query'").rows[0]
    assert audited[0] >= answered + 4 and audited[1] >= 4
