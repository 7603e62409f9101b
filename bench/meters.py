"""The same job done by each tool: a capture file in, bidirectional flows (with hints) out.

Each function meters a classic pcap and returns ``(packets read, flows, holder)`` where
``holder`` keeps the tool's flow state alive for a memory measurement. The peers are written
the way a user of each library would write them: per packet, a parse and a dict flow table
keyed by the canonical (lower endpoint first) 5-tuple, counters per direction, TCP flags ORed,
and one DNS query name or HTTP Host taken from the first packet that carries one. None of the
peers expires flows (the benchmark captures are shorter than any idle timeout).
"""

from __future__ import annotations

from typing import Any

__all__ = ["finsa_meter", "finsa_table", "nfstream_meter", "dpkt_meter", "scapy_meter"]

_FAR_MS = 10 * 365 * 86_400_000


def finsa_meter(path: str, limit: int | None = None) -> tuple[int, int, Any]:
    """finsa's ``meter_capture`` with the nfstream profile (hints included)."""
    from finsa.collectors.meter.flowmeter import meter_capture

    flows = sum(len(b) for b in meter_capture(path, profile="nfstream"))
    return -1, flows, None


def finsa_table(path: str, limit: int | None = None) -> tuple[int, int, Any]:
    """Meter without expiry and without the final flush: every flow stays in the flow table."""
    from finsa.collectors.meter.flowmeter import FlowMeter
    from finsa.collectors.pcap.capture import read_capture

    meter = FlowMeter("nfstream", idle_timeout_ms=_FAR_MS, active_timeout_ms=_FAR_MS)
    for batch in read_capture(path):
        meter.add(batch)
    return meter.stats["packets"], len(meter.table), meter


def nfstream_meter(path: str, limit: int | None = None, n_dissections: int = 20) -> tuple[int, int, Any]:
    """nfstream's NFStreamer, one metering process, defaults (nDPI with 20 dissected packets)."""
    from nfstream import NFStreamer

    flows = packets = 0
    for flow in NFStreamer(source=path, n_meters=1, n_dissections=n_dissections):
        flows += 1
        packets += flow.bidirectional_packets
    return packets, flows, None


def _new_flow(ts: float, src: tuple) -> dict:
    return {"first": ts, "last": ts, "src": src, "packets": [0, 0], "bytes": [0, 0], "flags": [0, 0], "hint": None}


def dpkt_meter(path: str, limit: int | None = None) -> tuple[int, int, Any]:
    """dpkt: pcap.Reader, Ethernet/IP/TCP/UDP objects, dpkt.dns and dpkt.http for the hints."""
    import dpkt

    table: dict[tuple, dict] = {}
    n = 0
    with open(path, "rb") as fh:
        for ts, buf in dpkt.pcap.Reader(fh):
            if limit is not None and n >= limit:
                break
            n += 1
            ip = dpkt.ethernet.Ethernet(buf).data
            if not isinstance(ip, dpkt.ip.IP):
                continue
            l4 = ip.data
            tcp, udp = isinstance(l4, dpkt.tcp.TCP), isinstance(l4, dpkt.udp.UDP)
            a = (ip.src, l4.sport if tcp or udp else 0)
            b = (ip.dst, l4.dport if tcp or udp else 0)
            key = (a, b, ip.p) if a <= b else (b, a, ip.p)
            flow = table.get(key)
            if flow is None:
                flow = table[key] = _new_flow(ts, a)
            d = 0 if a == flow["src"] else 1
            flow["last"] = ts
            flow["packets"][d] += 1
            flow["bytes"][d] += len(buf)
            if tcp:
                flow["flags"][d] |= l4.flags
            if flow["hint"] is None and (tcp or udp) and l4.data:
                flow["hint"] = _dpkt_hint(dpkt, l4, udp)
    return n, len(table), table


def _dpkt_hint(dpkt: Any, l4: Any, udp: bool) -> str:
    try:
        if udp and 53 in (l4.sport, l4.dport):
            qd = dpkt.dns.DNS(l4.data).qd
            return qd[0].name if qd else ""
        if not udp and l4.data[:4] in (b"GET ", b"POST", b"HEAD", b"PUT "):
            return dpkt.http.Request(l4.data).headers.get("host", "")
    except (dpkt.UnpackError, ValueError, IndexError):
        return ""
    return ""


def scapy_meter(path: str, limit: int | None = None) -> tuple[int, int, Any]:
    """scapy: PcapReader with full dissection (DNS and HTTP layers bound by port)."""
    from scapy.layers.dns import DNS
    from scapy.layers.http import HTTPRequest
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.utils import PcapReader

    table: dict[tuple, dict] = {}
    n = 0
    with PcapReader(path) as reader:
        for pkt in reader:
            if limit is not None and n >= limit:
                break
            n += 1
            ip = pkt.getlayer(IP)
            if ip is None:
                continue
            l4 = ip.payload
            ported = isinstance(l4, (TCP, UDP))
            a, b = (ip.src, l4.sport if ported else 0), (ip.dst, l4.dport if ported else 0)
            key = (a, b, ip.proto) if a <= b else (b, a, ip.proto)
            flow = table.get(key)
            if flow is None:
                flow = table[key] = _new_flow(float(pkt.time), a)
            d = 0 if a == flow["src"] else 1
            flow["last"] = float(pkt.time)
            flow["packets"][d] += 1
            flow["bytes"][d] += len(pkt)
            if isinstance(l4, TCP):
                flow["flags"][d] |= int(l4.flags)
            if flow["hint"] is None:
                if pkt.haslayer(DNS) and pkt[DNS].qd:
                    flow["hint"] = pkt[DNS].qd[0].qname.decode(errors="replace")
                elif pkt.haslayer(HTTPRequest):
                    flow["hint"] = (pkt[HTTPRequest].Host or b"").decode(errors="replace")
    return n, len(table), table
