"""Reports: the words and numbers a person reads about a run, a plan or a results file.

Formatting functions take the library's dataclasses and return lines of text; the CLI decides
where they go. Every line a command prints is ``visible`` first: what a lead file or the API
wrote into it (cells, column names, error messages) is shown escaped, never obeyed.
``write_rejects`` writes the rejected rows as a worklist: what to fix in the leads file.
``comparison_lines`` is ``dialer report --by``'s table of groups and its one plain sentence.
"""

from __future__ import annotations

import contextlib
import csv
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from zoneinfo import ZoneInfo

from dialer.engine.budget import Running
from dialer.engine.reconcile import grace_ends
from dialer.engine.run import Plan, RateStory, RunSummary, SyncSummary
from dialer.engine.stop import StopResult
from dialer.errors import ConfigError
from dialer.files import output_file
from dialer.leads.loader import REJECTS_COLUMNS, LoadResult
from dialer.model import STATUS_ORDER, Lead, Status
from dialer.reports.compare import Comparison, Difference, Group, Rate
from dialer.reports.stats import format_duration
from dialer.store.edits import FileChanges
from dialer.store.ledger import read_runs, read_state_noted
from dialer.store.results import require_results, safe_cell
from dialer.terminal import plural, visible_lines

# The order statuses are listed in, most interesting first.
REJECTS_SHOWN = 10
EMPTY = '""'  # how an empty phone cell is shown


def counts_phrase(counts: Mapping[str, int]) -> str:
    """``"9 called, 2 invalid, 1 duplicate"``: non-zero counts in a fixed order."""
    known = [(s, counts.get(s, 0)) for s in ["dialable", *STATUS_ORDER]]
    other = sorted((s, n) for s, n in counts.items() if s not in ["dialable", *STATUS_ORDER])
    parts = [f"{n:,} {s}" for s, n in known + other if n]
    return ", ".join(parts) if parts else "no leads"


def _people(count: int) -> str:
    return f"{count:,} {'person' if count == 1 else 'people'}"


def country_lines(load: LoadResult, shown: int = 4) -> list[str]:
    """The dry run's line on where each row's country came from, e.g. ``Country: from column
    'MailingCountry' (US 102)``; none when the file has no country column."""
    if not load.country_column:
        return []
    labels = {"": "empty: default region", "?": "unknown"}
    parts = [f"{labels.get(code, code)} {n:,}" for code, n in load.countries.items()]
    if len(parts) > shown:
        parts = [*parts[:shown], f"{len(parts) - shown} more"]
    return [f"Country:       from column '{load.country_column}' ({', '.join(parts)})"]


def plan_lines(plan: Plan, *, output: str) -> list[str]:
    """The dry run's preview: what was read, what would be sent, what was rejected and why."""
    load = plan.load
    counts = load.counts()
    counts = {("dialable" if s == Status.PENDING.value else s): n for s, n in counts.items()}
    rejected = list(load.rejects())  # the leads final at load time, the only ones not pending
    lines = [
        "Dry run: nobody dialed, no token used.",
        f"Leads file:    {load.path} ({load.encoding}, delimiter {_delimiter(load.delimiter)})",
        f"Phone column:  {_phone_columns(load)}",
        *country_lines(load),
        f"Custom params: {', '.join(load.param_names) or '(none)'}",
        f"Rows:          {len(load.leads):,} ({counts_phrase(counts)})",
        f"To dial now:   {len(plan.to_dial):,}"
        + (f" ({plan.already_done:,} already done in {output})" if plan.already_done else ""),
    ]
    if plan.held:
        lines.append(f"Held back:     {plan.held:,} for a later run (--max-calls, --until)")
    if plan.deferred:
        lines.append(f"Not now:       {plan.deferred:,} outside their calling hours")
    lines += change_lines(plan.changes, load.path.name)
    lines += plan.mix
    lines += [f"Warning:       {w}" for w in load.warnings]
    lines += _listing(
        "Rejected rows",
        [f"row {x.row:<5} {x.status.value:<9} {x.phone or EMPTY}: {x.reason}" for x in rejected],
    )
    lines += forecast_lines(plan)
    if plan.sample_body is not None:
        lines.append("Example request (POST /call):")
        body = json.dumps(plan.sample_body, ensure_ascii=False, indent=2)
        lines += ["  " + line for line in body.splitlines()]
    return visible_lines(lines)


def _phone_columns(load: LoadResult) -> str:
    """The phone column, or the phone columns in the order each row tries them."""
    if len(load.phone_columns) > 1:
        return ", then ".join(load.phone_columns) + " (where the one before is empty or invalid)"
    return load.phone_column


