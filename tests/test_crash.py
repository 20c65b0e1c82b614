"""Fault tests: kill the real CLI with SIGKILL at random moments, resume, and check from the
simulator's record that nobody rang twice, nobody was lost, and every call id is in the results.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import time

from tests.conftest import cli_env, dialer_exe, mobiles, read_rows, run_cli, write_leads

KILLS = 12


def test_sigkill_at_random_moments_never_double_dials(sim, tmp_path):
    seed = int(os.environ.get("CRASH_SEED", random.randrange(1_000_000)))
    rng = random.Random(seed)
    sim.config.latency = 0.05  # so that kills land with requests in flight
    sim.config.fault_rates = {"500_after": 0.05, "500_before": 0.05, "503_before": 0.05}
    phones = mobiles(40)
    leads = write_leads(tmp_path / "l.csv", phones)
    args = [dialer_exe(), "run", str(leads), "--playbook", "pb", "--in-doubt-grace", "0.3",
            "--max-per-second", "20", "--max-per-minute", "1000"]  # fmt: skip
    env = {**os.environ, **cli_env(sim.url)}
    kills = 0
    for _ in range(KILLS):
        child = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(rng.uniform(0.05, 0.6))
        if child.poll() is not None:
            break  # finished before the kill: the campaign is done
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        kills += 1
    final = run_cli("run", str(leads), "--playbook", "pb", "--in-doubt-grace", "0.3",
                    url=sim.url)  # fmt: skip
    context = f"seed {seed}, {kills} kills: {final.stdout}{final.stderr}"
    assert final.returncode == 0, context
    assert kills >= 3, context  # the test really interrupted the campaign
    created = collections.Counter(call.phone for call in sim.calls)
    assert max(created.values()) == 1, context  # no phone rang twice
    assert set(created) == set(phones), context  # every lead was dialed
    rows = {r["phone"]: r for r in read_rows(tmp_path / "l.results.csv")}
    assert len(rows) == len(phones), context  # one clean row per lead
    assert {p: r["call_id"] for p, r in rows.items()} == {c.phone: c.id for c in sim.calls}, context


def test_sigkill_while_recycling_never_calls_a_lead_more_than_max_attempts(sim, tmp_path):
    seed = int(os.environ.get("CRASH_SEED", random.randrange(1_000_000)))
    rng = random.Random(seed)
    sim.config.latency = 0.05
    sim.config.ring_seconds = sim.config.talk_seconds = 0.02
    sim.config.per_minute = None  # syncs and redials of 30 leads: more than 100 requests a minute
    sim.config.fault_rates = {"500_after": 0.05, "503_before": 0.05}
    phones = mobiles(30)
    sim.config.outcomes = {phone: ["no-answer"] * 3 for phone in phones}
    leads = write_leads(tmp_path / "l.csv", phones)
    flags = ["--playbook", "pb", "--in-doubt-grace", "0.3", "--max-per-second", "20",
             "--max-per-minute", "1000", "--sync", "--retry-outcomes", "no-answer",
             "--max-attempts", "2", "--retry-after", "0s"]  # fmt: skip
    env = {**os.environ, **cli_env(sim.url)}
    kills = 0
    for _ in range(KILLS):
        child = subprocess.Popen([dialer_exe(), "run", str(leads), *flags], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(rng.uniform(0.05, 0.6))
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            kills += 1
        child.wait(timeout=10)
    for _ in range(3):  # sync the last calls, recycle what is due, until nothing is left
        final = run_cli("run", str(leads), *flags, url=sim.url)
        time.sleep(0.1)
    context = f"seed {seed}, {kills} kills: {final.stdout}{final.stderr}"
    assert final.returncode == 0, context
    assert kills >= 3, context
    created = collections.Counter(call.phone for call in sim.calls)
    assert created == {phone: 2 for phone in phones}, context  # max_attempts, never more
    rows = {r["phone"]: r for r in read_rows(tmp_path / "l.results.csv")}
    for phone, row in rows.items():
        ids = [item.split()[0] for item in row["history"].split(";") if item.strip()]
        ids.append(row["call_id"])
        assert ids == [c.id for c in sim.calls if c.phone == phone], context  # every attempt
        assert row["outcome"] == "no-answer" and row["calls"] == "2", context
