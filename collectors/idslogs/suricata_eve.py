"""Suricata EVE JSON (``eve.json``) mapped to finsa's FLOW and ALERT records.

:class:`EveParser` is fed one line at a time and :meth:`EveParser.drain` returns the accumulated
(flows, alerts) batches. Per ``event_type``:

* ``flow`` -> a FLOW with counts: src_ip/dest_ip/src_port/dest_port/proto, ``flow.pkts_toserver``/
  ``bytes_toserver`` -> src2dst, ``*_toclient`` -> dst2src, ``flow.start``/``flow.end`` -> times,
  ``tcp.tcp_flags_ts``/``tcp_flags_tc`` (hex) -> TCP flags; end_reason rst/fin from the flags,
  flush when Suricata forced the flow out (``flow.reason`` forced/shutdown), else idle.
* ``dns`` -> a FLOW hint per event with a query name (v2 ``rrname``/``rrtype``, v3 ``queries``),
  the answer's ``rcode``; ``tls`` -> tls_sni/tls_version/tls_ja4; ``http`` -> http_host/uri/
  method/status. Hint rows carry no packets (the ``flow`` event of the same flow counts them).
* ``alert`` -> an ALERT (:func:`eve_alert`): detector ``suricata``, severity 1, 2, 3 -> 5, 4, 3,
  technique from the rule's ``metadata.mitre_technique_id`` (else ""), entity the source, target
  ``dest:port``. The agent spools these rows to the alert topic (``finsa.alerts.v1``); the worker
  stores them as they come.

Other event types (stats, fileinfo, anomaly ...) are ignored (counted as ``other_event``); malformed
lines are skipped and counted in ``finsa_collector_log_lines_skipped_total{source="suricata",reason}``.
flow_id is Suricata's own ``flow_id`` (so a flow's hint rows and its flow row share it).

>>> p = EveParser("bank-a", "tap1")
>>> p.feed('{"timestamp": "2025-06-01T10:00:01.000000+0000", "flow_id": 9, "event_type": "flow",'
...        ' "src_ip": "10.0.0.1", "src_port": 40000, "dest_ip": "192.0.2.7", "dest_port": 443,'
...        ' "proto": "TCP", "flow": {"pkts_toserver": 5, "pkts_toclient": 4, "bytes_toserver": 600,'
...        ' "bytes_toclient": 3000, "start": "2025-06-01T10:00:00.000000+0000",'
...        ' "end": "2025-06-01T10:00:00.500000+0000"}, "tcp": {"tcp_flags_ts": "1b", "tcp_flags_tc": "1b"}}')
>>> row = p.drain()[0].rows()[0]
>>> row["src2dst_packets"], row["last_seen_ms"] - row["first_seen_ms"], row["src2dst_tcp_flags"], row["end_reason"]
(5, 500, 27, 2)
"""

from __future__ import annotations

import ipaddress
import json
import math
from datetime import datetime
from typing import Any, Mapping

from finsa.collectors.idslogs.growing_file import SKIPPED, LineParser
from finsa.collectors.idslogs.growing_file import BadLine as _Bad
from finsa.collectors.idslogs.zeek import alert_row, alert_target

__all__ = ["EveParser", "eve_alert", "eve_time_ms"]

_PROTOS = {"tcp": 6, "udp": 17, "icmp": 1, "ipv6-icmp": 58, "icmpv6": 58, "sctp": 132, "gre": 47}
_SEVERITY = {1: 5, 2: 4, 3: 3}
_RCODES = {"NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "REFUSED": 5}
_QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28, "SRV": 33,
           "NAPTR": 35, "DS": 43, "RRSIG": 46, "DNSKEY": 48, "HTTPS": 65, "SVCB": 64, "ANY": 255, "NULL": 10}
_TLS = {"SSLV3": 0x0300, "TLS 1.0": 0x0301, "TLS 1.1": 0x0302, "TLS 1.2": 0x0303, "TLS 1.3": 0x0304,
        "TLSV1": 0x0301, "TLSV1.1": 0x0302, "TLSV1.2": 0x0303, "TLSV1.3": 0x0304}
