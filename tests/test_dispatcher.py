"""The dispatcher's order of events and its outcome for every kind of send error.

``send`` is a plain async function here (the client and the simulator have their own tests
and the end-to-end tests join them); the ledger is real, in a temporary folder; the limiter
runs on a fake clock and nothing sleeps.
"""

from __future__ import annotations

import asyncio

import pytest

from dialer.engine.dispatcher import RetryPolicy, dispatch
from dialer.engine.limits import SlidingWindows
from dialer.errors import (
    AuthError,
    NotSent,
    OutcomeUnknown,
    RateLimited,
    Rejected,
)
from dialer.model import Lead, Status
from dialer.store.ledger import Ledger, journal_path
from tests.conftest import FakeClock


def leads(n: int) -> list[Lead]:
    return [Lead(row=i + 2, phone=f"+346123450{i:02d}") for i in range(n)]


def run(tmp_path, items, send, *, concurrency=3, windows=((10, 1.0), (100, 60.0)), stop=None):
    clock = FakeClock()
    limiter = SlidingWindows(list(windows), margin=0.0, clock=clock, sleep=clock.sleep)
    outcomes = []
    with Ledger(tmp_path / "r.csv", durable=False) as ledger:
        result = asyncio.run(
            dispatch(items, send, ledger=ledger, limiter=limiter, concurrency=concurrency,
                     retry=RetryPolicy(max_attempts=4, sleep=clock.sleep), stop=stop,
                     on_outcome=outcomes.append)
        )  # fmt: skip
        entries = {e.key: e for e in ledger.entries()}
    return result, outcomes, entries, clock


def test_every_lead_is_sent_once_and_recorded_called(tmp_path):
    sent = []

    async def send(lead):
        sent.append(lead.phone)
        return "id-" + lead.phone

    result, outcomes, entries, _ = run(tmp_path, leads(25), send)
    assert sorted(sent) == sorted(lead.phone for lead in leads(25))
    assert result.counts == {"called": 25} and result.sent == 25
    assert all(entries[o.lead.key].call_id == "id-" + o.lead.phone for o in outcomes)


def test_the_intent_is_durable_before_the_send(tmp_path, monkeypatch):
    import os

    events: list[str] = []
    real_fsync = os.fsync

    def fsync(fd):
        events.append("fsync")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    journal = journal_path(tmp_path / "r.csv")

    async def send(lead):
        lines = journal.read_text().splitlines()
        mine = [line for line in lines if f'"k":"{lead.phone}"' in line]
        assert mine and '"status":"dialing"' in mine[-1]
        assert events and events[-1] == "fsync"  # nothing written since the last fsync
        events.append("send")
        return "x"

    clock = FakeClock()
    limiter = SlidingWindows([(10, 1.0)], margin=0.0, clock=clock, sleep=clock.sleep)
    with Ledger(tmp_path / "r.csv") as ledger:
        asyncio.run(dispatch(leads(6), send, ledger=ledger, limiter=limiter, concurrency=1))
    assert events.count("send") == 6


def test_concurrent_intents_share_fsyncs(tmp_path, monkeypatch):
    import os

    calls = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd)))

    async def send(lead):
        await asyncio.sleep(0.01)
        return "x"

    limiter = SlidingWindows([(1000, 1.0)], margin=0.0)
    with Ledger(tmp_path / "r.csv") as ledger:
        asyncio.run(dispatch(leads(40), send, ledger=ledger, limiter=limiter, concurrency=20))
    assert len(calls) < 40  # group commit: fewer fsyncs than intents


def test_sends_respect_the_rate_windows(tmp_path):
    clock = FakeClock()
    stamps = []

    async def send(lead):
        stamps.append(clock.now)
        return "x"

    limiter = SlidingWindows([(10, 1.0), (25, 60.0)], margin=0.0, clock=clock, sleep=clock.sleep)
    with Ledger(tmp_path / "r.csv", durable=False) as ledger:
        asyncio.run(dispatch(leads(30), send, ledger=ledger, limiter=limiter, concurrency=10))
    assert len(stamps) == 30
    for t in stamps:
        assert sum(t <= u < t + 1.0 for u in stamps) <= 10
        assert sum(t <= u < t + 60.0 for u in stamps) <= 25
    assert stamps[-1] - stamps[0] >= 60.0  # the 26th waited for the minute window


def test_not_sent_is_retried_until_it_goes_through(tmp_path):
    tries: dict[str, int] = {}

    async def send(lead):
        tries[lead.phone] = tries.get(lead.phone, 0) + 1
        if tries[lead.phone] < 3:
            raise NotSent("connection refused")
        return "ok"

    result, outcomes, _entries, clock = run(tmp_path, leads(2), send)
    assert set(tries.values()) == {3}
    assert result.counts == {"called": 2}
    assert all(o.attempts == 3 for o in outcomes)
    assert clock.sleeps  # the backoff waited (on the fake clock)


def test_not_sent_every_time_leaves_the_lead_pending(tmp_path):
    async def send(lead):
        raise NotSent("connection refused")

    _result, outcomes, _entries, _ = run(tmp_path, leads(1), send)
    assert outcomes[0].status is Status.PENDING and outcomes[0].attempts == 4
    assert "not sent after 4 attempts" in outcomes[0].error


