"""The labeled attacks of the scenario and their ground truth.

- ``port_scan`` (T1046): one outside host SYN-scans ~200 ports on two public servers of each of
  three institutions, one after another; closed ports answer RST-ACK, open ones SYN-ACK (the
  scanner then resets), a few are filtered (no answer).
- ``syn_flood`` (T1499.001): a small botnet sends thousands of SYNs from random source ports
  to one institution's web server for about 20 s; the server answers most with a SYN-ACK that
  nobody acknowledges.
- ``ssh_bruteforce`` (T1110): one host opens dozens of short SSH sessions to another
  institution's bastion (handshake, key exchange, a few failed logins, FIN).

Windows are fractions of the run, so every attack lies between 10 % and 80 % of it (10-80 s of
the default 100 s). Each victim's ``start_ms``/``end_ms`` spans every packet between the attack
and that address; the attack's span covers its victims.

>>> SCHEDULE["syn_flood"]
(0.45, 0.65)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from finsa.scenario import templates as tpl
from finsa.scenario.packets import Packets
from finsa.scenario.payloads import ssh_banner, ssh_kexinit
from finsa.scenario.sessions import Sessions, instantiate
from finsa.scenario.traffic import Gen
from finsa.scenario.world import World, ip, ip_str

__all__ = ["SCHEDULE", "TECHNIQUES", "attacks", "port_scan", "syn_flood", "ssh_bruteforce", "window_ns",
           "victim", "entry", "scan_host", "bruteforce_sessions"]

#: Fraction of the run each attack occupies; the scan's window is shared by its three victims.
SCHEDULE = {"port_scan": (0.10, 0.46), "syn_flood": (0.45, 0.65), "ssh_bruteforce": (0.58, 0.80)}
TECHNIQUES = {"port_scan": "T1046", "syn_flood": "T1499.001", "ssh_bruteforce": "T1110",
              "dns_tunnel": "T1071.004", "dga": "T1568.002", "beaconing": "T1071", "exfiltration": "T1048",
              "lateral_movement": "T1021", "web_attack": "T1190", "arp_spoof": "T1557.002"}
SCAN_TARGETS = ("bank-a", "sec-a", "pay-a")
FLOOD_TARGET, BRUTEFORCE_TARGET = "bank-b", "ins-a"

_COMMON_PORTS = (21, 22, 23, 25, 53, 80, 110, 111, 135, 139, 143, 443, 445, 465, 587, 993, 995,
                 1433, 1521, 1723, 2049, 3306, 3389, 5432, 5900, 6379, 8000, 8080, 8443, 9200)


def _scan_ports(g: Gen, count: int = 200) -> np.ndarray:
    others = np.setdiff1d(np.arange(1, 10000), _COMMON_PORTS)
    extra = g.rng.choice(others, size=count - len(_COMMON_PORTS), replace=False)
    return g.rng.permutation(np.concatenate([_COMMON_PORTS, extra]))


def window_ns(g: Gen, lo: float, hi: float) -> tuple[int, int]:
    return (g.start_ns + int(lo * g.duration_s * 1e6) * 1000, g.start_ns + int(hi * g.duration_s * 1e6) * 1000)


def victim(part: Packets, address: int, institution: str) -> dict:
    rows = (part.src == address) | (part.dst == address)
    ts = part.ts_ns[rows]
    return {"institution": institution, "address": ip_str(address),
            "start_ms": int(ts.min() // 1_000_000), "end_ms": int(-(-ts.max() // 1_000_000))}


def scan_host(g: Gen, attacker: int, host: int, open_ports: set[int], t_lo: int, t_hi: int) -> Packets:
    """A SYN scan of ~200 ports of ``host`` in [t_lo, t_hi); ``open_ports`` answer SYN-ACK."""
    ports = _scan_ports(g)
    n = len(ports)
    t0 = t_lo + np.sort(g.rng.integers(0, (t_hi - t_lo) // 1000, size=n)) * 1000
    is_open = np.isin(ports, sorted(open_ports))
    filtered = ~is_open & (g.rng.random(n) < 0.05)
    sport = int(g.rng.integers(40000, 65000))
    isn_s = np.where(is_open, g.rng.integers(0, 1 << 32, size=n), 0)  # a reset to a SYN has seq 0
    parts = []
    for template, sel in ((tpl.scan_open(), is_open), (tpl.scan_closed(), ~is_open & ~filtered),
                          (tpl.scan_filtered(), filtered)):
        m = int(sel.sum())
        s = Sessions.make(t0[sel], attacker, host, sport, ports[sel], 35.0,
                          isn_c=g.rng.integers(0, 1 << 32, size=m), isn_s=isn_s[sel], ttl_c=49, ttl_s=64)
        parts.append(instantiate(template, s, g.rng))
    return Packets.concat(parts)


def port_scan(g: Gen, world: World) -> dict:
    lo, hi = SCHEDULE["port_scan"]
    targets = [world.by_id(t) for t in SCAN_TARGETS]
    hosts = [(inst, host, ports) for inst in targets
             for host, ports in ((inst.web, {80, 443}), (inst.bastion, {22}))]
    edges = np.linspace(lo, hi, len(hosts) + 1)
    victims = []
    for k, (inst, host, open_ports) in enumerate(hosts):
        t_lo, t_hi = window_ns(g, edges[k], edges[k + 1] - 0.005)
        part = scan_host(g, world.scanner, host, open_ports, t_lo, t_hi)
        g.parts.append(part)
        victims.append(victim(part, host, inst.id))
    return entry("port_scan", world.scanner, victims)


def syn_flood(g: Gen, world: World, syn_per_s: float = 350.0, bots: int = 8) -> dict:
    inst = world.by_id(FLOOD_TARGET)
    t_lo, t_hi = window_ns(g, *SCHEDULE["syn_flood"])
    n = int(syn_per_s * (t_hi - t_lo) / 1e9)
    ramp = np.sqrt(g.rng.random(n)) if n else np.zeros(0)  # the rate climbs at first
    offset = np.where(g.rng.random(n) < 0.1, ramp * 0.1, g.rng.uniform(0.1, 1.0, size=n))
    t0 = t_lo + np.sort((offset * (t_hi - t_lo) / 1000).astype(np.int64)) * 1000
    share = 1.0 / np.arange(1, bots + 1) ** 0.7
    sources = ip(world.flood_net.split("/")[0]) + 131 + np.arange(bots, dtype=np.uint32)
    src = sources[g.rng.choice(bots, size=n, p=share / share.sum())]
    answered = g.rng.random(n) < 0.7
    for template, sel in ((tpl.syn_synack(), answered), (tpl.syn_only(), ~answered)):
        m = int(sel.sum())
        s = Sessions.make(t0[sel], src[sel], inst.web, g.rng.integers(1024, 65536, size=m), 443,
                          g.rng.uniform(20, 40, size=m), isn_c=g.rng.integers(0, 1 << 32, size=m),
                          isn_s=g.rng.integers(0, 1 << 32, size=m), ttl_c=50, ttl_s=64)
        g.parts.append(instantiate(template, s, g.rng))
    part = Packets.concat(g.parts[-2:])
    found = entry("syn_flood", int(sources[0]), [victim(part, inst.web, inst.id)])
    found["sources"] = [ip_str(int(a)) for a in sources]
    return found


def ssh_bruteforce(g: Gen, world: World, sessions: int = 40, attempts: int = 3) -> dict:
    inst = world.by_id(BRUTEFORCE_TARGET)
    t_lo, t_hi = window_ns(g, *SCHEDULE["ssh_bruteforce"])
    part = bruteforce_sessions(g, world.bruteforcer, inst.bastion, t_lo, t_hi, sessions, attempts)
    return entry("ssh_bruteforce", world.bruteforcer, [victim(part, inst.bastion, inst.id)])


def bruteforce_sessions(g: Gen, attacker: int, bastion: int, t_lo: int, t_hi: int, sessions: int = 40,
                        attempts: int = 3) -> Packets:
    """Short SSH sessions (banner, key exchange, ``attempts`` failed logins) started in [t_lo, t_hi)."""
    span = (t_hi - t_lo) * 0.85  # the last session must end inside the window
    t0 = t_lo + (np.sort(g.rng.uniform(0, 1, size=sessions)) * span / 1000).astype(np.int64) * 1000
    cols: dict[str, Any] = {"sbanner": g.table.add(ssh_banner("OpenSSH_8.9p1 Ubuntu-3ubuntu0.10")),
            "cbanner": g.table.add(ssh_banner("libssh_0.9.6")),
            "ckex": g.table.add(ssh_kexinit("hydra", 1016)), "skex": g.table.add(ssh_kexinit("bastion", 1080)),
            "cdh": g.table.filler(48), "sdh": g.table.filler(564), "cnew": g.table.filler(64),
            "snew": g.table.filler(52), "auth": g.fill(84, 116, sessions), "fail": g.table.filler(52)}
    g.tcp(tpl.ssh_bruteforce(attempts), t0, attacker, bastion, g.ports(sessions, False), 22, 28.0, cols, ttl_c=50)
    return g.parts[-1]


def entry(kind: str, attacker: int, victims: list[dict]) -> dict:
    return {"attack": kind, "technique": TECHNIQUES[kind], "attacker": ip_str(attacker), "victims": victims,
            "start_ms": min(v["start_ms"] for v in victims), "end_ms": max(v["end_ms"] for v in victims)}


def attacks(g: Gen, world: World) -> list[dict]:
    """Add every attack's packets to ``g.parts``; return the ground-truth entries, numbered."""
    entries = [port_scan(g, world), syn_flood(g, world), ssh_bruteforce(g, world)]
    return [{"id": f"{e['attack']}-{k + 1}", **e} for k, e in enumerate(entries)]
