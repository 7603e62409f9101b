"""Clear addresses <-> pseudonyms, on the institution's side only (the key never leaves the agent).

The centre stores an institution's internal addresses as pseudonyms
(:mod:`finsa.collectors.agent.pseudonym`) and never has the key. The institution's analyst
still reads and searches its own addresses in clear: the agent's loopback endpoint
(:class:`~finsa.collectors.agent.endpoint.LocalEndpoint`: ``GET /translate?address=X``, or many
addresses in one ``POST /translate``)
answers with the pseudonym of an internal address (to search the centre's flows) or the clear
address behind a pseudonym (to read an alert). The mapping is a bijection of each internal
network onto itself, computed bit by bit from the address's own prefix, so it is inverted bit by
bit with the same pseudorandom bits (:meth:`Pseudonymiser.invert`); a pseudonym lies inside the
same internal network as its clear address, so both readings agree on the network.

>>> from finsa.collectors.agent.pseudonym import Pseudonymiser
>>> p = Pseudonymiser(bytes(range(32)), ["10.0.0.0/8"])
>>> alias = pseudonym_of(p, "10.1.2.3")
>>> alias != "10.1.2.3", alias.startswith("10."), clear_of(p, alias), pseudonym_of(p, "192.0.2.1")
(True, True, '10.1.2.3', '192.0.2.1')
"""

from __future__ import annotations

import ipaddress

import numpy as np

from finsa.collectors.agent.pseudonym import Pseudonymiser
from finsa.wire import ips_from_strings, ips_to_strings

__all__ = ["pseudonym_of", "clear_of", "clear_column", "translate", "translate_many", "MAX_BATCH"]



def pseudonym_of(p: Pseudonymiser, address: str) -> str:
    """What the centre stores for ``address`` (itself when it is not internal)."""
    return ips_to_strings(p.apply(ips_from_strings([str(ipaddress.ip_address(address))])))[0]


def clear_column(p: Pseudonymiser, column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The addresses an (n, 16) column of pseudonyms stands for, and which of them are internal
    (only those are real: any other address is nobody's pseudonym and is returned as it is)."""
    column = np.ascontiguousarray(column, dtype=np.uint8)
    return p.invert(column), p.inside(column)


def clear_of(p: Pseudonymiser, pseudonym: str) -> str | None:
    """The internal address whose pseudonym this is, or None when no internal address maps to it."""
    clear, inside = clear_column(p, ips_from_strings([str(ipaddress.ip_address(pseudonym))]))
    return ips_to_strings(clear)[0] if inside[0] else None


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
    """A CIDR's readings. The mapping swaps prefix-tree subtrees, so every CIDR maps onto a CIDR of
    the same length: the one holding its network address's pseudonym. A CIDR inside an internal
    network (as long as the network's prefix or longer) maps to another CIDR inside that network,
    and back; a CIDR as wide as an internal network or wider (10.0.0.0/7 around 10.0.0.0/8), or
    outside all of them, is its own pseudonym: pseudonyms never leave their network, so a filter on
    it matches the same hosts at the centre as in clear. ``clear`` is given only for a CIDR inside
    an internal network (the others stand for no particular internal addresses)."""
    net = ipaddress.ip_network(text, strict=False)
    internal = [ipaddress.ip_network(n) for n in p.networks]

    def masked(address: str | None) -> str | None:
        return None if address is None else str(ipaddress.ip_network(f"{address}/{net.prefixlen}", strict=False))

    pseudonym = masked(pseudonym_of(p, str(net.network_address)))
    clear = masked(clear_of(p, str(net.network_address))) if _within(net, internal) else None
    return {"address": text, "pseudonym": pseudonym, "clear": clear}


def translate_many(p: Pseudonymiser, items: list) -> list[dict[str, str | None]]:
    """:func:`translate` of each item (addresses or CIDR networks); ValueError naming the first bad one.

    >>> p = Pseudonymiser(bytes(range(32)), ["10.0.0.0/8"])
    >>> host, net = translate_many(p, ["10.1.2.3", "10.1.2.0/24"])
    >>> net["pseudonym"] == host["pseudonym"].rsplit(".", 1)[0] + ".0/24", net["pseudonym"].startswith("10.")
    (True, True)
    >>> translate_many(p, ["10.0.0.0/7", "192.0.2.0/24"])[0]["pseudonym"]  # wider than 10/8: itself
    '10.0.0.0/7'
    >>> translate_many(p, [net["pseudonym"]])[0]["clear"]
    '10.1.2.0/24'
    """
    if len(items) > MAX_BATCH:
        raise ValueError(f"at most {MAX_BATCH} addresses per request")
    out: list[dict[str, str | None] | None] = [None] * len(items)
    hosts: list[tuple[int, str]] = []
    for index, item in enumerate(items):
        if not isinstance(item, str) or len(item) > 64:
            raise ValueError(f"addresses[{index}]: not an address")
        try:
            if "/" in item:
                out[index] = _network_reading(p, item)
            else:
                hosts.append((index, str(ipaddress.ip_address(item))))
        except ValueError:
            raise ValueError(f"addresses[{index}]: not an IP address or network") from None
    if hosts:  # every host in one vectorised pass each way
        column = ips_from_strings([text for _, text in hosts])
        pseudonyms = ips_to_strings(p.apply(column))
        clear, inside = clear_column(p, column)
        clear_text = ips_to_strings(clear)
        for k, (index, _) in enumerate(hosts):
            out[index] = {"address": items[index], "pseudonym": pseudonyms[k], "clear": clear_text[k] if inside[k] else None}
    return [r for r in out if r is not None]
