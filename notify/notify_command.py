"""``finsa notify --check FILE``: validate a notifications config and print its routing.

    finsa notify --check deploy/notify.example.toml

Exit 0 with the effective config (secrets left out) when valid; exit 1 with every problem
listed when not. The config is used by ``finsa run --notify FILE`` and ``finsa worker --notify FILE``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from finsa.errors import ConfigError

from finsa.notify.config import load_notify_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", type=Path, required=True, metavar="FILE", help="the config file to validate")


def main(args: argparse.Namespace) -> int:
    try:
        cfg = load_notify_config(args.check)
    except ConfigError as exc:
        print(f"finsa notify: {exc}", file=sys.stderr)
        return 1
    shown = cfg.model_dump(mode="json", exclude={"receiver": {"__all__": {"secret"}}})
    print(json.dumps(shown, indent=2, sort_keys=True))
    return 0
