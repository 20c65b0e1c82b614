"""End to end: an API that creates calls late, after the client gave up on the answer.

The simulator's ``create_late`` fault holds the ``POST /call`` and creates its call
``late_seconds`` after the request arrived, then answers: a client with a shorter timeout never
hears of it, and an early ``GET /calls`` does not show it yet. A slow API rang people twice
when the dialer took one early listing for proof of absence. Every assertion about who rang
comes from the simulator's own record (``sim.calls``).
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import time

from tests.conftest import cli_env, dialer_exe, mobiles, read_rows, run_cli, write_leads


def created_per_phone(sim) -> collections.Counter[str]:
    return collections.Counter(call.phone for call in sim.calls)


def wait_for_calls(sim, n: int, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while len(sim.calls) < n:
        assert time.monotonic() < deadline, f"only {len(sim.calls)} calls after {within} s"
        time.sleep(0.05)


def late_leads(sim, tmp_path, n: int, late: list[int], seconds: float):
    phones = mobiles(n)
    sim.config.faults = {phones[i]: ["create_late"] for i in late}
    sim.config.late_seconds = seconds
    return phones, write_leads(tmp_path / "l.csv", phones)


def test_a_slow_api_rings_nobody_twice_at_the_default_grace(sim, tmp_path):
    """The defaults but --timeout (30 s would only make the test slow): the run waits out the
    grace rather than redialing; stopped during that wait, it leaves the leads in doubt, and a
    later run finds their calls. Every lead rings once."""
    late = [1, 4, 7, 10, 13, 16]
    phones, leads = late_leads(sim, tmp_path, 20, late=late, seconds=8.0)
    args = [dialer_exe(), "run", str(leads), "--playbook", "pb", "--timeout", "2"]
    env = {**os.environ, **cli_env(sim.url)}
    child = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)  # fmt: skip
    assert child.stdout is not None
    seen = []
    for line in child.stdout:
        seen.append(line)
        if line.startswith("Waiting "):
            break
    assert seen[-1].startswith("Waiting "), "".join(seen)
    assert "for 6 leads in doubt" in seen[-1] and "Ctrl-C leaves them for the next run" in seen[-1]
    wait = float(seen[-1].split()[1]) * 60 + float(seen[-1].split()[3])  # "Waiting 4 min 57 s"
    assert 280 <= wait <= 300  # the default grace, counted from when the answer was abandoned
    on_time = [phone for i, phone in enumerate(phones) if i not in late]
    assert created_per_phone(sim) == collections.Counter(on_time)
    child.send_signal(signal.SIGINT)
    rest, err = child.communicate(timeout=30)
    out = "".join(seen) + rest
    assert child.returncode == 130, out + err  # stopped by a signal, leads left in doubt
    assert "Stopped early in " in out
    assert "6 leads in doubt wait for their grace to end" in out
    assert "Do not dial them by hand." in out and "--redial-in-doubt" not in out
    # A run before the late calls exist dials nobody again: not listed yet proves nothing.
    # (On a slow machine some may exist by now: then it finds them. Either way, no request.)
    early = run_cli("run", str(leads), "--playbook", "pb", "--no-settle", url=sim.url)
    assert early.returncode in (0, 6), early.stdout + early.stderr
    assert "0 to dial" in early.stdout and "(0 requests" in early.stdout
    assert max(created_per_phone(sim).values()) == 1
    wait_for_calls(sim, 20)  # the API creates the late calls
    final = run_cli("run", str(leads), "--playbook", "pb", url=sim.url)
    assert final.returncode == 0, final.stdout + final.stderr
    assert "Looked up 6 in-doubt leads with GET /calls: 6 found (called), 0 not placed" in (
        final.stdout
    )
    assert created_per_phone(sim) == collections.Counter(phones)  # every lead rang once
    rows = read_rows(tmp_path / "l.results.csv")
    assert {r["phone"]: r["call_id"] for r in rows} == {c.phone: c.id for c in sim.calls}
    assert {r["status"] for r in rows} == {"called"}


def test_a_run_left_with_nothing_else_waits_out_the_grace_and_settles_itself(sim, tmp_path):
    phones, leads = late_leads(sim, tmp_path, 8, late=[2, 5], seconds=2.0)
    proc = run_cli("run", str(leads), "--playbook", "pb", "--timeout", "1",
                   "--in-doubt-grace", "4", url=sim.url)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    waiting = [line for line in lines if line.startswith("Waiting ")]
    assert len(waiting) == 1 and " for 2 leads in doubt:" in waiting[0]
    assert any(line.startswith("Waited ") for line in lines)
    assert "Looked up 2 in-doubt leads with GET /calls: 2 found (called)" in proc.stdout
    assert created_per_phone(sim) == collections.Counter(phones)
    assert {r["status"] for r in read_rows(tmp_path / "l.results.csv")} == {"called"}


def test_until_leaves_the_wait_to_the_next_run(sim, tmp_path):
    phones, leads = late_leads(sim, tmp_path, 4, late=[0], seconds=2.0)
    # --until a minute from now: the default grace would end past it, so no wait is begun.
    until = time.strftime("%H:%M", time.localtime(time.time() + 120))
    proc = run_cli("run", str(leads), "--playbook", "pb", "--timeout", "1", "--until", until,
                   url=sim.url)  # fmt: skip
    assert proc.returncode == 6, proc.stdout + proc.stderr
    assert "Waiting " not in proc.stdout
    assert "1 lead in doubt waits for its grace to end" in proc.stdout
    wait_for_calls(sim, 4)
    assert created_per_phone(sim) == collections.Counter(phones)


def test_a_grace_too_short_for_the_api_is_caught_and_the_double_ring_said_loudly(sim, tmp_path):
    phones, leads = late_leads(sim, tmp_path, 6, late=[0, 3], seconds=6.0)
    first = run_cli("run", str(leads), "--playbook", "pb", "--timeout", "1",
                    "--in-doubt-grace", "0.5", url=sim.url)  # fmt: skip
    assert first.returncode == 0, first.stdout + first.stderr
    assert "2 not placed (dialed again)" in first.stdout  # the grace was too short
    wait_for_calls(sim, 8)  # ... and the first attempts' calls are created after all
    assert created_per_phone(sim)[phones[0]] == created_per_phone(sim)[phones[3]] == 2
    again = run_cli("run", str(leads), "--playbook", "pb", url=sim.url)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "WARNING: 2 people rang twice: a call whose answer was lost was created after all" in (
        again.stdout
    )
    assert len(sim.calls) == 8  # nobody dialed a third time
    rows = {r["phone"]: r for r in read_rows(tmp_path / "l.results.csv")}
    for phone in (phones[0], phones[3]):
        ids = {c.id for c in sim.calls if c.phone == phone}
        assert rows[phone]["call_id"] in ids
        late_id = (ids - {rows[phone]["call_id"]}).pop()
        assert rows[phone]["history"].startswith(f"{late_id} rang-twice ")
        assert rows[phone]["calls"] == "2"
    status = run_cli("status", str(tmp_path / "l.results.csv"), token=None)
    assert "WARNING: 2 people rang twice" in status.stdout and "rows 2, 5" in status.stdout
    # Found once, reported once: a later run does not count them again.
    third = run_cli("run", str(leads), "--playbook", "pb", url=sim.url)
    assert "rang twice" not in third.stdout and len(sim.calls) == 8


def test_a_late_call_listed_before_the_redial_settles_the_lead_called_once(sim, tmp_path):
    phones, leads = late_leads(sim, tmp_path, 3, late=[1], seconds=8.0)
    fast = ("--timeout", "1", "--in-doubt-grace", "0.5")
    first = run_cli("run", str(leads), "--playbook", "pb", *fast, "--no-settle", url=sim.url)
    assert first.returncode == 6, first.stdout + first.stderr
    time.sleep(0.6)  # the (too short) grace is over; the call does not exist yet
    batch = run_cli("run", str(leads), "--playbook", "pb", *fast, "--max-calls", "0",
                    url=sim.url)  # fmt: skip
    assert "0 found (called), 1 not placed" in batch.stdout, batch.stdout + batch.stderr
    wait_for_calls(sim, 3)
    final = run_cli("run", str(leads), "--playbook", "pb", *fast, url=sim.url)
    assert final.returncode == 0, final.stdout + final.stderr
    assert "1 lead shown absent earlier turned out to be called" in final.stdout
    assert created_per_phone(sim) == collections.Counter(phones)
    rows = {r["phone"]: r for r in read_rows(tmp_path / "l.results.csv")}
    assert rows[phones[1]]["status"] == "called"
    assert rows[phones[1]]["call_id"] == sim.calls_for(phones[1])[0].id
