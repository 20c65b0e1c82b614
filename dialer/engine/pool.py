"""The one rate-limited concurrent pool: dialing, reconciliation look-ups and outcome sync all
go through it, so concurrency, pacing, 429s, stopping and retries are written once.

In the style of aiometer (``amap``/``run_on_each``), with the dialer's own limiter:

* **Concurrency.** ``Pool.run(fn, items, on_result=...)`` applies the async ``fn`` to each item,
  at most ``max_at_once`` at a time, each result handed to ``on_result`` as soon as its item
  finishes (in the worker that ran it, before that worker takes another item);
  ``Pool.map(fn, items)`` streams the results in completion order as an async iterator. Items
  are taken lazily, one at a time: an item not started stays in the caller's iterator.
* **Stopping.** Once ``stop`` is set no new item starts and no paced request leaves; items in
  flight finish. A request still waiting for the windows when the stop comes is abandoned
  (``Abandoned``: nothing was sent), since the minute window can hold it for most of a minute.
* **Outcomes, not exceptions.** ``fn`` maps the errors it expects to outcome values. Anything it
  raises is a bug or an error that must end the work (a ledger error, a bad token): the other
  items are cancelled and the exception propagates as itself, as in aiometer.
* **Pacing.** ``Pool.paced(request)`` makes one request within the rate windows
  (``dialer.engine.limits.SlidingWindows``, and through it the account's budget shared on this
  machine): it counts as in flight, as *now*, until its answer; a 429 pauses the windows for
  every sender (its ``Retry-After``, else 1 s), is remembered for the climb back, and every
  ``slow_down_every``-th 429 lowers the limits. The windows are taken per request, not per
  item, so that a caller can make its item durable first and retry within the item.
* **Retries.** ``RetryPolicy`` builds the one tenacity policy (exponential backoff, full jitter
  unless ``jitter=False``, an injectable sleep); ``RetryPolicy.call`` applies it with the first
  try made before tenacity's machinery is built (the dispatcher's sends: most succeed at once);
  ``Pool.lookup`` is a paced request retried under it (a look-up rings nobody, so it is safe
  to repeat).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_random_exponential,
)

from dialer.engine.limits import Sleep
from dialer.errors import NotSent, RateLimited

T = TypeVar("T")
R = TypeVar("R")

# Every this many 429s (for a pool that asks for it), the windows' limits are lowered by this
# factor (they climb back after a quiet minute: ``SlidingWindows``).
SLOW_DOWN_EVERY = 3
SLOW_DOWN_FACTOR = 0.75
PAUSE_WITHOUT_RETRY_AFTER = 1.0  # seconds every sender waits after a 429 that names no time

_END = object()  # the end of the items (and of the results stream)


class Abandoned(Exception):
    """The pool was stopped before this request left: nothing was sent."""


class Limiter(Protocol):
    """What the pool needs of a rate limiter (``SlidingWindows`` is the real one)."""

    last_send: float

    @property
    def windows(self) -> list[tuple[int, float]]: ...

    def try_acquire(self, *, in_flight: bool = False) -> bool: ...

    async def acquire(self, *, in_flight: bool = False) -> float: ...

    def answered(self, recorded: float) -> None: ...

    def rate_limited(self) -> None: ...

    def pause_for(self, seconds: float) -> None: ...

    def slow_down(self, factor: float) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """How requests that provably did nothing are retried: up to ``max_attempts`` tries, the
    waits growing from ``backoff`` seconds, doubling, capped at ``backoff_max``, drawn at random
    below that (full jitter) unless ``jitter`` is off. ``give_up_after``: leads in a row the
    dispatcher could not get through before it calls the API unreachable."""

    max_attempts: int = 6
    backoff: float = 0.5  # the first wait's scale (s); doubles
    backoff_max: float = 30.0
    give_up_after: int = 3  # leads in a row not sent after all retries: the API is unreachable
    sleep: Sleep = asyncio.sleep  # injectable, so tests do not sleep
    jitter: bool = True

    def retrying(
        self, retry_on: type[BaseException] | tuple[type[BaseException], ...], *, tried: int = 0
    ) -> AsyncRetrying:
        """A fresh tenacity ``AsyncRetrying`` (one per request: it keeps its state) retrying on
        ``retry_on`` and re-raising the last error when the tries run out. ``tried``: tries
        already made and failed (``call``'s first), counted in the tries and the waits."""

        def wait(state: RetryCallState) -> float:
            return self.wait(state.attempt_number + tried)

        return AsyncRetrying(
            retry=retry_if_exception_type(retry_on),
            stop=stop_after_attempt(self.max_attempts - tried),
            wait=wait,
            sleep=self.sleep,
            reraise=True,
        )

    def wait(self, failed: int) -> float:
        """The wait after the ``failed``-th try failed, as tenacity computes it: ``backoff``
        doubling with each try, capped at ``backoff_max``; drawn at random below that (full
        jitter) unless ``jitter`` is off."""
        kind = wait_random_exponential if self.jitter else wait_exponential
        state = RetryCallState(None, None, (), {})  # tenacity's own formula, at try ``failed``
        state.attempt_number = failed
        return kind(multiplier=self.backoff, max=self.backoff_max)(state)

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        retry_on: type[BaseException] | tuple[type[BaseException], ...],
    ) -> T:
        """``retrying(retry_on)(fn)``, its first try made before any of tenacity's machinery is
        built: most requests succeed at once, and building it for each cost about 50 us of CPU
        a request (benchmarks/README.md). After a first failure, the same waits and tries."""
        try:
            return await fn()
        except retry_on:
            if self.max_attempts <= 1:
                raise
        await self.sleep(self.wait(1))
        return await self.retrying(retry_on, tried=1)(fn)


