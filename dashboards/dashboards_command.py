"""``finsa dashboards``: Grafana provisioning.

* ``finsa dashboards export DIR``: write file provisioning (data sources, dashboard provider and
  JSON, alerting) under DIR; the copy kept in the repository is ``deploy/grafana/``.
* ``finsa dashboards push --grafana-url URL --token TOKEN``: create or update the data sources,
  the folder, the dashboards and the alert rules in a running Grafana (idempotent).
* ``finsa dashboards check``: validate the generated dashboards against the schema.
"""

from __future__ import annotations

import argparse
import os
import sys

from finsa.dashboards import provision

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    export = sub.add_parser("export", help="write Grafana file provisioning under DIR")
    export.add_argument("dir", help="output directory (e.g. /etc/grafana/provisioning)")
    push = sub.add_parser("push", help="create or update everything in a running Grafana")
    push.add_argument("--grafana-url", required=True, help="e.g. http://grafana:3000")
    push.add_argument("--token", default=os.environ.get("GRAFANA_TOKEN", ""),
                      help="service account token (default: $GRAFANA_TOKEN)")
    for p in (export, push):
        p.add_argument("--clickhouse-url", default=provision.DEFAULT_CLICKHOUSE_URL,
                       help="ClickHouse HTTP URL as Grafana reaches it")
        p.add_argument("--database", default="finsa", help="ClickHouse database of the store")
        p.add_argument("--prometheus-url", default=provision.DEFAULT_PROMETHEUS_URL,
                       help="Prometheus URL as Grafana reaches it")
    sub.add_parser("check", help="validate the generated dashboards against Grafana's schema")


def _check() -> int:
    from finsa.dashboards.grafana import build_dashboards
    from finsa.dashboards.grafana_schema import problems
    bad = 0
    for uid, board in build_dashboards().items():
        found = problems(board)
        bad += len(found)
        print(f"{uid}: {'ok' if not found else f'{len(found)} problem(s)'}")
        for problem in found:
            print(f"  {problem}")
    return 1 if bad else 0


def main(args: argparse.Namespace) -> int:
    if args.action == "check":
        return _check()
    if args.action == "export":
        for path in provision.export(args.dir, args.clickhouse_url, args.database, args.prometheus_url):
            print(path)
        return 0
    if not args.token:
        print("finsa dashboards push: give --token or set GRAFANA_TOKEN", file=sys.stderr)
        return 2
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaException

    api = GrafanaApi.from_url(args.grafana_url, credential=args.token)
    try:
        report = provision.push(api, args.clickhouse_url, args.database, args.prometheus_url)
    except GrafanaException as exc:
        print(f"finsa dashboards push: Grafana refused: {exc.message}", file=sys.stderr)
        return 1
    for item in report.created:
        print(f"created {item}")
    for item in report.updated:
        print(f"updated {item}")
    return 0
