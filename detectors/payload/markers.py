"""Reading the ``app_markers`` list of flows (FLOW v2) for the marker-driven detectors.

A marker is a token the collector set for something it saw in a flow's payload, suffixed with the
side that sent it (``exe_from_dst``: the responder sent an executable). :func:`marked_rows`
gives, for a batch, the rows carrying any of some markers and each row's set.

>>> from finsa.wire import FLOW
>>> b = FLOW.make_batch({"app_markers": ["", "smb1,shell_from_dst", "exe_from_src"]})
>>> rows, sets = marked_rows(b.columns, ("shell",))
>>> rows.tolist(), sorted(sets[0])
([1], ['shell_from_dst', 'smb1'])
>>> sender("shell", sets[0])
'dst'
"""

from __future__ import annotations

import numpy as np

from finsa.wire import MARKER_SEP

__all__ = ["marked_rows", "sender"]


def marked_rows(cols: dict[str, np.ndarray], prefixes: tuple[str, ...]) -> tuple[np.ndarray, list[set[str]]]:
    """Rows whose markers start with one of ``prefixes``, and every marker of those rows."""
    col = cols["app_markers"]
    cand = np.flatnonzero(col != "")
    rows, sets = [], []
    for row, text in zip(cand.tolist(), col[cand].tolist()):
        marks = set(text.split(MARKER_SEP))
        if any(m.startswith(prefixes) for m in marks):
            rows.append(row)
            sets.append(marks)
    return np.array(rows, dtype=np.int64), sets


def sender(marker: str, marks: set[str]) -> str:
    """Which side sent ``marker`` ("src", "dst", "both") or "" when absent."""
    src, dst = f"{marker}_from_src" in marks, f"{marker}_from_dst" in marks
    return "both" if src and dst else "src" if src else "dst" if dst else ""
