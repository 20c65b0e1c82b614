"""The one rate-limited pool (``dialer.engine.pool``), in-process: concurrency, the limiter,
stopping, streaming, errors, retries.

Nothing here sleeps for real: items wait on events the test sets, the limiter is a fake that
records what it was asked (or a real ``SlidingWindows`` on a fake clock), retries sleep on a
fake clock.
"""

from __future__ import annotations

import asyncio

import pytest

from dialer.engine.limits import SlidingWindows
from dialer.engine.pool import Abandoned, Pool, RetryPolicy, lookup_policy
from dialer.errors import NotSent, RateLimited, Rejected
from tests.conftest import FakeClock


class FakeLimiter:
    """Records every call; lets a request through at once unless ``hold`` is set, in which
    case ``acquire`` waits until it is cleared (``try_acquire`` always declines then)."""

    def __init__(self, windows=((10, 1.0), (100, 60.0))) -> None:
        self.events: list[tuple] = []
        self._windows = list(windows)
        self.last_send = 0.0
        self.hold = False
        self.released = asyncio.Event()
        self.flying = 0
        self.most_flying = 0

    @property
    def windows(self) -> list[tuple[int, float]]:
        return list(self._windows)

    def _take(self, how: str) -> float:
        self.last_send += 1.0
        self.flying += 1
        self.most_flying = max(self.most_flying, self.flying)
        self.events.append((how, self.last_send))
        return self.last_send

    def try_acquire(self, *, in_flight: bool = False) -> bool:
        assert in_flight
        if self.hold:
            return False
        self._take("try_acquire")
        return True

    async def acquire(self, *, in_flight: bool = False) -> float:
        assert in_flight
        if self.hold:
            await self.released.wait()
        return self._take("acquire")

    def answered(self, recorded: float) -> None:
        self.flying -= 1
        self.events.append(("answered", recorded))

    def rate_limited(self) -> None:
        self.events.append(("rate_limited",))

    def pause_for(self, seconds: float) -> None:
        self.events.append(("pause_for", seconds))

    def slow_down(self, factor: float) -> None:
        self.events.append(("slow_down", factor))
        self._windows = [(max(1, int(limit * factor)), period) for limit, period in self._windows]


async def collect(pool: Pool, fn, items) -> list:
    got: list = []
    await pool.run(fn, items, on_result=got.append)
    return got


# --- concurrency ---------------------------------------------------------------------------


