"""Tool transfer (MITRE T1105) and ICMP payload channels (T1095), from the collector's markers.

:class:`DownloadDetector` (``download``, T1105) keys on ``exe_from_*`` markers: a PE or ELF file
(magic bytes checked, or an executable content type) sent by one side of a flow. The receiver is
the host that downloaded it; an executable sent by the *client* of an HTTP flow is an upload (a
file posted to a server) and is not reported, nor is an installer asked for by its name
(``.exe``, ``.msi``, ``.msu``, ``.cab`` ...) from a named host on a web port (``web_ports``): a
software update. What remains is an executable in disguise (served for ``.gif``, ``.php``, ``/``),
from an address literal, on another port, or outside HTTP. Severity 4 when the transfer is not HTTP (a raw
TCP stage, an FTP data channel) or the HTTP host is an address literal, else 3. ``allow_senders``
(update servers, software depots) are skipped. entity = the sender, target = the receiver.

:class:`IcmpChannelDetector` (``icmpchannel``, T1095) keys on ``icmp_text`` (echo payloads that
are mostly text, not a ping pattern) and ``icmp_payload`` (high-entropy non-standard echo data)
on ICMP flows with at least ``min_packets`` packets (text: any). entity = the side that sent the
first echo, target = its peer.

>>> from finsa.wire import FLOW
>>> b = FLOW.make_batch({"src_ip": ["10.2.0.5", "10.2.0.6"], "dst_ip": ["198.51.100.7", "10.2.0.9"],
...     "dst_port": [4444, 0], "protocol": [6, 1], "src2dst_packets": [3, 4], "dst2src_packets": [900, 4],
...     "app_markers": ["exe_from_dst", "icmp_text_from_src"], "first_seen_ms": [1_000, 2_000],
...     "last_seen_ms": [9_000, 5_000], "flow_id": [1, 2], "institution_id": ["bank-a"] * 2})
>>> [(a["entity"], a["target"], a["technique"]) for a in DownloadDetector().process(b)]
[('198.51.100.7', '10.2.0.5', 'T1105')]
>>> [(a["entity"], a["target"], a["technique"]) for a in IcmpChannelDetector().process(b)]
[('10.2.0.6', '10.2.0.9', 'T1095')]
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterator

from finsa.detectors.base import DetectorParamError
from finsa.detectors.features import FlowFrame
from finsa.detectors.payload.detector import PayloadDetector
from finsa.detectors.payload.markers import marked_rows, sender
from finsa.detectors.netsets import NetworkSet
from finsa.wire import ips_to_strings, split_list

__all__ = ["DownloadDetector", "IcmpChannelDetector"]


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.rsplit(":", 1)[0] if host.count(":") == 1 else host.strip("[]"))
        return True
    except ValueError:
        return False


_INSTALLERS = (".exe", ".msi", ".msu", ".cab", ".dll", ".msp", ".appx", ".msix")


def _named_exe(uri: str) -> bool:
    """The request names an installer file (``/x/setup.exe``, ``/kb123.msu?x=1``).

    >>> _named_exe("/msdownload/update/kb890830.exe"), _named_exe("/images/logo.gif"), _named_exe("/get.php?id=3")
    (True, False, False)
    """
    return uri.split("?", 1)[0].lower().endswith(_INSTALLERS)


class DownloadDetector(PayloadDetector):
    """An executable received by a host (HTTP response, raw TCP stage, FTP data), not an upload."""

    name = "download"
    technique = "T1105"

    def __init__(self, *, allow_senders: tuple[str, ...] = (), web_ports: tuple[int, ...] = (80, 8080),
                 window_ms: int = 600_000, seed: int = 0) -> None:
        super().__init__(window_ms=window_ms, seed=seed)
        self.allow_senders, self.web_ports = tuple(allow_senders), tuple(int(p) for p in web_ports)
        try:
            NetworkSet(self.allow_senders)
        except ValueError as exc:
            raise DetectorParamError(f"{self.name}.allow_senders: {exc}") from None

    def _alerts(self, frame: FlowFrame) -> Iterator[dict[str, Any] | None]:
        c = frame.cols
        rows, sets = marked_rows(c, ("exe_from",))
        if not len(rows):
            return
        allowed = NetworkSet(self.allow_senders) if self.allow_senders else None
        for row, marks in zip(rows.tolist(), sets):
            requests = split_list(str(c["http_requests"][row]))
            http = bool(requests) or bool(c["http_method"][row])
            side = sender("exe", marks)
            if http and side == "src":
                continue  # a client posting a file: an upload
            src, dst = ips_to_strings(c["src_ip"][row:row + 1])[0], ips_to_strings(c["dst_ip"][row:row + 1])[0]
            from_dst = side in ("dst", "both")
            origin, receiver = (dst, src) if from_dst else (src, dst)
            origin_ip = c["dst_ip"][row:row + 1] if from_dst else c["src_ip"][row:row + 1]
            if allowed is not None and allowed.contains(origin_ip)[0]:
                continue
            host = requests[-1].split("\t")[1] if requests else str(c["http_host"][row])
            literal = http and _is_literal(host)
            uris = [r.split("\t")[2] if r.count("\t") >= 2 else "" for r in requests] or [str(c["http_uri"][row])]
            if http and not literal and int(c["dst_port"][row]) in self.web_ports and any(_named_exe(u) for u in uris):
                continue  # an installer asked for by name from a named web host: a software download
            feats = {"transport": "http" if http else "raw", "host": host[:100], "ip_literal_host": literal,
                     "sender": origin, "receiver": receiver, "port": int(c["dst_port"][row]),
                     "bytes_received": int(c["dst2src_bytes"][row] if from_dst else c["src2dst_bytes"][row]),
                     "uri": (requests[-1].split("\t")[2] if requests else str(c["http_uri"][row]))[:200]}
            severity = 4 if (not http or literal) else 3
            yield self._emit(frame, row, origin, receiver, feats, severity, float(severity))


class IcmpChannelDetector(PayloadDetector):
    """ICMP echo flows carrying text or non-standard high-entropy payloads."""

    name = "icmpchannel"
    technique = "T1095"

    def __init__(self, *, min_packets: int = 6, window_ms: int = 600_000, seed: int = 0) -> None:
        super().__init__(window_ms=window_ms, seed=seed)
        self.min_packets = min_packets
        self._check(min_packets=(min_packets, 1, 1e9))

    def _alerts(self, frame: FlowFrame) -> Iterator[dict[str, Any] | None]:
        c = frame.cols
        rows, sets = marked_rows(c, ("icmp_",))
        for row, marks in zip(rows.tolist(), sets):
            if int(c["protocol"][row]) not in (1, 58):
                continue
            packets = int(c["src2dst_packets"][row] + c["dst2src_packets"][row])
            text = bool(sender("icmp_text", marks))
            if not text and packets < self.min_packets:
                continue
            src, dst = ips_to_strings(c["src_ip"][row:row + 1])[0], ips_to_strings(c["dst_ip"][row:row + 1])[0]
            feats = {"payload": "text" if text else "high_entropy", "packets": packets,
                     "bytes": int(c["src2dst_bytes"][row] + c["dst2src_bytes"][row]), "markers": sorted(marks),
                     "subtechnique": "T1048.003"}
            yield self._emit(frame, row, src, dst, feats, 4 if text else 3, 2.0 + packets / 100.0)
