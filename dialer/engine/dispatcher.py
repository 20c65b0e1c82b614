"""The dispatcher: dials leads through the rate-limited pool (``dialer.engine.pool``), with
retries.

Owns the order of one lead's send, which is what keeps a phone from ringing twice:

1. ``ledger.intent_async(lead)``: durable (fsynced, shared with concurrent intents) before
   anything is sent;
2. wait for the rate windows (and any shared 429 pause), then ``send(lead)`` at once, so the
   windows count sends, not fsyncs (``Pool.paced``); retry from 1, with jittered exponential
   backoff (``RetryPolicy``), only on ``NotSent`` (provably no call created: the ledger records
   that too, so a crash during the backoff leaves no doubt). A crash while waiting for the
   windows leaves the lead in doubt; reconciliation then finds it absent and it is dialed again;
3. ``ledger.outcome(...)``: ``called`` with the id, ``failed`` (the API refused it),
   ``in_doubt`` (sent, answer lost: never retried blindly; the time we gave up is kept, since
   the grace before a listing may prove it absent counts from then) or ``pending`` (never
   sent).

Concurrency and rate are separate knobs of the pool. A lead's send errors never reach the
pool: each lead ends in an ``Outcome``, recorded and streamed to ``on_outcome`` as leads
finish; every third 429 lowers the rate. A 401/403 stops the pool after the first such
answer; so does ``stop`` (a signal): no new lead starts, leads in flight finish. Ledger errors
and bugs do propagate, cancelling the pool.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field

from dialer.engine.limits import SlidingWindows
from dialer.engine.pool import SLOW_DOWN_EVERY, SLOW_DOWN_FACTOR, Abandoned, Pool, RetryPolicy
from dialer.errors import AuthError, NotSent, OutcomeUnknown, Rejected
from dialer.model import Lead, Outcome, Status
from dialer.store.ledger import Ledger

__all__ = ["SLOW_DOWN_EVERY", "SLOW_DOWN_FACTOR", "DispatchResult", "RetryPolicy", "dispatch"]

Send = Callable[[Lead], Awaitable[str]]  # returns the call id, or raises a SendError


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
    stop = stop or asyncio.Event()  # set by a signal, or here: a bad token, the API unreachable
    pool = Pool(max_at_once=concurrency, limiter=limiter, stop=stop,
                slow_down_every=SLOW_DOWN_EVERY, slow_down_factor=SLOW_DOWN_FACTOR)  # fmt: skip
    result = DispatchResult()
    pending = iter(leads)
    streak: list[NotSent] = []  # leads in a row that never got through

    def dialable() -> Iterator[Lead]:
        """The leads to dial, taken one at a time as the pool has room (so a lead's calling
        hours are checked just before it is dialed)."""
        for lead in pending:
            if not ledger.should_dial(lead):
                continue
            if admit is not None and (reason := admit(lead)) is not None:
                ledger.defer(lead, reason)
                result.counts["deferred"] = result.counts.get("deferred", 0) + 1
                continue
            yield lead

    async def one(lead: Lead) -> Outcome:
        attempts = 0
        sent_at = 0.0  # when the last request left: the rate windows of a later run count it

        async def post() -> str:
            nonlocal attempts, sent_at
            attempts += 1
            result.sent += 1
            sent_at = time.time()
            result.first_send = result.first_send or sent_at
            result.last_send = sent_at
            return await send(lead)

        async def attempt() -> str:
            if stop.is_set():
                raise Abandoned  # nothing written, nothing sent
            await ledger.intent_async(lead)  # durable BEFORE the first byte is sent
            try:
                # Sent as soon as the windows allow (they count sends, not fsyncs); in flight,
                # counted as now in every window, until its answer arrives.
                return await pool.paced(post)
            except Abandoned:
                ledger.not_sent(lead, "stopped before sending")
                raise
            except NotSent as exc:
                ledger.not_sent(lead, str(exc))  # proven: this attempt rang nobody
                raise

        try:
            call_id = await retry.call(attempt, NotSent)
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
        except Abandoned:
            return Outcome(lead, Status.PENDING, attempts=attempts, error="stopped before sending",
                           sent_at=sent_at)  # fmt: skip
        return Outcome(lead, Status.CALLED, call_id=call_id, attempts=attempts, sent_at=sent_at)

    def record(outcome: Outcome) -> None:
        if outcome.status is not Status.PENDING:
            streak.clear()
        ledger.outcome(outcome)
        result.counts[outcome.status.value] = result.counts.get(outcome.status.value, 0) + 1
        if on_outcome is not None:
            on_outcome(outcome)

    try:
        await pool.run(one, dialable(), on_result=record)  # a ledger error (or a bug) propagates
    finally:
        result.rate_limited, result.lowered_to = pool.rate_limited, pool.lowered_to
    result.stopped = (
        stop.is_set()
        and next((lead for lead in pending if ledger.should_dial(lead)), None) is not None
    )
    return result
