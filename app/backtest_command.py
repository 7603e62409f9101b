"""``finsa backtest``: run detection offline on a scenario and score it against its ground truth.

    finsa backtest SCENARIO_DIR [--config FILE] [--set DETECTOR.PARAM=VALUE ...] [--format table|json]
                   [--verdicts [--split 0.5] [--operator accept|reject]]

Without ``--config`` the scenario's ``detectors.toml`` (its operator tuning) is used when present.
``--set`` changes one parameter of that configuration (a TOML value: ``--set
beaconing.outbound_only=false --set beaconing.window_ms=60000``), checked like the file.

Prints, per attack type, the episodes (attack x victim institution), how many were detected,
the median and maximum time to detect, the false alerts of that technique family, and totals
with false alerts per million benign flows (rules in :mod:`finsa.app.backtest`).

It also runs the sector picture offline over the alerts (:func:`~finsa.app.offline.run_sector`,
a tick every minute of flow time) and reports the campaigns and warnings it found and, for each
campaign of the ground truth (``finsa scenario --attacks sector``), whether it was recognised,
which institutions joined in which order, and each victim's early-warning lead time, with the
median and whether every institution hit after recognition was warned before. Exit code 0, or 2
on bad input.

``--verdicts`` runs the verdict replay instead (:mod:`finsa.app.verdict_replay`): the alerts of
the first part (``--split``, a fraction of the scenario's span) are closed by a simulated analyst
with the ground truth's verdicts through the product's triage and allowlist code, the feedback
poller applies them, and the later part is detected with that feedback and, as the control,
without it (``--operator reject``: the operator rejects every proposal, so only the detectors
that learn online change). It prints the false alerts per detector of the first part and of both later runs,
the episodes reaching the later part each detected, the new misses and the accepted entries.
Exit code 0; 1 when the verdicts run missed an episode the control detected; 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from finsa.detectors.engine import DetectionEngine
from finsa.errors import ConfigError, FinsaError
from finsa.app.backtest import score, score_campaigns
from finsa.app.offline import OfflineResult, make_engine, run_offline, run_sector, scenario_sources

__all__ = ["add_arguments", "main", "backtest", "format_table", "parse_sets", "scenario_engine", "verdict_backtest"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", type=Path, help="scenario folder (finsa scenario --out)")
    parser.add_argument("--config", type=Path, help="detectors configuration file (TOML/YAML)")
    parser.add_argument("--format", choices=("table", "json"), default="table", help="output format (default table)")
    parser.add_argument("--batch-flows", type=int, default=5000, help="at most this many flows per batch")
    parser.add_argument("--batch-ms", type=int, default=1000, help="at most this much flow time per batch (ms)")
    parser.add_argument("--set", action="append", default=[], metavar="DETECTOR.PARAM=VALUE", dest="sets",
                        help="change one detector parameter of the configuration (TOML value); repeatable")
    parser.add_argument("--verdicts", action="store_true",
                        help="verdict replay: an analyst's verdicts on the first part, then the later part "
                             "with and without them")
    parser.add_argument("--split", type=float, default=0.5,
                        help="with --verdicts: where the first part ends, as a fraction of the scenario (default 0.5)")
    parser.add_argument("--operator", choices=("accept", "reject"), default="accept",
                        help="with --verdicts: what the operator does with the proposed allowlist entries "
                             "(reject: only the online learners take the verdicts)")


def parse_sets(sets: list[str]) -> dict[str, dict[str, Any]]:
    """``["beaconing.window_ms=60000"]`` -> ``{"beaconing": {"window_ms": 60000}}``; a malformed
    item raises ConfigError naming every one.

    >>> parse_sets(["beaconing.outbound_only=false", "portscan.min_ports=8"])
    {'beaconing': {'outbound_only': False}, 'portscan': {'min_ports': 8}}
    """
    out: dict[str, dict[str, Any]] = {}
    problems = []
    for item in sets:
        key, eq, text = item.partition("=")
        name, dot, param = key.strip().partition(".")
        try:
            if not (eq and dot and name and param):
                raise ValueError("write DETECTOR.PARAM=VALUE")
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            problems.append(f"{item}: {exc}")
            continue
        out.setdefault(name, {})[param] = value
    if problems:
        raise ConfigError("--set", problems)
    return out


def scenario_engine(folder: Path, config: str | Path | None = None, sets: list[str] | None = None) -> DetectionEngine:
    """The engine of a backtest: ``config`` (default: the scenario's ``detectors.toml``, else the
    default set) with ``sets`` applied, and the scenario's institutions."""
    if config is None and (folder / "detectors.toml").exists():
        config = folder / "detectors.toml"  # the scenario's own tuning
    if not sets:
        return make_engine(config, folder / "institutions.toml")
    from finsa.detectors.config import parse_detectors_config
    from finsa.institutions import load_registry
    from finsa.settings import read_document

    document = read_document(config) if config is not None else {}
    for name, params in parse_sets(sets).items():
        table = document.setdefault("detectors", {}).setdefault(name, {})
        if not isinstance(table, dict):
            raise ConfigError(str(config), [f"detectors.{name}: not a table"])
        table.update(params)
    registry = load_registry(folder / "institutions.toml")
    cfg = parse_detectors_config(document, f"{config or 'defaults'} with --set", registry)
    return DetectionEngine.from_config(cfg, registry)


def _truth(folder: Path) -> dict:
    from finsa.scenario.generator import ScenarioError, load_ground_truth

    try:
        return load_ground_truth(folder)
    except ScenarioError as exc:
        raise FinsaError(str(exc)) from None


