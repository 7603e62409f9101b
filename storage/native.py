"""ClickHouse ``Native`` format bytes built from a wire batch with numpy (the insert payload).

A Native block is: varuint column count, varuint row count, then per column its name, its
type name and its values. Numbers are raw little-endian arrays and IPv6 is 16 raw bytes in
network order, so those columns are one ``tobytes()``; strings are varuint length + utf-8,
encoded once per distinct value. A string column holding a few distinct objects (an institution
id, a method, the names a batch repeats) is sent as ``LowCardinality(String)`` instead: its
distinct values once, then one small code per row, found with numpy from the objects' addresses
(:func:`string_codes`); the server converts to the table's type on insert. Both backends send
these bytes (chdb ``send_insert``, chunk by chunk: :func:`native_chunks_of`; clickhouse-connect
``raw_insert``), so the encoding lives here once.

>>> from finsa.wire import HEARTBEAT
>>> batch = HEARTBEAT.make_batch({"sensor_id": ["s1"], "packets": [7]}, batch_id=bytes(16))
>>> names, payload = native_block(batch)
>>> names[:3], payload[:2]
(['time_ms', 'institution_id', 'sensor_id'], b'\\t\\x01')
"""

from __future__ import annotations

import ctypes
import struct
from typing import Sequence

import numpy as np

from finsa.object_codes import address_slots, object_pointers
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


def string_column(values: np.ndarray) -> bytes:
    """Values of a String column: each distinct value encoded once, then joined.

    A column holding one object throughout (all "", one institution id) is one repeat; the test
    compares the objects' addresses, not their text (no Python step per row).
    """
    values = np.ascontiguousarray(values, dtype=object)
    if not len(values):
        return b""
    pointers = object_pointers(values)
    if (pointers == pointers[0]).all():
        return _EncodedStrings()[values[0]] * len(values)
    return b"".join(map(_EncodedStrings().__getitem__, values.tolist()))


#: Bits of the address hashes :func:`string_codes` tries, smallest first.
_HASH_BITS = (12, 16)


def string_codes(pointers: np.ndarray) -> tuple[np.ndarray, list[str]] | None:
    """Codes of a string column by object identity (the objects' addresses, from
    :func:`~finsa.object_codes.object_pointers` of arrays that are still alive), and the text of each code;
    None when two objects share a slot of every hash tried (many distinct objects).

    Objects are told apart by address (no Python step per row); equal text in two objects gets
    one code all the same: the codes index the distinct texts, in the order of the hash.

    >>> values = np.array(["a", "b", "a", None], dtype=object)
    >>> codes, texts = string_codes(object_pointers(values))
    >>> [texts[c] for c in codes]
    ['a', 'b', 'a', '']
    """
    found = address_slots(pointers, _HASH_BITS)
    if found is None:
        return None
    slot, table = found
    used = np.flatnonzero(table)
    # every address is an object of a live array: read each distinct one back by its address
    texts = ["" if v is None else str(v) for v in (ctypes.cast(int(a), ctypes.py_object).value for a in table[used])]
    distinct = list(dict.fromkeys(texts))
    rank = {text: k for k, text in enumerate(distinct)}
    remap = np.zeros(len(table), dtype=np.uint8 if len(distinct) <= 0xFF else np.uint16)
    remap[used] = [rank[t] for t in texts]
    return remap[slot], distinct


def low_cardinality_column(codes: np.ndarray, texts: Sequence[str]) -> bytes:
    """A ``LowCardinality(String)`` column in Native: serialization version, index type with a
    dictionary of its own (additional keys), the keys, then one code per row.

    >>> low_cardinality_column(np.array([1, 0, 1], dtype=np.uint8), ["a", "bc"])[24:]
    b'\\x01a\\x02bc\\x03\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x01\\x00\\x01'
    """
    index_type = {1: 0, 2: 1}[codes.dtype.itemsize]
    keys = b"".join(_prefixed(t.encode("utf-8")) for t in texts)
    return (struct.pack("<QQQ", 1, (1 << 9) | (1 << 10) | index_type, len(texts)) + keys
            + struct.pack("<Q", len(codes)) + np.ascontiguousarray(codes).tobytes())


