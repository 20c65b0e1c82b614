"""Who is dialed now: one decision, made by one function, for the dry run and the run alike.

``choose`` takes the loaded leads and what the campaign's records say of each (through plain
callables, so the run asks its ledger and the dry run the results it read) and returns a
``Choice``: the leads dialed now, in file order; the called leads due another call (recycled);
those outside their calling hours now (deferred, with the reason); those held back by
``--max-calls`` or ``--until``; and why the run would end early. The run then records what the
choice says (recycle, defer, hold) and dials ``to_dial``; the dry run prints the same numbers,
so "To dial now" is what a run started at that moment dials.

It is pure: it reads nothing, writes nothing and keeps leads as indices (a million stay small).
``Hours`` is the calling-hours check both use (and the dispatcher again before each dial).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import compress
from typing import Any
from zoneinfo import ZoneInfo

from dialer.campaign import Settings
from dialer.leads.loader import LoadResult
from dialer.model import Lead, Subset
from dialer.schedule import campaign_zone, is_open, lead_zones, next_opening, window_from

__all__ = ["HELD_BATCH", "HELD_UNTIL", "Choice", "Hours", "choose", "seconds_until"]

HELD_BATCH = "held for the next batch"
HELD_UNTIL = "held for a later run (--until)"


@dataclass
class Choice:
    """Who a run started now dials, and what it does with the others."""

    to_dial: Subset  # dialed now, in file order
    recycled: list[tuple[int, str]] = field(default_factory=list)  # (index, why): called, due again
    deferred: list[tuple[int, str]] = field(default_factory=list)  # (index, why): hours closed
    held: Subset | None = None  # left for a later run by --max-calls or --until
    held_reason: str = ""
    already_done: int = 0  # dialable leads with a final or in-doubt record, not due again
    ended_by: str = ""  # "", "window_closed", "until" or "max_calls"

    @property
    def held_count(self) -> int:
        return len(self.held) if self.held is not None else 0


class Hours:
    """The calling-hours check: why a lead may not be called at ``clock()`` (outside its
    window in each of its time zones), or None. Time zones are cached per phone."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime]) -> None:
        self.window = window_from(settings.calling_hours, settings.calling_days)
        self._default: Any = campaign_zone(settings.timezone)
        self._column = settings.timezone_column or ""
        self._clock = clock
        self._zones: dict[str, tuple[Any, ...]] = {}

    def __call__(self, lead: Lead) -> str | None:
        if self.window is None:
            return None
        override = lead.params.get(self._column) or None
        key = f"{lead.phone}|{override}"
        zones = self._zones.get(key)
        if zones is None:
            zones = lead_zones(lead.phone, override=override, default=self._default)
            self._zones[key] = zones
        now = self._clock()
        if is_open(self.window, zones, now):
            return None
        opening = next_opening(self.window, zones, now)
        if opening is None:
            return "outside calling hours: its time zones share no open hour in 14 days"
        when = opening.astimezone(UTC).isoformat(timespec="minutes").replace("+00:00", "Z")
        return f"outside calling hours; next opening {when}"


def seconds_until(settings: Settings, now: datetime) -> float | None:
    """Seconds from ``now`` to ``--until`` today in the campaign's time zone (<= 0: passed)."""
    if settings.until is None:
        return None
    zone = ZoneInfo(settings.timezone) if settings.timezone else None
    local = now.astimezone(zone)
    hour, minute = (int(part) for part in settings.until.split(":"))
    until = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return (until - local).total_seconds()


def choose(
    loaded: LoadResult,
    *,
    open_key: Callable[[str], bool],
    open_keys: Callable[[Sequence[str]], Sequence[bool]] | None = None,
    due: Callable[[int, str], str | None] | None = None,
    closed: Callable[[Lead], str | None] | None = None,
    max_calls: int | None = None,
    until: float | None = None,
) -> Choice:
    """Who is dialed now, from the dialable leads of ``loaded`` in file order.

    ``open_key(key)``: the records allow a first call (none yet, or never sent); ``open_keys``,
    when given, answers it for many keys at once (asked instead). ``due(index,
    key)``: for a lead that is not open, why it is due another call (recycling), else None.
    ``closed(lead)``: why it may not be called now (calling hours), else None. ``max_calls``
    caps the leads dialed; ``until`` is the seconds left before ``--until`` (<= 0: passed, so
    nobody is dialed now)."""
    leads = loaded.leads
    picked: list[int] = []
    recycled: list[tuple[int, str]] = []
    dialable = 0
    for indexes, keys in loaded.pending_batches(65536):  # a batch of leads judged at once
        opened = open_keys(keys) if open_keys is not None else [open_key(k) for k in keys]
        dialable += len(keys)
        if due is None:
            picked.extend(compress(indexes, opened))
            continue
        for i, key, one_open in zip(indexes, keys, opened, strict=True):
            if one_open:
                picked.append(i)
            elif (why := due(i, key)) is not None:
                recycled.append((i, why))
                picked.append(i)
    choice = Choice(Subset(leads, picked), recycled, already_done=dialable - len(picked))
    if isinstance(closed, Hours) and closed.window is None:
        closed = None  # no calling hours: nobody is closed, and no Lead need be built to see it
    if closed is not None and picked:
        inside = []
        for i in picked:
            reason = closed(leads[i])
            if reason is None:
                inside.append(i)
            else:
                choice.deferred.append((i, reason))
        choice.to_dial = Subset(leads, inside)
        if not inside:
            choice.ended_by = "window_closed"
    cap = max_calls
    if until is not None and until <= 0:
        cap = 0  # --until has passed today: nothing to start now
        choice.ended_by = "until"
    if cap is not None and len(choice.to_dial) > cap:
        choice.held = choice.to_dial[cap:]
        choice.held_reason = HELD_UNTIL if cap == 0 else HELD_BATCH
        choice.to_dial = choice.to_dial[:cap]
        choice.ended_by = choice.ended_by or "max_calls"
    return choice
