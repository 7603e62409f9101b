"""The situation report as HTML (a stdlib ``string.Template``) and as PDF (headless chromium).

Every value from the store is HTML-escaped. The page is self-contained (inline CSS, no script,
nothing fetched), so ``chromium --print-to-pdf`` renders it offline.

>>> "<td>" in _table(["a"], [{"a": "<x>"}]) and "&lt;x&gt;" in _table(["a"], [{"a": "<x>"}])
True
"""

from __future__ import annotations

import html
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from string import Template
from typing import Any, Sequence

from finsa.dashboards import threat
from finsa.dashboards.report import Report
from finsa.errors import FinsaError
from finsa.wire import SEVERITIES

__all__ = ["render_html", "write_pdf", "ReportRenderError", "CHROMIUM"]

CHROMIUM = "/usr/bin/chromium"

_PAGE = Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>$title</title>
<style>
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 10pt; color: #1d2430; margin: 18mm 14mm; }
h1 { font-size: 18pt; margin: 0 0 2mm; } h2 { font-size: 13pt; margin: 7mm 0 2mm; border-bottom: 1px solid #ccd; }
.meta { color: #556; } table { border-collapse: collapse; width: 100%; margin: 1mm 0 3mm; }
th, td { border: 1px solid #d4d8e0; padding: 1.2mm 2mm; text-align: left; vertical-align: top; }
th { background: #eef1f6; } .lvl { color: #fff; font-weight: bold; padding: 0.5mm 2mm; border-radius: 2mm; white-space: nowrap; }
.big { font-size: 22pt; } .overdue { color: #b3001b; font-weight: bold; } .note { color: #667; font-style: italic; }
</style></head><body>
<h1>$title</h1>
<p class="meta">Period: $period_text &middot; generated $generated &middot; finsa</p>
<h2>Sector threat level</h2>
<p><span class="lvl big" style="background:$sector_colour">$sector_level $sector_name</span>
 &nbsp; weighted mean $weighted &middot; $elevated institution(s) elevated &middot; $alerts alert(s) in the last 15 minutes
 &middot; trend: $sector_trend (previous period end: level $previous_level)</p>
<h2>Institutions</h2>$institutions
<h2>Incidents and reporting deadlines</h2>
<p class="meta">Graded by the severity scheme: $scheme_text</p>$incidents
<h2>Campaigns</h2>$campaigns
<h2>Early warnings</h2>$warnings
<h2>Top techniques</h2>$techniques
<h2>Top attack sources</h2>$sources
$countries
$missing
</body></html>
""")


class ReportRenderError(FinsaError):
    """The PDF could not be produced (no chromium, or it failed)."""


def _time(ms: Any) -> str:
    if not isinstance(ms, int) or ms <= 0:
        return ""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ms / 1000))


def _duration(ms: Any) -> str:
    if ms is None:
        return "no alert followed"
    minutes = int(ms) // 60_000
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def _level(level: Any) -> str:
    name, colour = threat.LEVELS.get(int(level or 1), threat.LEVELS[1])
    return f'<span class="lvl" style="background:{colour}">{int(level or 1)} {name}</span>'


def _cell(column: str, value: Any) -> str:
    if column.endswith("level") and isinstance(value, int):
        return _level(value)
    if column in ("severity", "max_severity") and isinstance(value, int):
        return html.escape(SEVERITIES.get(value, str(value)))
    if column.endswith("_ms") and column not in ("lead_ms",):
        return html.escape(_time(value))
    if column == "lead_ms":
        return html.escape(_duration(value))
    if column == "change":
        return {1: "&#9650; rising", 0: "&#9644; steady", -1: "&#9660; falling"}[max(-1, min(1, int(value)))]
    return html.escape("" if value is None else str(value))


def _table(columns: Sequence[str], rows: Sequence[dict[str, Any]], labels: Sequence[str] = (),
           empty: str = "None in the period.") -> str:
    if not rows:
        return f'<p class="note">{html.escape(empty)}</p>'
    heads = "".join(f"<th>{html.escape(label)}</th>" for label in (labels or columns))
    body = "".join(
        "<tr{}>".format(' class="overdue"' if row.get("overdue") else "")
        + "".join(f"<td>{_cell(c, row.get(c))}</td>" for c in columns) + "</tr>" for row in rows)
    return f"<table><thead><tr>{heads}</tr></thead><tbody>{body}</tbody></table>"


def _trend(now: int, before: int) -> str:
    return "rising" if now > before else "falling" if now < before else "steady"


def render_html(report: Report, title: str = "Financial sector situation report") -> str:
    """The whole report as one HTML document."""
    s = report.sector
    name, colour = threat.LEVELS.get(int(s["level"]), threat.LEVELS[1])
    scheme_text = "; ".join(f"{g.name}: within {g.deadline_hours:g} h" for g in report.scheme)
    countries = ("<h2>Attack sources by country</h2>" + _table(
        ["source_country", "alerts", "institutions_hit", "sources"], report.countries[:10],
        ["Country", "Alerts", "Institutions hit", "Sources"])) if report.countries else ""
    missing = (f'<p class="note">Not yet recorded by this store: {html.escape(", ".join(report.missing_tables))}.</p>'
               if report.missing_tables else "")
    return _PAGE.substitute(
        title=html.escape(title), period_text=html.escape(
            f"{report.period}, {_time(report.from_ms)} to {_time(report.to_ms)}"),
        generated=html.escape(_time(int(time.time() * 1000))),
        sector_colour=colour, sector_level=int(s["level"]), sector_name=name,
        weighted=html.escape(str(s["weighted_level"])), elevated=int(s["elevated"]), alerts=int(s["alerts"]),
        sector_trend=_trend(int(s["level"]), int(report.previous_sector["level"])),
        previous_level=int(report.previous_sector["level"]),
        institutions=_table(["name", "subsector", "criticality", "level", "change", "previous_level",
                             "peak_level", "alerts"], report.institutions,
                            ["Institution", "Subsector", "Criticality", "Level", "Trend", "Previous",
                             "Peak", "Alerts (15 min)"]),
        scheme_text=html.escape(scheme_text),
        incidents=_table(["grade", "name", "entity", "max_severity", "alerts", "techniques", "first_ms",
                          "deadline_ms"], report.incidents[:60],
                         ["Grade", "Institution", "Source", "Severity", "Alerts", "Techniques",
                          "First alert", "Report by"]),
        campaigns=_table(["title", "status", "severity", "institutions_hit", "alerts", "techniques",
                          "entities", "first_seen_ms", "last_seen_ms"], report.campaigns,
                         ["Campaign", "Status", "Severity", "Institutions", "Alerts", "Techniques",
                          "Sources", "First seen", "Last seen"]),
        warnings=_table(["time_ms", "title", "scope_kind", "scope_id", "severity", "status", "lead_ms",
                         "institutions_reached"], report.warnings,
                        ["Issued", "Warning", "Audience", "Scope", "Severity", "Status", "Lead time",
                         "Institutions later hit"]),
        techniques=_table(["technique", "alerts", "institutions_hit", "sources", "max_severity"],
                          report.techniques, ["Technique", "Alerts", "Institutions", "Sources", "Max severity"]),
        sources=_table(["entity", "institutions_hit", "alerts", "techniques", "max_severity"],
                       report.sources, ["Source", "Institutions hit", "Alerts", "Techniques", "Max severity"]),
        countries=countries, missing=missing)


def write_pdf(html_path: str | Path, pdf_path: str | Path, chromium: str = CHROMIUM,
              timeout_s: float = 120.0) -> Path:
    """Print an HTML file to PDF with headless chromium; the PDF's path."""
    binary = shutil.which(chromium) or shutil.which("chromium")
    if not binary:
        raise ReportRenderError(f"chromium not found ({chromium}): cannot write the PDF")
    pdf = Path(pdf_path).resolve()
    with tempfile.TemporaryDirectory(prefix="finsa-chromium-") as profile:
        cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", f"--user-data-dir={profile}",
               "--no-pdf-header-footer", f"--print-to-pdf={pdf}", Path(html_path).resolve().as_uri()]
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise ReportRenderError("chromium did not finish printing the PDF in time") from None
    if not pdf.exists() or pdf.stat().st_size == 0:
        raise ReportRenderError(f"chromium wrote no PDF (exit {done.returncode})")
    return pdf
