"""The dispatcher: a pool of workers that dials leads within the rate limits, with retries.

Owns the order of one lead's send, which is what keeps a phone from ringing twice:

1. ``ledger.intent_async(lead)``: durable (fsynced, shared with concurrent intents) before
   anything is sent;
2. wait for the rate windows (and any shared 429 pause), then ``send(lead)`` at once, so the
   windows count sends, not fsyncs; retry from 1, with jittered exponential backoff, only on
   ``NotSent`` (provably no call created: the ledger records that too, so a crash during the
   backoff leaves no doubt). A crash while waiting for the windows leaves the lead in doubt;
   reconciliation then finds it absent and it is dialed again;
3. ``ledger.outcome(...)``: ``called`` with the id, ``failed`` (the API refused it),
   ``in_doubt`` (sent, answer lost: never retried blindly; the time we gave up is kept, since
   the grace before a listing may prove it absent counts from then) or ``pending`` (never
   sent).

Concurrency and rate are separate knobs. A worker never raises a send error into the pool: it
returns an ``Outcome``, streamed to ``on_outcome`` as leads finish. A 401/403 stops the pool
after the first such answer; so does ``stop`` (a signal): no new lead starts, leads in flight
finish. Ledger errors and bugs do propagate, cancelling the pool.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from dialer.engine.limits import Sleep, SlidingWindows
from dialer.errors import AuthError, NotSent, OutcomeUnknown, RateLimited, Rejected
from dialer.model import Lead, Outcome, Status
from dialer.store.ledger import Ledger

# Every this many 429s in one run, the windows' limits are lowered by this factor (they climb
# back after a quiet minute: ``SlidingWindows``).
SLOW_DOWN_EVERY = 3
SLOW_DOWN_FACTOR = 0.75

Send = Callable[[Lead], Awaitable[str]]  # returns the call id, or raises a SendError


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of sends that provably created no call."""

    max_attempts: int = 6
    backoff: float = 0.5  # the first wait's scale (s); doubles, with full jitter
    backoff_max: float = 30.0
    give_up_after: int = 3  # leads in a row not sent after all retries: the API is unreachable
    sleep: Sleep = asyncio.sleep  # injectable, so tests do not sleep


@dataclass
class DispatchResult:
    """What the pool did: counts per status, and why it ended early if it did."""

    counts: dict[str, int] = field(default_factory=dict)
    sent: int = 0  # POST /call requests made
    rate_limited: int = 0  # 429 answers seen
    lowered_to: int | None = None  # the tightest window's limit after repeated 429s
    auth_error: AuthError | None = None
    unreachable: NotSent | None = None  # set when several leads in a row never got through
    stopped: bool = False  # a stop was requested before every lead was started
    first_send: float = 0.0  # wall time of the first request (0: none sent)
    last_send: float = 0.0  # wall time of the last request


class _Abandoned(Exception):
    """The run is stopping before this lead's next send: it stays pending."""


