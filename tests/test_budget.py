"""The account's rate budget (issue 16): windows a stall cannot beat, one budget per account
shared by every dialer process on the machine, fair shares, 429s remembered briefly.

End-to-end tests run the installed CLI against the real simulator enforcing the documented
limits strictly, and judge from the simulator's own record of arrival times; the record's
mechanics and the climb back after 429s are tested in-process on injected clocks.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import json
import os
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from dialer.api.simulator import SimConfig, SimServer, Simulator
from dialer.engine.budget import AccountBudget, account_key, running_campaigns, state_folder
from dialer.engine.limits import CLIMB_EVERY, QUIET, SlidingWindows
from dialer.engine.run import rate_story
from dialer.reports.report import rate_phrase
from tests.conftest import (
    STATE_HOME,
    TOKEN,
    FakeClock,
    cli_env,
    dialer_exe,
    mobiles,
    per_phone,
    read_rows,
    run_cli,
    run_here,
    write_leads,
)


def most_in(times: list[float], span: float) -> int:
    """The most of ``times`` in any window ``[t, t + span)``."""
    ordered = sorted(times)
    return max(
        (bisect.bisect_left(ordered, t + span) - i for i, t in enumerate(ordered)), default=0
    )


def posts(sim) -> list:
    return [r for r in sim.requests if r.method == "POST"]


def assert_within_limits(sim, per_second: int = 10, per_minute: int = 100) -> None:
    assert [r for r in sim.requests if r.status == 429] == [], "the API said 429"
    arrivals = [r.at for r in sim.requests]
    assert most_in(arrivals, 1.0) <= per_second
    assert most_in(arrivals, 60.0) <= per_minute


# --- windows that a stall cannot beat ----------------------------------------------------------


class StallingTransport(httpx.AsyncBaseTransport):
    """Every ``every``-th POST /call waits ``stall`` seconds after the windows allowed it and
    before it reaches the socket (a slow disk, a busy machine)."""

    def __init__(self, stall: float, every: int) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.stall, self.every, self.seen = stall, every, 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.seen += 1
            if self.seen % self.every == 1:
                await asyncio.sleep(self.stall)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_a_stall_between_the_window_and_the_socket_never_overfills_the_servers_windows(
    tmp_path, sim
):
    """Sends held 1.3 s (longer than the 1 s window and its margin) between being allowed and
    reaching the server: counted as in flight (now) until their answer, they never let more
    than 10 arrive in any second of the simulator's own clock, and no 429 comes back."""
    from dialer.campaign import build_settings
    from dialer.engine.run import run_campaign

    leads = write_leads(tmp_path / "leads.csv", mobiles(45))
    settings = build_settings(leads, {"playbook": "pb"})
    transport = StallingTransport(stall=1.3, every=4)
    summary = run_campaign(settings, api_url=sim.url, token=TOKEN, transport=transport,
                           durable=False)  # fmt: skip
    assert transport.seen >= 45 and summary.rate_limited == 0
    assert_within_limits(sim)
    assert set(per_phone(sim).values()) == {1} and len(sim.calls) == 45


# --- 429s remembered briefly ---------------------------------------------------------------------


def test_the_rate_climbs_back_after_429s_stop():
    """Lowered after 429s, the limits stay down for a quiet minute, then climb back by
    additive steps to the configured limits; the summary's phrase says so."""
    clock = FakeClock(now=0.0)
    lim = SlidingWindows([(10, 1.0), (100, 60.0)], margin=0.0, clock=clock, sleep=clock.sleep)
    lim.rate_limited()
    lim.slow_down(0.75)
    assert lim.windows == [(7, 1.0), (75, 60.0)]
    clock.now = QUIET - 1
    lim.delay()
    assert lim.windows == [(7, 1.0), (75, 60.0)]  # not yet a quiet minute
    clock.now = 30.0
    lim.rate_limited()  # another 429: the quiet minute starts again
    seen = []
    for step in range(20):
        clock.now = 30.0 + QUIET + step * CLIMB_EVERY
        lim.delay()
        seen.append(lim.windows[-1][0])
    assert seen[:4] == [85, 95, 100, 100]  # +10 (a tenth of 100) every 10 s, capped
    assert lim.windows == [(10, 1.0), (100, 60.0)]
    story = rate_story(lim.rate_changes, 100, clock.now)
    assert story is not None and story.back and story.lowest == 75
    assert story.lowered_for == pytest.approx(30.0 + QUIET + 2 * CLIMB_EVERY)
    assert rate_phrase(story) == "slowed to 75/min for 1 min 50 s, back to 100/min"


