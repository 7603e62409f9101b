"""``finsa storage``: store administration.

``finsa storage migrate --data-dir D`` (or ``--clickhouse-url URL``) creates or upgrades the
tables and prints each step as applied or skipped; ``--ttl-days flows=7`` sets a table's TTL
when this run creates it.

``finsa storage tenants [--registry institutions.toml] (--clickhouse-url URL | --print)``
generates the ClickHouse access control of :mod:`finsa.storage.access` (a role and a user per
institution and for the regulator, GRANTs, ROW POLICYs) and applies it to the server, or prints
it. Without ``--registry`` the institutions come from the server's ``institutions`` table. The
users' passwords are written to ``--credentials`` (mode 0600, never overwritten), not printed.
chdb refuses access control statements: this needs a ClickHouse server.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from types import SimpleNamespace

from finsa.errors import ConfigError, StorageError
from finsa.institutions import load_registry

from finsa.storage.access import tenant_sql
from finsa.storage.backend import open_store
from finsa.storage.query_command import add_store_arguments
from finsa.storage.schema import DEFAULT_TTL_DAYS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    migrate = actions.add_parser("migrate", help="create or upgrade the tables")
    add_store_arguments(migrate)
    migrate.add_argument("--ttl-days", action="append", default=[], metavar="TABLE=DAYS",
                         help=f"days a table keeps rows, 0 forever (defaults: {DEFAULT_TTL_DAYS})")
    tenants = actions.add_parser("tenants", help="per-institution roles, users, grants and row policies")
    tenants.add_argument("--registry", help="institutions file (default: the server's institutions table)")
    target = tenants.add_mutually_exclusive_group(required=True)
    target.add_argument("--clickhouse-url", help="apply to this ClickHouse server")
    target.add_argument("--print", action="store_true", help="print the SQL instead")
    tenants.add_argument("--database", default="finsa", help="database name (default: finsa)")
    tenants.add_argument("--credentials", default="tenant-credentials.toml",
                         help="file the new users' passwords are written to (default: %(default)s)")


def _ttl(items: list[str]) -> dict[str, int]:
    ttl = {}
    for item in items:
        table, _, days = item.partition("=")
        if table not in DEFAULT_TTL_DAYS or not days.isdigit():
            raise StorageError(f"--ttl-days {item!r}: expected TABLE=DAYS with TABLE in {sorted(DEFAULT_TTL_DAYS)}")
        ttl[table] = int(days)
    return ttl


def _write_credentials(path: Path, passwords: dict[str, str]) -> None:
    if path.exists():
        raise StorageError(f"{path} exists: give another --credentials file (passwords are never overwritten)")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("# ClickHouse users created by finsa storage tenants\n")
        for user, password in sorted(passwords.items()):
            out.write(f'{user} = "{password}"\n')


def tenants(args: argparse.Namespace) -> int:
    """Generate the access control SQL; print it or apply it statement by statement."""
    store = None
    try:
        if args.registry:
            institutions = load_registry(args.registry).institution
        elif args.clickhouse_url:
            store = open_store(url=args.clickhouse_url, database=args.database)
            institutions = [SimpleNamespace(**row) for row in  # type: ignore[misc]  # read like Institution: id, subsector, region
                            store.query("SELECT id, subsector, region FROM institutions ORDER BY id").dicts()]
        else:
            raise StorageError("--print needs --registry")
        generated = tenant_sql(institutions, args.database)
        _write_credentials(Path(args.credentials), generated.passwords)
        if args.print:
            print(";\n".join(generated.statements) + ";")
        else:
            store = store or open_store(url=args.clickhouse_url, database=args.database)
            for statement in generated.statements:
                store.command(statement)
            print(f"{len(generated.statements)} statements applied for {len(institutions)} institutions")
    except (StorageError, ConfigError) as exc:
        print(f"finsa storage tenants: {exc}", file=sys.stderr)
        return 1
    finally:
        if store is not None:
            store.close()
    print(f"passwords of {len(generated.passwords)} users written to {args.credentials}", file=sys.stderr)
    return 0


def main(args: argparse.Namespace) -> int:
    if args.action == "tenants":
        return tenants(args)
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
