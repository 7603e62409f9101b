"""``finsa backtest``: run detection offline on a scenario and score it against its ground truth.

    finsa backtest SCENARIO_DIR [--config FILE] [--format table|json]

Without ``--config`` the scenario's ``detectors.toml`` (its operator tuning) is used when present.

Prints, per attack type, the episodes (attack x victim institution), how many were detected,
the median and maximum time to detect, the false alerts of that technique family, and totals
with false alerts per million benign flows (rules in :mod:`finsa.streams.backtest`). Exit code
0, or 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from finsa.errors import FinsaError
from finsa.streams.backtest import score
from finsa.streams.offline import make_engine, run_offline, scenario_sources

__all__ = ["add_arguments", "main", "backtest", "format_table"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", type=Path, help="scenario folder (finsa scenario --out)")
    parser.add_argument("--config", type=Path, help="detectors configuration file (TOML/YAML)")
    parser.add_argument("--format", choices=("table", "json"), default="table", help="output format (default table)")
    parser.add_argument("--batch-flows", type=int, default=5000, help="at most this many flows per batch")
    parser.add_argument("--batch-ms", type=int, default=1000, help="at most this much flow time per batch (ms)")


def backtest(scenario: str | Path, config: str | Path | None = None, max_flows: int = 5000,
             batch_ms: int = 1000) -> dict[str, Any]:
    """Detect offline on ``scenario`` and score the alerts (the dict :func:`score` returns)."""
    from finsa.collectors.scenario import ScenarioError, load_ground_truth

    folder = Path(scenario)
    try:
        truth = load_ground_truth(folder)
    except ScenarioError as exc:
        raise FinsaError(str(exc)) from None
    if config is None and (folder / "detectors.toml").exists():
        config = folder / "detectors.toml"  # the scenario's own tuning
    engine = make_engine(config, folder / "institutions.toml")
    result = run_offline(scenario_sources(folder), engine, max_flows=max_flows, batch_ms=batch_ms)
    return score(truth, result.alerts, result.flows)


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def format_table(report: dict[str, Any]) -> str:
    head = f"{'attack':<17} {'technique':<10} {'episodes':>8} {'detected':>8} {'ttd med s':>9} {'ttd max s':>9} {'false':>6}"
    lines = [head]
    for row in [*report["attacks"], report["total"]]:
        lines.append(f"{row['attack']:<17} {row['technique']:<10} {row['episodes']:>8} {row['detected']:>8} "
                     f"{_cell(row['ttd_median_s']):>9} {_cell(row['ttd_max_s']):>9} {row['false_alerts']:>6}")
    t = report["total"]
    lines.append(f"alerts {t['alerts']}: {t['matched']} matched, {t['related']} related, {t['false_alerts']} false "
                 f"({t['other_false']} of techniques not in the ground truth); {t['benign_flows']} benign flows "
                 f"of {t['flows']}: {_cell(t['false_per_million'])} false alerts per million benign flows")
    for a in report["false"]:
        lines.append(f"  false: {a['time_ms']} {a['institution_id']} {a['detector']} {a['technique']} "
                     f"{a['entity']} -> {a['target']}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    try:
        report = backtest(args.scenario, args.config, args.batch_flows, args.batch_ms)
    except (FinsaError, ValueError) as exc:
        print(f"finsa backtest: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.format == "json" else format_table(report))
    return 0
