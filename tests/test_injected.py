"""Runs that need another clock or quicker retries: injected in-process, never by environment.

No environment variable changes what the dialer does (README, "Testing"): a test that needs a
run to start at another time, or its retry waits shortened, calls the library as ``dialer run``
would (``run_campaign``/``plan`` with ``clock=`` and ``retry=``) against the real simulator on
127.0.0.1. Who was dialed comes from the simulator's own record (``sim.calls``); what the user
is told, from the lines ``dialer.reports.report`` makes of the returned summary. The installed
CLI is run where the point is that it ignores the old test switches.
"""

from __future__ import annotations

import collections
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dialer.engine.dispatcher import RetryPolicy
from dialer.errors import Unreachable
from tests.conftest import (
    by_phone,
    free_port,
    later,
    mobiles,
    per_phone,
    read_rows,
    run_cli,
    run_here,
    write_leads,
)

PACKAGE = Path(__file__).resolve().parent.parent / "dialer"
RECYCLE = {"retry_outcomes": "no-answer,busy", "max_attempts": 3, "retry_after": "4h"}
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


@pytest.fixture
def quick(sim):
    """The simulator with calls that end almost at once."""
    sim.config.ring_seconds = 0.05
    sim.config.talk_seconds = 0.05
    return sim


def calls_over(sim) -> None:
    """Wait until the simulator's calls have ended (a subprocess's start took that long)."""
    time.sleep(sim.config.ring_seconds + sim.config.talk_seconds + 0.2)


# --- no switch in the product ----------------------------------------------------------------


def test_the_package_reads_no_test_or_benchmark_switch():
    found = [
        f"{path.name}:{number}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if re.search(r"DIALER_(TEST|BENCH)_", line)
    ]
    assert found == []


def test_dialer_test_now_does_not_move_calling_hours(sim, tmp_path, monkeypatch):
    """The old switch set to an open hour on an open day: the run still uses the real clock,
    so a lead whose day is closed today stays deferred and nobody is called."""
    madrid = ZoneInfo("Europe/Madrid")
    now = datetime.now(madrid)
    closed = {now.weekday(), (now + timedelta(minutes=5)).weekday()}  # today (and past midnight)
    open_day = next(d for d in range(7) if d not in closed)
    when = (now + timedelta(days=(open_day - now.weekday()) % 7)).replace(hour=10, minute=0)
    monkeypatch.setenv("DIALER_TEST_NOW", when.isoformat(timespec="seconds"))
    monkeypatch.setenv("DIALER_TEST_BACKOFF", "0")
    monkeypatch.setenv("DIALER_BENCH_NO_FSYNC", "1")
    leads = write_leads(tmp_path / "l.csv", mobiles(2))
    days = ",".join(name for i, name in enumerate(DAYS) if i not in closed)
    proc = run_cli("run", str(leads), "--playbook", "pb", "--calling-hours", "09:00-20:00",
                   "--calling-days", days, url=sim.url)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sim.calls == []
    rows = read_rows(tmp_path / "l.results.csv")
    assert [r["status"] for r in rows] == ["deferred", "deferred"]
    assert "Calling hours closed for every lead" in proc.stdout


# --- a run that cannot reach the API: retry waits shortened ----------------------------------


def test_an_unreachable_api_stops_the_run_and_leaves_every_lead_pending(tmp_path):
    port = free_port()  # nobody listens there: connection refused
    leads = write_leads(tmp_path / "l.csv", mobiles(30))
    with pytest.raises(Unreachable) as raised:
        run_here(leads, url=f"http://127.0.0.1:{port}", concurrency=2,
                 retry=RetryPolicy(backoff=0.01, backoff_max=0.01))  # fmt: skip
    message = str(raised.value)
    assert raised.value.exit_code == 7
    assert message.startswith("the API could not be reached (request not sent to ")
    assert message.endswith("the run stopped; 30 leads are pending for the next run")
    rows = read_rows(tmp_path / "l.results.csv")
    assert len(rows) == 30 and all(r["status"] == "pending" for r in rows)
    tried = [r for r in rows if r["attempts"] != "0"]
    assert 3 <= len(tried) <= 4  # gave up after three leads in a row, not thirty
    assert sum(r["attempts"] == "6" for r in tried) >= 3  # every retry spent, then gave up
    assert sum(r["error"] == "not dialed yet: the run ended first" for r in rows) >= 26


