"""Reconciliation: settling in-doubt leads by looking their calls up with ``GET /calls``.

A lead is in doubt when its ``POST /call`` may have reached the API but no answer came back
(a read timeout, a dropped connection, a 5xx, a crash between intent and answer). The API has
no idempotency key and may create a call well after the request (a queue, a slow backend), so
the only way to know is to list the playbook's calls and look for the lead's phone:

* found        -> ``called``, with the listed call's id;
* not found    -> ``pending`` (proven absent: safe to dial again), but only when the listing
                  was taken ``grace`` seconds or more after the dialer gave up on the answer
                  (``Entry.abandoned_at``); before that it proves nothing: ``Waiting``;
* no listing   -> stays ``in_doubt`` (errors, 404, an unreadable answer): never redialed
                  unless the user says so (``--redial-in-doubt``).

A lead shown absent keeps that attempt's time (``Entry.unseen``) for a day: the same listing
then also looks for a call that attempt created after all. Before the lead is dialed again that
call settles it (``Late``, called once); after, it is a second call: the phone rang twice, and
the verdict says so, so that the user learns it from the dialer.

The window starts a whole day before the earliest attempt (``startDate`` as a date), since the
API does not say which time zone it reads dates in; a listed call counts as an attempt's only
if it was created after the attempt, less that same time-zone slack when its time carries no
offset, and never one of a recycled lead's earlier calls. A false "found" can only ever stop
a redial, never cause one. The look-up goes through the rate-limited pool
(``dialer.engine.pool``), sharing the rate limiter with dialing.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dialer.engine.limits import Sleep, SlidingWindows
from dialer.engine.pool import Pool, lookup_policy
from dialer.errors import SendError
from dialer.model import Status
from dialer.store.results import Entry, parse_utc, utc_iso

ListCalls = Callable[[Mapping[str, str]], Awaitable[list[dict[str, Any]]]]

# How far apart the API's clock and ours may read a naive time (the widest UTC offsets).
TZ_SLACK = 14 * 3600.0
# How far apart two clocks may be when the listed time carries its offset.
CLOCK_SLACK = 120.0
# How long an attempt shown absent is watched for a late call.
UNSEEN_HORIZON = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Found:
    call_id: str
    late: tuple[tuple[str, str], ...] = ()  # (id, created) of calls that rang it twice
    unseen: str = ""  # the absent attempts still watched


@dataclass(frozen=True, slots=True)
class Absent:
    pass


@dataclass(frozen=True, slots=True)
class Waiting:
    """Not listed yet, but the grace is not over: absence proves nothing yet."""

    until: float  # unix time the grace ends


@dataclass(frozen=True, slots=True)
class Undecided:
    reason: str


@dataclass(frozen=True, slots=True)
class Late:
    """A lead with attempts shown absent (not in doubt now): what the listing found of them.
    ``call_id`` set: the lead was not dialed again yet, and that call settles it. ``late``:
    calls that rang it a second time. ``unseen``: the attempts still watched."""

    late: tuple[tuple[str, str], ...]
    unseen: str
    call_id: str | None = None


Verdict = Found | Absent | Waiting | Undecided | Late


def grace_ends(entry: Entry, grace: float) -> float:
    """When ``grace`` is over for an in-doubt entry: counted from when the dialer gave up on
    the answer; for an entry from before that was recorded, from its last update."""
    if entry.abandoned_at:
        return float(entry.abandoned_at) + grace
    updated = parse_utc(entry.updated_at) if entry.updated_at else None
    if updated is not None:
        return updated.timestamp() + 1.0 + grace  # written to the second: round up
    return entry.sent_at + grace


def graces_left(entries: Iterable[Entry], grace: float, now: float) -> list[float]:
    """When the grace ends for each in-doubt entry whose grace is not over at ``now``."""
    return [t for e in entries if (t := grace_ends(e, grace)) > now]


async def reconcile(
    entries: Iterable[Entry],
    list_calls: ListCalls,
    *,
    playbook_id: str,
    limiter: SlidingWindows,
    grace: float = 300.0,
    clock: Callable[[], float] = time.time,
    sleep: Sleep = asyncio.sleep,
) -> dict[str, Verdict]:
    """A verdict for each entry (in doubt, or with attempts shown absent), keyed by the
    entry's key. One listing for all; it never waits for a grace (``Waiting`` says so)."""
    entries = list(entries)
    if not entries:
        return {}
    times = [t for e in entries for t in _attempt_times(e)]
    query = {"playbook_id": playbook_id}
    if times and all(_attempt_times(e) for e in entries):
        first = datetime.fromtimestamp(min(times), UTC) - timedelta(days=1)
        query["startDate"] = first.strftime("%Y-%m-%d")
    else:
        query["daysFromNow"] = "90"  # an attempt of unknown time: look as far back as allowed
    listed_at = clock()  # before the request: a listing shows no call created after it
    try:
        pool = Pool(max_at_once=1, limiter=limiter)
        calls = await pool.lookup(lambda: list_calls(query), retry=lookup_policy(sleep))
    except SendError as exc:
        reason = f"could not list calls to check ({exc}): the call may have been placed"
        return {e.key: Undecided(reason) for e in entries if e.status is Status.IN_DOUBT}
    return {e.key: _verdict(e, calls, listed_at=listed_at, grace=grace) for e in entries}


