"""Keyed, prefix-preserving pseudonymisation of internal addresses (Crypto-PAn style).

An institution's agent replaces every address inside its *internal networks* before a flow
leaves the building; external addresses (attackers, partners, the internet) pass untouched so
the sector centre can correlate them across institutions.

The mapping works bit by bit: output bit ``i`` is input bit ``i`` XOR a pseudorandom bit of the
key and the input's first ``i`` bits. Two addresses that share their first ``k`` bits therefore
share exactly their first ``k`` output bits: hosts of one /24 stay in one (different) /24, and the
mapping is a bijection, so distinct hosts never merge. The pseudorandom function is
HMAC-SHA256 from the standard library (no extra dependency, and the same output on every
agent whatever is installed). IPv4 addresses (held IPv4-mapped) are mapped in the 32-bit IPv4
space and stay IPv4; IPv6 addresses in the 128-bit space.

What the sector centre sees: the same key gives the same pseudonym for the same address in every
batch, on every restart and on every sensor of the institution, so counting, joining and
detection work on pseudonyms; without the key it cannot invert them. The whole address is
mapped (not only the host part), so a pseudonym may happen to equal some real external address.

The key (32 bytes, hex in a file, see :func:`load_key`) never leaves the agent and is never
logged or shown by ``repr``.

>>> from finsa import wire
>>> p = Pseudonymiser(bytes(range(32)), ["10.0.0.0/8"])
>>> ips = wire.ips_from_strings(["10.1.2.3", "10.1.2.4", "192.0.2.1"])
>>> out = wire.ips_to_strings(p.apply(ips))
>>> out[2], out[0] != "10.1.2.3", out[0].rsplit(".", 1)[0] == out[1].rsplit(".", 1)[0]
('192.0.2.1', True, True)
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from finsa.errors import ConfigError
from finsa.metrics import REGISTRY

__all__ = ["KEY_BYTES", "Pseudonymiser", "load_key", "internal_mask"]

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
        self._prefix_bits: dict[tuple[int, int, bytes], int] = {}
        self._addresses: dict[bytes, bytes] = {}

    def __repr__(self) -> str:  # never show the key
        return f"Pseudonymiser(networks={list(self.networks)!r})"

    def apply(self, ips: np.ndarray) -> np.ndarray:
        """A copy of ``ips`` with every internal address replaced; external rows are unchanged."""
        ips = np.ascontiguousarray(ips, dtype=np.uint8)
        inside = _inside(ips, self._masks, self._nets)
        if not inside.any():
            return ips.copy()
        out = ips.copy()
        rows = np.flatnonzero(inside)
        keys = np.ascontiguousarray(ips[rows]).view("V16").ravel()
        uniq_keys, inverse = np.unique(keys, return_inverse=True)
        mapped = self._map_unique(uniq_keys.view(np.uint8).reshape(-1, 16))
        out[rows] = mapped[inverse.ravel()]
        v4 = (ips[rows, :12] == _MAPPED_PREFIX).all(axis=1)
        ADDRESSES.inc(int(v4.sum()), family="ipv4")
        ADDRESSES.inc(int((~v4).sum()), family="ipv6")
        return out

    def _map_unique(self, uniques: np.ndarray) -> np.ndarray:
        raw = uniques.tobytes()
        keys = [raw[i:i + 16] for i in range(0, len(raw), 16)]
        todo = [i for i, k in enumerate(keys) if k not in self._addresses]
        if todo:
            fresh = uniques[todo]
            v4 = (fresh[:, :12] == _MAPPED_PREFIX).all(axis=1)
            result = fresh.copy()
            if v4.any():
                result[v4, 12:] = self._map_bits(fresh[v4, 12:], 32)
            if (~v4).any():
                result[~v4] = self._map_bits(fresh[~v4], 128)
            if len(self._addresses) + len(todo) > _CACHE_LIMIT:
                self._addresses.clear()
            done = result.tobytes()
            for j, i in enumerate(todo):
                self._addresses[keys[i]] = done[16 * j:16 * j + 16]
        joined = b"".join([self._addresses[k] for k in keys])
        return np.frombuffer(joined, dtype=np.uint8).reshape(-1, 16).copy()

    def _map_bits(self, raw: np.ndarray, width: int) -> np.ndarray:
        """Crypto-PAn over ``width``-bit addresses given as (m, width/8) bytes."""
        bits = np.unpackbits(raw, axis=1)
        flips = np.zeros_like(bits)
        prefix = np.zeros_like(bits)
        if len(self._prefix_bits) > _CACHE_LIMIT:
            self._prefix_bits.clear()
        for level in range(width):
            keys = np.ascontiguousarray(np.packbits(prefix, axis=1)).view(f"V{width // 8}").ravel()
            uniq, inverse = np.unique(keys, return_inverse=True)
            level_bits = np.fromiter((self._prf(width, level, u.tobytes()) for u in uniq),
                                     dtype=np.uint8, count=len(uniq))
            flips[:, level] = level_bits[inverse.ravel()]
            prefix[:, level] = bits[:, level]
        return np.packbits(bits ^ flips, axis=1)

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
