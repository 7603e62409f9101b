"""Put finsa's dashboards, data sources and alerting into Grafana: as files or over its HTTP API.

:func:`export` writes Grafana's file provisioning layout under a directory::

    datasources/finsa-clickhouse.yaml    the ClickHouse and Prometheus data sources
    dashboards/finsa.yaml                the dashboard provider (reads the JSON files next to it)
    dashboards/finsa-*.json              one file per dashboard
    alerting/finsa-*.yaml                alert rules, contact points, notification policy

:func:`push` creates or updates the same objects through ``grafana-client``, idempotently: the
data source by uid (``GET /api/datasources/uid/:uid``, then ``PUT`` or ``POST /api/datasources``),
the folder by uid, dashboards with ``overwrite`` (``POST /api/dashboards/db``), each alert rule
by uid (``GET``, then ``PUT`` or ``POST /api/v1/provisioning/alert-rules``). Pushing twice
updates, never duplicates. Contact points and the policy tree are examples and stay in the files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

from finsa.dashboards import grafana, grafana_alerting, grafana_yaml

__all__ = ["FOLDER_TITLE", "PushReport", "datasources", "export", "push"]

FOLDER_TITLE = "finsa"
DEFAULT_CLICKHOUSE_URL = "http://clickhouse:8123"
DEFAULT_PROMETHEUS_URL = "http://prometheus:9090"


def _clickhouse_jsondata(url: str, database: str) -> dict[str, Any]:
    from urllib.parse import urlparse
    parsed = urlparse(url)
    secure = parsed.scheme == "https"
    return {"host": parsed.hostname or "localhost", "port": parsed.port or (8443 if secure else 8123),
            "protocol": "http", "secure": secure, "username": parsed.username or "default",
            "defaultDatabase": database}


def datasources(clickhouse_url: str = DEFAULT_CLICKHOUSE_URL, database: str = "finsa",
                prometheus_url: str = DEFAULT_PROMETHEUS_URL) -> list[dict[str, Any]]:
    """The data sources as the HTTP API takes them (file provisioning adds orgId/editable)."""
    return [
        {"uid": grafana.CLICKHOUSE_UID, "name": "finsa ClickHouse", "type": "grafana-clickhouse-datasource",
         "access": "proxy", "isDefault": True, "jsonData": _clickhouse_jsondata(clickhouse_url, database)},
        {"uid": grafana.PROMETHEUS_UID, "name": "finsa Prometheus", "type": "prometheus",
         "access": "proxy", "url": prometheus_url, "isDefault": False, "jsonData": {"timeInterval": "15s"}},
    ]


def export(out_dir: str | Path, clickhouse_url: str = DEFAULT_CLICKHOUSE_URL, database: str = "finsa",
           prometheus_url: str = DEFAULT_PROMETHEUS_URL) -> list[Path]:
    """Write the provisioning files under ``out_dir``; the paths written, sorted."""
    root = Path(out_dir)
    written: list[Path] = []

    def write(relative: str, text: str) -> None:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)

    sources = [{**ds, "orgId": 1, "editable": False} for ds in datasources(clickhouse_url, database, prometheus_url)]
    write("datasources/finsa-clickhouse.yaml", grafana_yaml.dump({"apiVersion": 1, "datasources": sources}))
    write("dashboards/finsa.yaml", grafana_yaml.dump({"apiVersion": 1, "providers": [
        {"name": "finsa", "orgId": 1, "folder": FOLDER_TITLE, "folderUid": grafana_alerting.FOLDER_UID,
         "type": "file", "disableDeletion": False, "allowUiUpdates": False, "updateIntervalSeconds": 60,
         "options": {"path": "/etc/grafana/provisioning/dashboards", "foldersFromFilesStructure": False}}]}))
    for uid, board in grafana.build_dashboards().items():
        write(f"dashboards/{uid}.json", json.dumps(board, indent=2, sort_keys=True) + "\n")
    for name, document in grafana_alerting.alerting_files(FOLDER_TITLE, grafana.CLICKHOUSE_UID).items():
        write(f"alerting/{name}", grafana_yaml.dump(document))
    return sorted(written)


@dataclass
class PushReport:
    """What a push did: ``created`` and ``updated`` list "kind:uid" strings."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)


def _exists(get: Any, *args: Any) -> bool:
    from grafana_client.client import GrafanaClientError
    try:
        get(*args)
    except GrafanaClientError as exc:
        if getattr(exc, "status_code", None) == 404:
            return False
        raise
    return True


def push(api: Any, clickhouse_url: str = DEFAULT_CLICKHOUSE_URL, database: str = "finsa",
         prometheus_url: str = DEFAULT_PROMETHEUS_URL) -> PushReport:
    """Create or update everything in the Grafana behind ``api`` (a ``grafana_client.GrafanaApi``)."""
    report = PushReport()

    def put(kind: str, uid: str, get: Callable[[str], Any], update: Callable[[], Any],
            create: Callable[[], Any]) -> None:
        """Update the object ``uid`` where Grafana has it, else create it; report which."""
        existed = _exists(get, uid)
        (update if existed else create)()
        (report.updated if existed else report.created).append(f"{kind}:{uid}")

    for ds in datasources(clickhouse_url, database, prometheus_url):
        put("datasource", ds["uid"], api.datasource.get_datasource_by_uid,
            partial(api.datasource.update_datasource_by_uid, ds["uid"], ds), partial(api.datasource.create_datasource, ds))
    folder_uid = grafana_alerting.FOLDER_UID
    put("folder", folder_uid, api.folder.get_folder,
        partial(api.folder.update_folder, folder_uid, title=FOLDER_TITLE, overwrite=True),
        partial(api.folder.create_folder, FOLDER_TITLE, uid=folder_uid))
    for uid, board in grafana.build_dashboards().items():
        overwrite = partial(api.dashboard.update_dashboard, {"dashboard": {**board, "id": None}, "folderUid": folder_uid,
                                                             "overwrite": True, "message": "finsa dashboards push"})
        put("dashboard", uid, api.dashboard.get_dashboard, overwrite, overwrite)
    for rule in grafana_alerting.alert_rules(folder_uid, grafana.CLICKHOUSE_UID):
        body = grafana_alerting.rule_payload(rule)
        put("alert-rule", rule["uid"], api.alertingprovisioning.get_alertrule,
            partial(api.alertingprovisioning.update_alertrule, rule["uid"], body),
            partial(api.alertingprovisioning.create_alertrule, body))
    return report
