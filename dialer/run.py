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
import hashlib
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from dialer.campaign import Settings
from dialer.client import CallSettings, MeetzyClient
from dialer.dispatcher import RetryPolicy, dispatch
from dialer.errors import AuthError, DialerError, LedgerError, NotSent, Stopped, Unreachable
from dialer.ledger import Ledger
from dialer.limits import SlidingWindows
from dialer.loader import ColumnMapping, LoadResult, load_leads
from dialer.model import LOAD_TIME, Lead, Outcome, Status
from dialer.reconcile import Absent, Found, reconcile
from dialer.results import Entry, read_results
from dialer.schedule import CallingWindow, is_open, lead_zones, next_opening


@dataclass(frozen=True)
class Plan:
    """What a run would do now (the dry run's answer)."""

    load: LoadResult
    to_dial: list[Lead]
    already_done: int  # dialable leads the results already hold (final or in doubt)
    sample_body: dict[str, Any] | None  # one request body, without the token
    held: int = 0  # leads left for a later run by --max-calls or --until
    deferred: int = 0  # leads outside their calling hours now


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
    warnings: list[str] = field(default_factory=list)

    @property
    def calls_per_minute(self) -> float:
        called = self.this_run.get(Status.CALLED.value, 0)
        return called * 60.0 / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def in_doubt(self) -> int:
        return self.counts.get(Status.IN_DOUBT.value, 0)


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
    mapping = ColumnMapping(
        phone_column=settings.phone_column,
        rename=dict(settings.params),
        exclude=frozenset(settings.exclude),
    )
    return load_leads(
        settings.leads, mapping, default_region=settings.default_region, encoding=settings.encoding
    )


def plan(settings: Settings) -> Plan:
    """The dry run: what would be sent now. Reads files, writes none, needs no token."""
    loaded = load(settings)
    finished = {e.key for e in read_results(settings.output) if e.status is not Status.PENDING}
    dialable = [lead for lead in loaded.leads if lead.status is Status.PENDING]
    to_dial = [lead for lead in dialable if lead.key not in finished]
    call = call_settings(settings)
    sample = call.body(to_dial[0].phone, to_dial[0].params) if to_dial else None
    return Plan(loaded, to_dial, len(dialable) - len(to_dial), sample)


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
) -> RunSummary:
    """Dial every lead of ``settings.leads`` that has no final result yet.

    First settles the leads left in doubt by earlier runs (``GET /calls``), then dials, then
    settles this run's own in-doubt leads and dials again those proven absent.

    Raises ``InputError`` before dialing anyone, ``LedgerError``/``LedgerLocked`` before or
    while dialing, ``AuthError`` after the first 401/403 (leads in flight are recorded first),
    and ``Stopped`` after a second signal. A first signal ends the run early and cleanly:
    the summary says ``stopped``.
    """
    clock = clock or (lambda: datetime.now(UTC))
    loaded = load(settings)
    started, started_at = time.monotonic(), _now_iso()
    error: DialerError | None = None
    with Ledger(settings.output, durable=durable) as ledger:
        for lead in loaded.leads:
            if lead.status in LOAD_TIME:
                ledger.record_load(lead)
        session = _Session(settings, loaded, ledger, api_url, token, transport, retry, clock)
        try:
            asyncio.run(session.run(on_start, on_outcome, handle_signals))
        except DialerError as exc:  # a second signal, a ledger error: still summarised below
            error = exc
        counts = Counter(entry.status.value for entry in ledger.entries())
        this_run = Counter(ledger.entries_by_key()[key].status.value for key in session.touched)
        not_started = len(session.to_dial) - len(session.touched & {x.key for x in session.to_dial})
        counts[Status.PENDING.value] += not_started + session.left_for_later
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
            warnings=list(loaded.warnings),
        )
        summary = dataclasses.replace(
            summary, record=run_record(settings, summary, started_at=started_at, error=error)
        )
        if not isinstance(error, LedgerError):
            ledger.log_run(summary.record)
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
        "started": started_at,
        "finished": _now_iso(),
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
        "reconciled": summary.reconciled,
    }


def _until(settings: Settings, now: datetime) -> float | None:
    """Seconds from ``now`` until ``--until`` today in the campaign's time zone (<= 0: passed)."""
    if settings.until is None:
        return None
    zone = ZoneInfo(settings.timezone) if settings.timezone else None
    local = now.astimezone(zone)
    hour, minute = (int(part) for part in settings.until.split(":"))
    return (
        local.replace(hour=hour, minute=minute, second=0, microsecond=0) - local
    ).total_seconds()


