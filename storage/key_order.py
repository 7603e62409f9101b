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

from typing import Sequence

import numpy as np

from finsa.wire import RecordBatch

from finsa.storage.native import (_column_bytes, _column_header, _EncodedStrings, _object_pointers, _coalesced,
                                  low_cardinality_column, string_codes, string_column, varuint)

__all__ = ["flows_key_order", "sorted_chunks_of", "text_codes"]

_MINUTE_MS = 60_000
#: Rows a String column that must be encoded value by value is joined in at once (cache-sized).
_JOIN_ROWS = 100_000


def _pointers(batches: Sequence[RecordBatch], name: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """The column's object addresses, and the object arrays they are in: the caller keeps those
    referenced while it reads objects by address (a column that is not of objects already is
    converted here, and its strings live only as long as the converted array). Empty batches
    are left out."""
    arrays = [np.ascontiguousarray(b.columns[name], dtype=object) for b in batches if len(b)]
    pointers = np.concatenate([_object_pointers(a) for a in arrays]) if arrays else np.zeros(0, dtype=np.uintp)
    return pointers, arrays


def _ranks(batches: Sequence[RecordBatch], name: str) -> np.ndarray:
    """Per row, the rank of a string column's text in byte order (the engine's string order)."""
    pointers, alive = _pointers(batches, name)
    found = string_codes(pointers) if len(pointers) and not (pointers == pointers[0]).all() else None
    if found is None and len(pointers) and not (pointers == pointers[0]).all():
        found = text_codes(np.concatenate([b.columns[name] for b in batches]))
    if found is None:
        return np.zeros(len(pointers), dtype=np.int64)
    codes, texts = found
    by_bytes = np.argsort(np.array([t.encode("utf-8") for t in texts], dtype=object), kind="stable")
    rank = np.empty(len(texts), dtype=np.int64)
    rank[by_bytes] = np.arange(len(texts))
    return rank[codes]


def flows_key_order(batches: Sequence[RecordBatch]) -> np.ndarray:
    """Row numbers of the batches (concatenated) in ``flows``' key order, ties in the order they
    came (a stable sort, as the engine's own: a part holds its rows exactly as before)."""
    rank = _ranks(batches, "institution_id")
    first = np.concatenate([b.columns["first_seen_ms"] for b in batches]).astype(np.int64)
    if not len(first):
        return np.zeros(0, dtype=np.intp)
    minute = first // _MINUTE_MS - first.min() // _MINUTE_MS
    words = np.ascontiguousarray(np.concatenate([b.columns["src_ip"] for b in batches]), dtype=np.uint8)
    words = words.view(">u8").reshape(len(first), 2).astype(np.uint64)
    high, low = words[:, 0], words[:, 1]
    rank_bits, minute_bits = int(rank.max()).bit_length(), int(minute.max()).bit_length()
    if (high == high[0]).all() and ((low >> np.uint64(32)) == (low[0] >> np.uint64(32))).all() \
            and rank_bits + minute_bits <= 32:  # one /96 (IPv4 as IPv4-mapped): one 64-bit key
        key = ((rank.astype(np.uint64) << np.uint64(minute_bits + 32)) | (minute.astype(np.uint64) << np.uint64(32))
               | (low & np.uint64(0xFFFFFFFF)))
        return np.argsort(key, kind="stable")
    return np.lexsort((low, high, minute, rank))


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


def _string_column(batches: Sequence[RecordBatch], name: str, order: np.ndarray) -> tuple[str, list[bytes]]:
    pointers, alive = _pointers(batches, name)
    if not len(pointers):
        return "String", []
    if (pointers == pointers[0]).all():  # one object throughout: one repeat, order does not matter
        return "String", [_EncodedStrings()[alive[0][0]] * len(pointers)]
    found = string_codes(pointers)
    whole = None
    if found is None:
        whole = np.concatenate([b.columns[name] for b in batches])
        found = text_codes(whole)
    if found is not None:
        return "LowCardinality(String)", [low_cardinality_column(found[0][order], found[1])]
    assert whole is not None
    ordered = whole[order]
    return "String", [string_column(ordered[i:i + _JOIN_ROWS]) for i in range(0, len(ordered), _JOIN_ROWS)]


def sorted_chunks_of(batches: Sequence[RecordBatch], order: np.ndarray) -> tuple[list[str], list[bytes]]:
    """:func:`~finsa.storage.native.native_chunks_of`'s block with its rows taken in ``order``.

    >>> from finsa.wire import FLOW
    >>> batch = FLOW.make_batch({"flow_id": [1, 2], "institution_id": ["b", "a"]}, batch_id=bytes(16))
    >>> names, chunks = sorted_chunks_of([batch], flows_key_order([batch]))
    >>> names[:4], b"\\x07flow_id\\x06UInt64" + (2).to_bytes(8, "little") + (1).to_bytes(8, "little") in b"".join(chunks)
    (['flow_id', 'first_seen_ms', 'last_seen_ms', 'institution_id'], True)
    """
    rtype = batches[0].type
    parts = [varuint(len(rtype.fields) + 1), varuint(len(order))]
    names = []
    for f in rtype.fields:
        if f.kind == "str":
            ch_type, data = _string_column(batches, f.name, order)
        elif f.kind == "ip":
            whole = np.ascontiguousarray(np.concatenate([b.columns[f.name] for b in batches]), dtype=np.uint8)
            ch_type, data = "IPv6", [whole.view("V16").reshape(-1)[order].tobytes()]
        else:
            ch_type, encoded = _column_bytes(f, np.concatenate([b.columns[f.name] for b in batches])[order])
            data = [encoded]
        parts += [_column_header(f.name, ch_type), *data]
        names.append(f.name)
    source = np.repeat(np.arange(len(batches)), [len(b) for b in batches])[order]
    ids = np.frombuffer(b"".join(b.batch_id for b in batches), dtype="V16")
    parts += [_column_header("batch_id", "FixedString(16)"), ids[source].tobytes()]
    names.append("batch_id")
    return names, _coalesced(parts)
