"""Alerts forwarded from an institution's own IDS: Suricata EVE ``alert`` events, Zeek notices.

These are not derived from flows: :func:`from_suricata_eve` and :func:`from_zeek_notice` map one
event (a parsed JSON line) to one ALERT row, or ``None`` for an event that is not an alert or is
malformed (counted in ``finsa_detector_forwarded_rejected_total``). The alert id hashes the
sensor's own event identity (Suricata: flow id, signature id, timestamp; Zeek: uid, note,
timestamp), so a re-forwarded event repeats its id.

Mapping: Suricata severity (priority) 1, 2, 3 -> finsa 5, 4, 3; the technique is the rule's
``metadata.mitre_technique_id`` when it has one, else ``"forwarded"``. Zeek notices map by their
``note`` (``Scan::Port_Scan`` -> T1046, ``SSH::Password_Guessing`` -> T1110, ...), severity 3.
entity = the source address (``src_ip``), target = ``destination:port``.

:class:`ForwardedDetector` is the registry-side stand-in: it emits nothing on flows.

>>> row = from_suricata_eve({"timestamp": "2025-06-01T10:00:00.250000+0000", "event_type": "alert",
...     "src_ip": "203.0.113.9", "src_port": 4444, "dest_ip": "10.1.0.80", "dest_port": 80,
...     "flow_id": 77, "alert": {"signature_id": 2024897, "signature": "ET EXPLOIT x",
...     "severity": 1, "metadata": {"mitre_technique_id": ["T1190"]}}}, "bank-a")
>>> row["technique"], row["severity"], row["target"], row["time_ms"]
('T1190', 5, '10.1.0.80:80', 1748772000250)
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime
from typing import Any, Mapping

from finsa.detectors.base import Detector
from finsa.metrics import REGISTRY
from finsa.wire import ALERT, RecordBatch

__all__ = ["from_suricata_eve", "from_zeek_notice", "ForwardedDetector", "ZEEK_TECHNIQUES"]

REJECTED = REGISTRY.counter("finsa_detector_forwarded_rejected_total",
                            "Forwarded IDS events that were not alerts or could not be read", ["source"])

#: Zeek notice name -> ATT&CK technique.
ZEEK_TECHNIQUES = {
    "Scan::Port_Scan": "T1046", "Scan::Address_Scan": "T1046", "SSH::Password_Guessing": "T1110",
    "FTP::Bruteforcing": "T1110", "HTTP::SQL_Injection_Attacker": "T1190",
    "HTTP::SQL_Injection_Victim": "T1190", "SSL::Invalid_Server_Cert": "T1573",
    "DNS::External_Name": "T1071.004", "Signatures::Sensitive_Signature": "forwarded",
}
_SURICATA_SEVERITY = {1: 5, 2: 4, 3: 3}


def _target(address: str, port: Any) -> str:
    if not address:
        return ""
    try:
        port = int(port)
    except (TypeError, ValueError):
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _row(detector: str, key: str, time_ms: int, institution_id: str, src: str, target: str, technique: str,
         severity: int, features: Mapping[str, Any], flow_ids: list[int]) -> dict[str, Any]:
    evidence = json.dumps({"features": dict(features), "flow_ids": flow_ids[:10]}, separators=(", ", ": "),
                          default=str)
    row = {"alert_id": hashlib.blake2b(f"{detector}\x1f{institution_id}\x1f{key}".encode(), digest_size=16).hexdigest(),
           "time_ms": time_ms, "first_seen_ms": time_ms, "institution_id": str(institution_id), "entity": src,
           "entity_kind": "src_ip", "target": target, "detector": detector, "technique": technique,
           "severity": severity, "score": float(severity), "confidence": 0.8, "evidence": evidence}
    assert set(row) == set(ALERT.names)
    return row


def from_suricata_eve(event: Mapping[str, Any], institution_id: str) -> dict[str, Any] | None:
    """One ALERT row from a Suricata EVE event of type ``alert``; None otherwise (counted)."""
    try:
        if event.get("event_type") != "alert":
            raise ValueError("not an alert")
        alert = event["alert"]
        time_ms = int(datetime.strptime(event["timestamp"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() * 1000)
        mitre = (alert.get("metadata") or {}).get("mitre_technique_id") or []
        technique = str(mitre[0] if isinstance(mitre, list) else mitre) if mitre else "forwarded"
        severity = _SURICATA_SEVERITY.get(int(alert.get("severity", 3)), 3)
        src = str(event.get("src_ip", ""))
        flow_id = int(event.get("flow_id", 0))
        feats = {"signature": str(alert.get("signature", ""))[:200], "signature_id": int(alert.get("signature_id", 0)),
                 "category": str(alert.get("category", "")), "app_proto": str(event.get("app_proto", "")),
                 "sensor": "suricata"}
        key = f"{flow_id}\x1f{feats['signature_id']}\x1f{event['timestamp']}\x1f{src}"
    except (KeyError, TypeError, ValueError, AttributeError):
        REJECTED.inc(source="suricata")
        return None
    if not src:
        REJECTED.inc(source="suricata")
        return None
    return _row("suricata", key, time_ms, institution_id, src, _target(str(event.get("dest_ip", "")), event.get("dest_port")),
                technique, severity, feats, [flow_id] if flow_id else [])


def from_zeek_notice(notice: Mapping[str, Any], institution_id: str) -> dict[str, Any] | None:
    """One ALERT row from a Zeek notice.log entry (JSON); None when malformed (counted)."""
    try:
        ts = float(notice["ts"])
        if not math.isfinite(ts):
            raise ValueError("ts")
        note = str(notice["note"])
        src = str(notice.get("src") or notice.get("id.orig_h") or "")
        dst = str(notice.get("dst") or notice.get("id.resp_h") or "")
        port = notice.get("p", notice.get("id.resp_p"))
        feats = {"note": note, "msg": str(notice.get("msg", ""))[:200], "sub": str(notice.get("sub", ""))[:200],
                 "uid": str(notice.get("uid", "")), "sensor": "zeek"}
    except (KeyError, TypeError, ValueError):
        REJECTED.inc(source="zeek")
        return None
    if not src:
        REJECTED.inc(source="zeek")
        return None
    key = f"{feats['uid']}\x1f{note}\x1f{ts}\x1f{src}"
    return _row("zeek", key, int(ts * 1000), institution_id, src, _target(dst, port),
                ZEEK_TECHNIQUES.get(note, "forwarded"), 3, feats, [])


class ForwardedDetector(Detector):
    """Stand-in for forwarded IDS alerts in the registry: flows give it nothing to say."""

    name = "forwarded"
    technique = "forwarded"

    def process(self, flows: RecordBatch) -> list[dict[str, Any]]:
        return []