_FIN, _RST = 1, 4


def eve_time_ms(text: Any) -> int:
    """ms since the epoch of an EVE time (``2025-06-01T10:00:00.250000+0000``); _Bad when unreadable.

    >>> eve_time_ms("2025-06-01T10:00:00.250000+0000")
    1748772000250
    """
    try:
        stamp = datetime.fromisoformat(str(text))
    except ValueError:
        raise _Bad("bad_time") from None
    if stamp.tzinfo is None:
        raise _Bad("bad_time")
    ms = stamp.timestamp() * 1000
    if not math.isfinite(ms) or ms < 0:
        raise _Bad("bad_time")
    return int(round(ms))


def _count(value: Any, limit: int = 2**63 - 1) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _Bad("bad_value")
    try:
        number = int(value)
    except (ValueError, OverflowError):
        raise _Bad("bad_value") from None
    if not 0 <= number <= limit:
        raise _Bad("bad_value")
    return number


def _hex_flags(value: Any) -> int:
    if value in (None, ""):
        return 0
    try:
        return int(str(value), 16) & 0xFF
    except ValueError:
        raise _Bad("bad_value") from None


def _addr(value: Any) -> str:
    text = "" if value is None else str(value)
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise _Bad("bad_address") from None
    return text


def _base(ev: Mapping[str, Any]) -> dict[str, Any]:
    src, dst = _addr(ev.get("src_ip")), _addr(ev.get("dest_ip"))
    proto_text = str(ev.get("proto", "")).lower()
    proto = _PROTOS.get(proto_text, 0) if not proto_text.isdigit() else _count(proto_text, 255)
    vlan = ev.get("vlan")
    time_ms = eve_time_ms(ev.get("timestamp"))
    return {"flow_id": _count(ev.get("flow_id"), 2**64 - 1), "first_seen_ms": time_ms, "last_seen_ms": time_ms,
            "ip_version": 6 if ":" in src else 4, "protocol": proto,
            "vlan_id": _count(vlan[-1] if isinstance(vlan, list) and vlan else 0, 4095),
            "src_ip": src, "dst_ip": dst, "src_port": _count(ev.get("src_port"), 65535),
            "dst_port": _count(ev.get("dest_port"), 65535)}


