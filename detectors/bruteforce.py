"""Login brute force and password spraying on authentication services (MITRE T1110).

Keys on *login attempts*: short answered sessions from one client to one authentication service
(SSH 22, FTP 21, Telnet 23, SMTP submission 465/587, POP3 110/995, IMAP 143/993, LDAP 389/636/3268,
SMB 445, RDP 3389, VNC 5900, databases 1433/3306/5432, web logins 80/443/8080, and Kerberos 88
over TCP *and* UDP). A TCP attempt completed its handshake (the client sent ACK) and lasted at
most ``max_duration_ms``; a UDP attempt (Kerberos) was answered. A flow whose *source* port is the
service port (a capture that missed the client's first packet) is read the other way round.
On Kerberos ports only the exchanges answered with an error-sized reply (a server payload of at
most ``kerberos_error_max_bytes``, headers deducted: KRB-ERROR such as PREAUTH_FAILED or
PRINCIPAL_UNKNOWN, where a granted ticket is kilobytes) count: the L7 failure signal read from
flow sizes; an exchange that granted a ticket counts one attempt *against* the client, so a
terminal server's users logging on (one PREAUTH_REQUIRED error, then tickets) never accumulate.

Per (institution, client, server, port) a sequential test runs over flow time: Page's CUSUM of
the log-likelihood ratio of two Poisson attempt rates, benign (one per ``benign_interval_ms``,
60 s) against attack (one per ``attack_interval_ms``, 15 s):
``S <- max(0, S + attempts * ln(r1 / r0) - dt * (r1 - r0))``. A login every 30 s or slower
drains it; a slow attack (an attempt every 10-20 s, hydra with one task) climbs and crosses
``cusum_threshold`` after about a dozen attempts, however long it lasts; a burst crosses at once.
The pair alerts when ``S >= cusum_threshold``, the run since ``S`` last drained to zero holds at
least ``min_attempts`` attempts, and those attempts are alike: client byte counts small (mean <=
``max_mean_bytes``) and of coefficient of variation <= ``max_cv`` (one tool repeating the same
login exchange). Varied sessions (a user working, backups, Ansible runs) fail that test. Web ports
and ``machine_ports`` (LDAP, SMB, databases: applications log in on every request) are busy by
nature: there the rates are ``web_benign_interval_ms`` (1 s) and ``web_attack_interval_ms``
(200 ms), the run needs ``web_min_attempts`` and the server's answers must be alike too (a login
form fails with the same page every time, an API's answers vary).

entity = the attacker (entity_kind ``src_ip``), target = ``server:port``; the evidence carries
the statistic, the attempts, the byte statistics and the service.

>>> from finsa.wire import FLOW
>>> n = 30
>>> ssh = FLOW.make_batch({"src_ip": ["203.0.113.66"] * n, "dst_ip": ["10.1.0.22"] * n,
...     "dst_port": [22] * n, "src_port": list(range(40000, 40000 + n)), "protocol": [6] * n,
...     "src2dst_tcp_flags": [27] * n, "dst2src_tcp_flags": [27] * n,
...     "src2dst_packets": [12] * n, "dst2src_packets": [10] * n,
...     "src2dst_bytes": [2100 + i % 3 for i in range(n)], "dst2src_bytes": [3000] * n,
...     "first_seen_ms": [i * 2000 for i in range(n)], "last_seen_ms": [i * 2000 + 1500 for i in range(n)],
...     "institution_id": ["bank-a"] * n})
>>> [(a["entity"], a["target"], a["technique"]) for a in BruteForceDetector().process(ssh)]
[('203.0.113.66', '10.1.0.22:22', 'T1110')]
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from finsa.detectors.base import Detector, DetectorParamError, WindowDeduper, host_port, make_alert, severity_from_margin
from finsa.detectors.features import ACK, FlowFrame, KeyedTable, group, mix64
from finsa.wire import RecordBatch, ips_to_strings

__all__ = ["BruteForceDetector", "AUTH_PORTS"]

#: Authentication services watched by default (TCP; Kerberos also over UDP).
AUTH_PORTS: tuple[int, ...] = (21, 22, 23, 80, 88, 110, 143, 389, 443, 445, 465, 587, 636, 993, 995,
                               1433, 3268, 3306, 3389, 5432, 5900, 8080)
#: Services applications log in to on every request (directory binds, file shares, databases
#: without connection pools): held, like the web ports, to the busy thresholds.
MACHINE_PORTS: tuple[int, ...] = (389, 445, 636, 1433, 3268, 3306, 5432)
_COLUMNS = ("t_last", "t_start", "s", "n", "bytes_sum", "bytes_sumsq", "server_sum", "server_sumsq")


def _ports(name: str, value: tuple[int, ...], allow_empty: bool = True) -> tuple[int, ...]:
    ports = tuple(int(p) for p in value)
    if (not ports and not allow_empty) or not all(0 < p < 65536 for p in ports):
        raise DetectorParamError(f"bruteforce.{name}: need ports in 1..65535, got {value!r}")
    return ports


def _mean_cv(total: np.ndarray, total_sq: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = total / n
    return mean, np.sqrt(np.maximum(total_sq / n - mean * mean, 0.0)) / np.maximum(mean, 1.0)


class BruteForceDetector(Detector):
    """A CUSUM of short, alike, answered login sessions per client and authentication service."""

    name = "bruteforce"
    technique = "T1110"

    def __init__(self, *, ports: tuple[int, ...] = AUTH_PORTS, udp_ports: tuple[int, ...] = (88,),
                 web_ports: tuple[int, ...] = (80, 443, 8080), machine_ports: tuple[int, ...] = MACHINE_PORTS,
                 kerberos_ports: tuple[int, ...] = (88,), min_attempts: int = 6, web_min_attempts: int = 50,
                 benign_interval_ms: int = 60_000, attack_interval_ms: int = 15_000,
                 web_benign_interval_ms: int = 1_000, web_attack_interval_ms: int = 200,
                 cusum_threshold: float = 4.6, max_cv: float = 0.3, max_mean_bytes: int = 20_000,
                 max_duration_ms: int = 30_000, kerberos_error_max_bytes: int = 500, max_pairs: int = 200_000,
                 window_ms: int = 60_000, seed: int = 0) -> None:
        super().__init__(window_ms=window_ms, seed=seed)
        self.ports, self.udp_ports = _ports("ports", ports, False), _ports("udp_ports", udp_ports)
        self.web_ports, self.kerberos_ports = _ports("web_ports", web_ports), _ports("kerberos_ports", kerberos_ports)
        self.machine_ports = _ports("machine_ports", machine_ports)
        self.min_attempts, self.web_min_attempts = min_attempts, web_min_attempts
        self.benign_interval_ms, self.max_cv, self.max_mean_bytes = benign_interval_ms, max_cv, max_mean_bytes
        self.attack_interval_ms, self.web_benign_interval_ms = attack_interval_ms, web_benign_interval_ms
        self.web_attack_interval_ms, self.cusum_threshold = web_attack_interval_ms, cusum_threshold
        self.max_duration_ms, self.kerberos_error_max_bytes = max_duration_ms, kerberos_error_max_bytes
        self.max_pairs = max_pairs
        self._check(min_attempts=(min_attempts, 2, 1e6), web_min_attempts=(web_min_attempts, 2, 1e6),
                    benign_interval_ms=(benign_interval_ms, 100, 86_400_000),
                    attack_interval_ms=(attack_interval_ms, 1, benign_interval_ms - 1),
                    web_benign_interval_ms=(web_benign_interval_ms, 10, 86_400_000),
                    web_attack_interval_ms=(web_attack_interval_ms, 1, web_benign_interval_ms - 1),
                    cusum_threshold=(cusum_threshold, 0.1, 1e6), max_cv=(max_cv, 0.0, 10.0),
                    max_mean_bytes=(max_mean_bytes, 1, 1e9), max_duration_ms=(max_duration_ms, 1, 3_600_000),
                    kerberos_error_max_bytes=(kerberos_error_max_bytes, 1, 1e9), max_pairs=(max_pairs, 100, 1e8))
        self._table: KeyedTable | None = None
        self._dedupe: WindowDeduper | None = None

    def _attempts(self, frame: FlowFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows that are login exchanges, whether each is read server -> client, whether each is a
        Kerberos exchange that granted a ticket: a success, which counts against the attempts)."""
        c = frame.cols
        sport, dport, proto = c["src_port"], c["dst_port"], c["protocol"]
        tcp_fwd = frame.tcp & np.isin(dport, self.ports)
        tcp_rev = frame.tcp & ~tcp_fwd & np.isin(sport, self.ports) & (dport >= 1024)
        udp_fwd = (proto == 17) & np.isin(dport, self.udp_ports)
        udp_rev = (proto == 17) & ~udp_fwd & np.isin(sport, self.udp_ports) & (dport >= 1024)
        rev = tcp_rev | udp_rev
        client_flags = np.where(rev, c["dst2src_tcp_flags"], c["src2dst_tcp_flags"])
        answered = np.where(rev, c["src2dst_packets"], c["dst2src_packets"]) > 0
        shaken = ~frame.tcp | ((client_flags & ACK) != 0)
        ok = (tcp_fwd | tcp_rev | udp_fwd | udp_rev) & answered & shaken
        ok &= frame.end_ms - frame.t_ms <= self.max_duration_ms
        ticket = np.zeros(frame.n, dtype=bool)
        if self.kerberos_ports:
            port = np.where(rev, sport, dport)
            server_bytes = np.where(rev, c["src2dst_bytes"], c["dst2src_bytes"]).astype(np.int64)
            server_packets = np.where(rev, c["src2dst_packets"], c["dst2src_packets"]).astype(np.int64)
            payload = server_bytes - server_packets * np.where(frame.tcp, 52, 28)  # IP + TCP/UDP headers
            ticket = np.isin(port, self.kerberos_ports) & (payload > self.kerberos_error_max_bytes)
        rows = np.flatnonzero(ok)
        return rows, rev[rows], ticket[rows]

    def process(self, flows: RecordBatch) -> list[dict[str, Any]]:
        frame = self._frame(flows)
        if frame is None:
            return []
        rows, rev, ticket = self._attempts(frame)
        if len(rows) == 0:
            return []
        if self._table is None:
            self._table, self._dedupe = KeyedTable(_COLUMNS), WindowDeduper(self.window_ms)
        c = frame.cols
        client_h = np.where(rev, frame.dst_h[rows], frame.src_h[rows])
        server_h = np.where(rev, frame.src_h[rows], frame.dst_h[rows])
        port = np.where(rev, c["src_port"][rows], c["dst_port"][rows]).astype(np.int64)
        pair = mix64(frame.inst_hash[rows], client_h, server_h, port)
        client_bytes = np.where(rev, c["dst2src_bytes"][rows], c["src2dst_bytes"][rows]).astype(np.float64)
        server_bytes = np.where(rev, c["src2dst_bytes"][rows], c["dst2src_bytes"][rows]).astype(np.float64)
        g = group(pair)
        t_first, t_end = g.min(frame.t_ms[rows]), g.max(frame.t_ms[rows])
        busy = np.isin(port[g.first], self.web_ports + self.machine_ports)
        r0 = 1.0 / np.where(busy, self.web_benign_interval_ms, self.benign_interval_ms)
        r1 = 1.0 / np.where(busy, self.web_attack_interval_ms, self.attack_interval_ms)
        stat = self._update(g, t_first, t_end, client_bytes, server_bytes, ~ticket, np.log(r1 / r0), r1 - r0)
        need = np.where(busy, self.web_min_attempts, self.min_attempts)
        # busy services: the answers must be alike too (one failure page; an API's answers vary)
        alike = (stat["cv"] <= self.max_cv) & (~busy | (stat["server_cv"] <= self.max_cv))
        out = []
        for gi in np.flatnonzero((stat["s"] >= self.cusum_threshold) & (stat["n"] >= need) & alike
                                 & (stat["mean"] <= self.max_mean_bytes)):
            mine = rows[g.inverse == gi]
            alert = self._alert(frame, mine, bool(rev[g.first[gi]]), int(port[g.first[gi]]),
                                {k: v[gi] for k, v in stat.items()}, float(need[gi]))
            if alert is not None:
                out.append(alert)
        if len(self._table) > self.max_pairs:
            self._forget()
        return out

    def _update(self, g, t_first: np.ndarray, t_end: np.ndarray, client_bytes: np.ndarray,
                server_bytes: np.ndarray, failed: np.ndarray, weight: np.ndarray,
                drift_per_ms: np.ndarray) -> dict[str, np.ndarray]:
        """Advance each pair's CUSUM (``weight`` per failed attempt and minus ``weight`` per granted
        ticket, ``drift_per_ms`` drained) and the byte sums of its attempts; return the statistics."""
        pos = self._table.upsert(g.keys, t_last=-1.0)
        cols = self._table.cols
        known = cols["t_last"][pos] >= 0
        gap = np.where(known, np.maximum(t_first - cols["t_last"][pos], 0.0), 0.0)
        s = np.maximum(cols["s"][pos] - gap * drift_per_ms, 0.0)
        fresh = s <= 0.0  # drained: the attempts before no longer belong to this run
        for name in ("n", "bytes_sum", "bytes_sumsq", "server_sum", "server_sumsq"):
            cols[name][pos[fresh]] = 0.0
        cols["t_start"][pos[fresh]] = t_first[fresh]
        span = (t_end - t_first).astype(np.float64)
        fails = g.sum(failed.astype(np.float64))
        rise = np.maximum(fails * weight - span * drift_per_ms, np.where(fails > 0, weight, 0.0))
        cols["s"][pos] = np.maximum(s + rise - (g.count - fails) * weight, 0.0)
        cols["t_last"][pos] = np.maximum(cols["t_last"][pos], t_end)
        cols["n"][pos] += fails
        client_bytes, server_bytes = client_bytes * failed, server_bytes * failed
        cols["bytes_sum"][pos] += g.sum(client_bytes)
        cols["bytes_sumsq"][pos] += g.sum(client_bytes * client_bytes)
        cols["server_sum"][pos] += g.sum(server_bytes)
        cols["server_sumsq"][pos] += g.sum(server_bytes * server_bytes)
        n = np.maximum(cols["n"][pos], 1.0)
        mean, cv = _mean_cv(cols["bytes_sum"][pos], cols["bytes_sumsq"][pos], n)
        _, server_cv = _mean_cv(cols["server_sum"][pos], cols["server_sumsq"][pos], n)
        return {"s": cols["s"][pos].copy(), "n": cols["n"][pos].copy(), "mean": mean, "cv": cv, "server_cv": server_cv,
                "t_start": cols["t_start"][pos].copy()}

    def _alert(self, frame: FlowFrame, mine: np.ndarray, rev: bool, port: int, stat: dict[str, float],
               need: float) -> dict[str, Any] | None:
        c, first = frame.cols, mine[0]
        client_col, server_col = ("dst_ip", "src_ip") if rev else ("src_ip", "dst_ip")
        inst = str(c["institution_id"][first])
        entity = ips_to_strings(c[client_col][first:first + 1])[0]
        server = ips_to_strings(c[server_col][first:first + 1])[0]
        time_ms = int(frame.end_ms[mine].max())
        if not self._dedupe.first(inst, entity, time_ms):
            return None
        margin = stat["s"] / self.cusum_threshold
        feats = {"cusum": stat["s"], "cusum_threshold": self.cusum_threshold, "run_start_ms": stat["t_start"],
                 "attempts": stat["n"], "min_attempts": need,
                 "client_bytes_mean": stat["mean"], "client_bytes_cv": stat["cv"], "server_bytes_cv": stat["server_cv"], "attacker": entity, "service": host_port(server, port),
                 "protocol": int(c["protocol"][first])}
        alike = 1.0 - stat["cv"] / max(self.max_cv, 1e-9) / 2
        return make_alert(
            detector=self.name, technique=self.technique, institution_id=inst, entity=entity,
            entity_kind="src_ip", target=host_port(server, port), time_ms=time_ms,
            first_seen_ms=int(stat["t_start"]), window_ms=self.window_ms,
            severity=min(4, 1 + severity_from_margin(margin)), score=margin,
            confidence=alike * (1.0 - math.exp(-2.0 * margin)), features=feats,
            flow_ids=c["flow_id"][mine[:10]])

    def _forget(self) -> None:
        """Past ``max_pairs``, keep the half of the pairs seen most recently."""
        t = self._table.cols["t_last"]
        self._table.keep(t >= np.partition(t, len(t) // 2)[len(t) // 2])
