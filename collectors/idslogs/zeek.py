"""Zeek logs (ASCII/TSV or JSON lines) mapped to finsa's FLOW and ALERT records.

:class:`ZeekLogParser` is fed one line at a time (a followed file, see
:mod:`finsa.collectors.idslogs.growing_file`) and keeps the TSV header state (``#separator``, ``#fields``,
``#unset_field``, ``#empty_field``, ``#path``; a ``zeek-cut -m`` header line of plain field names
also works). Which log a line belongs to comes from ``#path``, JSON ``_path``, the file name, or
else the fields present. :meth:`ZeekLogParser.drain` returns the accumulated (flows, alerts) batches.

* ``conn.log`` -> one FLOW per row: ts -> first_seen_ms, ts+duration -> last_seen_ms,
  id.orig_* -> src, id.resp_* -> dst, proto (``ip_proto`` wins when given), orig/resp_pkts and
  orig/resp_ip_bytes -> src2dst/dst2src, ``history`` -> approximate TCP flags (upper case the
  originator, lower case the responder: S SYN, H SYN+ACK, A ACK, D PSH+ACK, F FIN, R RST),
  ``conn_state`` -> end_reason (SF fin; RST* and REJ rst; else idle).
* ``dns.log`` -> one FLOW per request carrying dns_query/qtype/rcode; ``ssl.log`` -> one FLOW with
  tls_sni/tls_version (and ``ja4`` when the JA4 package logs it); ``http.log`` -> one FLOW per
  request (``trans_depth``) with http_host/method/uri and ``status_code`` -> http_status;
  ``ssh.log`` -> one FLOW with the ``client`` banner -> ssh_banner (FLOW has no field for the
  server banner, ``auth_success`` or ``auth_attempts``: they are not carried). These rows are hints
  and carry no packets (the conn.log row of the same ``uid`` counts them, and only it counts as a
  connection for the detectors, so an ssh.log row never doubles a brute-force attempt).
* ``notice.log`` -> one ALERT per notice (:func:`notice_alert`), detector ``zeek:<note>``, technique
  from :data:`ZEEK_TECHNIQUES` (else ""), severity 3. The agent spools these rows to the alert
  topic (``finsa.alerts.v1``); the worker stores them as they come.

flow_id is a stable 64-bit hash of the uid (and, for hint rows, the log and transaction). An
unparsable ``ts`` (the test suite masks it as ``XXXXXXXXXX.XXXXXX``) becomes 0 and is counted in
``finsa_collector_log_fields_defaulted_total``. Malformed lines are skipped and counted in
``finsa_collector_log_lines_skipped_total{source="zeek",reason}``; :meth:`feed` never raises.

>>> p = ZeekLogParser("bank-a", "tap1", name="conn.log")
>>> p.feed('{"ts": 1.5, "uid": "C1", "id.orig_h": "10.0.0.1", "id.orig_p": 5, "id.resp_h": "10.0.0.2",'
...        ' "id.resp_p": 80, "proto": "tcp", "duration": 0.5, "orig_pkts": 3, "orig_ip_bytes": 160,'
...        ' "resp_pkts": 2, "resp_ip_bytes": 120, "history": "ShADadFf", "conn_state": "SF"}')
>>> flows, alerts = p.drain()
>>> row = flows.rows()[0]
>>> row["first_seen_ms"], row["last_seen_ms"], row["src2dst_tcp_flags"], row["end_reason"], alerts
(1500, 2000, 27, 2, None)
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
from typing import Any, Callable, Mapping

from finsa.collectors.idslogs.growing_file import BadLine as _Bad
from finsa.collectors.idslogs.growing_file import LineParser
from finsa.metrics import REGISTRY

__all__ = ["ZeekLogParser", "ZEEK_TECHNIQUES", "history_flags", "stable_id", "alert_row", "alert_target",
           "notice_alert", "log_kind_from_name"]

DEFAULTED = REGISTRY.counter("finsa_collector_log_fields_defaulted_total",
                             "Log fields that could not be read and took a default, by source and field",
                             ["source", "field"])

#: Zeek notice name -> MITRE ATT&CK technique (a notice not named here gets "").
ZEEK_TECHNIQUES = {"Scan::Port_Scan": "T1046", "Scan::Address_Scan": "T1046",
                   "SSH::Password_Guessing": "T1110", "FTP::Bruteforcing": "T1110",
                   "HTTP::SQL_Injection_Attacker": "T1190", "HTTP::SQL_Injection_Victim": "T1190",
                   "SSL::Invalid_Server_Cert": "T1573", "DNS::External_Name": "T1071.004"}
_PROTOS = {"tcp": 6, "udp": 17, "icmp": 1}
_TLS_VERSIONS = {"SSLv3": 0x0300, "TLSv10": 0x0301, "TLSv11": 0x0302, "TLSv12": 0x0303, "TLSv13": 0x0304}
_END = {"SF": 2, "REJ": 3, "RSTO": 3, "RSTR": 3, "RSTOS0": 3, "RSTRH": 3}
_FIN, _SYN, _RST, _PSH, _ACK = 1, 2, 4, 8, 16
_LETTERS = {"s": _SYN, "h": _SYN | _ACK, "a": _ACK, "d": _PSH | _ACK, "f": _FIN, "r": _RST}
_KINDS = ("conn", "dns", "ssl", "http", "ssh", "notice")
_MAX_SECONDS = 1e10  # year 2286: a larger time or duration is unreadable


def stable_id(*parts: str) -> int:
    """A stable unsigned 64-bit id from text parts (flow ids from Zeek uids)."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def history_flags(history: str) -> tuple[int, int]:
    """(originator, responder) TCP flags approximated from a Zeek ``history`` string.

    >>> history_flags("ShADadFf")
    (27, 27)
    """
    orig = resp = 0
    for letter in history:
        bits = _LETTERS.get(letter.lower(), 0)
        if letter.isupper():
            orig |= bits
        else:
            resp |= bits
    return orig, resp


