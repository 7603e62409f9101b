"""Storage-side counts for a reconciliation, on a stopped worker's store.

``flows_by_batch`` answers the brief's check: rows vs distinct (batch_id, flow_id); a natural key
(sensor, src_port, dst_port for NetFlow records) also catches a flow stored twice under two
different batch ids (e.g. re-metered after a restart).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.reliability.procs import query_store


@dataclass
class Stored:
    rows: int
    distinct_batch_flow: int
    distinct_natural: int
    alerts: int = 0

    @property
    def duplicates(self) -> int:
        return self.rows - min(self.distinct_batch_flow, self.distinct_natural)


def stored_flows(data_dir: Path, natural_key: str = "flow_id", where: str = "1") -> Stored:
    """Counts of the ``flows`` table (``where`` filters it)."""
    row = query_store(data_dir, f"SELECT count() AS rows, uniqExact(batch_id, flow_id) AS pairs, "
                                f"uniqExact({natural_key}) AS natural FROM flows WHERE {where}")[0]
    return Stored(int(row["rows"]), int(row["pairs"]), int(row["natural"]))