class StringPieces:
    """A string column given in pieces (one per batch), read once for everything a write needs of
    it: the order of its texts (:meth:`ranks`, the ``flows`` key) and its Native encoding
    (:meth:`encoded`, in the pieces' order or another). The object arrays stay referenced here
    while their addresses are read (:func:`string_codes`); empty pieces are left out (a group may
    start with an empty batch). A column of many objects but few texts is coded by text when
    ``by_text`` (:func:`text_codes`, one Python step per row).

    >>> column = StringPieces([np.array(["b", "a"], dtype=object), np.array(["b"], dtype=object)])
    >>> column.ranks().tolist(), column.encoded()[0]
    ([1, 0, 1], 'LowCardinality(String)')
    >>> StringPieces([np.array(["", ""], dtype=object)]).encoded()
    ('String', [b'\\x00\\x00'])
    """

    def __init__(self, pieces: Sequence[np.ndarray], by_text: bool = False) -> None:
        self.pieces = [np.ascontiguousarray(p, dtype=object) for p in pieces if len(p)]
        self.pointers = (np.concatenate([object_pointers(p) for p in self.pieces]) if self.pieces
                         else np.zeros(0, dtype=np.uintp))
        #: one object throughout (every "", one institution): one repeat, whatever the order
        self.single = bool(len(self.pointers)) and bool((self.pointers == self.pointers[0]).all())
        self._whole: np.ndarray | None = None
        found = string_codes(self.pointers) if len(self.pointers) and not self.single else None
        if found is None and by_text and len(self.pointers) and not self.single:
            found = text_codes(self.whole())
        self.codes: np.ndarray | None = found[0] if found is not None else None
        self.texts: list[str] = found[1] if found is not None else []

    def whole(self) -> np.ndarray:
        """The pieces concatenated (made once)."""
        if self._whole is None:
            self._whole = np.concatenate(self.pieces) if self.pieces else np.zeros(0, dtype=object)
        return self._whole

    def ranks(self) -> np.ndarray:
        """Per row, the rank of its text in UTF-8 byte order (the engine's string order); zeros for
        one object throughout, or for a column of too many texts to code."""
        if self.codes is None:
            return np.zeros(len(self.pointers), dtype=np.int64)
        by_bytes = np.argsort(np.array([t.encode("utf-8") for t in self.texts], dtype=object), kind="stable")
        rank = np.empty(len(self.texts), dtype=np.int64)
        rank[by_bytes] = np.arange(len(self.texts))
        return rank[self.codes]

    def encoded(self, order: np.ndarray | None = None) -> tuple[str, list[Chunk]]:
        """The column's Native type and bytes, rows in ``order`` (row numbers of the pieces
        concatenated) or as they came: ``LowCardinality(String)`` when coded, else ``String``."""
        if not len(self.pointers):
            return "String", []
        if self.single:
            return "String", [_EncodedStrings()[self.pieces[0][0]] * len(self.pointers)]
        if self.codes is not None:
            return "LowCardinality(String)", [low_cardinality_column(
                self.codes if order is None else self.codes[order], self.texts)]
        if order is None:
            return "String", [string_column(piece) for piece in self.pieces]
        ordered = self.whole()[order]
        return "String", [string_column(ordered[i:i + _JOIN_ROWS]) for i in range(0, len(ordered), _JOIN_ROWS)]


#: Rows a String column that must be encoded value by value is joined in at once (cache-sized).
_JOIN_ROWS = 100_000


def text_codes(values: np.ndarray, limit: int = 0xFFFF) -> tuple[np.ndarray, list[str]] | None:
    """Codes by text of a string column of many objects but few texts (one step per row);
    None beyond ``limit`` distinct texts.

    >>> codes, texts = text_codes(np.array(["".join("ab"), "".join("ab"), None], dtype=object))
    >>> codes.tolist(), texts
    ([0, 0, 1], ['ab', ''])
    """
    index: dict[str, int] = {}

    class _Codes(dict):
        def __missing__(self, value: object) -> int:
            code = self[value] = index.setdefault("" if value is None else str(value), len(index))
            return code

    codes = np.fromiter(map(_Codes().__getitem__, np.asarray(values, dtype=object).tolist()), dtype=np.uint32,
                        count=len(values))
    if len(index) > limit:
        return None
    return codes.astype(np.uint8 if len(index) <= 0xFF else np.uint16), list(index)


