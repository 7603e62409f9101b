"""CSV lines of a record batch, written by one compiled pass over its rows (no Arrow).

:func:`csv_chunks` gives a batch's rows as CSV text, a chunk of rows at a time: integers in
decimal, addresses as :func:`finsa.wire.ips_to_strings` writes them (IPv4-mapped ones formatted
in the loop as a dotted quad, any other by ``ipaddress``), text as it is, ``None`` as an empty
field, ``,`` between fields and ``\\n`` after each row: what Python's ``csv`` module writes for
a row with nothing to quote. A batch with a text value that needs quoting (a comma, quote or
line break) gives None: the caller writes it with the ``csv`` module.

Text columns are told apart by object, not by text (no Python step per row): a column holding
one object throughout (every "", one institution id) is one constant; another gets per-row codes
from a hash of the objects' addresses, each distinct object's text encoded once.

>>> from finsa.wire import FLOW
>>> batch = FLOW.make_batch({"src_ip": ["10.0.0.1", "2001:db8::1"], "dst_port": [443, 53],
...                          "first_seen_ms": [-5, 1772442006922], "http_host": ["a.example", None]})
>>> text = b"".join(csv_chunks(batch, FLOW)).decode()
>>> [line.split(",")[1:3] + line.split(",")[8:12] for line in text.splitlines()]
[['-5', '0', '10.0.0.1', '', '0', '443'], ['1772442006922', '0', '2001:db8::1', '', '0', '53']]
>>> csv_chunks(FLOW.make_batch({"http_uri": ["/a,b"]}), FLOW) is None
True
"""

from __future__ import annotations

import re
from typing import Iterator

import numpy as np

from finsa.collectors.agent.ipv4_words import ipv4_words
from finsa.collectors.compiled import carray, helper, kernel
from finsa.object_codes import address_slots, object_pointers
from finsa.wire import ips_to_strings

__all__ = ["csv_chunks"]

#: Column kinds of the plan the loop reads: (kind, index, extra) per column.
_U8, _U16, _U64, _I64, _TEXT, _IP = range(6)
_NUMBERS = {"u8": (_U8, np.uint8, 3), "u16": (_U16, np.uint16, 5), "u64": (_U64, np.uint64, 20),
            "i64": (_I64, np.uint64, 20)}  # i64 is passed as its two's complement bits
_SPECIAL = re.compile(rb'[,"\r\n]')
#: Rows per call of the loop: its output (about 150 bytes a row) stays in the CPU's caches.
CHUNK_ROWS = 8192


@helper
def _decimal(out, pos, v):
    """Write the uint64 ``v`` in decimal at ``out[pos]``; the position after it."""
    digits = 1
    power = np.uint64(10)
    while digits < 20 and v >= power:
        power = power * np.uint64(10)
        digits += 1
    at = pos + digits - 1
    for _ in range(digits):
        out[at] = np.uint8(np.uint64(48) + v % np.uint64(10))
        v = v // np.uint64(10)
        at -= 1
    return pos + digits


