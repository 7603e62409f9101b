"""What a notification says, and how each receiver gets it written.

A :class:`Notice` is one warning, emergency or alert, reduced to what a person or a SIEM needs;
``Notice.key`` names the record and its version (a re-emitted record repeats it), and
:func:`message_id` adds the receiver: the stable id a receiver deduplicates on.

>>> n = Notice("warning", "w1:issued", 4, "bank-a", "port scan spread", "block 203.0.113.66", 1_780_000_000_000,
...            {"indicators": ["203.0.113.66"]})
>>> message_id(n, "soc") == message_id(n, "soc") != message_id(n, "mail")
True
>>> cef(n).split("|")[:7]
['CEF:0', 'finsa', 'finsa', '1', 'warning', 'port scan spread', '7']
>>> syslog_line(n, "mid", "finsa").startswith("<132>1 2026-05-28T20:26:40.000Z")
True
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import socket
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from finsa.wire import SEVERITIES

__all__ = ["Notice", "message_id", "json_body", "email_message", "cef", "syslog_line", "notices_of"]

#: finsa severity 1..5 -> CEF severity 0..10 and syslog severity (RFC 5424: 0 emergency .. 7 debug).
_CEF_SEVERITY = {1: 1, 2: 3, 3: 5, 4: 7, 5: 10}
_SYSLOG_SEVERITY = {1: 6, 2: 5, 3: 4, 4: 4, 5: 2}
_FACILITY = 16  # local0


@dataclass(frozen=True)
class Notice:
    kind: str  # warning, emergency, alert
    key: str  # record id and version
    severity: int
    institution_id: str  # '' for a warning to a subsector, region or the sector
    title: str
    body: str
    time_ms: int
    fields: dict[str, Any] = field(default_factory=dict)
    scope: tuple[str, str] = ("institution", "")  # (scope_kind, scope_id) of a warning


def message_id(notice: Notice, receiver: str) -> str:
    """32 hex digits: the same record version to the same receiver always has the same id."""
    return hashlib.blake2b(f"{notice.kind}\x1f{notice.key}\x1f{receiver}".encode(), digest_size=16).hexdigest()


def json_body(notice: Notice, mid: str, institution: str) -> bytes:
    return json.dumps({"id": mid, "kind": notice.kind, "institution": institution, "severity": notice.severity,
                       "severity_name": SEVERITIES.get(notice.severity, ""), "title": notice.title,
                       "body": notice.body, "time_ms": notice.time_ms, "key": notice.key, **notice.fields},
                      sort_keys=True, ensure_ascii=False).encode()


def email_message(notice: Notice, mid: str, sender: str, to: list[str], institution: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"] = sender, ", ".join(to)
    msg["Subject"] = f"[finsa {SEVERITIES.get(notice.severity, notice.severity)}] {notice.kind}: {notice.title}"[:200]
    msg["Message-ID"] = f"<{mid}@finsa>"
    msg["X-Finsa-Message-Id"] = mid
    details = "\n".join(f"{k}: {v}" for k, v in sorted(notice.fields.items()))
    msg.set_content(f"{notice.title}\n\nFor: {institution}\nWhen: {_iso(notice.time_ms)}\n\n{notice.body}\n\n"
                    f"{details}\n\nfinsa message id {mid}\n")
    return msg


def _cef_header(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _cef_value(text: Any) -> str:
    return str(text).replace("\\", "\\\\").replace("=", "\\=").replace("\n", "\\n").replace("\r", "")


def cef(notice: Notice, mid: str = "", institution: str = "") -> str:
    """ArcSight CEF: ``CEF:0|vendor|product|version|signature|name|severity|extensions``."""
    ext = {"rt": notice.time_ms, "externalId": mid, "cs1Label": "institution", "cs1": institution or notice.institution_id,
           "msg": notice.body[:1000]}
    for k, v in sorted(notice.fields.items()):
        if k in ("src", "dst", "act"):
            ext[k] = v
    extensions = " ".join(f"{k}={_cef_value(v)}" for k, v in ext.items())
    return (f"CEF:0|finsa|finsa|1|{_cef_header(notice.kind)}|{_cef_header(notice.title)[:200]}|"
            f"{_CEF_SEVERITY.get(notice.severity, 5)}|{extensions}")


def _iso(time_ms: int) -> str:
    moment = dt.datetime.fromtimestamp(time_ms / 1000, tz=dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{time_ms % 1000:03d}Z"


def syslog_line(notice: Notice, mid: str, app_name: str, institution: str = "") -> str:
    """RFC 5424: ``<PRI>1 TIMESTAMP HOST APP - MSGID [SD] CEF...``; MSGID is the kind, the
    structured data carries the stable message id."""
    pri = _FACILITY * 8 + _SYSLOG_SEVERITY.get(notice.severity, 4)
    host = (socket.gethostname() or "-")[:255]
    sd = f'[finsa@32473 id="{mid}"]'
    return f"<{pri}>1 {_iso(notice.time_ms)} {host} {app_name} - {notice.kind} {sd} {cef(notice, mid, institution)}"


def notices_of(kind: str, rows: list[dict[str, Any]]) -> list[Notice]:
    """Notices from wire rows (``RecordBatch.rows()``) of a warning, emergency or alert batch."""
    out = []
    for r in rows:
        if kind == "warning":
            out.append(Notice("warning", f"{r['warning_id']}:{r['status']}:{r['severity']}", int(r["severity"]),
                              r["scope_id"] if r["scope_kind"] == "institution" else "", r["title"], r["body"],
                              int(r["time_ms"]), {"indicators": _list(r["indicators"]), "campaign_id": r["campaign_id"],
                                                  "status": r["status"]}, (r["scope_kind"], r["scope_id"])))
        elif kind == "emergency":
            out.append(Notice("emergency", f"{r['emergency_id']}:{r['active']}", int(r["severity"]), r["institution_id"],
                              f"{r['kind'].replace('_', ' ')} at {r['institution_id']}" + ("" if r["active"] else " (cleared)"),
                              r["why"], int(r["time_ms"]), {"sensor_id": r["sensor_id"], "active": int(r["active"])}))
        elif kind == "alert":
            out.append(Notice("alert", r["alert_id"], int(r["severity"]), r["institution_id"],
                              f"{r['detector']} {r['entity']} ({r['technique']})", f"target {r['target']}",
                              int(r["time_ms"]), {"src": r["entity"], "detector": r["detector"],
                                                  "alert_id": r["alert_id"]}))
    return out


def _list(text: str) -> list:
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return value if isinstance(value, list) else []