def forecast_lines(plan: Plan) -> list[str]:
    """When the leads would be dialed: one line a slot, in the slot's own local time."""
    if not plan.forecast and not plan.never:
        return []
    lines = [f"Forecast at {plan.rate:,.0f} calls/min (local times, in the group's last zone):"]
    for slot in plan.forecast[:REJECTS_SHOWN]:
        zone = slot.start.tzinfo
        with contextlib.suppress(Exception):
            zone = ZoneInfo(slot.label.split("+")[-1])
        start, end = slot.start.astimezone(zone), slot.end.astimezone(zone)
        until = f"{end:%H:%M}" if end.date() == start.date() else f"{end:%a %d %b %H:%M}"
        lines.append(f"  {slot.count:>7,}  {start:%a %d %b %H:%M}-{until}  {slot.label}")
    if len(plan.forecast) > REJECTS_SHOWN:
        rest = sum(slot.count for slot in plan.forecast[REJECTS_SHOWN:])
        lines.append(f"  {rest:>7,}  later, up to {plan.forecast[-1].end:%a %d %b %H:%M} UTC")
    if plan.never:
        lines.append(f"  {plan.never:>7,}  never: their time zones share no open hour")
    return lines


def start_lines(plan: Plan) -> list[str]:
    """What a real run announces before it dials."""
    load = plan.load
    line = f"{len(load.leads):,} rows in {load.path.name}: {len(plan.to_dial):,} to dial"
    if plan.already_done:
        line += f", {plan.already_done:,} already done"
    if plan.held:
        line += f", {plan.held:,} held for a later run"
    if plan.deferred:
        line += f", {plan.deferred:,} outside calling hours"
    not_dialable = len(load.leads) - load.counts().get(Status.PENDING.value, 0)
    if not_dialable:
        line += f", {not_dialable:,} not dialable"
    return visible_lines(
        [line, *change_lines(plan.changes, load.path.name)]
        + [f"warning: {w}" for w in load.warnings]
    )


def change_lines(changes: FileChanges | None, name: str) -> list[str]:
    """How the leads file ``name`` differs from the results: leads no longer in it, back in
    it, moved, and phones changed after a call (one line each, the first few)."""
    if changes is None:
        return []
    lines = []
    if changes.removed_total:
        lines.append(
            f"Not in {name} any more: {plural(changes.removed_total, 'lead')} never called, "
            "now removed (not dialed; pending again if put back)"
        )
    if changes.gone:
        lines.append(f"Not in {name} any more, results kept: {counts_phrase(changes.gone)}")
    if changes.returned:
        lines.append(f"Back in {name}: {plural(len(changes.returned), 'removed lead')}, "
                     "pending again")  # fmt: skip
    if len(changes.moves):
        lines.append(f"Row numbers follow {name}: {plural(len(changes.moves), 'lead')} moved")
    shown = changes.phone_changes[:REJECTS_SHOWN]
    for change in shown:
        after = "after a call" if change.certain else "after a call that may have been placed"
        lines.append(f"row {change.row}: phone changed from {change.old} to {change.new} "
                     f"{after}: dialed as a new lead")  # fmt: skip
    if len(changes.phone_changes) > len(shown):
        more = len(changes.phone_changes) - len(shown)
        lines.append(f"... and {plural(more, 'more phone')} changed after a call")
    return lines


