"""Alerts forwarded from an institution's own IDS: Suricata EVE ``alert`` events, Zeek notices.

These are not derived from flows: :func:`from_suricata_eve` and :func:`from_zeek_notice` map one
event (a parsed JSON line) to one ALERT row, or ``None`` for an event that is not an alert or is
malformed (counted in ``finsa_detector_forwarded_rejected_total``).

The mapping is the collectors' own (:func:`finsa.collectors.idslogs.suricata_eve.eve_alert`,
:func:`finsa.collectors.idslogs.zeek.notice_alert`), so an event gets the same detector name,
technique and alert id whether an agent tailed it from a log or it was forwarded here:
detector ``suricata`` / ``zeek:<note>``; Suricata severity 1, 2, 3 -> finsa 5, 4, 3 and the
technique from the rule's ``metadata.mitre_technique_id``; Zeek notices severity 3 and the
technique from :data:`ZEEK_TECHNIQUES`; else technique "". The alert id hashes the sensor's own
event identity (Suricata: flow id, signature id, timestamp; Zeek: uid, note, timestamp), so a
re-forwarded event repeats its id. entity = the source address, target = ``destination:port``.
A forwarded Zeek notice must also carry a readable ``ts`` and a source address.

:class:`ForwardedDetector` is the registry-side stand-in: it emits nothing on flows.

>>> row = from_suricata_eve({"timestamp": "2025-06-01T10:00:00.250000+0000", "event_type": "alert",
...     "src_ip": "203.0.113.9", "src_port": 4444, "dest_ip": "10.1.0.80", "dest_port": 80,
...     "flow_id": 77, "alert": {"signature_id": 2024897, "signature": "ET EXPLOIT x",
...     "severity": 1, "metadata": {"mitre_technique_id": ["T1190"]}}}, "bank-a")
>>> row["technique"], row["severity"], row["target"], row["time_ms"]
('T1190', 5, '10.1.0.80:80', 1748772000250)
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from finsa.collectors.idslogs.suricata_eve import eve_alert
from finsa.collectors.idslogs.zeek import ZEEK_TECHNIQUES, notice_alert
from finsa.detectors.base import Detector
from finsa.metrics import REGISTRY
from finsa.wire import RecordBatch

__all__ = ["from_suricata_eve", "from_zeek_notice", "ForwardedDetector", "ZEEK_TECHNIQUES"]

REJECTED = REGISTRY.counter("finsa_detector_forwarded_rejected_total",
                            "Forwarded IDS events that were not alerts or could not be read", ["source"])
_UNREADABLE = (KeyError, TypeError, ValueError, AttributeError, OverflowError)


def from_suricata_eve(event: Mapping[str, Any], institution_id: str) -> dict[str, Any] | None:
    """One ALERT row from a Suricata EVE event of type ``alert``; None otherwise (counted)."""
    try:
        if event.get("event_type") != "alert":
            raise ValueError("not an alert")
        return eve_alert(event, str(institution_id))
    except _UNREADABLE:
        REJECTED.inc(source="suricata")
        return None


def from_zeek_notice(notice: Mapping[str, Any], institution_id: str) -> dict[str, Any] | None:
    """One ALERT row from a Zeek notice.log entry (JSON); None when malformed (counted)."""
    try:
        if not math.isfinite(float(notice["ts"])):
            raise ValueError("ts")
        if not (notice.get("src") or notice.get("id.orig_h")):
            raise ValueError("no source")
        return notice_alert(notice, str(institution_id))
    except _UNREADABLE:
        REJECTED.inc(source="zeek")
        return None


class ForwardedDetector(Detector):
    """Stand-in for forwarded IDS alerts in the registry: flows give it nothing to say."""

    name = "forwarded"
    technique = "forwarded"

    def process(self, flows: RecordBatch) -> list[dict[str, Any]]:
        return []