def _ts(value: Any, field: str) -> float:
    """Seconds from a Zeek time; an absent value is 0, an unreadable one 0 and counted."""
    if value is None:
        return 0.0
    try:
        ts = float(value)
    except (TypeError, ValueError):
        ts = math.nan
    if not math.isfinite(ts) or not 0 <= ts < _MAX_SECONDS:
        DEFAULTED.inc(source="zeek", field=field)
        return 0.0
    return ts


def _count(value: Any, limit: int = 2**63 - 1) -> int:
    if value is None or value == "":
        return 0
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise _Bad("bad_value") from None
    if not 0 <= number <= limit:
        raise _Bad("bad_value")
    return number


def _addr(value: Any) -> str:
    text = "" if value is None else str(value)
    if text:
        try:
            ipaddress.ip_address(text)
        except ValueError:
            raise _Bad("bad_address") from None
    return text


def _endpoints(rec: dict[str, Any]) -> dict[str, Any]:
    src, dst = _addr(rec.get("id.orig_h")), _addr(rec.get("id.resp_h"))
    ipv = 6 if ":" in src else 4 if src else 0
    proto = _PROTOS.get(str(rec.get("proto") or "").lower(), 0)
    if proto == 1 and ipv == 6:
        proto = 58
    if rec.get("ip_proto") not in (None, ""):
        proto = _count(rec["ip_proto"], 255)
    return {"src_ip": src, "dst_ip": dst, "ip_version": ipv, "protocol": proto,
            "src_port": _count(rec.get("id.orig_p"), 65535), "dst_port": _count(rec.get("id.resp_p"), 65535)}


def _conn(rec: dict[str, Any]) -> dict[str, Any]:
    ts = _ts(rec.get("ts"), "ts")
    duration = 0.0 if rec.get("duration") in (None, "") else _ts(rec.get("duration"), "duration")
    row = _endpoints(rec)
    orig, resp = history_flags(str(rec.get("history") or "")) if row["protocol"] == 6 else (0, 0)
    row.update({"flow_id": stable_id(str(rec.get("uid", ""))), "first_seen_ms": int(ts * 1000),
                "last_seen_ms": int((ts + duration) * 1000),
                "src2dst_packets": _count(rec.get("orig_pkts")), "src2dst_bytes": _count(rec.get("orig_ip_bytes")),
                "dst2src_packets": _count(rec.get("resp_pkts")), "dst2src_bytes": _count(rec.get("resp_ip_bytes")),
                "src2dst_tcp_flags": orig, "dst2src_tcp_flags": resp,
                "end_reason": _END.get(str(rec.get("conn_state") or ""), 0)})
    return row


def _dns(rec: dict[str, Any]) -> dict[str, Any]:
    ts = _ts(rec.get("ts"), "ts")
    rtt = 0.0 if rec.get("rtt") in (None, "") else _ts(rec.get("rtt"), "rtt")
    row = _endpoints(rec)
    uid, trans = str(rec.get("uid", "")), str(rec.get("trans_id", ""))
    row.update({"flow_id": stable_id(uid, "dns", trans, str(rec.get("query", ""))),
                "first_seen_ms": int(ts * 1000), "last_seen_ms": int((ts + rtt) * 1000),
                "dns_query": str(rec.get("query") or "")[:255], "dns_qtype": _count(rec.get("qtype"), 65535),
                "dns_rcode": _count(rec.get("rcode"), 255)})
    return row


