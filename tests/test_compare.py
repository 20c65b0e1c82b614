"""``dialer report --by``: the statistics against published values, the plain sentence, and
grouping a hand-written results file by a results column and by a leads-file column."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest

from dialer.errors import ConfigError
from dialer.model import Status
from dialer.reports.compare import (
    BLANK,
    calls_per_group,
    compare,
    significance,
    wilson,
)
from dialer.reports.grouping import load_comparison
from dialer.reports.report import comparison_lines, verdict
from dialer.store.results import RESULT_COLUMNS, Entry

# --- the statistics, against published values ------------------------------------------------


@pytest.mark.parametrize(
    ("count", "total", "low", "high"),
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611),
     (1, 29, 0.0061, 0.1718)],
)  # fmt: skip
def test_wilson_interval_matches_newcombe_1998(count, total, low, high):
    """Newcombe RG (1998), "Two-sided confidence intervals for the single proportion:
    comparison of seven methods", Statistics in Medicine 17:857-872, Table I, method 3 (score
    interval without continuity correction), 95%."""
    found = wilson(count, total)
    assert found is not None
    assert found[0] == pytest.approx(low, abs=5e-5)
    assert found[1] == pytest.approx(high, abs=5e-5)
    assert wilson(0, 0) is None


def test_two_proportion_z_test_matches_the_pooled_formula():
    """140 of 200 against 255 of 340: pooled p = 395/540, z = -1.266 (the standard pooled
    two-proportion z statistic, computed here by hand), two-sided p = erfc(|z|/sqrt 2) = 0.2055."""
    pooled = 395 / 540
    z = (140 / 200 - 255 / 340) / math.sqrt(pooled * (1 - pooled) * (1 / 200 + 1 / 340))
    assert z == pytest.approx(-1.2660, abs=1e-4)
    test, p = significance([140, 255], [200, 340])
    assert test == "two-proportion z-test"
    assert p == pytest.approx(math.erfc(abs(z) / math.sqrt(2)), rel=1e-9)
    assert p == pytest.approx(0.2055, abs=1e-4)


def test_fisher_exact_for_small_counts_matches_the_lady_tasting_tea():
    """Fisher (1935), The Design of Experiments, ch. 2: 3 of 4 cups right against 1 of 4, the
    two-sided p-value is 34/70 = 0.4857. Expected counts of 2 (under 5): Fisher's test."""
    test, p = significance([3, 1], [4, 4])
    assert test == "Fisher's exact test"
    assert p == pytest.approx(34 / 70, abs=1e-9)


def test_chi_square_for_four_groups_matches_r_prop_test():
    """R's ``?prop.test`` example (smokers among patients, from Fleiss 1981): X-squared = 12.6,
    df = 3, p-value = 0.005585."""
    test, p = significance([83, 90, 129, 70], [86, 93, 136, 82])
    assert test == "chi-square test"
    assert p == pytest.approx(0.005585, abs=5e-7)


def test_all_alike_has_nothing_to_test():
    assert significance([0, 0], [10, 12]) == ("", 1.0)
    assert significance([5, 7], [5, 7]) == ("", 1.0)


@pytest.mark.parametrize(("h", "cohen"), [(0.2, 392), (0.5, 63), (0.8, 25)])
def test_calls_per_group_matches_cohen_1988_table(h, cohen):
    """Cohen J (1988), Statistical Power Analysis for the Behavioral Sciences, 2nd ed., Table
    6.4.1 (n per sample to detect h at alpha = .05 two-tailed, power .80): h = .20 -> 392,
    .50 -> 63, .80 -> 25. The rates 0.5 and p2 = sin^2(asin(sqrt .5) + h/2) are h apart."""
    p2 = math.sin(math.asin(math.sqrt(0.5)) + h / 2) ** 2
    n = calls_per_group(0.5, p2)
    assert n is not None and abs(n - cohen) <= 1  # Cohen rounds to the nearest; we round up
    assert n == math.ceil(2 * ((1.959964 + 0.841621) / h) ** 2 - 1e-6)
    assert calls_per_group(0.4, 0.4) is None


# --- the sentence ------------------------------------------------------------------------------


def _entry(row: int, outcome: str, *, duration: str = "", history: str = ""):
    from dialer.model import Status
    from dialer.store.results import Entry

    phone = f"+3461234{row:04d}"
    return Entry(phone, row, phone, Status.CALLED, call_id=f"c{row}", attempts=1,
                 outcome=outcome, duration=duration, history=history)  # fmt: skip


