"""``python -m bench command``: ``finsa flows`` as a whole command next to nfstream, CSV out.

One synthetic capture (:func:`bench.synth.interleaved_capture`: 50,000 flows interleaved over
60 s, 1M packets; 5,000 flows and 100k packets with ``--quick``) is turned into a CSV file of
flows by each tool as a whole process, started fresh; the clock is the CPU seconds of that process
and every child it waited for (``os.wait4``), interpreter start-up and imports included:

- finsa: ``finsa flows CAPTURE -o out.csv`` (nfstream profile, hints on, Arrow CSV writer);
- nfstream 6.6: ``NFStreamer(source=CAPTURE, n_dissections=0, statistical_analysis=False)
  .to_csv(out.csv)`` in ``python -c`` (its metering process included).

Rate: packets per CPU second; the note gives the flows each wrote.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import Result, table
from bench.synth import interleaved_capture

__all__ = ["run", "whole_process"]

_NFSTREAM = ("import sys\nfrom nfstream import NFStreamer\n"
             "NFStreamer(source=sys.argv[1], n_dissections=0, statistical_analysis=False).to_csv(sys.argv[2])\n")


def whole_process(argv: list[str]) -> tuple[float, float]:
    """Run ``argv`` to its end: (CPU seconds of it and its waited-for children, wall seconds)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.read()[-2000:]!r}")
    proc.stderr.close()
    return usage.ru_utime + usage.ru_stime, time.perf_counter() - t0


def _csv_rows(path: Path) -> int:
    with open(path, "rb") as fh:
        return max(sum(1 for _ in fh) - 1, 0)


def run(quick: bool) -> list[str]:
    flows, packets = (5_000, 100_000) if quick else (50_000, 1_000_000)
    capture = interleaved_capture(flows, packets)
    finsa_bin = str(Path(sys.executable).with_name("finsa"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tools = [("finsa flows", [finsa_bin, "flows", str(capture), "-o", f"{tmp}/finsa.csv"], "finsa.csv"),
                 ("nfstream 6.6 no nDPI", [sys.executable, "-c", _NFSTREAM, str(capture), f"{tmp}/nfstream.csv"],
                  "nfstream.csv")]
        for name, argv, out in tools:
            try:
                cpu_s, wall_s = whole_process(argv)
            except RuntimeError as exc:
                print(f"# bench command: {name} skipped: {exc}", file=sys.stderr)
                continue
            rows.append(Result("finsa" if name == "finsa flows" else name, packets, cpu_s, "cpu",
                               f"{_csv_rows(Path(tmp) / out):,} flows in CSV, wall {wall_s:.1f} s; whole process"))
    return [table(f"command: capture -> CSV as a whole process ({flows:,} flows interleaved over 60 s, "
                  f"{packets:,} packets)", "pkt", rows)]
