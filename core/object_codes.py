"""Per-row codes of an object column, found from the objects' addresses (no Python step per row).

A text column decoded from the wire holds one object per distinct value (``uniques[codes]``), so
telling its rows apart by object identity is telling them apart by value, and that needs only the
addresses the object array holds: :func:`object_pointers` reads them, :func:`address_slots`
hashes them into a small table and checks that no two objects share a slot. The store's
``LowCardinality`` encoding (:mod:`finsa.storage.native`) and ``finsa flows``' CSV writer
(:mod:`finsa.collectors.csv_rows`) both code their text columns this way.

>>> values = np.array(["a", "b", "a", None], dtype=object)
>>> slot, table = address_slots(object_pointers(values), (8,))
>>> [values[row] is values[0] for row in range(4)], bool(slot[0] == slot[2] != slot[1])
([True, False, True, False], True)
"""

from __future__ import annotations

import ctypes
from typing import Sequence

import numpy as np

__all__ = ["object_pointers", "address_slots"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def object_pointers(values: np.ndarray) -> np.ndarray:
    """The PyObject addresses a contiguous object array holds (a copy): same address, same object."""
    raw = (ctypes.c_char * (values.size * values.itemsize)).from_address(values.ctypes.data)
    return np.frombuffer(raw, dtype=np.uintp).copy()  # type: ignore[call-overload]  # a ctypes array is a buffer


def address_slots(pointers: np.ndarray, bits_tried: Sequence[int]) -> tuple[np.ndarray, np.ndarray] | None:
    """(slot of each row, table of slot -> address, 0 where unused) for the first table size of
    ``bits_tried`` (bits, smallest first) in which no two distinct addresses share a slot (a
    multiplicative hash); None when they do in every size (more distinct objects than it holds).
    The addresses must be those of objects that are alive.

    >>> pointers = np.array([4096, 8192, 4096], dtype=np.uintp)
    >>> slot, table = address_slots(pointers, (4, 8))
    >>> table[slot].tolist() == pointers.tolist(), len(np.flatnonzero(table))
    (True, 2)
    """
    mixed = (pointers.view(np.uint64) >> np.uint64(4)) * _GOLDEN
    for bits in bits_tried:
        slot = (mixed >> np.uint64(64 - bits)).view(np.intp)
        table = np.zeros(1 << bits, dtype=np.uintp)
        table[slot] = pointers
        if np.array_equal(table[slot], pointers):
            return slot, table
    return None
