"""``python -m bench [collector|command|export|detection|storage|panels|wire|stream|pipeline|all|soak|memory|rollups|scaleout] [--quick] [--flows N] [--packets N]``.

Runs finsa's benchmarks next to peer tools and prints one table per measurement: items per
second and the ratio to finsa's rate (see docs/benchmarks.md for what each number means).
``--quick`` uses small inputs so that ``all`` finishes in a few minutes; captures are generated
once and cached in ``$FINSA_BENCH_CACHE`` (default /tmp/finsa-bench-cache).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

PARTS = ("collector", "command", "export", "detection", "storage", "panels", "wire", "stream", "pipeline")
#: Long runs, only when named (not part of "all").
EXTRA = ("soak", "memory", "rollups", "scaleout")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[2])
    p.add_argument("part", nargs="?", default="all", choices=PARTS + EXTRA + ("all",), help="which benchmark (default all)")
    p.add_argument("--quick", action="store_true", help="small inputs (all parts in under 3 minutes)")
    p.add_argument("--flows", type=int, default=None,
                   help="storage: flows loaded before the panel queries (default 2M, 0.5M with --quick)")
    p.add_argument("--store", default="",
                   help="panels: a store directory kept on disk, filled with --flows once and reused (bench.bigstore)")
    p.add_argument("--rounds", type=int, default=None, help="panels: page loads per user (default 5)")
    p.add_argument("--packets", type=int, default=None,
                   help="collector/detection: packets in the mixed capture (default 2M, 200k with --quick)")
    p.add_argument("--seconds", type=float, default=None, help="soak: how long to offer load (default 600, 60 with --quick); pipeline: per rate (default 30)")
    p.add_argument("--rate", type=float, default=None, help="soak: flows/s offered (default 20,000)")
    p.add_argument("--rates", default=None,
                   help="pipeline: offered flows/s, comma-separated (default 10000,25000,50000,100000)")
    p.add_argument("--agents", type=int, default=None,
                   help="pipeline: agent processes, each metering a share of the institutions (default bench.pipeline.AGENTS)")
    return p


def _versions() -> str:
    names = ("finsa", "numpy", "nfstream", "dpkt", "scapy", "river", "chdb", "pyarrow")
    found = []
    for name in names:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} (absent)")
    return ", ".join(found)


def _run_part(part: str, args: argparse.Namespace) -> list[str]:
    if part == "soak":
        return import_module("bench.soak").run(args.quick, seconds=args.seconds, rate=args.rate)
    module = import_module(f"bench.{part}")
    if part == "panels":
        return module.run(args.quick, flows=args.flows, rounds=args.rounds, store_dir=args.store)
    if part in ("storage", "memory", "rollups", "scaleout"):
        return module.run(args.quick, flows=args.flows)
    if part == "pipeline":
        rates = tuple(float(r) for r in args.rates.split(",")) if args.rates else None
        return module.run(args.quick, rates, agents=args.agents, seconds=args.seconds)
    if part in ("collector", "detection"):
        return module.run(args.quick, packets=args.packets)
    return module.run(args.quick)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    parts = PARTS if args.part == "all" else (args.part,)
    print(f"# finsa benchmarks ({'quick' if args.quick else 'full'}): {platform.node()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}\n# {_versions()}\n"
          "# clock cpu = CPU seconds of the measuring process and its waited-for children; "
          "ratio = tool rate / finsa rate\n", flush=True)
    started = time.perf_counter()
    for part in parts:
        t0 = time.perf_counter()
        for text in _run_part(part, args):
            print(text + "\n", flush=True)
        print(f"# {part}: {time.perf_counter() - t0:.1f} s wall\n", flush=True)
    print(f"# total {time.perf_counter() - started:.1f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
