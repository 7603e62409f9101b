"""The command-line flags naming a store, shared by the storage commands (``finsa query``,
``finsa allowlist``), which never import one another (see tests/app/test_cli_table.py).

>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> add_store_arguments(parser)
>>> args = parser.parse_args(["--data-dir", "data/run"])
>>> args.data_dir, args.clickhouse_url, args.database
('data/run', None, 'finsa')
"""

from __future__ import annotations

import argparse

__all__ = ["add_store_arguments"]


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data-dir`` / ``--clickhouse-url`` (one of them) and ``--database``."""
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--data-dir", help="folder of the store in process (chdb)")
    where.add_argument("--clickhouse-url", help="ClickHouse server, http://user:pass@host:8123")
    parser.add_argument("--database", default="finsa", help="database name (default: finsa)")
