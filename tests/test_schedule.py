"""Calling windows per lead: parsing, zones, open/closed, DST, and the next opening."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.errors import ConfigError, DialerError
from dialer.schedule import (
    CallingWindow,
    check_timezone,
    closes_at,
    is_open,
    lead_zones,
    next_opening,
    parse_days,
    parse_hours,
    phone_time_zones,
)

MADRID = ZoneInfo("Europe/Madrid")
NEW_YORK = ZoneInfo("America/New_York")
BOISE = ZoneInfo("America/Boise")
LOS_ANGELES = ZoneInfo("America/Los_Angeles")
WEEKDAYS = frozenset(range(5))
ALL_DAYS = frozenset(range(7))
OFFICE = CallingWindow(time(9), time(20), WEEKDAYS)
HOURS_HELP = "use HH:MM-HH:MM such as 09:00-20:00"
RANGE_HELP = "hours go from 00 to 23 and minutes from 00 to 59"
DAYS_HELP = "use mon, tue, wed, thu, fri, sat, sun, lists and ranges such as mon-fri or mon,wed,fri"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("09:00-20:00", (time(9), time(20))),
        ("9:00-20:00", (time(9), time(20))),
        ("09-20", (time(9), time(20))),
        (" 8:30 - 21:00 ", (time(8, 30), time(21))),
        ("00:00-23:59", (time(0), time(23, 59))),
    ],
)
def test_parse_hours_accepts(text: str, expected: tuple[time, time]) -> None:
    assert parse_hours(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", f"invalid --calling-hours '': {HOURS_HELP}"),
        ("9", f"invalid --calling-hours '9': {HOURS_HELP}"),
        ("nine-five", f"invalid --calling-hours 'nine-five': {HOURS_HELP}"),
        ("09:00-20:00-21:00", f"invalid --calling-hours '09:00-20:00-21:00': {HOURS_HELP}"),
        ("9:5-20", f"invalid --calling-hours '9:5-20': {HOURS_HELP}"),
        (
            "25:00-26:00",
            f"invalid --calling-hours '25:00-26:00': {RANGE_HELP}",
        ),
        (
            "09:60-20:00",
            f"invalid --calling-hours '09:60-20:00': {RANGE_HELP}",
        ),
        (
            "20:00-09:00",
            "invalid --calling-hours '20:00-09:00': the end must be after the start "
            "(a window crossing midnight is not supported)",
        ),
        (
            "09:00-09:00",
            "invalid --calling-hours '09:00-09:00': the end must be after the start "
            "(a window crossing midnight is not supported)",
        ),
    ],
)
def test_parse_hours_refuses(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_hours(text)
    assert str(info.value) == message
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mon-fri", {0, 1, 2, 3, 4}),
        ("mon,wed,fri", {0, 2, 4}),
        ("sat-sun", {5, 6}),
        ("mon-sun", {0, 1, 2, 3, 4, 5, 6}),
        ("fri-mon", {4, 5, 6, 0}),
        ("sun-sun", {6}),
        ("Mon, Wed , FRI", {0, 2, 4}),
        ("mon-tue,thu-fri", {0, 1, 3, 4}),
        ("lun-vie", {0, 1, 2, 3, 4}),
        ("sáb-dom", {5, 6}),
        ("mie,sab", {2, 5}),
        ("monday-friday", {0, 1, 2, 3, 4}),
    ],
)
def test_parse_days_accepts(text: str, expected: set[int]) -> None:
    assert parse_days(text) == frozenset(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", f"invalid --calling-days '': {DAYS_HELP}"),
        (" , ", f"invalid --calling-days ' , ': {DAYS_HELP}"),
        ("mon-", f"invalid --calling-days 'mon-': {DAYS_HELP}"),
        ("mon-wed-fri", f"invalid --calling-days 'mon-wed-fri': {DAYS_HELP}"),
        ("mon,,fri", f"invalid --calling-days 'mon,,fri': {DAYS_HELP}"),
        ("funday", f"unknown day 'funday' in --calling-days 'funday': {DAYS_HELP}"),
        ("mon-xyz", f"unknown day 'xyz' in --calling-days 'mon-xyz': {DAYS_HELP}"),
        ("1-5", f"unknown day '1' in --calling-days '1-5': {DAYS_HELP}"),
    ],
)
def test_parse_days_refuses(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_days(text)
    assert str(info.value) == message


def test_window_parse_and_direct_construction() -> None:
    assert CallingWindow.parse("09-20", "mon-fri") == OFFICE
    with pytest.raises(ConfigError, match="the end must be after the start"):
        CallingWindow(time(22), time(6), ALL_DAYS)
    with pytest.raises(ConfigError, match="--calling-days"):
        CallingWindow(time(9), time(20), frozenset())
    with pytest.raises(ConfigError, match="--calling-days"):
        CallingWindow(time(9), time(20), frozenset({7}))


@pytest.mark.parametrize("name", ["Europe/Madrid", "America/New_York", "UTC", " Europe/Madrid "])
def test_check_timezone_accepts(name: str) -> None:
    assert check_timezone(name) == ZoneInfo(name.strip())


@pytest.mark.parametrize(
    "name", ["Mars/Olympus", "", "europe/madrid", "America", "../etc/passwd", "/etc/localtime"]
)
def test_check_timezone_refuses(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_timezone(name)
    assert str(info.value) == (
        f"unknown time zone '{name}' for --timezone: use an IANA name such as Europe/Madrid"
    )


def test_check_timezone_refuses_the_hosts_own_zone() -> None:
    # "localtime" is whatever the machine is set to, not a place: a run must not depend on it.
    with pytest.raises(ConfigError, match="unknown time zone 'localtime'"):
        check_timezone("localtime")


# --- a lead's zones ---------------------------------------------------------------------------


def test_phone_time_zones() -> None:
    assert phone_time_zones("+12125551234") == ("America/New_York",)
    assert "Europe/Madrid" in phone_time_zones("+34612345678")
    assert phone_time_zones("+15555551234") == ()  # invalid: phonenumbers says Etc/Unknown
    assert phone_time_zones("not a number") == ()
    assert phone_time_zones("") == ()


def test_lead_zones_sources_in_order() -> None:
    number = "+12125551234"
    assert lead_zones(number, override="Europe/Madrid", default=MADRID) == (MADRID,)
    assert lead_zones(number, override=" Asia/Tokyo ", default=MADRID) == (ZoneInfo("Asia/Tokyo"),)
    assert lead_zones(number, override="Not/AZone", default=MADRID) == (NEW_YORK,)
    assert lead_zones(number, override="", default=MADRID) == (NEW_YORK,)
    assert lead_zones(number, override=None, default=MADRID) == (NEW_YORK,)
    assert lead_zones("+15555551234", override=None, default=MADRID) == (MADRID,)
    assert lead_zones("+15555551234", override="bogus", default=NEW_YORK) == (NEW_YORK,)


# --- open or closed -----------------------------------------------------------------------------


def test_madrid_open_while_new_york_sleeps() -> None:
    now = utc(2024, 6, 5, 10, 0)  # a Wednesday: 12:00 in Madrid, 06:00 in New York
    assert is_open(OFFICE, [MADRID], now)
    assert not is_open(OFFICE, [NEW_YORK], now)
    assert not is_open(OFFICE, [MADRID, NEW_YORK], now)
    assert next_opening(OFFICE, [NEW_YORK], now) == utc(2024, 6, 5, 13, 0)  # 09:00 EDT
    late = utc(2024, 6, 5, 21, 0)  # 23:00 in Madrid: never ring then; 17:00 in New York
    assert not is_open(OFFICE, [MADRID], late)
    assert is_open(OFFICE, [NEW_YORK], late)


def test_hours_are_start_inclusive_end_exclusive() -> None:
    day = datetime(2024, 6, 5, tzinfo=MADRID)
    assert not is_open(OFFICE, [MADRID], day.replace(hour=8, minute=59, second=59))
    assert is_open(OFFICE, [MADRID], day.replace(hour=9))
    assert is_open(OFFICE, [MADRID], day.replace(hour=19, minute=59, second=59, microsecond=999))
    assert not is_open(OFFICE, [MADRID], day.replace(hour=20))


def test_number_with_several_zones_is_open_only_when_open_in_all() -> None:
    zones = lead_zones("+12085550123", override=None, default=MADRID)  # Idaho: two zones
    assert set(zones) == {BOISE, LOS_ANGELES}
    before = utc(2024, 6, 5, 15, 30)  # 09:30 in Boise, 08:30 in Los Angeles
    assert is_open(OFFICE, [BOISE], before)
    assert not is_open(OFFICE, zones, before)
    assert next_opening(OFFICE, zones, before) == utc(2024, 6, 5, 16, 0)  # 09:00 in LA
    assert is_open(OFFICE, zones, utc(2024, 6, 5, 16, 0))
    assert closes_at(OFFICE, zones, utc(2024, 6, 5, 16, 0)) == utc(2024, 6, 6, 2, 0)  # 20:00 Boise


def test_zones_that_never_overlap_never_open() -> None:
    # A toll-free number maps to the whole NANP, Guam to Pago Pago: no hour fits them all.
    zones = lead_zones("+18005550123", override=None, default=MADRID)
    assert len(zones) > 10
    assert next_opening(OFFICE, zones, utc(2024, 6, 5, 12, 0)) is None


def test_overlap_of_far_zones_depends_on_dst() -> None:
    # Tokyo is 14 hours ahead of New York in winter (09:00 Tokyo = 19:00 NY: one shared hour)
    # and 13 in summer (09:00 Tokyo = 20:00 NY, already closed: no shared hour at all).
    daily = CallingWindow(time(9), time(20), ALL_DAYS)
    zones = [ZoneInfo("Asia/Tokyo"), NEW_YORK]
    assert next_opening(daily, zones, utc(2024, 6, 5, 12, 0)) is None
    assert next_opening(daily, zones, utc(2024, 1, 10, 12, 0)) == utc(2024, 1, 11, 0, 0)
    assert closes_at(daily, zones, utc(2024, 1, 11, 0, 0)) == utc(2024, 1, 11, 1, 0)
    # From late October, the first shared hour comes once New York falls back (3 November).
    assert next_opening(daily, zones, utc(2024, 10, 25, 12, 0)) == utc(2024, 11, 4, 0, 0)


def test_weekend_is_closed_with_mon_fri() -> None:
    assert not is_open(OFFICE, [MADRID], datetime(2024, 6, 8, 12, tzinfo=MADRID))  # Saturday
    assert not is_open(OFFICE, [MADRID], datetime(2024, 6, 9, 12, tzinfo=MADRID))  # Sunday
    assert is_open(OFFICE, [MADRID], datetime(2024, 6, 10, 12, tzinfo=MADRID))  # Monday


def test_weekday_is_the_leads_own() -> None:
    # Monday 01:00 UTC is still Sunday evening in New York.
    window = CallingWindow(time(0), time(23, 59), WEEKDAYS)
    assert is_open(window, [MADRID], utc(2024, 6, 10, 1, 0))
    assert not is_open(window, [NEW_YORK], utc(2024, 6, 10, 1, 0))


def test_friday_evening_opens_on_monday_morning() -> None:
    friday = datetime(2024, 6, 7, 20, 30, tzinfo=MADRID)
    opening = next_opening(OFFICE, [MADRID], friday)
    assert opening == datetime(2024, 6, 10, 9, 0, tzinfo=MADRID)
    assert opening is not None and opening.utcoffset() == timedelta(0)  # returned in UTC


def test_open_now_opens_now_and_closes_at_todays_end() -> None:
    now = datetime(2024, 6, 5, 12, 34, 56, 789, tzinfo=MADRID)
    assert next_opening(OFFICE, [MADRID], now) == now
    assert closes_at(OFFICE, [MADRID], now) == datetime(2024, 6, 5, 20, 0, tzinfo=MADRID)
    assert closes_at(OFFICE, [MADRID], datetime(2024, 6, 5, 20, 0, tzinfo=MADRID)) is None
    assert closes_at(OFFICE, [MADRID], datetime(2024, 6, 8, 12, 0, tzinfo=MADRID)) is None


def test_closes_at_is_the_earliest_zone_end() -> None:
    now = utc(2024, 6, 5, 14, 0)  # 16:00 Madrid, 10:00 New York
    window = CallingWindow(time(9), time(20), ALL_DAYS)
    assert closes_at(window, [MADRID, NEW_YORK], now) == utc(2024, 6, 5, 18, 0)  # 20:00 Madrid


def test_naive_now_and_no_zones_are_refused() -> None:
    with pytest.raises(DialerError, match="aware datetime"):
        is_open(OFFICE, [MADRID], datetime(2024, 6, 5, 12))
    with pytest.raises(DialerError, match="at least one time zone"):
        next_opening(OFFICE, [], utc(2024, 6, 5, 12))


# --- DST ----------------------------------------------------------------------------------------


def test_madrid_spring_forward_day() -> None:
    # 2024-03-31 (last Sunday of March): 02:00 CET jumps to 03:00 CEST at 01:00 UTC.
    daily = CallingWindow(time(9), time(20), ALL_DAYS)
    assert next_opening(daily, [MADRID], utc(2024, 3, 30, 20, 0)) == utc(2024, 3, 31, 7, 0)
    assert closes_at(daily, [MADRID], utc(2024, 3, 31, 7, 0)) == utc(2024, 3, 31, 18, 0)
    # 02:30 does not exist that day: a window starting then opens when the clock jumps.
    gap = CallingWindow(time(2, 30), time(4), ALL_DAYS)
    assert next_opening(gap, [MADRID], utc(2024, 3, 30, 23, 0)) == utc(2024, 3, 31, 1, 0)
    assert not is_open(gap, [MADRID], utc(2024, 3, 31, 0, 59, 59))
    # ... and a window ending then closes when the clock jumps.
    night = CallingWindow(time(0), time(2, 30), ALL_DAYS)
    assert closes_at(night, [MADRID], utc(2024, 3, 31, 0, 30)) == utc(2024, 3, 31, 1, 0)


def test_new_york_fall_back_day() -> None:
    # 2024-11-03: 02:00 EDT falls back to 01:00 EST at 06:00 UTC; 01:00-02:00 happens twice.
    daily = CallingWindow(time(9), time(20), ALL_DAYS)
    assert next_opening(daily, [NEW_YORK], utc(2024, 11, 3, 5, 0)) == utc(2024, 11, 3, 14, 0)
    assert closes_at(daily, [NEW_YORK], utc(2024, 11, 3, 14, 0)) == utc(2024, 11, 4, 1, 0)
    repeated = CallingWindow(time(1, 30), time(3), ALL_DAYS)  # open in both 01:30s
    assert closes_at(repeated, [NEW_YORK], utc(2024, 11, 3, 5, 40)) == utc(2024, 11, 3, 6, 0)
    assert next_opening(repeated, [NEW_YORK], utc(2024, 11, 3, 6, 0)) == utc(2024, 11, 3, 6, 30)
    early = CallingWindow(time(0), time(1, 30), ALL_DAYS)  # the clock goes back into it
    assert next_opening(early, [NEW_YORK], utc(2024, 11, 3, 5, 45)) == utc(2024, 11, 3, 6, 0)
    assert closes_at(early, [NEW_YORK], utc(2024, 11, 3, 6, 10)) == utc(2024, 11, 3, 6, 30)


# --- properties ---------------------------------------------------------------------------------

ZONE_NAMES = [
    "Europe/Madrid",
    "Atlantic/Canary",
    "America/New_York",
    "America/Los_Angeles",
    "America/Santiago",  # DST changes at midnight
    "Asia/Kolkata",  # +05:30
    "Asia/Kathmandu",  # +05:45
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "Pacific/Chatham",  # +12:45 / +13:45
    "Pacific/Honolulu",
    "UTC",
]
STEP = timedelta(minutes=15)
TICK = timedelta(microseconds=1)


@st.composite
def windows(draw: st.DrawFn) -> CallingWindow:
    start = draw(st.integers(0, 24 * 60 - 2))
    end = draw(st.integers(start + 1, 24 * 60 - 1))
    days = draw(st.frozensets(st.integers(0, 6), min_size=1))
    return CallingWindow(time(*divmod(start, 60)), time(*divmod(end, 60)), days)


zone_lists = st.lists(st.sampled_from(ZONE_NAMES), min_size=1, max_size=3, unique=True).map(
    lambda names: [ZoneInfo(name) for name in names]
)
instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
)


def _sample_points(start: datetime, stop: datetime) -> list[datetime]:
    """Whole minutes every 15 minutes strictly between ``start`` and ``stop``."""
    point = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    points = []
    while point < stop:
        points.append(point)
        point += STEP
    return points


@settings(max_examples=150, deadline=None)
@given(window=windows(), zones=zone_lists, now=instants)
def test_next_opening_is_the_first_open_instant(
    window: CallingWindow, zones: list[ZoneInfo], now: datetime
) -> None:
    opening = next_opening(window, zones, now)
    if is_open(window, zones, now):
        assert opening == now
    if opening is None:
        stop = now + timedelta(days=14)
        assert not any(is_open(window, zones, p) for p in _sample_points(now, stop))
        return
    assert opening.utcoffset() == timedelta(0)
    assert opening >= now
    assert is_open(window, zones, opening)
    if opening > now:
        assert not is_open(window, zones, opening - TICK)
    assert not any(is_open(window, zones, p) for p in _sample_points(now, opening))


@settings(max_examples=150, deadline=None)
@given(window=windows(), zones=zone_lists, now=instants)
def test_closes_at_is_the_first_closed_instant(
    window: CallingWindow, zones: list[ZoneInfo], now: datetime
) -> None:
    opening = next_opening(window, zones, now)
    if opening is None:
        assert closes_at(window, zones, now) is None
        return
    if opening != now:
        assert closes_at(window, zones, now) is None
    closing = closes_at(window, zones, opening)
    assert closing is not None and closing.utcoffset() == timedelta(0)
    assert closing > opening
    assert not is_open(window, zones, closing)
    assert is_open(window, zones, closing - TICK)
    assert all(is_open(window, zones, p) for p in _sample_points(opening, closing))


# --- forecast -----------------------------------------------------------------------------------


def test_forecast_orders_groups_by_opening_and_carries_overflow_to_the_next_day():
    from dialer.schedule import CallingWindow, forecast

    window = CallingWindow(time(9, 0), time(10, 0), frozenset(range(5)))
    madrid, new_york = ZoneInfo("Europe/Madrid"), ZoneInfo("America/New_York")
    now = datetime(2026, 11, 25, 8, 30, tzinfo=UTC)  # Wed 09:30 Madrid, 03:30 New York
    slots, never = forecast([((new_york,), 50), ((madrid,), 4000)], window, now, per_minute=100)
    assert never == 0
    got = [(s.label, s.count, s.start, s.end) for s in slots]
    assert got == [
        # 30 minutes left in Madrid's window at 100 a minute: 3,000 today
        ("Europe/Madrid", 3000, now, datetime(2026, 11, 25, 9, 0, tzinfo=UTC)),
        # New York opens at 09:00 its time
        ("America/New_York", 50, datetime(2026, 11, 25, 14, 0, tzinfo=UTC),
         datetime(2026, 11, 25, 14, 0, 30, tzinfo=UTC)),
        # the rest of Madrid waits for Thursday 09:00
        ("Europe/Madrid", 1000, datetime(2026, 11, 26, 8, 0, tzinfo=UTC),
         datetime(2026, 11, 26, 8, 10, tzinfo=UTC)),
    ]  # fmt: skip


def test_forecast_without_a_window_is_one_slot_per_group_from_now():
    from dialer.schedule import forecast

    now = datetime(2026, 11, 28, 23, 0, tzinfo=UTC)  # a Saturday night: no window, no matter
    slots, never = forecast([((ZoneInfo("Asia/Tokyo"),), 200)], None, now, per_minute=100)
    assert never == 0
    assert [(s.count, s.start, s.end) for s in slots] == [(200, now, now + timedelta(minutes=2))]


def test_forecast_counts_leads_whose_zones_never_open_together():
    from dialer.schedule import CallingWindow, forecast

    window = CallingWindow(time(9, 0), time(10, 0), frozenset(range(7)))
    apart = (ZoneInfo("Asia/Tokyo"), ZoneInfo("America/New_York"))
    now = datetime(2026, 11, 25, 8, 30, tzinfo=UTC)
    assert forecast([(apart, 7)], window, now, per_minute=100) == ([], 7)
