"""The HTML report in a real browser: headless Chromium draws every chart (scripts/check_report.py).

Skipped only when Debian's Chromium is not installed (``apt-get install chromium``).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from dialer.reports.htmlreport import render_html
from dialer.reports.stats import campaign_stats
from dialer.store.results import replace_results

CHROMIUM = Path("/usr/bin/chromium")
SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "check_report.py"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="no /usr/bin/chromium: apt-get install chromium to run"
)


def check_report(*args: str | Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(SCRIPT), *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


def demo_entries() -> list:
    spec = importlib.util.spec_from_file_location("check_report", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.demo_entries()


def test_the_report_of_a_results_file_draws_every_chart(tmp_path):
    results = tmp_path / "leads.results.csv"
    replace_results(results, demo_entries(), durable=False)
    png = tmp_path / "report.png"
    done = check_report(results, "--screenshot", png, "--save-html", tmp_path / "report.html")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: every chart drawn" in done.stdout
    for chart_id in ("chart-outcomes", "chart-calls-over-time", "chart-answer-by-hour"):
        line = re.search(rf"^{chart_id}: (\d+)x(\d+) px, (\d+) bars", done.stdout, re.M)
        assert line, done.stdout
        width, height, bars = map(int, line.groups())
        assert width > 900 and height > 250 and bars >= 5
    with Image.open(png) as image:
        assert image.width == 1200 and image.height > 1500  # the whole page, not a cut


def test_the_check_fails_when_charts_are_missing_hidden_or_empty(tmp_path):
    page = render_html(campaign_stats(demo_entries()), title="Broken")
    page = re.sub(r'<g id="chart-answer-by-hour-bar-\d+">.*?</g>', "", page, flags=re.S)
    page = page.replace('<section id="chart-outcomes" class="chart"><h2>Call outcomes</h2><svg',
                        '<section id="chart-outcomes" class="chart"><h2>Call outcomes</h2>'
                        '<svg style="display:none"')  # fmt: skip
    page = re.sub(r'<section id="chart-calls-over-time".*?</section>', "", page, flags=re.S)
    broken = tmp_path / "broken.html"
    broken.write_text(page, encoding="utf-8")
    done = check_report("--page", broken)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL chart-outcomes: drawn at 0x0 px, too small or hidden" in done.stdout
    assert "FAIL chart-calls-over-time: missing from the page" in done.stdout
    assert "FAIL chart-answer-by-hour: no bar with a visible size" in done.stdout


def test_the_check_looks_at_pixels_too(tmp_path):
    # Bars that exist in the DOM but are painted white: only the screenshot can tell.
    page = render_html(campaign_stats(demo_entries()), title="Blank")
    page = page.replace("</style>", "#chart-outcomes svg *{fill:#fff!important}</style>", 1)
    blank = tmp_path / "blank.html"
    blank.write_text(page, encoding="utf-8")
    done = check_report("--page", blank)
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(
        r"FAIL chart-outcomes: blank in the screenshot: 0 of [1-9]\d* bars painted", done.stdout
    )
    assert "FAIL chart-answer-by-hour" not in done.stdout


def test_a_chart_replaced_by_a_note_fails_unless_notes_are_allowed(tmp_path):
    # A campaign whose calls have no outcome yet: no answer-rate chart, a note instead.
    results = tmp_path / "leads.results.csv"
    entries = [replace(e, outcome="", outcome_at="", history="") for e in demo_entries()[:50]]
    replace_results(results, entries, durable=False)
    done = check_report(results)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL chart-answer-by-hour: no <svg> chart in it (the page says: No call" in done.stdout
    done = check_report(results, "--allow-notes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "chart-answer-by-hour: no chart, the page says: No call has an outcome" in done.stdout