def test_a_rate_still_lowered_at_the_end_is_said_so():
    story = rate_story([(0.0, 75)], 100, 20.0)
    assert story is not None and not story.back
    assert rate_phrase(story).startswith("slowed to 75/min for 20 s, still 75/min at the end")


# --- the shared record, in-process ---------------------------------------------------------------


class Wall:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def budgets(folder: Path, *shares: float, alive=lambda pid: True, token=TOKEN):
    wall = Wall()
    made = [
        AccountBudget(
            folder,
            "http://127.0.0.1:1",
            token,
            campaign=f"c{i}",
            share=share,
            clock=wall,
            pid=1000 + i,
            is_alive=alive,
        )
        for i, share in enumerate(shares)
    ]
    for budget in made:
        budget.register()
    return wall, made


def test_the_record_is_private_keyed_by_a_fingerprint_and_never_holds_the_token(tmp_path):
    folder = tmp_path / "state" / "dialer"
    _, (one,) = budgets(folder, 1.0)
    assert isinstance(one.take([(10, 1.1)], more=False), str)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == [f"{account_key('http://127.0.0.1:1', TOKEN)}.json"]
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
        assert TOKEN not in f.read_text() and TOKEN not in f.name
    assert account_key("http://127.0.0.1:1", TOKEN) != account_key("http://127.0.0.1:1", "other")
    assert account_key("http://127.0.0.1:1", TOKEN) != account_key("http://127.0.0.1:2", TOKEN)


def test_the_state_folder_follows_xdg():
    assert state_folder({"XDG_STATE_HOME": "/x/state", "HOME": "/h"}) == Path("/x/state/dialer")
    assert state_folder({"HOME": "/h"}) == Path("/h/.local/state/dialer")
    assert state_folder({"XDG_STATE_HOME": "relative", "HOME": "/h"}) == Path(
        "/h/.local/state/dialer"
    )


def take_all(wall: Wall, made: list[AccountBudget], windows, seconds: float, step: float = 0.01):
    """Every campaign asks for a send whenever the record lets it, for ``seconds``: who got
    which, in order (each send answered at once)."""
    got: list[int] = []
    retry = [wall.now] * len(made)
    end = wall.now + seconds
    while wall.now < end:
        for i, budget in enumerate(made):
            if wall.now >= retry[i]:
                taken = budget.take(windows, more=True)
                if isinstance(taken, str):
                    budget.answered(taken)
                    got.append(i)
                else:
                    retry[i] = wall.now + taken
        wall.now += step
    return got


def test_campaigns_together_never_exceed_the_windows_and_share_evenly(tmp_path):
    wall, made = budgets(tmp_path, 1.0, 1.0)
    start = wall.now
    got = take_all(wall, made, [(10, 1.1), (100, 60.1)], 30.0)
    assert len(got) == 100  # the minute's budget, whole, between the two
    assert collections.Counter(got) == {0: 50, 1: 50}
    record = json.loads(made[0].path.read_text())
    times = [s[1] for s in record["sends"]]
    assert most_in(times, 1.1) <= 10 and most_in(times, 60.1) <= 100
    assert min(times) >= start


def test_share_weighs_one_campaign_against_the_other(tmp_path):
    wall, made = budgets(tmp_path, 3.0, 1.0)
    got = take_all(wall, made, [(10, 1.1), (100, 60.1)], 20.0)
    assert collections.Counter(got) == {0: 75, 1: 25}


