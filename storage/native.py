"""ClickHouse ``Native`` format bytes built from a wire batch with numpy (the insert payload).

A Native block is: varuint column count, varuint row count, then per column its name, its
type name and its values. Numbers are raw little-endian arrays and IPv6 is 16 raw bytes in
network order, so those columns are one ``tobytes()``; strings are varuint length + utf-8,
encoded once per distinct value. LowCardinality columns are sent as plain ``String``: the
server converts on insert. Both backends send these bytes (chdb ``send_insert``,
clickhouse-connect ``raw_insert``), so the encoding lives here once.

>>> from finsa.wire import HEARTBEAT
>>> batch = HEARTBEAT.make_batch({"sensor_id": ["s1"], "packets": [7]}, batch_id=bytes(16))
>>> names, payload = native_block(batch)
>>> names[:3], payload[:2]
(['time_ms', 'institution_id', 'sensor_id'], b'\\t\\x01')
"""

from __future__ import annotations

import ctypes
from typing import Sequence

import numpy as np

from finsa.wire import Field, RecordBatch, RecordType

from finsa.storage.schema import CLICKHOUSE_TYPES


def varuint(n: int) -> bytes:
    """LEB128 unsigned integer, as ClickHouse writes lengths."""
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _prefixed(text: bytes) -> bytes:
    return varuint(len(text)) + text


class _EncodedStrings(dict):
    """value -> its Native encoding, computed on first sight."""

    def __missing__(self, value: object) -> bytes:
        encoded = self[value] = _prefixed(("" if value is None else str(value)).encode("utf-8"))
        return encoded


def _object_pointers(values: np.ndarray) -> np.ndarray:
    """The PyObject addresses a contiguous object array holds (a copy): same address, same object."""
    raw = (ctypes.c_char * (values.size * values.itemsize)).from_address(values.ctypes.data)
    return np.frombuffer(raw, dtype=np.uintp).copy()  # type: ignore[call-overload]  # a ctypes array is a buffer


def string_column(values: np.ndarray) -> bytes:
    """Values of a String column: each distinct value encoded once, then joined.

    A column holding one object throughout (all "", one institution id) is one repeat; the test
    compares the objects' addresses, not their text (no Python step per row).
    """
    values = np.ascontiguousarray(values, dtype=object)
    if not len(values):
        return b""
    pointers = _object_pointers(values)
    if (pointers == pointers[0]).all():
        return _EncodedStrings()[values[0]] * len(values)
    return b"".join(map(_EncodedStrings().__getitem__, values.tolist()))


def _column_bytes(f: Field, col: np.ndarray) -> tuple[str, bytes]:
    if f.kind == "str":
        return "String", string_column(col)
    if f.kind == "ip":
        return "IPv6", np.ascontiguousarray(col, dtype=np.uint8).tobytes()
    ch_type = CLICKHOUSE_TYPES[f.kind]
    dtype = {"UInt8": "<u1", "UInt16": "<u2", "UInt32": "<u4", "UInt64": "<u8", "Int64": "<i8",
             "Float64": "<f8"}[ch_type]
    return ch_type, np.ascontiguousarray(col, dtype=dtype).tobytes()


def _column_header(name: str, ch_type: str) -> bytes:
    return _prefixed(name.encode()) + _prefixed(ch_type.encode())


def native_block(batch: RecordBatch, batch_ids: list[bytes] | None = None,
                 counts: list[int] | None = None) -> tuple[list[str], bytes]:
    """Column names and one Native block holding every wire field plus ``batch_id``.

    A block made of several concatenated batches gives each source batch's id and row count
    (``batch_ids``, ``counts``) so every row keeps the id of the batch it came in.
    """
    ids = batch_ids if batch_ids is not None else [batch.batch_id]
    sizes = counts if counts is not None else [len(batch)]
    if sum(sizes) != len(batch) or len(ids) != len(sizes):
        raise ValueError("batch ids and counts do not cover the block's rows")
    return _block(batch.type, len(batch), [[batch.columns[f.name]] for f in batch.type.fields], ids, sizes)


def native_block_of(batches: Sequence[RecordBatch]) -> tuple[list[str], bytes]:
    """One Native block holding the rows of several batches of one record type, in order.

    Each column is encoded batch by batch and the pieces joined: no concatenated copy of the
    batches is made (``RecordBatch.concat`` would copy every object column first).
    """
    rtype = batches[0].type
    columns = [[b.columns[f.name] for b in batches] for f in rtype.fields]
    return _block(rtype, sum(len(b) for b in batches), columns, [b.batch_id for b in batches],
                  [len(b) for b in batches])


def _block(rtype: RecordType, n_rows: int, columns: list[list[np.ndarray]], batch_ids: Sequence[bytes],
           counts: Sequence[int]) -> tuple[list[str], bytes]:
    parts = [varuint(len(rtype.fields) + 1), varuint(n_rows)]
    names = []
    for f, pieces in zip(rtype.fields, columns):
        encoded = [_column_bytes(f, piece) for piece in pieces]
        parts += [_column_header(f.name, encoded[0][0]), *(data for _, data in encoded)]
        names.append(f.name)
    parts += [_column_header("batch_id", "FixedString(16)"), *(bid * count for bid, count in zip(batch_ids, counts))]
    names.append("batch_id")
    return names, b"".join(parts)
