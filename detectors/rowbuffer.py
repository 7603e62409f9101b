"""A detector's window of rows, kept as the batches that brought them.

The scan detectors keep the rows of their last window (failed attempts, probes) and, per batch,
append the new rows, drop the expired ones and read the rows of the sources the batch touched.
Held as one dict of columns, every batch copied the whole window twice (concatenate, filter),
text and address columns included. :class:`RowBuffer` keeps a list of chunks instead: appending
is a list append, dropping rows filters only the chunks that lose some (whole chunks go), and a
whole-window column (``column``) is concatenated only for the few columns a decision reads. Row
order is the order of the rows as appended, as a single concatenated buffer would have it.

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
"""

from __future__ import annotations

import numpy as np

__all__ = ["RowBuffer", "newest_rows"]


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
    """Rows with the same columns, in append order, in chunks (see the module docstring)."""

    def __init__(self) -> None:
        self.chunks: list[dict[str, np.ndarray]] = []
        self._sizes: list[int] = []
        self._empty: dict[str, np.ndarray] = {}  # the columns with no row (what an empty selection gives)

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
            self._sizes.append(n)

    def column(self, name: str) -> np.ndarray:
        """One column over every row (a new array, or the only chunk's)."""
        if len(self.chunks) == 1:
            return self.chunks[0][name]
        if not self.chunks:
            return self._empty[name]
        return np.concatenate([c[name] for c in self.chunks])

    def _split(self, mask: np.ndarray) -> list[np.ndarray]:
        return np.split(mask, np.cumsum(self._sizes[:-1])) if len(self.chunks) > 1 else [mask]

    def keep(self, mask: np.ndarray) -> None:
        """Keep the rows where ``mask`` (over every row, in order) is true."""
        chunks, sizes = [], []
        for chunk, part in zip(self.chunks, self._split(mask)):
            n = int(part.sum())
            if n == len(part):
                chunks.append(chunk)
            elif n:
                chunks.append({k: v[part] for k, v in chunk.items()})
            if n:
                sizes.append(n)
        self.chunks, self._sizes = chunks, sizes

    def select(self, mask: np.ndarray) -> dict[str, np.ndarray]:
        """The rows where ``mask`` is true, as one dict of columns (in order)."""
        parts = [{k: v[part] for k, v in chunk.items()} for chunk, part in zip(self.chunks, self._split(mask))
                 if part.any()]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return dict(self._empty)
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