def test_alone_one_campaign_gets_the_whole_budget_and_an_idle_one_holds_no_share(tmp_path):
    wall, (busy, _idle) = budgets(tmp_path, 1.0, 1.0)
    got = take_all(wall, [busy], [(10, 1.1), (100, 60.1)], 20.0)
    assert len(got) == 100  # the other is registered, but waits for nothing: work-conserving


def test_a_campaign_that_ends_or_dies_frees_its_share_at_once(tmp_path):
    dead: set[int] = set()
    wall, made = budgets(tmp_path, 1.0, 1.0, 1.0, alive=lambda pid: pid not in dead)

    def running() -> list[str]:
        found = running_campaigns(tmp_path, "http://127.0.0.1:1", TOKEN, is_alive=made[0].is_alive)
        return [r.campaign for r in found]

    assert running() == ["c0", "c1", "c2"]
    made[1].unregister()
    dead.add(1002)  # c2's process was killed
    assert running() == ["c0"]
    got = take_all(wall, [made[0]], [(10, 1.1), (100, 60.1)], 20.0)
    assert len(got) == 100


def test_a_send_in_flight_counts_as_now_until_answered_and_a_dead_ones_from_its_death(tmp_path):
    dead: set[int] = set()
    wall, (one, two) = budgets(tmp_path, 1.0, 1.0, alive=lambda pid: pid not in dead)
    windows = [(2, 1.0)]
    first = one.take(windows, more=False)
    assert isinstance(first, str)
    assert isinstance(two.take(windows, more=False), str)
    wall.now += 5.0  # both still in flight: no room, however long ago they were allowed
    assert two.take(windows, more=False) == pytest.approx(0.02)
    one.answered(first)  # answered now: it counts from now, for a whole window
    assert two.take(windows, more=False) == pytest.approx(0.02)
    dead.add(1001)  # two's process died with its send in flight: counts from now on
    wall.now += 0.5
    assert one.take(windows, more=False) == pytest.approx(0.5)
    wall.now += 0.5
    assert isinstance(one.take(windows, more=False), str)


# --- end to end: the installed CLI, side by side -------------------------------------------------


