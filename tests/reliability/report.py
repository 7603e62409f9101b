"""One row of the reliability report per fault, and the table they make.

>>> print(format_table([Outcome("x", 10, 10, 0, 0, recovery_s=1.5)]).splitlines()[-1])
| x | 10 | 10 | 0 | 0 | 0 | 1.5 |
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Outcome:
    """One fault's reconciliation."""

    fault: str
    records_sent: int
    records_stored: int
    duplicates: int
    lost: int
    counted_loss: int = 0
    recovery_s: float | None = None



def format_table(rows: list[Outcome]) -> str:
    """The report as a Markdown table."""
    head = ["fault", "records sent", "records stored", "duplicates", "lost", "counted loss (allowed)",
            "recovery time s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        recovery = "-" if row.recovery_s is None else f"{row.recovery_s:.1f}"
        lines.append(f"| {row.fault} | {row.records_sent} | {row.records_stored} | {row.duplicates} | {row.lost} | "
                     f"{row.counted_loss} | {recovery} |")
    return "\n".join(lines)
