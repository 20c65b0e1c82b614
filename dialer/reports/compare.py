"""Comparing groups of leads: ``dialer report RESULTS --by COLUMN``'s statistics.

Owns what a lead counts as in a comparison, the per-group rates with their 95% intervals, the test
of the difference between groups, and how many more calls would tell a difference of the size
seen. Pure: it takes ``(group, entry)`` pairs and returns dataclasses; no file, no printing (the
terminal text is ``dialer.reports.report``'s, the chart ``dialer.reports.htmlreport``'s).

The unit is the lead (the person the experiment assigned to a group), not the call: a lead
counts once in its group, whatever the number of calls made to it.

* A lead is *decided* when one of its calls has a final outcome (``dialer sync`` recorded it);
  a lead whose calls have none yet is *awaiting* and is left out of the rates.
* *Answered*: one of its calls ended ``closed`` (answered and talked through) or
  ``recall-scheduled`` (answered; the person asked to be called again). No-answer, busy,
  voicemail, failed and wrong-phone-format are not answered.
* *Success*: the API's ``success`` when the results carry it (a ``success`` column), else one
  of its calls ended ``closed``. (``dialer sync`` records the outcome, duration and summary; the
  API, and the simulator, say ``success`` exactly for a closed call.)

The statistics come from maintained libraries, not hand-written formulas: the Wilson score
interval (``statsmodels.stats.proportion.proportion_confint``), the two-proportion z-test
(``proportions_ztest``), Fisher's exact test when a count expected under no difference is under
5 (``scipy.stats.fisher_exact``), the chi-square test for more than two groups
(``proportions_chisquare``), and the calls per group a two-sided test at alpha 0.05 needs for
power 0.8 at the effect size seen (Cohen's h, ``proportion_effectsize``;
``NormalIndPower.solve_power``).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dialer.reports.stats import call_seconds
from dialer.store.results import ANSWERED_OUTCOMES, FINAL_OUTCOMES, SUCCESS_OUTCOME, Entry

ALPHA = 0.05  # the test's level, and 1 - the intervals' confidence
POWER = 0.8  # the chance of telling a real difference of the size seen, for ``more_calls``
FISHER_BELOW = 5  # an expected count under this: Fisher's exact test, not the z-test
BLANK = "(blank)"  # how a group of empty cells is named
SLICES = 4  # the leads cut into this many parts, in order of calling, for ``over_time``
_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f"})


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` of ``total``, with its 95% Wilson interval (None when ``total`` is 0)."""

    count: int
    total: int
    low: float | None
    high: float | None

    @property
    def value(self) -> float | None:
        return self.count / self.total if self.total else None


@dataclass(frozen=True, slots=True)
class Group:
    """One group's leads: those with a call, their rates and their answered calls' length."""

    name: str  # the column's value, ``BLANK`` for an empty cell
    leads: int  # leads with at least one call
    awaiting: int  # of those, leads none of whose calls has a final outcome yet
    answered: Rate  # over decided leads (leads - awaiting)
    success: Rate
    avg_duration: float | None  # seconds, over answered current calls whose duration is known

    @property
    def decided(self) -> int:
        return self.leads - self.awaiting


@dataclass(frozen=True, slots=True)
class Difference:
    """The test of a rate's difference between the groups with decided leads."""

    metric: str  # "success" or "answered"
    test: str  # "two-proportion z-test", "Fisher's exact test", "chi-square test", or ""
    p_value: float | None  # None: nothing to test (fewer than two groups with outcomes)
    leader: str | None  # the group with the highest rate (None: a tie, or nothing to test)
    runner_up: str | None  # the next best group
    more_calls: int | None  # more calls per group that would tell a difference this size

    @property
    def can_tell(self) -> bool:
        return self.p_value is not None and self.p_value < ALPHA


@dataclass(frozen=True, slots=True)
class Slice:
    """The leads called ``first``-th to ``last``-th (in order of their latest call) by group."""

    first: int
    last: int
    counts: tuple[tuple[str, int], ...]  # (group, leads), the groups in the comparison's order

    def share(self, name: str) -> float:
        total = self.last - self.first + 1
        return dict(self.counts).get(name, 0) / total if total else 0.0


