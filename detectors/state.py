"""Containers of detector state, kept cheap per batch: keyed tables, windows of rows, membership.

* :class:`KeyedTable` keeps float64 columns of state per uint64 key, rows in insertion order,
  found by a vectorised open-addressing hash index: a batch's lookups and inserts cost in the keys
  it brings, not in the table (held as sorted arrays, every insert rewrote every column of the
  table). Row order carries no meaning: a decision over rows breaks ties by key.
* :class:`RowBuffer` keeps a detector's window of rows (failed attempts, probes) as the batches
  that brought them: appending is a list append, dropping rows notes which rows of a chunk are
  left (a chunk is copied once most of it is gone), and a whole-window column is concatenated
  only for the columns a decision reads. Held as one dict of columns, every batch copied the
  whole window twice (concatenate, filter), text and address columns included. Row order is
  append order, as one concatenated buffer would have it.
* :class:`KeyCounts` counts a key's rows in such state as they come and go, so that a detector
  skips keys with too few rows for any decision.
* :func:`isin_keys` is ``np.isin`` by a hash table of the keys: for a large state column and the
  few keys a batch touched, one pass instead of a sort of both. :func:`unique` and
  :func:`unique_first` are ``np.unique`` by a sort (numpy 2.3+ hashes integers, far slower).

>>> buf = RowBuffer()
>>> buf.append({"t": np.array([1, 2]), "name": np.array(["a", "b"], dtype=object)})
>>> buf.append({"t": np.array([3]), "name": np.array(["c"], dtype=object)})
>>> len(buf), buf.column("t").tolist()
(3, [1, 2, 3])
>>> buf.keep(buf.column("t") >= 2)
>>> buf.select(np.array([True, False]))["name"].tolist(), len(buf.chunks)
(['b'], 2)
>>> newest_rows(np.array([5, 1, 5, 3, 5]), 2).tolist()  # the stable sort's last two
[False, False, True, False, True]
>>> t = KeyedTable(("a", "b"))
>>> pos = t.upsert(np.array([9, 4], np.uint64), b=1.0)
>>> t.cols["a"][pos] += 2.0
>>> t.keys.tolist(), t.cols["a"].tolist(), t.cols["b"].tolist()
([4, 9], [2.0, 2.0], [1.0, 1.0])
"""

from __future__ import annotations

import numpy as np

__all__ = ["KeyCounts", "KeyedTable", "RowBuffer", "isin_keys", "merge_sorted", "newest_rows", "unique", "unique_first"]

_M1 = np.uint64(0x9E3779B97F4A7C15)


