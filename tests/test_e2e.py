"""End to end: the installed ``dialer`` CLI as a subprocess against the real simulator.

Every assertion about who was dialed comes from the simulator's own record of created calls
(``sim.calls``), never from the dialer's word for it.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from dialer.store.ledger import Ledger
from tests.conftest import (
    TOKEN,
    cli_env,
    dialer_exe,
    free_port,
    mobiles,
    read_rows,
    run_cli,
    wait_for_simulator,
    write_leads,
)

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data" / "leads.csv"


def created_per_phone(sim) -> collections.Counter[str]:
    return collections.Counter(call.phone for call in sim.calls)


def assert_no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stdout + proc.stderr


def test_sample_campaign_calls_each_valid_lead_once_with_params_and_settings(sim, tmp_path):
    leads = tmp_path / "leads.csv"
    leads.write_bytes(SAMPLE.read_bytes())
    proc = run_cli("run", str(leads), "--playbook", "pb_demo", "--voice-id", "3",
                   "--language", "en", "--interrupt", "--param", "first_name=firstname",
                   "--exclude", "city", url=sim.url)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert_no_traceback(proc)
    rows = {r["row"]: r for r in read_rows(tmp_path / "leads.results.csv")}
    called = {r["phone"]: r for r in rows.values() if r["status"] == "called"}
    # exactly once per valid lead, according to the server
    assert created_per_phone(sim) == collections.Counter(list(called))
    assert len(called) == 9
    by_phone = {c.phone: c for c in sim.calls}
    for phone, row in called.items():
        assert row["call_id"] == by_phone[phone].id  # the true id, from the server's record
        assert row["attempts"] == "1"
    jose = by_phone["+34612345678"].body
    assert jose["firstname"] == "José" and jose["program_of_interest"].startswith("Grado")
    assert "first_name" not in jose and "city" not in jose
    assert (jose["playbook_id"], jose["voice_id"], jose["language"]) == ("pb_demo", "3", "EN")
    assert jose["interrupt"] is True
    assert "voice_model" not in jose and "version_id" not in jose  # not set: not sent
    assert rows["8"]["status"] == "invalid" and rows["8"]["error"] == "empty phone"
    assert rows["9"]["status"] == "invalid" and "invalid number" in rows["9"]["error"]
    assert rows["10"]["status"] == "duplicate" and rows["10"]["error"] == "same phone as row 2"
    assert "9 called" in proc.stdout and "2 invalid, 1 duplicate" in proc.stdout


def test_a_rerun_dials_nobody(sim, tmp_path):
    leads = write_leads(tmp_path / "l.csv", mobiles(5))
    first = run_cli("run", str(leads), "--playbook", "pb", url=sim.url)
    assert first.returncode == 0, first.stderr
    assert len(sim.calls) == 5
    again = run_cli("run", str(leads), "--playbook", "pb", url=sim.url)
    assert again.returncode == 0, again.stderr
    assert len(sim.calls) == 5
    assert "0 to dial, 5 already done" in again.stdout
    assert len(read_rows(tmp_path / "l.results.csv")) == 5


def test_rows_appended_between_runs_are_dialed_once(sim, tmp_path):
    leads = write_leads(tmp_path / "l.csv", mobiles(3))
    assert run_cli("run", str(leads), "--playbook", "pb", url=sim.url).returncode == 0
    write_leads(leads, mobiles(5))
    assert run_cli("run", str(leads), "--playbook", "pb", url=sim.url).returncode == 0
    assert created_per_phone(sim) == collections.Counter(mobiles(5))


def test_the_old_response_shape_is_understood(sim, tmp_path):
    sim.config.response_shape = "old"
    leads = write_leads(tmp_path / "l.csv", mobiles(3))
    proc = run_cli("run", str(leads), "--playbook", "pb", url=sim.url)
    assert proc.returncode == 0, proc.stderr
    ids = {r["phone"]: r["call_id"] for r in read_rows(tmp_path / "l.results.csv")}
    assert ids == {c.phone: c.id for c in sim.calls}


def test_faults_never_ring_twice_and_every_created_call_is_accounted_for(sim, tmp_path):
    phones = mobiles(10)
    sim.config.faults = {
        phones[0]: ["503_before", "503_before"],  # refused before creating: retried
        phones[1]: ["429"],  # rate limited: retried after Retry-After
        phones[2]: ["500_after"],  # created, then an error: found by GET /calls
        phones[3]: ["drop_after"],  # created, connection dropped: found
        phones[4]: ["garbage_200"],  # created, unreadable answer: found
        phones[5]: ["slow"],  # created, answer later than --timeout: found
        phones[6]: ["500_before"],  # an error and NO call: proven absent, dialed again
        phones[7]: ["500_before", "500_after"],  # absent, then created with a lost answer
    }
    sim.config.slow_seconds = 2.0
    leads = write_leads(tmp_path / "l.csv", phones)
    proc = run_cli("run", str(leads), "--playbook", "pb", "--timeout", "0.5",
                   "--in-doubt-grace", "0.2", url=sim.url)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_no_traceback(proc)
    rows = {r["phone"]: r for r in read_rows(tmp_path / "l.results.csv")}
    assert created_per_phone(sim) == collections.Counter(phones)  # each rang exactly once
    assert {p: r["status"] for p, r in rows.items()} == dict.fromkeys(phones, "called")
    # every created call's id is in the results, on its own lead's row
    assert {p: r["call_id"] for p, r in rows.items()} == {c.phone: c.id for c in sim.calls}
    assert rows[phones[0]]["attempts"] == "3" and rows[phones[1]]["attempts"] == "2"
    assert rows[phones[6]]["attempts"] == "2"
    for phone in phones[2:6]:
        assert rows[phone]["error"].startswith("confirmed by GET /calls after: ")
    assert "Looked up 7 in-doubt leads with GET /calls: 5 found (called), 2 not placed" in (
        proc.stdout
    )
    again = run_cli("run", str(leads), "--playbook", "pb", url=sim.url)
    assert again.returncode == 0 and "0 to dial" in again.stdout
    assert len(sim.calls) == len(phones)


def test_when_calls_cannot_be_listed_the_lead_stays_in_doubt(sim, tmp_path):
    phones = mobiles(3)
    sim.config.faults = {phones[0]: ["500_after"], phones[1]: ["500_before"]}
    sim.config.list_status = 404
    leads = write_leads(tmp_path / "l.csv", phones)
    args = ("run", str(leads), "--playbook", "pb", "--in-doubt-grace", "0")
    proc = run_cli(*args, url=sim.url)
    assert proc.returncode == 6, proc.stdout + proc.stderr  # a person must look
    rows = {r["phone"]: r for r in read_rows(tmp_path / "l.results.csv")}
    assert rows[phones[0]]["status"] == rows[phones[1]]["status"] == "in_doubt"
    assert "could not list calls to check (HTTP 404" in rows[phones[0]]["error"]
    assert "2 leads in doubt" in proc.stdout and "--redial-in-doubt" in proc.stdout
    # a rerun never dials them blindly
    assert run_cli(*args, url=sim.url).returncode == 6
    assert created_per_phone(sim) == collections.Counter(phones[::2])
    # a person checked the dashboard: phones[1] was not called. Redial on request.
    sim.config.list_status = None
    sim.calls[:] = [c for c in sim.calls if c.phone != phones[0]]  # (and phones[0] was, too)
    proc = run_cli(*args, "--redial-in-doubt", url=sim.url)
    assert proc.returncode == 0, proc.stdout
    assert created_per_phone(sim)[phones[1]] == 1


def test_a_429_storm_slows_the_whole_run_and_nobody_rings_twice(sim, tmp_path):
    sim.config.fault_rates = {"429": 0.4}
    phones = mobiles(20)
    leads = write_leads(tmp_path / "l.csv", phones)
    proc = run_cli("run", str(leads), "--playbook", "pb", timeout=120, url=sim.url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert created_per_phone(sim) == collections.Counter(phones)
    refused = sum(r.status == 429 for r in sim.requests)
    assert refused >= 3
    assert f"The API rate-limited {refused} requests (429), each retried; slowed to " in proc.stdout
    assert "/min at the end (it climbs back after a quiet minute)." in proc.stdout


def test_a_refused_lead_fails_for_good_and_the_run_goes_on(sim, tmp_path):
    sim.config.playbooks = {"pb_real"}
    leads = write_leads(tmp_path / "l.csv", mobiles(2))
    proc = run_cli("run", str(leads), "--playbook", "pb_missing", url=sim.url)
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(tmp_path / "l.results.csv")
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert all("HTTP 404 playbook_not_found" in r["error"] for r in rows)
    assert sim.calls == []


def test_default_limits_hold_in_every_1s_window(sim, tmp_path):
    leads = write_leads(tmp_path / "l.csv", mobiles(35))
    proc = run_cli("run", str(leads), "--playbook", "pb", "--concurrency", "20", url=sim.url)
    assert proc.returncode == 0, proc.stderr
    posts = sorted(r.at for r in sim.requests if r.method == "POST")
    assert len(posts) == 35 and all(r.status == 200 for r in sim.requests)  # no 429
    assert max(sum(t <= u < t + 1.0 for u in posts) for t in posts) <= 10
    assert posts[-1] - posts[0] >= 3.0  # 35 sends at 10/s need more than 3 s


@pytest.mark.slow
def test_default_limits_hold_in_every_60s_window(sim, tmp_path):
    """105 leads at the default limits: 100 in the first minute, 5 after it; no 429."""
    leads = write_leads(tmp_path / "l.csv", mobiles(105))
    proc = run_cli("run", str(leads), "--playbook", "pb", timeout=180, url=sim.url)
    assert proc.returncode == 0, proc.stderr
    posts = sorted(r.at for r in sim.requests if r.method == "POST")
    assert len(posts) == 105 and all(r.status == 200 for r in sim.requests)
    assert max(sum(t <= u < t + 1.0 for u in posts) for t in posts) <= 10
    assert max(sum(t <= u < t + 60.0 for u in posts) for t in posts) <= 100
    assert posts[-1] - posts[0] >= 60.0


def test_missing_token_is_one_line(tmp_path):
    leads = write_leads(tmp_path / "l.csv", mobiles(1))
    proc = run_cli("run", str(leads), "--playbook", "pb", token=None)
    assert proc.returncode == 2
    assert proc.stderr == (
        "error: MEETZY_API_TOKEN is not set: export your Meetzy API token in it "
        "(or use --sandbox to try the dialer without one)\n"
    )
    assert not (tmp_path / "l.results.csv").exists()


def test_a_bad_token_stops_the_run_at_once(sim, tmp_path):
    leads = write_leads(tmp_path / "l.csv", mobiles(30))
    proc = run_cli("run", str(leads), "--playbook", "pb", token="wrong-token", url=sim.url)
    assert proc.returncode == 3
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: the API refused the token (HTTP 401 unauthorized")
    assert "wrong-token" not in proc.stdout + proc.stderr
    assert sim.calls == []
    assert sum(r.status == 401 for r in sim.requests) <= 10  # only those already in flight
    # the leads stay dialable: a rerun with the right token calls them all, once
    assert run_cli("run", str(leads), "--playbook", "pb", url=sim.url).returncode == 0
    assert created_per_phone(sim) == collections.Counter(mobiles(30))


def test_no_phone_column_is_one_line(tmp_path):
    leads = tmp_path / "l.csv"
    leads.write_text("name,email\nAna,a@example.com\n", encoding="utf-8")
    proc = run_cli("run", str(leads), "--playbook", "pb")
    assert proc.returncode == 2
    assert proc.stderr == (
        "error: l.csv: no phone column found (columns: name, email); name it with --phone-column\n"
    )


def test_plain_http_to_a_remote_host_is_refused(tmp_path):
    leads = write_leads(tmp_path / "l.csv", mobiles(1))
    proc = run_cli("run", str(leads), "--playbook", "pb", url="http://api.example.com")
    assert proc.returncode == 2
    assert "token would travel in clear" in proc.stderr and proc.stderr.count("\n") == 1


def test_the_token_never_appears_in_output_or_files(sim, tmp_path):
    sim.config.faults = {mobiles(3)[2]: ["500_after"]}
    leads = write_leads(tmp_path / "l.csv", mobiles(3))
    proc = run_cli("run", str(leads), "--playbook", "pb", "--in-doubt-grace", "0", url=sim.url)
    assert proc.returncode == 0, proc.stdout
    assert TOKEN not in proc.stdout + proc.stderr
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) >= 4  # leads, results, journal, lock
    for path in files:
        assert TOKEN.encode() not in path.read_bytes(), path


def test_dry_run_dials_nobody_and_needs_no_token(sim, tmp_path):
    leads = tmp_path / "leads.csv"
    leads.write_bytes(SAMPLE.read_bytes())
    proc = run_cli("run", str(leads), "--playbook", "pb", "--dry-run", token=None, url=sim.url)
    assert proc.returncode == 0, proc.stderr
    assert sim.requests == []
    assert not (tmp_path / "leads.results.csv").exists()
    assert "To dial now:   9" in proc.stdout
    assert "row 9     invalid   12345: invalid number for ES" in proc.stdout
    forecast = proc.stdout.split("(local times, in the group's last zone):\n")[1]
    assert sum(int(line.split()[0]) for line in forecast.split("Example")[0].splitlines()) == 9
    body = proc.stdout.split("Example request (POST /call):\n", 1)[1]
    assert json.loads(body)["phone"] == "+34612345678"


def test_a_second_run_on_the_same_output_is_refused(sim, tmp_path):
    leads = write_leads(tmp_path / "l.csv", mobiles(2))
    with Ledger(tmp_path / "l.results.csv"):
        proc = run_cli("run", str(leads), "--playbook", "pb", url=sim.url)
    assert proc.returncode == 5
    assert proc.stderr.startswith("error: l.results.csv is in use by another dialer run (pid ")
    assert sim.calls == []


def start_run(sim, leads, *extra: str) -> subprocess.Popen[str]:
    args = [dialer_exe(), "run", str(leads), "--playbook", "pb", *extra]
    env = {**os.environ, **cli_env(sim.url)}
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def wait_for_calls(sim, n: int) -> None:
    deadline = time.monotonic() + 20
    while len(sim.calls) < n:
        assert time.monotonic() < deadline, f"only {len(sim.calls)} calls after 20 s"
        time.sleep(0.02)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_cleanly_and_a_rerun_finishes_without_double_dials(sim, tmp_path, sig):
    phones = mobiles(40)
    leads = write_leads(tmp_path / "l.csv", phones)
    child = start_run(sim, leads, "--max-per-second", "5")
    wait_for_calls(sim, 5)
    child.send_signal(sig)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 130, err
    assert "Stopped early" in out and "run the same command again" in out
    assert 5 <= len(sim.calls) < 40
    rows = read_rows(tmp_path / "l.results.csv")
    # the calls in flight finished and were recorded: nothing is left in doubt
    assert {r["phone"]: r["call_id"] for r in rows if r["status"] == "called"} == {
        c.phone: c.id for c in sim.calls
    }
    proc = run_cli("run", str(leads), "--playbook", "pb", url=sim.url)
    assert proc.returncode == 0, proc.stderr
    assert created_per_phone(sim) == collections.Counter(phones)


def test_a_second_signal_aborts_at_once_and_the_rerun_settles_what_was_in_flight(sim, tmp_path):
    sim.config.latency = 1.5  # every answer takes long: calls are in flight when we strike
    phones = mobiles(12)
    leads = write_leads(tmp_path / "l.csv", phones)
    child = start_run(sim, leads, "--timeout", "10")
    journal = tmp_path / "l.results.csv.dialer" / "journal"
    deadline = time.monotonic() + 20
    while not journal.exists() or journal.read_text().count('"status":"dialing"') < 10:
        assert time.monotonic() < deadline, "no intents after 20 s"
        time.sleep(0.02)
    time.sleep(0.3)  # the ten requests are on the wire, their answers 1.5 s away
    assert sim.calls == []
    child.send_signal(signal.SIGINT)
    time.sleep(0.1)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 130, out + err
    assert (
        err == "error: stopped at once by a second signal: leads in flight are recorded in doubt\n"
    )
    time.sleep(1.6)  # let the server finish creating what it was sent
    in_flight = len(sim.calls)
    assert in_flight == 10  # the server created them all, though nobody heard the answers
    sim.config.latency = 0.0
    proc = run_cli("run", str(leads), "--playbook", "pb", "--in-doubt-grace", "0", url=sim.url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Looked up {in_flight} in-doubt leads with GET /calls: {in_flight} found" in (
        proc.stdout
    )
    assert created_per_phone(sim) == collections.Counter(phones)
    rows = read_rows(tmp_path / "l.results.csv")
    assert {r["phone"]: r["call_id"] for r in rows} == {c.phone: c.id for c in sim.calls}


def test_overlapping_runs_the_second_is_refused_at_once_and_touches_nothing(sim, tmp_path):
    phones = mobiles(10)
    leads = write_leads(tmp_path / "l.csv", phones)
    first = start_run(sim, leads, "--max-per-second", "3")
    wait_for_calls(sim, 1)
    journal = tmp_path / "l.results.csv.dialer" / "journal"
    started = time.monotonic()
    second = run_cli("run", str(leads), "--playbook", "pb", url=sim.url)
    assert time.monotonic() - started < 5  # refused at once, never waiting
    assert second.returncode == 5
    assert second.stderr.startswith(
        f"error: l.results.csv is in use by another dialer run (pid {first.pid} on "
    )
    assert second.stdout == ""
    first.communicate(timeout=60)
    assert first.returncode == 0
    assert created_per_phone(sim) == collections.Counter(phones)
    assert journal.exists()


def test_sandbox_flag_runs_without_token_or_network(tmp_path):
    leads = tmp_path / "leads.csv"
    leads.write_bytes(SAMPLE.read_bytes())
    proc = run_cli("run", str(leads), "--playbook", "demo", "--sandbox", token=None)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Sandbox: a simulated Meetzy API on http://127.0.0.1:")
    rows = read_rows(tmp_path / "leads.sandbox.results.csv")
    assert sum(r["status"] == "called" and bool(r["call_id"]) for r in rows) == 9
    # simulated calls never mark the real campaign's leads as done
    assert not (tmp_path / "leads.results.csv").exists()
    real = run_cli("run", str(leads), "--playbook", "demo", "--dry-run", token=None)
    assert "To dial now:   9\n" in real.stdout


def test_dialer_sandbox_serves_other_tools_and_records_calls(tmp_path):
    import httpx

    port = free_port()
    server = subprocess.Popen(
        [dialer_exe(), "sandbox", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_simulator(url, server)
        leads = write_leads(tmp_path / "l.csv", mobiles(3))
        proc = run_cli("run", str(leads), "--playbook", "pb", url=url, token="sandbox-token")
        assert proc.returncode == 0, proc.stderr
        auth = {"Authorization": "Bearer sandbox-token"}
        record = httpx.get(f"{url}/_sim/calls", headers=auth, timeout=5).json()["calls"]
        assert sorted(c["phone"] for c in record) == mobiles(3)
        ids = {r["phone"]: r["call_id"] for r in read_rows(tmp_path / "l.results.csv")}
        assert ids == {c["phone"]: c["id"] for c in record}
    finally:
        server.send_signal(signal.SIGINT)
        out, _ = server.communicate(timeout=15)
    assert out.startswith(f"Meetzy simulator on http://127.0.0.1:{port} (token: sandbox-token)")


def test_status_matches_the_results_file(sim, tmp_path):
    phones = mobiles(6)
    sim.config.faults = {phones[0]: ["500_after"]}
    sim.config.list_status = 404  # phones[0] stays in doubt
    leads = write_leads(tmp_path / "l.csv", [*phones, "12345", phones[1]])
    run = run_cli("run", str(leads), "--playbook", "pb", "--in-doubt-grace", "0", url=sim.url)
    assert run.returncode == 6, run.stdout + run.stderr
    proc = run_cli("status", str(tmp_path / "l.results.csv"), token=None)
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(tmp_path / "l.results.csv")
    counts = collections.Counter(r["status"] for r in rows)
    assert counts == {"called": 5, "in_doubt": 1, "invalid": 1, "duplicate": 1}
    lines = proc.stdout.splitlines()
    assert lines[0] == "l.results.csv: 8 leads: 5 called, 1 in_doubt, 1 invalid, 1 duplicate"
    assert lines[1].startswith("Last run: ") and "(finished) in " in lines[1]
    assert lines[1].endswith("; 1 run in all")
    assert lines[2] == "Outcomes of the last calls: 5 not synced yet"
    assert lines[3] == "In doubt, a person should check (1):"
    assert lines[4].startswith(f"  row 2     {phones[0]}: could not list calls to check (HTTP 404")
    runs = (tmp_path / "l.results.csv.dialer" / "runs.jsonl").read_text().splitlines()
    record = json.loads(runs[-1])
    assert record["counts"] == dict(counts) and record["sent"] == 6
    assert record["settings"]["playbook"] == "pb" and TOKEN not in runs[-1]
    assert len(record["leads_sha256"]) == 64


@pytest.mark.slow
def test_back_to_back_runs_stay_inside_100_per_minute_together(sim, tmp_path):
    """Cron starts batch after batch: the second run counts the first run's sends."""
    first = write_leads(tmp_path / "a.csv", mobiles(60))
    assert run_cli("run", str(first), "--playbook", "pb", "--output",
                   str(tmp_path / "r.csv"), url=sim.url).returncode == 0  # fmt: skip
    second = write_leads(tmp_path / "b.csv", mobiles(60, start=100))
    proc = run_cli("run", str(second), "--playbook", "pb", "--output", str(tmp_path / "r.csv"),
                   timeout=180, url=sim.url)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    posts = sorted(r.at for r in sim.requests if r.method == "POST")
    assert len(posts) == 120 and all(r.status == 200 for r in sim.requests)  # no 429
    assert max(sum(t <= u < t + 60.0 for u in posts) for t in posts) <= 100