def start(leads: Path, url: str, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen([dialer_exe(), "run", str(leads), "--playbook", "pb", *flags],
                            env=cli_env(url), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def finish(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=180)
    assert process.returncode == 0, err
    return out


def span(sim) -> float:
    arrivals = sorted(r.at for r in posts(sim))
    return arrivals[-1] - arrivals[0]


def test_two_campaigns_started_together_share_the_account_without_a_429(tmp_path, sim):
    """Two campaigns at the defaults, started at once from two processes (a crontab line at
    9:00): zero 429s, every lead called once, and the pair sends as fast as one campaign of
    the same total size (the simulator's record), each told it shared the account."""
    a = write_leads(tmp_path / "a.csv", mobiles(50))
    b = write_leads(tmp_path / "b.csv", mobiles(50, start=500))
    both = [start(a, sim.url), start(b, sim.url)]
    outs = [finish(p) for p in both]
    assert_within_limits(sim)
    assert len(sim.calls) == 100 and set(per_phone(sim).values()) == {1}
    for out in outs:
        assert "Shared the account with 1 other campaign on this machine" in out
    # The reference: one campaign of the same 100 leads, on a fresh account (a simulator of
    # its own, so neither its windows nor the shared record hold the pair's sends).
    reference = Simulator(SimConfig(token=TOKEN))
    with SimServer(reference) as server:
        out = finish(start(write_leads(tmp_path / "one.csv", mobiles(100, start=1000)), server.url))
    assert "Shared the account" not in out and len(reference.calls) == 100
    assert span(sim) <= span(reference) * 1.1 + 0.3, (span(sim), span(reference))


def test_a_campaign_starting_mid_run_and_a_sync_beside_a_run_stay_within_the_limits(tmp_path, sim):
    """A campaign already sending, a second one started a few seconds later, and a ``dialer
    sync`` of an earlier campaign (GET /call look-ups) running beside them: together they
    never exceed the windows, never get a 429, and nobody is called twice."""
    earlier = write_leads(tmp_path / "earlier.csv", mobiles(15, start=2000))
    assert run_cli("run", str(earlier), "--playbook", "pb", url=sim.url).returncode == 0
    first = start(write_leads(tmp_path / "a.csv", mobiles(30)), sim.url)
    time.sleep(1.5)
    second = start(write_leads(tmp_path / "b.csv", mobiles(30, start=500)), sim.url)
    sync = subprocess.Popen([dialer_exe(), "sync", str(tmp_path / "earlier.results.csv")],
                            env=cli_env(sim.url), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    for process in (first, second, sync):
        finish(process)
    assert_within_limits(sim)
    assert len(sim.calls) == 75 and set(per_phone(sim).values()) == {1}
    gets = [r for r in sim.requests if r.method == "GET" and r.path.startswith("/call/")]
    assert len(gets) == 15  # the sync's look-ups were made, within the same windows


def test_share_gives_one_campaign_more_of_the_budget(tmp_path, sim):
    """``--share 3`` against ``--share 1``: while both wait, the first gets three sends of
    four, so it finishes its 40 leads well before an even split would let it."""
    sim.config.per_minute = None
    lifted = ("--max-per-minute", "1000")
    a_phones = mobiles(40)
    a = start(write_leads(tmp_path / "a.csv", a_phones), sim.url, "--share", "3", *lifted)
    b = start(write_leads(tmp_path / "b.csv", mobiles(40, start=500)), sim.url, *lifted)
    finish(a), finish(b)
    assert_within_limits(sim, per_minute=1000)
    order = [r.phone for r in sorted(posts(sim), key=lambda r: r.at)]
    last_of_a = max(i for i, phone in enumerate(order) if phone in set(a_phones))
    # An even split would finish A's 40 around the 80th send; three to one, near the 53rd.
    assert last_of_a < 66, last_of_a


def test_status_shows_the_other_campaigns_running_on_the_account(tmp_path, sim):
    """``dialer status`` lists the other campaigns running on the same account on this
    machine and their shares (only with the token in the environment), and forgets a
    campaign as soon as it ends."""
    done = write_leads(tmp_path / "done.csv", mobiles(3, start=900))
    assert run_cli("run", str(done), "--playbook", "pb", url=sim.url).returncode == 0
    slow = start(write_leads(tmp_path / "slow.csv", mobiles(8)), sim.url, "--share", "2",
                 "--max-per-minute", "4", "--max-per-second", "1")  # fmt: skip
    results = str(tmp_path / "done.results.csv")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        shown = run_cli("status", results, url=sim.url)
        if "Sharing the account" in shown.stdout:
            break
        time.sleep(0.2)
    assert "Sharing the account on this machine with 1 running campaign:" in shown.stdout
    assert f"{tmp_path / 'slow.results.csv'} (share 2 of 2, pid {slow.pid})" in shown.stdout
    assert "Sharing the account" not in run_cli("status", results, token=None).stdout
    slow.terminate()  # a clean stop: it unregisters
    slow.communicate(timeout=60)
    assert "Sharing the account" not in run_cli("status", results, url=sim.url).stdout
    assert all(
        r["status"] in ("called", "pending") for r in read_rows(tmp_path / "slow.results.csv")
    )
    assert os.path.isdir(Path(STATE_HOME) / "dialer")


def test_run_here_without_a_folder_keeps_the_budget_to_itself(tmp_path, sim):
    """The library shares the budget only when given the folder (the CLI gives the per-user
    one): in-process runs and tests touch no state folder."""
    leads = write_leads(tmp_path / "l.csv", mobiles(3))
    summary, _ = run_here(leads, url=sim.url)
    assert summary.shared_with == 0 and len(sim.calls) == 3


@pytest.mark.slow
def test_a_second_campaign_starting_mid_minute_waits_for_the_accounts_minute_not_a_429(
    tmp_path, sim
):
    """130 leads between two campaigns, the second started 20 s into the first one's minute
    (after the first sent its 70): the minute window is the account's, so the second sends
    what is left of it, then waits for the minute to roll: zero 429s, everyone called once,
    and the pair ends within ~10% of one campaign of the same 130 leads."""
    first = start(write_leads(tmp_path / "a.csv", mobiles(70)), sim.url)
    time.sleep(20)
    second = start(write_leads(tmp_path / "b.csv", mobiles(60, start=500)), sim.url)
    finish(first), finish(second)
    assert_within_limits(sim)
    assert len(sim.calls) == 130 and set(per_phone(sim).values()) == {1}
    reference = Simulator(SimConfig(token=TOKEN))
    with SimServer(reference) as server:
        finish(start(write_leads(tmp_path / "one.csv", mobiles(130, start=1000)), server.url))
    assert len(reference.calls) == 130
    assert span(sim) <= span(reference) * 1.1, (span(sim), span(reference))


def test_a_429_pauses_every_campaign_on_the_account(tmp_path):
    wall, (one, two) = budgets(tmp_path, 1.0, 1.0)
    one.pause_for(2.0)  # one of them got a 429 with Retry-After: 2
    assert two.take([(10, 1.1)], more=False) == pytest.approx(2.0)
    wall.now += 2.0
    assert isinstance(two.take([(10, 1.1)], more=False), str)


def test_share_comes_from_the_flag_or_the_campaign_file_and_must_be_positive(tmp_path):
    from dialer.campaign import build_settings
    from dialer.errors import ConfigError

    leads = write_leads(tmp_path / "l.csv", mobiles(1))
    campaign = tmp_path / "c.toml"
    campaign.write_text('playbook = "pb"\nshare = 2\n')
    assert build_settings(leads, {}, campaign).share == 2.0
    assert build_settings(leads, {"share": 0.5}, campaign).share == 0.5
    assert build_settings(leads, {"playbook": "pb"}).share == 1.0
    with pytest.raises(ConfigError, match="--share must be a positive number"):
        build_settings(leads, {"playbook": "pb", "share": 0.0})
    campaign.write_text('playbook = "pb"\nshare = "lots"\n')
    with pytest.raises(ConfigError, match="'share'"):
        build_settings(leads, {}, campaign)
    shown = run_cli("run", str(leads), "--playbook", "pb", "--share", "-1", "--dry-run")
    assert shown.returncode == 2 and shown.stderr.count("\n") == 1
    assert "--share must be a positive number up to 1000, not -1.0" in shown.stderr


def test_a_record_cut_short_or_with_an_old_tail_is_read_safely():
    from dialer.engine.budget import parse_record

    whole = b'{"campaigns":{},"sends":[[1.0,2.0,"c",1,"1.1"]]}'
    assert parse_record(whole + b'"old tail"]]}')["sends"] == [[1.0, 2.0, "c", 1, "1.1"]]
    assert parse_record(whole[:20]) == {"campaigns": {}, "sends": []}
    assert parse_record(b"\xff\xfe") == {"campaigns": {}, "sends": []}


def test_a_campaign_held_by_its_own_lower_limits_does_not_hold_the_others_back(tmp_path):
    """B has more to send but its own limits let its next send go only in 5 s: meanwhile A is
    not made to wait for B's turn (work-conserving)."""
    _, (a, b) = budgets(tmp_path, 1.0, 1.0)
    windows = [(10, 1.1), (100, 60.1)]
    for _ in range(3):
        assert isinstance(a.take(windows, more=True), str)  # A is ahead of B: 3 to 1
    assert isinstance(b.take(windows, more=True, then=lambda: 5.0), str)
    assert isinstance(a.take(windows, more=True), str)
    # Had B been ready now, A (4 sent) would yield to B (1 sent):
    assert isinstance(b.take(windows, more=True), str)
    assert a.take(windows, more=True) == pytest.approx(0.02)