def _ssl(rec: dict[str, Any]) -> dict[str, Any]:
    ts = _ts(rec.get("ts"), "ts")
    row = _endpoints(rec)
    row.update({"flow_id": stable_id(str(rec.get("uid", "")), "ssl"), "first_seen_ms": int(ts * 1000),
                "last_seen_ms": int(ts * 1000), "tls_sni": str(rec.get("server_name") or "")[:255],
                "tls_version": _TLS_VERSIONS.get(str(rec.get("version") or ""), 0),
                "tls_ja4": str(rec.get("ja4") or "")[:64]})
    return row


def _tcp_endpoints(rec: dict[str, Any]) -> dict[str, Any]:
    """Endpoints of a log that only TCP carries (http, ssh): no ``proto`` column, protocol 6."""
    row = _endpoints(rec)
    row["protocol"] = row["protocol"] or 6
    return row


def _http(rec: dict[str, Any]) -> dict[str, Any]:
    ts = _ts(rec.get("ts"), "ts")
    row = _tcp_endpoints(rec)
    depth = str(rec.get("trans_depth") or "")
    row.update({"flow_id": stable_id(str(rec.get("uid", "")), "http", depth), "first_seen_ms": int(ts * 1000),
                "last_seen_ms": int(ts * 1000), "http_host": str(rec.get("host") or "")[:255],
                "http_method": str(rec.get("method") or "")[:16], "http_uri": str(rec.get("uri") or "")[:1024],
                "http_status": _count(rec.get("status_code"), 65535)})
    row.update(_http_lists(rec, row))
    return row


#: MIME types Zeek's file analysis gives executables (``resp_mime_types`` / ``orig_mime_types``).
_EXE_MIME = ("application/x-dosexec", "application/x-executable", "application/x-elf",
             "application/x-sharedlib", "application/x-msdownload")


