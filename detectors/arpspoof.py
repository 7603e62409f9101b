"""ARP spoofing (MITRE ATT&CK T1557.002, ARP cache poisoning) from the bindings taps report.

Input: :data:`finsa.wire.ARP` batches (an IPv4 address claimed by a MAC, with request, reply and
gratuitous counts; :mod:`finsa.collectors.meter.arp_bindings`). Per institution and VLAN the detector keeps, for
``window_ms`` of flow time, which MACs claimed each address and which addresses each MAC
claimed, and alerts on the two marks of a poisoner (the rules of arpwatch's "flip flop" and of
Zeek's ARP analysis, on bindings instead of single packets):

* **an address answered for by a second MAC** (``conflict``): a MAC *replies* for (or announces)
  an address another MAC claimed in the window. Severity 4.
* **a MAC answering for several addresses** (``impersonation``): a MAC *replies* for an address
  while it also claims another one, e.g. the gateway's address and its own. Severity 3, 4 when
  the address it answers for is also claimed by another MAC. Routers doing proxy ARP and hosts
  with secondary addresses do this legitimately: list them in ``allowed_macs``.

In a conflict the rightful owner answers for its address too: a MAC claiming only that address
is the suspect only when no other claimant claims several and it is the latest to appear.

entity = the poisoner's own address when it has one (an address it claimed without answering
for it, entity_kind ``src_ip``), else its MAC (entity_kind ``mac``); target = the address it
answers for. The evidence names both MACs and the counts. Alerts once per MAC and window.

>>> from finsa.wire import ARP
>>> spoof = ARP.make_batch({"first_seen_ms": [1000, 1000, 2000], "last_seen_ms": [1000, 1000, 2000],
...     "institution_id": "lab", "ip": ["172.16.0.1", "172.16.0.105", "172.16.0.1"],
...     "mac": [0x0025B3BF91EE, 0x0025B3BF91EE, 0x00260B310733], "replies": [1, 0, 1], "requests": [1, 1, 0]})
>>> [(a["entity"], a["target"], a["technique"], a["severity"]) for a in ArpSpoofDetector().process(spoof)]
[('172.16.0.105', '172.16.0.1', 'T1557.002', 4)]
"""

from __future__ import annotations

from typing import Any

from finsa.detectors.base import Detector, WindowDeduper, make_alert
from finsa.wire import RecordBatch, ips_to_strings

__all__ = ["ArpSpoofDetector", "mac_text"]


def mac_text(mac: int) -> str:
    """``00:25:b3:bf:91:ee`` for a 48-bit MAC held in an integer.

    >>> mac_text(0x0025B3BF91EE)
    '00:25:b3:bf:91:ee'
    """
    raw = int(mac).to_bytes(6, "big")
    return ":".join(f"{b:02x}" for b in raw)


class _Claim:
    """What one MAC said about one address in the window."""

    __slots__ = ("first_ms", "last_ms", "requests", "replies")

    def __init__(self) -> None:
        self.first_ms, self.last_ms, self.requests, self.replies = 1 << 62, 0, 0, 0