def _groups(spec: dict[str, tuple[int, int]]):
    """``{group: (closed, not closed)}`` as labelled entries."""
    out, row = [], 2
    for name, (won, lost) in spec.items():
        for outcome in ["closed"] * won + ["no-answer"] * lost:
            out.append((name, _entry(row, outcome, duration="60")))
            row += 1
    return out


def test_sentence_when_the_data_can_tell():
    comparison = compare("version_id", _groups({"A": (6, 24), "B": (24, 6)}))
    assert comparison.success.can_tell
    assert verdict(comparison.success, comparison.groups) == (
        "B leads: 80.0% success vs 20.0% for A (p < 0.001): the data can tell."
    )


def test_sentence_when_the_data_cannot_tell_yet_gives_the_calls_needed():
    comparison = compare("version_id", _groups({"A": (10, 10), "B": (12, 8)}))
    needed = calls_per_group(0.6, 0.5)
    assert needed == 388  # h = 0.2014: 2 * ((1.96 + 0.8416) / h) ** 2 = 387.2
    assert verdict(comparison.success, comparison.groups) == (
        f"B leads: 60.0% success vs 50.0% for A, but the data cannot tell yet (p = 0.525): "
        f"about {needed - 20} more calls per group would tell a difference this size."
    )


def test_sentence_with_a_tie_with_one_group_and_with_nothing_synced():
    tie = compare("v", _groups({"A": (5, 5), "B": (5, 5)}))
    assert verdict(tie.success, tie.groups) == (
        "No group leads: the best success rates are equal (50.0%), so the data cannot tell the "
        "groups apart."
    )
    one = compare("v", _groups({"A": (5, 5)}))
    assert verdict(one.success, one.groups) == (
        "Only A has calls with an outcome: nothing to compare it with yet."
    )
    unsynced = compare("v", [("A", _entry(2, "")), ("B", _entry(3, ""))])
    assert [g.awaiting for g in unsynced.groups] == [1, 1]
    assert verdict(unsynced.success, unsynced.groups) == (
        "No call has an outcome yet: run 'dialer sync', then compare."
    )


def test_a_lead_counts_once_answered_and_success_defined():
    """A recycled lead (no-answer, then closed) counts once, answered and a success; a
    recall-scheduled call is answered, not a success; a lead never called is left out."""
    from dialer.model import Status
    from dialer.store.results import Entry

    recycled = _entry(2, "closed", duration="90", history="c0 no-answer 2026-01-01T10:00:00Z")
    recall = _entry(3, "recall-scheduled", duration="20")
    busy = _entry(4, "busy")
    never = Entry("+34612349999", 5, "+34612349999", Status.PENDING)
    comparison = compare("g", [("A", recycled), ("A", recall), ("A", busy), ("A", never),
                               ("", _entry(6, "closed"))])  # fmt: skip
    a = comparison.group("A")
    assert (a.leads, a.answered.count, a.success.count, a.decided) == (3, 2, 1, 3)
    assert a.avg_duration == pytest.approx(55.0)
    assert [g.name for g in comparison.groups] == ["A", BLANK]


# --- grouping a results file --------------------------------------------------------------------


