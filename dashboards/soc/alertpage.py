"""Everything about one alert for one user: evidence, flows, the entity's activity, enrichment.

:func:`alert_detail` answers ``GET /api/alerts/{alert_id}``. Every read goes through the
user's tenant view (:class:`finsa.storage.tenant.TenantView`: an institution's analyst reaches
its own alerts and flows only, and an alert of another institution is "not found"; each read is
audited). The flows behind an alert are found again from the stored alert itself: the flow ids
its evidence cites (at its institution, in its evidence window) and every flow of its entity in
that window, as a flow-search filter (:mod:`finsa.dashboards.soc.flowsearch`) the page links to.

>>> entity_filter("203.0.113.9")
'src_ip = 203.0.113.9 or dst_ip = 203.0.113.9'
>>> entity_filter("203.0.113.9:443"), entity_filter("bank-a")
('src_ip = 203.0.113.9 or dst_ip = 203.0.113.9', '')
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any, Callable

from finsa.dashboards.soc.flowsearch import FlowQuery, search_sql
from finsa.wire import ALERT

__all__ = ["alert_detail", "entity_filter", "MARGIN_MS", "ACTIVITY_MS"]

#: Flows this long before the evidence window and after the alert still count as "behind" it.
MARGIN_MS = 60_000
#: The entity's other alerts and campaigns are looked up this far either side of the alert.
ACTIVITY_MS = 24 * 3600 * 1000
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ALERT_COLUMNS = ", ".join(ALERT.names)

Query = Callable[[str, dict[str, Any]], Any]  # (sql, parameters) -> QueryResult


def valid_alert_id(alert_id: str) -> bool:
    return bool(_ID.match(alert_id))


def _address(entity: str) -> str | None:
    text = entity.strip()
    if text.count(":") == 1 or (text.startswith("[") and "]:" in text):  # address:port
        text = text.rsplit(":", 1)[0].strip("[]")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def entity_filter(entity: str) -> str:
    """The flow-search filter for an entity's flows ('' when the entity is not an address)."""
    address = _address(entity)
    return f"src_ip = {address} or dst_ip = {address}" if address else ""


def _rows(result: Any) -> list[dict[str, Any]]:
    return [dict(zip(result.columns, row)) for row in result.rows]


def alert_detail(alert_id: str, query: Query, enrich: Callable[[str], dict[str, Any]] | None = None,
                 flow_limit: int = 200) -> dict[str, Any] | None:
    """The alert page's data (None when ``query`` cannot see the alert)."""
    found = _rows(query(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE alert_id = {{id:String}} "
                        "ORDER BY time_ms DESC LIMIT 1", {"id": alert_id}))
    if not found:
        return None
    alert = found[0]
    try:
        evidence = json.loads(alert["evidence"] or "{}")
    except ValueError:
        evidence = {"unparsed": alert["evidence"]}
    flow_ids = [int(i) for i in evidence.get("flow_ids", []) if isinstance(i, int) and i >= 0][:100]
    window = {"from_ms": int(alert["first_seen_ms"]) - MARGIN_MS, "to_ms": int(alert["time_ms"]) + MARGIN_MS}
    flows_filter = entity_filter(alert["entity"])
    cited = _rows(query(
        "SELECT flow_id, first_seen_ms, last_seen_ms, sensor_id, protocol, src_ip, src_port, dst_ip, dst_port, "
        "src2dst_packets, src2dst_bytes, dst2src_packets, dst2src_bytes FROM flows "
        "WHERE institution_id = {inst:String} AND flow_id IN {ids:Array(UInt64)} "
        "AND first_seen >= fromUnixTimestamp64Milli({from_ms:Int64}, 'UTC') "
        "AND first_seen <= fromUnixTimestamp64Milli({to_ms:Int64}, 'UTC') ORDER BY first_seen_ms LIMIT 100",
        {"inst": alert["institution_id"], "ids": flow_ids, **window})) if flow_ids else []
    entity_flows: list[dict[str, Any]] = []
    if flows_filter:
        inst_filter = f"institution_id = '{alert['institution_id']}' and ({flows_filter})" \
            if re.match(r"^[a-z0-9_-]+$", alert["institution_id"]) else flows_filter
        flows_filter = inst_filter
        rows_sql, _, params = search_sql(FlowQuery(flows_filter, window["from_ms"], window["to_ms"], flow_limit))
        entity_flows = _rows(query(rows_sql, params))
    around = {"e": alert["entity"], "from_ms": int(alert["time_ms"]) - ACTIVITY_MS,
              "to_ms": int(alert["time_ms"]) + ACTIVITY_MS}
    others = _rows(query(
        "SELECT alert_id, time_ms, institution_id, detector, technique, severity, target FROM alerts "
        "WHERE entity = {e:String} AND time_ms >= {from_ms:Int64} AND time_ms <= {to_ms:Int64} "
        "ORDER BY time_ms DESC LIMIT 1 BY alert_id LIMIT 100", around))
    campaigns = _rows(query(
        "SELECT campaign_id, title, kind, severity, status, first_seen_ms, last_seen_ms, alerts FROM campaigns "
        "WHERE has(JSONExtract(entities, 'Array(String)'), {e:String}) "
        "ORDER BY last_seen_ms DESC LIMIT 1 BY campaign_id LIMIT 20", around))
    warnings = _rows(query(
        "SELECT warning_id, time_ms, severity, title, status FROM warnings "
        "WHERE has(JSONExtract(indicators, 'Array(String)'), {e:String}) "
        "ORDER BY time_ms DESC LIMIT 1 BY warning_id LIMIT 20", around))
    address = _address(alert["entity"])
    enrichment: dict[str, Any] = {"address": address or ""}
    if address:
        ranges = _rows(query("SELECT network, country, asn, as_name FROM ip_enrichment "
                             "WHERE isIPAddressInRange({a:String}, network) LIMIT 1", {"a": address}))
        enrichment.update(ranges[0] if ranges else {})
        if enrich is not None and not enrichment.get("country"):
            enrichment.update({k: v for k, v in enrich(address).items() if v})
    intel = [a for a in others if a["detector"] == "intel"]
    return {"alert": {**alert, "evidence": evidence}, "window": window,
            "flows": {"filter": flows_filter, **window, "cited": cited, "rows": entity_flows},
            "entity": {"alerts": others, "campaigns": campaigns, "warnings": warnings},
            "enrichment": {**enrichment, "intel_alerts": intel, "warnings_naming_it": len(warnings)}}
