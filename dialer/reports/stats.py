"""Campaign statistics: the numbers ``dialer report`` shows, computed from a results file.

Owns ``CampaignStats`` (counts per lead status and per call outcome, answer rate, average talk
time, attempts distribution, calls over time, answer rate by the lead's local hour), computing it
from ledger entries, and the terminal summary's lines. Pure: no printing, no writing; the only
file read is the results file (through ``ledger.read_state``) in ``load_stats``.

A *call* is one the API created: a lead's current call (``call_id``) plus the earlier calls of a
recycled lead (``history``). A call's time is when it ended (``outcome_at``), else, for the
current call, when it was sent (``sent_at``), else when its row was last written.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from dialer.model import STATUS_ORDER
from dialer.schedule import lead_zones
from dialer.store.ledger import read_state
from dialer.store.results import ANSWERED_OUTCOMES, Entry, parse_utc, require_results
from dialer.terminal import plural, visible_lines

NO_OUTCOME = "no outcome yet"  # a call not synced yet, or still in progress
# Call outcomes in the order they are listed, answered first.
OUTCOME_ORDER = ("closed", "no-answer", "voicemail", "busy", "recall-scheduled", "failed",
                 "wrong-phone-format")  # fmt: skip
# Lead statuses in the order they are listed, most interesting first (as ``dialer status``).
HOURLY_BELOW = timedelta(days=2)  # a campaign shorter than this is charted per hour, not per day


@dataclass(frozen=True, slots=True)
class TimeBucket:
    """Calls whose time falls in one day (or hour) of the campaign, in the campaign's zone."""

    start: datetime  # aware, in ``CampaignStats.zone``
    calls: int
    answered: int


@dataclass(frozen=True, slots=True)
class HourBucket:
    """Calls with a known outcome made at one hour (0-23) of the lead's own local day."""

    hour: int
    calls: int
    answered: int

    @property
    def rate(self) -> float | None:
        return self.answered / self.calls if self.calls else None


@dataclass(frozen=True)
class CampaignStats:
    """A campaign's numbers. Mappings are ordered for display and must not be modified."""

    leads: int
    statuses: Mapping[str, int]  # leads per status, STATUS_ORDER first, zero counts left out
    outcomes: Mapping[str, int]  # calls per outcome (every call), OUTCOME_ORDER first
    calls: int  # calls created, current and earlier
    no_outcome: int  # calls without a final outcome yet (not synced, or in progress)
    answered: int  # calls with an outcome in ``ANSWERED_OUTCOMES``
    answer_rate: float | None  # answered / calls with a known outcome; None when there are none
    avg_duration: float | None  # seconds, over answered calls whose duration is known
    attempts: Mapping[int, int]  # leads by number of calls made to them (1, 2, 3...), ascending
    zone: str  # the IANA zone of ``over_time``
    unit: str  # "day" or "hour": the size of an ``over_time`` bucket
    over_time: tuple[TimeBucket, ...]  # every bucket from the first call to the last, gaps as 0
    untimed: int  # calls whose time is unknown (left out of ``over_time``)
    by_local_hour: tuple[HourBucket, ...]  # 24 buckets, hour 0 to 23 of each lead's local day

    @property
    def first_call(self) -> datetime | None:
        return self.over_time[0].start if self.over_time else None

    @property
    def last_call(self) -> datetime | None:
        return self.over_time[-1].start if self.over_time else None