def test_batches_respect_max_calls_and_the_next_batch_continues(sim, tmp_path):
    phones = mobiles(10)
    leads = write_leads(tmp_path / "l.csv", phones)
    for dialed_so_far in (4, 8, 10):
        proc = run_cli("run", str(leads), "--playbook", "pb", "--max-calls", "4", url=sim.url)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert len(sim.calls) == dialed_so_far
    first = run_cli("status", str(tmp_path / "l.results.csv"), token=None)
    assert first.stdout.startswith("l.results.csv: 10 leads: 10 called")
    assert created_per_phone(sim) == collections.Counter(phones)


def test_max_calls_says_what_is_left(sim, tmp_path):
    leads = write_leads(tmp_path / "l.csv", mobiles(10))
    proc = run_cli("run", str(leads), "--playbook", "pb", "--max-calls", "4", url=sim.url)
    assert proc.returncode == 0
    assert "10 rows in l.csv: 4 to dial, 6 held for a later run" in proc.stdout
    assert "Batch done in " in proc.stdout and "6 leads left for the next run (--max-calls)." in (
        proc.stdout
    )
    assert "Campaign: 4 called, 6 pending" in proc.stdout


def test_cron_output_is_plain_and_json_and_quiet_work(sim, tmp_path):
    leads = write_leads(tmp_path / "l.csv", mobiles(4))
    log = tmp_path / "run.log"
    plain = run_cli("run", str(leads), "--playbook", "pb", "--progress-every", "0",
                    "--log-file", str(log), url=sim.url)  # fmt: skip
    assert plain.returncode == 0
    assert "\x1b" not in plain.stdout + plain.stderr  # no colour, no progress bar escapes
    assert plain.stderr.count("progress: ") == 4  # one line per lead at --progress-every 0
    assert log.read_text().splitlines() == plain.stdout.splitlines()[1:]  # the summary
    write_leads(leads, mobiles(6))
    as_json = run_cli("run", str(leads), "--playbook", "pb", "--log-format", "json",
                      "--log-file", str(log), url=sim.url)  # fmt: skip
    assert as_json.returncode == 0 and as_json.stderr == ""
    [line] = as_json.stdout.splitlines()
    record = json.loads(line)
    assert record["outcome"] == "finished" and record["this_run"] == {"called": 2}
    assert log.read_text().splitlines()[-1] == line
    write_leads(leads, mobiles(7))
    quiet = run_cli("run", str(leads), "--playbook", "pb", "--quiet", url=sim.url)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    assert len(sim.calls) == 7


