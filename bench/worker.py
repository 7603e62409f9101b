"""One measurement in its own process: ``python -m bench.worker TASK '{"path": ...}'``.

Prints one JSON line: items (packets), flows, CPU and wall seconds (children included, so
nfstream's metering process counts), the peak RSS of this process and of its largest child,
and the peak RSS before the tool ran (imports and interpreter), so memory held by flows is
``peak - baseline``.
"""

from __future__ import annotations

import json
import sys

from bench import meters
from bench.measure import Clock, current_rss_bytes, peak_rss_bytes

TASKS = {
    "finsa": meters.finsa_meter,
    "finsa_table": meters.finsa_table,
    "nfstream": meters.nfstream_meter,
    "dpkt": meters.dpkt_meter,
    "scapy": meters.scapy_meter,
}
_IMPORTS = {"finsa": "finsa.collectors.meter.flowmeter", "finsa_table": "finsa.collectors.meter.flowmeter", "nfstream": "nfstream",
            "dpkt": "dpkt", "scapy": "scapy.all"}


def run(task: str, kwargs: dict) -> dict:
    __import__(_IMPORTS[task])
    baseline = peak_rss_bytes()
    clock = Clock()
    packets, flows, holder = TASKS[task](**kwargs)
    cpu_s, wall_s = clock.cpu_s, clock.wall_s
    result = {"packets": packets, "flows": flows, "cpu_s": cpu_s, "wall_s": wall_s,
              "peak_rss_bytes": peak_rss_bytes(), "child_peak_rss_bytes": peak_rss_bytes(children=True),
              "baseline_rss_bytes": baseline, "end_rss_bytes": current_rss_bytes()}
    del holder
    return result


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], json.loads(sys.argv[2]))))