class ArpSpoofDetector(Detector):
    """See the module docstring; ``process`` takes ARP binding batches (FLOW batches are ignored)."""

    name = "arpspoof"
    technique = "T1557.002"
    record = "arp"

    def __init__(self, *, window_ms: int = 600_000, allowed_macs: tuple[str, ...] = (), max_bindings: int = 200_000,
                 seed: int = 0) -> None:
        super().__init__(window_ms=window_ms, seed=seed)
        self.allowed_macs = tuple(sorted(str(m).lower() for m in allowed_macs))
        self.max_bindings = max_bindings
        self._check(max_bindings=(max_bindings, 100, 1e8))
        self._claims: dict[tuple[str, int, str], dict[int, _Claim]] | None = None  # (inst, vlan, ip) -> mac -> claim
        self._by_mac: dict[tuple[str, int, int], set[str]] | None = None  # (inst, vlan, mac) -> addresses
        self._dedupe: WindowDeduper | None = None

    def process(self, batch: RecordBatch) -> list[dict[str, Any]]:
        if batch.type.name != "arp" or len(batch) == 0:
            return []
        if self._claims is None:
            self._claims, self._by_mac, self._dedupe = {}, {}, WindowDeduper(self.window_ms)
        cols = batch.columns
        ips = ips_to_strings(cols["ip"])
        touched: list[tuple[str, int, int, str]] = []
        for row, ip in enumerate(ips):
            inst, vlan, mac = str(cols["institution_id"][row]), int(cols["vlan_id"][row]), int(cols["mac"][row])
            claim = self._claims.setdefault((inst, vlan, ip), {}).setdefault(mac, _Claim())
            self._by_mac.setdefault((inst, vlan, mac), set()).add(ip)
            claim.first_ms = min(claim.first_ms, int(cols["first_seen_ms"][row]))
            claim.last_ms = max(claim.last_ms, int(cols["last_seen_ms"][row]))
            claim.requests += int(cols["requests"][row])
            claim.replies += int(cols["replies"][row]) + int(cols["gratuitous"][row])
            touched.append((inst, vlan, mac, ip))
        now_ms = int(cols["last_seen_ms"].max())
        self._expire(now_ms)
        alerts = [self._judge(inst, vlan, mac, ip) for inst, vlan, mac, ip in dict.fromkeys(touched)]
        return [a for a in alerts if a is not None]

    def _expire(self, now_ms: int) -> None:
        horizon = now_ms - self.window_ms
        for key, macs in list(self._claims.items()):
            for mac in [m for m, c in macs.items() if c.last_ms < horizon]:
                self._forget(key, mac)
        if len(self._claims) > self.max_bindings:  # bound the state: the stalest addresses go first
            stale = sorted(self._claims, key=lambda k: max(c.last_ms for c in self._claims[k].values()))
            for key in stale[:len(self._claims) - self.max_bindings]:
                for mac in list(self._claims[key]):
                    self._forget(key, mac)

    def _forget(self, key: tuple[str, int, str], mac: int) -> None:
        inst, vlan, ip = key
        del self._claims[key][mac]
        if not self._claims[key]:
            del self._claims[key]
        addresses = self._by_mac.get((inst, vlan, mac))
        if addresses is not None:
            addresses.discard(ip)
            if not addresses:
                del self._by_mac[(inst, vlan, mac)]

    def _addresses_of(self, inst: str, vlan: int, mac: int) -> dict[str, _Claim]:
        return {ip: self._claims[(inst, vlan, ip)][mac] for ip in self._by_mac.get((inst, vlan, mac), ())}

    def _newest_of_peers(self, inst: str, vlan: int, ip: str, mac: int) -> bool:
        """In a conflict over ``ip`` where ``mac`` claims nothing else: True when no other claimant
        claims several addresses (that one is the poisoner) and ``mac`` is the latest to appear."""
        macs = self._claims[(inst, vlan, ip)]
        if any(len(self._addresses_of(inst, vlan, m)) > 1 for m in macs if m != mac):
            return False
        return macs[mac].first_ms >= max(c.first_ms for m, c in macs.items() if m != mac)

    def _judge(self, inst: str, vlan: int, mac: int, ip: str) -> dict[str, Any] | None:
        claim = self._claims.get((inst, vlan, ip), {}).get(mac)
        if claim is None or claim.replies == 0 or mac_text(mac) in self.allowed_macs:
            return None  # only answering for an address poisons a cache
        others = {m: c for m, c in self._claims[(inst, vlan, ip)].items() if m != mac}
        mine = self._addresses_of(inst, vlan, mac)
        if len(mine) < 2 and (not others or not self._newest_of_peers(inst, vlan, ip, mac)):
            return None  # one address only: suspect in a conflict only when no peer looks worse
        own = sorted(a for a, c in mine.items() if c.replies == 0)
        kind = "conflict" if others else "impersonation"
        severity = 4 if others else 3
        entity, entity_kind = (own[0], "src_ip") if own else (mac_text(mac), "mac")
        # the first moment both halves of the evidence existed (a binding batch may span a while)
        other_claims = [c for a, c in mine.items() if a != ip] + list(others.values())
        seen_ms = max(claim.first_ms, min(c.first_ms for c in other_claims))
        if not self._dedupe.first(inst, entity, seen_ms):
            return None
        features = {"rule": kind, "mac": mac_text(mac), "vlan_id": vlan, "answers_for": ip,
                    "also_claims": sorted(a for a in mine if a != ip), "replies": claim.replies,
                    "requests": claim.requests, "other_macs": [mac_text(m) for m in sorted(others)]}
        return make_alert(detector=self.name, technique=self.technique, institution_id=inst, entity=entity,
                          entity_kind=entity_kind, target=ip, time_ms=seen_ms,
                          first_seen_ms=min(c.first_ms for c in mine.values()), window_ms=self.window_ms,
                          severity=severity, score=float(claim.replies + len(others)), confidence=0.9 if others else 0.7,
                          features=features)
