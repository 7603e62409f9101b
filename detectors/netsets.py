"""Sets of address ranges matched against (n, 16) address columns, vectorised.

A :class:`NetworkSet` holds CIDRs (IPv4 ones as IPv4-mapped IPv6, like the wire format). For
each distinct prefix length it keeps the sorted hashes of the networks' masked addresses, so
matching a column costs one mask, one hash and one ``searchsorted`` per prefix length present,
whatever the number of networks; a hash hit is confirmed against the stored address words, so a
collision never matches. The longest matching prefix wins. Detectors use it for "internal"
(:data:`PRIVATE_NETWORKS` by default) and for threat-intel address indicators.

>>> from finsa.wire import ips_from_strings
>>> nets = NetworkSet(["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"])
>>> nets.match(ips_from_strings(["10.9.8.7", "192.0.2.7", "192.0.2.8", "2001:db8::1"])).tolist()
[0, 1, -1, 2]
>>> internal_mask(ips_from_strings(["172.16.5.4", "8.8.8.8", "fd00::1"])).tolist()
[True, False, True]
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

import numpy as np

from finsa.detectors.features import mix64

__all__ = ["NetworkSet", "PRIVATE_NETWORKS", "internal_mask", "ip_words", "parse_network"]

#: RFC 1918, RFC 4193 (ULA) and link-local ranges: "internal" unless an institution says otherwise.
PRIVATE_NETWORKS: tuple[str, ...] = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
                                     "fc00::/7", "fe80::/10")
_ALL = np.uint64(0xFFFF_FFFF_FFFF_FFFF)


def ip_words(column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(high, low) uint64 words of each (n, 16) address, big-endian: ordered like the addresses."""
    words = np.ascontiguousarray(column, dtype=np.uint8).view(">u8").reshape(-1, 2)
    return words[:, 0].astype(np.uint64), words[:, 1].astype(np.uint64)


#: A prefix length with at most this many networks is matched by comparisons, not by hash lookups.
_FEW = 4
_WORDS: list = [None]  # (column, words) of the last column: the sets of one batch share it


def _words_of(column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`ip_words` of ``column``, kept for the next set asked about the same column object."""
    last = _WORDS[0]
    if last is not None and last[0] is column:
        return last[1]
    words = ip_words(column)
    _WORDS[0] = (column, words)  # one assignment: another thread sees the old pair or the new one
    return words


def parse_network(text: str) -> tuple[int, int]:
    """(128-bit network value, prefix length over 128 bits) of a CIDR or a bare address."""
    net = ipaddress.ip_network(text.strip(), strict=False)
    if net.version == 4:
        return (0xFFFF << 32) | int(net.network_address), 96 + net.prefixlen
    return int(net.network_address), net.prefixlen


def _masks(prefix: int) -> tuple[np.uint64, np.uint64]:
    full = (1 << 128) - 1
    mask = (full << (128 - prefix)) & full
    return np.uint64(mask >> 64), np.uint64(mask & int(_ALL))


class NetworkSet:
    """Address ranges, matched longest-prefix-first against address columns."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self.networks: list[str] = []
        parsed: dict[int, list[tuple[int, int]]] = {}
        for text in networks:
            value, prefix = parse_network(text)  # ValueError on garbage: the caller validates
            parsed.setdefault(prefix, []).append((value, len(self.networks)))
            self.networks.append(str(text).strip())
        self._levels: list[tuple[np.uint64, np.uint64, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for prefix in sorted(parsed, reverse=True):
            hi_mask, lo_mask = _masks(prefix)
            vals = parsed[prefix]
            hi = np.array([v >> 64 for v, _ in vals], dtype=np.uint64) & hi_mask
            lo = np.array([v & int(_ALL) for v, _ in vals], dtype=np.uint64) & lo_mask
            idx = np.array([i for _, i in vals], dtype=np.int64)
            keys = mix64(hi, lo)
            order = np.argsort(keys, kind="stable")
            self._levels.append((hi_mask, lo_mask, keys[order], hi[order], lo[order], idx[order]))

    def __len__(self) -> int:
        return len(self.networks)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_last"}  # the cache is not state

    def match(self, column: np.ndarray) -> np.ndarray:
        """Index (into :attr:`networks`) of the longest network holding each address, else -1.

        The answer for the last column is kept: the detectors of one engine ask the same sets
        (multicast, private ranges) about the same batch column (the same array object, which
        nothing changes in place: the detector contract), and get a copy of it.
        """
        last = getattr(self, "_last", None)
        if last is not None and last[0] is column:
            return last[1].copy()
        out = self._match(column)
        self._last = (column, out)  # one assignment: another thread sees the old pair or the new one
        return out.copy()

    def _match(self, column: np.ndarray) -> np.ndarray:
        out = np.full(len(column), -1, dtype=np.int64)
        if not len(column) or not self._levels:
            return out
        hi, lo = _words_of(column)
        for hi_mask, lo_mask, keys, net_hi, net_lo, idx in self._levels:
            if len(keys) <= _FEW:  # a few networks: compared one by one over every row, no hash
                h = hi if hi_mask == _ALL else hi & hi_mask
                low = lo if lo_mask == _ALL else lo & lo_mask
                for j in range(len(keys)):
                    hit = (h == net_hi[j]) & (low == net_lo[j])
                    hit &= out < 0
                    out[hit] = idx[j]
                continue
            todo = np.flatnonzero(out < 0)
            if not len(todo):
                break
            h, low = hi[todo] & hi_mask, lo[todo] & lo_mask
            pos = np.minimum(np.searchsorted(keys, mix64(h, low)), len(keys) - 1)
            hit = (net_hi[pos] == h) & (net_lo[pos] == low)
            out[todo[hit]] = idx[pos[hit]]
        return out

    def contains(self, column: np.ndarray) -> np.ndarray:
        """Boolean mask: the address is in one of the networks."""
        return self.match(column) >= 0


_PRIVATE = NetworkSet(PRIVATE_NETWORKS)


def internal_mask(column: np.ndarray, networks: NetworkSet | None = None) -> np.ndarray:
    """Addresses inside ``networks`` (default: :data:`PRIVATE_NETWORKS`)."""
    return (_PRIVATE if networks is None else networks).contains(column)
