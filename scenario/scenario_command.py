"""``finsa scenario``: write a labeled multi-institution traffic scenario into a folder.

    finsa scenario --out data/scenario [--seed 7] [--duration 100] [--start 2026-03-02T09:00:00Z] [--scale 1]
                   [--attacks all|basic|sector|none]

``--attacks sector`` writes the hour-long sector-wide campaign (default duration 3600 s, scale
0.05): replay it with ``finsa run --scenario DIR --speed 60``, score it with ``finsa backtest DIR``.

Prints one line per capture and per attack. Exit code 0 on success, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys

from finsa.scenario.generator import ATTACK_SETS, ScenarioError, generate_scenario, parse_start


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder to write the scenario into (created if needed)")
    parser.add_argument("--seed", type=int, default=7, help="random seed: the same seed gives the same files")
    parser.add_argument("--duration", type=float, default=None,
                        help="length of the scenario in seconds (default 100; 3600 with --attacks sector)")
    parser.add_argument("--start", default=None,
                        help="ISO 8601 start time (default 2026-03-02T09:00:00Z, a Monday morning)")
    parser.add_argument("--scale", type=float, default=None,
                        help="multiplier of the benign traffic volume (default 1; 0.05 with --attacks sector)")
    parser.add_argument("--attacks", choices=ATTACK_SETS, default="all",
                        help="every attack type (default), only port scan, SYN flood and SSH brute force (basic), "
                             "one actor's campaign through the payment institutions (sector), "
                             "or no attack at all: benign traffic only, for a soak (none)")


def main(args: argparse.Namespace) -> int:
    try:
        start_ms = None if args.start is None else parse_start(args.start)
        info = generate_scenario(args.out, seed=args.seed, duration_s=args.duration,
                                 start_ms=start_ms, scale=args.scale, attack_set=args.attacks)
    except ScenarioError as exc:
        print(f"finsa scenario: {exc}", file=sys.stderr)
        return 2
    for cap in info.manifest["captures"]:
        print(f"{cap['sensor']:<12} {cap['packets']:>7} packets  {info.out_dir / cap['path']}")
    for attack in info.ground_truth["attacks"]:
        print(f"{attack['id']:<19} {attack['technique']:<10} {attack['attacker']:<15} -> {_victims(attack)}")
    for campaign in info.ground_truth.get("campaigns", []):
        order = ", ".join(f"{v['institution']} +{(v['start_ms'] - campaign['start_ms']) / 60_000:.1f} min"
                          for v in campaign["victims"])
        print(f"{campaign['id']:<19} {campaign['actor']} through {campaign['subsector']}: {order}")
    print(f"{info.packets} packets in {len(info.manifest['captures'])} captures; "
          f"ground truth in {info.out_dir / 'ground_truth.json'}")
    return 0


def _victims(attack: dict, at_most: int = 6) -> str:
    victims = attack["victims"]
    if len(victims) <= at_most:
        return ", ".join(f"{v['institution']}/{v['address']}" for v in victims)
    places = ", ".join(dict.fromkeys(v["institution"] for v in victims))
    return f"{len(victims)} hosts at {places}"
