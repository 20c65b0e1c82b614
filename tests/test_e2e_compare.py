"""End to end, ``dialer report RESULTS --by COLUMN`` against the real simulator on 127.0.0.1.

Two batches of one campaign go out with different ``--version-id`` values (the first half of the
leads file, column ``arm`` = A, then the second half, ``arm`` = B); the simulator gives each
version its own final-status mix (``SimConfig.version_outcomes``); ``dialer sync`` records the
outcomes; the report grouped by the leads file's ``arm`` column (and by the results' own
``version_id`` column the results carry) must find a real difference and say "cannot
tell yet" when there is none. Who was dialed, and how often, comes from ``sim.calls``.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.conftest import mobiles, per_phone, read_rows, run_cli, write_leads

HALF = 30
FAST = ("--max-per-second", "100", "--max-per-minute", "6000")


@pytest.fixture
def quick(sim):
    """The simulator with calls that end almost at once and no rate limit in the way."""
    sim.config.ring_seconds = 0.05
    sim.config.talk_seconds = 0.05
    sim.config.per_second = sim.config.per_minute = None
    return sim


def _experiment(sim, tmp_path, mixes):
    """Batch A then batch B of one campaign, then ``dialer sync``: the results file."""
    sim.config.version_outcomes = mixes
    phones = mobiles(2 * HALF)
    leads = write_leads(tmp_path / "leads.csv", phones, arm=["A"] * HALF + ["B"] * HALF)
    out = tmp_path / "leads.results.csv"
    for version, batch in (("A", ("--max-calls", str(HALF))), ("B", ())):
        proc = run_cli("run", str(leads), "--playbook", "pb", "--version-id", version, *batch,
                       *FAST, url=sim.url)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    time.sleep(0.3)  # every call has ended
    proc = run_cli("sync", str(out), *FAST, url=sim.url)
    assert proc.returncode == 0, proc.stderr
    # nobody dialed twice, and each half went out with its own version
    assert set(per_phone(sim).values()) == {1} and len(sim.calls) == 2 * HALF
    versions = {c.phone: c.body.get("version_id") for c in sim.calls}
    assert [versions[p] for p in phones] == ["A"] * HALF + ["B"] * HALF
    return out


def _closed(sim, version):
    return sum(c.final == "closed" for c in sim.calls if c.body.get("version_id") == version)


def test_report_by_column_finds_the_version_that_answers_more(quick, tmp_path):
    out = _experiment(quick, tmp_path, {"A": (("closed", 20), ("no-answer", 80)),
                                        "B": (("closed", 80), ("no-answer", 20))})  # fmt: skip
    a, b = _closed(quick, "A"), _closed(quick, "B")
    assert a < b  # the simulator's own record: B's calls were closed more often
    proc = run_cli("report", str(out), "--by", "arm")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "By arm (from leads.csv): 2 groups, 60 leads with a call" in text
    assert re.search(rf"\n  A\s+{HALF}\s+{a / HALF:.1%} \(", text)  # answered = closed here
    assert f"B leads: {b / HALF:.1%} success vs {a / HALF:.1%} for A (p < 0.001): " \
           "the data can tell." in text  # fmt: skip
    assert {row["version_id"] for row in read_rows(out)} == {"A", "B"}  # each lead's version
    by_version = run_cli("report", str(out), "--by", "version_id")
    assert by_version.returncode == 0, by_version.stderr
    assert "B leads:" in by_version.stdout and "the data can tell." in by_version.stdout
    html = tmp_path / "report.html"
    proc = run_cli("report", str(out), "--by", "arm", "--html", str(html))
    assert proc.returncode == 0, proc.stderr
    page = html.read_text(encoding="utf-8")
    assert 'id="chart-compare"' in page and "B leads:" in page


def test_report_by_column_says_it_cannot_tell_yet_when_the_versions_are_alike(quick, tmp_path):
    same = (("closed", 50), ("no-answer", 50))
    out = _experiment(quick, tmp_path, {"A": same, "B": same})
    proc = run_cli("report", str(out), "--by", "arm")
    assert proc.returncode == 0, proc.stderr
    [sentence] = [line for line in proc.stdout.splitlines() if " leads: " in line
                  or line.startswith("No group leads")]  # fmt: skip
    assert "the data cannot tell" in sentence, sentence
    assert re.search(r"about [\d,]+ more calls per group would tell a difference this size\.$",
                     sentence) or sentence.startswith("No group leads"), sentence  # fmt: skip


def test_report_by_a_column_that_is_nowhere_is_one_line(quick, tmp_path):
    phones = mobiles(3)
    leads = write_leads(tmp_path / "leads.csv", phones)
    out = tmp_path / "leads.results.csv"
    assert run_cli("run", str(leads), "--playbook", "pb", url=quick.url).returncode == 0
    proc = run_cli("report", str(out), "--by", "plan")
    assert proc.returncode == 2
    assert proc.stdout == ""
    columns = ", ".join(read_rows(out)[0])
    assert proc.stderr == (
        f"error: --by plan: not a column of leads.results.csv ({columns}) "
        "nor of leads.csv (first_name, phone)\n"
    )


def test_a_versions_split_run_and_synced_is_judged_by_the_report(quick, tmp_path):
    """The whole experiment as a user runs it: one ``--versions A=50,B=50`` run, ``--sync`` on
    the next run, then ``report --by version_id``: the version the simulator made answer more
    is found, and each group's size is what the simulator saw of that version."""
    quick.config.version_outcomes = {"A": (("closed", 20), ("no-answer", 80)),
                                     "B": (("closed", 80), ("no-answer", 20))}  # fmt: skip
    phones = mobiles(100)
    leads = write_leads(tmp_path / "leads.csv", phones)
    out = tmp_path / "leads.results.csv"
    proc = run_cli("run", str(leads), "--playbook", "pb", "--versions", "A=50,B=50", *FAST,
                   url=quick.url)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    time.sleep(0.3)  # every call has ended
    proc = run_cli("run", str(leads), "--playbook", "pb", "--versions", "A=50,B=50", "--sync",
                   *FAST, url=quick.url)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert set(per_phone(quick).values()) == {1} and len(quick.calls) == 100  # nobody twice
    sent = {c.phone: c.body["version_id"] for c in quick.calls}
    assert {row["phone"]: row["version_id"] for row in read_rows(out)} == sent
    sizes = {v: sum(1 for s in sent.values() if s == v) for v in ("A", "B")}
    assert 30 <= sizes["A"] <= 70 and sizes["A"] + sizes["B"] == 100
    proc = run_cli("report", str(out), "--by", "version_id")
    assert proc.returncode == 0, proc.stderr
    for version in ("A", "B"):
        assert re.search(rf"\n  {version}\s+{sizes[version]}\s", proc.stdout), proc.stdout
    assert re.search(r"\nB leads: [\d.]+% success vs [\d.]+% for A \(p [<=] [\d.]+\): "
                     r"the data can tell\.\n", proc.stdout), proc.stdout  # fmt: skip