def test_a_429_pauses_the_whole_pool_for_retry_after(tmp_path):
    calls = []

    async def send(lead):
        calls.append(lead.phone)
        if len(calls) == 1:
            raise RateLimited("slow down", retry_after=20.0)
        return "ok"

    clock = FakeClock()
    stamps = []

    async def stamped(lead):
        stamps.append(clock.now)
        return await send(lead)

    limiter = SlidingWindows([(10, 1.0)], margin=0.0, clock=clock, sleep=clock.sleep)
    with Ledger(tmp_path / "r.csv", durable=False) as ledger:
        result = asyncio.run(
            dispatch(
                leads(5),
                stamped,
                ledger=ledger,
                limiter=limiter,
                concurrency=1,
                retry=RetryPolicy(sleep=clock.sleep),
            )
        )
    assert result.rate_limited == 1 and result.counts == {"called": 5}
    assert all(t >= stamps[0] + 20.0 for t in stamps[1:])


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (Rejected("HTTP 400 invalid_phone", status=400, code="invalid_phone"), Status.FAILED),
        (OutcomeUnknown("no answer in time"), Status.IN_DOUBT),
    ],
)
def test_rejected_fails_and_unknown_is_in_doubt_without_retry(tmp_path, error, status):
    tries = []

    async def send(lead):
        tries.append(lead.phone)
        raise error

    _, outcomes, entries, _ = run(tmp_path, leads(1), send)
    assert len(tries) == 1  # never retried
    assert outcomes[0].status is status
    assert entries[outcomes[0].lead.key].error == str(error)


def test_auth_error_stops_the_pool_after_the_first_answer(tmp_path):
    tries = []

    async def send(lead):
        tries.append(lead.phone)
        await asyncio.sleep(0)
        raise AuthError("HTTP 401", status=401)

    result, outcomes, _entries, _ = run(tmp_path, leads(50), send, concurrency=3)
    assert result.auth_error is not None
    assert len(tries) <= 3  # only the ones already in flight
    assert all(o.status is Status.PENDING for o in outcomes)  # dialable again next time


def test_stop_starts_no_new_lead_and_lets_flight_finish(tmp_path):
    stop = asyncio.Event()
    tries = []

    async def send(lead):
        tries.append(lead.phone)
        if len(tries) == 2:
            stop.set()
        await asyncio.sleep(0)
        return "ok"

    result, outcomes, _, _ = run(tmp_path, leads(20), send, concurrency=2, stop=stop)
    assert result.stopped
    assert len(tries) <= 3 and len(outcomes) <= 3
    for o in outcomes:  # sent ones finished; a lead taken but not yet sent stays pending
        if o.lead.phone in tries:
            assert o.status is Status.CALLED
        else:
            assert (o.status, o.error) == (Status.PENDING, "stopped before sending")


def test_leads_the_ledger_has_already_are_skipped(tmp_path):
    async def send(lead):
        return "first"

    run(tmp_path, leads(3), send)
    again = []

    async def send_again(lead):
        again.append(lead.phone)
        return "second"

    _result, _, entries, _ = run(tmp_path, leads(5), send_again)
    assert again == [lead.phone for lead in leads(5)[3:]]
    assert entries[leads(5)[0].key].call_id == "first"


def test_an_fsync_failure_stops_the_run_before_the_send(tmp_path, monkeypatch):
    import errno
    import os

    from dialer.errors import LedgerError

    def broken(fd):
        raise OSError(errno.EIO, "Input/output error")

    sent = []

    async def send(lead):
        sent.append(lead.phone)
        return "x"

    limiter = SlidingWindows([(100, 1.0)], margin=0.0)
    ledger = Ledger(tmp_path / "r.csv")
    ledger.open()
    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(LedgerError, match=r"cannot sync the journal .* Input/output error"):
        asyncio.run(dispatch(leads(5), send, ledger=ledger, limiter=limiter, concurrency=2))
    assert sent == []  # no intent was durable, so nothing was sent
    monkeypatch.undo()
    ledger.close()


def test_a_stop_frees_a_sender_waiting_for_the_minute_window(tmp_path):
    import time

    stop = asyncio.Event()
    sent = []

    async def send(lead):
        sent.append(lead.phone)
        stop.set()  # a signal arrives while the next lead waits ~60 s for the window
        return "x"

    outcomes = []
    limiter = SlidingWindows([(1, 60.0)], margin=0.0)
    started = time.monotonic()
    with Ledger(tmp_path / "r.csv", durable=False) as ledger:
        result = asyncio.run(
            dispatch(
                leads(2),
                send,
                ledger=ledger,
                limiter=limiter,
                concurrency=2,
                stop=stop,
                on_outcome=outcomes.append,
            )
        )
        entries = {e.key: e for e in ledger.entries()}
    assert time.monotonic() - started < 5
    assert len(sent) == 1 and result.sent == 1
    waiting = next(o for o in outcomes if o.lead.phone not in sent)
    assert (waiting.status, waiting.attempts, waiting.error) == (
        Status.PENDING,
        0,
        "stopped before sending",
    )
    assert entries[waiting.lead.key].status is Status.PENDING  # not in doubt: never sent
