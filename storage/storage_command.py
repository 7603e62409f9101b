"""``finsa storage``: store administration.

``finsa storage migrate --data-dir D`` (or ``--clickhouse-url URL``) creates or upgrades the
tables and prints each step as applied or skipped; ``--ttl-days flows=7`` sets a table's TTL
when this run creates it. ``finsa storage tenants`` (per-institution users and row policies)
is not there yet: it exits 2.
"""

from __future__ import annotations

import argparse
import sys

from finsa.errors import StorageError

from finsa.storage.backend import open_store
from finsa.storage.query_command import add_store_arguments
from finsa.storage.schema import DEFAULT_TTL_DAYS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    migrate = actions.add_parser("migrate", help="create or upgrade the tables")
    add_store_arguments(migrate)
    migrate.add_argument("--ttl-days", action="append", default=[], metavar="TABLE=DAYS",
                         help=f"days a table keeps rows, 0 forever (defaults: {DEFAULT_TTL_DAYS})")
    tenants = actions.add_parser("tenants", help="per-institution users and row policies (not yet)")
    tenants.add_argument("--clickhouse-url")


def _ttl(items: list[str]) -> dict[str, int]:
    ttl = {}
    for item in items:
        table, _, days = item.partition("=")
        if table not in DEFAULT_TTL_DAYS or not days.isdigit():
            raise StorageError(f"--ttl-days {item!r}: expected TABLE=DAYS with TABLE in {sorted(DEFAULT_TTL_DAYS)}")
        ttl[table] = int(days)
    return ttl


def main(args: argparse.Namespace) -> int:
    if args.action == "tenants":
        print("finsa storage tenants: not yet (needs a ClickHouse server: chdb refuses CREATE USER "
              "and ROW POLICY)", file=sys.stderr)
        return 2
    try:
        ttl = _ttl(args.ttl_days)
        with open_store(args.data_dir, args.clickhouse_url, args.database) as store:
            report = store.migrate_report(ttl)
    except StorageError as exc:
        print(f"finsa storage migrate: {exc}", file=sys.stderr)
        return 1
    for version in report.applied:
        print(f"applied  {version}")
    for version in report.skipped:
        print(f"skipped  {version}")
    print(f"{len(report.applied)} applied, {len(report.skipped)} already in place")
    return 0
