"""Grafana alert rules for threat levels and early warnings, with example routing.

Rules (Grafana-managed, query the ClickHouse data source, evaluated every minute):

* ``finsa-institution-level-high``: an institution's threat level is 4 (high) or more. One alert
  instance per institution (the query returns ``institution_id`` as a label).
* ``finsa-institution-level-rose``: an institution's level now is above its level 15 minutes ago:
  the same SQL run twice, once over a relative time range that ends 15 minutes earlier.
* ``finsa-early-warning``: an early warning was written to the ``warnings`` table in the last
  five minutes (the rule errors until that table exists).

The SQL is the panels' (:mod:`finsa.dashboards.threat`), never a copy. Contact points and the
notification policy are examples to adapt: e-mail to the sector CSIRT, a webhook for critical
alerts. :func:`rule_payload` is the body of the provisioning HTTP API
(``/api/v1/provisioning/alert-rules``); :func:`alerting_files` the file-provisioning documents.

>>> [r["uid"] for r in alert_rules("finsa", "ds")]
['finsa-institution-level-high', 'finsa-institution-level-rose', 'finsa-early-warning']
"""

from __future__ import annotations

from typing import Any

from finsa.dashboards import threat
from finsa.dashboards.grafana_sql import to_grafana

__all__ = ["RULE_GROUP", "FOLDER_UID", "INTERVAL_S", "alert_rules", "rule_payload", "contact_points",
           "notification_policy", "alerting_files", "LEVEL_SQL", "WARNINGS_SQL"]

RULE_GROUP = "finsa-threat"
FOLDER_UID = "finsa"
INTERVAL_S = 60
_LEVELS = threat.INSTITUTION_LEVELS_SQL.rsplit("SETTINGS", 1)[0].strip()
#: One row per institution: its id (the alert label) and its current level (the value).
LEVEL_SQL = to_grafana(f"SELECT institution_id, toFloat64(level) AS level FROM ({_LEVELS}) "
                       "SETTINGS join_use_nulls = 0")
#: Early warnings written in the rule's time range (needs the ``warnings`` table).
WARNINGS_SQL = to_grafana("SELECT toFloat64(count()) AS warnings FROM warnings "
                          "WHERE time_ms > {from_ms:Int64} AND time_ms <= {to_ms:Int64}")


def _query(ref: str, sql: str, datasource_uid: str, from_s: int, to_s: int) -> dict[str, Any]:
    return {"refId": ref, "relativeTimeRange": {"from": from_s, "to": to_s},
            "datasourceUid": datasource_uid,
            "model": {"refId": ref, "editorType": "sql", "format": 1, "queryType": "table",
                      "rawSql": sql, "intervalMs": 1000, "maxDataPoints": 43200,
                      "datasource": {"type": "grafana-clickhouse-datasource", "uid": datasource_uid}}}


def _expression(ref: str, model: dict[str, Any]) -> dict[str, Any]:
    return {"refId": ref, "relativeTimeRange": {"from": 0, "to": 0}, "datasourceUid": "__expr__",
            "model": {"refId": ref, "datasource": {"type": "__expr__", "uid": "__expr__"}, **model}}


def _reduce(ref: str, source: str) -> dict[str, Any]:
    return _expression(ref, {"type": "reduce", "expression": source, "reducer": "last"})


def _threshold(ref: str, source: str, above: float) -> dict[str, Any]:
    return _expression(ref, {"type": "threshold", "expression": source,
                             "conditions": [{"evaluator": {"type": "gt", "params": [above]}}]})


def _rule(uid: str, title: str, data: list[dict[str, Any]], condition: str, severity: str,
          summary: str, folder_uid: str, for_: str = "0s") -> dict[str, Any]:
    return {"uid": uid, "title": title, "condition": condition, "data": data, "for": for_,
            "noDataState": "OK", "execErrState": "Error", "isPaused": False,
            "labels": {"severity": severity, "source": "finsa"},
            "annotations": {"summary": summary, "__dashboardUid__": "finsa-sector",
                            "__panelId__": "2"},
            "folderUID": folder_uid, "ruleGroup": RULE_GROUP}


