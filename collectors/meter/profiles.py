"""Metering profiles: the rules that decide where one flow ends and how bytes are counted.

- ``nfstream``: nfstream's defaults (idle 120 s, active 1800 s, no TCP end rule, bytes = on-wire
  length from the capture record, VLAN in the key, non-first fragments in no flow);
- ``zeek``: Zeek's connection rules (TCP ends on FIN/RST and a later SYN starts a new
  connection, inactivity 5 min TCP / 1 min others, IP-level bytes);
- ``agent``: the live collector agent's default, short so detectors see flows within seconds
  (idle 15 s, active 60 s, end on FIN/RST, an unanswered SYN expires after 5 s, IP-level bytes).

>>> get_profile("agent", idle_timeout_ms=5000).idle_timeout_ms
5000
>>> get_profile("nfstream").idle_timeout_for(17)
120000
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from finsa.collectors.meter.decode import ALL_TUNNELS, TUNNEL_GTP, TUNNEL_IPIP
from finsa.errors import ConfigError

__all__ = ["MeterProfile", "PROFILES", "get_profile", "BYTES_WIRE", "BYTES_IP"]

BYTES_WIRE = "wire"  # on-wire length from the capture record, link layer included
BYTES_IP = "ip"  # IP total length of the (inner) packet


@dataclass(frozen=True)
class MeterProfile:
    """Timeouts and accounting rules of a flow meter; all times in milliseconds."""

    name: str
    idle_timeout_ms: int
    active_timeout_ms: int
    end_on_fin_rst: bool
    byte_accounting: str = BYTES_WIRE
    #: idle timeout for protocols other than TCP (0: same as idle_timeout_ms)
    other_idle_timeout_ms: int = 0
    #: a TCP flow that is only an unanswered SYN expires after this (0: no special rule)
    syn_timeout_ms: int = 0
    #: how long a closed (FIN both ways, or RST) TCP flow lingers for its last packets
    close_linger_ms: int = 5000
    vlan_in_key: bool = True
    tunnels: frozenset = ALL_TUNNELS

    def __post_init__(self) -> None:
        problems = []
        if self.idle_timeout_ms <= 0 or self.active_timeout_ms <= 0:
            problems.append("timeouts must be positive")
        if self.byte_accounting not in (BYTES_WIRE, BYTES_IP):
            problems.append(f"byte_accounting must be {BYTES_WIRE!r} or {BYTES_IP!r}")
        if problems:
            raise ConfigError(f"meter profile {self.name}", problems)

    def idle_timeout_for(self, protocol: int) -> int:
        if protocol != 6 and self.other_idle_timeout_ms:
            return self.other_idle_timeout_ms
        return self.idle_timeout_ms


PROFILES: dict[str, MeterProfile] = {
    "nfstream": MeterProfile("nfstream", 120_000, 1_800_000, False, BYTES_WIRE,
                             tunnels=frozenset({TUNNEL_IPIP, TUNNEL_GTP})),
    "zeek": MeterProfile("zeek", 300_000, 10**12, True, BYTES_IP, other_idle_timeout_ms=60_000,
                         close_linger_ms=5000),
    "agent": MeterProfile("agent", 15_000, 60_000, True, BYTES_IP, syn_timeout_ms=5000,
                          close_linger_ms=2000),
}


def get_profile(profile: str | MeterProfile, idle_timeout_ms: int | None = None,
                active_timeout_ms: int | None = None) -> MeterProfile:
    """A profile by name (or as given), with optional timeout overrides."""
    if isinstance(profile, str):
        if profile not in PROFILES:
            raise ConfigError("meter profile", [f"unknown profile {profile!r} (one of {', '.join(PROFILES)})"])
        profile = PROFILES[profile]
    changes: dict[str, Any] = {}
    if idle_timeout_ms is not None:
        changes["idle_timeout_ms"] = int(idle_timeout_ms)
        if profile.other_idle_timeout_ms:
            changes["other_idle_timeout_ms"] = int(idle_timeout_ms)
    if active_timeout_ms is not None:
        changes["active_timeout_ms"] = int(active_timeout_ms)
    return dataclasses.replace(profile, **changes) if changes else profile
