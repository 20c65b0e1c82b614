"""Syncing outcomes: what became of each call, from ``GET /call/{id}``.

``POST /call`` only says a call started. For every ``called`` lead whose current call has no
final outcome yet, ``sync_outcomes`` asks the API for the call's details and hands back the
final ones (closed, no-answer, voicemail, busy, failed, recall-scheduled, wrong-phone-format)
with their duration, summary and the time the call ended; calls still queued, ringing or open
wait for the next sync. The look-ups go through the rate-limited pool (``dialer.engine.pool``)
and share the run's rate limiter with dialing (the API's limits count every request), a few
at a time, each retried on any transport failure or 5xx: a ``GET`` rings nobody, so unlike a
``POST`` it is always safe to repeat. A 401/403 stops the
sync at once. Recording is the caller's (the ledger's) job: this module writes nothing.

It also owns the recycling rule (``due_again``): a called lead whose last outcome is one the
campaign retries, with calls left and its cool-down over, is worth another call.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dialer.campaign import Settings
from dialer.engine.limits import Sleep, SlidingWindows
from dialer.engine.pool import Abandoned, Pool, lookup_policy
from dialer.engine.reconcile import created_at
from dialer.errors import AuthError, NotSent, OutcomeUnknown, SendError
from dialer.model import Status
from dialer.store.results import FINAL_OUTCOMES, Entry, parse_utc, utc_iso

GetCall = Callable[[str], Awaitable[Mapping[str, Any]]]

LOOKUP_TRIES = 4  # per call and sync; a call still unknown after them waits for the next sync
SUMMARY_MAX = 2000  # characters of a call's summary kept in the results


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """A finished call, as the results keep it."""

    outcome: str  # the API's final status, e.g. "no-answer"
    duration: str  # whole seconds, "" when the API gave none
    summary: str
    at: str  # when the call ended, ISO UTC


@dataclass
class SyncResult:
    """What one sync did."""

    checked: int = 0  # calls looked up
    finished: int = 0  # final outcomes recorded
    in_progress: int = 0  # calls not over yet: the next sync looks again
    failed: int = 0  # look-ups that failed even after retries
    outcomes: Counter[str] = field(default_factory=Counter)  # outcome -> calls recorded now
    first_error: str = ""  # why the first failed look-up failed
    stopped: bool = False  # a stop ended it before every call was looked up
    request_times: list[float] = field(default_factory=list)  # wall time of each look-up


def needs_sync(entry: Entry) -> bool:
    """True for a called lead whose current call has no final outcome recorded yet."""
    return entry.status is Status.CALLED and bool(entry.call_id) and not entry.outcome


def call_outcome(details: Mapping[str, Any], *, now: float) -> CallOutcome | None:
    """The finished call ``details`` (``GET /call/{id}``) describe, or None while in progress."""
    status = str(details.get("status") or "").strip().lower()
    if status not in FINAL_OUTCOMES:
        return None
    seconds = details.get("duration")
    duration = ""
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds >= 0:
        duration = str(round(seconds))
    started, _ = created_at(details)
    ended = started + float(duration or 0) if started is not None else now
    summary = details.get("summary")
    summary = " ".join(summary.split())[:SUMMARY_MAX] if isinstance(summary, str) else ""
    return CallOutcome(status, duration, summary, utc_iso(min(ended, now)))


def due_again(
    entry: Entry,
    *,
    retry_outcomes: Iterable[str],
    max_attempts: int,
    cool_down: float,
    now: float,
) -> str | None:
    """Why ``entry`` should be called again now (the reason recorded), or None.

    Only a ``called`` lead with a synced outcome in ``retry_outcomes``, fewer than
    ``max_attempts`` calls so far, and ``cool_down`` seconds past the end of its last call."""
    if entry.status is not Status.CALLED or entry.outcome not in set(retry_outcomes):
        return None
    if entry.calls >= max_attempts:
        return None
    ended = parse_utc(entry.outcome_at)
    if ended is None or now < ended.timestamp() + cool_down:
        return None
    return f"attempt {entry.calls + 1} of {max_attempts}: the last call ended {entry.outcome}"


def due_under(settings: Settings, entry: Entry, *, now: float) -> str | None:
    """``due_again`` under a campaign's recycling settings; None when it recycles nothing."""
    if not settings.retry_outcomes:
        return None
    return due_again(entry, retry_outcomes=settings.retry_outcomes,
                     max_attempts=settings.max_attempts, cool_down=settings.retry_after_seconds,
                     now=now)  # fmt: skip


async def sync_outcomes(
    entries: Iterable[Entry],
    get_call: GetCall,
    *,
    record: Callable[[Entry, CallOutcome], None],
    limiter: SlidingWindows,
    concurrency: int = 5,
    stop: asyncio.Event | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Sleep = asyncio.sleep,
) -> SyncResult:
    """Look up each entry's current call; ``record`` every finished one as it comes in.

    Raises ``AuthError`` on 401/403 (after stopping the other look-ups). ``stop`` ends the
    sync early: look-ups in flight finish, no new one starts, and one still waiting for the
    windows is not made (the next sync makes it)."""
    result = SyncResult()
    pool = Pool(max_at_once=max(1, concurrency), limiter=limiter, stop=stop)
    stop = pool.stop
    retry = lookup_policy(sleep, LOOKUP_TRIES)
    todo = iter([e for e in entries if needs_sync(e)])
    abandoned = False  # a look-up the stop caught waiting for the windows

    async def lookup(call_id: str) -> Mapping[str, Any]:
        result.request_times.append(clock())  # called once the windows let it through
        return await get_call(call_id)

    async def check(entry: Entry) -> None:
        nonlocal abandoned
        result.checked += 1
        try:
            details = await pool.lookup(lambda: lookup(entry.call_id), retry=retry,
                                        retry_on=(NotSent, OutcomeUnknown))  # fmt: skip
        except AuthError:
            stop.set()
            raise
        except Abandoned:
            result.checked -= 1  # not looked up: the next sync does
            abandoned = True
            return
        except SendError as exc:
            result.failed += 1
            result.first_error = result.first_error or f"call {entry.call_id}: {exc}"
            return
        outcome = call_outcome(details, now=clock())
        if outcome is None:
            result.in_progress += 1
            return
        record(entry, outcome)
        result.finished += 1
        result.outcomes[outcome.outcome] += 1

    await pool.run(check, todo)  # a bad token (or a bug) propagates, the others cancelled
    result.stopped = stop.is_set() and (abandoned or next(todo, None) is not None)
    return result
