"""The sector picture's updates as wire batches (warnings, campaigns, levels, emergencies).

:class:`~finsa.sector.picture.SectorUpdate` carries rich Python objects; what is published on the
topics and stored is the flat wire records of :mod:`finsa.wire`. This module is the one place that
maps the one onto the other. Batch ids are a hash of the rows, so re-publishing the same update
after a restart is dropped by storage as a repeat.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from typing import Any

from finsa import wire


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _batch(rtype: wire.RecordType, rows: list[dict[str, Any]]) -> wire.RecordBatch | None:
    if not rows:
        return None
    columns = {f.name: [r[f.name] for r in rows] for f in rtype.fields}
    digest = hashlib.blake2b(_json(rows).encode() + rtype.name.encode(), digest_size=16).digest()
    return rtype.make_batch(columns, batch_id=digest)


_PRIVATE = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))


def _internal(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in _PRIVATE)


def campaign_row(c: dict[str, Any]) -> dict[str, Any]:
    """A CAMPAIGN record from ``Campaign.row()``."""
    order = [inst for inst, _ in c["institutions"]]
    ind = c.get("indicators", {})
    addresses = sorted(ind.get("addresses", []), key=lambda a: (_internal(a), a))  # attackers first
    linked_by = next((name for name in ("addresses", "prefixes", "asns", "domains", "fingerprints", "intel")
                      if ind.get(name)), "technique")
    techniques = sorted(c.get("techniques", {}))
    source = (addresses or ind.get("prefixes") or ind.get("domains") or ["several sources"])[0]
    subsectors = [s for s, _ in c.get("subsectors", [])]
    return {
        "campaign_id": c["campaign_id"], "first_seen_ms": int(c["first_seen_ms"]),
        "last_seen_ms": int(c["last_seen_ms"]),
        "title": f"{', '.join(techniques) or 'activity'} from {source} across {len(order)} institutions",
        "kind": f"shared {linked_by}", "severity": int(c["max_severity"]),
        "score": float(c["institution_count"] * c["max_severity"] + min(c["alert_count"], 100) / 10),
        "status": "active", "institutions": _json(order), "institutions_hit": int(c["institution_count"]),
        "entities": _json(addresses), "techniques": _json(techniques), "alerts": int(c["alert_count"]),
        "summary": _json({"subsectors": subsectors, "spread": c.get("spread", []), "indicators": ind,
                          "merged_from": c.get("merged_from", [])}),
    }


def warning_row(w: dict[str, Any]) -> dict[str, Any]:
    """A WARNING record from ``EarlyWarning.row()``."""
    evidence = json.loads(w["evidence"]) if w.get("evidence") else {}
    indicators = json.loads(w["indicators"]) if w.get("indicators") else []
    scope_kind = "institution" if w["institution_id"] else ("subsector" if w["subsector"] else "sector")
    techniques = evidence.get("techniques", [])
    if isinstance(techniques, dict):
        techniques = sorted(techniques)
    first = f": block {indicators[0]}" if indicators else ""
    return {
        "warning_id": w["warning_id"], "time_ms": int(w["time_ms"]),
        "campaign_id": str(evidence.get("campaign_id", "")), "scope_kind": scope_kind,
        "scope_id": w["institution_id"] or w["subsector"], "severity": int(w["severity"]),
        "title": f"{w['kind'].replace('_', ' ')}{' in ' + w['subsector'] if w['subsector'] else ''}{first}",
        "body": w["why"], "indicators": _json(indicators), "techniques": _json(list(techniques)),
        "status": "issued",
    }


def level_row(r: dict[str, Any]) -> dict[str, Any]:
    """A LEVEL record from ``LevelRow.row()`` (the sector's own row has scope id '')."""
    scope = r["scope"]
    return {"time_ms": int(r["time_ms"]), "scope_kind": scope, "scope_id": "" if scope == "sector" else r["key"],
            "level": int(r["level"]), "score": float(r["score"]), "contributions": r["contributions"]}


def update_batches(rows: dict[str, list[dict[str, Any]]]) -> dict[str, wire.RecordBatch]:
    """``SectorUpdate.rows()`` as {record name: batch}, leaving out what is empty."""
    made = {
        "campaign": _batch(wire.CAMPAIGN, [campaign_row(c) for c in rows.get("campaigns", [])]),
        "warning": _batch(wire.WARNING, [warning_row(w) for w in rows.get("warnings", [])]),
        "level": _batch(wire.LEVEL, [level_row(r) for r in rows.get("levels", [])]),
        "emergency": _batch(wire.EMERGENCY, rows.get("emergencies", [])),
    }
    return {name: batch for name, batch in made.items() if batch is not None}
