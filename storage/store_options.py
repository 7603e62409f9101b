"""The command-line options that name a store, shared by ``finsa query`` and ``finsa storage``
(so neither command module imports the other).

>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> add_store_arguments(parser)
>>> parser.parse_args(["--data-dir", "data/run"]).database
'finsa'
"""

from __future__ import annotations

import argparse

__all__ = ["add_store_arguments"]


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data-dir`` / ``--clickhouse-url`` / ``--database``."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--data-dir", help="folder of the store in process (chdb)")
    where.add_argument("--clickhouse-url", help="ClickHouse server, http://user:pass@host:8123")
    parser.add_argument("--database", default="finsa", help="database name (default: finsa)")