def alert_rules(folder_uid: str, datasource_uid: str) -> list[dict[str, Any]]:
    """The rules in the provisioning API's shape (without ``orgID``)."""
    window_s = threat.WINDOW_MS // 1000
    return [
        _rule("finsa-institution-level-high", "Institution threat level high",
              [_query("A", LEVEL_SQL, datasource_uid, window_s, 0), _reduce("B", "A"),
               _threshold("C", "B", 3.5)], "C", "critical",
              "{{ $labels.institution_id }} is at threat level {{ $values.B }} (4 high, 5 severe)",
              folder_uid),
        _rule("finsa-institution-level-rose", "Institution threat level rose",
              [_query("A", LEVEL_SQL, datasource_uid, window_s, 0),
               _query("B", LEVEL_SQL, datasource_uid, 2 * window_s, window_s),
               _reduce("C", "A"), _reduce("D", "B"),
               _expression("E", {"type": "math", "expression": "$C - $D"}), _threshold("F", "E", 0)],
              "F", "warning", "{{ $labels.institution_id }}'s threat level rose by {{ $values.E }} "
              "in 15 minutes", folder_uid),
        _rule("finsa-early-warning", "Early warning issued",
              [_query("A", WARNINGS_SQL, datasource_uid, 300, 0), _reduce("B", "A"),
               _threshold("C", "B", 0)], "C", "warning",
              "{{ $values.B }} early warning(s) issued in the last 5 minutes", folder_uid),
    ]


def rule_payload(rule: dict[str, Any], org_id: int = 1) -> dict[str, Any]:
    """Body for ``POST /api/v1/provisioning/alert-rules`` or ``PUT .../alert-rules/:uid``."""
    return {**rule, "orgID": org_id}


def contact_points() -> list[dict[str, Any]]:
    """Example receivers: the sector CSIRT by e-mail, an on-call webhook for critical alerts."""
    return [
        {"uid": "finsa-csirt-email", "name": "finsa-csirt", "type": "email",
         "settings": {"addresses": "csirt@regulator.example", "singleEmail": True},
         "disableResolveMessage": False},
        {"uid": "finsa-oncall-webhook", "name": "finsa-oncall", "type": "webhook",
         "settings": {"url": "https://oncall.regulator.example/hooks/finsa", "httpMethod": "POST"},
         "disableResolveMessage": False},
    ]


def notification_policy() -> dict[str, Any]:
    """Policy tree: everything to the CSIRT, critical finsa alerts also to on-call."""
    return {"receiver": "finsa-csirt", "group_by": ["grafana_folder", "alertname", "institution_id"],
            "group_wait": "30s", "group_interval": "5m", "repeat_interval": "4h",
            "routes": [{"receiver": "finsa-oncall", "continue": True,
                        "object_matchers": [["source", "=", "finsa"], ["severity", "=", "critical"]]}]}


def alerting_files(folder_title: str, datasource_uid: str, org_id: int = 1) -> dict[str, dict[str, Any]]:
    """File-provisioning documents (``provisioning/alerting/*.yaml``) by file name."""
    rules = []
    for rule in alert_rules(FOLDER_UID, datasource_uid):
        item = {k: v for k, v in rule.items() if k not in ("folderUID", "ruleGroup")}
        rules.append(item)
    receivers = [{"orgId": org_id, "name": cp["name"], "receivers": [
        {"uid": cp["uid"], "type": cp["type"], "settings": cp["settings"],
         "disableResolveMessage": cp["disableResolveMessage"]}]} for cp in contact_points()]
    return {
        "finsa-rules.yaml": {"apiVersion": 1, "groups": [
            {"orgId": org_id, "name": RULE_GROUP, "folder": folder_title, "interval": f"{INTERVAL_S}s",
             "rules": rules}]},
        "finsa-contact-points.yaml": {"apiVersion": 1, "contactPoints": receivers},
        "finsa-policies.yaml": {"apiVersion": 1, "policies": [{"orgId": org_id, **notification_policy()}]},
    }
