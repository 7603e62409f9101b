"""ARP on the institutions' LANs: routine address resolution, and one ARP poisoning attack.

Routine: workstations ask for their gateway (``10.k.0.1``, the tap's router
:data:`~finsa.scenario.packets.GATEWAY_MAC`) and the gateway answers for itself; app
servers announce themselves now and then (gratuitous ARP). Nobody answers for an address that is
not theirs.

``arp_spoof`` (T1557.002): a compromised workstation at :data:`SPOOF_TARGET` first resolves an
app server as itself, then keeps telling the LAN that the gateway's address is at its own MAC
(unsolicited replies every couple of seconds): a man in the middle between the workstations and
the gateway. Ground truth: the attacker is the workstation, the victim address the gateway's.

Frames are raw Ethernet (ARP has no IP header); :func:`arp_frames` returns them per institution
for the capture writer, with the ground-truth entry.

>>> import numpy as np
>>> from finsa.scenario.traffic import Gen
>>> from finsa.scenario.payloads import PayloadTable
>>> from finsa.scenario.world import default_world
>>> g = Gen(np.random.default_rng(1), PayloadTable(), 1_772_442_000_000, 100.0)
>>> frames, truth = arp_frames(g, default_world())
>>> truth["attack"], truth["attacker"], truth["victims"][0]["address"], len(frames["sec-a"]) > 10
('arp_spoof', '10.3.1.66', '10.3.0.1', True)
"""

from __future__ import annotations

import struct

import numpy as np

from finsa.scenario.attacks import TECHNIQUES, window_ns
from finsa.scenario.packets import GATEWAY_MAC
from finsa.scenario.traffic import Gen
from finsa.scenario.world import InstitutionSpec, World, ip, ip_str

__all__ = ["arp_frames", "SPOOF_TARGET", "SPOOF_WINDOW"]

SPOOF_TARGET = "sec-a"
SPOOF_WINDOW = (0.30, 0.70)
_BROADCAST = b"\xff" * 6
_REQUEST, _REPLY = 1, 2


def _mac(address: int) -> bytes:
    """A host's (fictional, locally administered) MAC, derived from its address."""
    return bytes([0x02, 0x00]) + int(address).to_bytes(4, "big")


def _arp(op: int, sha: bytes, spa: int, tha: bytes, tpa: int, eth_dst: bytes) -> bytes:
    body = struct.pack(">HHBBH", 1, 0x0800, 6, 4, op) + sha + spa.to_bytes(4, "big") + tha + tpa.to_bytes(4, "big")
    return (eth_dst + sha + b"\x08\x06" + body).ljust(60, b"\x00")  # padded to the Ethernet minimum


def _routine(g: Gen, inst: InstitutionSpec) -> list[tuple[int, bytes]]:
    gateway = ip(f"10.{inst.index}.0.1")
    frames: list[tuple[int, bytes]] = []
    stations = inst.workstations()
    for t in g.arrivals(0.4):  # a workstation's cache entry for the gateway expired
        who = int(stations[g.rng.integers(len(stations))])
        frames.append((int(t), _arp(_REQUEST, _mac(who), who, bytes(6), gateway, _BROADCAST)))
        frames.append((int(t) + 180_000, _arp(_REPLY, GATEWAY_MAC, gateway, _mac(who), who, _mac(who))))
    for server in inst.app_servers().tolist():  # gratuitous announcements
        t = g.start_ns + int(g.rng.uniform(0, g.duration_s) * 1e6) * 1000
        frames.append((t, _arp(_REQUEST, _mac(server), server, bytes(6), server, _BROADCAST)))
    return frames


def _spoof(g: Gen, inst: InstitutionSpec) -> tuple[list[tuple[int, bytes]], dict]:
    gateway, attacker = ip(f"10.{inst.index}.0.1"), ip(f"10.{inst.index}.1.66")
    server = int(inst.app_servers()[0])
    t_lo, t_hi = window_ns(g, *SPOOF_WINDOW)
    mine = _mac(attacker)
    frames = [(t_lo, _arp(_REQUEST, mine, attacker, bytes(6), server, _BROADCAST))]
    times = np.arange(t_lo + 500_000_000, t_hi, 2_000_000_000, dtype=np.int64)
    victims = inst.workstations(40)
    for k, t in enumerate(times.tolist()):  # unsolicited "gateway is-at me" to one victim after another
        victim = int(victims[k % len(victims)])
        frames.append((t, _arp(_REPLY, mine, gateway, _mac(victim), victim, _mac(victim))))
    span = {"institution": inst.id, "address": ip_str(gateway), "start_ms": t_lo // 1_000_000,
            "end_ms": -(-int(times[-1]) // 1_000_000)}
    truth = {"attack": "arp_spoof", "technique": TECHNIQUES["arp_spoof"], "attacker": ip_str(attacker),
             "victims": [span], "start_ms": span["start_ms"], "end_ms": span["end_ms"]}
    return frames, truth


def arp_frames(g: Gen, world: World, attack: bool = True) -> tuple[dict[str, list[tuple[int, bytes]]], dict | None]:
    """(institution -> [(ts_ns, frame)], the ``arp_spoof`` ground-truth entry or None)."""
    frames = {inst.id: _routine(g, inst) for inst in world.institutions}
    truth = None
    if attack:
        spoof, truth = _spoof(g, world.by_id(SPOOF_TARGET))
        frames[SPOOF_TARGET] += spoof
    return {k: sorted(v) for k, v in frames.items()}, truth
