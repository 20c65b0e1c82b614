"""Syncing outcomes and the recycling rule.

``get_call`` is a plain async fake answering from a dict of prepared answers (an exception is
raised); the limiter is a real ``SlidingWindows`` on a fake clock, so nothing sleeps for real.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from dialer.engine.limits import SlidingWindows
from dialer.engine.sync import CallOutcome, call_outcome, due_again, needs_sync, sync_outcomes
from dialer.errors import AuthError, NotSent, OutcomeUnknown, RateLimited, Rejected
from dialer.model import Status
from dialer.store.results import Entry
from tests.conftest import FakeClock

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC).timestamp()


def called(key: str, call_id: str, **fields) -> Entry:
    return Entry(key, 2, key, Status.CALLED, call_id, 1, **fields)


def details(status: str, *, duration=0, created="2026-11-25T11:00:00Z", summary=None) -> dict:
    return {"id": "x", "status": status, "duration": duration, "created_time": created,
            "summary": summary}  # fmt: skip


class Getter:
    """A fake ``get_call``: each call id's answers in order (the last repeats)."""

    def __init__(self, answers: dict[str, list]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, call_id: str):
        self.asked.append(call_id)
        queue = self.answers[call_id]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def run_sync(entries, getter, clock=None, **kwargs):
    clock = clock or FakeClock(NOW)
    limiter = SlidingWindows([(10, 1.0), (100, 60.0)], margin=0.0, clock=clock, sleep=clock.sleep)
    recorded: dict[str, CallOutcome] = {}

    def record(entry, outcome):
        recorded[entry.key] = outcome

    result = asyncio.run(sync_outcomes(entries, getter, record=record, limiter=limiter,
                                       clock=clock, sleep=clock.sleep, **kwargs))  # fmt: skip
    return result, recorded


# --- call_outcome ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["queued", "ringing", "open", "wmat", "", "unknown"])
def test_a_call_in_progress_has_no_outcome(status):
    assert call_outcome(details(status), now=NOW) is None


def test_a_finished_call_ends_at_its_start_plus_its_duration():
    got = call_outcome(details("closed", duration=95.4, summary="Asked  for\n a brochure."),
                       now=NOW)  # fmt: skip
    assert got == CallOutcome("closed", "95", "Asked for a brochure.", "2026-11-25T11:01:35Z")


def test_an_outcome_never_ends_after_now_and_odd_fields_are_dropped():
    got = call_outcome({"status": "No-Answer", "duration": "x", "created_time": "garbage",
                        "summary": 7}, now=NOW)  # fmt: skip
    assert got == CallOutcome("no-answer", "", "", "2026-11-25T12:00:00Z")
    future = call_outcome(details("closed", duration=99999), now=NOW)
    assert future is not None and future.at == "2026-11-25T12:00:00Z"


def test_only_a_called_lead_without_an_outcome_needs_a_sync():
    assert needs_sync(called("a", "c1"))
    assert not needs_sync(called("a", "c1", outcome="busy"))
    assert not needs_sync(called("a", ""))
    assert not needs_sync(Entry("a", 2, "a", Status.IN_DOUBT, "c1"))


# --- due_again ------------------------------------------------------------------------------

RULE = {"retry_outcomes": ("no-answer", "busy"), "max_attempts": 3, "cool_down": 4 * 3600.0}


def test_a_retryable_outcome_is_due_once_its_cool_down_is_over():
    entry = called("a", "c1", outcome="no-answer", outcome_at="2026-11-25T08:00:00Z")
    assert due_again(entry, now=NOW - 1, **RULE) is None  # 11:59:59, ends 12:00
    assert due_again(entry, now=NOW, **RULE) == ("attempt 2 of 3: the last call ended no-answer")


def test_an_answered_or_unlisted_outcome_is_never_due():
    for outcome in ("closed", "voicemail", "recall-scheduled", ""):
        entry = called("a", "c1", outcome=outcome, outcome_at="2026-11-20T08:00:00Z")
        assert due_again(entry, now=NOW, **RULE) is None, outcome


def test_no_call_beyond_max_attempts():
    two = called("a", "c2", outcome="busy", outcome_at="2026-11-20T08:00:00Z",
                 history="c1 no-answer 2026-11-19T08:00:00Z")  # fmt: skip
    assert two.calls == 2
    assert due_again(two, now=NOW, **RULE) == "attempt 3 of 3: the last call ended busy"
    three = called(
        "a",
        "c3",
        outcome="busy",
        outcome_at="2026-11-20T08:00:00Z",
        history="c1 no-answer 2026-11-19T08:00:00Z; c2 busy 2026-11-19T12:00:00Z",
    )
    assert three.calls == 3
    assert due_again(three, now=NOW, **RULE) is None


def test_only_a_called_lead_is_due():
    for status in (Status.FAILED, Status.IN_DOUBT, Status.PENDING):
        entry = Entry("a", 2, "a", status, "c1", outcome="busy", outcome_at="2026-11-01T00:00Z")
        assert due_again(entry, now=NOW, **RULE) is None


# --- sync_outcomes --------------------------------------------------------------------------


