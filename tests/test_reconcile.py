"""Reconciliation: one ``GET /calls`` listing settles every in-doubt lead, or none of them.

``list_calls`` is a plain async fake that records its queries; the limiter is a real
``SlidingWindows`` on a fake clock, and reconcile's own clock and sleep are the same fake, so
nothing sleeps for real.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.engine.limits import SlidingWindows
from dialer.engine.reconcile import Absent, Found, Late, Undecided, Waiting, reconcile
from dialer.errors import AuthError, NotSent, OutcomeUnknown, RateLimited, Rejected
from dialer.model import Status
from dialer.store.results import Entry
from tests.conftest import FakeClock

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z
PLAYBOOK = "pb-42"
ANA = "+34612345678"
BEA = "+34612345679"


def at(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


class CountingLimiter(SlidingWindows):
    """A real limiter that also remembers when each ``acquire()`` let a request through."""

    def __init__(self, clock: FakeClock, windows=((10, 1.0), (100, 60.0))) -> None:
        super().__init__(list(windows), margin=0.0, clock=clock, sleep=clock.sleep)
        self.acquired: list[float] = []

    async def acquire(self, *, in_flight: bool = False) -> float:
        when = await super().acquire(in_flight=in_flight)
        self.acquired.append(when)
        return when


class Lister:
    """A fake ``list_calls``: each call takes the next prepared answer (the last one repeats);
    an exception is raised, a list is returned."""

    def __init__(self, clock: FakeClock, *answers) -> None:
        self.clock = clock
        self.answers = list(answers) or [[]]
        self.queries: list[dict[str, str]] = []
        self.times: list[float] = []

    async def __call__(self, query):
        self.queries.append(dict(query))
        self.times.append(self.clock())
        answer = self.answers[min(len(self.queries), len(self.answers)) - 1]
        if isinstance(answer, BaseException):
            raise answer
        return answer


def entry(phone: str, sent_at: float, key: str | None = None, row: int = 2) -> Entry:
    return Entry(key or phone, row, phone, Status.IN_DOUBT, sent_at=sent_at)


def settle(entries, *answers, grace=15.0, clock=None, limiter=None):
    clock = clock or FakeClock(NOW)
    limiter = limiter or CountingLimiter(clock)
    lister = Lister(clock, *answers)
    verdicts = asyncio.run(
        reconcile(entries, lister, playbook_id=PLAYBOOK, limiter=limiter, grace=grace,
                  clock=clock, sleep=clock.sleep)
    )  # fmt: skip
    return verdicts, lister, limiter, clock


# --- the listing ----------------------------------------------------------------------------


def test_no_entries_no_listing():
    verdicts, lister, limiter, clock = settle([], [{"id": "c-1", "to": ANA}])
    assert verdicts == {}
    assert lister.queries == []
    assert limiter.acquired == []
    assert clock.sleeps == []


def test_one_listing_settles_many_entries_from_the_day_before_the_earliest():
    entries = [
        entry(ANA, at("2023-11-14T21:00:00+00:00")),
        entry(BEA, at("2023-11-14T00:30:00+00:00")),  # the earliest
        entry("+34612345670", at("2023-11-14T22:00:00+00:00")),
    ]
    calls = [{"id": "c-ana", "to": ANA, "timestamp": at("2023-11-14T21:00:05+00:00")}]
    verdicts, lister, limiter, _ = settle(entries, calls)
    assert lister.queries == [{"playbook_id": PLAYBOOK, "startDate": "2023-11-13"}]
    assert len(limiter.acquired) == 1
    assert verdicts == {ANA: Found("c-ana"), BEA: Absent(), "+34612345670": Absent()}


@pytest.mark.parametrize(
    ("earliest", "start"),
    [
        ("2024-01-01T00:00:00+00:00", "2023-12-31"),
        ("2024-01-01T23:59:59+00:00", "2023-12-31"),
        ("2024-03-01T10:00:00+00:00", "2024-02-29"),  # leap year
        ("2024-01-01T01:00:00+05:00", "2023-12-30"),  # 2023-12-31T20:00Z: the UTC date counts
    ],
)
def test_start_date_is_the_utc_day_before_the_earliest_attempt(earliest, start):
    sent = at(earliest)
    clock = FakeClock(sent + 3600)
    _, lister, _, _ = settle([entry(ANA, sent), entry(BEA, sent + 60)], [], clock=clock)
    assert lister.queries == [{"playbook_id": PLAYBOOK, "startDate": start}]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", lister.queries[0]["startDate"])


def test_an_attempt_of_unknown_time_looks_back_90_days_without_a_start_date():
    entries = [entry(ANA, NOW - 600), entry(BEA, 0.0)]
    old = {"id": "c-old", "to": BEA, "timestamp": NOW - 30 * 86400}
    verdicts, lister, _, _ = settle(entries, [old])
    assert lister.queries == [{"playbook_id": PLAYBOOK, "daysFromNow": "90"}]
    assert "startDate" not in lister.queries[0]
    # Unknown send time: any call to the phone counts, however old.
    assert verdicts == {ANA: Absent(), BEA: Found("c-old")}


# --- the grace period -------------------------------------------------------------------------


def doubt(phone: str, sent_at: float, abandoned_at: float) -> Entry:
    return Entry(phone, 2, phone, Status.IN_DOUBT, sent_at=sent_at,
                 abandoned_at=f"{abandoned_at:.3f}")  # fmt: skip


def test_a_listing_before_the_grace_ends_proves_nothing():
    entries = [doubt(ANA, NOW - 60, NOW - 20), doubt(BEA, NOW - 40, NOW - 2)]
    verdicts, lister, _, clock = settle(entries, [], grace=15.0)
    assert verdicts == {ANA: Absent(), BEA: Waiting(pytest.approx(NOW + 13.0))}
    assert clock.sleeps == []  # reconcile never waits: the session decides
    assert lister.times == [NOW]


def test_the_grace_counts_from_giving_up_on_the_answer_not_from_the_send():
    # Sent 100 s ago, a 30 s timeout and retries: the dialer gave up only 5 s ago.
    verdicts, _, _, _ = settle([doubt(ANA, NOW - 100, NOW - 5)], [], grace=15.0)
    assert verdicts == {ANA: Waiting(pytest.approx(NOW + 10.0))}


def test_a_call_listed_before_the_grace_ends_is_found_at_once():
    listed = [{"id": "c-1", "to": ANA, "timestamp": NOW - 1}]
    verdicts, _, _, _ = settle([doubt(ANA, NOW - 40, NOW - 2)], listed, grace=300.0)
    assert verdicts == {ANA: Found("c-1")}


def test_without_a_give_up_time_the_grace_counts_from_the_last_update():
    old = Entry(ANA, 2, ANA, Status.IN_DOUBT, sent_at=NOW - 600,
                updated_at="2023-11-14T22:13:00Z")  # 20 s before NOW  # fmt: skip
    verdicts, _, _, _ = settle([old], [], grace=60.0)
    assert verdicts == {ANA: Waiting(pytest.approx(NOW - 20 + 1 + 60))}


def test_an_attempt_of_unknown_time_is_absent_once_the_grace_is_over():
    verdicts, lister, _, clock = settle([entry(ANA, 0.0)], [], grace=15.0)
    assert verdicts == {ANA: Absent()}
    assert clock.sleeps == [] and lister.times == [NOW]


# --- calls created late, after an attempt was shown absent --------------------------------------


def test_a_late_call_of_an_attempt_shown_absent_settles_the_lead_before_any_redial():
    shown_absent = Entry(ANA, 2, ANA, Status.PENDING, sent_at=NOW - 900,
                         unseen=f"{NOW - 900:.3f}")  # fmt: skip
    late = [{"id": "c-late", "to": ANA, "timestamp": NOW - 800}]
    verdicts, lister, _, _ = settle([shown_absent], late)
    assert verdicts == {ANA: Late((("c-late", "2023-11-14T22:00:00Z"),), "", call_id="c-late")}
    assert lister.queries[0]["startDate"] == "2023-11-13"


def test_a_late_call_after_the_redial_is_a_phone_that_rang_twice():
    redialed = Entry(ANA, 2, ANA, Status.CALLED, call_id="c-redial", sent_at=NOW - 850,
                     unseen=f"{NOW - 900:.3f}")  # fmt: skip
    listed = [{"id": "c-redial", "to": ANA, "timestamp": NOW - 849},
              {"id": "c-late", "to": ANA, "timestamp": NOW - 800}]  # fmt: skip
    verdicts, _, _, _ = settle([redialed], listed)
    assert verdicts == {ANA: Late((("c-late", "2023-11-14T22:00:00Z"),), "")}


def test_nothing_late_yet_keeps_watching_until_the_horizon():
    recent = Entry(ANA, 2, ANA, Status.CALLED, call_id="c-1", sent_at=NOW - 50,
                   unseen=f"{NOW - 100:.3f} {NOW - 90000:.3f}")  # fmt: skip
    verdicts, _, _, _ = settle([recent], [{"id": "c-1", "to": ANA, "timestamp": NOW - 49}])
    assert verdicts == {ANA: Late((), f"{NOW - 100:.3f}")}  # the day-old attempt is dropped


def test_in_doubt_again_with_an_earlier_absent_attempt_two_calls_mean_two_rings():
    again = Entry(ANA, 2, ANA, Status.IN_DOUBT, sent_at=NOW - 400, abandoned_at=f"{NOW - 370}",
                  unseen=f"{NOW - 900:.3f}")  # fmt: skip
    listed = [{"id": "c-a", "to": ANA, "timestamp": NOW - 850},
              {"id": "c-b", "to": ANA, "timestamp": NOW - 390}]  # fmt: skip
    verdicts, _, _, _ = settle([again], listed)
    assert verdicts == {ANA: Found("c-b", (("c-a", "2023-11-14T21:59:10Z"),), "")}


# --- matching ---------------------------------------------------------------------------------

SENT = at("2023-11-14T22:00:00+00:00")


@pytest.mark.parametrize(
    "to", [ANA, "34612345678", "+34 612 34 56 78", " +34 612 345 678 ", "+34-612-345-678"]
)
@pytest.mark.parametrize(
    "when",
    [
        {"timestamp": SENT + 5},
        {"timestamp": int((SENT + 5) * 1000)},  # milliseconds
        {"created_time": "2023-11-14T23:00:05+01:00"},
        {"created_time": "2023-11-14T22:00:05Z"},
        {"created_time": "2023-11-14T22:00:05.123456+00:00"},
        {"created_time": "2023-11-14T22:00:05"},  # naive
        {"created_time": "2023-11-14 22:00:05"},  # naive, with a space
    ],
)
def test_found_when_a_listed_call_has_the_phone(to, when):
    calls = [{"id": "other", "to": BEA, "timestamp": SENT + 1}, {"id": "c-1", "to": to, **when}]
    verdicts, _, _, _ = settle([entry(ANA, SENT)], calls)
    assert verdicts == {ANA: Found("c-1")}


@pytest.mark.parametrize(
    "calls",
    [
        [],
        [{"id": "c-1", "to": BEA, "timestamp": SENT + 5}],
        [{"id": "c-1", "to": "34612345677", "timestamp": SENT + 5}],
        [{"id": "c-1", "timestamp": SENT + 5}],  # no number at all
        [{"id": "c-1", "to": None, "timestamp": SENT + 5}],
    ],
)
def test_absent_when_no_listed_call_has_the_phone(calls):
    verdicts, _, _, _ = settle([entry(ANA, SENT)], calls)
    assert verdicts == {ANA: Absent()}


@pytest.mark.parametrize(
    "when",
    [
        {"timestamp": SENT - 3600},
        {"timestamp": SENT - 121},  # just outside the clock slack
        {"timestamp": int((SENT - 3600) * 1000)},
        {"created_time": "2023-11-14T21:00:00+00:00"},
        {"created_time": "2023-11-14T21:00:00Z"},
        {"created_time": "2023-11-14T23:57:00+02:00"},  # 21:57Z: 3 minutes early
        {"created_time": "2023-11-14T07:59:59"},  # naive, beyond the 14 h slack
    ],
)
def test_an_older_call_to_the_same_phone_is_not_this_attempts(when):
    verdicts, _, _, _ = settle([entry(ANA, SENT)], [{"id": "c-old", "to": ANA, **when}])
    assert verdicts == {ANA: Absent()}


@pytest.mark.parametrize(
    "when",
    [
        {"timestamp": SENT - 119},  # inside the 2 minute clock slack
        {"created_time": "2023-11-14T21:58:30Z"},
        {"created_time": "2023-11-14T12:00:00"},  # naive, 10 h before: the API's local time?
        {"created_time": "2023-11-14T08:00:01"},  # naive, just inside 14 h
    ],
)
def test_a_call_within_the_slack_is_a_match(when):
    verdicts, _, _, _ = settle([entry(ANA, SENT)], [{"id": "c-1", "to": ANA, **when}])
    assert verdicts == {ANA: Found("c-1")}


def test_the_newest_of_several_matches_wins():
    calls = [
        {"id": "c-old", "to": ANA, "timestamp": SENT - 7200},  # not a match at all
        {"id": "c-first", "to": ANA, "timestamp": SENT + 1},
        {"id": "c-newest", "to": "34612345678", "created_time": "2023-11-14T22:05:00Z"},
        {"id": "c-mid", "to": ANA, "timestamp": SENT + 60},
    ]
    verdicts, _, _, _ = settle([entry(ANA, SENT)], calls)
    assert verdicts == {ANA: Found("c-newest")}


@pytest.mark.parametrize("no_id", [{}, {"id": ""}, {"id": None}])
def test_a_listed_call_without_an_id_is_ignored(no_id):
    nameless = {"to": ANA, "timestamp": SENT + 10, **no_id}
    verdicts, _, _, _ = settle([entry(ANA, SENT)], [nameless])
    assert verdicts == {ANA: Absent()}
    named = {"id": "c-1", "to": ANA, "timestamp": SENT + 5}
    verdicts, _, _, _ = settle([entry(ANA, SENT)], [nameless, named])
    assert verdicts == {ANA: Found("c-1")}


def test_entries_are_keyed_by_their_key_not_their_phone():
    entries = [entry(ANA, SENT, key="lead-a"), entry(BEA, SENT, key="lead-b", row=3)]
    calls = [{"id": "c-b", "to": BEA, "timestamp": SENT + 3}]
    verdicts, _, _, _ = settle(entries, calls)
    assert verdicts == {"lead-a": Absent(), "lead-b": Found("c-b")}


# --- listing errors, retries and the shared limiter -------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        OutcomeUnknown("read timeout while listing"),
        Rejected("HTTP 404 not found", status=404, code="not_found"),
        AuthError("HTTP 401 unauthorized", status=401),
    ],
)
def test_a_failed_listing_leaves_every_entry_undecided(error):
    entries = [entry(ANA, SENT), entry(BEA, SENT, row=3)]
    verdicts, lister, limiter, _ = settle(entries, error)
    assert set(verdicts) == {ANA, BEA}
    for verdict in verdicts.values():
        assert isinstance(verdict, Undecided)
        assert "could not list calls" in verdict.reason
        assert str(error) in verdict.reason
    assert len(lister.queries) == 1  # not retried: only NotSent is
    assert len(limiter.acquired) == 1


def test_not_sent_is_retried_and_the_third_try_decides():
    calls = [{"id": "c-1", "to": ANA, "timestamp": SENT + 5}]
    entries = [entry(ANA, SENT), entry(BEA, SENT, row=3)]
    verdicts, lister, limiter, clock = settle(
        entries, NotSent("connection refused"), NotSent("connection refused"), calls
    )
    assert verdicts == {ANA: Found("c-1"), BEA: Absent()}
    assert len(lister.queries) == 3
    assert all(q == lister.queries[0] for q in lister.queries)
    assert len(limiter.acquired) == 3  # every attempt went through the limiter
    assert lister.times[0] < lister.times[1] < lister.times[2]  # backed off on the fake clock
    assert len(clock.sleeps) == 2


def test_not_sent_every_time_gives_up_after_four_attempts():
    verdicts, lister, limiter, _ = settle([entry(ANA, SENT)], NotSent("connection refused"))
    assert isinstance(verdicts[ANA], Undecided)
    assert "could not list calls" in verdicts[ANA].reason
    assert len(lister.queries) == 4
    assert len(limiter.acquired) == 4


def test_rate_limited_pauses_the_limiter_before_the_next_try():
    calls = [{"id": "c-1", "to": ANA, "timestamp": SENT + 5}]
    verdicts, lister, limiter, _ = settle(
        [entry(ANA, SENT)], RateLimited("429", retry_after=5), calls
    )
    assert verdicts == {ANA: Found("c-1")}
    assert len(lister.queries) == 2
    assert len(limiter.acquired) == 2
    assert lister.times[1] - lister.times[0] >= 5.0


def test_rate_limited_every_time_leaves_the_limiter_paused():
    verdicts, lister, limiter, _ = settle([entry(ANA, SENT)], RateLimited("429", retry_after=5.0))
    assert isinstance(verdicts[ANA], Undecided)
    assert len(lister.queries) == 4
    assert limiter.delay() == pytest.approx(5.0)  # the last 429's pause is still in force
    for before, after in zip(lister.times, lister.times[1:], strict=False):
        assert after - before >= 5.0


def test_rate_limited_without_retry_after_pauses_a_second():
    verdicts, lister, _, _ = settle([entry(ANA, SENT)], RateLimited("429"), [])
    assert verdicts == {ANA: Absent()}
    assert lister.times[1] - lister.times[0] >= 1.0


def test_the_listing_waits_for_room_in_the_shared_limiter():
    clock = FakeClock(NOW)
    limiter = CountingLimiter(clock, windows=((2, 1.0),))
    limiter.seed([NOW - 0.25, NOW - 0.25])  # the dialer just used the whole second
    _, lister, _, _ = settle([entry(ANA, SENT)], [], clock=clock, limiter=limiter)
    assert lister.times == [pytest.approx(NOW + 0.75)]
    assert limiter.acquired == [pytest.approx(NOW + 0.75)]


# --- property: Found iff a listed call to the phone was created after the attempt --------------

POOL = ["+34612345670", "+34612345671", "+34612345672"]
BASE = 1_700_000_000


def spellings(phone: str) -> list[str]:
    digits = phone[1:]
    return [phone, digits, f"+{digits[:2]} {digits[2:5]} {digits[5:8]} {digits[8:]}"]


LISTED = st.lists(
    st.tuples(
        st.integers(0, len(POOL) - 1),  # which phone
        st.integers(0, 2),  # how it is spelled
        st.integers(-400, 400),  # created, relative to BASE
        st.booleans(),  # timestamp in milliseconds
    ),
    max_size=8,
)
SENT_ATS = st.lists(
    st.one_of(st.integers(-300, 300).map(lambda d: float(BASE + d)), st.just(0.0)),
    min_size=len(POOL),
    max_size=len(POOL),
)


@settings(max_examples=150, deadline=None)
@given(listed=LISTED, sent_ats=SENT_ATS)
def test_found_iff_a_call_to_the_phone_was_created_after_the_attempt(listed, sent_ats):
    calls, created = [], {}
    for i, (who, spelling, delta, millis) in enumerate(listed):
        when = BASE + delta
        call_id = f"c-{i}"
        created[call_id] = (POOL[who], when)
        stamp = when * 1000 if millis else when
        calls.append({"id": call_id, "to": spellings(POOL[who])[spelling], "timestamp": stamp})
    entries = [
        entry(phone, sent, row=r)
        for r, (phone, sent) in enumerate(zip(POOL, sent_ats, strict=True))
    ]
    verdicts, lister, _, _ = settle(entries, calls, clock=FakeClock(BASE + 1000))
    assert len(lister.queries) == 1
    assert set(verdicts) == set(POOL)
    for e in entries:
        matching = {
            cid: when
            for cid, (phone, when) in created.items()
            if phone == e.phone and when >= e.sent_at - 120
        }
        verdict = verdicts[e.key]
        if matching:
            assert isinstance(verdict, Found)
            assert verdict.call_id in matching
            assert matching[verdict.call_id] == max(matching.values())  # the newest
        else:
            assert verdict == Absent()


def test_a_recycled_leads_earlier_calls_are_never_taken_for_this_attempt():
    sent = NOW - 600
    recycled = Entry(ANA, 2, ANA, Status.IN_DOUBT, sent_at=sent,
                     history="c-first no-answer 2023-11-14T10:00:00Z")  # fmt: skip
    # The earlier call, listed with a naive time that falls inside the 14 h slack.
    earlier = {"id": "c-first", "to": ANA, "created_time": "2023-11-14 21:00:00"}
    verdicts, _, _, _ = settle([recycled], [earlier])
    assert verdicts == {ANA: Absent()}
    this = {"id": "c-second", "to": ANA, "created_time": "2023-11-14 22:05:00"}
    verdicts, _, _, _ = settle([recycled], [this, earlier])
    assert verdicts == {ANA: Found("c-second")}
