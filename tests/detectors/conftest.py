"""Synthetic flow traffic for the detector tests: a benign background of many hosts, and attacks.

Every generator returns a dict of FLOW columns (lists / arrays); :meth:`Synth.batches` merges
them, orders the flows by end time (as a collector exports them) and cuts them into batches.
"""

from __future__ import annotations

import numpy as np
import pytest

from finsa.wire import FLOW, RecordBatch

T0_MS = 1_750_000_000_000  # a flow time in 2025
ATTACKER = "203.0.113.66"


class Synth:
    """Flow column generators (deterministic for a seed)."""

    T0_MS = T0_MS
    ATTACKER = ATTACKER

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self._next_id = 1

    def _ids(self, n: int) -> np.ndarray:
        ids = np.arange(self._next_id, self._next_id + n, dtype=np.uint64)
        self._next_id += n
        return ids

    def benign(self, n: int, start_ms: int = T0_MS, duration_ms: int = 300_000,
               institution: str = "bank-a", n_clients: int = 300, net: str = "10.1") -> dict:
        """Clients browsing, resolving names and using internal services; ~2% failed attempts."""
        rng = self.rng
        clients = np.array([f"{net}.{1 + i // 250}.{1 + i % 250}" for i in range(n_clients)], dtype=object)
        servers = [(f"{net}.100.{i}", port, proto) for i, (port, proto) in
                   enumerate([(443, 6), (443, 6), (80, 6), (53, 17), (22, 6), (445, 6), (8080, 6), (3389, 6)])]
        servers += [(f"198.51.100.{i}", 443, 6) for i in range(20)]
        pick = rng.integers(0, len(servers), n)
        first = start_ms + np.sort(rng.integers(0, duration_ms, n))
        dur = rng.integers(5, 20_000, n)
        proto = np.array([servers[p][2] for p in pick])
        failed = (rng.random(n) < 0.02) & (proto == 6)
        pk1 = rng.integers(3, 60, n)
        by1 = (pk1 * rng.lognormal(5.5, 1.0, n)).astype(np.int64) + 60
        return {
            "flow_id": self._ids(n), "first_seen_ms": first,
            "last_seen_ms": np.where(failed, first, first + dur),
            "institution_id": [institution] * n, "protocol": proto, "ip_version": [4] * n,
            "src_ip": clients[rng.integers(0, n_clients, n)].tolist(),
            "dst_ip": [servers[p][0] for p in pick], "dst_port": [servers[p][1] for p in pick],
            "src_port": rng.integers(32768, 61000, n),
            "src2dst_packets": np.where(failed, 1, pk1), "src2dst_bytes": np.where(failed, 60, by1),
            "dst2src_packets": np.where(failed, 0, pk1 + rng.integers(0, 20, n)),
            "dst2src_bytes": np.where(failed, 0, (by1 * rng.lognormal(1.0, 1.0, n)).astype(np.int64)),
            "src2dst_tcp_flags": np.where(proto == 6, np.where(failed, 2, 27), 0),
            "dst2src_tcp_flags": np.where(proto == 6, np.where(failed, 0, 27), 0),
        }

    def scan(self, victim: str, ports: range | list, start_ms: int, duration_ms: int = 10_000,
             institution: str = "bank-a", attacker: str = ATTACKER, open_ports: tuple = (22, 443)) -> dict:
        """A SYN scan: one SYN per port; closed ports answer RST, open ones SYN-ACK (then RST)."""
        ports = np.asarray(list(ports))
        n = len(ports)
        first = start_ms + np.sort(self.rng.integers(0, duration_ms, n))
        is_open = np.isin(ports, open_ports)
        closed_rst = (~is_open) & (self.rng.random(n) < 0.3)
        return {
            "flow_id": self._ids(n), "first_seen_ms": first, "last_seen_ms": first + is_open * 2,
            "institution_id": [institution] * n, "protocol": [6] * n, "ip_version": [4] * n,
            "src_ip": [attacker] * n, "dst_ip": [victim] * n, "dst_port": ports,
            "src_port": [51515] * n, "src2dst_packets": 1 + is_open, "src2dst_bytes": 60 + 54 * is_open,
            "dst2src_packets": (is_open | closed_rst).astype(int), "dst2src_bytes": 60 * (is_open | closed_rst),
            "src2dst_tcp_flags": np.where(is_open, 6, 2),
            "dst2src_tcp_flags": np.where(is_open, 18, np.where(closed_rst, 20, 0)),
        }

    def synflood(self, victim: str, port: int, n: int, start_ms: int, duration_ms: int = 20_000,
                 sources: list[str] | None = None, institution: str = "bank-a") -> dict:
        """SYNs from spoofed (or a few given) sources; the victim answers SYN-ACK to some."""
        rng = self.rng
        if sources is None:
            sources = [f"{rng.integers(1, 224)}.{rng.integers(0, 256)}.{rng.integers(0, 256)}.{rng.integers(1, 255)}"
                       for _ in range(n)]
        first = start_ms + np.sort(rng.integers(0, duration_ms, n))
        answered = rng.random(n) < 0.5
        return {
            "flow_id": self._ids(n), "first_seen_ms": first, "last_seen_ms": first + answered * 3000,
            "institution_id": [institution] * n, "protocol": [6] * n, "ip_version": [4] * n,
            "src_ip": [sources[i % len(sources)] for i in range(n)], "dst_ip": [victim] * n,
            "dst_port": [port] * n, "src_port": rng.integers(1024, 65535, n),
            "src2dst_packets": [1] * n, "src2dst_bytes": [60] * n,
            "dst2src_packets": answered * 3, "dst2src_bytes": answered * 180,
            "src2dst_tcp_flags": [2] * n, "dst2src_tcp_flags": answered * 18,
        }

    def bruteforce(self, server: str, port: int, n: int, start_ms: int, spacing_ms: int = 2_000,
                   institution: str = "bank-a", attacker: str = ATTACKER) -> dict:
        """Short complete login connections of nearly the same client byte count."""
        rng = self.rng
        first = start_ms + np.arange(n) * spacing_ms + rng.integers(0, 200, n)
        return {
            "flow_id": self._ids(n), "first_seen_ms": first,
            "last_seen_ms": first + rng.integers(800, 1_500, n),
            "institution_id": [institution] * n, "protocol": [6] * n, "ip_version": [4] * n,
            "src_ip": [attacker] * n, "dst_ip": [server] * n, "dst_port": [port] * n,
            "src_port": rng.integers(32768, 61000, n), "src2dst_packets": rng.integers(11, 14, n),
            "src2dst_bytes": 2_100 + rng.integers(-40, 40, n), "dst2src_packets": rng.integers(9, 12, n),
            "dst2src_bytes": 3_000 + rng.integers(-40, 40, n),
            "src2dst_tcp_flags": [27] * n, "dst2src_tcp_flags": [27] * n,
        }

    @staticmethod
    def batches(*parts: dict, batch_rows: int = 1_000) -> list[RecordBatch]:
        """Merge column dicts, order by end time, cut into batches."""
        whole = FLOW.make_batch({k: np.concatenate([np.asarray(p[k]) for p in parts])
                                 for k in parts[0]}) if len(parts) > 1 else FLOW.make_batch(parts[0])
        order = np.argsort(whole.columns["last_seen_ms"], kind="stable")
        whole = whole.take(order)
        return [whole.take(np.arange(i, min(i + batch_rows, len(whole))))
                for i in range(0, len(whole), batch_rows)]


@pytest.fixture
def synth() -> Synth:
    """A fresh generator (tests under --import-mode=importlib cannot import conftest)."""
    return Synth(seed=7)


@pytest.fixture(scope="session")
def synth_cls() -> type[Synth]:
    return Synth
