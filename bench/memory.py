"""Worker memory over a long run, without Kafka: decode -> detect -> store in one process.

``python -m bench memory [--flows N]`` feeds the worker's :class:`~finsa.streams.processor.FlowProcessor`
(every default detector, a chdb store on disk) groups of 8 x 5,000-flow wire batches of the cached
mixed capture's flows, stamped with advancing flow time (so detector windows roll and state must be
let go), and prints the process RSS every tenth of the run. Flat RSS here and growth in the soak
(``python -m bench soak``) puts the growth in the Kafka/Faust layer; growth here puts it in
detectors or storage.
"""

from __future__ import annotations

import gc
import shutil
import tempfile
import time

import numpy as np

from bench.detection import metered_flows
from bench.measure import current_rss_bytes
from bench.report import grid
from finsa import wire

__all__ = ["run"]

_ROWS, _PER_GROUP = 5000, 8


def _payloads(flows: wire.RecordBatch, group: int, start_ms: int) -> list[bytes]:
    out = []
    for j in range(_PER_GROUP):
        i = group * _PER_GROUP + j
        lo = (i * 997 * _ROWS) % (len(flows) - _ROWS)
        part = flows.take(np.arange(lo, lo + _ROWS))
        t = start_ms + i * 250  # 20k flows per second of flow time
        part.columns["first_seen_ms"] = np.full(_ROWS, t - 1000, dtype=np.int64)
        part.columns["last_seen_ms"] = np.full(_ROWS, t, dtype=np.int64)
        out.append(wire.encode_batch(part))
    return out


def run(quick: bool, flows: int | None = None) -> list[str]:
    from finsa.storage.backend import open_store
    from finsa.app.offline import make_engine
    from finsa.streams.processor import FlowProcessor

    total = flows or (2_000_000 if quick else 20_000_000)
    groups = max(10, total // (_ROWS * _PER_GROUP))
    source = metered_flows(200_000 if quick else 2_000_000)
    folder = tempfile.mkdtemp(prefix="finsa-bench-memory-")
    rows, t0 = [], time.perf_counter()
    try:
        with open_store(data_dir=folder) as store:
            store.migrate()
            proc = FlowProcessor(store, make_engine(None, None))
            for g in range(groups):
                proc.process_group(_payloads(source, g, 1_800_000_000_000))
                if g % max(1, groups // 10) == 0 or g == groups - 1:
                    gc.collect()
                    rows.append([f"{(g + 1) * _ROWS * _PER_GROUP:,}", f"{current_rss_bytes() / 2**20:,.0f}",
                                 f"{time.perf_counter() - t0:,.0f}"])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return [f"memory: worker path in one process (decode, {len(make_engine(None, None).detectors)} detectors, chdb "
            f"on disk), RSS as flows go through\n" + grid(["flows", "RSS MiB", "wall s"], rows)]
