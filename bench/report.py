"""Benchmark results and the plain-text tables they are printed as.

A :class:`Result` is one tool's run over some items: how many, in how many seconds of which
clock (``cpu``: process CPU time, children included; ``wall``: elapsed time), plus optional
peak memory and a note. :func:`table` prints a list of them with each rate's ratio to the
baseline row (finsa's): ratio = tool's rate / finsa's rate, so finsa is 1.00 and 0.10 means
the tool does a tenth of finsa's work per second.

>>> rows = [Result("finsa", 1000, 0.5), Result("peer", 1000, 2.0, note="prefix")]
>>> print(table("demo", "pkt", rows))  # doctest: +NORMALIZE_WHITESPACE
demo
tool   items  clock  seconds  pkt/s  ratio to finsa  note
-----  -----  -----  -------  -----  --------------  ------
finsa  1,000  cpu      0.500  2,000            1.00
peer   1,000  cpu      2.000    500            0.25  prefix
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Result", "table", "grid"]

_NUMBER = re.compile(r"^-?[0-9][0-9,.]*( ?[a-zA-Z%]{0,3})?$")


@dataclass
class Result:
    """One measured run: ``items`` done in ``seconds`` of ``clock`` time."""

    tool: str
    items: int
    seconds: float
    clock: str = "cpu"
    note: str = ""
    peak_rss_bytes: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("inf")


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}" if value >= 1 else f"{value:.3g}"


def grid(headers: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def cell(text: str, i: int) -> str:
        numeric = _NUMBER.match(text) is not None
        return text.rjust(widths[i]) if numeric else text.ljust(widths[i])

    lines = ["  ".join(cell(h, i) for i, h in enumerate(headers)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(cell(c, i) for i, c in enumerate(r)).rstrip() for r in rows]
    return "\n".join(lines)


def table(title: str, unit: str, results: list[Result], baseline: str | None = "finsa") -> str:
    """A titled table of results with rates and ratios to the ``baseline`` tool's rate.

    ``baseline=None`` leaves the ratio column out (nothing to compare with).
    """
    base = next((r for r in results if r.tool == baseline), None)
    with_memory = any(r.peak_rss_bytes is not None for r in results)
    headers = ["tool", "items", "clock", "seconds", f"{unit}/s"] + ([f"ratio to {baseline}"] if baseline else [])
    headers += ["peak RSS MiB"] if with_memory else []
    headers += ["note"]
    rows = []
    for r in results:
        ratio = f"{r.rate / base.rate:.2f}" if base is not None and base.rate > 0 else "n/a"
        row = [r.tool, f"{r.items:,}", r.clock, f"{r.seconds:.3f}", _num(r.rate)] + ([ratio] if baseline else [])
        if with_memory:
            row.append("" if r.peak_rss_bytes is None else f"{r.peak_rss_bytes / 2**20:,.0f}")
        rows.append(row + [r.note])
    return f"{title}\n{grid(headers, rows)}"
