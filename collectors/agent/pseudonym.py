"""Keyed, prefix-preserving pseudonymisation of the host bits of internal addresses.

An institution's agent replaces every address inside its *internal networks* before a flow
leaves the building; external addresses (attackers, partners, the internet) pass untouched so
the sector centre can correlate them across institutions.

A pseudonym **stays inside its own internal network**: the network's prefix is kept and only
the host bits after it are mapped, Crypto-PAn style, bit by bit: output bit ``i`` is input bit
``i`` XOR a pseudorandom bit of the key and the input's first ``i`` bits. Seen as a binary tree
of prefixes, each node either swaps its two subtrees or not; the nodes on the path to a
configured network never swap, so every network is mapped onto itself. Consequences:

- 10.2.7.15 in 10.0.0.0/8 becomes some 10.x.y.z, never a public address: the centre's
  enrichment says *internal* (or, for an institution's own public range, its own AS and
  country), never a foreign country, and a pseudonym can never equal an external address.
- Two hosts sharing their first ``k`` bits share exactly their first ``k`` output bits: the
  hosts of one /24 inside the network stay in one (other) /24, and the mapping is a bijection,
  so distinct hosts never merge.
- Nested or overlapping networks: the **longest matching prefix** wins. With 10.0.0.0/8 and
  10.2.0.0/16 both internal, an address of 10.2.0.0/16 keeps its 16 bits, and one elsewhere in
  10.0.0.0/8 keeps 8 bits and never lands in 10.2.0.0/16. A /32 (or IPv6 /128) network has
  no host bits: its address is its own pseudonym.
- IPv4 addresses (held IPv4-mapped) are mapped in the 32-bit IPv4 space and stay IPv4; IPv6
  addresses in the 128-bit space, never into the IPv4-mapped range.

What the sector centre learns: which internal network an address belongs to, not which host;
the same key gives the same pseudonym for the same address in every batch, on every restart and
on every sensor of the institution, so counting, joining and detection work on pseudonyms;
without the key it cannot invert them. The pseudorandom function is HMAC-SHA256 from the
standard library (no extra dependency, the same output on every agent), one HMAC per prefix-tree
node, cached.

The key (32 bytes, hex in a file, see :func:`load_key`) never leaves the agent and is never
logged or shown by ``repr``.

>>> from finsa import wire
>>> p = Pseudonymiser(bytes(range(32)), ["10.0.0.0/8"])
>>> ips = wire.ips_from_strings(["10.1.2.3", "10.1.2.4", "192.0.2.1"])
>>> out = wire.ips_to_strings(p.apply(ips))
>>> out[2], out[0] != "10.1.2.3", out[0].rsplit(".", 1)[0] == out[1].rsplit(".", 1)[0]
('192.0.2.1', True, True)
>>> out[0].startswith("10.")
True
>>> wire.ips_to_strings(p.invert(p.apply(ips)))
['10.1.2.3', '10.1.2.4', '192.0.2.1']
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from finsa.collectors.agent.ipv4_words import V4Networks, WordCache, ipv4_words, set_ipv4_words, words_to_rows
from finsa.errors import ConfigError
from finsa.metrics import REGISTRY

__all__ = ["KEY_BYTES", "Pseudonymiser", "load_key", "internal_mask", "start_levels"]

KEY_BYTES = 32
_MAPPED_PREFIX = np.array([0] * 10 + [0xFF, 0xFF], dtype=np.uint8)
_CACHE_LIMIT = 1_000_000

ADDRESSES = REGISTRY.counter("finsa_agent_pseudonymised_addresses_total",
                             "Address cells replaced by their pseudonym", ["family"])


def load_key(path: str | Path) -> bytes:
    """Read a key file: 64 hex digits (whitespace ignored). Errors never show the file's content."""
    path = Path(os.path.expandvars(str(path)))
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"cannot read the pseudonymisation key: {getattr(exc, 'strerror', None) or type(exc).__name__}"]) from None
    try:
        key = bytes.fromhex("".join(text.split()))
    except ValueError:
        raise ConfigError(str(path), ["the pseudonymisation key is not hex"]) from None
    if len(key) != KEY_BYTES:
        raise ConfigError(str(path), [f"the pseudonymisation key must be {KEY_BYTES} bytes (64 hex digits), not {len(key)}"])
    return key