def test_finished_calls_are_recorded_and_calls_in_progress_wait():
    entries = [called("a", "c1"), called("b", "c2"), called("c", "c3", outcome="busy"),
               Entry("d", 5, "d", Status.PENDING)]  # fmt: skip
    getter = Getter({"c1": [details("voicemail", duration=20)], "c2": [details("ringing")]})
    result, recorded = run_sync(entries, getter)
    assert sorted(getter.asked) == ["c1", "c2"]  # neither the synced nor the uncalled lead
    assert recorded == {"a": CallOutcome("voicemail", "20", "", "2026-11-25T11:00:20Z")}
    assert (result.checked, result.finished, result.in_progress, result.failed) == (2, 1, 1, 0)
    assert result.outcomes == {"voicemail": 1}


def test_transport_failures_and_5xx_are_retried_a_get_rings_nobody():
    getter = Getter({"c1": [NotSent("refused"), OutcomeUnknown("HTTP 500"), details("busy")]})
    clock = FakeClock(NOW)
    result, recorded = run_sync([called("a", "c1")], getter, clock)
    assert getter.asked == ["c1", "c1", "c1"]
    assert recorded["a"].outcome == "busy" and result.failed == 0
    assert len(clock.sleeps) >= 2  # backed off between tries, on the fake clock


def test_a_call_still_failing_after_its_tries_is_counted_and_left_for_the_next_sync():
    getter = Getter({"c1": [OutcomeUnknown("HTTP 502")], "c2": [Rejected("HTTP 404 not_found")],
                     "c3": [details("closed", duration=40)]})  # fmt: skip
    entries = [called("a", "c1"), called("b", "c2"), called("c", "c3")]
    result, recorded = run_sync(entries, getter, concurrency=1)
    assert getter.asked.count("c1") == 4 and getter.asked.count("c2") == 1  # 404: no retry
    assert list(recorded) == ["c"]
    assert result.failed == 2 and result.first_error == "call c1: HTTP 502"


def test_a_429_pauses_the_windows_and_the_look_up_is_retried():
    getter = Getter({"c1": [RateLimited("HTTP 429", retry_after=7.0), details("failed")]})
    clock = FakeClock(NOW)
    _, recorded = run_sync([called("a", "c1")], getter, clock)
    assert recorded["a"].outcome == "failed"
    assert clock() - NOW >= 7.0  # the second look-up waited out Retry-After


def test_look_ups_stay_inside_the_rate_windows():
    entries = [called(f"k{i}", f"c{i}") for i in range(25)]
    getter = Getter({f"c{i}": [details("closed")] for i in range(25)})
    clock = FakeClock(NOW)
    times: list[float] = []
    real = getter.__call__

    async def timed(call_id):
        times.append(clock())
        return await real(call_id)

    result, _ = run_sync(entries, timed, clock, concurrency=5)
    assert result.finished == 25
    for start in times:
        assert sum(start <= t < start + 1.0 for t in times) <= 10


def test_a_bad_token_stops_the_sync_and_is_raised():
    entries = [called(f"k{i}", f"c{i}") for i in range(10)]
    getter = Getter({f"c{i}": [AuthError("HTTP 401", status=401)] for i in range(10)})
    with pytest.raises(AuthError):
        run_sync(entries, getter, concurrency=2)
    assert len(getter.asked) <= 2  # each worker asked once, then everyone stopped


def test_a_stop_before_the_start_looks_nothing_up():
    stop = asyncio.Event()
    stop.set()
    getter = Getter({"c1": [details("closed")]})
    result, recorded = run_sync([called("a", "c1")], getter, stop=stop)
    assert getter.asked == [] and recorded == {} and result.stopped


def test_a_stop_frees_a_look_up_waiting_for_the_minute_window_and_it_is_not_made():
    clock = FakeClock(NOW)
    limiter = SlidingWindows([(1, 60.0)], margin=0.0, clock=clock, sleep=clock.sleep)
    stop = asyncio.Event()
    asked: list[str] = []

    async def getter(call_id: str):
        asked.append(call_id)
        await clock.sleep(1.0)  # the answer takes a second: the other look-up waits meanwhile
        stop.set()  # a signal while the second look-up waits ~60 s for the window
        return details("closed")

    recorded: dict = {}
    result = asyncio.run(sync_outcomes(
        [called("a", "c1"), called("b", "c2")], getter, limiter=limiter, concurrency=2,
        record=lambda entry, outcome: recorded.update({entry.key: outcome}), stop=stop,
        clock=clock, sleep=clock.sleep,
    ))  # fmt: skip
    assert asked == ["c1"] and list(recorded) == ["a"]
    assert (result.checked, result.finished, result.failed) == (1, 1, 0) and result.stopped


def test_due_under_applies_a_campaigns_settings_and_recycles_nothing_without_them():
    from dialer.campaign import build_settings
    from dialer.engine.sync import due_under

    entry = called("a", "c1", outcome="busy", outcome_at="2026-11-25T08:00:00Z")
    plain = build_settings("l.csv", {"playbook": "pb"})
    assert due_under(plain, entry, now=NOW) is None
    recycling = build_settings("l.csv", {"playbook": "pb", "retry_outcomes": "busy"})
    assert due_under(recycling, entry, now=NOW) == "attempt 2 of 3: the last call ended busy"
    assert due_under(recycling, entry, now=NOW - 1) is None  # 4 h after 08:00 is 12:00
