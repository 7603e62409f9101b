"""Unlabeled background noise: the failed connections every real network sees.

- Internet background radiation: outside hosts sending one or two SYNs to random addresses of
  an institution's public range on ports worms and bots probe (telnet, SMB, RDP, Redis, ADB...).
  Servers answer closed ports with a reset; unused addresses stay silent (the firewall drops).
- Stale configuration: a few workstations keep trying a decommissioned internal service and get
  a reset each time.

None of it is an attack in the ground truth; each source stays far below any scan threshold,
so a detector that alerts on it is noisy.

>>> sorted(RADIATION_PORTS)[:3]
[23, 445, 2323]
"""

from __future__ import annotations

import ipaddress

import numpy as np

from finsa.scenario import templates as tpl
from finsa.scenario.sessions import Sessions, instantiate
from finsa.scenario.traffic import Gen
from finsa.scenario.world import InstitutionSpec, World, ip

__all__ = ["RADIATION_PORTS", "background_noise"]

RADIATION_PORTS = (23, 2323, 445, 3389, 5555, 6379, 8291, 37215)


def _probes(g: Gen, t0: np.ndarray, src: np.ndarray, dst: np.ndarray, dport: np.ndarray,
            answered: np.ndarray, ttl_c: int) -> None:
    for template, sel in ((tpl.scan_closed(), answered), (tpl.scan_filtered(), ~answered)):
        m = int(sel.sum())
        s = Sessions.make(t0[sel], src[sel], dst[sel], g.rng.integers(1024, 65536, size=m), dport[sel],
                          g.rng.uniform(20, 120, size=m), isn_c=g.rng.integers(0, 1 << 32, size=m),
                          ttl_c=ttl_c, ttl_s=64)
        g.parts.append(instantiate(template, s, g.rng))


def radiation(g: Gen, inst: InstitutionSpec, rate: float) -> None:
    """Single probes from random outside hosts; business hours do not matter to bots."""
    n = int(g.rng.poisson(rate * g.duration_s))
    t0 = g.start_ns + np.sort(g.rng.integers(0, int(g.duration_s * 1e6), size=n)) * 1000
    src = (ip("198.18.0.0") + g.rng.integers(256, 65536 - 256, size=n)).astype(np.uint32)
    net = ipaddress.IPv4Network(inst.public_net)
    dst = (int(net.network_address) + g.rng.integers(1, net.num_addresses - 1, size=n)).astype(np.uint32)
    servers = np.array([inst.web, inst.bastion, inst.dns, inst.mail, inst.gateway, inst.api], np.uint32)
    dport = g.rng.choice(RADIATION_PORTS, size=n)
    _probes(g, t0, src, dst, dport, np.isin(dst, servers), ttl_c=45)


def stale_service(g: Gen, inst: InstitutionSpec, rate: float) -> None:
    """Workstations still configured for a retired file server get a reset every time."""
    t0 = g.arrivals(rate)
    n = len(t0)
    client = g.rng.choice(inst.workstations()[:6], size=n)
    retired = np.full(n, ip(f"10.{inst.index}.0.99"), np.uint32)
    _probes(g, t0, client, retired, np.full(n, 445), np.ones(n, bool), ttl_c=128)


def background_noise(g: Gen, world: World, scale: float = 1.0) -> None:
    for inst in world.institutions:
        radiation(g, inst, 0.25 * scale)
        stale_service(g, inst, 0.05 * scale * inst.size)
