"""Clear addresses <-> pseudonyms, on the institution's side only (the key never leaves the agent).

The centre stores an institution's internal addresses as pseudonyms
(:mod:`finsa.collectors.agent.pseudonym`) and never has the key. The institution's analyst
still reads and searches its own addresses in clear: the agent's loopback endpoint
(:class:`~finsa.collectors.agent.endpoint.LocalEndpoint`: ``GET /translate?address=X``, or many
addresses in one ``POST /translate``)
answers with the pseudonym of an internal address (to search the centre's flows) or the clear
address behind a pseudonym (to read an alert). Crypto-PAn is a bijection computed bit by bit
from the address's own prefix, so it is inverted bit by bit with the same pseudorandom bits.

>>> from finsa.collectors.agent.pseudonym import Pseudonymiser
>>> p = Pseudonymiser(bytes(range(32)), ["10.0.0.0/8"])
>>> alias = pseudonym_of(p, "10.1.2.3")
>>> alias != "10.1.2.3", clear_of(p, alias), pseudonym_of(p, "192.0.2.1")
(True, '10.1.2.3', '192.0.2.1')
"""

from __future__ import annotations

import ipaddress

import numpy as np

from finsa.collectors.agent.pseudonym import Pseudonymiser
from finsa.wire import ips_from_strings, ips_to_strings

__all__ = ["pseudonym_of", "clear_of", "translate", "translate_many", "MAX_BATCH"]


def pseudonym_of(p: Pseudonymiser, address: str) -> str:
    """What the centre stores for ``address`` (itself when it is not internal)."""
    return ips_to_strings(p.apply(ips_from_strings([str(ipaddress.ip_address(address))])))[0]


def clear_of(p: Pseudonymiser, pseudonym: str) -> str | None:
    """The internal address whose pseudonym this is, or None when no internal address maps to it."""
    ip = ipaddress.ip_address(pseudonym)
    width = ip.max_prefixlen
    out_bits = np.unpackbits(np.frombuffer(ip.packed, dtype=np.uint8))
    prefix = np.zeros(width, dtype=np.uint8)
    for level in range(width):
        flip = p._prf(width, level, np.packbits(prefix).tobytes())
        prefix[level] = out_bits[level] ^ flip
    clear = ipaddress.ip_address(np.packbits(prefix).tobytes())
    inside = any(clear.version == n.version and clear in n for n in map(ipaddress.ip_network, p.networks))
    return str(clear) if inside else None


def translate(p: Pseudonymiser, address: str) -> dict[str, str | None]:
    """Both readings of an address: its pseudonym, and the internal address it stands for."""
    return {"address": address, "pseudonym": pseudonym_of(p, address), "clear": clear_of(p, address)}


#: Addresses one batch request may carry (a result table's worth).
MAX_BATCH = 1000


def _within(net: ipaddress.IPv4Network | ipaddress.IPv6Network, networks: list) -> bool:
    """Whether ``net`` lies wholly inside one of ``networks``."""
    return any(net.version == n.version and net.network_address in n and net.prefixlen >= n.prefixlen
               for n in networks)


def _network_reading(p: Pseudonymiser, text: str) -> dict[str, str | None]:
    """A CIDR's readings: prefix-preserving, so a network wholly inside an internal network maps to
    the network of its address's pseudonym (and back); any other network stays as it is."""
    net = ipaddress.ip_network(text, strict=False)
    internal = [ipaddress.ip_network(n) for n in p.networks]

    def masked(address: str | None) -> str | None:
        return None if address is None else str(ipaddress.ip_network(f"{address}/{net.prefixlen}", strict=False))

    pseudonym = masked(pseudonym_of(p, str(net.network_address))) if _within(net, internal) else str(net)
    clear = masked(clear_of(p, str(net.network_address)))
    if clear is not None and not _within(ipaddress.ip_network(clear), internal):
        clear = None
    return {"address": text, "pseudonym": pseudonym, "clear": clear}


def translate_many(p: Pseudonymiser, items: list) -> list[dict[str, str | None]]:
    """:func:`translate` of each item (addresses or CIDR networks); ValueError naming the first bad one.

    >>> p = Pseudonymiser(bytes(range(32)), ["10.0.0.0/8"])
    >>> host, net = translate_many(p, ["10.1.2.3", "10.1.2.0/24"])
    >>> net["pseudonym"] == host["pseudonym"].rsplit(".", 1)[0] + ".0/24", net["clear"] is None
    (True, True)
    >>> translate_many(p, [net["pseudonym"]])[0]["clear"]
    '10.1.2.0/24'
    """
    if len(items) > MAX_BATCH:
        raise ValueError(f"at most {MAX_BATCH} addresses per request")
    out = []
    for index, item in enumerate(items):
        if not isinstance(item, str) or len(item) > 64:
            raise ValueError(f"addresses[{index}]: not an address")
        try:
            out.append(_network_reading(p, item) if "/" in item else translate(p, item))
        except ValueError:
            raise ValueError(f"addresses[{index}]: not an IP address or network") from None
    return out