@helper
def _octet(out, pos, b):
    """Write the byte ``b`` (an int64 0-255) in decimal at ``out[pos]``; the position after it."""
    if b >= 100:
        out[pos] = 48 + b // 100
        pos += 1
    if b >= 10:
        out[pos] = 48 + (b // 10) % 10
        pos += 1
    out[pos] = 48 + b % 10
    return pos + 1


@kernel("i64(i64*, i64, i64, i64, i64, u8*, u16*, u64*, u8*, i64*, u8*, i64*, i64*, u8*, i64, i64)")
def _rows(plan_p, ncols, n, start, stop, m8_p, m16_p, m64_p, ips_p, codes_p, texts_p, offsets_p, sizes_p,
          out_p, cap, row_max):
    """Rows ``start``-``stop`` as CSV lines into ``out``: bytes written, -1 if ``cap`` is short."""
    sizes = carray(sizes_p, 7)
    plan, m8, m16, m64 = carray(plan_p, 3 * ncols), carray(m8_p, sizes[0]), carray(m16_p, sizes[1]), \
        carray(m64_p, sizes[2])
    ips, codes, texts, offsets = carray(ips_p, sizes[3]), carray(codes_p, sizes[4]), carray(texts_p, sizes[5]), \
        carray(offsets_p, sizes[6])
    out = carray(out_p, cap)
    pos = 0
    for i in range(start, stop):
        if pos + row_max > cap:
            return -1
        for c in range(ncols):
            kind, index, extra = plan[3 * c], plan[3 * c + 1], plan[3 * c + 2]
            if c:
                out[pos] = 44  # ,
                pos += 1
            if kind == 0:
                pos = _decimal(out, pos, np.uint64(m8[index * n + i]))
            elif kind == 1:
                pos = _decimal(out, pos, np.uint64(m16[index * n + i]))
            elif kind == 2:
                pos = _decimal(out, pos, m64[index * n + i])
            elif kind == 3:
                v = m64[index * n + i]
                if v >= np.uint64(0x8000000000000000):
                    out[pos] = 45  # -
                    pos += 1
                    v = (v ^ np.uint64(0xFFFFFFFFFFFFFFFF)) + np.uint64(1)
                pos = _decimal(out, pos, v)
            else:
                text = extra
                if kind == 5:
                    at = (index * n + i) * 16
                    mapped = ips[at + 10] == 255 and ips[at + 11] == 255
                    for k in range(10):
                        mapped = mapped and ips[at + k] == 0
                    if mapped:
                        for k in range(4):
                            if k:
                                out[pos] = 46  # .
                                pos += 1
                            pos = _octet(out, pos, np.int64(ips[at + 12 + k]))
                        continue
                    text = codes[extra * n + i]
                elif index >= 0:
                    text = codes[index * n + i]
                for b in range(offsets[text], offsets[text + 1]):
                    out[pos] = texts[b]
                    pos += 1
        out[pos] = 10  # \n
        pos += 1
    return pos


class _Texts:
    """The distinct texts of a batch's text and address columns, each encoded once."""

    def __init__(self) -> None:
        self.encoded: list[bytes] = []

    def add(self, texts: list[bytes]) -> int:
        """Append ``texts``: the code of the first."""
        self.encoded.extend(texts)
        return len(self.encoded) - len(texts)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        blob = b"".join(self.encoded)
        offsets = np.zeros(len(self.encoded) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, self.encoded), dtype=np.int64, count=len(self.encoded)), out=offsets[1:])
        return np.frombuffer(blob, dtype=np.uint8) if blob else np.zeros(1, np.uint8), offsets


def _encode(value: object) -> bytes:
    return b"" if value is None else str(value).encode()


def _object_codes(values: np.ndarray, pointers: np.ndarray | None = None) -> tuple[list[object], np.ndarray]:
    """(distinct objects, code of each row) of an object column by the objects' addresses (no
    Python step per row when the addresses fit a 16-bit hash; else one dict look-up per row);
    ``pointers``: the column's :func:`~finsa.object_codes.object_pointers`, when already read.

    >>> objs, codes = _object_codes(np.array(["a", "b", "a", None], dtype=object))
    >>> [objs[c] for c in codes]
    ['a', 'b', 'a', None]
    """
    found = address_slots(object_pointers(values) if pointers is None else pointers, (8, 12, 16))
    if found is not None:
        slot, table = found
        used = np.flatnonzero(table)
        remap = np.zeros(len(table), dtype=np.int64)
        remap[used] = np.arange(len(used))
        return [values[slot_row] for slot_row in _first_rows(slot, used)], remap[slot]
    items = values.tolist()  # more distinct objects than a 16-bit hash tells apart: by value
    distinct = list(dict.fromkeys(items))
    code_of = {v: k for k, v in enumerate(distinct)}
    return distinct, np.fromiter(map(code_of.__getitem__, items), dtype=np.int64, count=len(items))


def _first_rows(slot: np.ndarray, used: np.ndarray) -> list[int]:
    """For each used slot (ascending), a row that holds it."""
    rows = np.zeros(int(slot.max()) + 1 if len(slot) else 0, dtype=np.intp)
    rows[slot] = np.arange(len(slot))
    return rows[used].tolist()