async def _acquire_unless_stopped(limiter: SlidingWindows, stop: asyncio.Event) -> float | None:
    """Wait for the rate windows and take a send in flight: its time, the token ``answered``
    takes back; None (nothing taken) if the run is stopped meanwhile, since the minute window
    can keep a sender waiting for most of a minute."""
    if stop.is_set():
        return None
    if limiter.try_acquire(in_flight=True):
        return limiter.last_send  # read before any await: no other send can have moved it
    acquire = asyncio.ensure_future(limiter.acquire(in_flight=True))
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({acquire, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if acquire.done():
        return acquire.result()
    acquire.cancel()
    return None


async def dispatch(
    leads: Iterable[Lead],
    send: Send,
    *,
    ledger: Ledger,
    limiter: SlidingWindows,
    concurrency: int = 10,
    retry: RetryPolicy | None = None,
    stop: asyncio.Event | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    admit: Callable[[Lead], str | None] | None = None,
) -> DispatchResult:
    """Dial every lead the ledger says to, at most ``concurrency`` at a time.

    ``admit(lead)``, checked just before each lead is dialed, returns why the lead may not be
    called now (outside its calling hours): the lead is then deferred, not dialed."""
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    retry = retry or RetryPolicy()
    stop = stop or asyncio.Event()
    result = DispatchResult()
    pending = iter(leads)
    streak: list[NotSent] = []  # leads in a row that never got through

    async def one(lead: Lead) -> Outcome:
        attempts = 0
        sent_at = 0.0  # when the last request left: the rate windows of a later run count it

        async def attempt() -> str:
            nonlocal attempts, sent_at
            if stop.is_set():
                raise _Abandoned  # nothing written, nothing sent
            await ledger.intent_async(lead)  # durable BEFORE the first byte is sent
            # The send counts as in flight (now, in every window) until its answer arrives.
            recorded = await _acquire_unless_stopped(limiter, stop)
            if recorded is None:
                ledger.not_sent(lead, "stopped before sending")
                raise _Abandoned
            attempts += 1
            result.sent += 1
            sent_at = time.time()
            result.first_send = result.first_send or sent_at
            result.last_send = sent_at
            try:
                return await send(lead)
            except NotSent as exc:
                ledger.not_sent(lead, str(exc))  # proven: this attempt rang nobody
                if isinstance(exc, RateLimited):
                    result.rate_limited += 1
                    limiter.rate_limited()
                    # The whole pool waits, not only this worker.
                    limiter.pause_for(exc.retry_after if exc.retry_after is not None else 1.0)
                    if result.rate_limited % SLOW_DOWN_EVERY == 0:
                        # The API keeps refusing: our idea of its limit is too generous.
                        limiter.slow_down(SLOW_DOWN_FACTOR)
                        result.lowered_to = limiter.windows[-1][0]
                raise
            finally:
                limiter.answered(recorded)  # it counts at its answer's time from now on

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(NotSent),
            stop=stop_after_attempt(retry.max_attempts),
            wait=wait_random_exponential(multiplier=retry.backoff, max=retry.backoff_max),
            sleep=retry.sleep,
            reraise=True,
        )
        try:
            call_id = await retrying(attempt)
        except AuthError as exc:
            result.auth_error = result.auth_error or exc
            stop.set()
            return Outcome(lead, Status.PENDING, attempts=attempts, error=str(exc), sent_at=sent_at)
        except Rejected as exc:
            return Outcome(lead, Status.FAILED, attempts=attempts, error=str(exc), sent_at=sent_at)
        except NotSent as exc:
            error = f"not sent after {attempts} attempts: {exc}"
            streak.append(exc)
            if len(streak) >= retry.give_up_after:
                # Lead after lead failed to get through: the API is out of reach. Stop
                # rather than burn every remaining lead's retries; they stay pending.
                result.unreachable = result.unreachable or exc
                stop.set()
            return Outcome(lead, Status.PENDING, attempts=attempts, error=error, sent_at=sent_at)
        except OutcomeUnknown as exc:
            # The grace before a listing may call it absent counts from now, when we gave up.
            return Outcome(lead, Status.IN_DOUBT, attempts=attempts, error=str(exc),
                           sent_at=sent_at, abandoned_at=time.time())  # fmt: skip
        except _Abandoned:
            return Outcome(lead, Status.PENDING, attempts=attempts, error="stopped before sending",
                           sent_at=sent_at)  # fmt: skip
        return Outcome(lead, Status.CALLED, call_id=call_id, attempts=attempts, sent_at=sent_at)

    async def worker() -> None:
        while not stop.is_set():
            lead = next(pending, None)
            if lead is None:
                return
            if not ledger.should_dial(lead):
                continue
            if admit is not None and (reason := admit(lead)) is not None:
                ledger.defer(lead, reason)
                result.counts["deferred"] = result.counts.get("deferred", 0) + 1
                continue
            outcome = await one(lead)
            if outcome.status is not Status.PENDING:
                streak.clear()
            ledger.outcome(outcome)
            result.counts[outcome.status.value] = result.counts.get(outcome.status.value, 0) + 1
            if on_outcome is not None:
                on_outcome(outcome)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(concurrency):
                group.create_task(worker())
    except BaseExceptionGroup as failed:
        # A ledger error (or a bug) in one worker cancelled the pool: raise it as itself.
        raise failed.exceptions[0] from None
    result.stopped = (
        stop.is_set()
        and next((lead for lead in pending if ledger.should_dial(lead)), None) is not None
    )
    return result
