"""End to end, after the call: ``dialer sync``, ``run --sync``, recycling and ``dialer report``.

The installed CLI runs as a subprocess against the real simulator on 127.0.0.1. Who was called,
and how often, comes from the simulator's own record (``sim.calls``); the outcomes it gives are
set per phone (``SimConfig.outcomes``) and its calls end in a fraction of a second.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import by_phone, mobiles, per_phone, run_cli, write_leads

CHECK = Path(__file__).resolve().parent.parent / "scripts" / "check_report.py"

RECYCLE = ("--retry-outcomes", "no-answer,busy", "--max-attempts", "3", "--retry-after", "4h")


@pytest.fixture
def quick(sim):
    """The simulator with calls that end almost at once."""
    sim.config.ring_seconds = 0.05
    sim.config.talk_seconds = 0.05
    return sim


def test_sync_fills_outcomes_and_leaves_calls_in_progress_for_the_next_sync(quick, tmp_path):
    ana, bea, cruz = mobiles(3)
    quick.config.outcomes = {ana: ["no-answer"], bea: ["closed"], cruz: ["busy"]}
    leads = write_leads(tmp_path / "l.csv", [ana, bea, cruz, "12345"])  # one invalid row
    out = tmp_path / "l.results.csv"
    assert run_cli("run", str(leads), "--playbook", "pb", url=quick.url).returncode == 0
    quick.config.ring_seconds = 3600.0  # every call still ringing
    proc = run_cli("sync", str(out), url=quick.url)
    assert proc.returncode == 0, proc.stderr
    assert "looked up 3 calls, 0 finished, 3 still in progress" in proc.stdout
    assert all(r["outcome"] == "" for r in by_phone(out).values())

    quick.config.ring_seconds = 0.05
    proc = run_cli("sync", str(out), url=quick.url)
    assert proc.returncode == 0, proc.stderr
    assert "Outcomes recorded: 1 busy, 1 closed, 1 no-answer" in proc.stdout
    rows = by_phone(out)
    assert {p: r["outcome"] for p, r in rows.items()} == {
        ana: "no-answer", bea: "closed", cruz: "busy"
    }  # fmt: skip
    assert rows[bea]["summary"].startswith("The lead talked with the agent for")
    assert int(rows[bea]["duration"]) >= 30 and rows[bea]["outcome_at"].endswith("Z")
    # each call's own id was asked for, with GET /call/{id}
    asked = [r.path for r in quick.requests if r.method == "GET"]
    ids = {c.id for c in quick.calls}
    assert sorted(asked) == sorted([f"/call/{i}" for i in ids] * 2)

    status = run_cli("status", str(out))
    assert "Outcomes of the last calls: 1 busy, 1 closed, 1 no-answer\n" in status.stdout
    assert status.stdout.startswith("l.results.csv: 4 leads: 3 called, 1 invalid\n")

    again = run_cli("sync", str(out), url=quick.url)  # nothing left to look up
    assert "looked up 0 calls" in again.stdout
    assert len([r for r in quick.requests if r.method == "GET"]) == 6
    assert per_phone(quick) == {ana: 1, bea: 1, cruz: 1}  # a sync never dials


def test_sandbox_calls_are_kept_so_a_later_sync_finds_them(tmp_path):
    leads = write_leads(tmp_path / "l.csv", mobiles(4))
    out = tmp_path / "l.sandbox.results.csv"
    proc = run_cli("run", str(leads), "--playbook", "pb", "--sandbox", token=None)
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("sync", str(out), "--sandbox", token=None)
    assert proc.returncode == 0, proc.stderr
    assert "looked up 4 calls" in proc.stdout and "0 failed" not in proc.stdout
    assert ", failed" not in proc.stdout.splitlines()[0]  # every call was known to the sandbox


def test_sync_errors_are_one_line(sim, tmp_path):
    proc = run_cli("sync", str(tmp_path / "nope.csv"), url=sim.url)
    assert proc.returncode == 2
    assert proc.stderr == (
        f"error: no results file {tmp_path / 'nope.csv'}: run 'dialer run' first, "
        "or check the path\n"
    )
    leads = write_leads(tmp_path / "l.csv", mobiles(2))
    assert run_cli("run", str(leads), "--playbook", "pb", url=sim.url).returncode == 0
    proc = run_cli("sync", str(tmp_path / "l.results.csv"), url=sim.url, token="wrong-token-123")
    assert proc.returncode == 3
    assert proc.stderr.startswith("error: the API refused the token (HTTP 401")
    assert len(proc.stderr.splitlines()) == 1
    proc = run_cli("sync", str(tmp_path / "l.results.csv"), "--concurrency", "0", url=sim.url)
    assert proc.returncode == 2
    assert proc.stderr == "error: --concurrency must be a whole number of at least 1, not 0\n"


def test_report_after_a_sandbox_campaign_and_a_sync(tmp_path):
    leads = write_leads(tmp_path / "l.csv", mobiles(12))
    out = tmp_path / "l.sandbox.results.csv"
    assert run_cli("run", str(leads), "--playbook", "pb", "--sandbox", token=None).returncode == 0
    before = run_cli("report", str(out), token=None)
    assert before.returncode == 0, before.stderr
    assert "Calls:          12 (12 without an outcome yet)" in before.stdout
    deadline = time.monotonic() + 30
    while True:  # the sandbox's calls end a few seconds after they start
        proc = run_cli("sync", str(out), "--sandbox", token=None)
        assert proc.returncode == 0, proc.stderr
        if "0 still in progress" in proc.stdout or time.monotonic() > deadline:
            break
        time.sleep(1)
    html = tmp_path / "report.html"
    proc = run_cli("report", str(out), "--html", str(html), "--timezone", "Europe/Madrid",
                   token=None)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "Leads:          12 (12 called)"
    assert lines[1] == "Calls:          12"
    outcomes = dict(
        (name, int(n)) for n, name in re.findall(r"(\d+) ([a-z-]+)", lines[2].split(":", 1)[1])
    )
    assert sum(outcomes.values()) == 12
    answered = outcomes.get("closed", 0) + outcomes.get("recall-scheduled", 0)  # both answered
    assert lines[3] == f"Answered:       {answered} of 12 calls with an outcome " + (
        f"({answered / 12:.1%})"
    )
    assert lines[-1] == f"HTML report: {html}"
    page = html.read_text(encoding="utf-8")
    for chart in ("chart-outcomes", "chart-calls-over-time", "chart-answer-by-hour"):
        assert f'id="{chart}"' in page
    assert "http://" not in page and "https://" not in page  # nothing fetched when opened
    if Path("/usr/bin/chromium").exists():  # the page the CLI wrote, drawn by a real browser
        check = subprocess.run([sys.executable, str(CHECK), "--page", str(html)],
                               capture_output=True, text=True, timeout=300)  # fmt: skip
        assert check.returncode == 0, check.stdout + check.stderr


def test_report_errors_are_one_line(tmp_path):
    proc = run_cli("report", str(tmp_path / "nope.csv"), token=None)
    assert proc.returncode == 2
    assert proc.stderr == (
        f"error: no results file {tmp_path / 'nope.csv'}: run 'dialer run' first, "
        "or check the path\n"
    )
    leads = write_leads(tmp_path / "l.csv", mobiles(1))
    assert run_cli("run", str(leads), "--playbook", "pb", "--sandbox", token=None).returncode == 0
    proc = run_cli("report", str(tmp_path / "l.sandbox.results.csv"), "--html",
                   str(tmp_path / "no" / "such" / "dir" / "r.html"), token=None)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: cannot write --html {tmp_path / 'no'}")
    assert proc.stderr.count("\n") == 1
