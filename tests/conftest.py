"""Shared fixtures: the real simulator on 127.0.0.1, and the installed ``dialer`` CLI."""

from __future__ import annotations

import asyncio
import atexit
import collections
import csv
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from dialer.api.simulator import SimConfig, SimServer, Simulator

TOKEN = "tok-e2e-SECRET-4f1c9a"  # distinctive, so a leak is easy to find

# CI explores the same examples every run (a found bug stays found locally, where runs vary).
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A simulator served over real HTTP on 127.0.0.1; tests read ``sim.calls`` afterwards."""
    simulator = Simulator(SimConfig(token=TOKEN))
    with SimServer(simulator) as server:
        simulator.url = server.url  # type: ignore[attr-defined]
        yield simulator


def dialer_exe() -> str:
    exe = shutil.which("dialer")
    if exe is None:
        pytest.fail("the dialer CLI is not installed: run pip install -e '.[test]'")
    return exe


# The per-user state folder (the account's shared rate budget) of every CLI the tests run: a
# temporary folder, never the real home's (XDG_STATE_HOME, as the XDG specification has it).
STATE_HOME = tempfile.mkdtemp(prefix="dialer-tests-state-")
atexit.register(shutil.rmtree, STATE_HOME, ignore_errors=True)


def run_cli(
    *args: str, url: str | None = None, token: str | None = TOKEN, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``dialer`` as a subprocess, as cron or a person would."""
    return subprocess.run(
        [dialer_exe(), *args], env=cli_env(url, token), capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def cli_env(url: str | None = None, token: str | None = TOKEN) -> dict[str, str]:
    """The environment ``run_cli`` gives the CLI (for a test that starts it with Popen)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEETZY_")}
    env["XDG_STATE_HOME"] = STATE_HOME
    if url is not None:
        env["MEETZY_API_URL"] = url
    if token is not None:
        env["MEETZY_API_TOKEN"] = token
    return env


def clock_at(when: str) -> Callable[[], datetime]:
    """A clock that starts at ``when`` (an ISO time with its offset) and runs at the real pace:
    what a run started at that moment would see. Injected with ``clock=``."""
    start, origin = datetime.fromisoformat(when), time.monotonic()
    assert start.tzinfo is not None, when
    return lambda: start + timedelta(seconds=time.monotonic() - origin)


def run_here(
    leads: Path, *, url: str = "", now: str | None = None, dry_run: bool = False,
    retry: Any = None, **flags: Any,
) -> tuple[Any, list[str]]:  # fmt: skip
    """``dialer run LEADS --playbook pb`` with ``flags`` (named as the settings are), made by
    the library in this process with the clock at ``now`` and ``retry`` injected: the summary
    (or, for ``dry_run``, the plan) and the lines the CLI would print for it. Raises the
    ``DialerError`` the CLI would print as its one line."""
    from dialer.campaign import build_settings
    from dialer.engine.run import plan, run_campaign
    from dialer.reports.report import plan_lines, start_lines, summary_lines

    settings = build_settings(leads, {"playbook": "pb", **flags})
    clock = clock_at(now) if now else None
    if dry_run:
        preview = plan(settings, clock=clock)
        return preview, plan_lines(preview, output=str(settings.output))
    lines: list[str] = []
    summary = run_campaign(settings, api_url=url, token=TOKEN, retry=retry, clock=clock,
                           on_start=lambda p: lines.extend(start_lines(p)))  # fmt: skip
    return summary, lines + summary_lines(summary)


def write_leads(path: Path, phones: list[str], **extra: list[str]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["first_name", "phone", *extra])
        for i, phone in enumerate(phones):
            writer.writerow([f"Lead {i}", phone, *(col[i] for col in extra.values())])
    return path


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def mobiles(n: int, start: int = 0) -> list[str]:
    """``n`` distinct valid Spanish mobile numbers in E.164."""
    return [f"+3461234{i:04d}" for i in range(start, start + n)]


class FakeClock:
    """A clock whose async ``sleep`` advances it at once: retry and limiter waits take no time."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_simulator(url: str, process: subprocess.Popen[str], within: float = 15.0) -> None:
    """Wait until a simulator started as ``process`` answers on ``url``."""
    import httpx

    deadline = time.monotonic() + within
    while True:
        try:
            httpx.get(f"{url}/_sim/calls", timeout=1.0)
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the simulator did not start"
            assert process.poll() is None, "the simulator exited"
            time.sleep(0.05)


@pytest.fixture(params=["csv", "pandas"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with each of the two parsers of text files (``dialer.leads.sheets``): Python's csv
    module, which splits files under ``PANDAS_FROM_BYTES``, and pandas, which splits bigger
    ones."""
    from dialer.leads import sheets

    monkeypatch.setattr(sheets, "PANDAS_FROM_BYTES", 1 << 62 if request.param == "csv" else 0)
    return str(request.param)


def later(hours: float) -> str:
    """An ISO time ``hours`` from now (UTC)."""
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat(timespec="seconds")


def per_phone(sim) -> collections.Counter[str]:
    """Calls the simulator created, per phone."""
    return collections.Counter(call.phone for call in sim.calls)


def by_phone(path) -> dict[str, dict[str, str]]:
    """The called rows of a results file, by phone."""
    return {r["phone"]: r for r in read_rows(path) if r["status"] == "called"}