class _Plan:
    """A batch laid out for :func:`_rows`: number columns stacked per width, address columns,
    per-row text codes, the texts, and per column (kind, index, extra)."""

    def __init__(self, batch, schema) -> None:
        self.n = n = len(batch)
        numbers: dict[int, list[np.ndarray]] = {_U8: [], _U16: [], _U64: []}
        ips: list[np.ndarray] = []
        codes: list[np.ndarray] = []
        self.texts = _Texts()
        self.plan: list[tuple[int, int, int]] = []
        self.row_max = len(schema.fields)  # the commas and the line break
        self.quoting = False
        for f in schema.fields:
            col = batch.columns[f.name]
            if f.kind in _NUMBERS:
                kind, dtype, width = _NUMBERS[f.kind]
                stack = numbers[_U64 if kind == _I64 else kind]
                stack.append(np.asarray(col).astype(dtype, copy=False))
                self.plan.append((kind, len(stack) - 1, 0))
                self.row_max += width
            elif f.kind == "ip":
                ips.append(np.ascontiguousarray(col, dtype=np.uint8))
                code_row, width = self._other_addresses(ips[-1], codes)
                self.plan.append((_IP, len(ips) - 1, code_row))
                self.row_max += width
            else:
                self.plan.append(self._text_column(np.ascontiguousarray(col, dtype=object), codes))
        self.m8, self.m16, self.m64 = (_stacked(numbers[k], dtype, n) for k, dtype in
                                       ((_U8, np.uint8), (_U16, np.uint16), (_U64, np.uint64)))
        self.ips = _stacked(ips, np.uint8, n * 16)
        self.codes = _stacked(codes, np.int64, n)

    def _text_column(self, values: np.ndarray, codes: list[np.ndarray]) -> tuple[int, int, int]:
        if not len(values):
            return _TEXT, -1, self.texts.add([b""])
        pointers = object_pointers(values)
        if (pointers == pointers[0]).all():
            objects, row_codes = [values[0]], None
        else:
            objects, row_codes = _object_codes(values, pointers)
        encoded = [_encode(v) for v in objects]
        self.quoting = self.quoting or _SPECIAL.search(b"\0".join(encoded)) is not None
        self.row_max += max(map(len, encoded))
        first = self.texts.add(encoded)
        if row_codes is None:
            return _TEXT, -1, first
        codes.append(row_codes + first)
        return _TEXT, len(codes) - 1, 0

    def _other_addresses(self, column: np.ndarray, codes: list[np.ndarray]) -> tuple[int, int]:
        """(code row of the column's addresses that are not IPv4-mapped, or -1 when all are; the
        widest text of the column)."""
        mapped = ipv4_words(column)[0]
        if mapped.all():
            return -1, 15
        others = np.flatnonzero(~mapped)
        distinct, inverse = np.unique(column[others].view("V16").ravel(), return_inverse=True)
        encoded = [t.encode() for t in ips_to_strings(distinct.view(np.uint8).reshape(-1, 16))]
        row_codes = np.full(len(column), -1, dtype=np.int64)
        row_codes[others] = self.texts.add(encoded) + inverse.ravel()
        codes.append(row_codes)
        return len(codes) - 1, max(15, *map(len, encoded))


def _stacked(columns: list[np.ndarray], dtype, size: int) -> np.ndarray:
    """The columns one after another in one C-contiguous array (one zero when there are none)."""
    if not columns or not size:
        return np.zeros(1, dtype=dtype)
    return np.concatenate([c.reshape(-1) for c in columns]).astype(dtype, copy=False)


def csv_chunks(batch, schema, chunk_rows: int = CHUNK_ROWS) -> Iterator[memoryview] | None:
    """The batch's rows as CSV lines, ``chunk_rows`` rows a chunk (each chunk a view of one buffer
    that the next overwrites: write it before asking for the next); None when a text value needs
    quoting."""
    plan = _Plan(batch, schema)
    if plan.quoting:
        return None
    return _chunks(plan, chunk_rows)


def _chunks(plan: _Plan, chunk_rows: int) -> Iterator[memoryview]:
    texts, offsets = plan.texts.arrays()
    table = np.array(plan.plan, dtype=np.int64).reshape(-1)
    sizes = np.array([len(a) for a in (plan.m8, plan.m16, plan.m64, plan.ips, plan.codes, texts, offsets)],
                     dtype=np.int64)
    cap = min(plan.n, chunk_rows) * plan.row_max
    out = np.empty(max(cap, 1), dtype=np.uint8)
    for start in range(0, plan.n, chunk_rows):
        stop = min(plan.n, start + chunk_rows)
        used = _rows(table, len(plan.plan), plan.n, start, stop, plan.m8, plan.m16, plan.m64, plan.ips,
                     plan.codes, texts, offsets, sizes, out, cap, plan.row_max)
        if used < 0:
            raise RuntimeError("csv_rows: a row is longer than its bound")
        yield out[:used].data
