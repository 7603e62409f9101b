"""Per-key binned baselines: an exponentially weighted mean and variance of a per-bin total.

A detector that totals something per key per time bin (bytes a host sends out per bin, SYNs a
victim receives per bin) keeps, in a :class:`~finsa.detectors.features.KeyedTable`, the columns
``bin`` (the open bin), the open bin's running total, ``flagged`` (the open bin has alerted),
``mean`` and ``var``. :func:`advance_bins` closes the bins that ended before each key's new bin:
their totals are learnt (an alerting bin only up to its threshold, so an attack does not teach
the baseline) and each silent bin in between decays the baseline by ``1 - alpha``.
:func:`bound_keys` halves a table grown past its bound, keeping the newest bins and, among
equally new ones, the larger baselines.

>>> from finsa.detectors.features import KeyedTable
>>> table = KeyedTable(("bin", "total", "flagged", "mean", "var"))
>>> keys = np.array([7], np.uint64)
>>> pos = advance_bins(table, keys, np.array([0.0]), "total", 0.5, lambda m, v: m + 3 * np.sqrt(v))
>>> table.cols["total"][pos] += 10.0
>>> pos = advance_bins(table, keys, np.array([1.0]), "total", 0.5, lambda m, v: m + 3 * np.sqrt(v))
>>> table.cols["mean"][pos].tolist(), table.cols["var"][pos].tolist(), table.cols["total"][pos].tolist()
([5.0], [25.0], [0.0])
>>> _ = table.upsert(np.array([1, 2, 3], np.uint64)); bound_keys(table, 3); len(table)
2
>>> 7 in table.keys  # its bin is the newest
True
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from finsa.detectors.features import KeyedTable

__all__ = ["advance_bins", "bound_keys"]


def advance_bins(table: KeyedTable, keys: np.ndarray, bins: np.ndarray, total: str, alpha: float,
                 threshold: Callable[[np.ndarray, np.ndarray], np.ndarray], reset: tuple[str, ...] = ()) -> np.ndarray:
    """Close the bins of ``keys`` that ended before ``bins`` (learning column ``total`` into
    ``mean``/``var``, capped at ``threshold(mean, var)`` where ``flagged``); return the keys' positions.
    A new bin starts ``total`` and the other running totals named in ``reset`` at zero."""
    pos = table.upsert(keys, bin=-1.0)
    cols = table.cols
    before = cols["bin"][pos] if reset else None
    fresh = cols["bin"][pos] < 0
    cols["bin"][pos[fresh]] = bins[fresh]
    moved = bins > cols["bin"][pos]
    p, gap = pos[moved], bins[moved] - cols["bin"][pos[moved]]
    mean, var, x = cols["mean"][p], cols["var"][p], cols[total][p]
    x = np.where(cols["flagged"][p] != 0, np.minimum(x, threshold(mean, var)), x)
    diff = x - mean
    idle = (1 - alpha) ** (gap - 1)  # the silent bins in between pull the baseline down
    cols["mean"][p] = (mean + alpha * diff) * idle
    cols["var"][p] = (1 - alpha) * (var + diff * alpha * diff) * idle
    cols["bin"][p], cols[total][p], cols["flagged"][p] = bins[moved], 0.0, 0.0
    if before is not None:
        changed = pos[cols["bin"][pos] != before]
        for name in reset:
            cols[name][changed] = 0.0
    return pos


def bound_keys(table: KeyedTable, max_keys: int) -> None:
    """Past ``max_keys`` entries, keep the half with the newest ``bin`` (then the largest ``mean``,
    then the largest key)."""
    if len(table) <= max_keys:
        return
    cols = table.cols
    rank = np.lexsort((table.keys, cols["mean"], cols["bin"]))  # ties: by key, whatever the rows' order
    keep = np.zeros(len(rank), dtype=bool)
    keep[rank[len(rank) // 2:]] = True
    table.keep(keep)