def _attempt_times(entry: Entry) -> list[float]:
    """Times of the attempts whose call the listing looks for."""
    times = entry.unseen_times()
    if entry.status is Status.IN_DOUBT and entry.sent_at > 0:
        times.append(entry.sent_at)
    return times


def _verdict(entry: Entry, calls: list[dict[str, Any]], *, listed_at: float,
             grace: float) -> Verdict:  # fmt: skip
    times = _attempt_times(entry)
    since = min(times) if times else 0.0
    digits = _digits(entry.phone)
    known = {call_id for call_id, _, _ in entry.earlier_calls()} | {entry.call_id}
    matches = []
    for call in calls:
        if _digits(str(call.get("to") or "")) != digits or not call.get("id"):
            continue
        if str(call["id"]) in known:
            continue  # this lead's known call, or an earlier attempt's
        created, exact = created_at(call)
        if since > 0 and created is not None:
            slack = CLOCK_SLACK if exact else TZ_SLACK
            if created < since - slack:
                continue  # an older call to the same phone, not one of these attempts'
        matches.append((created or 0.0, str(call["id"])))
    matches.sort()
    # Each unseen attempt made one call at most: more matches come from elsewhere.
    watched = entry.unseen_times()
    if entry.status is Status.IN_DOUBT:
        if not matches:
            ends = grace_ends(entry, grace)
            return Absent() if listed_at >= ends else Waiting(ends)
        late = _late(matches[:-1], len(watched))
        return Found(matches[-1][1], late, _left(watched, len(late), listed_at))
    late = _late(matches, len(watched))
    if not late or entry.status is Status.CALLED:
        return Late(late, _left(watched, len(late), listed_at))
    # Shown absent and not dialed again yet: its own late call settles it.
    return Late(late, _left(watched, len(late), listed_at), call_id=late[-1][0])


def _late(matches: list[tuple[float, str]], most: int) -> tuple[tuple[str, str], ...]:
    """The newest ``most`` matches (none when ``most`` is 0), as ``(id, created)``."""
    chosen = matches[-most:] if most else []
    return tuple((call_id, utc_iso(created) if created else "") for created, call_id in chosen)


def _left(watched: list[float], found: int, now: float) -> str:
    """The attempts still watched: those not accounted for by a found call (oldest first),
    and not older than the horizon."""
    left = watched[found:]
    return " ".join(f"{t:.3f}" for t in left if t >= now - UNSEEN_HORIZON)


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
