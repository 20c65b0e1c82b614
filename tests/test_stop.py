"""``dialer stop RESULTS``: the clean stop of Ctrl-C from another process.

The end-to-end tests run the installed CLI against the simulator and check, from the
simulator's record, that the stopped run finished its calls in flight (nothing in doubt) and
that the rerun dials everybody else once. The unit tests drive ``stop_campaign`` with an
injected clock, sleep and signal sender.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from dialer.engine.stop import stop_campaign
from dialer.errors import ConfigError
from dialer.files import RunLock
from dialer.store.ledger import lock_info_path, lock_path
from tests.conftest import mobiles, read_rows, run_cli, write_leads
from tests.test_e2e import start_run, wait_for_calls


def _in_flight_journaled(journal: Path, n: int) -> None:
    deadline = time.monotonic() + 20
    while not journal.exists() or journal.read_text().count('"status":"dialing"') < n:
        assert time.monotonic() < deadline, "no intents after 20 s"
        time.sleep(0.02)


def test_stop_ends_a_running_campaign_cleanly_and_a_rerun_calls_the_rest_once(sim, tmp_path):
    phones = mobiles(40)
    leads = write_leads(tmp_path / "l.csv", phones)
    results = tmp_path / "l.results.csv"
    child = start_run(sim, leads, "--max-per-second", "5")
    wait_for_calls(sim, 5)
    proc = run_cli("stop", str(results))
    out, err = child.communicate(timeout=30)
    assert child.returncode == 130, err
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    assert first.startswith(f"Stopped: the run (pid {child.pid}) ended in ")
    assert ", stopped: " in first and " called" in first
    assert second == (
        "Go on with the same command as before; 'dialer status l.results.csv' shows where it stands"
    )
    assert "Stopped early" in out
    assert 5 <= len(sim.calls) < 40
    rows = read_rows(results)
    assert {r["phone"]: r["call_id"] for r in rows if r["status"] == "called"} == {
        c.phone: c.id for c in sim.calls
    }
    assert run_cli("run", str(leads), "--playbook", "pb", url=sim.url).returncode == 0
    assert collections.Counter(c.phone for c in sim.calls) == collections.Counter(phones)


def test_two_stops_at_once_leave_nothing_in_doubt(sim, tmp_path):
    """The second SIGTERM is the same request as the first: the calls in flight finish (a
    second Ctrl-C would have cancelled them, leaving them in doubt)."""
    sim.config.latency = 1.5  # the calls are in flight when both stops arrive
    leads = write_leads(tmp_path / "l.csv", mobiles(12))
    results = tmp_path / "l.results.csv"
    child = start_run(sim, leads, "--timeout", "10")
    _in_flight_journaled(tmp_path / "l.results.csv.dialer" / "journal", 10)
    stops = [
        subprocess.Popen(
            ["dialer", "stop", str(results)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [stop.communicate(timeout=60) for stop in stops]
    child.communicate(timeout=30)
    assert child.returncode == 130
    assert [stop.returncode for stop in stops] == [0, 0], outputs
    assert all(out.startswith("Stopped: the run") or out.startswith("Nothing to stop")
               for out, _ in outputs)  # fmt: skip
    rows = read_rows(results)
    assert len(sim.calls) == 10
    assert sorted(r["phone"] for r in rows if r["status"] == "called") == sorted(
        c.phone for c in sim.calls
    )
    assert not [r for r in rows if r["status"] in ("in_doubt", "dialing")]


def test_stop_with_nothing_running_says_so(tmp_path):
    leads = write_leads(tmp_path / "l.csv", mobiles(2))
    assert run_cli("run", str(leads), "--playbook", "pb", "--sandbox").returncode == 0
    proc = run_cli("stop", str(tmp_path / "l.results.csv"))
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        0, "Nothing to stop: no dialer run is using l.results.csv\n", "",
    )  # fmt: skip
    proc = run_cli("stop", str(tmp_path / "never.csv"))
    assert (proc.returncode, proc.stdout) == (
        0,
        "Nothing to stop: no dialer run is using never.csv\n",
    )


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _held(tmp_path: Path, note: dict | None) -> tuple[Path, RunLock]:
    results = tmp_path / "l.results.csv"
    lock_path(results).parent.mkdir()
    lock = RunLock(lock_path(results))
    assert lock.acquire()
    if note is not None:
        lock_info_path(results).write_text(json.dumps(note), encoding="utf-8")
    return results, lock


def test_a_run_that_does_not_end_within_the_wait_is_reported_still_running(tmp_path):
    results, lock = _held(tmp_path, {"pid": os.getpid(), "host": socket.gethostname()})
    clock, sent = _Clock(), []
    try:
        found = stop_campaign(results, wait=5, clock=clock, sleep=clock.sleep,
                              send=lambda pid, sig: sent.append((pid, sig)))  # fmt: skip
    finally:
        lock.release()
    assert sent == [(os.getpid(), signal.SIGTERM)]
    assert (found.running, found.ended, found.pid) == (True, False, os.getpid())
    assert found.waited >= 5


def test_a_stale_note_never_names_a_stranger(tmp_path):
    """The note names a pid that does not hold the lock (left by an earlier run): the kernel's
    list of locks names the real holder, and only it is signalled."""
    results, lock = _held(tmp_path, {"pid": 999_999_999, "host": socket.gethostname()})
    clock, sent = _Clock(), []
    try:
        found = stop_campaign(results, wait=1, clock=clock, sleep=clock.sleep,
                              send=lambda pid, sig: sent.append(pid))  # fmt: skip
    finally:
        lock.release()
    if not Path("/proc/locks").exists():
        pytest.skip("no /proc/locks here")
    assert sent == [os.getpid()] and found.pid == os.getpid()


def test_a_run_on_another_host_is_refused_with_one_line(tmp_path):
    results, lock = _held(tmp_path, {"pid": 1234, "host": "cron-box-2"})
    try:
        with pytest.raises(ConfigError) as caught:
            stop_campaign(results, send=lambda pid, sig: pytest.fail("signalled"))
    finally:
        lock.release()
    assert (
        str(caught.value) == "l.results.csv is in use by pid 1234 on host cron-box-2: stop it there"
    )
