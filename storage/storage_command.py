"""``finsa storage``: store administration.

``finsa storage migrate --data-dir D`` (or ``--clickhouse-url URL``) creates or upgrades the
tables and prints each step as applied or skipped; ``--ttl-days flows=7`` sets a table's TTL
when this run creates it.

``finsa storage migrate --cluster NAME --clickhouse-url URL`` creates the schema of a ClickHouse
cluster instead (:mod:`finsa.storage.cluster`: replicated shards behind Distributed tables, all
``ON CLUSTER``), through one node, as an admin user; ``--cluster NAME --print`` prints that DDL.

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
from finsa.storage.schema import DEFAULT_TTL_DAYS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    migrate = actions.add_parser("migrate", help="create or upgrade the tables (of one node or of a cluster)")
    where = migrate.add_mutually_exclusive_group(required=True)
    where.add_argument("--data-dir", help="folder of the store in process (chdb)")
    where.add_argument("--clickhouse-url", help="ClickHouse server, http://user:pass@host:8123")
    where.add_argument("--print", action="store_true", help="with --cluster: print the cluster DDL")
    migrate.add_argument("--database", default="finsa", help="database name (default: finsa)")
    migrate.add_argument("--cluster", help="create the cluster schema on this remote_servers cluster (ON CLUSTER)")
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


def migrate_cluster(args: argparse.Namespace) -> int:
    """``migrate --cluster``: print the cluster DDL, or apply it through one node."""
    from finsa.storage import cluster

    try:
        if args.data_dir:
            raise StorageError("--cluster needs --clickhouse-url (a node of the cluster) or --print")
        ttl = _ttl(args.ttl_days) or None
        if args.print:
            print(";\n\n".join(cluster.cluster_statements(args.cluster, args.database, ttl)) + ";")
            return 0
        with open_store(url=args.clickhouse_url, database="default") as store:
            done = cluster.apply(store, args.cluster, args.database, ttl)
    except StorageError as exc:
        print(f"finsa storage migrate: {exc}", file=sys.stderr)
        return 1
    print(f"{len(done)} cluster statements applied on {args.cluster}")
    return 0


def main(args: argparse.Namespace) -> int:
    if args.action == "tenants":
        return tenants(args)
    if args.cluster:
        return migrate_cluster(args)
    if args.print:
        print("finsa storage migrate: --print needs --cluster", file=sys.stderr)
        return 1
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
