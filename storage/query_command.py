"""``finsa query``: run SQL on a finsa store and print the result.

``finsa query --data-dir D "SELECT count() FROM flows"`` opens the store in process (chdb; the
folder must not be open in another process, e.g. a running ``finsa run``);
``--clickhouse-url URL`` queries a ClickHouse server instead. ``--format`` picks a text table
(default), CSV or JSON lines. Bad SQL prints the engine's message and exits 1.

``--as PRINCIPAL`` runs the SQL for ``regulator`` or an institution id through
:class:`~finsa.storage.tenant.TenantView`: an institution sees only its own rows and the
sector-wide aggregates, and a refused query exits 1. Without ``--as`` the caller is the
operator (any SQL, except changing ``audit_log``). Every run is recorded in ``audit_log``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sys
from typing import Any, TextIO

from finsa.errors import StorageError

from finsa.storage.backend import QueryResult, add_store_arguments, open_store
from finsa.storage.tenant import TenantView


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_store_arguments(parser)
    parser.add_argument("--format", choices=("table", "csv", "jsonl"), default="table")
    parser.add_argument("--as", dest="principal", default="operator", metavar="PRINCIPAL",
                        help="run as: operator (default), regulator, or an institution id")
    parser.add_argument("sql", help="the SQL to run; tables need no database prefix")


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    return "" if value is None else str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return _text(value)


def print_result(result: QueryResult, fmt: str, out: TextIO) -> None:
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows([[_text(v) for v in row] for row in result.rows])
    elif fmt == "jsonl":
        for row in result.dicts():
            out.write(json.dumps({k: _jsonable(v) for k, v in row.items()}, ensure_ascii=False) + "\n")
    else:
        cells: list[list[str]] = [[_text(v) for v in row] for row in result.rows]
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(result.columns)]
        line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()  # noqa: E731 - the loop's widths, used at once
        out.write(line(result.columns) + "\n" + line(["-" * w for w in widths]) + "\n")
        for cell_row in cells:
            out.write(line(cell_row) + "\n")
        out.write(f"({len(cells)} row{'s' if len(cells) != 1 else ''})\n")


def main(args: argparse.Namespace) -> int:
    try:
        with open_store(args.data_dir, args.clickhouse_url, args.database) as store:
            result = TenantView(store, args.principal).query(args.sql)
    except StorageError as exc:
        print(f"finsa query: {exc}", file=sys.stderr)
        return 1
    print_result(result, args.format, sys.stdout)
    return 0