# --- --until and calling hours, at a set time -------------------------------------------------


def test_until_in_the_past_dials_nobody(sim, tmp_path):
    leads = write_leads(tmp_path / "l.csv", mobiles(3))
    summary, lines = run_here(leads, url=sim.url, now="2026-11-25T19:30:00+01:00",
                              until="19:00", timezone="Europe/Madrid")  # fmt: skip
    assert sim.calls == [] and summary.ended_by == "until"
    text = "\n".join(lines)
    assert "Stopped at --until" in text
    assert "3 leads left for the next run (--until)." in text


def test_until_stops_starting_calls_mid_run(sim, tmp_path):
    leads = write_leads(tmp_path / "l.csv", mobiles(40))
    _, lines = run_here(leads, url=sim.url, now="2026-11-25T18:59:58+01:00",  # 2 s before it
                        until="19:00", timezone="Europe/Madrid", max_per_second=5)  # fmt: skip
    assert 5 <= len(sim.calls) <= 15  # about 2 s at 5 per second
    assert "Stopped at --until" in "\n".join(lines)


def test_calling_hours_follow_each_leads_own_time_zone(sim, tmp_path):
    madrid, los_angeles = "+34911234567", "+14155552671"  # a Madrid landline, a San Francisco line
    leads = write_leads(tmp_path / "l.csv", [madrid, los_angeles])
    hours = {"calling_hours": "09:00-20:00", "calling_days": "mon-fri"}
    # Wednesday 10:00 in Madrid is 01:00 in San Francisco
    _, lines = run_here(leads, url=sim.url, now="2026-11-25T10:00:00+01:00", **hours)
    assert [c.phone for c in sim.calls] == [madrid]
    rows = {r["phone"]: r for r in read_rows(tmp_path / "l.results.csv")}
    assert rows[los_angeles]["status"] == "deferred"
    assert rows[los_angeles]["error"] == "outside calling hours; next opening 2026-11-25T17:00Z"
    assert "1 outside calling hours" in "\n".join(lines)
    # 18:30 in Madrid is 09:30 in San Francisco: the deferred lead comes back
    run_here(leads, url=sim.url, now="2026-11-25T18:30:00+01:00", **hours)
    assert per_phone(sim) == collections.Counter([madrid, los_angeles])
    # Saturday: closed for everyone; the run says so and dials nobody
    write_leads(leads, [madrid, los_angeles, "+34911234568"])
    _, lines = run_here(leads, url=sim.url, now="2026-11-28T11:00:00+01:00", **hours)
    assert "Calling hours closed for every lead" in "\n".join(lines)
    assert len(sim.calls) == 2
    row = {r["phone"]: r for r in read_rows(tmp_path / "l.results.csv")}["+34911234568"]
    assert row["error"] == "outside calling hours; next opening 2026-11-30T08:00Z"  # Monday 9:00


# --- recycling: cool-downs counted on the injected clock --------------------------------------


