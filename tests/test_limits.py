"""Tests for dialer.engine.limits.SlidingWindows, on a fake clock whose sleep advances time."""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.engine.limits import SlidingWindows

API_WINDOWS = [(10, 1.0), (100, 60.0)]


class FakeClock:
    """A clock that only moves when someone sleeps on it (or the test advances it)."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        assert seconds > 0, "the limiter must not sleep for nothing"
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # let other tasks run, as a real sleep would


def limiter(
    windows: Sequence[tuple[int, float]] = API_WINDOWS, margin: float = 0.0, start: float = 0.0
) -> tuple[SlidingWindows, FakeClock]:
    clock = FakeClock(start)
    return SlidingWindows(windows, margin=margin, clock=clock, sleep=clock.sleep), clock


def acquire_many(
    lim: SlidingWindows, clock: FakeClock, n: int, gaps: Sequence[float] = ()
) -> list[float]:
    """``n`` acquisitions in a row; before the i-th the caller idles ``gaps[i]`` seconds."""

    async def go() -> list[float]:
        times = []
        for i in range(n):
            if i < len(gaps):
                clock.now += gaps[i]
            times.append(await lim.acquire())
        return times

    return asyncio.run(go())


def worst_window(times: Sequence[float], period: float) -> int:
    """The most acquisitions in any half-open window ``[t, t + period)`` starting at one of them.

    A window holding the most sends can always be slid right until it starts at a send, so
    checking the windows that start at each send checks them all.
    """
    ordered = sorted(times)
    return max(
        (bisect.bisect_left(ordered, t + period) - i for i, t in enumerate(ordered)), default=0
    )


def assert_windows_hold(times: Sequence[float], windows: Sequence[tuple[int, float]]) -> None:
    assert list(times) == sorted(times), "acquisition times go backwards"
    for limit, period in windows:
        assert worst_window(times, period) <= limit, (limit, period)


# --- the checker itself ---------------------------------------------------------------------------


def test_worst_window_counts_half_open_windows() -> None:
    assert worst_window([0.0, 0.5, 1.0], 1.0) == 2  # 1.0 is outside [0, 1)
    assert worst_window([0.0, 0.5, 0.999], 1.0) == 3
    assert worst_window([], 1.0) == 0


# --- windows --------------------------------------------------------------------------------------


def test_300_acquisitions_respect_both_windows() -> None:
    lim, clock = limiter()
    times = acquire_many(lim, clock, 300)
    assert_windows_hold(times, API_WINDOWS)
    # and the windows are filled exactly to their limits: nothing wasted
    assert worst_window(times, 1.0) == 10
    assert worst_window(times, 60.0) == 100


def test_throughput_is_not_wasted() -> None:
    lim, clock = limiter()
    times = acquire_many(lim, clock, 300)
    assert times[:10] == [0.0] * 10  # a full burst at once
    assert times[10] == pytest.approx(1.0)
    assert times[99] <= 10.0  # the 100th within ~10 s (10 per second)
    assert times[99] == pytest.approx(9.0)
    assert times[100] == pytest.approx(60.0)  # the 101st as the first send leaves the minute
    assert times[199] == pytest.approx(69.0)
    assert times[200] == pytest.approx(120.0)
    # sustained: exactly 100 per 60 s, each in bursts of 10 per second
    for i, t in enumerate(times):
        assert t == pytest.approx(60.0 * (i // 100) + (i % 100) // 10), i


def test_margin_widens_every_window() -> None:
    lim, clock = limiter([(2, 1.0)], margin=0.25)
    assert lim.windows == [(2, 1.25)]
    times = acquire_many(lim, clock, 5)
    assert times == pytest.approx([0.0, 0.0, 1.25, 1.25, 2.5])


def test_default_margin_is_positive() -> None:
    lim = SlidingWindows([(10, 1.0)])
    ((limit, period),) = lim.windows
    assert limit == 10
    assert period > 1.0


def test_idle_caller_is_not_held() -> None:
    lim, clock = limiter([(2, 1.0)])
    times = acquire_many(lim, clock, 4, gaps=[0.0, 0.0, 5.0, 0.0])
    assert times == [0.0, 0.0, 5.0, 5.0]
    assert clock.sleeps == []


@settings(max_examples=150, deadline=None)
@given(
    windows=st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=15),
            st.floats(min_value=0.01, max_value=100.0, allow_nan=False, allow_infinity=False),
        ),
        min_size=1,
        max_size=3,
    ),
    margin=st.sampled_from([0.0, 0.0, 0.1]),
    gaps=st.lists(
        st.one_of(
            st.just(0.0),
            st.floats(min_value=0.0, max_value=120.0, allow_nan=False, allow_infinity=False),
        ),
        min_size=1,
        max_size=60,
    ),
    start=st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False),
)
def test_windows_property(
    windows: list[tuple[int, float]], margin: float, gaps: list[float], start: float
) -> None:
    lim, clock = limiter(windows, margin=margin, start=start)
    times = acquire_many(lim, clock, len(gaps), gaps=gaps)
    assert_windows_hold(times, [(limit, period + margin) for limit, period in windows])
    # and never waits longer than it must: each send happens as soon as the caller asked, or
    # exactly when the last full window lets it through
    for i, t in enumerate(times):
        asked = (times[i - 1] if i else start) + gaps[i]
        boundaries = [times[i - limit] + period + margin for limit, period in windows if i >= limit]
        assert t == pytest.approx(max([asked, *boundaries]), abs=1e-6)


# --- pause ----------------------------------------------------------------------------------------


def test_pause_holds_every_acquirer() -> None:
    lim, _ = limiter()

    async def go() -> list[float]:
        lim.pause_for(5.0)
        return list(await asyncio.gather(*(lim.acquire() for _ in range(4))))

    times = asyncio.run(go())
    assert times == [5.0] * 4
    assert lim.delay() == 0.0  # pause over, and 4 sends leave room in both windows


def test_pause_never_shortens() -> None:
    lim, clock = limiter()
    lim.pause_for(10.0)
    lim.pause_for(3.0)
    assert lim.delay() == 10.0
    clock.now = 2.0
    lim.pause_for(1.0)
    assert lim.delay() == 8.0
    lim.pause_for(-5.0)
    assert lim.delay() == 8.0
    lim.pause_for(20.0)  # a longer pause does extend it
    assert lim.delay() == 20.0
    assert acquire_many(lim, clock, 1) == [22.0]


def test_pause_during_a_wait_is_honoured() -> None:
    """A 429 seen while another acquirer sleeps for its window still holds that acquirer."""
    clock = FakeClock()
    paused: list[float] = []

    async def sleep_then_pause(seconds: float) -> None:
        if not paused:
            paused.append(clock.now)
            lim.pause_for(30.0)  # e.g. another worker just got a 429
        await clock.sleep(seconds)

    lim = SlidingWindows([(1, 1.0)], margin=0.0, clock=clock, sleep=sleep_then_pause)
    times = acquire_many(lim, clock, 2)
    assert paused == [0.0]
    assert times == [0.0, 30.0]


def test_pause_after_sends_combines_with_windows() -> None:
    lim, clock = limiter([(2, 10.0)])
    times = acquire_many(lim, clock, 2)
    lim.pause_for(3.0)
    assert lim.delay() == 10.0  # the window is the longer wait
    times += acquire_many(lim, clock, 1)
    assert times == [0.0, 0.0, 10.0]


# --- seed, slow_down, delay -----------------------------------------------------------------------


def test_seed_counts_earlier_sends() -> None:
    lim, clock = limiter(start=100.0)
    lim.seed([99.5] * 10)  # ten sends half a second ago, e.g. by a previous run
    assert lim.delay() == pytest.approx(0.5)
    times = acquire_many(lim, clock, 1)
    assert times == [pytest.approx(100.5)]


def test_seed_fills_the_minute_window() -> None:
    lim, clock = limiter(start=100.0)
    lim.seed([50.0 + 0.1 * i for i in range(100)])  # 100 sends in the last 50 s
    assert lim.delay() == pytest.approx(10.0)  # the first of them leaves the window at 110
    times = acquire_many(lim, clock, 3)
    assert_windows_hold([50.0 + 0.1 * i for i in range(100)] + times, API_WINDOWS)
    assert times[0] == pytest.approx(110.0)


def test_seed_merges_and_ignores_old_sends() -> None:
    lim, clock = limiter([(2, 1.0)], start=10.0)
    lim.seed([1.0, 2.0, 3.0])  # long gone
    assert lim.delay() == 0.0
    acquire_many(lim, clock, 1)  # at 10.0
    lim.seed([9.5])  # unordered with respect to the send made here
    assert lim.delay() == pytest.approx(0.5)


def test_seed_nothing() -> None:
    lim, _ = limiter()
    lim.seed([])
    assert lim.delay() == 0.0


def test_slow_down_halves_the_limits() -> None:
    lim, clock = limiter()
    lim.quiet = float("inf")  # no climbing back in this test
    lim.slow_down(0.5)
    assert lim.windows == [(5, 1.0), (50, 60.0)]
    times = acquire_many(lim, clock, 60)
    assert_windows_hold(times, [(5, 1.0), (50, 60.0)])
    assert times[4] == 0.0
    assert times[5] == pytest.approx(1.0)
    assert times[50] == pytest.approx(60.0)


def test_slow_down_keeps_at_least_one() -> None:
    lim, _ = limiter([(3, 1.0)])
    lim.slow_down(0.1)
    assert lim.windows == [(1, 1.0)]
    lim.slow_down(0.5)
    assert lim.windows == [(1, 1.0)]


def test_delay_is_zero_when_empty() -> None:
    lim, clock = limiter()
    assert lim.delay() == 0.0
    assert lim.delay(now=-1000.0) == 0.0
    clock.now = 12345.0
    assert lim.delay() == 0.0


def test_delay_takes_an_explicit_now() -> None:
    lim, clock = limiter([(1, 2.0)])
    acquire_many(lim, clock, 1)
    assert lim.delay() == 2.0
    assert lim.delay(now=1.5) == 0.5
    assert lim.delay(now=5.0) == 0.0


def test_acquire_returns_its_time_and_does_not_sleep_with_room() -> None:
    lim, clock = limiter(start=7.0)
    assert acquire_many(lim, clock, 10) == [7.0] * 10
    assert clock.sleeps == []


# --- concurrency ----------------------------------------------------------------------------------


def test_concurrent_acquirers_are_served_in_order() -> None:
    lim, _ = limiter()
    order: list[tuple[int, float]] = []

    async def one(i: int) -> None:
        t = await lim.acquire()
        order.append((i, t))

    async def go() -> None:
        await asyncio.gather(*(one(i) for i in range(250)))

    asyncio.run(go())
    assert [i for i, _ in order] == list(range(250))
    times = [t for _, t in order]
    assert_windows_hold(times, API_WINDOWS)
    assert times[99] == pytest.approx(9.0)
    assert times[100] == pytest.approx(60.0)
    assert times[249] == pytest.approx(124.0)


def test_concurrent_acquirers_with_arrivals_over_time() -> None:
    lim, clock = limiter([(3, 1.0)])

    async def go() -> list[float]:
        first = [asyncio.ensure_future(lim.acquire()) for _ in range(5)]
        await asyncio.sleep(0)
        await asyncio.gather(*first)
        clock.now += 10.0  # idle
        later = [asyncio.ensure_future(lim.acquire()) for _ in range(4)]
        return [*(await asyncio.gather(*first)), *(await asyncio.gather(*later))]

    times = asyncio.run(go())
    assert times == pytest.approx([0.0, 0.0, 0.0, 1.0, 1.0, 11.0, 11.0, 11.0, 12.0])
    assert_windows_hold(times, [(3, 1.0)])


# --- construction ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "windows",
    [[], [(0, 1.0)], [(-1, 1.0)], [(10, 1.0), (0, 60.0)], [(10, 0.0)], [(10, -1.0)]],
)
def test_constructor_rejects_bad_windows(windows: list[tuple[int, float]]) -> None:
    with pytest.raises(ValueError, match="limit >= 1"):
        SlidingWindows(windows)


def test_windows_property_is_a_copy() -> None:
    lim, _ = limiter()
    lim.windows.append((1, 1.0))
    assert lim.windows == [(10, 1.0), (100, 60.0)]


def test_try_acquire_takes_room_only_when_nobody_waits() -> None:
    lim, clock = limiter([(2, 1.0)], start=5.0)
    assert lim.try_acquire() and lim.try_acquire()
    assert not lim.try_acquire()  # the window is full: not recorded
    assert lim.delay() == pytest.approx(1.0)
    clock.now += 1.0
    lim.pause_for(0.5)
    assert not lim.try_acquire()  # paused

    async def go() -> tuple[bool, float]:
        waiter = asyncio.ensure_future(lim.acquire())
        await asyncio.sleep(0)  # it holds the lock, and its sleep has moved the clock past
        assert lim.delay() == 0  # the pause: there is room again, but the waiter came first
        jumped = lim.try_acquire()
        return jumped, await waiter

    jumped, served = asyncio.run(go())
    assert not jumped and served == pytest.approx(6.5)
    assert_windows_hold([5.0, 5.0, served], [(2, 1.0)])


# --- a send counts at its answer's time once answered ------------------------------------------


def test_a_send_answered_late_counts_at_its_answer_so_a_stall_cannot_crowd_the_next_window():
    """The first burst is allowed at 0, but (a stall between the windows and the socket) the
    server sees it arrive up to its answer at 0.3 s: the next burst must wait until 1.3 s, not
    1.0 s, or one of the server's 1 s windows would hold more than 10."""
    lim, clock = limiter([(10, 1.0)])

    async def go() -> list[float]:
        first = [await lim.acquire() for _ in range(10)]
        clock.now = 0.3
        for recorded in first:
            lim.answered(recorded)
        return [await lim.acquire() for _ in range(10)]

    second = asyncio.run(go())
    assert second[0] == pytest.approx(1.3)
    assert all(t >= 1.3 for t in second)


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.floats(0.0, 0.3), min_size=1, max_size=60),
    delays=st.lists(st.floats(0.0, 0.5), min_size=60, max_size=60),
)
def test_arrivals_anywhere_before_the_answer_never_overfill_a_window(gaps, delays):
    """Each send reaches the server some time between being allowed and its answer; whatever
    that time, with every send answered before the next is allowed (one worker), no 1 s window
    of arrivals holds more than the limit."""
    lim, clock = limiter([(3, 1.0)])
    arrivals: list[float] = []

    async def go() -> None:
        for gap, delay in zip(gaps, delays, strict=False):
            clock.now += gap
            recorded = await lim.acquire()
            clock.now += delay  # in flight: the server sees it at the end, the worst case
            arrivals.append(clock.now)
            lim.answered(recorded)

    asyncio.run(go())
    arrivals.sort()
    for i, start in enumerate(arrivals):
        assert bisect.bisect_left(arrivals, start + 1.0) - i <= 3


def test_answered_never_moves_a_send_earlier_and_ignores_unknown_times():
    lim, _ = limiter([(2, 1.0)])

    async def go() -> None:
        await lim.acquire()
        await lim.acquire()

    asyncio.run(go())
    lim.answered(-5.0)  # not a recorded send
    lim.answered(0.0)  # the clock did not move: nothing to do
    assert lim.delay() == pytest.approx(1.0)
