"""Command-and-control attacks of the scenario: DNS tunnelling, DGA look-ups, beaconing.

Each infects one workstation of one institution; the workstation's DNS goes through the
institution's resolver, which forwards every name it cannot answer from its cache to the
upstream resolver (both legs are in the capture, as at a real tap).

- ``dns_tunnel`` (T1071.004): dnscat-like TXT queries, about three a second, whose names are
  long hex labels under one domain; the answers carry hex too. The tunnel server behind the
  domain's name server is ``attacker``; it appears in no packet (only resolvers talk to it).
- ``dga`` (T1568.002): random-looking names under many top-level domains, each answered
  "no such name", until one resolves to the controller; a few TLS sessions to it follow.
- ``beaconing`` (T1071): small TLS sessions to one outside address every ~10 s (+-10 %
  jitter) for the whole run.

Entries add ``domain`` (the attack's domain name) and ``relays`` (the resolver that carried its
queries) to the common ground-truth fields.

>>> names = tunnel_names(np.random.default_rng(1), 2, "cdn-telemetry.example")
>>> len(names), names[0].endswith(".cdn-telemetry.example"), len(names[0].split(".")[0])
(2, True, 62)
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from finsa.scenario import templates as tpl
from finsa.scenario.attacks import entry, victim, window_ns
from finsa.scenario.packets import Packets
from finsa.scenario.payloads import (QTYPE_TXT, dns_answer, dns_nxdomain, dns_query,
                                                 dns_txt_answer, tls_client_hello, tls_server_flight)
from finsa.scenario.sessions import Sessions, instantiate
from finsa.scenario.traffic import Gen
from finsa.scenario.world import InstitutionSpec, World, ip_str

__all__ = ["SCHEDULE", "TUNNEL_DOMAIN", "BEACON_NAME", "tunnel_names", "dga_names", "resolved_dns",
           "dns_tunnel", "dga", "beaconing"]

SCHEDULE = {"dns_tunnel": (0.12, 0.50), "dga": (0.20, 0.62), "beaconing": (0.02, 0.97)}
TARGETS = {"dns_tunnel": ("sec-a", 37), "dga": ("pay-a", 52), "beaconing": ("bank-a", 81)}
TUNNEL_DOMAIN, BEACON_NAME = "cdn-telemetry.example", "static.cloudassets-cdn.example"
_DGA_TLDS = ("com", "net", "org", "info", "biz", "ru", "top", "xyz")


def tunnel_names(rng: np.random.Generator, n: int, domain: str) -> list[str]:
    """dnscat-like names: a 62-hex-digit label, a shorter hex label, then ``domain``."""
    tail = rng.integers(8, 48, size=n) // 2 * 2
    return [f"{rng.bytes(31).hex()}.{rng.bytes(int(k) // 2).hex()}.{domain}" for k in tail]


def dga_names(rng: np.random.Generator, n: int) -> list[str]:
    """Random letter strings of 10-19 characters under assorted top-level domains."""
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
    lengths = rng.integers(10, 20, size=n)
    tlds = rng.choice(_DGA_TLDS, size=n)
    return [bytes(rng.choice(letters, size=int(k))).decode() + "." + str(t) for k, t in zip(lengths, tlds)]


def _exchange(g: Gen, t0: np.ndarray, client: ArrayLike, server: ArrayLike, queries: np.ndarray,
              answers: np.ndarray, rtt_ms: np.ndarray) -> Packets:
    n = len(t0)
    s = Sessions.make(t0, client, server, g.ports(n, False), 53, rtt_ms, payloads={"q": queries, "a": answers},
                      ttl_c=64, ttl_s=64)
    part = instantiate(tpl.dns(), s, g.rng, g.table.lengths())
    g.parts.append(part)
    return part


def resolved_dns(g: Gen, world: World, inst: InstitutionSpec, t0: np.ndarray, client: int,
                 queries: np.ndarray, answers: np.ndarray) -> Packets:
    """Look-ups the resolver cannot answer itself: client -> resolver -> upstream and back."""
    upstream_rtt = g.rng.uniform(12, 40, size=len(t0))
    _exchange(g, t0 + 300_000, inst.resolver, world.upstream_resolver, queries, answers, upstream_rtt)
    return _exchange(g, t0, client, inst.resolver, queries, answers, upstream_rtt + 1.0)


def dns_tunnel(g: Gen, world: World, rate_per_s: float = 3.0) -> dict:
    inst, host = _target(world, "dns_tunnel")
    t_lo, t_hi = window_ns(g, *SCHEDULE["dns_tunnel"])
    n = max(1, int(rate_per_s * (t_hi - t_lo) / 1e9))
    t0 = t_lo + np.sort(g.rng.integers(0, (t_hi - t_lo) // 1000, size=n)) * 1000
    names = tunnel_names(g.rng, n, TUNNEL_DOMAIN)
    txid = g.rng.integers(0, 1 << 16, size=n)
    q = g.add_all(dns_query(int(t), name, QTYPE_TXT) for t, name in zip(txid, names))
    a = g.add_all(dns_txt_answer(int(t), name, g.rng.bytes(int(k)).hex().encode())
                  for t, name, k in zip(txid, names, g.rng.integers(20, 110, size=n)))
    part = resolved_dns(g, world, inst, t0, host, q, a)
    found = entry("dns_tunnel", world.tunnel_server, [victim(part, host, inst.id)])
    return {**found, "domain": TUNNEL_DOMAIN, "relays": [ip_str(inst.resolver)]}


def dga(g: Gen, world: World, rate_per_s: float = 1.5, c2_sessions: int = 4) -> dict:
    inst, host = _target(world, "dga")
    t_lo, t_hi = window_ns(g, *SCHEDULE["dga"])
    span = (t_hi - t_lo) * 0.7  # the last 30 % of the window: talking to the controller
    n = max(2, int(rate_per_s * span / 1e9))
    t0 = t_lo + np.sort(g.rng.integers(0, int(span) // 1000, size=n)) * 1000
    names = dga_names(g.rng, n)
    txid = g.rng.integers(0, 1 << 16, size=n)
    q = g.add_all(dns_query(int(t), name) for t, name in zip(txid, names))
    a = g.add_all(dns_nxdomain(int(t), name) for t, name in zip(txid, names))
    a[-1] = g.table.add(dns_answer(int(txid[-1]), names[-1], int(world.c2_dga).to_bytes(4, "big"), 60))
    parts = [resolved_dns(g, world, inst, t0, host, q, a)]
    first = int(t0[-1]) + 60_000_000
    starts = first + np.sort(g.rng.integers(0, max(1, (t_hi - first) // 1000 - 2_000_000), size=c2_sessions)) * 1000
    parts.append(_small_tls(g, starts, host, world.c2_dga, names[-1], rtt_ms=45.0))
    found = entry("dga", world.c2_dga, [victim(Packets.concat(parts), host, inst.id)])
    return {**found, "domain": names[-1], "relays": [ip_str(inst.resolver)]}


def beaconing(g: Gen, world: World, period_s: float = 10.0, jitter: float = 0.1) -> dict:
    inst, host = _target(world, "beaconing")
    t_lo, t_hi = window_ns(g, *SCHEDULE["beaconing"])
    gaps = period_s * 1e9 * g.rng.uniform(1 - jitter, 1 + jitter, size=int(g.duration_s / period_s) + 2)
    t0 = t_lo + np.concatenate([[0], np.cumsum(gaps)]).astype(np.int64) // 1000 * 1000
    t0 = t0[t0 < t_hi - 1_000_000_000]
    txid = int(g.rng.integers(0, 1 << 16))
    q = np.array([g.table.add(dns_query(txid, BEACON_NAME))], np.int32)
    a = np.array([g.table.add(dns_answer(txid, BEACON_NAME, int(world.c2_beacon).to_bytes(4, "big")))], np.int32)
    parts = [resolved_dns(g, world, inst, t0[:1] - 40_000_000, host, q, a)]
    parts.append(_small_tls(g, t0, host, world.c2_beacon, BEACON_NAME, rtt_ms=38.0))
    found = entry("beaconing", world.c2_beacon, [victim(Packets.concat(parts), host, inst.id)])
    return {**found, "domain": BEACON_NAME, "relays": [ip_str(inst.resolver)]}


def _small_tls(g: Gen, t0: np.ndarray, client: int, server: int, name: str, rtt_ms: float) -> Packets:
    """Check-ins: TLS sessions with a small request and a small answer, nearly the same each time."""
    n = len(t0)
    nonce = g.rng.integers(0, 1 << 62, size=n)
    cols = {"hello": g.add_all(tls_client_hello(name, f"c2/{k}") for k in nonce),
            "sflight": g.add_all(tls_server_flight(1300, f"c2/{k}") for k in nonce),
            "cert": g.fill(700, 760, n), "req": g.fill(180, 230, n, b"\x17\x03\x03"),
            "full": g.fill(1448, 1448, n), "last": g.fill(90, 140, n, b"\x17\x03\x03")}
    g.tcp(tpl.https(1), t0, client, server, g.ports(n), 443, rtt_ms * g.rng.uniform(0.9, 1.2, size=n), cols,
          ttl_s=50)
    return g.parts[-1]


def _target(world: World, kind: str) -> tuple[InstitutionSpec, int]:
    inst_id, k = TARGETS[kind]
    inst = world.by_id(inst_id)
    return inst, int(inst.workstations()[k])