def test_no_answer_is_redialed_after_its_cool_down_at_most_max_attempts(quick, tmp_path):
    ana, bea, cruz = mobiles(3)
    quick.config.outcomes = {ana: ["no-answer"] * 5, bea: ["closed"] * 5, cruz: ["voicemail"]}
    leads = write_leads(tmp_path / "l.csv", [ana, bea, cruz])
    out = tmp_path / "l.results.csv"

    def run(hours: float) -> str:
        calls_over(quick)
        _, lines = run_here(leads, url=quick.url, now=later(hours), sync=True, **RECYCLE)
        return "\n".join(lines)

    run(0)
    assert per_phone(quick) == {ana: 1, bea: 1, cruz: 1}
    run(1)  # synced now, but the 4 h cool-down is not over: nobody is dialed
    assert per_phone(quick) == {ana: 1, bea: 1, cruz: 1}
    assert by_phone(out)[ana]["outcome"] == "no-answer"
    text = run(5)
    assert "Called again (retryable outcome, cool-down over): 1 lead." in text
    assert per_phone(quick) == {ana: 2, bea: 1, cruz: 1}
    # The second call ended (in real time) just now: its cool-down runs from its end.
    run(3.9)
    assert per_phone(quick) == {ana: 2, bea: 1, cruz: 1}
    run(4.1)
    assert per_phone(quick) == {ana: 3, bea: 1, cruz: 1}
    run(30)  # three calls made: no fourth, however long we wait
    run(60)
    assert per_phone(quick) == {ana: 3, bea: 1, cruz: 1}  # bea answered, cruz: not retryable

    row = by_phone(out)[ana]
    ids = [c.id for c in quick.calls if c.phone == ana]
    assert row["call_id"] == ids[2] and row["calls"] == "3" and row["outcome"] == "no-answer"
    earlier = [item.split()[:2] for item in row["history"].split(";")]
    assert earlier == [[ids[0], "no-answer"], [ids[1], "no-answer"]]  # every attempt kept
    assert by_phone(out)[bea]["calls"] == "1" and by_phone(out)[bea]["history"] == ""


def test_without_a_sync_nothing_is_recycled(quick, tmp_path):
    ana = mobiles(1)[0]
    quick.config.outcomes = {ana: ["no-answer"] * 3}
    leads = write_leads(tmp_path / "l.csv", [ana])
    for hours in (0, 5, 10):
        run_here(leads, url=quick.url, now=later(hours), **RECYCLE)
    assert per_phone(quick) == {ana: 1}  # its outcome was never learned: no second call


def test_the_dry_run_counts_leads_due_again(quick, tmp_path):
    ana, bea = mobiles(2)
    quick.config.outcomes = {ana: ["busy"], bea: ["closed"]}
    leads = write_leads(tmp_path / "l.csv", [ana, bea])
    assert run_cli("run", str(leads), "--playbook", "pb", url=quick.url).returncode == 0
    assert run_cli("sync", str(tmp_path / "l.results.csv"), url=quick.url).returncode == 0
    _, lines = run_here(leads, now=later(5), dry_run=True, **RECYCLE)
    assert "To dial now:   1 (1 already done in" in "\n".join(lines)
    _, lines = run_here(leads, now=later(5), dry_run=True)  # no recycling asked
    assert "To dial now:   0 (2 already done in" in "\n".join(lines)
    assert per_phone(quick) == {ana: 1, bea: 1}  # a dry run dials nobody


def test_a_lead_due_again_waits_for_its_calling_hours(quick, tmp_path):
    ana = mobiles(1)[0]  # a Spanish mobile: Europe/Madrid
    quick.config.outcomes = {ana: ["busy", "closed"]}
    leads = write_leads(tmp_path / "l.csv", [ana])
    out = tmp_path / "l.results.csv"
    assert run_cli("run", str(leads), "--playbook", "pb", url=quick.url).returncode == 0
    assert run_cli("sync", str(out), url=quick.url).returncode == 0
    when = datetime.now(UTC) + timedelta(hours=5)
    today = when.astimezone(ZoneInfo("Europe/Madrid")).weekday()
    other_days = ",".join(name for i, name in enumerate(DAYS) if i != today)
    run_here(leads, url=quick.url, now=when.isoformat(timespec="seconds"),
             calling_days=other_days, **RECYCLE)  # fmt: skip
    assert per_phone(quick) == {ana: 1}  # due again, but its day is closed
    [row] = read_rows(out)
    assert row["status"] == "deferred" and "next opening" in row["error"]
    assert row["history"].split()[1] == "busy"  # the earlier call is kept while it waits
    proc = run_cli("run", str(leads), "--playbook", "pb", "--retry-outcomes", "no-answer,busy",
                   "--max-attempts", "3", "--retry-after", "4h", url=quick.url)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert per_phone(quick) == {ana: 2}  # no calling days set: dialed at once
    [row] = read_rows(out)
    assert row["status"] == "called" and row["calls"] == "2"