def campaign_stats(entries: Iterable[Entry], *, zone: ZoneInfo | None = None) -> CampaignStats:
    """The statistics of a campaign's ledger entries (``read_state(...).values()``).

    ``zone`` (the campaign's ``--timezone``, default UTC) sets the days or hours of
    ``over_time``; it is also the local zone of a lead whose number has none, and the one
    chosen for a number with several when it is among them (a Spanish mobile: Madrid, not the
    Canaries), else the number's first zone is used.
    """
    zone = zone or ZoneInfo("UTC")
    statuses: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    attempts: Counter[int] = Counter()
    hours = [[0, 0] for _ in range(24)]  # [calls with a known outcome, answered] per local hour
    # Calls by the UTC minute they fall in, [calls, answered]: a million calls need not be
    # kept one by one, and every zone's hours and days are made of whole minutes.
    timed: dict[datetime, list[int]] = {}
    first: datetime | None = None
    last: datetime | None = None
    durations: list[float] = []
    leads = calls = untimed = 0
    for entry in entries:
        leads += 1
        statuses[entry.status.value] += 1
        lead_calls = _calls_of(entry)
        if lead_calls:
            attempts[len(lead_calls)] += 1
        local: ZoneInfo | None = None
        for outcome, when in lead_calls:
            calls += 1
            outcomes[outcome or NO_OUTCOME] += 1
            answered = outcome in ANSWERED_OUTCOMES
            if when is None:
                untimed += 1
                continue
            minute = timed.setdefault(when.replace(second=0, microsecond=0), [0, 0])
            minute[0] += 1
            minute[1] += answered
            first = when if first is None or when < first else first
            last = when if last is None or when > last else last
            if outcome:
                local = local or _local_zone(entry.phone, zone)
                bucket = hours[when.astimezone(local).hour]
                bucket[0] += 1
                bucket[1] += answered
        seconds = call_seconds(entry.duration) if entry.outcome in ANSWERED_OUTCOMES else None
        if entry.call_id and seconds:
            durations.append(seconds)
    known = calls - outcomes[NO_OUTCOME]
    unit, over_time = _over_time(timed, first, last, zone)
    return CampaignStats(
        leads=leads,
        statuses=_ordered(statuses, STATUS_ORDER),
        outcomes=_ordered(outcomes, (*OUTCOME_ORDER, NO_OUTCOME)),
        calls=calls,
        no_outcome=outcomes[NO_OUTCOME],
        answered=(answered := sum(outcomes[o] for o in ANSWERED_OUTCOMES)),
        answer_rate=answered / known if known else None,
        avg_duration=sum(durations) / len(durations) if durations else None,
        attempts=dict(sorted(attempts.items())),
        zone=zone.key,
        unit=unit,
        over_time=over_time,
        untimed=untimed,
        by_local_hour=tuple(HourBucket(h, n, a) for h, (n, a) in enumerate(hours)),
    )


def load_stats(results: str | Path, *, zone: ZoneInfo | None = None) -> CampaignStats:
    """``campaign_stats`` of a results file (with its journal), read without the run lock."""
    results = require_results(results)
    return campaign_stats(read_state(results).values(), zone=zone)


def report_lines(stats: CampaignStats) -> list[str]:
    """The terminal summary of ``dialer report``: plain, aligned ``Label:  value`` lines."""
    known = stats.calls - stats.no_outcome
    lines = [
        f"Leads:          {stats.leads:,} ({_phrase(stats.statuses, 'no leads')})",
        f"Calls:          {stats.calls:,}"
        + (f" ({stats.no_outcome:,} without an outcome yet)" if stats.no_outcome else ""),
        f"Outcomes:       {_phrase(stats.outcomes, 'no calls yet')}",
        f"Answered:       {stats.answered:,} of {known:,} calls with an outcome"
        + (f" ({stats.answer_rate:.1%})" if stats.answer_rate is not None else ""),
        f"Avg duration:   {format_duration(stats.avg_duration)} (answered calls)",
    ]
    if stats.attempts:
        parts = [f"{plural(leads, 'lead')} with {plural(n, 'call')}"
                 for n, leads in stats.attempts.items()]  # fmt: skip
        lines.append(f"Attempts:       {', '.join(parts)}")
    if stats.over_time:
        first, last = stats.over_time[0].start, stats.over_time[-1].start
        span = f"{first:%a %d %b %Y}"
        if last.date() != first.date():
            span += f" to {last:%a %d %b %Y}"
        lines.append(f"Calls made:     {span} ({stats.zone})")
        busiest = max(stats.over_time, key=lambda b: b.calls)
        label = f"{busiest.start:%a %d %b}" + (
            f" {busiest.start:%H:00}" if stats.unit == "hour" else ""
        )
        lines.append(f"Busiest {stats.unit + ':':<7} {label}, {plural(busiest.calls, 'call')}")
    rated = [h for h in stats.by_local_hour if h.calls]
    if rated:
        best = max(rated, key=lambda h: (h.rate or 0, h.calls))
        lines.append(
            f"Best hour:      {best.hour:02d}:00-{best.hour + 1:02d}:00 lead's local time, "
            f"{best.rate:.1%} answered ({plural(best.calls, 'call')})"
        )
    if stats.untimed:
        lines.append(f"Untimed calls:  {stats.untimed:,} (no time recorded, not in the charts)")
    return visible_lines(lines)


