"""Reconciliation: settling in-doubt leads by looking their calls up with ``GET /calls``.

A lead is in doubt when its ``POST /call`` may have reached the API but no answer came back
(a read timeout, a dropped connection, a 5xx, a crash between intent and answer). The API has
no idempotency key, so the only way to know is to list the playbook's calls since just before
the attempt and look for the lead's phone:

* found        -> ``called``, with the listed call's id;
* not found    -> ``pending`` (proven absent: safe to dial again), but only once ``grace``
                  seconds have passed since the attempt, so a call still being created is
                  not mistaken for a missing one;
* no listing   -> stays ``in_doubt`` (errors, 404, an unreadable answer): never redialed
                  unless the user says so (``--redial-in-doubt``).

The window starts a whole day before the earliest attempt (``startDate`` as a date), since the
API does not say which time zone it reads dates in; a listed call counts as this attempt's only
if it was created after the attempt, less that same time-zone slack when its time carries no
offset, and never one of a recycled lead's earlier calls. A false "found" can only ever stop
a redial, never cause one. The look-up shares the
rate limiter with dialing.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from dialer.errors import NotSent, RateLimited, SendError
from dialer.limits import SlidingWindows
from dialer.results import Entry

ListCalls = Callable[[Mapping[str, str]], Awaitable[list[dict[str, Any]]]]
Sleep = Callable[[float], Awaitable[None]]

# How far apart the API's clock and ours may read a naive time (the widest UTC offsets).
TZ_SLACK = 14 * 3600.0
# How far apart two clocks may be when the listed time carries its offset.
CLOCK_SLACK = 120.0


@dataclass(frozen=True, slots=True)
class Found:
    call_id: str


@dataclass(frozen=True, slots=True)
class Absent:
    pass


@dataclass(frozen=True, slots=True)
class Undecided:
    reason: str


Verdict = Found | Absent | Undecided


async def reconcile(
    entries: Iterable[Entry],
    list_calls: ListCalls,
    *,
    playbook_id: str,
    limiter: SlidingWindows,
    grace: float = 15.0,
    clock: Callable[[], float] = time.time,
    sleep: Sleep = asyncio.sleep,
) -> dict[str, Verdict]:
    """A verdict for each in-doubt entry, keyed by the entry's key. One listing for all."""
    entries = list(entries)
    if not entries:
        return {}
    known = [e.sent_at for e in entries if e.sent_at > 0]
    if known and (wait := max(known) + grace - clock()) > 0:
        await sleep(wait)  # let the youngest attempt's call appear before calling it absent
    query = {"playbook_id": playbook_id}
    if len(known) == len(entries):
        first = datetime.fromtimestamp(min(known), UTC) - timedelta(days=1)
        query["startDate"] = first.strftime("%Y-%m-%d")
    else:
        query["daysFromNow"] = "90"  # an attempt of unknown time: look as far back as allowed
    try:
        calls = await paced_get(lambda: list_calls(query), limiter=limiter, sleep=sleep)
    except SendError as exc:
        reason = f"could not list calls to check ({exc}): the call may have been placed"
        return {e.key: Undecided(reason) for e in entries}
    return {e.key: _verdict(e, calls) for e in entries}


async def paced_get(
    request: Callable[[], Awaitable[Any]],
    *,
    limiter: SlidingWindows,
    sleep: Sleep,
    retry_on: tuple[type[SendError], ...] = (NotSent,),
    tries: int = 4,
) -> Any:
    """``request()`` (a look-up: it rings nobody) within the rate windows, a 429 pausing them
    for everyone, retried with exponential backoff on ``retry_on``."""

    async def attempt() -> Any:
        await limiter.acquire()
        try:
            return await request()
        except RateLimited as exc:
            limiter.pause_for(exc.retry_after if exc.retry_after is not None else 1.0)
            raise

    retrying = AsyncRetrying(
        retry=retry_if_exception_type(retry_on),
        stop=stop_after_attempt(tries),
        wait=wait_exponential(multiplier=0.5, max=10),
        sleep=sleep,
        reraise=True,
    )
    return await retrying(attempt)


def _verdict(entry: Entry, calls: list[dict[str, Any]]) -> Verdict:
    digits = _digits(entry.phone)
    earlier = {call_id for call_id, _, _ in entry.earlier_calls()}  # a recycled lead's
    matches = []
    for call in calls:
        if _digits(str(call.get("to") or "")) != digits or not call.get("id"):
            continue
        if str(call["id"]) in earlier:
            continue  # an earlier attempt's call, already accounted for
        created, exact = created_at(call)
        if entry.sent_at > 0 and created is not None:
            slack = CLOCK_SLACK if exact else TZ_SLACK
            if created < entry.sent_at - slack:
                continue  # an older call to the same phone, not this attempt's
        matches.append((created or 0.0, str(call["id"])))
    if matches:
        return Found(max(matches)[1])
    return Absent()


def _digits(phone: str) -> str:
    return re.sub(r"\D", "", phone)


def created_at(call: Mapping[str, Any]) -> tuple[float | None, bool]:
    """When a listed call was created (unix time), and whether that time is exact (has an
    offset or is a unix timestamp)."""
    stamp = call.get("timestamp")
    if isinstance(stamp, int | float) and not isinstance(stamp, bool) and stamp > 0:
        return float(stamp / 1000 if stamp > 1e11 else stamp), True
    text = call.get("created_time")
    if not isinstance(text, str) or not text.strip():
        return None, False
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None, False
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC).timestamp(), False
    return when.timestamp(), True
