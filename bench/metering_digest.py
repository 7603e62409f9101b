"""``python -m bench.metering_digest OUT.json [--against REF.json]``: is metering's output unchanged?

Digests every column of :func:`meter_capture` with the nfstream, zeek and agent profiles, and the
CSV of ``finsa flows``, on every capture under ``../shared/data/{flows,attacks,benign}`` and the
bench's generated captures where they exist (``bench collector`` and ``bench command`` make them):
464 comparisons with the four bench captures. Run it with the tree before a change (the
reference) and after; ``--against`` prints each digest that differs and exits 1 if any does. A run
that failed (metering raised, or the command exited non-zero) is printed and exits 2, even when
the reference failed alike. An optimisation of the metering loops is kept only with 0 differences
and no failure.

A digest is the sha256 of a column's dtype and bytes (object columns: of ``repr(tolist())``):

>>> import numpy as np
>>> from finsa.wire import FLOW
>>> batch = FLOW.make_batch({"src2dst_packets": np.array([3, 4], dtype=np.uint64)})
>>> d = digest(batch)
>>> d["_rows"], d["src2dst_packets"] == digest(batch)["src2dst_packets"]
(2, True)
>>> differences({"a": {"x": "1"}}, {"a": {"x": "2"}, "b": {}})
['a: x', 'b: only in one']
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
BENCH_CAPTURES = ("mixed-200000-7.pcap", "mixed-2000000-7.pcap", "interleaved-5000-100000-60.pcap",
                  "interleaved-50000-1000000-60.pcap")
PROFILES = ("nfstream", "zeek", "agent")


def captures(data: Path = DATA) -> list[Path]:
    """The shared captures, then the bench captures found in ``$FINSA_BENCH_CACHE`` (or /tmp's)."""
    found = sorted(p for d in ("flows", "attacks", "benign") for p in (data / d).rglob("*.pcap*"))
    cache = Path(os.environ.get("FINSA_BENCH_CACHE", "/tmp/finsa-bench-cache"))
    return found + [p for p in (cache / n for n in BENCH_CAPTURES) if p.exists()]


def digest(batch) -> dict:
    """Per column of a record batch, a short sha256 of its dtype and contents; ``_rows`` its length."""
    out: dict = {"_rows": 0 if batch is None else len(batch)}
    for name, values in ({} if batch is None else batch.columns).items():
        values = np.asarray(values)
        h = hashlib.sha256(str(values.dtype).encode())
        h.update(repr(values.tolist()).encode() if values.dtype == object else np.ascontiguousarray(values).tobytes())
        out[name] = h.hexdigest()[:16]
    return out


def differences(ref: dict, now: dict) -> list[str]:
    """Every comparison whose digests differ, as ``capture|profile: column``."""
    out = []
    for key in sorted(set(ref) | set(now)):
        if key not in ref or key not in now:
            out.append(f"{key}: only in one")
            continue
        out += [f"{key}: {col}" for col in sorted(set(ref[key]) | set(now[key]))
                if ref[key].get(col) != now[key].get(col)]
    return out


def digests(paths: list[Path]) -> dict:
    """Every capture x profile, plus each capture's ``finsa flows`` CSV."""
    from finsa.collectors.meter.flowmeter import meter_capture
    from finsa.wire import RecordBatch

    finsa = str(Path(sys.executable).with_name("finsa"))
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "flows.csv"
        for path in paths:
            for profile in PROFILES:
                try:
                    batches = list(meter_capture(path, profile))
                    out[f"{path.name}|{profile}"] = digest(RecordBatch.concat(batches) if batches else None)
                except Exception as exc:  # noqa: BLE001 - an error is an output too: it must not change either
                    out[f"{path.name}|{profile}"] = {"error": f"{type(exc).__name__}: {str(exc)[:100]}"}
            run = subprocess.run([finsa, "flows", str(path), "-o", str(csv)], capture_output=True)
            out[f"{path.name}|csv"] = ({"sha": hashlib.sha256(csv.read_bytes()).hexdigest()[:16]} if run.returncode == 0
                                       else {"rc": run.returncode, "stderr": run.stderr.decode(errors="replace")[-200:]})
            csv.unlink(missing_ok=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.metering_digest", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="where to write this tree's digests (JSON)")
    parser.add_argument("--against", type=Path, help="a reference written the same way by another tree")
    args = parser.parse_args(argv)
    paths = captures()
    now = digests(paths)
    args.out.write_text(json.dumps(now, indent=0, sort_keys=True))
    print(f"{len(now)} comparisons over {len(paths)} captures written to {args.out}")
    failed = failures(now)
    if failed:  # an error is digested too (a change must not alter it), but it is no proof of identity
        print(f"{len(failed)} runs failed in this tree:\n" + "\n".join(failed), file=sys.stderr)
    if args.against is None:
        return 2 if failed else 0
    differ = differences(json.loads(args.against.read_text()), now)
    print("\n".join(differ) or "0 differences")
    return 1 if differ else 2 if failed else 0


def failures(found: dict[str, dict]) -> list[str]:
    """The digests that are a failure (metering raised, or ``finsa flows`` exited non-zero).

    >>> failures({"a.pcap|csv": {"rc": 1, "stderr": "boom"}, "a.pcap|zeek": {"_rows": 3}})
    ['a.pcap|csv: {"rc": 1, "stderr": "boom"}']
    """
    return [f"{key}: {json.dumps(value)}" for key, value in sorted(found.items()) if "error" in value or "rc" in value]


if __name__ == "__main__":
    raise SystemExit(main())