def summary_lines(summary: RunSummary) -> list[str]:
    """The closing summary of a run."""
    this_run = counts_phrase(summary.this_run) if summary.this_run else "nobody dialed"
    verb = {"signal": "Stopped early", "until": "Stopped at --until", "max_calls": "Batch done",
            "window_closed": "Calling hours closed for every lead"}.get(
        summary.ended_by, "Done")  # fmt: skip
    rate = f", {summary.calls_per_minute:,.1f} calls/min" if summary.sent else ""
    lines = [
        *summary.notices,
        f"{verb} in {summary.elapsed:.1f} s: {this_run} ({plural(summary.sent, 'request')}{rate})",
        f"Campaign: {counts_phrase(summary.counts)}",
    ]
    if summary.rang_twice:
        lines.append(
            f"WARNING: {_people(summary.rang_twice)} rang twice: a call whose answer "
            "was lost was created after all, after the lead had been shown absent and dialed "
            "again. Both call ids are in the lead's history (rang-twice); a longer "
            "--in-doubt-grace prevents it."
        )
    if summary.kept:
        lines.append(f"Not in the leads file any more, results kept: {counts_phrase(summary.kept)}")
    if summary.reconciled:
        r = summary.reconciled
        lines.append(
            f"Looked up {plural(sum(r.values()), 'in-doubt lead')} with GET /calls: "
            f"{r.get('found', 0):,} found (called), {r.get('absent', 0):,} not placed "
            f"(dialed again), {r.get('undecided', 0):,} undecided."
        )
    if summary.found_late:
        lines.append(
            f"{plural(summary.found_late, 'lead')} shown absent earlier turned out to be called "
            "(their call was listed late): recorded as called, not dialed again."
        )
    if summary.waited:
        lines.append(f"Waited {_duration(summary.waited)} for in-doubt leads' grace to end.")
    if summary.synced:
        synced = sum(summary.synced.values())
        lines.append(f"Synced {plural(synced, 'call outcome')}: {_outcomes(summary.synced)}.")
    if summary.recycled:
        lines.append(
            f"Called again (retryable outcome, cool-down over): {plural(summary.recycled, 'lead')}."
        )
    if summary.rate_limited:
        line = f"The API rate-limited {plural(summary.rate_limited, 'request')} (429), each retried"
        if (story := summary.rate_story) is not None:
            line += f"; {rate_phrase(story)}"
        lines.append(line + ".")
    if summary.shared_with:
        lines.append(
            f"Shared the account with {plural(summary.shared_with, 'other campaign')} on this "
            "machine: the rate limits were split between them."
        )
    if summary.left_for_later:
        why = "--until" if summary.ended_by == "until" else "--max-calls"
        left = plural(summary.left_for_later, "lead")
        lines.append(f"{left} left for the next run ({why}).")
    elif summary.not_started:
        left = plural(summary.not_started, "lead")
        lines.append(f"{left} not dialed yet: run the same command again.")
    if summary.waiting:
        one = summary.waiting == 1
        its, waits = ("its", "waits") if one else ("their", "wait")
        lines.append(
            f"{plural(summary.waiting, 'lead')} in doubt {waits} for {its} grace to end ({its} "
            f"answer was lost and {its} call may still be created): run the same command after "
            f"{summary.waiting_until}; it looks {'it' if one else 'them'} up and dials only "
            f"what is still not listed. Do not dial {'it' if one else 'them'} by hand."
        )
    if summary.in_doubt > summary.waiting:
        lines.append(
            f"{plural(summary.in_doubt - summary.waiting, 'lead')} in doubt (their call may have "
            "been placed and the API would not say): check them in the Meetzy dashboard, then "
            "rerun with --redial-in-doubt if they were not called."
        )
    lines.append(f"Results: {summary.output}")
    return visible_lines(lines)


def wait_line(leads: int, seconds: float) -> str:
    """What a run says before it waits for in-doubt leads' grace to end."""
    return (
        f"Waiting {_duration(seconds)} for {plural(leads, 'lead')} in doubt: a call created late "
        "must have time to show in GET /calls before a lead is dialed again "
        "(Ctrl-C leaves them for the next run)."
    )