def _mimes(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [v for v in str(value or "").split(",") if v and v != "-"]


def _http_lists(rec: dict[str, Any], row: dict[str, Any]) -> dict[str, str]:
    """FLOW v2 lists of one http.log request: the request item, and ``exe_from_*`` markers where
    Zeek's file analysis saw an executable (the same facts the meter's markers carry)."""
    resp, orig = _mimes(rec.get("resp_mime_types")), _mimes(rec.get("orig_mime_types"))
    clean = [str(row[k]).replace("\t", " ").replace("\n", " ") for k in ("http_method", "http_host", "http_uri")]
    item = "\t".join(clean + [str(row["http_status"] or ""), (resp[0] if resp else "")[:100]])
    marks = [m for m, types in (("exe_from_dst", resp), ("exe_from_src", orig)) if any(t in _EXE_MIME for t in types)]
    return {"http_requests": item, "app_markers": ",".join(marks)}


def _ssh(rec: dict[str, Any]) -> dict[str, Any]:
    ts = _ts(rec.get("ts"), "ts")
    row = _tcp_endpoints(rec)
    row.update({"flow_id": stable_id(str(rec.get("uid", "")), "ssh"), "first_seen_ms": int(ts * 1000),
                "last_seen_ms": int(ts * 1000), "ssh_banner": str(rec.get("client") or "")[:255]})
    return row


def alert_target(address: str, port: Any) -> str:
    """An alert's target: ``address:port`` (``[v6]:port``), the address alone without a readable port.

    >>> alert_target("10.0.0.2", "22"), alert_target("2001:db8::1", 443), alert_target("10.0.0.2", None)
    ('10.0.0.2:22', '[2001:db8::1]:443', '10.0.0.2')
    """
    try:
        port = int(port)
    except (TypeError, ValueError, OverflowError):
        return address
    if not address:
        return address
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def alert_row(detector: str, key: str, time_ms: int, institution_id: str, entity: str, target: str,
              technique: str, severity: int, features: dict[str, Any]) -> dict[str, Any]:
    """An ALERT row dict; the alert id hashes (detector, institution, the sensor's event key)."""
    return {"alert_id": hashlib.blake2b(f"{detector}\x1f{institution_id}\x1f{key}".encode(),
                                        digest_size=16).hexdigest(),
            "time_ms": time_ms, "first_seen_ms": time_ms, "institution_id": institution_id, "entity": entity,
            "entity_kind": "src_ip", "target": target, "detector": detector, "technique": technique,
            "severity": severity, "score": float(severity), "confidence": 0.8,
            "evidence": json.dumps({"features": features}, separators=(", ", ": "), default=str)}


def notice_alert(rec: Mapping[str, Any], institution_id: str) -> dict[str, Any]:
    """The ALERT row of one notice.log record; a ValueError (the skip reason) when it cannot be mapped.

    >>> row = notice_alert({"ts": 1.5, "note": "Scan::Port_Scan", "src": "10.0.0.1"}, "bank-a")
    >>> row["detector"], row["technique"], row["time_ms"], row["entity"], row["target"]
    ('zeek:Scan::Port_Scan', 'T1046', 1500, '10.0.0.1', '')
    """
    note = str(rec.get("note") or "")
    if not note:
        raise _Bad("no_note")
    ts = _ts(rec.get("ts"), "ts")
    src = _addr(rec.get("src") or rec.get("id.orig_h"))
    dst = _addr(rec.get("dst") or rec.get("id.resp_h"))
    port = rec.get("p", rec.get("id.resp_p"))
    feats = {"note": note, "msg": str(rec.get("msg") or "")[:200], "sub": str(rec.get("sub") or "")[:200],
             "uid": str(rec.get("uid") or ""), "sensor": "zeek"}
    key = f"{feats['uid']}\x1f{note}\x1f{rec.get('ts')}\x1f{src}"
    return alert_row(f"zeek:{note}", key, int(ts * 1000), institution_id, src, alert_target(dst, port),
                     ZEEK_TECHNIQUES.get(note, ""), 3, feats)


def log_kind_from_name(name: str) -> str:
    """The Zeek log a file name suggests (conn, dns, ssl, http, ssh, notice), or "".

    >>> log_kind_from_name("conn.09:00:00-10:00:00.log"), log_kind_from_name("http.log"), log_kind_from_name("x509.log")
    ('conn', 'http', '')
    """
    base = name.rsplit("/", 1)[-1].lower()
    return next((k for k in _KINDS if k in base), "")


def _kind_from_fields(rec: dict[str, Any]) -> str:
    if "note" in rec:
        return "notice"
    if "query" in rec or "qtype" in rec:
        return "dns"
    if "server_name" in rec or "version" in rec and "cipher" in rec:
        return "ssl"
    if "method" in rec and "uri" in rec:
        return "http"
    if "auth_attempts" in rec or "client" in rec and "server" in rec:
        return "ssh"
    if "conn_state" in rec or "orig_pkts" in rec or "history" in rec:
        return "conn"
    return ""


_MAPPERS = {"conn": _conn, "dns": _dns, "ssl": _ssl, "http": _http, "ssh": _ssh}


class ZeekLogParser(LineParser):
    """Stateful parser of one Zeek log stream (see the module docstring)."""

    source = "zeek"

    def __init__(self, institution_id: str, sensor_id: str, name: str = "") -> None:
        super().__init__(institution_id, sensor_id)
        self.name_kind = log_kind_from_name(name)
        self._reset_header()

    def _reset_header(self) -> None:
        self.separator, self.unset, self.empty = "\t", "-", "(empty)"
        self.fields: list[str] | None = None
        self.path = ""

    def _feed(self, line: str) -> None:
        line = line.rstrip("\r\n")
        if not line.strip():
            return
        if line.startswith("#"):
            self._header(line)
            return
        if line.lstrip().startswith("{"):
            try:
                rec = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                raise _Bad("bad_json") from None
            if not isinstance(rec, dict):
                raise _Bad("bad_json")
            kind = str(rec.get("_path") or "")
        else:
            if self.fields is None:
                self._cut_header(line)
                return
            values = line.split(self.separator)
            if len(values) != len(self.fields):
                raise _Bad("wrong_field_count")
            rec = {k: (None if v == self.unset else "" if v == self.empty else v) for k, v in zip(self.fields, values)}
            kind = self.path
        self._map(kind if kind in _KINDS else self.name_kind or _kind_from_fields(rec), rec)

    def _header(self, line: str) -> None:
        if line.startswith("#separator"):
            self._reset_header()
            text = line[len("#separator"):].strip() or "\\x09"
            self.separator = text.encode().decode("unicode_escape") if "\\x" in text else text
            return
        key, _, value = line[1:].partition(self.separator)
        if key == "fields":
            self.fields = value.split(self.separator)
        elif key == "unset_field":
            self.unset = value
        elif key == "empty_field":
            self.empty = value
        elif key == "path":
            self.path = value.strip()
        # '### comments', '#types', '#open', '#close', '#set_separator': nothing to keep

    def _cut_header(self, line: str) -> None:
        names = line.split(self.separator)
        if not all(n and n.replace(".", "").replace("_", "").isalnum() for n in names):
            raise _Bad("no_header")
        self.fields = names

    def _map(self, kind: str, rec: dict[str, Any]) -> None:
        mapper: Callable[[dict[str, Any]], dict[str, Any]] | None = _MAPPERS.get(kind)
        if kind == "notice":
            self.alerts.append(notice_alert(rec, self.institution_id))
        elif mapper is not None:
            row = mapper(rec)
            row["institution_id"], row["sensor_id"] = self.institution_id, self.sensor_id
            self.flows.append(row)
        else:
            raise _Bad("unknown_log")
