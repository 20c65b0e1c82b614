"""Campaign statistics: exact counts, answer rates, time buckets across zones, the summary."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from dialer.errors import ConfigError
from dialer.model import Status
from dialer.reports.stats import STATUS_ORDER, campaign_stats, load_stats, report_lines
from dialer.store.results import Entry

MADRID = ZoneInfo("Europe/Madrid")


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def called(phone: str, call_id: str, outcome: str = "", at: str = "", **kw) -> Entry:
    return Entry(phone, 2, phone, Status.CALLED, call_id, 1, outcome=outcome, outcome_at=at, **kw)


def campaign() -> list[Entry]:
    """Seven leads, seven calls: a recycled lead called twice, one whose next call is pending,
    a call not synced yet, leads never called. Local hours: Madrid +2, New York -4, London +1."""
    return [
        # A Madrid landline: answered at 10:30 local, after a no-answer at 18:05 the day before.
        called(
            "+34912345678",
            "c-a2",
            "closed",
            "2025-05-12T08:30:00Z",
            duration="120",
            history="c-a1 no-answer 2025-05-11T16:05:00Z",
        ),
        called("+12125550100", "c-b1", "voicemail", "2025-05-12T14:10:00Z", duration="30"),
        called("+442079460123", "c-c1", "closed", "2025-05-12T09:59:59Z", duration="60"),
        # Not synced yet: timed by when it was sent, no outcome.
        called("+34912345679", "c-d1", sent_at=ts("2025-05-12T10:00:00+00:00")),
        # Recycled, waiting for its third call: a busy call at 09:00 Madrid, one without outcome.
        Entry(
            "+34912345680",
            5,
            "+34912345680",
            Status.PENDING,
            history="c-e1 busy 2025-05-12T07:00:00Z; c-e2 - -",
        ),
        Entry("row:7", 7, "12", Status.INVALID, crm_id="CRM-7"),
        Entry("+34912345681", 8, "+34912345681", Status.FAILED, error="HTTP 422"),
    ]


def test_counts_over_leads_and_every_call():
    stats = campaign_stats(campaign())
    assert stats.leads == 7
    assert dict(stats.statuses) == {"called": 4, "failed": 1, "pending": 1, "invalid": 1}
    assert list(stats.statuses) == ["called", "failed", "pending", "invalid"]  # display order
    assert list(stats.outcomes) == ["closed", "no-answer", "voicemail", "busy", "no outcome yet"]
    assert stats.calls == 7
    assert dict(stats.outcomes) == {
        "closed": 2, "no-answer": 1, "voicemail": 1, "busy": 1, "no outcome yet": 2,
    }  # fmt: skip
    assert stats.no_outcome == 2
    assert stats.answered == 2
    assert stats.answer_rate == pytest.approx(2 / 5)  # over the 5 calls with an outcome
    assert stats.avg_duration == pytest.approx(90)  # 120 and 60: the voicemail's 30 s not counted
    assert dict(stats.attempts) == {1: 3, 2: 2}


def test_answer_rate_by_the_leads_local_hour():
    stats = campaign_stats(campaign())
    hours = {h.hour: (h.calls, h.answered) for h in stats.by_local_hour if h.calls}
    # 10h: Madrid 08:30Z (closed), New York 14:10Z (voicemail), London 09:59:59Z (closed);
    # 18h: Madrid's first call 16:05Z; 9h: the recycled lead's busy call at 07:00Z.
    assert hours == {9: (1, 0), 10: (3, 2), 18: (1, 0)}
    assert [h.hour for h in stats.by_local_hour] == list(range(24))
    assert stats.by_local_hour[10].rate == pytest.approx(2 / 3)
    assert stats.by_local_hour[0].rate is None


def test_calls_over_time_hourly_when_under_two_days_with_gaps_filled():
    stats = campaign_stats(campaign())
    assert stats.unit == "hour" and stats.zone == "UTC"
    assert stats.untimed == 1  # the recycled lead's second call has no time
    buckets = stats.over_time
    assert buckets[0].start == datetime(2025, 5, 11, 16, tzinfo=UTC)
    assert buckets[-1].start == datetime(2025, 5, 12, 14, tzinfo=UTC)
    assert len(buckets) == 23  # 16:00 to 14:00 next day, empty hours included
    busy = {b.start.hour: (b.calls, b.answered) for b in buckets if b.calls}
    assert busy == {16: (1, 0), 7: (1, 0), 8: (1, 1), 9: (1, 1), 10: (1, 0), 14: (1, 0)}
    assert sum(b.calls for b in buckets) == stats.calls - stats.untimed


def test_calls_over_time_in_the_campaign_zone():
    stats = campaign_stats(campaign(), zone=MADRID)
    assert stats.zone == "Europe/Madrid"
    first = stats.over_time[0].start
    assert (first.hour, first.utcoffset().total_seconds()) == (18, 7200)


def test_calls_per_day_when_the_campaign_spans_two_days_or_more():
    entries = [
        called("+34912345678", "c1", "closed", "2025-03-29T23:30:00Z"),  # the 29th in UTC
        called("+34912345679", "c2", "busy", "2025-04-01T09:00:00Z"),
    ]
    stats = campaign_stats(entries, zone=MADRID)
    assert stats.unit == "day"
    # 23:30Z on the 29th is the 30th in Madrid (CET); summer time starts that night.
    days = [(b.start.day, b.start.hour, b.calls, b.answered) for b in stats.over_time]
    assert days == [(30, 0, 1, 1), (31, 0, 0, 0), (1, 0, 1, 0)]


def test_the_repeated_hour_of_a_dst_change_is_two_buckets():
    # 00:30Z and 01:30Z on 26 Oct 2025 are both 02:30 in Madrid (summer time, then winter time).
    entries = [called("+34912345678", "c1", "closed", "2025-10-26T00:30:00Z"),
               called("+34912345679", "c2", "busy", "2025-10-26T01:30:00Z")]  # fmt: skip
    stats = campaign_stats(entries, zone=MADRID)
    assert [(b.start.hour, b.calls) for b in stats.over_time] == [(2, 1), (2, 1)]
    assert stats.over_time[0].start.utcoffset() != stats.over_time[1].start.utcoffset()
    assert stats.by_local_hour[2].calls == 2


def test_a_number_with_several_zones_takes_the_campaign_zone_when_it_is_one():
    entry = called("+34612345678", "c1", "closed", "2025-05-12T08:30:00Z")  # Canary or Madrid
    assert campaign_stats([entry], zone=MADRID).by_local_hour[10].calls == 1  # Madrid, UTC+2
    assert campaign_stats([entry]).by_local_hour[9].calls == 1  # the first: Canary, UTC+1


def test_odd_numbers_count_in_the_default_zone(monkeypatch):
    entries = [called("+80012345678", "c1", "closed", "2025-05-12T08:30:00Z"),
               called("not a phone", "c2", "busy", "2025-05-12T08:40:00Z")]  # fmt: skip
    assert campaign_stats(entries, zone=MADRID).by_local_hour[10].calls == 2

    def broken(*args, **kwargs):
        raise RuntimeError("phonenumbers metadata missing")

    monkeypatch.setattr("dialer.reports.stats.lead_zones", broken)
    assert campaign_stats(entries).by_local_hour[8].calls == 2


def test_a_call_is_timed_by_its_end_else_its_send_else_its_row():
    entries = [
        called(
            "+34912345678",
            "c1",
            "closed",
            "2025-05-12T08:30:00+02:00",
            sent_at=ts("2025-05-01T00:00:00+00:00"),
        ),
        called("+34912345679", "c2", updated_at="2025-05-12T07:15:00Z"),
        called("+34912345670", "c3", "busy", "not a time"),
    ]
    stats = campaign_stats(entries)
    starts = {b.start.hour for b in stats.over_time if b.calls}
    assert starts == {6, 7}  # 08:30+02:00 is 06:30Z; the unsynced one by its row's time
    assert stats.untimed == 1
    assert stats.answer_rate == pytest.approx(1 / 2)


def test_empty_campaign():
    stats = campaign_stats([])
    assert (stats.leads, stats.calls, stats.answered) == (0, 0, 0)
    assert stats.answer_rate is None and stats.avg_duration is None
    assert stats.over_time == () and stats.first_call is None
    assert all(h.calls == 0 for h in stats.by_local_hour)
    lines = report_lines(stats)
    assert lines[0] == "Leads:          0 (no leads)"
    assert "Outcomes:       no calls yet" in lines
    assert not any(line.startswith(("Busiest", "Best hour")) for line in lines)


def test_report_lines():
    assert report_lines(campaign_stats(campaign(), zone=MADRID)) == [
        "Leads:          7 (4 called, 1 failed, 1 pending, 1 invalid)",
        "Calls:          7 (2 without an outcome yet)",
        "Outcomes:       2 closed, 1 no-answer, 1 voicemail, 1 busy, 2 no outcome yet",
        "Answered:       2 of 5 calls with an outcome (40.0%)",
        "Avg duration:   1 min 30 s (answered calls)",
        "Attempts:       3 leads with 1 call, 2 leads with 2 calls",
        "Calls made:     Sun 11 May 2025 to Mon 12 May 2025 (Europe/Madrid)",
        "Busiest hour:   Sun 11 May 18:00, 1 call",
        "Best hour:      10:00-11:00 lead's local time, 66.7% answered (3 calls)",
        "Untimed calls:  1 (no time recorded, not in the charts)",
    ]


def test_report_lines_use_thousands_separators():
    entries = [Entry(f"row:{n}", n, "", Status.INVALID) for n in range(1234)]
    assert report_lines(campaign_stats(entries))[0] == "Leads:          1,234 (1,234 invalid)"


def test_status_order_lists_every_status():
    assert sorted(STATUS_ORDER) == sorted(s.value for s in Status)


def test_load_stats_reads_the_results_file(tmp_path):
    results = tmp_path / "leads.results.csv"
    results.write_text(
        "row,crm_id,phone,status,call_id,attempts,error,updated_at,outcome,duration,summary,"
        "outcome_at,calls,history\r\n"
        "2,A1,+34912345678,called,c-2,2,,2025-05-12T08:31:00Z,closed,95,Booked a visit,"
        "2025-05-12T08:30:00Z,2,c-1 no-answer 2025-05-11T16:05:00Z\r\n"
        "3,A2,+34912345679,failed,,1,HTTP 422,2025-05-12T08:00:00Z,,,,,,\r\n",
        encoding="utf-8-sig",
    )
    stats = load_stats(results, zone=MADRID)
    assert (stats.leads, stats.calls, stats.answered) == (2, 2, 1)
    assert dict(stats.attempts) == {2: 1}
    assert stats.avg_duration == 95


def test_load_stats_without_a_results_file(tmp_path):
    missing = tmp_path / "x.results.csv"
    with pytest.raises(ConfigError, match=r"no results file .*x\.results\.csv.*dialer run") as err:
        load_stats(missing)
    assert "\n" not in str(err.value)


def test_a_recall_scheduled_call_was_answered_in_the_summary_and_in_the_comparison():
    """One definition of "answered" (``ANSWERED_OUTCOMES``): the person who asked to be called
    again did answer; the summary, its average duration and ``--by`` count the same calls."""
    from dialer.reports.compare import compare

    leads = [
        called("+34912345678", "c-1", "closed", "2025-05-12T08:30:00Z", duration="100"),
        called("+34912345679", "c-2", "recall-scheduled", "2025-05-12T08:40:00Z", duration="20"),
        called("+34912345680", "c-3", "no-answer", "2025-05-12T08:50:00Z"),
    ]
    stats = campaign_stats(leads)
    assert (stats.answered, stats.answer_rate) == (2, pytest.approx(2 / 3))
    assert stats.avg_duration == pytest.approx(60)  # 100 and 20 s
    [group] = compare("all", [("x", entry) for entry in leads]).groups
    assert (group.answered.count, group.success.count) == (2, 1)  # success: closed only