# --- helpers ----------------------------------------------------------------------------------


def _calls_of(entry: Entry) -> list[tuple[str, datetime | None]]:
    """``(outcome, time)`` of every call made to the lead, oldest first; outcome "" if unknown."""
    calls = [(_clean(o), parse_utc(at)) for _, o, at in entry.earlier_calls()]
    if entry.call_id:
        when = parse_utc(entry.outcome_at)
        if when is None and entry.sent_at > 0:
            when = datetime.fromtimestamp(entry.sent_at, UTC)
        calls.append((entry.outcome.strip(), when or parse_utc(entry.updated_at)))
    return calls


def _clean(outcome: str) -> str:
    return "" if outcome in ("", "-") else outcome


def call_seconds(text: str) -> float | None:
    """A ``duration`` cell as seconds; None when empty, not a number, or not a call's length
    (zero, negative, a day or more)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 < value < 86_400 else None


def _local_zone(phone: str, default: ZoneInfo) -> ZoneInfo:
    try:
        zones = lead_zones(phone, override=None, default=default)
    except Exception:  # an odd number must not sink the report: it counts in the default zone
        return default
    return default if default in zones else (zones[0] if zones else default)


def _over_time(
    timed: dict[datetime, list[int]], first: datetime | None, last: datetime | None,
    zone: ZoneInfo,
) -> tuple[str, tuple[TimeBucket, ...]]:  # fmt: skip
    """Calls per day, or per hour when they span less than two days (from the ``first`` call
    to the ``last``); empty buckets kept. ``timed``: [calls, answered] by UTC minute."""
    if not timed or first is None or last is None:
        return "day", ()
    unit = "hour" if last - first < HOURLY_BELOW else "day"
    counts: dict[datetime, list[int]] = {}  # by the bucket's start in UTC
    for minute, (calls, answered) in timed.items():
        bucket = counts.setdefault(_bucket(minute, zone, unit), [0, 0])
        bucket[0] += calls
        bucket[1] += answered
    out = []
    step = timedelta(hours=1) if unit == "hour" else timedelta(hours=25)  # a day is 23 to 25 h
    start, end = _bucket(first, zone, unit), _bucket(last, zone, unit)
    while start <= end:
        calls, answered = counts.get(start, (0, 0))
        out.append(TimeBucket(start.astimezone(zone), calls, answered))
        start = _bucket(start + step, zone, unit)
    return unit, tuple(out)


def _bucket(when: datetime, zone: ZoneInfo, unit: str) -> datetime:
    """The start, in UTC, of the local hour or day of ``zone`` that ``when`` falls in."""
    local = when.astimezone(zone)
    if unit == "hour":
        start = local.replace(minute=0, second=0, microsecond=0)
    else:
        start = datetime.combine(local.date(), time(0), tzinfo=zone)
    return start.astimezone(UTC)


def _ordered(counts: Counter[str], order: Iterable[str]) -> dict[str, int]:
    order = list(order)
    known = [(k, counts[k]) for k in order if counts[k]]
    other = sorted((k, n) for k, n in counts.items() if k not in order and n)
    return dict(known + other)


def _phrase(counts: Mapping[str, int], empty: str) -> str:
    return ", ".join(f"{n:,} {name}" for name, n in counts.items()) or empty


def format_duration(seconds: float | None) -> str:
    """``"2 min 05 s"``, ``"42 s"``, ``"-"`` when unknown."""
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"
