"""Calling hours and days per lead, in the lead's own time zone.

This module owns the calling window (``--calling-hours``, ``--calling-days``, ``--timezone``),
the time zones a lead is called in (its own tz column, else its number's zones, else the
campaign default) and the questions a run asks: is this lead callable now, when does it next
open, when does the window close. A production dialer must never ring at 23:00 local time (the
US TCPA allows 8:00-21:00 at the called party's location).

It is pure: no network, no files written, no printing, and it never reads the clock: the
current time is always passed in as an aware ``datetime``. Results are returned in UTC.

Rules:

* ``start`` is inclusive and ``end`` exclusive (with 09:00-20:00, 20:00 itself is closed); a
  window crossing midnight is refused;
* a lead is open only when open in EVERY one of its zones (a number phonenumbers maps to
  several zones is called only while it is a fine hour in all of them);
* DST is handled by checking real instants: a local time that does not exist (spring forward)
  opens at the transition, a local time that repeats (fall back) is open in both folds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import NumberParseException
from phonenumbers import timezone as pn_timezone

from dialer.errors import ConfigError, DialerError

__all__ = [
    "CallingWindow",
    "check_timezone",
    "closes_at",
    "is_open",
    "lead_zones",
    "next_opening",
    "parse_days",
    "parse_hours",
    "phone_time_zones",
]

HORIZON = timedelta(days=14)  # next_opening looks this far ahead, then gives up (None)
_UNKNOWN_ZONE = "Etc/Unknown"  # phonenumbers' placeholder for "no idea"
_NOT_IANA = frozenset({"localtime", "posixrules", "Factory"})  # host files, not places
_HOURS = re.compile(r"^(\d{1,2})(?::(\d{2}))?\s*[-–]\s*(\d{1,2})(?::(\d{2}))?$")
_HOURS_HELP = "use HH:MM-HH:MM such as 09:00-20:00"
_DAYS_HELP = (
    "use mon, tue, wed, thu, fri, sat, sun, lists and ranges such as mon-fri or mon,wed,fri"
)
_DAY_NAMES: dict[str, int] = {}
for _number, _names in enumerate(
    [
        ("mon", "monday", "lun", "lunes"),
        ("tue", "tuesday", "mar", "martes"),
        ("wed", "wednesday", "mie", "mié", "miercoles", "miércoles"),
        ("thu", "thursday", "jue", "jueves"),
        ("fri", "friday", "vie", "viernes"),
        ("sat", "saturday", "sab", "sáb", "sabado", "sábado"),
        ("sun", "sunday", "dom", "domingo"),
    ]
):
    _DAY_NAMES.update(dict.fromkeys(_names, _number))


@dataclass(frozen=True)
class CallingWindow:
    """Local hours ``[start, end)`` on the weekdays in ``days`` (0=Monday .. 6=Sunday)."""

    start: time
    end: time
    days: frozenset[int]

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ConfigError("--calling-hours are local times: give them without a time zone")
        if not self.end > self.start:
            raise ConfigError(
                f"invalid --calling-hours {self.start:%H:%M}-{self.end:%H:%M}: the end must be "
                "after the start (a window crossing midnight is not supported)"
            )
        if not self.days or not set(self.days) <= set(range(7)):
            raise ConfigError(f"invalid --calling-days {sorted(self.days)}: {_DAYS_HELP}")

    @classmethod
    def parse(cls, hours: str, days: str) -> CallingWindow:
        """The window for ``--calling-hours`` and ``--calling-days`` as typed."""
        start, end = parse_hours(hours)
        return cls(start, end, parse_days(days))


def parse_hours(text: str) -> tuple[time, time]:
    """``"09:00-20:00"`` (or ``"9:00-20:00"``, ``"09-20"``) -> ``(start, end)``; end exclusive."""
    match = _HOURS.match((text or "").strip())
    if match is None:
        raise ConfigError(f"invalid --calling-hours '{text}': {_HOURS_HELP}")
    h1, m1, h2, m2 = (int(group or 0) for group in match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise ConfigError(
            f"invalid --calling-hours '{text}': hours go from 00 to 23 and minutes from 00 to 59"
        )
    start, end = time(h1, m1), time(h2, m2)
    if end <= start:
        raise ConfigError(
            f"invalid --calling-hours '{text}': the end must be after the start "
            "(a window crossing midnight is not supported)"
        )
    return start, end


def parse_days(text: str) -> frozenset[int]:
    """``"mon-fri"``, ``"mon,wed,fri"``, ``"fri-mon"`` (ranges wrap), ``"lun-vie"`` -> weekdays."""
    days: set[int] = set()
    parts = [part.strip() for part in (text or "").split(",")]
    if not any(parts):
        raise ConfigError(f"invalid --calling-days '{text}': {_DAYS_HELP}")
    for part in parts:
        ends = [name.strip().lower() for name in part.split("-")]
        if len(ends) > 2 or not all(ends):
            raise ConfigError(f"invalid --calling-days '{text}': {_DAYS_HELP}")
        for name in ends:
            if name not in _DAY_NAMES:
                raise ConfigError(f"unknown day '{name}' in --calling-days '{text}': {_DAYS_HELP}")
        first, last = _DAY_NAMES[ends[0]], _DAY_NAMES[ends[-1]]
        days.update((first + step) % 7 for step in range((last - first) % 7 + 1))
    return frozenset(days)


def check_timezone(name: str) -> ZoneInfo:
    """The IANA zone called ``name`` (``Europe/Madrid``), or ConfigError naming ``--timezone``."""
    key = (name or "").strip()
    try:
        if key in _NOT_IANA:
            raise ValueError(key)
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigError(
            f"unknown time zone '{name}' for --timezone: use an IANA name such as Europe/Madrid"
        ) from None


def phone_time_zones(e164: str) -> tuple[str, ...]:
    """The IANA zones phonenumbers gives for a number; ``()`` when it does not know."""
    try:
        number = phonenumbers.parse(e164, None)
    except NumberParseException:
        return ()
    zones = pn_timezone.time_zones_for_number(number)
    return tuple(zone for zone in zones if zone and zone != _UNKNOWN_ZONE)


def lead_zones(e164: str, *, override: str | None, default: ZoneInfo) -> tuple[ZoneInfo, ...]:
    """The zones a lead is called in: its tz column, else all its number's zones, else default.

    An invalid ``override`` falls back to the number; a zone name the local tz database lacks
    is left out (the number's other zones still apply).
    """
    if override and override.strip():
        try:
            return (check_timezone(override),)
        except ConfigError:
            pass
    zones: list[ZoneInfo] = []
    for name in phone_time_zones(e164):
        try:
            zones.append(check_timezone(name))
        except ConfigError:
            continue
    return tuple(zones) or (default,)


def is_open(window: CallingWindow, zones: Sequence[ZoneInfo], now: datetime) -> bool:
    """True when ``now`` is inside the window in every one of ``zones``."""
    _check_args(zones, now)
    for zone in zones:
        local = now.astimezone(zone)
        if local.weekday() not in window.days:
            return False
        if not window.start <= local.time() < window.end:
            return False
    return True


def next_opening(
    window: CallingWindow, zones: Sequence[ZoneInfo], now: datetime
) -> datetime | None:
    """The earliest instant ``>= now`` at which ``is_open`` holds, in UTC; None within 14 days.

    Each zone's open set is a union of intervals ``[a, b)`` whose ``a`` is a local ``start``
    (either fold) or a UTC offset change; the intersection of the zones opens at one of those
    instants, or at ``now``. So every such candidate is checked and the earliest open one wins.
    """
    _check_args(zones, now)
    now_utc = now.astimezone(UTC)
    limit = now_utc + HORIZON
    candidates = {now_utc}
    for zone in zones:
        candidates.update(_local_instants(zone, now_utc, -1, 16, [window.start]))
        candidates.update(_transitions(zone, now_utc, limit))
    for candidate in sorted(c for c in candidates if now_utc <= c <= limit):
        if is_open(window, zones, candidate):
            return candidate
    return None


def closes_at(window: CallingWindow, zones: Sequence[ZoneInfo], now: datetime) -> datetime | None:
    """When open, the earliest instant after ``now`` at which it is not open (UTC); else None.

    The candidates are each zone's local ``end`` and midnights (either fold) and its UTC offset
    changes: an open interval can only end at one of those.
    """
    if not is_open(window, zones, now):
        return None
    now_utc = now.astimezone(UTC)
    limit = now_utc + timedelta(days=3)
    candidates: set[datetime] = set()
    for zone in zones:
        candidates.update(_local_instants(zone, now_utc, -1, 4, [window.end, time(0)]))
        candidates.update(_transitions(zone, now_utc, limit))
    for candidate in sorted(c for c in candidates if now_utc < c <= limit):
        if not is_open(window, zones, candidate):
            return candidate
    raise DialerError(f"calling window open at {now_utc:%Y-%m-%d %H:%M} UTC never closes")


# --- helpers ------------------------------------------------------------------------------------


def _check_args(zones: Sequence[ZoneInfo], now: datetime) -> None:
    """Refuse a naive ``now`` (whose zone is a guess) and an empty zone list (open everywhere)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise DialerError("schedule needs an aware datetime for 'now', got a naive one")
    if not zones:
        raise DialerError("schedule needs at least one time zone for a lead")


def _local_instants(
    zone: ZoneInfo, now_utc: datetime, first: int, last: int, times: Iterable[time]
) -> Iterable[datetime]:
    """Each of ``times`` on local days ``first .. last-1`` from today in ``zone``, both folds, UTC.

    A local time that does not exist gives two instants around the gap (the gap itself is
    covered by the transition candidates); one that repeats gives both of its instants.
    """
    today: date = now_utc.astimezone(zone).date()
    wall_times = list(times)
    for offset in range(first, last):
        day = today + timedelta(days=offset)
        for wall in wall_times:
            for fold in (0, 1):
                yield datetime.combine(day, wall, tzinfo=zone).replace(fold=fold).astimezone(UTC)


def _transitions(zone: ZoneInfo, start: datetime, stop: datetime) -> list[datetime]:
    """The instants in ``(start, stop]`` at which ``zone``'s UTC offset changes (hourly scan)."""
    found: list[datetime] = []
    step = timedelta(hours=1)
    previous = start
    previous_offset = start.astimezone(zone).utcoffset()
    while previous < stop:
        current = min(previous + step, stop)
        offset = current.astimezone(zone).utcoffset()
        if offset != previous_offset:
            found.append(_bisect_change(zone, previous, current))
        previous, previous_offset = current, offset
    return found


def _bisect_change(zone: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The first instant in ``(before, after]`` with ``after``'s offset (they change on seconds)."""
    target = after.astimezone(zone).utcoffset()
    low, high = math.floor(before.timestamp()), math.ceil(after.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == target:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


# --- forecasts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """``count`` leads of one zone group dialed between ``start`` and ``end`` (UTC)."""

    label: str  # the group's zones, e.g. "Europe/Madrid" or "America/Boise+America/Los_Angeles"
    count: int
    start: datetime
    end: datetime


def forecast(
    groups: Iterable[tuple[Sequence[ZoneInfo], int]],
    window: CallingWindow | None,
    now: datetime,
    *,
    per_minute: float,
    limit: int = 10_000,
) -> tuple[list[Slot], int]:
    """When each group's leads would be dialed: one sender at ``per_minute``, each group only
    inside its window (all the group's zones), groups in the order they open, a group that
    does not fit before closing carried to its next opening. Returns the slots and how many
    leads no opening in the next 14 days can take (zones that never share an open hour)."""
    _check_args([UTC_ZONE], now)
    step = timedelta(minutes=1) / per_minute
    clock = now.astimezone(UTC)
    queue = [(list(zones), count) for zones, count in groups if count > 0]
    slots: list[Slot] = []
    never = 0
    while queue and len(slots) < limit:
        timed = []
        for zones, count in queue:
            opening = clock if window is None else next_opening(window, zones, clock)
            if opening is None:
                never += count
            else:
                timed.append((opening, zones, count))
        if not timed:
            break
        timed.sort(key=lambda item: (item[0], _label(item[1])))
        opening, zones, count = timed[0]
        start = max(opening, clock)
        close = None if window is None else closes_at(window, zones, start)
        fits = count if close is None else min(count, max(1, int((close - start) / step)))
        end = start + step * fits
        slots.append(Slot(_label(zones), fits, start, end))
        clock = end
        queue = [(z, c) for _, z, c in timed[1:]] + (
            [(zones, count - fits)] if fits < count else []
        )
    return slots, never


UTC_ZONE = ZoneInfo("UTC")


def window_from(hours: str | None, days: str | None) -> CallingWindow | None:
    """The campaign's window from ``--calling-hours``/``--calling-days``; None when neither."""
    if not hours and not days:
        return None
    return CallingWindow.parse(hours or "00:00-23:59", days or "mon-sun")


def campaign_zone(name: str | None) -> Any:
    """``--timezone`` as a tzinfo; without one, this machine's local zone."""
    return ZoneInfo(name) if name else datetime.now().astimezone().tzinfo


def _label(zones: Sequence[ZoneInfo]) -> str:
    return "+".join(sorted({getattr(z, "key", None) or str(z) for z in zones})) or "all leads"
