"""One run of a campaign, the library's front door: load, open the ledger, dispatch, summarise.

``plan(settings)`` is the dry run: it reads the leads (and the results, to show what a resume
would skip) and returns what would be sent, without a token, a network or a file written.
``run_campaign(settings, ...)`` dials. Both take plain values and return dataclasses; neither
prints nor exits. ``sandbox()`` starts the built-in simulator for ``--sandbox``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import compress
from pathlib import Path
from typing import Any

import httpx

from dialer.api.client import CallSettings, MeetzyClient, preflight
from dialer.campaign import Settings, check_pacing
from dialer.engine.experiment import SettingsResolver, mix_lines
from dialer.engine.planner import Hours, choose, seconds_until
from dialer.engine.pool import RetryPolicy
from dialer.engine.reconcile import grace_ends, graces_left
from dialer.engine.session import Session, account_budget, sync_ledger
from dialer.engine.sync import due_under
from dialer.errors import DialerError, LedgerError, Unreachable
from dialer.leads.loader import ColumnMapping, LoadResult, load_dnc, load_leads
from dialer.model import NEVER_SENT, Lead, Outcome, Status, Subset, per_minute
from dialer.schedule import Slot, campaign_zone, forecast, lead_zones, window_from
from dialer.store.cache import (
    file_digest,
    leads_key,
    read_leads_cache,
    read_leads_mark,
    read_previous_leads,
    release_freed_memory,
    save_leads_cache,
    write_leads_mark,
)
from dialer.store.edits import FileChanges, carried, compare, mark
from dialer.store.journal import journal_path
from dialer.store.ledger import Ledger, read_state
from dialer.store.results import Entry, require_results, utc_iso
from dialer.store.sandboxmark import check_kind
from dialer.store.sandboxmark import open_sandbox_store as open_sandbox_store  # for ``--sandbox``
from dialer.store.state import LedgerState


@dataclass(frozen=True)
class Plan:
    """What a run would do now (the dry run's answer)."""

    load: LoadResult
    to_dial: Sequence[Lead]
    already_done: int  # dialable leads the results already hold (final or in doubt)
    sample_body: dict[str, Any] | None  # one request body, without the token
    held: int = 0  # leads left for a later run by --max-calls or --until
    deferred: int = 0  # leads outside their calling hours now
    forecast: list[Slot] = field(default_factory=list)  # when they would be dialed (dry run)
    never: int = 0  # leads whose zones never share an open hour in the next 14 days
    rate: float = 0.0  # the calls per minute the forecast assumes
    changes: FileChanges | None = None  # how the leads file differs from the results
    # The call settings the leads would be sent with, when they differ per lead (languages,
    # versions of a split...): one line each (``dialer.engine.experiment.mix_lines``).
    mix: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunSummary:
    """What one run did, and where the campaign stands after it."""

    output: Path
    counts: dict[str, int]  # status -> leads in the results after this run
    this_run: dict[str, int]  # status -> leads decided by this run's sends
    sent: int  # POST /call requests made
    skipped: int  # leads already final or in doubt from earlier runs
    not_started: int  # leads left for a later run (stopped early)
    elapsed: float
    rate_limited: int
    stopped: bool
    reconciled: dict[str, int] = field(default_factory=dict)  # found / absent / undecided
    record: dict[str, Any] = field(default_factory=dict)  # the audit record (runs.jsonl)
    ended_by: str = ""  # "signal", "until", "max_calls", or "" (ran to the end)
    left_for_later: int = 0  # leads held back by --max-calls or --until for a later run
    rate_lowered_to: int | None = None  # the per-minute limit after repeated 429s
    rate_story: RateStory | None = None  # how 429s lowered the rate, and whether it came back
    shared_with: int = 0  # other campaigns that shared the account's budget during the run
    warnings: list[str] = field(default_factory=list)
    synced: dict[str, int] = field(default_factory=dict)  # --sync: outcome -> calls recorded
    recycled: int = 0  # called leads due another call (retry_outcomes), dialed again
    send_span: float = 0.0  # seconds from the first request to the last
    waited: float = 0.0  # seconds waited for in-doubt leads' grace to end
    waiting: int = 0  # leads in doubt whose grace is not over: the next run looks them up
    waiting_until: str = ""  # when the last of their graces ends (UTC)
    rang_twice: int = 0  # calls found now that rang a lead a second time (a lost answer's)
    found_late: int = 0  # leads shown absent whose call was listed later, before any redial
    notices: list[str] = field(default_factory=list)  # the results file rebuilt, repaired
    changes: FileChanges | None = None  # how the leads file differed from the results
    kept: dict[str, int] = field(default_factory=dict)  # status -> leads not in it, after the run

    @property
    def calls_per_minute(self) -> float:
        """Calls per started minute of sending: never above a per-minute limit the run kept."""
        return per_minute(self.this_run.get(Status.CALLED.value, 0), self.send_span)

    @property
    def in_doubt(self) -> int:
        return self.counts.get(Status.IN_DOUBT.value, 0)


@dataclass(frozen=True)
class RateStory:
    """What 429s did to a run's rate: lowered to ``lowest``/min for ``lowered_for`` seconds,
    and ``back`` at the configured ``limit``/min (else still ``now``/min at the end)."""

    lowest: int
    lowered_for: float
    back: bool
    limit: int
    now: int


def rate_story(changes: Sequence[tuple[float, int]], limit: int, end: float) -> RateStory | None:
    """A ``RateStory`` from the limiter's ``(time, per-minute limit)`` changes (None: none)."""
    if not changes:
        return None
    last = changes[-1][1]
    back = last >= limit
    until = changes[-1][0] if back else end
    return RateStory(min(m for _, m in changes), max(0.0, until - changes[0][0]), back, limit, last)


@dataclass(frozen=True)
class SyncSummary:
    """What ``dialer sync`` did, and how many calls still wait for an outcome."""

    output: Path
    checked: int  # calls looked up
    finished: int  # final outcomes recorded now
    in_progress: int  # calls not over yet
    failed: int  # look-ups that failed: tried again by the next sync
    outcomes: dict[str, int]  # outcome -> calls recorded now
    first_error: str
    elapsed: float
    stopped: bool = False
    notices: list[str] = field(default_factory=list)  # the results file rebuilt, repaired


def sync_campaign(
    output: str | Path,
    *,
    api_url: str,
    token: str,
    transport: httpx.AsyncBaseTransport | None = None,
    max_per_second: int = 10,
    max_per_minute: int = 100,
    concurrency: int = 5,
    timeout: float = 30.0,
    handle_signals: bool = False,
    sandbox: bool = False,
    budget_folder: Path | None = None,
) -> SyncSummary:
    """Record what became of every call in the results ``output`` that has no outcome yet
    (``GET /call/{id}``), under the run lock, within the account's budget shared on this
    machine when ``budget_folder`` is given (``dialer.engine.budget``). Raises ``ConfigError`` for
    a bad pacing value or a missing results file, or for a campaign of the other kind
    (``sandbox``: the calls are the sandbox's), ``LedgerLocked`` while a run holds it,
    ``AuthError`` on 401/403."""
    check_pacing(max_per_second=max_per_second, max_per_minute=max_per_minute,
                 concurrency=concurrency, timeout=timeout)  # fmt: skip
    preflight(api_url, token, transport)  # a bad token or route: refused before anything
    output = require_results(output)
    started = time.monotonic()
    with Ledger(output, sandbox=sandbox, sync=True) as ledger:
        ledger.keep_load_rows()
        # Outcomes change no row and no lead: the last run's leads mark stays true.
        if (note := read_leads_mark(output, ledger.journal)) is not None:
            ledger.after_close = lambda: write_leads_mark(output, ledger.journal, note, True)
        client = MeetzyClient(api_url, token, timeout=timeout, max_connections=concurrency,
                              transport=transport)  # fmt: skip
        limits = [(max_per_second, 1.0), (max_per_minute, 60.0)]
        started_at = utc_iso()
        budget = account_budget(budget_folder, api_url, token, limits, campaign=output,
                                timeout=timeout)  # fmt: skip
        result = asyncio.run(sync_ledger(ledger, client, limits=limits, concurrency=concurrency,
                                         handle_signals=handle_signals,
                                         budget=budget))  # fmt: skip
        # The look-ups of the last minute count against the next command's rate windows.
        recent = [round(t, 3) for t in result.request_times if t >= time.time() - 61.0]
        ledger.log_run({"command": "sync", "started": started_at, "finished": utc_iso(),
                        "checked": result.checked, "finished_calls": result.finished,
                        "outcomes": dict(result.outcomes), "request_times": recent})  # fmt: skip
    return SyncSummary(output, result.checked, result.finished, result.in_progress, result.failed,
                       dict(result.outcomes), result.first_error, time.monotonic() - started,
                       stopped=result.stopped, notices=list(ledger.notices))  # fmt: skip


def call_settings(settings: Settings) -> CallSettings:
    return CallSettings(
        playbook_id=settings.playbook,
        version_id=settings.version_id,
        voice_id=settings.voice_id,
        voice_model=settings.voice_model,
        language=settings.language,
        interrupt=settings.interrupt,
    )


def load(settings: Settings) -> LoadResult:
    """The leads of ``settings.leads``: from the parse cache beside the results when it was
    made from these very files and settings (``dialer.store.cache``), else read and parsed."""
    mapping = ColumnMapping(
        phone_column=settings.phone_column,
        rename=dict(settings.params),
        exclude=frozenset(settings.exclude),
        id_column=settings.id_column,
        country_column=settings.country_column,
        require=settings.require,
        send_only=settings.params_only,
        setting_columns=dict(settings.setting_columns),
    )
    options = {"mapping": dataclasses.asdict(mapping), "region": settings.default_region,
               "encoding": settings.encoding, "delimiter": settings.delimiter,
               "sheet": settings.sheet, "allow_possible": settings.allow_possible,
               "dnc": settings.dnc, "header_row": settings.header_row}  # fmt: skip
    dnc_file = Path(settings.dnc) if settings.dnc else None
    key = leads_key(Path(settings.leads), dnc_file, options)
    if key is not None:
        cached = read_leads_cache(Path(settings.output), key, Path(settings.leads))
        if cached is not None:
            release_freed_memory()
            return cached
    dnc = load_dnc(settings.dnc, default_region=settings.default_region) if settings.dnc else None
    loaded = load_leads(
        settings.leads,
        mapping,
        default_region=settings.default_region,
        encoding=settings.encoding,
        delimiter=settings.delimiter,
        sheet=settings.sheet,
        dnc=dnc,
        allow_possible=settings.allow_possible,
        header_row=settings.header_row,
    )
    release_freed_memory()  # what parsing the file held: the ledger's state comes next
    return dataclasses.replace(loaded, cache_key=key or "")


def plan(
    settings: Settings, *, clock: Callable[[], datetime] | None = None, sandbox: bool = False
) -> Plan:
    """The dry run: what would be sent, and when, under the rate limits and each lead's calling
    window. Reads files, writes none, needs no token. Refuses, as the run would, results of
    the other kind (``sandbox``: a ``--sandbox`` run's; see ``dialer.store.sandboxmark``)."""
    check_kind(settings.output, sandbox=sandbox)
    loaded = load(settings)
    clock = clock or (lambda: datetime.now(UTC))
    now = clock()
    state = read_state(settings.output)
    changes = _changes(settings, loaded, state)
    stamp = now.timestamp()
    choice = choose(loaded, open_key=lambda key: _open_in(state, settings, key, stamp),
                    open_keys=_opens_in(state, settings, stamp),
                    due=lambda index, key: _due_in(state, settings, key, stamp),
                    closed=Hours(settings, lambda: now),
                    max_calls=settings.max_calls,
                    until=seconds_until(settings, now))  # fmt: skip
    to_dial = choice.to_dial
    sample = first_request(call_settings(settings), to_dial,
                           SettingsResolver(settings, state.get, state.values))  # fmt: skip
    window = window_from(settings.calling_hours, settings.calling_days)
    # The forecast: when the leads of this run, and those waiting for their hours, are dialed.
    waiting = Subset(loaded.leads, sorted(i for i, _ in choice.deferred))
    groups: Counter[tuple[Any, ...]] = Counter()
    if window is None:
        groups[()] = len(to_dial)  # no calling hours: zones do not matter
    else:
        default = campaign_zone(settings.timezone)
        cache: dict[tuple[str, str | None], tuple[Any, ...]] = {}
        for lead in [*to_dial, *waiting]:
            override = lead.params.get(settings.timezone_column or "") or None
            key = (lead.phone, override)
            if key not in cache:
                cache[key] = lead_zones(lead.phone, override=override, default=default)
            groups[cache[key]] += 1
    rate = min(settings.max_per_minute, settings.max_per_second * 60)
    slots, never = forecast(groups.items(), window, now, per_minute=rate)
    return Plan(loaded, to_dial, choice.already_done, sample, choice.held_count,
                len(choice.deferred), forecast=slots, never=never, rate=rate,
                changes=changes, mix=_mix(settings, loaded, to_dial, state))  # fmt: skip


def first_request(
    call: CallSettings, to_dial: Sequence[Lead], resolver: SettingsResolver
) -> dict[str, Any] | None:
    """The body of the first ``POST /call`` the run sends (None: nobody to dial), with the
    lead's version and language as ``resolver`` chooses them: what the dry run and the run's
    start line show."""
    if not to_dial:
        return None
    first = resolver.resolve(to_dial[0])
    return call.body(first.phone, first.params, first.settings)


def _mix(
    settings: Settings, loaded: LoadResult, to_dial: Sequence[Lead], state: Mapping[str, Entry]
) -> list[str]:
    """The dry run's settings mix; nothing to count (no pass over a million leads) when every
    lead gets the campaign's settings: no split, no ``--language auto``, no setting column."""
    names = getattr(loaded.leads, "setting_names", None)
    own = bool(names) if names is not None else any(lead.settings for lead in to_dial)
    if not (own or settings.versions or settings.language_auto):
        return []
    return mix_lines(settings, to_dial, state.values())


def _open_in(state: Mapping[str, Entry], settings: Settings, key: str, now: float) -> bool:
    """The dry run's ``open_key``: no record, or one never sent; or (``--redial-in-doubt``) in
    doubt with its grace over, as the run resolves it before choosing."""
    entry = state.get(key)
    if entry is None or entry.status in NEVER_SENT:  # as Ledger.open_key says
        return True
    in_doubt = entry.status in (Status.IN_DOUBT, Status.DIALING)
    return (
        in_doubt
        and settings.redial_in_doubt
        and (grace_ends(entry, settings.in_doubt_grace) <= now)
    )


def _opens_in(
    state: Mapping[str, Entry], settings: Settings, now: float
) -> Callable[[Sequence[str]], list[bool]] | None:
    """``_open_in`` for many keys at once, over the ledger's table (None for a plain dict):
    only a lead in doubt is looked at one by one."""
    if not isinstance(state, LedgerState):
        return None

    def opens(keys: Sequence[str]) -> list[bool]:
        found = state.status_in(keys, [None, *NEVER_SENT])
        if settings.redial_in_doubt:  # a lead in doubt may be open again: looked at alone
            doubt = state.status_in(keys, _DOUBT)
            for n in compress(range(len(keys)), doubt):
                found[n] = _open_in(state, settings, keys[n], now)
        return found

    return opens


_DOUBT = (Status.IN_DOUBT, Status.DIALING)


def _due_in(state: Mapping[str, Entry], settings: Settings, key: str, now: float) -> str | None:
    """The dry run's ``due``: a called lead due another call under the recycling settings."""
    entry = state.get(key)
    if entry is None or entry.status is not Status.CALLED:
        return None
    return due_under(settings, entry, now=now)


def _changes(settings: Settings, loaded: LoadResult, state: Mapping[str, Entry]) -> FileChanges:
    """How the leads file differs from the ledger's ``state``: carried from the last run's
    mark when nothing has changed since (a second's work a million leads saved), else
    compared, with the leads as the last run read them (its parse cache) at hand."""
    output = Path(settings.output)
    found = read_leads_mark(output, journal_path(output))
    if found is not None:
        counts = state.counts() if isinstance(state, LedgerState) else Counter(
            e.status.value for e in state.values())  # fmt: skip
        changes = carried(found, loaded.cache_key, counts[Status.REMOVED.value])
        if changes is not None:
            return changes
    # From that very cache, the file has not changed since: nothing to compare it with. Read
    # only when a called lead's phone left the file (then the run still holds the old cache).
    return compare(
        loaded, state, previous=lambda: None if loaded.from_cache else read_previous_leads(output)
    )


def run_campaign(
    settings: Settings,
    *,
    api_url: str,
    token: str,
    transport: httpx.AsyncBaseTransport | None = None,
    retry: RetryPolicy | None = None,
    on_start: Callable[[Plan], None] | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    handle_signals: bool = False,
    durable: bool = True,
    clock: Callable[[], datetime] | None = None,
    on_wait: Callable[[int, float], None] | None = None,
    wall_clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    sandbox: bool = False,
    budget_folder: Path | None = None,
) -> RunSummary:
    """Dial every lead of ``settings.leads`` that has no final result yet.

    First settles the leads left in doubt by earlier runs (``GET /calls``), then dials, then
    settles this run's own in-doubt leads and dials again those proven absent. A lead whose
    answer was lost is proven absent only by a listing taken ``in_doubt_grace`` seconds after
    the dialer gave up on it; with ``settle`` the run waits for that (``on_wait(leads,
    seconds)`` says so first) when nothing else is left, within ``--until``.
    ``wall_clock`` and ``sleep`` (the grace's clock and wait) are injectable for tests.
    ``sandbox``: the API is the sandbox's simulator; the campaign is marked so, and results of
    the other kind are refused (``ConfigError``) before anything is written or dialed.
    ``budget_folder``: where the account's rate budget, shared by every dialer process on this
    machine, is kept (``dialer.engine.budget.state_folder()`` for the CLI); None: this run alone.

    Raises ``InputError`` before dialing anyone, ``LedgerError``/``LedgerLocked`` before or
    while dialing, ``AuthError`` after the first 401/403 (leads in flight are recorded first),
    and ``Stopped`` after a second signal. A first signal ends the run early and cleanly:
    the summary says ``stopped``.
    """
    clock = clock or (lambda: datetime.now(UTC))
    preflight(api_url, token, transport)  # a bad token or route: refused before anything
    loaded = load(settings)
    started, started_at = time.monotonic(), utc_iso()
    error: DialerError | None = None
    with Ledger(settings.output, durable=durable, region=settings.default_region,
                sandbox=sandbox) as ledger:  # fmt: skip
        # What changed in the file since the results were written, before its parse cache
        # (the previous parse, which ``compare`` may read) is replaced.
        changes = _changes(settings, loaded, ledger.entries_by_key())
        save_leads_cache(Path(settings.output), loaded, durable=durable)  # under the lock
        ledger.mark_removed(changes.removed)
        ledger.mark_returned(changes.returned)
        ledger.move_rows(changes.moves)
        for lead in loaded.rejects():
            ledger.record_load(lead)
        call = call_settings(settings)
        session = Session(settings, loaded, ledger, api_url, token, transport, retry, clock, call,
                          wall=wall_clock, sleep=sleep, on_wait=on_wait,
                          budget_folder=budget_folder)  # fmt: skip

        def announce(sess: Session) -> None:
            if on_start is not None:
                sample = first_request(call, sess.to_dial, sess.resolver)
                on_start(Plan(loaded, sess.to_dial, sess.skipped, sample, sess.left_for_later,
                              sess.deferred, changes=changes))  # fmt: skip

        try:
            asyncio.run(session.run(announce, on_outcome, handle_signals))
        except DialerError as exc:  # a second signal, a ledger error: still summarised below
            error = exc
        if not isinstance(error, LedgerError):
            # In-doubt leads no longer in the file that the look-ups proved were not placed.
            ledger.mark_removed((key, "no longer in the leads file: not placed, never sent")
                                for key in changes.gone_in_doubt
                                if ledger.status_of(key) is Status.PENDING)  # fmt: skip
        untouched = [x for x in session.to_dial if x.key not in session.touched]
        for lead in untouched if ledger.failure is None else ():  # after a refused write: none
            if (entry := ledger.get(lead.key)) is None or entry.status is Status.PENDING:
                ledger.defer(lead, "not dialed yet: the run ended first", Status.PENDING)
        counts = ledger.counts()
        grace = settings.in_doubt_grace
        ends = graces_left(ledger.in_doubt(), grace, wall_clock())
        this_run = Counter(ledger.status_of(key).value for key in session.touched)  # type: ignore[union-attr]
        not_started = len(untouched)
        if error is None and ledger.failure is not None:
            error = ledger.failure  # a refused write someone caught: still the run's error
        after = mark(changes, loaded.cache_key, ledger.status_of)  # the in-doubt ones settled
        if error is None and session.auth_error is not None:
            error = session.auth_error
        if error is None and session.unreachable is not None:
            error = Unreachable(
                f"the API could not be reached ({session.unreachable}): the run stopped; "
                f"{counts[Status.PENDING.value]:,} leads are pending for the next run"
            )
        summary = RunSummary(
            output=settings.output,
            counts=+counts,
            this_run=dict(this_run),
            sent=session.sent,
            skipped=session.skipped,
            not_started=not_started,
            elapsed=time.monotonic() - started,
            rate_limited=session.rate_limited,
            stopped=session.ended_by == "signal",
            ended_by=session.ended_by,
            left_for_later=session.left_for_later
            + (not_started if session.ended_by in ("until", "max_calls") else 0),
            reconciled=dict(session.reconciled),
            rate_lowered_to=session.rate_lowered_to,
            rate_story=rate_story(session.rate_changes, settings.max_per_minute, time.monotonic()),
            shared_with=session.shared_with,
            warnings=list(loaded.warnings),
            synced=dict(session.synced.outcomes) if session.synced else {},
            recycled=session.recycled,
            send_span=max(session.last_send - session.first_send, 0.0),
            waited=session.waited,
            waiting=len(ends),
            waiting_until=utc_iso(max(ends)) if ends else "",
            rang_twice=session.rang_twice,
            found_late=session.found_late,
            notices=list(ledger.notices),
            changes=changes,
            kept=after["kept"],
        )
        summary = dataclasses.replace(
            summary, record=run_record(settings, summary, started_at=started_at, error=error)
        )
        if not isinstance(error, LedgerError) and ledger.failure is None:
            ledger.log_run(summary.record)
        if error is None and loaded.cache_key:  # the ledger now agrees with this file
            ledger.after_close = lambda: write_leads_mark(
                ledger.results, ledger.journal, after, durable
            )
    if error is not None:
        raise error
    return summary


def run_record(
    settings: Settings, summary: RunSummary, *, started_at: str, error: DialerError | None
) -> dict[str, Any]:
    """One run's audit record: what ran on which file with which settings, and what came of it.
    Appended to ``<results>.runs.jsonl``; ``--log-format json`` prints it. Holds no token."""
    outcome = {"signal": "stopped", "until": "until_reached", "max_calls": "cap_reached",
               "window_closed": "window_closed"}.get(summary.ended_by, "finished")  # fmt: skip
    if error is not None:
        outcome = type(error).__name__
    return {
        "command": "run",
        "started": started_at,
        "finished": utc_iso(),
        "outcome": outcome,
        "error": str(error) if error is not None else "",
        "leads_file": str(settings.leads),
        "leads_sha256": _sha256(settings.leads),
        "output": str(settings.output),
        "settings": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in dataclasses.asdict(settings).items()
        },
        "counts": summary.counts,
        "this_run": summary.this_run,
        "sent": summary.sent,
        "elapsed": round(summary.elapsed, 3),
        "calls_per_minute": round(summary.calls_per_minute, 2),
        "rate_limited": summary.rate_limited,
        "rate_changes": dataclasses.asdict(summary.rate_story) if summary.rate_story else {},
        "shared_with": summary.shared_with,
        "reconciled": summary.reconciled,
        "synced": summary.synced,
        "recycled": summary.recycled,
        "rang_twice": summary.rang_twice,
        "waited": round(summary.waited, 3),
        "notices": summary.notices,
        "leads_file_changes": {**summary.changes.record(), "kept": summary.kept}
        if summary.changes
        else {},
    }


def _sha256(path: Path) -> str:
    """The leads file's SHA-256 for the run record, "" when it cannot be read any more."""
    try:
        return file_digest(path)
    except OSError:
        return ""


@contextlib.contextmanager
def sandbox(**config: Any) -> Iterator[tuple[str, str]]:
    """Serve the built-in simulator on a free 127.0.0.1 port: yields ``(url, token)``."""
    from dialer.api.simulator import SimConfig, SimServer, Simulator

    sim = Simulator(SimConfig(**config))
    with SimServer(sim) as server:
        yield server.url, sim.config.token