@pytest.mark.parametrize("max_at_once", [1, 3, 7])
def test_concurrency_never_exceeds_max_at_once(max_at_once):
    running = most = 0

    async def fn(i: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        for _ in range(i % 4 + 1):  # items of different lengths, interleaved
            await asyncio.sleep(0)
        running -= 1
        return i * 10

    got = asyncio.run(collect(Pool(max_at_once=max_at_once), fn, range(30)))
    assert most == max_at_once  # full use of the room, never more
    assert sorted(got) == [i * 10 for i in range(30)]


def test_items_are_taken_lazily_one_at_a_time():
    pulled: list[int] = []

    def items():
        for i in range(10):
            pulled.append(i)
            yield i

    seen_when: list[int] = []

    async def fn(i: int) -> int:
        seen_when.append(len(pulled))
        await asyncio.sleep(0)
        return i

    asyncio.run(collect(Pool(max_at_once=2), fn, items()))
    assert seen_when[:2] == [1, 2]  # the second item was pulled only when a worker had room
    assert max(seen_when) <= 10


def test_empty_input_calls_nothing_and_streams_nothing():
    called: list[int] = []

    async def fn(i: int) -> int:
        called.append(i)
        return i

    async def main() -> list:
        pool = Pool(max_at_once=4, limiter=FakeLimiter())
        got = await collect(pool, fn, [])
        async with pool.map(fn, iter(())) as results:
            got += [r async for r in results]
        return got

    assert asyncio.run(main()) == [] and called == []


def test_max_at_once_must_be_positive():
    with pytest.raises(ValueError, match="max_at_once"):
        Pool(max_at_once=0)


# --- streaming -----------------------------------------------------------------------------


def test_results_stream_in_completion_order():
    async def main() -> list[int]:
        gates = {i: asyncio.Event() for i in range(3)}

        async def fn(i: int) -> int:
            await gates[i].wait()
            return i

        order = [2, 0, 1]
        gates[order[0]].set()
        got: list[int] = []
        async with Pool(max_at_once=3).map(fn, range(3)) as results:
            async for result in results:
                got.append(result)
                if len(got) < len(order):
                    gates[order[len(got)]].set()  # the next finishes only after this one arrived
        return got

    assert asyncio.run(main()) == [2, 0, 1]


def test_leaving_the_stream_early_cancels_the_items_in_flight():
    cancelled: list[int] = []

    async def main() -> None:
        async def fn(i: int) -> int:
            if i == 0:
                return 0
            try:
                await asyncio.Event().wait()  # never set
            except asyncio.CancelledError:
                cancelled.append(i)
                raise
            return i

        async with Pool(max_at_once=3).map(fn, range(3)) as results:
            async for _ in results:
                break

    asyncio.run(main())
    assert sorted(cancelled) == [1, 2]


# --- errors --------------------------------------------------------------------------------


def test_an_exception_in_the_function_cancels_the_rest_and_propagates_as_itself():
    started: list[int] = []
    cancelled: list[int] = []

    async def fn(i: int) -> int:
        started.append(i)
        if i == 2:
            await asyncio.sleep(0)  # the others are in flight by now
            raise KeyError("a bug")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(i)
            raise
        return i

    with pytest.raises(KeyError, match="a bug"):  # not an ExceptionGroup
        asyncio.run(collect(Pool(max_at_once=3), fn, range(10)))
    assert started == [0, 1, 2]  # no item started after the error
    assert sorted(cancelled) == [0, 1]


def test_the_stream_yields_what_finished_then_raises_the_error():
    async def main() -> list[int]:
        async def fn(i: int) -> int:
            if i == 1:
                raise ValueError("ledger broken")
            return i

        got: list[int] = []
        async with Pool(max_at_once=1).map(fn, range(5)) as results:
            async for result in results:
                got.append(result)
        return got

    with pytest.raises(ValueError, match="ledger broken"):
        asyncio.run(main())


def test_an_exception_in_on_result_propagates_too():
    async def fn(i: int) -> int:
        return i

    def on_result(result: int) -> None:
        if result == 3:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        asyncio.run(Pool(max_at_once=2).run(fn, range(10), on_result=on_result))


# --- stop ----------------------------------------------------------------------------------


def test_after_stop_no_new_item_starts_and_items_in_flight_finish():
    async def main():
        stop = asyncio.Event()
        pool = Pool(max_at_once=2, stop=stop)
        started: list[int] = []
        finish = asyncio.Event()

        async def fn(i: int) -> int:
            started.append(i)
            if i == 1:
                stop.set()  # a signal while items 0 and 1 are in flight
                finish.set()
            await finish.wait()
            await asyncio.sleep(0)
            return i

        items = iter(range(10))
        got = await collect(pool, fn, items)
        return started, got, next(items)

    started, got, first_left = asyncio.run(main())
    assert started == [0, 1]
    assert sorted(got) == [0, 1]  # both finished after the stop
    assert first_left == 2  # the items not started stay in the caller's iterator


def test_a_stop_before_the_start_starts_nothing():
    async def fn(i: int) -> int:
        raise AssertionError("started")

    async def main() -> list:
        stop = asyncio.Event()
        stop.set()
        return await collect(Pool(max_at_once=3, stop=stop), fn, range(3))

    assert asyncio.run(main()) == []


def test_a_stop_frees_a_request_waiting_for_the_windows_and_nothing_is_sent():
    async def main():
        limiter = FakeLimiter()
        limiter.hold = True  # the windows are full: the request waits
        stop = asyncio.Event()
        pool = Pool(max_at_once=1, limiter=limiter, stop=stop)
        sent: list[str] = []

        async def request() -> str:
            sent.append("x")
            return "x"

        waiting = asyncio.ensure_future(pool.paced(request))
        for _ in range(3):
            await asyncio.sleep(0)
        assert not waiting.done()
        stop.set()
        with pytest.raises(Abandoned):
            await waiting
        with pytest.raises(Abandoned):  # and none leaves after it
            await pool.paced(request)
        return sent, limiter.events

    sent, events = asyncio.run(main())
    assert sent == [] and events == []  # nothing taken from the windows, nothing to answer


# --- the limiter ---------------------------------------------------------------------------


def test_every_request_is_taken_from_the_limiter_and_answered():
    async def main():
        limiter = FakeLimiter()
        pool = Pool(max_at_once=4, limiter=limiter, stop=asyncio.Event())
        order: list[tuple] = []

        async def fn(i: int) -> int:
            async def request() -> int:
                order.append(("request", limiter.last_send))
                await asyncio.sleep(0)
                return i

            return await pool.paced(request)

        got = await collect(pool, fn, range(12))
        return limiter, order, got

    limiter, order, got = asyncio.run(main())
    taken = [e for e in limiter.events if e[0] in ("try_acquire", "acquire")]
    answered = [e for e in limiter.events if e[0] == "answered"]
    assert len(taken) == len(answered) == len(order) == 12 and sorted(got) == list(range(12))
    assert sorted(t for _, t in answered) == sorted(t for _, t in taken)  # each one given back
    assert limiter.most_flying <= 4 and limiter.flying == 0


def test_a_pool_without_a_stop_waits_for_the_windows_with_acquire():
    async def main():
        limiter = FakeLimiter()
        pool = Pool(max_at_once=1, limiter=limiter)

        async def request() -> str:
            return "ok"

        return await pool.paced(request), limiter.events

    answer, events = asyncio.run(main())
    assert answer == "ok" and [e[0] for e in events] == ["acquire", "answered"]


def test_a_request_counts_in_flight_in_the_real_windows_until_its_answer():
    async def main():
        clock = FakeClock()
        limiter = SlidingWindows([(1, 1.0)], margin=0.0, clock=clock, sleep=clock.sleep)
        pool = Pool(max_at_once=2, limiter=limiter, stop=asyncio.Event())
        seen: list[int] = []

        async def request() -> None:
            seen.append(limiter.in_flight)
            await clock.sleep(5.0)  # a slow answer

        await pool.paced(request)
        return seen, limiter.in_flight, limiter.delay()

    seen, after, delay = asyncio.run(main())
    assert seen == [1] and after == 0
    assert delay == 1.0  # counted at its answer's time, 5 s after it was let through


def test_a_429_pauses_everyone_and_every_third_lowers_the_limits():
    async def main():
        limiter = FakeLimiter()
        pool = Pool(max_at_once=1, limiter=limiter, stop=asyncio.Event(), slow_down_every=3)
        waits = iter([7.0, None, 2.0])

        async def refused() -> None:
            raise RateLimited("429", retry_after=next(waits))

        for _ in range(3):
            with pytest.raises(RateLimited):
                await pool.paced(refused)
        return pool, limiter

    pool, limiter = asyncio.run(main())
    kinds = [e for e in limiter.events if e[0] in ("pause_for", "slow_down", "rate_limited")]
    assert kinds == [
        ("rate_limited",), ("pause_for", 7.0),
        ("rate_limited",), ("pause_for", 1.0),  # no Retry-After: one second
        ("rate_limited",), ("pause_for", 2.0), ("slow_down", 0.75),
    ]  # fmt: skip
    assert pool.rate_limited == 3 and pool.lowered_to == 75
    assert sum(e[0] == "answered" for e in limiter.events) == 3  # each refusal given back


def test_a_pool_that_does_not_slow_down_only_pauses():
    async def main():
        limiter = FakeLimiter()
        pool = Pool(max_at_once=1, limiter=limiter)

        async def refused() -> None:
            raise RateLimited("429", retry_after=None)

        for _ in range(6):
            with pytest.raises(RateLimited):
                await pool.paced(refused)
        return pool, limiter

    pool, limiter = asyncio.run(main())
    assert pool.rate_limited == 6 and pool.lowered_to is None
    assert not any(e[0] == "slow_down" for e in limiter.events)


# --- retries -------------------------------------------------------------------------------


def test_a_lookup_is_retried_each_try_paced_with_doubling_waits():
    clock = FakeClock()

    async def main():
        limiter = FakeLimiter()
        pool = Pool(max_at_once=1, limiter=limiter)
        tries = 0

        async def flaky() -> str:
            nonlocal tries
            tries += 1
            if tries < 4:
                raise NotSent("connection refused")
            return "listed"

        answer = await pool.lookup(flaky, retry=lookup_policy(clock.sleep, tries=4))
        return answer, tries, limiter

    answer, tries, limiter = asyncio.run(main())
    assert answer == "listed" and tries == 4
    assert sum(e[0] == "acquire" for e in limiter.events) == 4  # every try within the windows
    assert clock.sleeps == [0.5, 1.0, 2.0]  # no jitter for look-ups


def test_a_lookup_gives_up_after_its_tries_and_raises_the_last_error():
    clock = FakeClock()

    async def refused() -> str:
        raise NotSent("connection refused")

    async def main() -> str:
        pool = Pool(max_at_once=1, limiter=FakeLimiter())
        return await pool.lookup(refused, retry=lookup_policy(clock.sleep, tries=3))

    with pytest.raises(NotSent, match="connection refused"):
        asyncio.run(main())
    assert len(clock.sleeps) == 2


def test_the_retry_policy_jitters_below_the_doubling_cap():
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=5, backoff=1.0, backoff_max=3.0, sleep=clock.sleep)

    async def refused() -> None:
        raise NotSent("no route")

    with pytest.raises(NotSent):
        asyncio.run(policy.retrying(NotSent)(refused))
    caps = [1.0, 2.0, 3.0, 3.0]
    assert len(clock.sleeps) == 4
    assert all(0 <= slept <= cap for slept, cap in zip(clock.sleeps, caps, strict=True))