def _obj(ev: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = ev.get(key) or {}
    if not isinstance(value, dict):
        raise _Bad("bad_value")
    return value


def _flow(ev: Mapping[str, Any], row: dict[str, Any]) -> None:
    flow, tcp = _obj(ev, "flow"), _obj(ev, "tcp")
    if "start" in flow:
        row["first_seen_ms"] = eve_time_ms(flow["start"])
    if "end" in flow:
        row["last_seen_ms"] = eve_time_ms(flow["end"])
    ts_flags, tc_flags = _hex_flags(tcp.get("tcp_flags_ts")), _hex_flags(tcp.get("tcp_flags_tc"))
    both = ts_flags | tc_flags
    reason = 3 if both & _RST else 2 if both & _FIN else 4 if flow.get("reason") in ("forced", "shutdown") else 0
    row.update({"src2dst_packets": _count(flow.get("pkts_toserver")), "src2dst_bytes": _count(flow.get("bytes_toserver")),
                "dst2src_packets": _count(flow.get("pkts_toclient")), "dst2src_bytes": _count(flow.get("bytes_toclient")),
                "src2dst_tcp_flags": ts_flags, "dst2src_tcp_flags": tc_flags, "end_reason": reason})


def _dns(ev: Mapping[str, Any], row: dict[str, Any]) -> None:
    dns = _obj(ev, "dns")
    query = dns
    queries = dns.get("queries")
    if isinstance(queries, list) and queries and isinstance(queries[0], dict):
        query = queries[0]  # EVE DNS v3 (Suricata 8)
    name = query.get("rrname")
    if not isinstance(name, str) or not name:
        raise _Bad("no_query")
    qtype = query.get("rrtype", "")
    rcode = dns.get("rcode", "")
    row.update({"dns_query": name[:255],
                "dns_qtype": _QTYPES.get(str(qtype).upper(), 0) if not isinstance(qtype, int) else _count(qtype, 65535),
                "dns_rcode": _RCODES.get(str(rcode).upper(), 0) if not isinstance(rcode, int) else _count(rcode, 255)})


def _tls(ev: Mapping[str, Any], row: dict[str, Any]) -> None:
    tls = _obj(ev, "tls")
    ja4 = tls.get("ja4")
    row.update({"tls_sni": str(tls.get("sni") or "")[:255], "tls_version": _TLS.get(str(tls.get("version", "")).upper(), 0),
                "tls_ja4": str(ja4 if isinstance(ja4, str) else "")[:64]})


def _http(ev: Mapping[str, Any], row: dict[str, Any]) -> None:
    http = _obj(ev, "http")
    row.update({"http_host": str(http.get("hostname") or "")[:255], "http_uri": str(http.get("url") or "")[:1024],
                "http_method": str(http.get("http_method") or "")[:16],
                "http_status": _count(http.get("status") or 0, 65535)})
    ctype = str(http.get("http_content_type") or "").split(";")[0].strip()[:100]
    clean = [str(row[k]).replace("\t", " ").replace("\n", " ") for k in ("http_method", "http_host", "http_uri")]
    row["http_requests"] = "\t".join(clean + [str(row["http_status"] or ""), ctype])  # FLOW v2 list of one
    if ctype in _EXE_TYPES:
        row["app_markers"] = "exe_from_dst"


#: Content types of executables (the meter's ``exe`` marker for HTTP responses).
_EXE_TYPES = ("application/x-msdownload", "application/x-dosexec", "application/x-executable",
              "application/vnd.microsoft.portable-executable", "application/x-msdos-program")


def eve_alert(ev: Mapping[str, Any], institution_id: str) -> dict[str, Any]:
    """The ALERT row of one EVE ``alert`` event; a ValueError (the skip reason) when it cannot be mapped."""
    alert = _obj(ev, "alert")
    time_ms = eve_time_ms(ev.get("timestamp"))
    src = _addr(ev.get("src_ip"))
    mitre = _obj(alert, "metadata").get("mitre_technique_id") or ""
    technique = str(mitre[0] if isinstance(mitre, list) and mitre else mitre)[:32]
    severity = _SEVERITY.get(_count(alert.get("severity", 3), 255), 3)
    feats = {"signature": str(alert.get("signature", ""))[:200], "signature_id": _count(alert.get("signature_id", 0)),
             "category": str(alert.get("category", ""))[:100], "app_proto": str(ev.get("app_proto", ""))[:32],
             "flow_id": _count(ev.get("flow_id"), 2**64 - 1), "sensor": "suricata"}
    key = f"{feats['flow_id']}\x1f{feats['signature_id']}\x1f{ev.get('timestamp')}\x1f{src}"
    target = alert_target(str(ev.get("dest_ip") or ""), ev.get("dest_port"))
    return alert_row("suricata", key, time_ms, institution_id, src, target, technique, severity, feats)


_HINTS = {"flow": _flow, "netflow": _flow, "dns": _dns, "tls": _tls, "http": _http}


class EveParser(LineParser):
    """Stateless-per-line parser of Suricata EVE JSON lines (see the module docstring)."""

    source = "suricata"

    def _feed(self, line: str) -> None:
        if not line.strip():
            return
        try:
            ev = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            raise _Bad("bad_json") from None
        if not isinstance(ev, dict):
            raise _Bad("bad_json")
        kind = ev.get("event_type")
        if kind == "alert":
            self.alerts.append(eve_alert(ev, self.institution_id))
            return
        mapper = _HINTS.get(kind) if isinstance(kind, str) else None
        if mapper is None:
            SKIPPED.inc(source="suricata", reason="other_event")
            return
        row = _base(ev)
        mapper(ev, row)
        row["institution_id"], row["sensor_id"] = self.institution_id, self.sensor_id
        self.flows.append(row)
