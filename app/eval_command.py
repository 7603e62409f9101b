"""``finsa eval``: the detection scorecard over folders of labelled and benign captures.

    finsa eval DIR... [--json FILE] [--config FILE] [--institution ID]

Every capture under the folders (``.pcap``, ``.pcapng``, ``.cap``) is metered and run through the
detectors exactly as ``finsa detect`` does (:func:`finsa.app.offline.run_offline`, a fresh engine
per capture, the default detectors unless ``--config``). A capture with a ``.label.json`` beside it
gets a verdict (:mod:`finsa.app.scorecard`); one without is benign and its alerts are false.
Printed: one line per capture (capture, attack type, alerts, verdict, delay), then per attack
type detected/total, technique accuracy and median delay from the first attack packet to the
first right alert, then the benign total and the flow rows the engine refused (per reason).
``--json FILE`` writes the same as one JSON document (``-`` for stdout). Exit code 0, or 2 on bad
input (no capture found, unreadable config).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from finsa.app.offline import CaptureSource, OfflineError, make_engine, run_offline
from finsa.app.scorecard import CaptureResult, find_captures, label_of, right_alerts, summarise, verdict
from finsa.errors import FinsaError
from finsa.wire import ips_from_strings

__all__ = ["add_arguments", "main", "evaluate", "score_capture", "format_report"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folders", nargs="+", type=Path, help="folders of captures (labelled or benign) or captures")
    parser.add_argument("--json", dest="json_path", help="also write the scorecard as JSON to FILE ('-' = stdout)")
    parser.add_argument("--config", type=Path, help="detectors configuration file (TOML/YAML)")
    parser.add_argument("--institution", default="lab", help="institution the captures are attributed to")
    parser.add_argument("--quiet", action="store_true", help="print the summary only, not one line per capture")


def _first_attack_ms(flows: Any, addresses: Sequence[str]) -> int | None:
    """First packet time of the flows touching an attacker address (None when no flow does)."""
    if not len(flows) or not addresses:
        return None
    wanted = ips_from_strings(list(addresses))
    cols = flows.columns
    touch = np.zeros(len(flows), dtype=bool)
    for addr in wanted:
        touch |= (cols["src_ip"] == addr).all(axis=1) | (cols["dst_ip"] == addr).all(axis=1)
    return int(cols["first_seen_ms"][touch].min()) if touch.any() else None


def score_capture(path: Path, config: Path | None = None, institution: str = "lab") -> CaptureResult:
    """Run the detectors over one capture and judge the result against its label (if any)."""
    try:
        label = label_of(path)
    except (ValueError, OSError) as exc:  # a broken label is reported and counted, the rest still runs
        return CaptureResult(str(path), None, 0, [], error=f"unreadable label: {exc}")
    engine = make_engine(config)
    try:
        result = run_offline([CaptureSource(path, institution, f"{institution}-{path.stem}")], engine)
    except OfflineError as exc:
        return CaptureResult(str(path), label, 0, [], error=str(exc), verdict="missed" if label else "")
    alerts = result.alerts.rows() if len(result.alerts) else []
    out = CaptureResult(str(path), label, len(result.flows), alerts, dict(engine.skipped))
    if label is not None:
        out.verdict = verdict(label, alerts)
        out.first_attack_ms = _first_attack_ms(result.flows, label.addresses)
        right, _ = right_alerts(label, alerts)
        out.first_alert_ms = min((int(a["time_ms"]) for a in right), default=None)
    return out


def evaluate(folders: Sequence[Path], config: Path | None = None, institution: str = "lab",
             progress: Any = None) -> tuple[list[CaptureResult], dict[str, Any]]:
    """Every capture under ``folders`` scored, and the summary (:func:`finsa.app.scorecard.summarise`)."""
    captures = find_captures(folders)
    if not captures:
        raise FinsaError(f"no capture (.pcap, .pcapng, .cap) under {', '.join(map(str, folders))}")
    results = []
    for path in captures:
        results.append(score_capture(path, config, institution))
        if progress is not None:
            progress(results[-1])
    return results, summarise(results)


def _line(r: CaptureResult, root: str = "") -> str:
    name = r.path[len(root):].lstrip("/") if root and r.path.startswith(root) else r.path
    kinds = ",".join(sorted({f"{a['detector']}:{a['technique']}" for a in r.alerts})) or "-"
    if r.label is None:
        return f"{name:<58} {'benign':<12} {len(r.alerts):>4} alerts  {kinds}" + (f"  ERROR {r.error}" if r.error else "")
    delay = f"{r.delay_ms / 1000:.1f}s" if r.delay_ms is not None else "-"
    err = f"  ERROR {r.error}" if r.error else ""
    return f"{name:<58} {r.label.attack_type:<12} {len(r.alerts):>4} alerts  {r.verdict:<15} {delay:>7}  {kinds}{err}"


def format_report(results: Sequence[CaptureResult], summary: dict[str, Any], per_capture: bool = True) -> str:
    """The scorecard as text: capture lines, per attack type, totals."""
    lines = [_line(r) for r in results] if per_capture else []
    lines += ["", f"{'attack type':<14} {'detected':>8} {'wrong tech':>10} {'missed':>6} {'tech acc':>8} {'median delay':>12}"]
    for name, t in summary["attack_types"].items():
        acc = "-" if t["technique_accuracy"] is None else f"{t['technique_accuracy']:.2f}"
        delay = "-" if t["median_delay_ms"] is None else f"{t['median_delay_ms'] / 1000:.1f}s"
        lines.append(f"{name:<14} {t['detected']:>4}/{t['captures']:<3} {t['wrong_technique']:>10} "
                     f"{t['missed']:>6} {acc:>8} {delay:>12}")
    lines.append(f"labelled: {summary['detected']}/{summary['labelled']} detected with the right technique, "
                 f"{summary['wrong_technique']} wrong technique, {summary['missed']} missed")
    lines.append(f"benign: {summary['benign_alerts']} alerts on {summary['benign_captures']} captures "
                 f"({summary['benign_captures_alerting']} alerting)")
    skipped = ", ".join(f"{k}={v}" for k, v in summary["skipped"].items()) or "none"
    lines.append(f"flow rows refused by the engine: {skipped}; capture errors: {summary['errors']}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    try:
        results, summary = evaluate(args.folders, args.config, args.institution)
    except (FinsaError, ValueError, OSError) as exc:
        print(f"finsa eval: {exc}", file=sys.stderr)
        return 2
    report = format_report(results, summary, per_capture=not args.quiet)
    doc = {"summary": summary, "captures": [r.as_dict() for r in results]}
    if args.json_path == "-":
        print(json.dumps(doc, indent=1))
        print(report, file=sys.stderr)
    else:
        print(report)
        if args.json_path:
            Path(args.json_path).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return 0
