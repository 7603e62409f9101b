"""``python -m bench.return_cost [--writes 6] [--batches 56] [--rows 5000]``: what handing memory
back after a full group's store write costs (issue 17, the soak).

Each of ``--writes`` writes stores ``--batches`` synthetic flow batches of ``--rows`` flows in one
``insert_many`` (a full worker group: 56 x 5,000 flows fill ``WorkerSettings.group_max_bytes``),
then does what the worker's :class:`~finsa.streams.memory_return.MemoryReturn` does: chdb's
``SYSTEM JEMALLOC PURGE`` (``Store.release_memory``) and glibc's ``malloc_trim(0)``. Printed per
write: its wall ms, and for each hand-back the calling thread's CPU ms and wall ms.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.flows import synthetic_flows
from finsa import allocator
from finsa.storage.backend import open_store

__all__ = ["run"]


def _timed(fn) -> tuple[float, float]:
    """(thread CPU ms, wall ms) of ``fn()``."""
    cpu, wall = time.thread_time(), time.perf_counter()
    fn()
    return (time.thread_time() - cpu) * 1e3, (time.perf_counter() - wall) * 1e3


def run(writes: int = 6, batches: int = 56, rows: int = 5000) -> list[str]:
    flows = synthetic_flows(batches * rows)
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(data_dir=Path(tmp) / "store")
        store.migrate()
        for write in range(writes):
            group = []
            for i in range(batches):
                batch = flows.take(np.arange(i * rows, (i + 1) * rows))
                batch.batch_id = write.to_bytes(8, "big") + i.to_bytes(8, "big")
                group.append(batch)
            started = time.perf_counter()
            store.insert_many(group)
            write_ms = (time.perf_counter() - started) * 1e3
            del group
            purge, trim = _timed(store.release_memory), _timed(allocator.trim)
            lines.append(f"write {write_ms:,.0f} ms; purge {purge[0]:.1f} ms CPU ({purge[1]:.1f} wall); "
                         f"trim {trim[0]:.1f} ms CPU ({trim[1]:.1f} wall)")
        store.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.return_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=6)
    parser.add_argument("--batches", type=int, default=56)
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args()
    print("\n".join(run(args.writes, args.batches, args.rows)))


if __name__ == "__main__":
    main()
