"""The HTML report: self-contained, escaped, every chart drawn, an empty campaign handled."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from html.parser import HTMLParser

import pytest

from dialer.errors import ConfigError
from dialer.model import Status
from dialer.reports.htmlreport import CHART_IDS, render_html, write_html
from dialer.reports.stats import campaign_stats
from dialer.store.results import Entry
from tests.test_stats import called

EVIL = "<script>alert('x')</script>"
GENERATED = datetime(2025, 5, 16, 18, 0, tzinfo=UTC)


def entries() -> list[Entry]:
    return [
        called(
            "+34912345678",
            "c-a2",
            "closed",
            "2025-05-12T08:30:00Z",
            duration="120",
            history="c-a1 no-answer 2025-05-11T16:05:00Z",
        ),
        called("+12125550100", "c-b1", "voicemail", "2025-05-12T14:10:00Z", duration="30"),
        called("+442079460123", "c-c1", "closed", "2025-05-12T09:59:59Z", duration="60"),
        called("+34912345679", "c-d1", "busy", "2025-05-14T10:00:00Z"),
        Entry("row:7", 7, "12", Status.INVALID),
    ]


def page_of(items: list[Entry], title: str = "Admissions, May") -> str:
    return render_html(campaign_stats(items), title=title, generated=GENERATED)


def section(page: str, chart_id: str) -> str:
    found = re.search(rf'<section id="{chart_id}" class="chart">(.*?)</section>', page, re.S)
    assert found, f"no section {chart_id}"
    return found.group(1)


def bar_sizes(page: str, chart_id: str) -> list[tuple[float, float]]:
    """Width and height of each bar's path in a chart, from the SVG path data."""
    sizes = []
    for group in re.findall(rf'<g id="{chart_id}-bar-\d+">\s*<path d="([^"]*)"', page):
        numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", group)]
        xs, ys = numbers[0::2], numbers[1::2]
        sizes.append((max(xs) - min(xs), max(ys) - min(ys)))
    return sizes


def test_each_chart_is_an_inline_svg_with_its_bars_drawn():
    page = page_of(entries())
    for chart_id in CHART_IDS:
        assert "<svg" in section(page, chart_id), chart_id
    outcomes = bar_sizes(page, "chart-outcomes")
    assert len(outcomes) == 4  # closed, no-answer, voicemail, busy
    assert all(w > 0 and h > 0 for w, h in outcomes)
    # A horizontal bar's length is its count: closed (2 calls) twice as long as voicemail (1).
    widths = sorted(w for w, _ in outcomes)
    assert widths[-1] == pytest.approx(2 * widths[0], rel=1e-3)
    over_time = bar_sizes(page, "chart-calls-over-time")
    assert sum(h > 0 for _, h in over_time) == 4  # 11, 12 (answered and not), 14 May
    by_hour = bar_sizes(page, "chart-answer-by-hour")
    # 10 h local: 2 of 3 answered; 12 h (Madrid's busy call) and 18 h: 0%, a bar of no height.
    assert [h > 0 for _, h in by_hour] == [True, False, False]


def test_the_page_is_self_contained():
    page = page_of(entries())
    assert not re.search(r"https?://", page)
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert not re.search(r"\ssrc=|@import", page)
    assert set(re.findall(r"url\((.)", page)) <= {"#"}  # only references inside the page
    ids = Counter(re.findall(r'\sid="([^"]+)"', page))
    assert not [i for i, n in ids.items() if n > 1]  # the three SVGs' ids do not clash
    refs = {a or b for a, b in re.findall(r'url\(#([^)]+)\)|href="#([^"]+)"', page)}
    assert refs and refs <= set(ids)


def test_the_page_parses_as_balanced_html():
    class Checker(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.stack: list[str] = []
            self.void = {"meta", "br", "img", "link", "path", "use", "rect", "stop"}

        def handle_starttag(self, tag, attrs):
            if tag not in self.void:
                self.stack.append(tag)

        def handle_startendtag(self, tag, attrs):
            pass

        def handle_endtag(self, tag):
            assert self.stack.pop() == tag

    checker = Checker()
    checker.feed(page_of(entries()))
    assert checker.stack == []


def test_data_text_is_escaped_and_personal_data_left_out():
    evil_outcome = "<img/src=x/onerror=alert(1)>"
    items = [
        *entries(),
        called(
            "+34912345670",
            "c-x-secret",
            "closed",
            "2025-05-12T09:00:00Z",
            crm_id=EVIL,
            summary=EVIL + " Ana García asked for a brochure",
            history=f"c-w {evil_outcome} 2025-05-12T08:00:00Z",
        ),
    ]
    page = page_of(items, title=EVIL)
    assert "<script" not in page and "<img" not in page
    assert "<title>&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;</title>" in page
    assert "&lt;img/src=x/onerror=alert(1)&gt;" in section(page, "chart-outcomes")
    assert "Ana García" not in page and "+34912345670" not in page and "c-x-secret" not in page


def test_a_dollar_in_an_outcome_is_text_not_math():
    items = [called("+34912345678", "c1", "$x^2", "2025-05-12T08:30:00Z")]
    assert "$x^2" in section(page_of(items), "chart-outcomes")


def test_key_numbers_are_shown():
    page = page_of(entries())
    for value, label in [("5", "Leads"), ("5", "Calls made"), ("2", "Answered"),
                         ("40.0%", "Answer rate"), ("1 min 30 s", "Avg talk time")]:  # fmt: skip
        assert f'<div class="kpi"><b>{value}</b><span>{label}</span></div>' in page


def test_an_empty_campaign_gets_notes_not_empty_charts():
    page = page_of([])
    assert "<svg" not in page
    for chart_id in CHART_IDS:
        assert 'class="empty"' in section(page, chart_id)
    assert "No calls yet." in section(page, "chart-outcomes")


def test_calls_without_outcomes_yet():
    items = [Entry("+34912345678", 2, "+34912345678", Status.CALLED, "c1", 1,
                   updated_at="2025-05-12T08:30:00Z")]  # fmt: skip
    page = page_of(items)
    assert "<svg" in section(page, "chart-outcomes")  # one bar: no outcome yet
    assert "<svg" in section(page, "chart-calls-over-time")
    assert "dialer sync" in section(page, "chart-answer-by-hour")
    assert "<svg" not in section(page, "chart-answer-by-hour")


def test_write_html_replaces_the_file(tmp_path):
    out = tmp_path / "report.html"
    out.write_text("old", encoding="utf-8")
    write_html(campaign_stats(entries()), out, title="T", generated=GENERATED)
    assert out.read_text(encoding="utf-8") == page_of(entries(), title="T")
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temp file left


def test_write_html_to_a_missing_folder_is_a_one_line_error(tmp_path):
    out = tmp_path / "nowhere" / "report.html"
    with pytest.raises(ConfigError, match=r"cannot write --html .*report\.html") as err:
        write_html(campaign_stats([]), out, title="T")
    assert "\n" not in str(err.value) and err.value.exit_code == 2
