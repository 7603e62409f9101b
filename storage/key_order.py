"""A flows block sent with its rows already in the ``flows`` table's key order.

``flows`` is ``ORDER BY (institution_id, toStartOfMinute(first_seen), src_ip)``
(:func:`finsa.storage.schema.flows_ddl`). The engine sorts every inserted block by that key
before it writes the part, unless the block is sorted already (it checks first): a fifth of
the engine's CPU for a 500k-row write. :func:`flows_key_order` finds the order with numpy
(institutions ranked by their UTF-8 bytes, minutes, addresses as two big-endian words: the
engine's own comparisons), and :func:`sorted_chunks_of` encodes the block in that order -- the
same columns and values as :func:`finsa.storage.native.native_chunks_of`, rows permuted.
Correctness never depends on the order: a block the engine does not find sorted is sorted
there, as before.

>>> from finsa.wire import FLOW
>>> batch = FLOW.make_batch({"institution_id": ["b", "a", "b", "a"], "first_seen_ms": [0, 60_000, 0, 0],
...                          "src_ip": ["10.0.0.2", "10.0.0.1", "10.0.0.1", "::1"]})
>>> flows_key_order([batch]).tolist()
[3, 1, 2, 0]
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from finsa.wire import RecordBatch

from finsa.storage.native import Chunk, StringPieces, _column_bytes, _column_header, _coalesced, raw_view, varuint

__all__ = ["flows_key_order", "sorted_chunks_of", "flows_sorted_block"]

_MINUTE_MS = 60_000


def _institutions(batches: Sequence[RecordBatch]) -> StringPieces:
    return StringPieces([b.columns["institution_id"] for b in batches], by_text=True)


def flows_key_order(batches: Sequence[RecordBatch], institutions: StringPieces | None = None) -> np.ndarray:
    """Row numbers of the batches (concatenated) in ``flows``' key order, ties in the order they
    came (a stable sort, as the engine's own: a part holds its rows exactly as before);
    ``institutions``: the batches' ``institution_id`` already read (:func:`flows_sorted_block`)."""
    rank = (institutions or _institutions(batches)).ranks()
    first = np.concatenate([b.columns["first_seen_ms"] for b in batches]).astype(np.int64)
    if not len(first):
        return np.zeros(0, dtype=np.intp)
    minute = first // _MINUTE_MS - first.min() // _MINUTE_MS
    words = np.ascontiguousarray(np.concatenate([b.columns["src_ip"] for b in batches]), dtype=np.uint8)
    words = words.view(">u8").reshape(len(first), 2).astype(np.uint64)
    high, low = words[:, 0], words[:, 1]
    rank_bits, minute_bits = int(rank.max()).bit_length(), int(minute.max()).bit_length()
    row_bits = max(len(first) - 1, 1).bit_length()
    if (high == high[0]).all() and ((low >> np.uint64(32)) == (low[0] >> np.uint64(32))).all() \
            and rank_bits + minute_bits <= 32:  # one /96 (IPv4 as IPv4-mapped): one 64-bit key
        key = ((rank.astype(np.uint64) << np.uint64(minute_bits + 32)) | (minute.astype(np.uint64) << np.uint64(32))
               | (low & np.uint64(0xFFFFFFFF)))
        if rank_bits + minute_bits + 32 + row_bits <= 64:  # the row number in the low bits: every key distinct,
            # so the (vectorised, unstable) sort of the keys is the stable order, read back from those bits
            key = (key << np.uint64(row_bits)) | np.arange(len(key), dtype=np.uint64)
            return (np.sort(key) & np.uint64((1 << row_bits) - 1)).astype(np.intp)
        return np.argsort(key, kind="stable")
    return np.lexsort((low, high, minute, rank))


def flows_sorted_block(batches: Sequence[RecordBatch]) -> tuple[list[str], list[Chunk]]:
    """The flows block in the table's key order: :func:`sorted_chunks_of` of
    :func:`flows_key_order`, ``institution_id`` read once for both."""
    institutions = _institutions(batches)
    return sorted_chunks_of(batches, flows_key_order(batches, institutions), {"institution_id": institutions})


def sorted_chunks_of(batches: Sequence[RecordBatch], order: np.ndarray,
                     read: Mapping[str, StringPieces] | None = None) -> tuple[list[str], list[Chunk]]:
    """:func:`~finsa.storage.native.native_chunks_of`'s block with its rows taken in ``order``;
    ``read``: string columns already read, by name.

    >>> from finsa.wire import FLOW
    >>> batch = FLOW.make_batch({"flow_id": [1, 2], "institution_id": ["b", "a"]}, batch_id=bytes(16))
    >>> names, chunks = sorted_chunks_of([batch], flows_key_order([batch]))
    >>> names[:4], b"\\x07flow_id\\x06UInt64" + (2).to_bytes(8, "little") + (1).to_bytes(8, "little") in b"".join(chunks)
    (['flow_id', 'first_seen_ms', 'last_seen_ms', 'institution_id'], True)
    """
    rtype = batches[0].type
    parts: list[Chunk] = [varuint(len(rtype.fields) + 1), varuint(len(order))]
    names = []
    for f in rtype.fields:
        if f.kind == "str":
            column = (read or {}).get(f.name) or StringPieces([b.columns[f.name] for b in batches], by_text=True)
            ch_type, data = column.encoded(order)
        elif f.kind == "ip":
            whole = np.ascontiguousarray(np.concatenate([b.columns[f.name] for b in batches]), dtype=np.uint8)
            ch_type, data = "IPv6", [raw_view(whole.view("V16").reshape(-1)[order])]
        else:
            ch_type, encoded = _column_bytes(f, np.concatenate([b.columns[f.name] for b in batches])[order])
            data = [encoded]
        parts += [_column_header(f.name, ch_type), *data]
        names.append(f.name)
    source = np.repeat(np.arange(len(batches)), [len(b) for b in batches])[order]
    ids = np.frombuffer(b"".join(b.batch_id for b in batches), dtype="V16")
    parts += [_column_header("batch_id", "FixedString(16)"), raw_view(ids[source])]
    names.append("batch_id")
    return names, _coalesced(parts)
