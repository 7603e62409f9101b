"""IPv4 addresses of an (n, 16) address column as host-order uint32 words: the pseudonymiser's fast path.

Almost every address an agent meters is IPv4 (held IPv4-mapped, see :mod:`finsa.wire`). Seen as
one uint32 each, finding the internal ones is a mask and a compare per network, and the pseudonyms
already computed are looked up for a whole batch at once in a sorted array
(:class:`WordCache`), not one dict look-up per address.

>>> from finsa import wire
>>> ips = wire.ips_from_strings(["10.1.2.3", "2001:db8::1", "192.0.2.1"])
>>> is_v4, words = ipv4_words(ips)
>>> is_v4.tolist(), [hex(w) for w in words[is_v4]]
([True, False, True], ['0xa010203', '0xc0000201'])
>>> inside = V4Networks.of(["10.0.0.0/8"]).inside(words)
>>> inside[is_v4].tolist()
[True, False]
"""

from __future__ import annotations

import ipaddress
import threading
from typing import Callable, Iterable

import numpy as np

_MAPPED_WORD = 0xFFFF0000  # bytes 8..11 of an IPv4-mapped address (00 00 ff ff), read little-endian


def ipv4_words(ips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which rows of a contiguous (n, 16) uint8 column are IPv4-mapped, and every row's last 4
    bytes as a host-order uint32 (the IPv4 address where the row is IPv4)."""
    n = len(ips)
    little = ips.view("<u4").reshape(n, 4)
    is_v4 = (little[:, 0] == 0) & (little[:, 1] == 0) & (little[:, 2] == _MAPPED_WORD)
    return is_v4, ips.view(">u4").reshape(n, 4)[:, 3].astype(np.uint32)


def set_ipv4_words(ips: np.ndarray, rows: np.ndarray, words: np.ndarray) -> None:
    """Write host-order uint32 ``words`` as the IPv4 part (last 4 bytes) of ``rows`` of ``ips``."""
    ips.view(">u4").reshape(len(ips), 4)[rows, 3] = words


def words_to_rows(words: np.ndarray) -> np.ndarray:
    """(m, 16) IPv4-mapped rows of host-order uint32 addresses."""
    rows = np.zeros((len(words), 16), dtype=np.uint8)
    rows[:, 10:12] = 0xFF
    set_ipv4_words(rows, np.arange(len(words)), words)
    return rows


class V4Networks:
    """The part of a list of networks that can hold an IPv4(-mapped) address, as uint32 masks."""

    def __init__(self, masks: list[int], nets: list[int], everything: bool) -> None:
        self.masks = np.array(masks, dtype=np.uint32)
        self.nets = np.array(nets, dtype=np.uint32)
        #: a network of at most 96 bits covers the whole IPv4-mapped space (``::/0``, ``::ffff:0:0/96``)
        self.everything = everything

    @classmethod
    def of(cls, networks: Iterable[str]) -> "V4Networks":
        masks, nets, everything = [], [], False
        for text in networks:
            net = ipaddress.ip_network(text, strict=False)
            if net.version == 6:
                mapped = ipaddress.IPv6Address("::ffff:0:0")
                if net.prefixlen <= 96 and mapped in net:
                    everything = True
                elif net.prefixlen > 96 and net.network_address.ipv4_mapped is not None:
                    masks.append(int(net.netmask) & 0xFFFFFFFF)
                    nets.append(int(net.network_address) & 0xFFFFFFFF)
            else:
                masks.append(int(net.netmask))
                nets.append(int(net.network_address))
        return cls(masks, nets, everything)

    def inside(self, words: np.ndarray) -> np.ndarray:
        """Which host-order uint32 IPv4 addresses lie inside any of the networks."""
        if self.everything:
            return np.ones(len(words), dtype=bool)
        out = np.zeros(len(words), dtype=bool)
        for mask, net in zip(self.masks, self.nets):
            out |= (words & mask) == net
        return out


class WordCache:
    """uint32 -> uint32 results kept as two sorted arrays; at most ``limit`` (then started afresh).

    >>> cache = WordCache()
    >>> cache.get(np.array([5, 3, 5], dtype=np.uint32), lambda new: new * 2).tolist()
    [10, 6, 10]
    >>> cache.get(np.array([3, 7], dtype=np.uint32), lambda new: new * 0).tolist()  # 3 was kept
    [6, 0]
    """

    def __init__(self, limit: int = 1_000_000) -> None:
        self.limit = limit
        self.keys = np.zeros(0, dtype=np.uint32)
        self.values = np.zeros(0, dtype=np.uint32)
        # the agent's batches and its local endpoint's requests look up from different threads:
        # a lookup must never read one version of ``keys`` and another of ``values``
        self._lock = threading.Lock()

    def _positions(self, words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos = np.minimum(np.searchsorted(self.keys, words), max(len(self.keys) - 1, 0))
        found = self.keys[pos] == words if len(self.keys) else np.zeros(len(words), dtype=bool)
        return pos, found

    def get(self, words: np.ndarray, compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """The results of ``words``; ``compute`` is called once with the sorted distinct ones missing.
        Safe to call from several threads."""
        with self._lock:
            return self._get(words, compute)

    def _get(self, words: np.ndarray, compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        pos, found = self._positions(words)
        if found.all():
            return self.values[pos]
        out = np.empty(len(words), dtype=np.uint32)
        out[found] = self.values[pos[found]]
        new, back = np.unique(words[~found], return_inverse=True)
        results = np.asarray(compute(new), dtype=np.uint32)
        out[~found] = results[back.ravel()]
        if len(self.keys) + len(new) > self.limit:
            self.keys, self.values = new, results
        else:
            at = np.searchsorted(self.keys, new)
            self.keys, self.values = np.insert(self.keys, at, new), np.insert(self.values, at, results)
        return out
