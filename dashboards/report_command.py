"""``finsa report``: write the sector situation report of the last day or week.

``finsa report --period day|week --data-dir D [--out DIR] [--format html,pdf] [--scheme FILE]
[--at ISO-TIME]`` writes ``finsa-report-<period>-<date>.html`` (and ``.pdf``) into DIR.
``--url`` reads a ClickHouse server instead of a data directory.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["add_arguments", "main"]

FORMATS = ("html", "pdf")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--period", choices=("day", "week"), default="day")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--data-dir", help="the store's data directory (chdb)")
    where.add_argument("--url", help="a ClickHouse server URL instead")
    parser.add_argument("--database", default="finsa")
    parser.add_argument("--out", default=".", help="output directory (default: here)")
    parser.add_argument("--format", default="html,pdf", help="comma-separated: html, pdf")
    parser.add_argument("--scheme", help="TOML file with the incident grades (default: four grades)")
    parser.add_argument("--at", help="end of the period, ISO 8601 (default: now)")
    parser.add_argument("--title", default="Financial sector situation report")


def _end_ms(text: str | None) -> int:
    if not text:
        return int(time.time() * 1000)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def main(args: argparse.Namespace) -> int:
    from finsa.dashboards.report import build_report
    from finsa.dashboards.report_grades import default_scheme, load_scheme
    from finsa.dashboards.report_render import ReportRenderError, render_html, write_pdf
    from finsa.errors import FinsaError
    from finsa.storage.backend import open_store

    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    if not formats or set(formats) - set(FORMATS):
        print(f"finsa report: --format takes {', '.join(FORMATS)}", file=sys.stderr)
        return 2
    try:
        scheme = load_scheme(args.scheme) if args.scheme else default_scheme()
        to_ms = _end_ms(args.at)
        with open_store(data_dir=args.data_dir, url=args.url, database=args.database) as store:
            report = build_report(store, args.period, to_ms, scheme)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"finsa-report-{args.period}-{time.strftime('%Y-%m-%d', time.gmtime(to_ms / 1000))}"
        html_path = out / f"{stem}.html"
        html_path.write_text(render_html(report, args.title), encoding="utf-8")
        if "html" in formats:
            print(html_path)
        if "pdf" in formats:
            print(write_pdf(html_path, out / f"{stem}.pdf"))
            if "html" not in formats:
                html_path.unlink()
    except (FinsaError, ValueError, ReportRenderError) as exc:
        print(f"finsa report: {exc}", file=sys.stderr)
        return 1
    return 0