@pytest.mark.parametrize("fails", [0, 1, 2, 4, 9])
def test_call_retries_exactly_as_retrying_does(fails):
    """``RetryPolicy.call`` (the first try without tenacity) makes the same tries and waits as
    ``retrying``: the same sleeps, the same result or last error."""

    def attempt(clock: FakeClock, runner) -> tuple[object, list[float], int]:
        tries = 0

        async def flaky() -> str:
            nonlocal tries
            tries += 1
            if tries <= fails:
                raise NotSent(f"refused {tries}")
            return f"ok after {tries}"

        try:
            result: object = asyncio.run(runner(flaky))
        except NotSent as exc:
            result = f"raised {exc}"
        return result, clock.sleeps, tries

    fast, tenacity = FakeClock(), FakeClock()
    policy = RetryPolicy(max_attempts=5, backoff=1.0, backoff_max=3.0, jitter=False)
    fast_policy = RetryPolicy(**{**policy.__dict__, "sleep": fast.sleep})
    slow_policy = RetryPolicy(**{**policy.__dict__, "sleep": tenacity.sleep})
    got = attempt(fast, lambda fn: fast_policy.call(fn, NotSent))
    want = attempt(tenacity, lambda fn: slow_policy.retrying(NotSent)(fn))
    assert got == want
    assert got[1] == [1.0, 2.0, 3.0, 3.0][: min(fails, 4)]


def test_call_does_not_retry_other_errors_nor_sleep():
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=5, sleep=clock.sleep)

    async def refused() -> None:
        raise Rejected("HTTP 400 invalid_phone")

    with pytest.raises(Rejected):
        asyncio.run(policy.call(refused, NotSent))
    assert clock.sleeps == []


def test_call_jitters_below_the_same_caps():
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=5, backoff=1.0, backoff_max=3.0, sleep=clock.sleep)

    async def refused() -> None:
        raise NotSent("no route")

    with pytest.raises(NotSent):
        asyncio.run(policy.call(refused, NotSent))
    caps = [1.0, 2.0, 3.0, 3.0]
    assert len(clock.sleeps) == 4
    assert all(0 <= slept <= cap for slept, cap in zip(clock.sleeps, caps, strict=True))