def test_an_excel_export_with_dnc_required_params_and_rejects(sim, tmp_path):
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Leads"
    sheet.append(["CRM Id", "Nombre", "Teléfono", "Programa"])
    sheet.append(["@SUM(1+1)*cmd|' /C calc'!A0", "José", "+34 612 345 678", "MBA"])  # a formula
    sheet.append(["crm-2", "María", "612 345 679", "Máster"])
    sheet.append(["crm-3", "", "612 345 680", "Grado"])  # no name: missing_param
    sheet.append(["crm-4", "Íñigo", "0034 612 345 681", "MBA"])  # on the do-not-call list
    book.save(tmp_path / "export.xlsx")
    (tmp_path / "dnc.txt").write_text("+34612345681\n", encoding="utf-8")
    args = ("run", str(tmp_path / "export.xlsx"), "--playbook", "pb", "--id-column", "CRM Id",
            "--require", "firstname", "--param", "Nombre=firstname", "--dnc",
            str(tmp_path / "dnc.txt"), "--rejects", str(tmp_path / "rejects.csv"))  # fmt: skip
    preview = run_cli(*args, "--dry-run", token=None)
    assert preview.returncode == 0, preview.stderr
    assert "Rows:          4 (2 dialable, 1 dnc, 1 missing_param)" in preview.stdout
    assert "Rejected rows written to " in preview.stdout
    rejects = read_rows(tmp_path / "rejects.csv")
    assert [(r["row"], r["status"]) for r in rejects] == [("4", "missing_param"), ("5", "dnc")]
    assert rejects[0]["reason"] == "missing required param 'firstname'"
    (tmp_path / "rejects.csv").unlink()
    proc = run_cli(*args, url=sim.url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(read_rows(tmp_path / "rejects.csv")) == 2  # a real run writes them too
    assert sorted(c.phone for c in sim.calls) == ["+34612345678", "+34612345679"]
    jose = next(c for c in sim.calls if c.phone == "+34612345678").body
    assert jose["firstname"] == "José" and "CRM Id" not in jose
    rows = {r["row"]: r for r in read_rows(tmp_path / "export.results.csv")}
    assert rows["2"]["crm_id"] == "'@SUM(1+1)*cmd|' /C calc'!A0"  # neutralised for Excel
    assert rows["3"]["crm_id"] == "crm-2" and rows["5"]["status"] == "dnc"