@dataclass(frozen=True)
class Comparison:
    """The groups of a column and the tests between them."""

    column: str
    source: str  # where the column was found: the results file's or the leads file's name
    groups: tuple[Group, ...]  # by name, the blank group last
    success: Difference
    answered: Difference
    notes: tuple[str, ...] = ()  # what the reader should know (e.g. a changed leads file)
    # How the groups' shares moved in order of calling (``Slice`` per quarter of the leads),
    # and the p-value of the chi-square test that they did; () when the test cannot tell
    # (a fixed split, say).
    over_time: tuple[Slice, ...] = ()
    moved_p: float | None = None

    def group(self, name: str) -> Group:
        return next(g for g in self.groups if g.name == name)


def wilson(count: int, total: int) -> tuple[float, float] | None:
    """The 95% Wilson score interval of ``count`` successes in ``total`` trials."""
    if total <= 0:
        return None
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(count, total, alpha=ALPHA, method="wilson")
    return float(low), float(high)


def rate(count: int, total: int) -> Rate:
    interval = wilson(count, total)
    return Rate(count, total, *(interval or (None, None)))


def significance(counts: list[int], totals: list[int]) -> tuple[str, float]:
    """``(test name, p-value)`` of the difference between the proportions ``counts/totals``
    (two or more groups, each total at least 1): two groups, the two-proportion z-test, or
    Fisher's exact test when a count expected under no difference is under 5; more, the
    chi-square test. Every trial alike (all successes, or none): p = 1 (nothing differs)."""
    if len(counts) < 2 or len(counts) != len(totals) or min(totals) < 1:
        raise ValueError("two or more groups, each with at least one trial")
    hits, trials = sum(counts), sum(totals)
    if hits in (0, trials):
        return "", 1.0
    if len(counts) == 2:
        expected = [t * share for t in totals for share in (hits / trials, 1 - hits / trials)]
        if min(expected) < FISHER_BELOW:
            from scipy.stats import fisher_exact

            table = [[c, t - c] for c, t in zip(counts, totals, strict=True)]
            return "Fisher's exact test", float(fisher_exact(table).pvalue)
        from statsmodels.stats.proportion import proportions_ztest

        _, p = proportions_ztest(counts, totals)
        return "two-proportion z-test", float(p)
    from statsmodels.stats.proportion import proportions_chisquare

    _, p, _ = proportions_chisquare(counts, totals)
    return "chi-square test", float(p)


def calls_per_group(p1: float, p2: float) -> int | None:
    """Calls each of two equal groups needs for a two-sided test at alpha 0.05 to tell rates
    ``p1`` and ``p2`` apart with power 0.8 (Cohen's h and the normal approximation); None when
    they are equal (no difference to tell)."""
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    effect = abs(float(proportion_effectsize(p1, p2)))
    if effect < 1e-9:
        return None
    with warnings.catch_warnings():  # a huge effect converges with a warning, still right
        warnings.simplefilter("ignore")
        n = NormalIndPower().solve_power(effect_size=effect, alpha=ALPHA, power=POWER, ratio=1.0)
    return math.ceil(float(n))


