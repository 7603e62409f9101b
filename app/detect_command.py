"""``finsa detect``: meter captures and run the detectors offline; print the alerts.

    finsa detect CAPTURE... [--institution ID] [--config FILE] [--format jsonl|table]
    finsa detect --scenario DIR [--institution ID] [--config FILE] [--format jsonl|table]

Captures are metered side by side with the agent's profile and fed to the engine in flow-end
order, in batches of at most ``--batch-flows`` flows or ``--batch-ms`` of flow time (see
:mod:`finsa.app.offline`). With ``--scenario`` the captures, their institutions and the
institutions registry come from the scenario's manifest (``--institution`` then keeps one) and,
without ``--config``, the detector tuning from its ``detectors.toml``;
plain captures are all attributed to ``--institution`` (default ``offline``). Exit code 0, or 2
on bad input (unreadable capture, scenario or config file).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from finsa.errors import FinsaError
from finsa.app.offline import CaptureSource, OfflineResult, make_engine, run_offline, scenario_sources

__all__ = ["add_arguments", "main", "format_table"]

_COLUMNS = (("time_ms", 13), ("institution_id", 10), ("detector", 10), ("technique", 10), ("severity", 3),
            ("entity", 16), ("target", 22))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("captures", nargs="*", type=Path, help="pcap or pcapng files")
    parser.add_argument("--scenario", type=Path, help="a scenario folder (finsa scenario) instead of captures")
    parser.add_argument("--institution", help="institution of the captures (with --scenario: keep only this one)")
    parser.add_argument("--config", type=Path, help="detectors configuration file (TOML/YAML)")
    parser.add_argument("--registry", type=Path, help="institutions file (default: the scenario's)")
    parser.add_argument("--format", choices=("jsonl", "table"), default="jsonl", help="output format (default jsonl)")
    parser.add_argument("--profile", default="agent", help="metering profile (default agent)")
    parser.add_argument("--batch-flows", type=int, default=5000, help="at most this many flows per batch")
    parser.add_argument("--batch-ms", type=int, default=1000, help="at most this much flow time per batch (ms)")


def sources_of(args: argparse.Namespace) -> tuple[list[CaptureSource], Path | None]:
    """The capture sources and the registry file the arguments name."""
    if args.scenario is not None:
        if args.captures:
            raise FinsaError("give captures or --scenario, not both")
        registry = args.registry or args.scenario / "institutions.toml"
        return scenario_sources(args.scenario, args.institution), registry
    if not args.captures:
        raise FinsaError("no capture given (or use --scenario DIR)")
    inst = args.institution or "offline"
    return [CaptureSource(p, inst, f"{inst}-{p.stem}") for p in args.captures], args.registry


def run(args: argparse.Namespace) -> OfflineResult:
    """Meter and detect; the flow rows the engine refused are left in ``args.skipped`` (per reason)."""
    sources, registry = sources_of(args)
    config = args.config
    if config is None and args.scenario is not None and (args.scenario / "detectors.toml").exists():
        config = args.scenario / "detectors.toml"  # the scenario's own tuning
    engine = make_engine(config, registry)
    args.skipped = engine.skipped
    return run_offline(sources, engine, args.profile, args.batch_flows, args.batch_ms)


def format_table(rows: list[dict]) -> str:
    head = " ".join(f"{name:<{width}}" for name, width in _COLUMNS)
    lines = [head] + [" ".join(f"{str(r[name]):<{width}}" for name, width in _COLUMNS) for r in rows]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    try:
        result = run(args)
    except (FinsaError, ValueError) as exc:
        print(f"finsa detect: {exc}", file=sys.stderr)
        return 2
    rows = result.alerts.rows() if len(result.alerts) else []
    if args.format == "table":
        print(format_table(rows))
    else:
        for row in rows:
            print(json.dumps(row, separators=(",", ":")))
    skipped = getattr(args, "skipped", {})
    refused = (", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items())) if skipped else "none")
    print(f"finsa detect: {len(result.flows)} flows in {result.batches} batches, {len(rows)} alerts; "
          f"flow rows refused: {refused}", file=sys.stderr)
    return 0