def lookup_policy(sleep: Sleep = asyncio.sleep, tries: int = 4) -> RetryPolicy:
    """The retries of a look-up (``GET``): ``tries`` tries, 0.5 s doubling up to 10 s."""
    return RetryPolicy(max_attempts=tries, backoff=0.5, backoff_max=10.0, sleep=sleep,
                       jitter=False)  # fmt: skip


class Pool:
    """At most ``max_at_once`` items at a time, every request within ``limiter``'s windows,
    nothing new after ``stop`` (without a ``stop`` event the pool runs until its items run out,
    and a request waits for the windows as long as they say). Counts the 429s its requests met
    (``rate_limited``) and the tightest window's limit after a slow-down (``lowered_to``)."""

    def __init__(
        self,
        *,
        max_at_once: int,
        limiter: Limiter | None = None,
        stop: asyncio.Event | None = None,
        slow_down_every: int | None = None,
        slow_down_factor: float = SLOW_DOWN_FACTOR,
    ) -> None:
        if max_at_once < 1:
            raise ValueError("max_at_once must be >= 1")
        if slow_down_every is not None and slow_down_every < 1:
            raise ValueError("slow_down_every must be >= 1")
        self.max_at_once = max_at_once
        self.limiter = limiter
        self.stoppable = stop is not None  # without a stop event, only its caller ends it
        self.stop = stop if stop is not None else asyncio.Event()
        self.slow_down_every = slow_down_every
        self.slow_down_factor = slow_down_factor
        self.rate_limited = 0  # 429 answers to this pool's requests
        self.lowered_to: int | None = None  # the tightest window's limit after a slow-down

    # --- concurrency ------------------------------------------------------------------------

    async def run(
        self,
        fn: Callable[[T], Awaitable[R]],
        items: Iterable[T],
        *,
        on_result: Callable[[R], None] | None = None,
    ) -> None:
        """``fn(item)`` for each item, at most ``max_at_once`` at a time, until the items run
        out or ``stop`` is set; ``on_result`` gets each result as its item finishes. An
        exception from ``fn`` or ``on_result`` cancels the rest and is raised as itself."""
        pending = iter(items)
        stop = self.stop

        async def worker() -> None:
            while not stop.is_set():
                item = next(pending, _END)
                if item is _END:
                    return
                result = await fn(item)  # type: ignore[arg-type]
                if on_result is not None:
                    on_result(result)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(self.max_at_once):
                    group.create_task(worker())
        except BaseExceptionGroup as failed:
            # One item's error cancelled the others: raise it as itself.
            raise failed.exceptions[0] from None

    @contextlib.asynccontextmanager
    async def map(
        self, fn: Callable[[T], Awaitable[R]], items: Iterable[T]
    ) -> AsyncIterator[AsyncIterator[R]]:
        """``run``, its results streamed in completion order::

            async with pool.map(fn, items) as results:
                async for result in results:
                    ...

        An exception from ``fn`` is raised by the iteration, after the results that came
        before it. Leaving the block early cancels the items still in flight."""
        results: asyncio.Queue[object] = asyncio.Queue()
        runner = asyncio.ensure_future(self.run(fn, items, on_result=results.put_nowait))
        runner.add_done_callback(lambda _: results.put_nowait(_END))

        async def stream() -> AsyncIterator[R]:
            while (result := await results.get()) is not _END:
                yield result  # type: ignore[misc]
            await runner  # raises what ended the run, if anything did

        try:
            yield stream()
        finally:
            if not runner.done():
                runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)

    # --- pacing -----------------------------------------------------------------------------

    async def paced(self, request: Callable[[], Awaitable[T]]) -> T:
        """``request()`` as soon as the windows allow, counted in flight until it answers.
        Raises ``Abandoned`` (nothing sent) when the pool is stopped first; a 429
        (``RateLimited``) pauses every sender before it is raised."""
        limiter = self.limiter
        if limiter is None:
            if self.stop.is_set():
                raise Abandoned
            return await request()
        recorded = await self._acquire(limiter)
        try:
            return await request()
        except RateLimited as exc:
            self._rate_limited(limiter, exc)
            raise
        finally:
            limiter.answered(recorded)  # it counts at its answer's time from now on

    async def lookup(
        self,
        request: Callable[[], Awaitable[T]],
        *,
        retry: RetryPolicy,
        retry_on: Sequence[type[BaseException]] = (NotSent,),
    ) -> T:
        """``paced(request)``, retried under ``retry`` on ``retry_on`` (for requests that ring
        nobody: a look-up may always be repeated). ``Abandoned`` is never retried."""
        return await retry.retrying(tuple(retry_on))(self.paced, request)

    async def _acquire(self, limiter: Limiter) -> float:
        """Wait for the windows and take a request in flight: its time, which ``answered``
        takes back. ``Abandoned`` (nothing taken) if the pool is stopped first."""
        if self.stop.is_set():
            raise Abandoned
        if not self.stoppable:
            return await limiter.acquire(in_flight=True)  # nothing can stop it: no race
        if limiter.try_acquire(in_flight=True):
            return limiter.last_send  # read before any await: no other send can have moved it
        acquire = asyncio.ensure_future(limiter.acquire(in_flight=True))
        stopped = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({acquire, stopped}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # cancelled (a second signal): take nothing
            acquire.cancel()
            raise
        finally:
            stopped.cancel()
        if not self.stop.is_set():
            return acquire.result()
        if acquire.done():  # let through at the moment of the stop: given back, never used
            limiter.answered(acquire.result())
        else:
            acquire.cancel()
        raise Abandoned

    def _rate_limited(self, limiter: Limiter, exc: RateLimited) -> None:
        """A 429: the whole pool (every process on the account, with a budget) waits, not
        only this request; repeated ones lower the limits."""
        self.rate_limited += 1
        limiter.rate_limited()
        wait = exc.retry_after if exc.retry_after is not None else PAUSE_WITHOUT_RETRY_AFTER
        limiter.pause_for(wait)
        if self.slow_down_every and self.rate_limited % self.slow_down_every == 0:
            # The API keeps refusing: our idea of its limit is too generous.
            limiter.slow_down(self.slow_down_factor)
            self.lowered_to = limiter.windows[-1][0]