def verdict_backtest(scenario: str | Path, config: str | Path | None = None, sets: list[str] | None = None,
                     split: float = 0.5, max_flows: int = 5000, batch_ms: int = 1000,
                     accept: bool = True) -> dict[str, Any]:
    """The verdict replay (:func:`~finsa.app.verdict_replay.replay_verdicts`) over a scenario folder."""
    from finsa.app.offline import arp_sources, meter_sources, scenario_sources
    from finsa.app.verdict_replay import replay_verdicts, split_ms_of

    folder = Path(scenario)
    truth = _truth(folder)
    split_ms = split_ms_of(truth, split)
    engine = scenario_engine(folder, config, sets)
    sources = scenario_sources(folder)
    return replay_verdicts(truth, meter_sources(sources), arp_sources(sources), engine, split_ms,
                           max_flows, batch_ms, accept)


def backtest(scenario: str | Path, config: str | Path | None = None, max_flows: int = 5000,
             batch_ms: int = 1000, sets: list[str] | None = None) -> dict[str, Any]:
    """Detect offline on ``scenario`` and score the alerts (the dict :func:`score` returns, plus
    ``sector``: the sector picture's campaigns and warnings, and ``campaigns``: the ground-truth
    campaigns scored by :func:`score_campaigns`)."""
    folder = Path(scenario)
    truth = _truth(folder)
    engine = scenario_engine(folder, config, sets)
    result = run_offline(scenario_sources(folder), engine, max_flows=max_flows, batch_ms=batch_ms)
    report = score(truth, result.alerts, result.flows)
    report.update(sector_report(folder / "institutions.toml", truth, result))
    return report


def sector_report(registry_path: Path, truth: dict, result: OfflineResult) -> dict[str, Any]:
    """``sector`` (campaigns and warnings the picture found) and ``campaigns`` (scored) of a run."""
    from finsa.institutions import load_registry
    from finsa.sector.picture import SectorPicture

    registry = load_registry(registry_path)
    inventory = registry_path.parent / "inventory.toml"  # the scenario's, when it has one
    picture = SectorPicture.from_files(registry_path, inventory if inventory.exists() else None)
    run = run_sector(picture, result.alerts, result.flows)
    kinds: dict[str, int] = {}
    for w in run.warnings:
        kinds[w.kind] = kinds.get(w.kind, 0) + 1
    found = [{"campaign_id": c.campaign_id, "institutions": c.institution_order(), "alerts": c.alert_count,
              "addresses": sorted(c.addresses)[:5]} for c in run.campaigns]
    subsector_of = {i.id: i.subsector for i in registry.institution}
    return {"sector": {"campaigns": found, "warnings": len(run.warnings),
                       "warnings_by_kind": dict(sorted(kinds.items())),
                       "ticks": run.ticks},
            "campaigns": score_campaigns(truth, run.campaigns, run.warnings, subsector_of)}


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
    sector = report.get("sector")
    if sector is not None:
        kinds = ", ".join(f"{n} {k}" for k, n in sector["warnings_by_kind"].items()) or "none"
        lines.append(f"sector picture: {len(sector['campaigns'])} campaigns, {sector['warnings']} warnings ({kinds})")
    for c in report.get("campaigns", []):
        lines += _campaign_lines(c)
    return "\n".join(lines)


def _minutes(ms: int | None, since_ms: int) -> str:
    return "-" if ms is None else f"+{(ms - since_ms) / 60_000:.1f}m"


def _campaign_lines(c: dict[str, Any]) -> list[str]:
    t0 = c["start_ms"]
    if not c["recognised"]:
        return [f"campaign {c['id']} ({c['subsector']}, actor {c['actor']}): NOT recognised"]
    joined = ", ".join(f"{inst} {_minutes(ms, t0)}" for inst, ms in c["joined"])
    lines = [f"campaign {c['id']} ({c['subsector']}, actor {c['actor']}): "
             f"recognised {_minutes(c['recognised_ms'], t0)} "
             f"as {c['campaign_id']}; joined {joined}; order {'as' if c['order_matches'] else 'NOT as'} in the truth",
             f"  {'institution':<12} {'attacked':>9} {'warned':>9} {'lead s':>8}  warning"]
    for v in c["victims"]:
        mark = "" if not v["after_recognition"] else ("  ok" if v["warned_before"] else "  LATE")
        lines.append(f"  {v['institution']:<12} {_minutes(v['start_ms'], t0):>9} {_minutes(v['warned_ms'], t0):>9} "
                     f"{_cell(v['lead_s']):>8}  {v['warning_kind'] or '-'}{mark}")
    lines.append(f"  median lead {_cell(c['lead_median_s'])} s; {c['warned_before']} of {c['later']} institutions "
                 f"attacked after recognition were warned before")
    return lines


def main(args: argparse.Namespace) -> int:
    from finsa.app.verdict_replay import format_verdict_table

    try:
        if args.verdicts:
            report = verdict_backtest(args.scenario, args.config, args.sets, args.split, args.batch_flows,
                                      args.batch_ms, args.operator == "accept")
        else:
            report = backtest(args.scenario, args.config, args.batch_flows, args.batch_ms, args.sets)
    except (FinsaError, ValueError) as exc:
        print(f"finsa backtest: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps(report, indent=2))
    else:
        print(format_verdict_table(report) if args.verdicts else format_table(report))
    return 1 if args.verdicts and report["new_misses"] else 0