#: A piece of a Native payload: bytes, or the memory of a numpy array sent as it is (no copy;
#: the view keeps the array alive, and nothing writes to it before the insert has read it).
Chunk = bytes | memoryview


def raw_view(values: np.ndarray) -> memoryview:
    """The bytes of an array's values, without a copy when it is contiguous.

    >>> bytes(raw_view(np.array([1, 2], dtype="<u2")))
    b'\\x01\\x00\\x02\\x00'
    """
    return np.ascontiguousarray(values).reshape(-1).view(np.uint8).data


def _column_bytes(f: Field, col: np.ndarray) -> tuple[str, Chunk]:
    if f.kind == "str":
        return "String", string_column(col)
    if f.kind == "ip":
        return "IPv6", raw_view(np.ascontiguousarray(col, dtype=np.uint8))
    ch_type = CLICKHOUSE_TYPES[f.kind]
    dtype = {"UInt8": "<u1", "UInt16": "<u2", "UInt32": "<u4", "UInt64": "<u8", "Int64": "<i8",
             "Float64": "<f8"}[ch_type]
    return ch_type, raw_view(np.ascontiguousarray(col, dtype=dtype))


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
    names, parts = _block(batch.type, len(batch), [[batch.columns[f.name]] for f in batch.type.fields], ids, sizes)
    return names, b"".join(parts)


def native_block_of(batches: Sequence[RecordBatch]) -> tuple[list[str], bytes]:
    """One Native block holding the rows of several batches of one record type, in order.

    Each column is encoded batch by batch and the pieces joined: no concatenated copy of the
    batches is made (``RecordBatch.concat`` would copy every object column first).
    """
    names, chunks = native_chunks_of(batches)
    return names, b"".join(chunks)


#: Pieces of a block shorter than this are joined to their neighbours in :func:`native_chunks_of`.
CHUNK_MIN_BYTES = 1 << 16


def native_chunks_of(batches: Sequence[RecordBatch]) -> tuple[list[str], list[Chunk]]:
    """:func:`native_block_of`'s block as consecutive chunks (a column's data is one or a few of
    them), for a streaming insert that takes them one at a time: the block is never joined
    into one buffer (a copy of the whole payload, a tenth of encoding a block).

    >>> from finsa.wire import HEARTBEAT
    >>> batches = [HEARTBEAT.make_batch({"sensor_id": ["s1"]}), HEARTBEAT.make_batch({"sensor_id": ["s2"]})]
    >>> b"".join(native_chunks_of(batches)[1]) == native_block_of(batches)[1]
    True
    """
    rtype = batches[0].type
    columns = [[b.columns[f.name] for b in batches] for f in rtype.fields]
    names, parts = _block(rtype, sum(len(b) for b in batches), columns, [b.batch_id for b in batches],
                          [len(b) for b in batches])
    return names, _coalesced(parts)


def _coalesced(parts: list[Chunk]) -> list[Chunk]:
    """The parts in order: a part of :data:`CHUNK_MIN_BYTES` or more is a chunk of its own (never
    copied), runs of smaller ones between them are joined into one chunk."""
    chunks: list[Chunk] = []
    pending: list[Chunk] = []
    for part in parts:
        if len(part) < CHUNK_MIN_BYTES:
            pending.append(part)
            continue
        if pending:
            chunks.append(b"".join(pending))
            pending = []
        chunks.append(part)
    if pending:
        chunks.append(b"".join(pending))
    return chunks


def _block(rtype: RecordType, n_rows: int, columns: list[list[np.ndarray]], batch_ids: Sequence[bytes],
           counts: Sequence[int]) -> tuple[list[str], list[Chunk]]:
    parts: list[Chunk] = [varuint(len(rtype.fields) + 1), varuint(n_rows)]
    names = []
    for f, pieces in zip(rtype.fields, columns):
        if f.kind == "str":
            ch_type, data = StringPieces(pieces).encoded()
            parts += [_column_header(f.name, ch_type), *data]
        else:
            encoded = [_column_bytes(f, piece) for piece in pieces]
            parts += [_column_header(f.name, encoded[0][0]), *(data for _, data in encoded)]
        names.append(f.name)
    parts += [_column_header("batch_id", "FixedString(16)"), *(bid * count for bid, count in zip(batch_ids, counts))]
    names.append("batch_id")
    return names, parts