def _results(path: Path, rows: list[dict[str, str]]) -> Path:
    columns = list(RESULT_COLUMNS)  # with version_id and language
    with open(path, "w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.DictWriter(handle, columns, restval="", lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _row(row: int, version: str, outcome: str, language: str = "ES") -> dict[str, str]:
    return {"row": str(row), "phone": f"+3461234{row:04d}", "status": "called",
            "call_id": f"id-{row}", "attempts": "1", "outcome": outcome, "duration": "40",
            "version_id": version, "language": language}  # fmt: skip


def test_report_by_a_results_column_from_a_hand_written_file(tmp_path):
    rows = [_row(i + 2, "A", "closed" if i < 4 else "no-answer") for i in range(20)]
    rows += [_row(i + 22, "B", "closed" if i < 16 else "busy", "EN") for i in range(20)]
    rows.append({"row": "42", "phone": "12", "status": "invalid", "error": "not a number"})
    out = _results(tmp_path / "leads.results.csv", rows)
    comparison = load_comparison(out, "version_id")
    assert [(g.name, g.leads, g.success.count) for g in comparison.groups] == [
        ("A", 20, 4), ("B", 20, 16)
    ]  # fmt: skip
    lines = comparison_lines(comparison)
    assert lines[0] == "By version_id (from leads.results.csv): 2 groups, 40 leads with a call"
    assert lines[-1].startswith("B leads: 80.0% success vs 20.0% for A (p < 0.001)")
    assert lines[-2].startswith("Difference in success rate: two-proportion z-test, p < 0.001; in ")
    by_language = load_comparison(out, "LANGUAGE")  # case does not matter
    assert [g.name for g in by_language.groups] == ["EN", "ES"]
    by_status = load_comparison(out, "status")  # an entry field
    assert [g.name for g in by_status.groups] == ["called"]


def test_report_by_a_leads_file_column_joins_on_the_row(tmp_path):
    leads = tmp_path / "leads.csv"
    with open(leads, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["phone", "program_of_interest"])
        for i in range(20):
            writer.writerow([f"61234{i:04d}", "MBA" if i % 2 else "Law"])
    rows = [_row(i + 2, "", "closed" if i % 2 else "no-answer") for i in range(20)]
    out = _results(tmp_path / "leads.results.csv", rows)
    folder = tmp_path / "leads.results.csv.dialer"
    folder.mkdir()
    record = {"command": "run", "leads_file": "leads.csv", "settings": {}}
    (folder / "runs.jsonl").write_text(json.dumps(record) + "\n", encoding="utf-8")
    comparison = load_comparison(out, "program_of_interest")
    assert comparison.source == "leads.csv"
    assert [(g.name, g.leads, g.success.count) for g in comparison.groups] == [
        ("Law", 10, 0), ("MBA", 10, 10)
    ]  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        load_comparison(out, "plan")
    assert str(caught.value) == (
        "--by plan: not a column of leads.results.csv (" + ", ".join(RESULT_COLUMNS)
        + ") nor of leads.csv (phone, program_of_interest)"
    )  # fmt: skip


def test_many_groups_are_capped_and_hostile_names_are_shown_escaped(tmp_path):
    """A column with a group per lead lists (and charts) the 20 biggest groups only; a group
    name from a leads file reaches neither the terminal nor the page as markup or control
    characters."""
    from dialer.reports.htmlreport import render_html
    from dialer.reports.stats import campaign_stats

    labelled = _groups({f"g{i:02d}": (1, 1 if i < 5 else 0) for i in range(30)})
    labelled += _groups({"<script>alert(1)</script>\x1b[2J": (3, 1)})
    comparison = compare("cell", labelled)
    lines = comparison_lines(comparison)
    assert len([line for line in lines if re.match(r"  g\d\d ", line)]) == 19
    assert "  ... and 11 more groups (11 leads)" in lines
    assert not any("\x1b" in line for line in lines)
    assert any("<script>alert(1)</script>\\x1b[2J" in line for line in lines)
    page = render_html(campaign_stats([e for _, e in labelled]), title="t", comparison=comparison)
    assert (
        "<script>" not in page
        and "\x1b" not in page
        and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    )
    assert page.count('id="chart-compare"') == 1
    assert "11 more groups, with fewer leads, are not shown." in page


def test_the_split_over_time_is_shown_when_it_moved_and_not_when_it_held():
    def lead(i: int, version: str) -> tuple[str, Entry]:
        entry = Entry(f"+3461234{i:04d}", i + 2, f"+3461234{i:04d}", Status.CALLED, f"c{i}", 1,
                      outcome="closed", sent_at=1000.0 + i)  # fmt: skip
        return version, entry

    # the first half alternates A and B; the second half goes 9 in 10 to B (adaptive-like)
    moved = [lead(i, "AB"[i % 2] if i < 40 else ("A" if i % 10 == 0 else "B")) for i in range(80)]
    parts = compare("version_id", moved).over_time
    assert [(p.first, p.last, p.counts) for p in parts] == [
        (1, 20, (("A", 10), ("B", 10))), (21, 40, (("A", 10), ("B", 10))),
        (41, 60, (("A", 2), ("B", 18))), (61, 80, (("A", 2), ("B", 18))),
    ]  # fmt: skip
    assert parts[2].share("B") == 0.9
    lines = comparison_lines(compare("version_id", reversed(moved)))  # order: by time sent
    [head] = [line for line in lines if line.startswith("Split in order of calling")]
    assert re.fullmatch(r"Split in order of calling \(version_id share of the leads called; it "
                        r"moved: chi-square test, p [<=] 0\.0\d+\):", head), head  # fmt: skip
    assert lines[lines.index(head) + 3] == "  leads 41-60: A 10%, B 90%"
    held = [lead(i, "AB"[i % 2]) for i in range(80)]  # a fixed 50/50 split
    assert compare("version_id", held).over_time == ()
    assert not any(line.startswith("Split") for line in comparison_lines(compare("v", held)))
