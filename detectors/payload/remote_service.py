"""Remote service creation over SMB (MITRE T1021.002 SMB/Windows admin shares; T1569.002).

Keys on the collector's markers from one client to one host: ``smb_exe_write_from_src`` (an
executable written over SMB2) in a session that also touched an administrative share
(``smb_admin_share_from_src``: ADMIN$ or C$), or a DCE/RPC bind to the service-control manager
(``smb_svcctl_from_src`` over SMB, ``dcerpc_svcctl_from_src`` over TCP) by a client that wrote an
executable to the same host. That is PsExec's pattern (copy a service binary to ADMIN$, create and
start the service); software deployment servers do the same and belong in ``allow_sources``.
entity = the client, target = the host; one alert per (client, host) and window.

>>> from finsa.wire import FLOW
>>> b = FLOW.make_batch({"src_ip": ["10.1.0.66"], "dst_ip": ["10.1.2.3"], "dst_port": [445], "protocol": [6],
...     "app_markers": ["smb2,smb_admin_share_from_src,smb_exe_write_from_src"], "first_seen_ms": [1_000],
...     "last_seen_ms": [9_000], "flow_id": [1], "institution_id": ["bank-a"]})
>>> [(a["entity"], a["target"], a["technique"]) for a in RemoteServiceDetector().process(b)]
[('10.1.0.66', '10.1.2.3', 'T1021.002')]
"""

from __future__ import annotations

from typing import Any, Iterator

from finsa.detectors.base import DetectorParamError, WindowDeduper
from finsa.detectors.features import FlowFrame
from finsa.detectors.payload.detector import PayloadDetector
from finsa.detectors.payload.markers import marked_rows
from finsa.detectors.netsets import NetworkSet
from finsa.wire import ips_to_strings

__all__ = ["RemoteServiceDetector"]


class RemoteServiceDetector(PayloadDetector):
    """An executable copied to an admin share, with or without a service-control bind."""

    name = "remoteservice"
    technique = "T1021.002"

    def __init__(self, *, allow_sources: tuple[str, ...] = (), max_pairs: int = 100_000,
                 window_ms: int = 600_000, seed: int = 0) -> None:
        super().__init__(window_ms=window_ms, seed=seed)
        self.allow_sources, self.max_pairs = tuple(allow_sources), max_pairs
        self._check(max_pairs=(max_pairs, 10, 1e8))
        try:
            NetworkSet(self.allow_sources)
        except ValueError as exc:
            raise DetectorParamError(f"{self.name}.allow_sources: {exc}") from None
        self._pairs: dict[tuple[str, str, str], dict[str, Any]] | None = None

    def _start(self) -> None:
        if self._pairs is None:
            self._pairs, self._dedupe = {}, WindowDeduper(self.window_ms)

    def _alerts(self, frame: FlowFrame) -> Iterator[dict[str, Any] | None]:
        c = frame.cols
        rows, sets = marked_rows(c, ("smb_exe_write_from_src", "smb_admin_share_from_src", "smb_svcctl_from_src",
                                     "dcerpc_svcctl_from_src"))
        if not len(rows):
            return
        if self.allow_sources:
            keep = ~NetworkSet(self.allow_sources).contains(c["src_ip"][rows])
            rows, sets = rows[keep], [s for s, k in zip(sets, keep) if k]
        for row, src, dst, marks in zip(rows.tolist(), ips_to_strings(c["src_ip"][rows]),
                                        ips_to_strings(c["dst_ip"][rows]), sets):
            key = (str(c["institution_id"][row]), src, dst)
            seen = self._pairs.setdefault(key, {"marks": set(), "flows": []})
            seen["marks"] |= {m for m in marks if m.endswith("_from_src")}
            seen["flows"] = (seen["flows"] + [int(c["flow_id"][row])])[-10:]
            m = seen["marks"]
            exe = "smb_exe_write_from_src" in m
            if exe and ({"smb_admin_share_from_src", "smb_svcctl_from_src", "dcerpc_svcctl_from_src"} & m):
                service = bool({"smb_svcctl_from_src", "dcerpc_svcctl_from_src"} & m)
                feats = {"markers": sorted(m), "service_control": service, "host": dst,
                         "subtechnique": "T1021.002" + ("/T1569.002" if service else "")}
                yield self._emit(frame, row, src, dst, feats, 4 + service, 2.0 + service,
                                 confidence=0.8 + 0.15 * service, flow_ids=seen["flows"])
        if len(self._pairs) > self.max_pairs:
            for k in list(self._pairs)[:len(self._pairs) // 2]:
                del self._pairs[k]