def _duration(seconds: float) -> str:
    """``"4 min 52 s"``, ``"3 s"``, ``"0.4 s"``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def sync_lines(summary: SyncSummary) -> list[str]:
    """What ``dialer sync`` did."""
    verb = "Stopped early" if summary.stopped else "Synced"
    lines = [
        *summary.notices,
        f"{verb} in {summary.elapsed:.1f} s: looked up {plural(summary.checked, 'call')}, "
        f"{summary.finished:,} finished, {summary.in_progress:,} still in progress"
        + (f", {summary.failed:,} failed" if summary.failed else ""),
    ]
    if summary.outcomes:
        lines.append(f"Outcomes recorded: {_outcomes(summary.outcomes)}")
    if summary.in_progress:
        lines.append("Calls still in progress are looked up again by the next sync.")
    if summary.failed:
        lines.append(f"First failure: {summary.first_error} (the next sync tries again)")
    lines.append(f"Results: {summary.output}")
    return visible_lines(lines)


def _outcomes(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n:,} {o}" for o, n in sorted(counts.items(), key=lambda i: (-i[1], i[0])))


def _delimiter(delimiter: str) -> str:
    return {",": "','", ";": "';'", "\t": "tab"}.get(delimiter, repr(delimiter))


def write_rejects(path: str | Path, load: LoadResult) -> int:
    """Write every row rejected at load time as a worklist: its row, status and reason, what to do
    about it, and its cells (every cell, the header's too, made safe from formula injection).

    Fixes go back into the leads file, never through this file: an invalid phone or a missing
    param is fixed in its row of the leads file and the campaign rerun (a fixed number is then
    dialed as a new lead); a duplicate or a do-not-call row has nothing to fix and says so. The
    loader refuses this file as a leads file. Written whole or not at all, private to its owner
    (an existing file keeps its mode). Returns how many rows were written."""
    several = len(load.phone_columns) > 1  # then say which phone column each cell came from
    columns = [*REJECTS_COLUMNS, load.phone_column, *(["phone column"] if several else []),
               *load.param_names]  # fmt: skip
    count = 0
    try:
        with output_file(path, encoding="utf-8-sig", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\r\n")
            writer.writerow([safe_cell(cell) for cell in columns])
            for lead in load.rejects():
                cells = [str(lead.row), lead.status.value, lead.reason,
                         _to_do(lead, load.path.name), lead.phone]  # fmt: skip
                if several:
                    cells.append(lead.phone_column)
                cells += [lead.params.get(name, "") for name in load.param_names]
                writer.writerow([safe_cell(cell) for cell in cells])
                count += 1
    except OSError as exc:  # the temp file is gone: half a list would look whole
        raise ConfigError(
            f"cannot write --rejects {path}: {exc.strerror or exc}: "
            "free some space or choose another file"
        ) from exc
    return count


def _to_do(lead: Lead, leads_name: str) -> str:
    """What to do about one rejected row (the rejects file's "to do" column)."""
    if lead.status is Status.DUPLICATE:
        return "nothing to fix: the same person as another row, called once"
    if lead.status is Status.DNC:
        return "nothing to fix: on the do-not-call list, never called"
    return f"fix row {lead.row} in {leads_name} and rerun it: the fixed row is dialed then"


def stop_lines(result: StopResult) -> list[str]:
    """What ``dialer stop`` found and how the run it stopped ended."""
    name = result.results.name
    if not result.running:
        return [f"Nothing to stop: no dialer run is using {name}"]
    if not result.ended:
        return visible_lines([
            f"Asked pid {result.pid} to stop; after {result.waited:.1f} s it is still finishing "
            f"its calls in flight on {name}: run 'dialer stop' again to wait more"
        ])  # fmt: skip
    record = result.record
    if not record:
        return [f"Stopped: pid {result.pid} ended in {result.waited:.1f} s ({name})"]
    done = counts_phrase(record["this_run"]) if record.get("this_run") else "nobody dialed"
    command = record.get("command", "run")
    return visible_lines([
        f"Stopped: the {command} (pid {result.pid}) ended in {result.waited:.1f} s, "
        f"{record.get('outcome', '?')}: {done}",
        f"Go on with the same command as before; 'dialer status {name}' shows where it stands",
    ])  # fmt: skip


def rate_phrase(story: RateStory) -> str:
    """``slowed to 75/min for 2 min, back to 100/min`` (or ``still 75/min at the end``)."""
    text = f"slowed to {story.lowest}/min for {_duration(story.lowered_for)}"
    if story.back:
        return f"{text}, back to {story.limit}/min"
    return f"{text}, still {story.now}/min at the end (it climbs back after a quiet minute)"


def account_lines(results: str | Path, running: Sequence[Running]) -> list[str]:
    """``dialer status``: the campaigns running on the account on this machine and their
    shares of its budget (``running``, from ``dialer.engine.budget.running_campaigns``)."""
    me = str(Path(results).resolve())
    others = [r for r in running if r.campaign != me]
    if not others:
        return []
    total = sum(r.share for r in running)
    items = [f"{r.campaign} (share {r.share:g} of {total:g}, pid {r.pid})" for r in others]
    head = f"Sharing the account on this machine with {plural(len(others), 'running campaign')}:"
    return [head, *(f"  {item}" for item in items)]


def status_lines(results: str | Path, running: Sequence[Running] | None = None) -> list[str]:
    """``dialer status``: where a campaign stands, from its results, journal and run log,
    read without taking the lock (safe while a run is going on); with ``running`` (the
    account's campaigns on this machine) also who shares its rate budget."""
    results = Path(results)
    require_results(results)
    state, notices = read_state_noted(results)
    counts: dict[str, int] = {}
    for entry in state.values():
        status = Status.IN_DOUBT.value if entry.status is Status.DIALING else entry.status.value
        counts[status] = counts.get(status, 0) + 1
    lines = [f"{results.name}: {plural(len(state), 'lead')}: {counts_phrase(counts)}", *notices]
    runs = [run for run in read_runs(results) if run.get("command", "run") == "run"]
    if runs:
        last = runs[-1]
        done = counts_phrase(last["this_run"]) if last.get("this_run") else "nobody dialed"
        lines.append(
            f"Last run: {last.get('started', '?')} ({last.get('outcome', '?')}) in "
            f"{last.get('elapsed', 0):.1f} s: {done}, "
            f"{last.get('calls_per_minute', 0):,.1f} calls/min; {plural(len(runs), 'run')} in all"
        )
    twice = [e for e in state.values() if e.history and e.rang_twice]
    if twice:
        lines.append(
            f"WARNING: {_people(len(twice))} rang twice (a lost answer's call was "
            "created after the lead was dialed again): rows "
            + ", ".join(str(e.row) for e in sorted(twice, key=lambda e: e.row)[:REJECTS_SHOWN])
            + (" ..." if len(twice) > REJECTS_SHOWN else "")
        )
    kept = runs[-1].get("leads_file_changes", {}).get("kept") if runs else None
    if kept:
        lines.append(f"Not in the leads file at the last run, results kept: {counts_phrase(kept)}")
    outcomes: dict[str, int] = {}
    for entry in state.values():
        if entry.status is Status.CALLED:
            key = entry.outcome or "not synced yet"
            outcomes[key] = outcomes.get(key, 0) + 1
    if outcomes:
        lines.append(f"Outcomes of the last calls: {_outcomes(outcomes)}")
    deferred = [e.error for e in state.values() if e.status is Status.DEFERRED]
    openings = sorted(w.split("next opening ", 1)[1] for w in deferred if "next opening " in w)
    if openings:
        lines.append(f"Deferred: {len(deferred):,}, the first opening at {openings[0]}")
    doubtful = sorted(
        (e for e in state.values() if e.status in (Status.IN_DOUBT, Status.DIALING)),
        key=lambda e: e.row,
    )
    grace = float((runs[-1].get("settings") or {}).get("in_doubt_grace", 300.0) if runs else 300.0)
    now = time.time()
    waiting = [e for e in doubtful if e.status is Status.DIALING or grace_ends(e, grace) > now]
    waits = {e.key for e in waiting}
    why = "interrupted between the intent and the answer"
    lines += _listing(
        "In doubt, waiting for their grace to end (the next run looks them up; dial none by hand)",
        [f"row {e.row:<5} {e.phone}: {e.error or why}" for e in waiting],
    )
    lines += _listing(
        "In doubt, a person should check",
        [f"row {e.row:<5} {e.phone}: {e.error or why}" for e in doubtful if e.key not in waits],
    )
    if running is not None:
        lines += account_lines(results, running)
    return visible_lines(lines)


def _listing(title: str, items: list[str]) -> list[str]:
    """``title (n):`` and the first items, indented; nothing when there are none."""
    if not items:
        return []
    lines = [f"{title} ({len(items):,}):", *(f"  {item}" for item in items[:REJECTS_SHOWN])]
    if len(items) > REJECTS_SHOWN:
        lines.append(f"  ... and {len(items) - REJECTS_SHOWN:,} more")
    return lines


# --- dialer report --by ---------------------------------------------------------------------


GROUPS_SHOWN = 20  # groups listed (and charted) at most: those with the most leads


def shown_groups(groups: Sequence[Group], most: int = GROUPS_SHOWN) -> list[Group]:
    """The ``most`` groups with the most leads, in their order (a column such as ``phone``
    makes a group of every lead: the tests still weigh them all)."""
    if len(groups) <= most:
        return list(groups)
    keep = {id(g) for g in sorted(groups, key=lambda g: -g.leads)[:most]}
    return [g for g in groups if id(g) in keep]


def comparison_lines(comparison: Comparison) -> list[str]:
    """``dialer report --by COLUMN``: a row per group (leads with a call, answer and success
    rates with their 95% intervals, average duration), the tests, and one plain sentence."""
    groups = comparison.groups
    lines = [f"By {comparison.column} (from {comparison.source}): "
             f"{plural(len(groups), 'group')}, "
             f"{plural(sum(g.leads for g in groups), 'lead')} with a call"]  # fmt: skip
    lines += [f"Note: {note}" for note in comparison.notes]
    if groups:
        awaiting = any(g.awaiting for g in groups)
        width = max(5, *(len(g.name) for g in groups))
        head = (
            f"  {'group':<{width}}  {'leads':>6}  {'answered':<22}  {'success':<22}  avg duration"
        )
        lines.append(head + ("  awaiting outcome" if awaiting else ""))
        shown = shown_groups(groups)
        for g in shown:
            answered, success = rate_text(g.answered), rate_text(g.success)
            line = (f"  {g.name:<{width}}  {g.leads:>6,}  {answered:<22}  {success:<22}  "
                    f"{format_duration(g.avg_duration):<12}")  # fmt: skip
            lines.append((line + (f"  {g.awaiting:,}" if awaiting else "")).rstrip())
        if len(shown) < len(groups):
            rest = [g for g in groups if g not in shown]
            lines.append(f"  ... and {plural(len(rest), 'more group')} "
                         f"({plural(sum(g.leads for g in rest), 'lead')})")  # fmt: skip
        lines += ["  answered: closed or recall-scheduled; success: the API's success, else "
                  "closed;",
                  "  intervals: 95% Wilson; leads whose calls have no outcome yet are not in the "
                  "rates"]  # fmt: skip
    if comparison.over_time:
        lines.append(
            f"Split in order of calling ({comparison.column} share of the leads called; "
            f"it moved: chi-square test, {p_phrase(comparison.moved_p)}):"
        )
        for part in comparison.over_time:
            shares = ", ".join(f"{name} {part.share(name):.0%}" for name, _ in part.counts)
            lines.append(f"  leads {part.first:,}-{part.last:,}: {shares}")
    if tests := tests_phrase(comparison):
        lines.append(tests)
    lines.append(verdict(comparison.success, groups))
    return visible_lines(lines)


def verdict(diff: Difference, groups: Sequence[Group]) -> str:
    """One plain sentence: which group leads on ``diff``'s rate and whether the data can tell
    yet; if not, about how many more calls per group would tell a difference of the size seen."""
    metric = diff.metric
    rates = {g.name: (g.success if metric == "success" else g.answered) for g in groups}
    if diff.p_value is None:
        if not groups:
            return "No lead has been called yet: nothing to compare."
        if diff.leader is None:
            return "No call has an outcome yet: run 'dialer sync', then compare."
        return f"Only {diff.leader} has calls with an outcome: nothing to compare it with yet."
    if diff.leader is None or diff.runner_up is None:
        best = max((r.value or 0.0) for r in rates.values() if r.total)
        return (f"No group leads: the best {metric} rates are equal ({best:.1%}), so the data "
                "cannot tell the groups apart.")  # fmt: skip
    lead, runner = rates[diff.leader], rates[diff.runner_up]
    several = sum(1 for r in rates.values() if r.total) > 2
    versus = f"{_pct(lead)} {metric} vs {_pct(runner)} for {diff.runner_up}"
    versus += ", the next best" if several else ""
    if diff.can_tell:
        return f"{diff.leader} leads: {versus} ({p_phrase(diff.p_value)}): the data can tell."
    more = (f": about {diff.more_calls:,} more calls per group would tell a difference this size"
            if diff.more_calls else "")  # fmt: skip
    return (f"{diff.leader} leads: {versus}, but the data cannot tell yet "
            f"({p_phrase(diff.p_value)}){more}.")  # fmt: skip


_METRIC = {"success": "success rate", "answered": "answer rate"}
RATES_NOTE = (
    "answered: closed or recall-scheduled; success: the API's success, else closed; "
    "intervals: 95% Wilson; leads whose calls have no outcome yet are not in the rates"
)


def tests_phrase(comparison: Comparison) -> str:
    """``Difference in success rate: two-proportion z-test, p < 0.001; in answer rate: ...``;
    "" when there was nothing to test."""
    tests = [f"{_METRIC[d.metric]}: {d.test}, {p_phrase(d.p_value)}"
             for d in (comparison.success, comparison.answered) if d.test]  # fmt: skip
    return "Difference in " + "; in ".join(tests) if tests else ""


def p_phrase(p: float | None) -> str:
    """``p = 0.042``, ``p < 0.001``; ``p = -`` when there is none."""
    if p is None:
        return "p = -"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _pct(r: Rate) -> str:
    return "-" if r.value is None else f"{r.value:.1%}"


def rate_text(r: Rate) -> str:
    """``80.0% (62.7-90.5%)``: the rate and its 95% interval; ``-`` with no lead decided."""
    if r.value is None or r.low is None or r.high is None:
        return "-"
    return f"{r.value:.1%} ({r.low * 100:.1f}-{r.high * 100:.1f}%)"
