"""The rate a run shows: the sustained calls per minute, never above a per-minute limit kept.

A 300-lead run at the defaults (10 a second, 100 a minute) sends 100 in its first 10 s, then
100 a minute: 300 calls over 130 s. Shown as calls over elapsed minutes that was 138.0 calls/min,
which reads like a broken limit. ``per_minute`` counts the 60 s windows the sends touched.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.engine.run import RunSummary
from dialer.model import per_minute
from dialer.reports.report import summary_lines


def test_the_measured_case_shows_the_limit_not_above_it():
    assert per_minute(300, 130.0) == 100.0
    assert per_minute(0, 0.0) == 0.0
    assert per_minute(35, 4.0) == 35.0  # all in the first minute


def schedule(gaps: list[int], per_second: int, per_minute_limit: int) -> list[int]:
    """Send times in milliseconds (exact integers) as a limiter keeping both sliding windows
    would allow, each send as soon as its gap (the caller's own pace) and the windows let it."""
    times: list[int] = []
    now = 0
    for gap in gaps:
        now += gap
        while True:
            last_second = [t for t in times[-per_second:] if t > now - 1000]
            last_minute = [t for t in times[-per_minute_limit:] if t > now - 60_000]
            waits = []
            if len(last_second) >= per_second:
                waits.append(last_second[0] + 1000)
            if len(last_minute) >= per_minute_limit:
                waits.append(last_minute[0] + 60_000)
            if not waits:
                break
            now = max(waits)
        times.append(now)
    return times


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.integers(0, 5000), min_size=1, max_size=400),
    per_second=st.integers(1, 20),
    limit=st.integers(1, 120),
)
def test_a_run_that_kept_the_per_minute_limit_never_shows_more(gaps, per_second, limit):
    times = schedule(gaps, per_second, limit)
    assert per_minute(len(times), (times[-1] - times[0]) / 1000) <= limit


def test_the_summary_line_shows_the_sustained_rate():
    summary = RunSummary(output=Path("r.csv"), counts={"called": 300}, this_run={"called": 300},
                         sent=300, skipped=0, not_started=0, elapsed=131.0, rate_limited=0,
                         stopped=False, send_span=130.0)  # fmt: skip
    assert summary_lines(summary)[0] == (
        "Done in 131.0 s: 300 called (300 requests, 100.0 calls/min)"
    )
