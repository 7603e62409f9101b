"""Who is in the scenario: the institutions, their hosts, and the outside world they talk to.

Every address is fictional. Institutions own an internal ``10.k.0.0/16`` and a /27 public
service range in the documentation blocks 192.0.2.0/24 and 198.51.100.0/24 (RFC 5737); the
attackers sit in 203.0.113.0/24; benign outside clients come from 198.18.0.0/16 and outside
servers (web sites, resolvers, mail relays) from 198.19.0.0/16 (RFC 2544 benchmarking space); the
SYN flood's bots sit apart from the other attackers, in 198.19.240.0/24 (a botnet shares no
prefix with a scanner: the campaign tracker links alerts by /24).
Host names are real-looking; their addresses are not the real ones.

>>> world = default_world()
>>> [i.id for i in world.institutions]
['bank-a', 'bank-b', 'sec-a', 'ins-a', 'pay-a', 'bank-c', 'sec-b', 'sec-c', 'ins-b', 'ins-c', 'pay-b', 'pay-c']
>>> ip_str(world.institutions[0].web), world.institutions[0].networks
('192.0.2.10', ['10.1.0.0/16', '192.0.2.0/27'])
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np

__all__ = ["InstitutionSpec", "World", "default_world", "sector_world", "ip", "ip_str", "registry_toml",
           "inventory_toml",            "SITES", "site_address", "owner_mask"]


def ip(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def ip_str(value: int) -> str:
    return str(ipaddress.IPv4Address(int(value)))


@dataclass(frozen=True)
class InstitutionSpec:
    """One institution with its address plan (public servers at fixed offsets of its /27)."""

    id: str
    name: str
    subsector: str
    region: str
    criticality: int
    city: str
    latitude: float
    longitude: float
    domain: str
    index: int          # k of 10.k.0.0/16
    public_net: str     # a /27
    size: float         # relative benign traffic volume

    @property
    def internal_net(self) -> str:
        return f"10.{self.index}.0.0/16"

    @property
    def networks(self) -> list[str]:
        return [self.internal_net, self.public_net]

    def _public(self, offset: int) -> int:
        return int(ipaddress.IPv4Network(self.public_net).network_address) + offset

    web = property(lambda self: self._public(10))
    bastion = property(lambda self: self._public(22))
    dns = property(lambda self: self._public(5))
    mail = property(lambda self: self._public(25))
    gateway = property(lambda self: self._public(20))   # outbound interbank connections
    api = property(lambda self: self._public(12))       # partner API (payment institutions)
    resolver = property(lambda self: ip(f"10.{self.index}.0.53"))

    def app_servers(self) -> np.ndarray:
        return np.array([ip(f"10.{self.index}.0.{20 + i}") for i in range(6)], dtype=np.uint32)

    def workstations(self, count: int = 120) -> np.ndarray:
        base = ip(f"10.{self.index}.1.0")
        return np.array([base + (i // 200) * 256 + 10 + i % 200 for i in range(count)], dtype=np.uint32)


@dataclass(frozen=True)
class World:
    institutions: tuple[InstitutionSpec, ...]
    scanner: int = ip("203.0.113.66")
    bruteforcer: int = ip("203.0.113.99")
    flood_net: str = "198.19.240.0/24"  # the SYN flood's bots
    upstream_resolver: int = ip("198.19.255.53")
    admin_client: int = ip("198.18.200.7")   # a legitimate administrator working from home
    c2_beacon: int = ip("203.0.113.45")      # a command-and-control server polled by an implant
    c2_dga: int = ip("203.0.113.47")         # the controller a DGA name finally resolves to
    tunnel_server: int = ip("203.0.113.53")  # authoritative name server of the tunnel domain
    web_attacker: int = ip("203.0.113.77")   # SQL injection and path traversal against a web site
    exfil_drop: int = ip("203.0.113.80")     # where stolen data is uploaded
    campaign_actor: int = ip("203.0.113.30")  # works through one subsector (scenario_campaign)

    def by_id(self, inst_id: str) -> InstitutionSpec:
        return next(i for i in self.institutions if i.id == inst_id)


#: Three institutions in every subsector of the default world, so that an institution's analyst
#: sees the sector aggregates by subsector (k-anonymity, k = 3: see finsa.storage.kanon). (Much
#: smaller sizes, 0.25, made a lone resolver's forwarding look like beaconing: a false alert.)
_K_ANONYMOUS = [
    ("bank-c", "Weserland Cooperative Bank", "bank", "north", 3, "Bremen", 53.0793, 8.8017, "weserlandbank.example", "192.0.2.96/27", 0.5),
    ("sec-b", "Rhine Valley Brokers", "securities", "west", 2, "Bonn", 50.7374, 7.0982, "rhinebrokers.example", "192.0.2.128/27", 0.4),
    ("sec-c", "Elbe Asset Partners", "securities", "east", 2, "Dresden", 51.0504, 13.7373, "elbeasset.example", "192.0.2.160/27", 0.4),
    ("ins-b", "Lakeland Mutual Insurance", "insurance", "south", 3, "Augsburg", 48.3705, 10.8978, "lakelandmutual.example", "192.0.2.192/27", 0.5),
    ("ins-c", "Hanse Life Assurance", "insurance", "north", 2, "Kiel", 54.3233, 10.1228, "hanselife.example", "192.0.2.224/27", 0.4),
    ("pay-b", "Lakeside Pay", "payment", "east", 3, "Leipzig", 51.3397, 12.3731, "lakesidepay.example", "198.51.100.64/27", 0.7),
    ("pay-c", "Quayside Transfers", "payment", "west", 3, "Dusseldorf", 51.2277, 6.7735, "quaysidetransfers.example", "198.51.100.96/27", 0.8),
]


def default_world() -> World:
    spec = [
        ("bank-a", "Northgate Bank", "bank", "west", 5, "Frankfurt", 50.1109, 8.6821, "northgatebank.example", "192.0.2.0/27", 1.4),
        ("bank-b", "Alpine Savings Bank", "bank", "south", 4, "Munich", 48.1351, 11.5820, "alpinesavings.example", "192.0.2.32/27", 1.0),
        ("sec-a", "Harbor Securities", "securities", "north", 3, "Hamburg", 53.5511, 9.9937, "harborsec.example", "192.0.2.64/27", 0.7),
        ("ins-a", "Riverside Insurance", "insurance", "west", 3, "Cologne", 50.9375, 6.9603, "riverside-ins.example", "198.51.100.0/27", 0.8),
        ("pay-a", "Meridian Payments", "payment", "east", 4, "Berlin", 52.5200, 13.4050, "meridianpay.example", "198.51.100.32/27", 1.1),
        *_K_ANONYMOUS,
    ]
    return World(tuple(InstitutionSpec(*row[:9], index=k + 1, public_net=row[9], size=row[10])
                       for k, row in enumerate(spec)))


#: The extra payment institutions of :func:`sector_world` (same columns as :func:`default_world`).
_MORE_PAYMENT = [
    ("pay-d", "Summit Card Services", "payment", "south", 4, "Stuttgart", 48.7758, 9.1829, "summitcard.example", "198.51.100.128/27", 0.9),
    ("pay-e", "Beacon Remit", "payment", "north", 2, "Hanover", 52.3759, 9.7320, "beaconremit.example", "198.51.100.160/27", 0.6),
]


def sector_world() -> World:
    """:func:`default_world` plus two more payment institutions (five in the subsector), for the
    sector-wide campaign (``attacks="sector"``).

    >>> [i.id for i in sector_world().institutions if i.subsector == "payment"]
    ['pay-a', 'pay-b', 'pay-c', 'pay-d', 'pay-e']
    """
    base = default_world().institutions
    more = tuple(InstitutionSpec(*row[:9], index=len(base) + k + 1, public_net=row[9], size=row[10])
                 for k, row in enumerate(_MORE_PAYMENT))
    return World(base + more)


def registry_toml(world: World) -> str:
    """The institutions file (``[[institution]]`` tables) read by :mod:`finsa.institutions`."""
    out = ["# Institutions of a generated finsa scenario (fictional names and addresses).", ""]
    for inst in world.institutions:
        nets = ", ".join(f'"{n}"' for n in inst.networks)
        out += ["[[institution]]", f'id = "{inst.id}"', f'name = "{inst.name}"',
                f'subsector = "{inst.subsector}"', f'region = "{inst.region}"',
                f"criticality = {inst.criticality}", f"networks = [{nets}]",
                f"latitude = {inst.latitude}", f"longitude = {inst.longitude}", ""]
    return "\n".join(out)


#: Asset kind of each institution's public web server, by subsector (the customer portal).
_PORTAL_KIND = {"bank": "online_banking", "securities": "trading", "payment": "online_banking"}


def _asset(inst: InstitutionSpec, service: str, kind: str, address: int, ports: list[int],
           criticality: int) -> list[str]:
    return ["[[asset]]", f'institution = "{inst.id}"', f'service = "{service}"', f'kind = "{kind}"',
            f'address = "{ip_str(address)}"', f"ports = {ports}", f"criticality = {criticality}",
            "exposed = true", ""]


def inventory_toml(world: World) -> str:
    """The inventory file (:mod:`finsa.sector.enrich` format) of the institutions' public services:
    the web portal, the SSH bastion (``remote_access``), the name server, the mail relay and, at
    payment institutions, the partner API gateway. The early warner uses it to warn institutions
    exposing the kind of service a campaign is attacking elsewhere.

    >>> text = inventory_toml(default_world())
    >>> text.count("[[asset]]"), 'kind = "remote_access"' in text
    (21, True)
    """
    out = ["# Public services of a generated finsa scenario's institutions (fictional addresses).", ""]
    for inst in world.institutions:
        crit = inst.criticality
        out += _asset(inst, f"{inst.domain} web portal", _PORTAL_KIND.get(inst.subsector, "other"), inst.web,
                      [80, 443], crit)
        out += _asset(inst, "SSH bastion", "remote_access", inst.bastion, [22], crit)
        out += _asset(inst, "name server", "dns", inst.dns, [53], max(1, crit - 1))
        out += _asset(inst, "mail relay", "other", inst.mail, [25], max(1, crit - 2))
        if inst.subsector == "payment":
            out += _asset(inst, "partner API gateway", "payment_gateway", inst.api, [443], crit)
    return "\n".join(out)


#: Outside sites that staff browse: (host name, port, relative popularity).
SITES: tuple[tuple[str, int, float], ...] = (
    ("www.google.com", 443, 10), ("outlook.office365.com", 443, 9), ("login.microsoftonline.com", 443, 7),
    ("teams.microsoft.com", 443, 6), ("www.bloomberg.com", 443, 4), ("www.reuters.com", 443, 3),
    ("www.ecb.europa.eu", 443, 3), ("www.bundesbank.de", 443, 2), ("www.bafin.de", 443, 2),
    ("github.com", 443, 2), ("www.linkedin.com", 443, 2), ("cdn.jsdelivr.net", 443, 2),
    ("update.googleapis.com", 443, 2), ("www.wikipedia.org", 443, 1.5), ("slack.com", 443, 1.5),
    ("www.ft.com", 443, 1.5), ("fonts.gstatic.com", 443, 2), ("api.refinitiv.com", 443, 1),
    ("www.swift.com", 443, 1), ("s3.eu-central-1.amazonaws.com", 443, 1.5), ("ocsp.digicert.com", 80, 2),
    ("ctldl.windowsupdate.com", 80, 1.5), ("crl.globalsign.com", 80, 0.5), ("www.handelsblatt.com", 443, 1),
)


def site_address(index: int) -> int:
    """The (fictional) address of site ``index`` of :data:`SITES`."""
    return ip("198.19.0.0") + 256 * (1 + index // 4) + 10 + 17 * (index % 4)


def owner_mask(addresses: np.ndarray, networks: list[str]) -> np.ndarray:
    """True where an IPv4 address (uint32) is in one of ``networks``."""
    mask = np.zeros(len(addresses), dtype=bool)
    for net in networks:
        n = ipaddress.IPv4Network(net)
        mask |= (addresses & np.uint32(int(n.netmask))) == np.uint32(int(n.network_address))
    return mask
