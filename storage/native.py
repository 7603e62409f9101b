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

import numpy as np

from finsa.wire import Field, RecordBatch

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
    """value -> its Native encoding, computed on first sight (C-speed look-ups via map)."""

    def __missing__(self, value: object) -> bytes:
        encoded = self[value] = _prefixed(("" if value is None else str(value)).encode("utf-8"))
        return encoded


def string_column(values: np.ndarray) -> bytes:
    """Values of a String column: each distinct value encoded once, then joined."""
    if len(values) and (values == values[0]).all():  # common: all "" or one institution id
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
    n_rows = len(batch)
    parts = [varuint(len(batch.type.fields) + 1), varuint(n_rows)]
    names = []
    for f in batch.type.fields:
        ch_type, data = _column_bytes(f, batch.columns[f.name])
        parts += [_column_header(f.name, ch_type), data]
        names.append(f.name)
    if batch_ids is None:
        ids = batch.batch_id * n_rows
    else:
        ids = b"".join(bid * count for bid, count in zip(batch_ids, counts or []))
        if len(ids) != 16 * n_rows:
            raise ValueError("batch ids and counts do not cover the block's rows")
    parts += [_column_header("batch_id", "FixedString(16)"), ids]
    names.append("batch_id")
    return names, b"".join(parts)