def compare(
    column: str,
    labelled: Iterable[tuple[str, Entry]],
    *,
    source: str = "",
    success: Mapping[str, bool] | None = None,
    notes: Iterable[str] = (),
) -> Comparison:
    """The comparison of the leads in ``labelled`` (``(group, entry)`` pairs; leads never
    called are left out) by group. ``success``: the API's success per ledger key, when the
    results carry it (else a closed call is a success)."""
    tallies: dict[str, list[int]] = {}  # name -> [leads, awaiting, answered, success]
    durations: dict[str, list[float]] = {}
    called: list[tuple[float, int, str]] = []  # (sent at, row, group) of each lead with a call
    for name, entry in labelled:
        outcomes = _outcomes(entry)
        if outcomes is None:
            continue
        name = name.strip() or BLANK
        called.append((entry.sent_at, entry.row, name))
        tally = tallies.setdefault(name, [0, 0, 0, 0])
        tally[0] += 1
        final = [o for o in outcomes if o in FINAL_OUTCOMES]
        if not final:
            tally[1] += 1
            continue
        tally[2] += any(o in ANSWERED_OUTCOMES for o in final)
        said = success.get(entry.key) if success else None
        tally[3] += said if said is not None else SUCCESS_OUTCOME in final
        if entry.outcome in ANSWERED_OUTCOMES and (seconds := call_seconds(entry.duration)):
            durations.setdefault(name, []).append(seconds)
    groups = []
    for name in sorted(tallies, key=lambda n: (n == BLANK, n.casefold(), n)):
        leads, awaiting, answered, won = tallies[name]
        times = durations.get(name, [])
        groups.append(Group(name, leads, awaiting, rate(answered, leads - awaiting),
                            rate(won, leads - awaiting),
                            sum(times) / len(times) if times else None))  # fmt: skip
    return Comparison(
        column=column,
        source=source,
        groups=tuple(groups),
        success=difference("success", [(g.name, g.success) for g in groups]),
        answered=difference("answered", [(g.name, g.answered) for g in groups]),
        notes=tuple(notes),
        **split_over_time(called, [g.name for g in groups]),
    )


def split_over_time(called: list[tuple[float, int, str]], names: list[str]) -> dict[str, Any]:
    """``over_time`` and ``moved_p`` of a comparison: the groups' shares in ``SLICES`` parts of
    the leads in order of their latest call (its intent's time, then the row), when a
    chi-square test of independence (part x group, ``scipy.stats.chi2_contingency``) says they
    moved (p < ``ALPHA``: as under ``--allocate adaptive``); nothing when it cannot tell (a
    fixed split) or there are too few leads."""
    if len(names) < 2 or len(called) < 4 * SLICES:
        return {}
    from scipy.stats import chi2_contingency

    ordered = [name for _, _, name in sorted(called)]
    bounds = [round(len(ordered) * i / SLICES) for i in range(SLICES + 1)]
    slices = []
    for start, end in itertools.pairwise(bounds):
        counts = Counter(ordered[start:end])
        slices.append(Slice(start + 1, end, tuple((n, counts[n]) for n in names)))
    table = [[count for _, count in part.counts] for part in slices]
    p_value = float(chi2_contingency(table).pvalue)
    return {"over_time": tuple(slices), "moved_p": p_value} if p_value < ALPHA else {}


def difference(metric: str, rates: list[tuple[str, Rate]]) -> Difference:
    """The test between the groups whose rate has a total, the leader and the runner-up, and
    (when the data cannot tell yet) the further calls per group that would tell a difference
    the size of the leader's over the runner-up's."""
    rated = [(name, r) for name, r in rates if r.total]
    if len(rated) < 2:
        return Difference(metric, "", None, rated[0][0] if rated else None, None, None)
    test, p = significance([r.count for _, r in rated], [r.total for _, r in rated])
    ranked = sorted(rated, key=lambda item: -(item[1].value or 0.0))
    (first, best), (second, next_best) = ranked[0], ranked[1]
    if best.value == next_best.value:
        return Difference(metric, test, p, None, None, None)
    more = None
    if p >= ALPHA:
        needed = calls_per_group(best.value or 0.0, next_best.value or 0.0)
        if needed is not None:
            more = max(1, needed - min(best.total, next_best.total))
    return Difference(metric, test, p, first, second, more)


def _outcomes(entry: Entry) -> list[str] | None:
    """The outcomes of every call made to the lead ("" not known yet), None if never called."""
    earlier = [outcome for call_id, outcome, _ in entry.earlier_calls() if call_id]
    calls = earlier + ([entry.outcome.strip()] if entry.call_id else [])
    return calls or None


def parse_success(text: str) -> bool | None:
    """A ``success`` cell as the API's boolean; None when empty or not a boolean."""
    word = text.strip().casefold()
    return True if word in _TRUE else False if word in _FALSE else None