def unique(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` by a sort: numpy 2.3+ finds the unique values of an integer array
    with a hash set, 5-40x the CPU of a sort for 2k-200k distinct 64-bit keys.

    >>> unique(np.array([9, 4, 9, 1], np.uint64)).tolist(), unique(np.array([2.0, np.nan, np.nan])).tolist()
    ([1, 4, 9], [2.0, nan])
    """
    values = np.asarray(values).ravel()
    if values.dtype.kind not in "uif" or (values.dtype.kind == "f" and np.isnan(values).any()):
        return np.unique(values)  # NaNs are one value for np.unique, never equal for ``!=``
    s = np.sort(values)
    if len(s) < 2:
        return s
    keep = np.empty(len(s), dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def unique_first(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(values, return_index=True, return_inverse=True, return_counts=True)`` of a 1-D
    integer array by an unstable sort (the first row of each value is the least row of its run):
    a third of the CPU of the stable sort ``np.unique`` does for ``return_index``.

    >>> [a.tolist() for a in unique_first(np.array([7, 3, 7, 7, 3], np.uint64))]
    [[3, 7], [1, 0], [1, 0, 1, 1, 0], [2, 3]]
    """
    n = len(values)
    if values.dtype.kind not in "ui" or n < 2:
        return np.unique(values, return_index=True, return_inverse=True, return_counts=True)
    order = np.argsort(values)
    s = values[order]
    start = np.empty(n, dtype=bool)
    start[0] = True
    np.not_equal(s[1:], s[:-1], out=start[1:])
    starts = np.flatnonzero(start)
    inverse = np.empty(n, dtype=np.intp)
    inverse[order] = np.cumsum(start) - 1
    count = np.diff(starts, append=n)
    return s[starts], np.minimum.reduceat(order, starts), inverse, count


def newest_rows(t: np.ndarray, limit: int) -> np.ndarray:
    """Mask of the ``limit`` rows a stable ascending sort of ``t`` puts last (ties: the later
    rows), without sorting: the cut value by ``np.partition``, then the ties at the cut."""
    n = len(t)
    if limit >= n:
        return np.ones(n, dtype=bool)
    if limit <= 0:
        return np.zeros(n, dtype=bool)
    cut = np.partition(t, n - limit)[n - limit]
    keep = t > cut
    ties = np.flatnonzero(t == cut)
    keep[ties[len(ties) - (limit - int(keep.sum())):]] = True
    return keep


class RowBuffer:
    """Rows with the same columns, in append order, in chunks (see the module docstring).

    Dropping some rows of a chunk only notes which of its rows are left; the chunk is copied
    once fewer than half are (a window sliding by a batch drops parts of its oldest chunks
    batch after batch, and most columns are read only for the few rows a decision selects).
    """

    def __init__(self) -> None:
        self.chunks: list[dict[str, np.ndarray]] = []
        self._rows: list[np.ndarray | None] = []  # per chunk: its rows left (None: all)
        self._sizes: list[int] = []
        self._empty: dict[str, np.ndarray] = {}  # the columns with no row (what an empty selection gives)

    def __getstate__(self) -> dict:
        chunks = [c if r is None else {k: v[r] for k, v in c.items()} for c, r in zip(self.chunks, self._rows)]
        return {**self.__dict__, "chunks": chunks, "_rows": [None] * len(chunks)}  # the rows left only

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if "_rows" not in state:  # pickled before rows were noted
            self._rows = [None] * len(self.chunks)

    @classmethod
    def of(cls, columns: dict[str, np.ndarray] | None) -> "RowBuffer":
        """A buffer holding ``columns`` (a detector state pickled as one dict of columns)."""
        buf = cls()
        if columns is not None:
            buf.append(columns)
        return buf

    def __len__(self) -> int:
        return sum(self._sizes)

    def append(self, columns: dict[str, np.ndarray]) -> None:
        n = len(next(iter(columns.values())))
        self._empty = {k: v[:0] for k, v in columns.items()}
        if n:
            self.chunks.append(columns)
            self._rows.append(None)
            self._sizes.append(n)

    def column(self, name: str) -> np.ndarray:
        """One column over every row (a new array, or the only chunk's)."""
        parts = [c[name] if r is None else c[name][r] for c, r in zip(self.chunks, self._rows)]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return self._empty[name]
        return np.concatenate(parts)

    def _split(self, mask: np.ndarray) -> list[np.ndarray]:
        return np.split(mask, np.cumsum(self._sizes[:-1])) if len(self.chunks) > 1 else [mask]

    def keep(self, mask: np.ndarray) -> None:
        """Keep the rows where ``mask`` (over every row, in order) is true."""
        chunks, rows_left, sizes = [], [], []
        for chunk, rows, part in zip(self.chunks, self._rows, self._split(mask)):
            n = int(part.sum())
            if not n:
                continue
            if n < len(part):
                rows = np.flatnonzero(part) if rows is None else rows[part]
                if 2 * n < len(next(iter(chunk.values()))):  # most of the chunk is gone: copy the rest
                    chunk, rows = {k: v[rows] for k, v in chunk.items()}, None
            chunks.append(chunk)
            rows_left.append(rows)
            sizes.append(n)
        self.chunks, self._rows, self._sizes = chunks, rows_left, sizes

    def select(self, mask: np.ndarray) -> dict[str, np.ndarray]:
        """The rows where ``mask`` is true, as one dict of columns (in order)."""
        parts = []
        for chunk, rows, part in zip(self.chunks, self._rows, self._split(mask)):
            if part.any():
                take = np.flatnonzero(part) if rows is None else rows[part]
                parts.append({k: v[take] for k, v in chunk.items()})
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return dict(self._empty)
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _slots(values: np.ndarray, shift: np.uint64) -> np.ndarray:
    """Fibonacci hash of 8-byte numbers into ``64 - shift`` bits (``-0.0`` hashed as ``0.0``),
    as int64 (one array, computed in place)."""
    if values.dtype.kind == "f":
        h = np.add(values, 0.0).view(np.uint64)
    else:
        h = values.view(np.uint64).copy()
    with np.errstate(over="ignore"):
        np.multiply(h, _M1, out=h)
    np.right_shift(h, shift, out=h)
    return h.view(np.int64)  # < 2**(64 - shift): the same number


def isin_keys(values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``np.isin(values, keys)``, by a hash table of ``keys`` for 8-byte number columns.

    For a large state column (``values``) and the keys a batch touched: one pass over the values
    (a hash and a lookup; ``==`` only where a key shares the slot), where ``np.isin`` sorts both
    (4-6x the CPU at 200k-500k values).

    >>> isin_keys(np.array([5, 1, 9, 5], np.uint64), np.array([1, 5], np.uint64)).tolist()
    [True, True, False, True]
    >>> isin_keys(np.array([0.0, -0.0, np.nan, 2.0]), np.array([-0.0, np.nan])).tolist()
    [True, True, False, False]
    """
    if (values.dtype != keys.dtype or values.dtype.itemsize != 8 or values.dtype.kind not in "uif"
            or len(keys) < 10 * len(values) ** 0.145):  # few keys: np.isin compares them one by one
        return np.isin(values, keys)
    out = np.zeros(len(values), dtype=bool)
    bits = max(4, (4 * len(keys) - 1).bit_length())  # at least four slots per key: few values meet a key's slot
    shift = np.uint64(64 - bits)
    key_slots = _slots(keys, shift)
    table = keys[np.argsort(key_slots, kind="stable")]  # the keys of slot s: table[start[s]:start[s] + count[s]]
    count = np.bincount(key_slots, minlength=1 << bits)
    start = np.cumsum(count) - count
    slot = _slots(values, shift)
    rows = np.flatnonzero(count[slot])  # values whose slot holds a key: only they are compared
    slot = slot[rows]
    n_keys, first, mine, j = count[slot], start[slot], values[rows], 0
    while len(rows):
        same = table[first + j] == mine
        out[rows] = same
        j += 1
        more = (n_keys > j) & ~same
        rows, n_keys, first, mine = rows[more], n_keys[more], first[more], mine[more]
    return out


def _positions(table: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``np.searchsorted(table, keys)``; many keys are searched in sorted order (the binary
    searches then walk the table's memory in order: half the time for 20k keys in 361k)."""
    if len(keys) < 2048 or len(table) < 2048:
        return np.searchsorted(table, keys)
    order = np.argsort(keys)
    pos = np.empty(len(keys), dtype=np.intp)
    pos[order] = np.searchsorted(table, keys[order])
    return pos


def merge_sorted(columns: dict[str, np.ndarray], fill: dict[str, np.ndarray], key: str = "keys") -> dict[str, np.ndarray]:
    """``columns`` (rows sorted by the unique ``columns[key]``) with the rows ``fill`` inserted,
    whose keys are sorted, unique and none of them in ``columns``: what concatenating both and a
    stable sort by key gives, by taking each old row once (2-D columns as whole rows).

    >>> merge_sorted({"keys": np.array([2, 9]), "v": np.array([[1, 1], [9, 9]])},
    ...              {"keys": np.array([5]), "v": np.array([[5, 5]])})["v"].tolist()
    [[1, 1], [5, 5], [9, 9]]
    """
    old = columns[key]
    if not len(old) or any(columns[k].dtype != fill[k].dtype for k in columns):
        merged = {k: np.concatenate([v, fill[k]]) for k, v in columns.items()}
        order = np.argsort(merged[key], kind="stable")
        return {k: v[order] for k, v in merged.items()}
    new_at = np.searchsorted(old, fill[key]) + np.arange(len(fill[key]))
    source = np.zeros(len(old) + len(new_at), dtype=np.intp)  # the old row each merged row copies
    old_rows = np.ones(len(source), dtype=bool)
    old_rows[new_at] = False
    source[old_rows] = np.arange(len(old))
    out = {}
    for k, v in columns.items():
        out[k] = v.take(source, axis=0)
        out[k][new_at] = fill[k]
    return out


def _merged(old: np.ndarray, old_rows: np.ndarray, new_at: np.ndarray, new: np.ndarray | float) -> np.ndarray:
    """``old`` with ``new`` inserted at rows ``new_at`` of the result (``old_rows`` marks the others)."""
    out = np.empty(len(old_rows), dtype=old.dtype)
    out[old_rows] = old
    out[new_at] = new
    return out


class KeyedTable:
    """Float64 columns of state per uint64 key (see the module docstring).

    Rows are in insertion order; ``keys`` and every ``cols`` column are views of the first
    ``len(table)`` rows of arrays with room to grow (re-read ``cols[name]`` after an insert: the
    dict is the same, a column may be a new array). An open-addressing hash index (linear probing,
    at most half full) maps a key to its row: a lookup, an insert or a removal costs in the keys
    it is given, not in the size of the table.
    """

    def __init__(self, columns: tuple[str, ...]) -> None:
        self._set({"keys": np.zeros(0, dtype=np.uint64), "cols": {name: np.zeros(0) for name in columns}})

    # --- storage -----------------------------------------------------------------------

    def _set(self, state: dict) -> None:
        keys = np.asarray(state["keys"]).astype(np.uint64, copy=False)
        self._n = len(keys)
        room = max(16, self._n + self._n // 2)
        self._keys = np.zeros(room, dtype=np.uint64)
        self._keys[:self._n] = keys
        self._store = {}
        for name, col in state["cols"].items():
            self._store[name] = np.zeros(room)
            self._store[name][:self._n] = col
        self.cols: dict[str, np.ndarray] = self.__dict__.get("cols", {})  # the same dict, for callers holding it
        self.cols.clear()
        self._views()
        self._reindex()

    def __getstate__(self) -> dict:
        return {"keys": self.keys.copy(), "cols": {k: v.copy() for k, v in self.cols.items()}}

    def __setstate__(self, state: dict) -> None:
        self._set(state)  # also a table pickled as sorted arrays (the same two entries)

    def _views(self) -> None:
        self.keys = self._keys[:self._n]
        for name, col in self._store.items():
            self.cols[name] = col[:self._n]  # the same dict: a caller holding it sees the new column

    def _grow(self, n: int) -> None:
        if n <= len(self._keys):
            return
        room = max(n, len(self._keys) + len(self._keys) // 2)  # half again: copies stay amortised
        self._keys = np.concatenate([self._keys[:self._n], np.zeros(room - self._n, dtype=np.uint64)])
        self._store = {k: np.concatenate([v[:self._n], np.zeros(room - self._n)]) for k, v in self._store.items()}

    def __len__(self) -> int:
        return self._n

    # --- the hash index ----------------------------------------------------------------

    def _reindex(self, at_least: int = 0) -> None:
        """A new index of every row, with room for as many rows again (and ``at_least`` slots)."""
        bits = max(4, (4 * self._n - 1).bit_length(), (at_least - 1).bit_length())  # 4 slots a row after a rebuild
        self._shift = np.uint64(64 - bits)
        self._mask = (1 << bits) - 1
        self._slot_rows = np.full(1 << bits, -1, dtype=np.int32)  # -1 free, -2 a removed row's, else a row
        self._used = 0  # slots not free (rows and removed rows' marks)
        if not self._n:
            return
        # Into an empty index, keys taken in order of their home slot land where linear probing
        # puts them: each at its home slot or just after the previous key, whichever is later.
        home = self._home(self.keys)
        order = np.argsort(home)
        steps = np.arange(self._n)
        at = np.maximum.accumulate(home[order] - steps) + steps
        inside = at <= self._mask  # the few past the end wrap around: placed by probing
        self._slot_rows[at[inside]] = order[inside]
        self._used = int(inside.sum())
        if not inside.all():
            self._place(self.keys[order[~inside]], order[~inside])

    def _home(self, keys: np.ndarray) -> np.ndarray:
        return _slots(keys, self._shift)

    def _find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row or -1, slot or -1) of each key."""
        table, stored = self._slot_rows, self._keys
        slot = self._home(keys)
        r = table[slot]
        hit = stored[np.maximum(r, 0)] == keys
        hit &= r >= 0
        rows = np.where(hit, r, -1).astype(np.intp)
        slots = np.where(hit, slot, -1)
        todo = np.flatnonzero((r != -1) & ~hit)  # a free slot ends the search; a removed row's mark does not
        mine, slot = keys[todo], (slot[todo] + 1) & self._mask
        while len(todo):
            r = table[slot]
            hit = r >= 0
            hit[hit] = stored[r[hit]] == mine[hit]
            rows[todo[hit]] = r[hit]
            slots[todo[hit]] = slot[hit]
            more = (r != -1) & ~hit
            todo, mine, slot = todo[more], mine[more], (slot[more] + 1) & self._mask
        return rows, slots

    def _place(self, keys: np.ndarray, rows: np.ndarray) -> None:
        """Index ``rows`` (holding ``keys``, unique and not indexed yet)."""
        table = self._slot_rows
        slot = self._home(keys)
        while len(rows):
            cand = np.flatnonzero(table[slot] < 0)
            if len(cand):
                at = slot[cand]
                before = table[at]
                table[at] = rows[cand]  # keys wanting one slot: one of them is written last and wins
                won = table[at] == rows[cand]
                self._used += int((before[won] == -1).sum())
                placed = np.zeros(len(rows), dtype=bool)
                placed[cand[won]] = True
                more = ~placed  # the others probe on
                rows, slot = rows[more], (slot[more] + 1) & self._mask
            else:
                slot = (slot + 1) & self._mask

    # --- the interface -----------------------------------------------------------------

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position, found) of each key; position is meaningful where found (0 elsewhere)."""
        keys = np.asarray(keys).astype(np.uint64, copy=False)
        rows, _ = self._find(keys)
        found = rows >= 0
        return np.where(found, rows, 0), found

    def upsert(self, keys: np.ndarray, **defaults: float) -> np.ndarray:
        """Insert the missing unique ``keys`` (columns set to ``defaults`` or 0); return their positions."""
        keys = np.asarray(keys).astype(np.uint64, copy=False)
        rows, _ = self._find(keys)
        missing = rows < 0
        if missing.any():
            new, _, inverse, _ = unique_first(keys[missing])
            rows[missing] = self.insert_new(new, **defaults)[inverse]
        return rows

    def insert_new(self, new: np.ndarray, **defaults: float) -> np.ndarray:
        """Insert ``new``: unique keys none of which is in the table (what ``upsert`` does once it
        knows them); return their positions."""
        new = np.asarray(new).astype(np.uint64, copy=False)
        first, n = self._n, self._n + len(new)
        if not len(new):
            return np.zeros(0, dtype=np.int64)
        self._grow(n)
        self._keys[first:n] = new
        for name, col in self._store.items():
            col[first:n] = defaults.get(name, 0.0)
        self._n = n
        self._views()
        rows = np.arange(first, n)
        if 2 * (self._used + len(new)) > len(self._slot_rows):
            self._reindex()
        else:
            self._place(new, rows)
        return rows

    def keep(self, mask: np.ndarray) -> None:
        """Keep only the entries where ``mask`` is true (the last rows move into the holes)."""
        mask = np.asarray(mask, dtype=bool)
        gone = np.flatnonzero(~mask)
        if not len(gone):
            return
        n = self._n - len(gone)
        if n < len(gone) or 4 * self._used > 3 * len(self._slot_rows):  # most rows go: copy the rest
            self._keys[:n] = self.keys[mask]
            for col in self._store.values():
                col[:n] = col[:self._n][mask]
            self._n = n
            self._views()
            self._reindex(len(self._slot_rows))  # as large as it was: a table that emptied fills again
            return
        _, gone_slots = self._find(self.keys[gone])
        self._slot_rows[gone_slots] = -2  # searches pass over the mark; inserts may take the slot
        holes = gone[gone < n]
        movers = np.flatnonzero(mask[n:]) + n  # as many rows kept past the end as holes before it
        if len(holes):
            _, mover_slots = self._find(self.keys[movers])
            self._keys[holes] = self._keys[movers]
            for col in self._store.values():
                col[holes] = col[movers]
            self._slot_rows[mover_slots] = holes
        self._n = n
        self._views()


class KeyCounts:
    """How many rows of some state each key holds (a source's buffered attempts): added to as rows
    come and go, read to skip keys with too few rows for any decision.

    >>> c = KeyCounts()
    >>> c.add(np.array([4, 9, 4], np.uint64), 1.0)
    >>> c.add(np.array([9], np.uint64), -1.0)
    >>> c.of(np.array([4, 9, 7], np.uint64)).tolist(), c.as_dict()
    ([2.0, 0.0, 0.0], {4: 2.0})
    """

    def __init__(self) -> None:
        self.table = KeyedTable(("n",))

    def add(self, keys: np.ndarray, change: float | np.ndarray) -> None:
        """Add ``change`` (one number, or one per key) once per row of ``keys`` (repeats count)."""
        if not len(keys):
            return
        pos = self.table.upsert(keys)
        n = self.table.cols["n"]
        np.add.at(n, pos, change)
        if 2 * np.count_nonzero(n <= 0) > len(n):  # keys left with no row: forgotten once most are
            self.table.keep(n > 0)

    def of(self, keys: np.ndarray) -> np.ndarray:
        """The count of each key (0 for a key never added)."""
        if not len(self.table):
            return np.zeros(len(keys))
        pos, found = self.table.lookup(keys)
        return np.where(found, self.table.cols["n"][pos], 0.0)

    def as_dict(self) -> dict[int, float]:
        """Every key with a positive count (for tests and debugging)."""
        return {k: n for k, n in zip(self.table.keys.tolist(), self.table.cols["n"].tolist()) if n > 0}
