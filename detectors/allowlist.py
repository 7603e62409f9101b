"""Alert allowlist: known, accepted sources (a vulnerability scanner, a backup job) never alert.

An :class:`AllowEntry` names an ``entity`` (an address or a CIDR range), optionally the
detectors and institutions it applies to (default: all), why it is accepted (``reason``, required:
an allowlist entry nobody can explain is a hole), and when the acceptance ends (``expires``, a
time with a zone). An alert is suppressed when its ``entity`` lies in the range, its detector and
institution match, and its **flow time** (``time_ms``) is before the expiry: like the detectors,
the allowlist never reads the wall clock, so a replay gives the same alerts as live traffic.

>>> entry = AllowEntry(entity="10.1.2.0/24", detectors=["portscan"], reason="weekly vulnerability scan",
...                    expires="2027-01-01T00:00:00Z")
>>> allow = Allowlist([entry])
>>> allow.allows("portscan", "bank-a", "10.1.2.3", 1_750_000_000_000)
True
>>> allow.allows("bruteforce", "bank-a", "10.1.2.3", 1_750_000_000_000)
False
>>> allow.allows("portscan", "bank-a", "10.1.2.3", 1_800_000_000_000)  # 2027-01-15: expired
False
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from pydantic import AwareDatetime, Field, field_validator

from finsa.settings import Strict

__all__ = ["AllowEntry", "Allowlist"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AllowEntry(Strict):
    """One accepted source: alerts about ``entity`` are suppressed (see the module docstring)."""

    entity: str = Field(description="address or CIDR range, e.g. 10.1.2.3 or 10.1.2.0/24")
    detectors: list[str] | None = Field(None, description="detector names it applies to (default: all)")
    institutions: list[str] | None = Field(None, description="institution ids it applies to (default: all)")
    reason: str = Field(min_length=1, description="why these alerts are accepted")
    expires: AwareDatetime | None = Field(None, description="end of the acceptance (flow time)")

    @field_validator("entity")
    @classmethod
    def _entity_is_a_network(cls, value: str) -> str:
        try:
            ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            raise ValueError(f"{value!r} is not an address or CIDR range") from None
        return value.strip()

    @field_validator("detectors")
    @classmethod
    def _detectors_known(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        from finsa.detectors.registry import names  # late: the registry may grow at run time

        unknown = sorted(set(value) - set(names()))
        if unknown:
            raise ValueError(f"unknown detector(s) {', '.join(unknown)} (known: {', '.join(names())})")
        return value

    @property
    def network(self) -> _Network:
        return ipaddress.ip_network(self.entity, strict=False)

    @property
    def expires_ms(self) -> int | None:
        return None if self.expires is None else int(self.expires.timestamp() * 1000)


@dataclass(frozen=True)
class _Rule:
    network: _Network
    detectors: frozenset[str] | None
    institutions: frozenset[str] | None
    expires_ms: int | None


def _address(entity: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(entity.strip("[]"))
    except ValueError:
        return None
    return ip.ipv4_mapped or ip if isinstance(ip, ipaddress.IPv6Address) else ip


class Allowlist:
    """The compiled entries: a fast yes/no per alert; picklable."""

    def __init__(self, entries: Iterable[AllowEntry] = ()) -> None:
        self.entries = tuple(entries)
        self._rules = tuple(
            _Rule(e.network, None if e.detectors is None else frozenset(e.detectors),
                  None if e.institutions is None else frozenset(e.institutions), e.expires_ms)
            for e in self.entries)

    def __len__(self) -> int:
        return len(self._rules)

    def allows(self, detector: str, institution_id: str, entity: str, time_ms: int) -> bool:
        """True when an entry suppresses this alert."""
        if not self._rules:
            return False
        ip = _address(entity)
        if ip is None:
            return False
        for rule in self._rules:
            if ((rule.expires_ms is None or time_ms < rule.expires_ms)
                    and (rule.detectors is None or detector in rule.detectors)
                    and (rule.institutions is None or institution_id in rule.institutions)
                    and ip.version == rule.network.version and ip in rule.network):
                return True
        return False

    def split(self, rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(kept, suppressed) alert rows."""
        if not self._rules:
            return list(rows), []
        kept: list[dict[str, Any]] = []
        suppressed: list[dict[str, Any]] = []
        for row in rows:
            hit = self.allows(row["detector"], row["institution_id"], row["entity"], int(row["time_ms"]))
            (suppressed if hit else kept).append(row)
        return kept, suppressed