def _network_rows(networks: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
    """Masks and network bytes of each network in the 16-byte (IPv4-mapped) space."""
    masks, nets = [], []
    for text in networks:
        net = ipaddress.ip_network(text, strict=False)
        if net.version == 4:
            raw = bytes(10) + b"\xff\xff" + net.network_address.packed
            prefix = 96 + net.prefixlen
        else:
            raw, prefix = net.network_address.packed, net.prefixlen
        mask_int = ((1 << prefix) - 1) << (128 - prefix) if prefix else 0
        masks.append(np.frombuffer(mask_int.to_bytes(16, "big"), dtype=np.uint8))
        nets.append(np.frombuffer(raw, dtype=np.uint8))
    if not masks:
        return np.zeros((0, 16), np.uint8), np.zeros((0, 16), np.uint8)
    return np.stack(masks), np.stack(nets)


def internal_mask(ips: np.ndarray, networks: Iterable[str]) -> np.ndarray:
    """Boolean mask of the rows of an (n, 16) address column inside any of ``networks``."""
    masks, nets = _network_rows(networks)
    return _inside(ips, masks, nets)


def _inside(ips: np.ndarray, masks: np.ndarray, nets: np.ndarray) -> np.ndarray:
    out = np.zeros(len(ips), dtype=bool)
    for mask, net in zip(masks, nets):
        out |= ((ips & mask) == net).all(axis=1)
    return out


def _fixed_tree(masks: np.ndarray, nets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bits (k, 128) and prefix lengths (k,) of the prefix-tree nodes whose ancestors never swap:
    every internal network, and the IPv4-mapped space (IPv6 never maps into IPv4)."""
    mapped = np.zeros((1, 16), np.uint8)
    mapped[0, 10:12] = 0xFF
    nets = np.concatenate([nets, mapped])
    lengths = np.concatenate([np.unpackbits(masks, axis=1).sum(axis=1), [96]]).astype(np.int64)
    return np.unpackbits(nets, axis=1), lengths


def start_levels(ips: np.ndarray, fixed_bits: np.ndarray, fixed_lengths: np.ndarray) -> np.ndarray:
    """The first bit (in the 128-bit space) each (m, 16) address's pseudonym may differ at: the
    depth below its longest-matching network and below every network nested beneath its path.

    The nodes on the path to a configured network never swap, so a network maps onto itself;
    the first bits that do change are those of the deepest node on the address's path that is an
    ancestor of a network (or the network itself). An address and its pseudonym get the same level.
    """
    bits = np.unpackbits(np.ascontiguousarray(ips, dtype=np.uint8), axis=1)
    start = np.zeros(len(bits), dtype=np.int64)
    for net_bits, length in zip(fixed_bits, fixed_lengths):
        differ = bits != net_bits
        common = np.where(differ.any(axis=1), differ.argmax(axis=1), 128)
        start = np.maximum(start, np.minimum(length, common + 1))
    return start


class Pseudonymiser:
    """Map the internal addresses of (n, 16) uint8 columns to their keyed pseudonyms.

    Inert and cheap to build; results are cached per address and per prefix, so a batch costs a
    few numpy calls plus one HMAC per prefix-tree node never seen before.
    """

    def __init__(self, key: bytes, internal_networks: Iterable[str]) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the key must be {KEY_BYTES} bytes")
        self._keys = {32: hmac.digest(key, b"finsa-pan-ipv4", "sha256"),
                      128: hmac.digest(key, b"finsa-pan-ipv6", "sha256")}
        self._mac_key = hmac.digest(key, b"finsa-pan-mac", "sha256")
        self.networks = tuple(str(ipaddress.ip_network(n, strict=False)) for n in internal_networks)
        self._masks, self._nets = _network_rows(self.networks)
        self._fixed_bits, self._fixed_lengths = _fixed_tree(self._masks, self._nets)
        self._prefix_bits: dict[tuple[int, int, bytes], int] = {}
        self._addresses: dict[bytes, bytes] = {}  # IPv6
        self._v4_networks = V4Networks.of(self.networks)
        self._v4_pseudonyms = WordCache(_CACHE_LIMIT)

    def __repr__(self) -> str:  # never show the key
        return f"Pseudonymiser(networks={list(self.networks)!r})"

    def inside(self, ips: np.ndarray) -> np.ndarray:
        """Which rows of an (n, 16) column lie inside an internal network (and are mapped)."""
        return _inside(np.ascontiguousarray(ips, dtype=np.uint8), self._masks, self._nets)

    def apply(self, ips: np.ndarray) -> np.ndarray:
        """A copy of ``ips`` with every internal address replaced; external rows are unchanged.

        IPv4 rows (nearly all) are looked up as uint32 words for the whole batch at once
        (:mod:`finsa.collectors.agent.ipv4_words`); IPv6 rows as 16-byte keys, once per distinct one.
        """
        out = np.array(ips, dtype=np.uint8, order="C")  # a copy
        if not len(out):
            return out
        is_v4, words = ipv4_words(out)
        rows4 = np.flatnonzero(is_v4)
        rows4 = rows4[self._v4_networks.inside(words[rows4])]
        if len(rows4):
            set_ipv4_words(out, rows4, self._v4_pseudonyms.get(words[rows4], self._map_words))
            ADDRESSES.inc(len(rows4), family="ipv4")
        rows6 = np.flatnonzero(~is_v4)
        if len(rows6):
            rows6 = rows6[_inside(out[rows6], self._masks, self._nets)]
        if len(rows6):
            keys = np.ascontiguousarray(out[rows6]).view("V16").ravel()
            uniq_keys, inverse = np.unique(keys, return_inverse=True)
            out[rows6] = self._map_unique(uniq_keys.view(np.uint8).reshape(-1, 16))[inverse.ravel()]
            ADDRESSES.inc(len(rows6), family="ipv6")
        return out

    def _map_words(self, words: np.ndarray) -> np.ndarray:
        """Pseudonyms of internal IPv4 addresses given as host-order uint32 words: :meth:`_map_bits`
        over 32 bits with each level's prefixes as integers (the same PRF inputs, the same output).
        ``words`` come sorted and distinct (:meth:`~finsa.collectors.agent.ipv4_words.WordCache.get`
        hands its ``compute`` the missing words so): their prefixes at every level come sorted, so
        their distinct values are where they change, no sort per level."""
        start = start_levels(words_to_rows(words), self._fixed_bits, self._fixed_lengths) - 96
        out = words.copy()
        if len(self._prefix_bits) > _CACHE_LIMIT:
            self._prefix_bits.clear()
        for level in range(int(start.min(initial=32)), 32):
            rows = np.flatnonzero(start <= level)
            prefixes = words[rows] & np.uint32((0xFFFFFFFF << (32 - level)) & 0xFFFFFFFF)
            changes = np.empty(len(prefixes), dtype=bool)
            changes[:1] = True
            np.not_equal(prefixes[1:], prefixes[:-1], out=changes[1:])
            flips = np.fromiter((self._prf(32, level, p.to_bytes(4, "big")) for p in prefixes[changes].tolist()),
                                dtype=np.uint32, count=int(changes.sum()))
            out[rows] ^= flips[np.cumsum(changes) - 1] << np.uint32(31 - level)
        return out

    def invert(self, ips: np.ndarray) -> np.ndarray:
        """The clear addresses behind an (n, 16) column of pseudonyms; rows outside every internal
        network are nobody's pseudonym and come back unchanged (never cached: the analyst's side)."""
        ips = np.ascontiguousarray(ips, dtype=np.uint8)
        out = ips.copy()
        rows = np.flatnonzero(_inside(ips, self._masks, self._nets))
        if len(rows):
            out[rows] = self._map_rows(ips[rows], inverse=True)
        return out

    def _map_unique(self, uniques: np.ndarray) -> np.ndarray:
        raw = uniques.tobytes()
        keys = [raw[i:i + 16] for i in range(0, len(raw), 16)]
        todo = [i for i, k in enumerate(keys) if k not in self._addresses]
        if todo:
            done = self._map_rows(uniques[todo]).tobytes()
            if len(self._addresses) + len(todo) > _CACHE_LIMIT:
                self._addresses.clear()
            for j, i in enumerate(todo):
                self._addresses[keys[i]] = done[16 * j:16 * j + 16]
        joined = b"".join([self._addresses[k] for k in keys])
        return np.frombuffer(joined, dtype=np.uint8).reshape(-1, 16).copy()

    def _map_rows(self, rows: np.ndarray, inverse: bool = False) -> np.ndarray:
        """Pseudonyms (or, ``inverse``, clear addresses) of internal (m, 16) rows."""
        start = start_levels(rows, self._fixed_bits, self._fixed_lengths)
        v4 = (rows[:, :12] == _MAPPED_PREFIX).all(axis=1)
        result = rows.copy()
        if v4.any():
            result[v4, 12:] = self._map_bits(rows[v4, 12:], 32, start[v4] - 96, inverse)
        if (~v4).any():
            result[~v4] = self._map_bits(rows[~v4], 128, start[~v4], inverse)
        return result

    def _map_bits(self, raw: np.ndarray, width: int, start: np.ndarray, inverse: bool) -> np.ndarray:
        """Crypto-PAn over ``width``-bit addresses given as (m, width/8) bytes, from bit ``start``
        of each row on (the bits before it are its network's and stay). Inverted bit by bit: the
        clear bit ``i`` is the pseudonym's XOR the flip of the clear first ``i`` bits, known by then."""
        source = np.unpackbits(raw, axis=1)
        target = source.copy()
        clear = target if inverse else source
        if len(self._prefix_bits) > _CACHE_LIMIT:
            self._prefix_bits.clear()
        for level in range(int(start.min()), width):
            rows = np.flatnonzero(start <= level)
            prefix = np.zeros((len(rows), width), dtype=np.uint8)
            prefix[:, :level] = clear[rows, :level]
            keys = np.ascontiguousarray(np.packbits(prefix, axis=1)).view(f"V{width // 8}").ravel()
            uniq, back = np.unique(keys, return_inverse=True)
            flips = np.fromiter((self._prf(width, level, u.tobytes()) for u in uniq),
                                dtype=np.uint8, count=len(uniq))
            target[rows, level] ^= flips[back.ravel()]
        return np.packbits(target, axis=1)

    def _prf(self, width: int, level: int, prefix: bytes) -> int:
        key = (width, level, prefix)
        bit = self._prefix_bits.get(key)
        if bit is None:
            digest = hmac.digest(self._keys[width], bytes((level,)) + prefix, hashlib.sha256)
            bit = self._prefix_bits[key] = digest[0] >> 7
        return bit

    def apply_macs(self, macs: np.ndarray) -> np.ndarray:
        """Keyed pseudonyms of 48-bit MACs (uint64): one MAC always gets the same pseudonym under a
        key, marked locally administered and unicast so it cannot be mistaken for a vendor's.

        >>> p = Pseudonymiser(bytes(32), ["10.0.0.0/8"])
        >>> a, b = p.apply_macs(np.array([0x0025B3BF91EE, 0x0025B3BF91EE], dtype=np.uint64))
        >>> bool(a == b != 0x0025B3BF91EE), (int(a) >> 40) & 0x03
        (True, 2)
        """
        uniq, inverse = np.unique(np.asarray(macs, dtype=np.uint64), return_inverse=True)
        mapped = np.array([self._mac(int(m)) for m in uniq.tolist()], dtype=np.uint64)
        return mapped[inverse.ravel()] if len(uniq) else np.asarray(macs, dtype=np.uint64).copy()

    def _mac(self, mac: int) -> int:
        value = int.from_bytes(hmac.digest(self._mac_key, mac.to_bytes(6, "big"), "sha256")[:6], "big")
        return (value & ~(0x03 << 40)) | (0x02 << 40)  # locally administered, unicast

    def apply_columns(self, columns: dict[str, np.ndarray], names: Iterable[str] = ("src_ip", "dst_ip")) -> dict[str, np.ndarray]:
        """A new column dict with the named address columns pseudonymised."""
        out = dict(columns)
        for name in names:
            if name in out:
                out[name] = self.apply(out[name])
        return out
