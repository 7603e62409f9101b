"""The situation report: its data on a real store, the grading scheme, HTML and a PDF checked
with poppler (pdftotext, pdftoppm)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from finsa.dashboards.report import build_report
from finsa.dashboards.report_grades import default_scheme, load_scheme
from finsa.dashboards.report_render import render_html, write_pdf
from finsa.errors import ConfigError

from tests.dashboards.test_grafana import load_sector_rows

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report(store, sector):
    load_sector_rows(store, sector.now_ms)
    return build_report(store, "day", sector.now_ms + 1)


def test_levels_and_trend(report):
    by_id = {r["institution_id"]: r for r in report.institutions}
    assert by_id["bank-a"]["level"] == 5 and by_id["bank-a"]["change"] == 4  # 1 a day ago
    assert by_id["bank-q"]["level"] == 1 and by_id["bank-q"]["change"] == 0
    assert report.sector["level"] == 5 and report.previous_sector["level"] == 1


def test_incidents_graded_with_deadlines(report, sector):
    incidents = {(i["institution_id"], i["entity"]): i for i in report.incidents}
    bank = incidents[("bank-a", sector.attacker)]
    assert bank["grade"] == "major" and bank["alerts"] == 9  # critical at a criticality-5 bank
    assert bank["deadline_ms"] == bank["first_ms"] + 4 * 3_600_000 and not bank["overdue"]
    assert incidents[("ins-c", sector.attacker)]["grade"] == "significant"
    assert incidents[("pay-d", sector.lone_source)]["grade"] == "minor"
    assert incidents[("bank-q", "192.0.2.50")]["grade"] == "significant"
    assert [i["grade"] for i in report.incidents][0] == "major"


def test_campaigns_warnings_and_lead_time(report, sector):
    assert [c["campaign_id"] for c in report.campaigns] == ["camp-1"]
    warning = report.warnings[0]
    # warned 5 min before now; ins-c (insurance) was first hit 4 min before now
    assert warning["lead_ms"] == 60_000 and warning["institutions_reached"] == 1
    assert report.techniques[0]["technique"] == "T1110"
    assert report.sources[0]["entity"] == sector.attacker


def test_scheme_from_toml_and_its_problems(tmp_path):
    path = tmp_path / "grades.toml"
    path.write_text('[[grades]]\nname = "urgent"\nmin_severity = 4\ndeadline_hours = 2\n'
                    '[[grades]]\nname = "rest"\ndeadline_hours = 48\n')
    scheme = load_scheme(path)
    assert scheme.grade(5, 1, 1).name == "urgent" and scheme.grade(2, 5, 9).deadline_hours == 48
    path.write_text('[[grades]]\nname = ""\ndeadline_hours = -1\ncolour = "red"\n')
    with pytest.raises(ConfigError) as info:
        load_scheme(path)
    assert len(info.value.problems) == 3
    assert len(list(default_scheme())) == 4


def test_html_escapes_and_names_everything(report):
    text = render_html(report)
    for expected in ("Alpine Bank", "Coastal Insurance", "5 severe", "Brute force wave", "T1110",
                     "Insurers: brute force", "1 min", "major", "within 4 h", "rising"):
        assert expected in text
    assert "<script" not in text


@pytest.mark.integration
@pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("pdftotext") and shutil.which("pdftoppm")),
                    reason="needs chromium and poppler-utils")
def test_pdf_shows_institutions_levels_campaign_and_technique(report, tmp_path):
    html_path = tmp_path / "report.html"
    html_path.write_text(render_html(report), encoding="utf-8")
    pdf = write_pdf(html_path, tmp_path / "report.pdf")
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    text = " ".join(text.split())  # table cells wrap names over lines
    for expected in ("Alpine Bank", "Quiet Savings", "Delta Payments", "severe", "normal",
                     "Brute force wave on bank and insurer", "T1110", "major"):
        assert expected in text, expected
    subprocess.run(["pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "1", str(pdf), str(tmp_path / "page")],
                   check=True)
    png = next(tmp_path.glob("page*.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_report_command_needs_a_known_format(tmp_path):
    done = subprocess.run([sys.executable, "-m", "finsa.app.cli", "report", "--data-dir", str(tmp_path / "d"),
                           "--format", "docx"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2 and "--format" in done.stderr


def test_report_command_writes_html_from_a_data_dir(tmp_path):
    """In a child process: a chdb store folder can be opened by one engine per process."""
    data = tmp_path / "store"
    setup = ("import sys; sys.path.insert(0, 'tests/dashboards'); import conftest as c; "
             "s = c._open_store(__import__('pathlib').Path(sys.argv[1])); s.load_institutions(c.REGISTRY); "
             "s.insert(c._flows()); s.insert(c._alerts()); s.close()")
    subprocess.run([sys.executable, "-c", setup, str(data)], check=True, cwd=REPO, timeout=120)
    done = subprocess.run([sys.executable, "-m", "finsa.app.cli", "report", "--period", "week", "--data-dir",
                           str(data), "--out", str(tmp_path / "out"), "--format", "html"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    page = Path(done.stdout.strip()).read_text()
    assert "Alpine Bank" in page and "week" in page
