"""Benign soak: false alerts per million benign flows of the scenario's benign traffic.

    python -m bench.benign_soak [--flows 1000000] [--scale 10] [--duration 500] [--config FILE]
                                [--keep DIR]

Generates benign-only scenarios (``finsa scenario --attacks none``: background, noise and the
routine look-alikes of backups, monitoring, partner APIs, mail relays) with seeds 1, 2, ... until
``--flows`` benign flows were metered, runs the detectors over each (``finsa backtest``: the
scenario's own ``detectors.toml`` unless ``--config``; ``--config default`` runs the default
detector set), and prints the false alerts per detector and per million benign flows. Each seed
is a separate run (a cold start: detectors have learned nothing), so the figure is pessimistic for
baselined detectors. With ``--keep DIR`` the scenarios stay in DIR and a later run reuses them
(only the detection is run again: compare detector versions on the same traffic). One scenario of scale 10 and 500 s holds about 94k flows and needs ~2.5 GB
while it is generated; the scenarios are generated one at a time and deleted unless ``--keep``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from finsa.app.backtest_command import backtest
from finsa.scenario.generator import generate_scenario


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.benign_soak", description=__doc__.splitlines()[0])
    p.add_argument("--flows", type=int, default=1_000_000, help="benign flows to soak (default 1M)")
    p.add_argument("--scale", type=float, default=10.0, help="benign volume of each scenario (default 10)")
    p.add_argument("--duration", type=float, default=500.0, help="seconds of each scenario (default 500)")
    p.add_argument("--config", default=None, help="detectors config; 'default' for the default detector set")
    p.add_argument("--keep", type=Path, default=None, help="keep the scenarios under this folder")
    return p


def soak(flows: int, scale: float, duration_s: float, config: str | None, keep: Path | None) -> dict:
    """Run seeds until ``flows`` benign flows; return totals and the false alerts per detector."""
    per_detector: Counter[str] = Counter()
    examples: dict[str, str] = {}
    total_flows, seeds, started = 0, 0, time.monotonic()
    with tempfile.TemporaryDirectory(prefix="finsa-soak-") as tmp:
        empty = Path(tmp) / "default.toml"
        empty.write_text("")
        while total_flows < flows:
            seeds += 1
            folder = (keep or Path(tmp)) / f"soak-{seeds}"
            if not (folder / "manifest.json").exists():  # --keep: a folder kept by an earlier run is reused
                generate_scenario(folder, seed=seeds, duration_s=duration_s, scale=scale, attack_set="none")
            report = backtest(folder, empty if config == "default" else config)
            total_flows += report["total"]["benign_flows"]
            for alert in report["false"]:
                per_detector[alert["detector"]] += 1
                examples.setdefault(alert["detector"], f"{alert['entity']} -> {alert['target']}")
            if keep is None:
                shutil.rmtree(folder)
            print(f"seed {seeds}: {report['total']['benign_flows']} flows, {len(report['false'])} false alerts "
                  f"({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
    false = sum(per_detector.values())
    return {"flows": total_flows, "seeds": seeds, "false_alerts": false,
            "false_per_million": round(false * 1e6 / max(total_flows, 1), 1),
            "per_detector": dict(per_detector.most_common()), "examples": examples}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    result = soak(args.flows, args.scale, args.duration, args.config, args.keep)
    print(f"benign soak: {result['flows']} flows in {result['seeds']} scenarios (scale {args.scale}, "
          f"{args.duration:.0f} s each): {result['false_alerts']} false alerts, "
          f"{result['false_per_million']} per million benign flows")
    for name, n in result["per_detector"].items():
        print(f"  {name:<12} {n:>6}  e.g. {result['examples'][name]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