def _local_zone() -> Any:
    """This machine's time zone, as a tzinfo (used for leads whose number says none)."""
    return datetime.now().astimezone().tzinfo


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return ""
    return digest.hexdigest()


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# Rounds of look-up-and-redial for this run's in-doubt leads before they wait for a later run.
SETTLE_ROUNDS = 3


class _Session:
    """One run's network side: reconcile, dispatch, reconcile again, over one client."""

    def __init__(
        self,
        settings: Settings,
        loaded: LoadResult,
        ledger: Ledger,
        api_url: str,
        token: str,
        transport: httpx.AsyncBaseTransport | None,
        retry: RetryPolicy | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings, self.loaded, self.ledger, self.retry = settings, loaded, ledger, retry
        self.call = call_settings(settings)
        self.client_args = (api_url, token, transport)
        self.to_dial: list[Lead] = []
        self.skipped = 0
        self.touched: set[str] = set()  # keys of leads this run sent to or settled
        self.sent = self.rate_limited = 0
        self.reconciled: Counter[str] = Counter()
        self.rate_lowered_to: int | None = None
        self.auth_error: AuthError | None = None
        self.unreachable: NotSent | None = None
        self.ended_by = ""  # why the run ended early: signal, until, max_calls, window_closed
        self.deferred = 0  # leads outside their calling hours
        s = settings
        self.hours = (
            CallingWindow.parse(s.calling_hours or "00:00-23:59", s.calling_days or "mon-sun")
            if s.calling_hours or s.calling_days
            else None
        )
        self.default_zone: Any = ZoneInfo(s.timezone) if s.timezone else _local_zone()
        self._zone_cache: dict[str, tuple[Any, ...]] = {}
        self.left_for_later = 0  # leads held back by --max-calls or --until
        self.clock = clock
        self.stopped = False

    async def run(
        self,
        on_start: Callable[[Plan], None] | None,
        on_outcome: Callable[[Outcome], None] | None,
        handle_signals: bool,
    ) -> None:
        s = self.settings
        self.stop = asyncio.Event()
        self.limiter = SlidingWindows([(s.max_per_second, 1.0), (s.max_per_minute, 60.0)])
        # The API's windows span runs: an earlier run's last sends still count (cron batches).
        offset = time.monotonic() - time.time()
        self.limiter.seed(t + offset for t in self.ledger.recent_sends(within=61.0))
        url, token, transport = self.client_args
        self.client = MeetzyClient(url, token, timeout=s.timeout, max_connections=s.concurrency,
                                   transport=transport)  # fmt: skip
        task = asyncio.current_task()
        assert task is not None

        def on_signal() -> None:
            self.ended_by = self.ended_by or "signal"
            self.stop.set()

        with _signals(on_signal, task) if handle_signals else contextlib.nullcontext():
            try:
                await self._run(on_start, on_outcome)
            except asyncio.CancelledError:
                raise Stopped(
                    "stopped at once by a second signal: leads in flight are recorded in doubt"
                ) from None
            finally:
                await self.client.aclose()

    async def _run(
        self, on_start: Callable[[Plan], None] | None, on_outcome: Callable[[Outcome], None] | None
    ) -> None:
        # Leads left in doubt by an earlier run are settled before anything new is dialed.
        await self._settle(self.ledger.in_doubt())
        if self.settings.redial_in_doubt:
            for entry in self.ledger.in_doubt():
                why = f"redialed on request (--redial-in-doubt): {entry.error}"
                self.ledger.resolve(entry.key, Status.PENDING, error=why)
        dialable = [lead for lead in self.loaded.leads if lead.status is Status.PENDING]
        self.to_dial = [lead for lead in dialable if self.ledger.should_dial(lead)]
        self.skipped = len(dialable) - len(self.to_dial)
        if self.hours is not None and self.to_dial:
            inside = []
            for lead in self.to_dial:
                if (reason := self._closed(lead)) is None:
                    inside.append(lead)
                else:
                    self.ledger.defer(lead, reason)
                    self.deferred += 1
            if not inside:
                self.ended_by = "window_closed"
            self.to_dial = inside
        cap = self.settings.max_calls
        until = _until(self.settings, self.clock())
        if until is not None and until <= 0:
            cap = 0  # --until has passed today: nothing to start now
            self.ended_by = "until"
        if cap is not None and len(self.to_dial) > cap:
            self.left_for_later = len(self.to_dial) - cap
            self.to_dial = self.to_dial[:cap]
            self.ended_by = self.ended_by or "max_calls"
        if until is not None and until > 0:
            asyncio.get_running_loop().call_later(until, self._until_reached)
        if on_start is not None:
            first = self.to_dial[0] if self.to_dial else None
            sample = self.call.body(first.phone, first.params) if first else None
            on_start(Plan(self.loaded, self.to_dial, self.skipped, sample, self.left_for_later,
                          self.deferred))  # fmt: skip
        fresh = await self._dispatch(self.to_dial, on_outcome)
        # This run's own in-doubt leads: look them up, dial again those proven absent, and
        # look up those the redial left in doubt, a few rounds at most.
        for _ in range(SETTLE_ROUNDS):
            doubtful = [e for e in self.ledger.in_doubt() if e.key in fresh]
            if not doubtful or self.stop.is_set():
                break
            await self._settle(doubtful)
            again = [lead for lead in self.to_dial if self.ledger.should_dial(lead)]
            fresh = await self._dispatch(again, on_outcome)

    def _closed(self, lead: Lead) -> str | None:
        """Why ``lead`` may not be called now (outside its calling hours), or None."""
        if self.hours is None:
            return None
        override = lead.params.get(self.settings.timezone_column or "") or None
        key = f"{lead.phone}|{override}"
        zones = self._zone_cache.get(key)
        if zones is None:
            zones = lead_zones(lead.phone, override=override, default=self.default_zone)
            self._zone_cache[key] = zones
        now = self.clock()
        if is_open(self.hours, zones, now):
            return None
        opening = next_opening(self.hours, zones, now)
        if opening is None:
            return "outside calling hours: its time zones share no open hour in 14 days"
        when = opening.astimezone(UTC).isoformat(timespec="minutes").replace("+00:00", "Z")
        return f"outside calling hours; next opening {when}"

    def _until_reached(self) -> None:
        if not self.stop.is_set():
            self.ended_by = "until"
            self.stop.set()

    async def _dispatch(
        self, leads: list[Lead], on_outcome: Callable[[Outcome], None] | None
    ) -> set[str]:
        """Dial ``leads``; returns the keys of those that got an outcome."""
        done: set[str] = set()
        if not leads:
            return done

        async def send(lead: Lead) -> str:
            return (await self.client.create_call(self.call.body(lead.phone, lead.params))).call_id

        def seen(outcome: Outcome) -> None:
            self.touched.add(outcome.lead.key)
            done.add(outcome.lead.key)
            if on_outcome is not None:
                on_outcome(outcome)

        result = await dispatch(leads, send, ledger=self.ledger, limiter=self.limiter,
                                concurrency=self.settings.concurrency, retry=self.retry,
                                stop=self.stop, on_outcome=seen,
                                admit=self._closed if self.hours else None)  # fmt: skip
        self.sent += result.sent
        self.rate_limited += result.rate_limited
        self.rate_lowered_to = result.lowered_to or self.rate_lowered_to
        self.auth_error = self.auth_error or result.auth_error
        self.unreachable = self.unreachable or result.unreachable
        self.stopped = self.stopped or result.stopped
        self.deferred += result.counts.get("deferred", 0)
        return done

    async def _settle(self, entries: list[Entry]) -> None:
        verdicts = await reconcile(entries, self.client.list_calls,
                                   playbook_id=self.settings.playbook, limiter=self.limiter,
                                   grace=self.settings.in_doubt_grace)  # fmt: skip
        for key, verdict in verdicts.items():
            self.touched.add(key)
            before = self.ledger.get(key)
            was = before.error if before else ""
            if isinstance(verdict, Found):
                self.reconciled["found"] += 1
                why = f"confirmed by GET /calls after: {was}"
                self.ledger.resolve(key, Status.CALLED, call_id=verdict.call_id, error=why)
            elif isinstance(verdict, Absent):
                self.reconciled["absent"] += 1
                why = f"not found by GET /calls, so not placed: {was}"
                self.ledger.resolve(key, Status.PENDING, error=why)
            else:
                self.reconciled["undecided"] += 1
                self.ledger.resolve(key, Status.IN_DOUBT, error=verdict.reason)


@contextlib.contextmanager
def _signals(on_first: Callable[[], None], task: asyncio.Task[Any]) -> Iterator[None]:
    """First SIGINT/SIGTERM: ``on_first`` (start no new call). Second: cancel what is in flight."""
    loop = asyncio.get_running_loop()
    seen = 0

    def on_signal() -> None:
        nonlocal seen
        seen += 1
        if seen == 1:
            on_first()
        else:
            task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


@contextlib.contextmanager
def sandbox(**config: Any) -> Iterator[tuple[str, str]]:
    """Serve the built-in simulator on a free 127.0.0.1 port: yields ``(url, token)``."""
    from dialer.simulator import SimConfig, SimServer, Simulator

    sim = Simulator(SimConfig(**config))
    with SimServer(sim) as server:
        yield server.url, sim.config.token
