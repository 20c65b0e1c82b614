"""One run's network side: settle earlier doubts, dial, settle this run's doubts, redial.

``Session`` owns the order of a run once the leads are loaded and the ledger is open: look up
the leads earlier runs left in doubt, hold back what ``--max-calls``, ``--until`` and the
calling hours say to, dispatch the rest over one client and one rate limiter, then look up
this run's own in-doubt leads and redial those proven absent; every request within the
account's budget shared on this machine (``dialer.engine.budget``) when given its folder, the
campaign registered there for the run. It also owns the run's signal
handling (first signal: stop starting calls; second: cancel what is in flight).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from dialer.api.client import CallSettings, MeetzyClient
from dialer.campaign import Settings
from dialer.engine.budget import SHARED_UP_TO, AccountBudget
from dialer.engine.dispatcher import dispatch
from dialer.engine.experiment import SettingsResolver
from dialer.engine.limits import SlidingWindows
from dialer.engine.planner import Hours, choose, seconds_until
from dialer.engine.pool import RetryPolicy
from dialer.engine.reconcile import (
    UNSEEN_HORIZON,
    Absent,
    Found,
    Late,
    Waiting,
    grace_ends,
    graces_left,
    reconcile,
)
from dialer.engine.sync import CallOutcome, SyncResult, due_under, sync_outcomes
from dialer.errors import AuthError, ConfigError, NotSent, Stopped
from dialer.leads.loader import LoadResult
from dialer.model import Lead, Outcome, Status, Subset
from dialer.store.ledger import Ledger
from dialer.store.results import Entry, utc_iso

# Rounds of look-up-and-redial for this run's in-doubt leads before they wait for a later run.
SETTLE_ROUNDS = 3


class Session:
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
        call: CallSettings,
        *,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_wait: Callable[[int, float], None] | None = None,
        budget_folder: Path | None = None,
    ) -> None:
        self.budget_folder = budget_folder  # the account's shared record (None: this run alone)
        self.shared_with = 0  # other campaigns that shared the account during the run
        self.rate_changes: list[tuple[float, int]] = []  # (monotonic time, per-minute limit)
        self.settings, self.loaded, self.ledger, self.retry = settings, loaded, ledger, retry
        self.call = call
        self.client_args = (api_url, token, transport)
        self.to_dial: Subset = Subset(loaded.leads)
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
        self.hours = Hours(s, clock)  # the calling-hours check, again before each dial
        self.left_for_later = 0  # leads held back by --max-calls or --until
        self.recycled = 0  # called leads due another call (retry_outcomes), made pending again
        self.synced: SyncResult | None = None  # what --sync found
        self.resolver = SettingsResolver(s, ledger.get)  # each lead's settings as sent; _run
        # gives it the ledger's outcomes once the sync has recorded them (an adaptive split)
        self.clock = clock
        self.wall = wall  # unix time, for the grace (the calling-hours ``clock`` may be moved)
        self.sleep = sleep
        self.on_wait = on_wait
        self.waited = 0.0  # seconds waited for in-doubt leads' grace
        self.rang_twice = 0  # late calls found that rang a lead a second time
        self.found_late = 0  # leads shown absent whose call was listed later, before a redial
        self.undecided: set[str] = set()  # keys a listing could not decide
        self.unlisted = False  # the last look-up could not list the calls
        self.first_send = self.last_send = 0.0

    async def run(
        self,
        on_start: Callable[[Session], None] | None,
        on_outcome: Callable[[Outcome], None] | None,
        handle_signals: bool,
    ) -> None:
        s = self.settings
        self.stop = asyncio.Event()
        url, token, transport = self.client_args
        limits = [(s.max_per_second, 1.0), (s.max_per_minute, 60.0)]
        budget = account_budget(self.budget_folder, url, token, limits, campaign=s.output,
                                share=s.share, timeout=s.timeout)  # fmt: skip
        self.limiter = _limiter(limits, self.ledger, budget)
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
                self.rate_changes = list(self.limiter.rate_changes)
                if budget is not None:
                    self.shared_with = len(budget.others_seen)
                    with contextlib.suppress(OSError):  # a dead pid frees it all the same
                        budget.unregister()  # its share is freed at once
                await self.client.aclose()

    async def _run(
        self,
        on_start: Callable[[Session], None] | None,
        on_outcome: Callable[[Outcome], None] | None,
    ) -> None:
        # Leads left in doubt by an earlier run are settled before anything new is dialed, and
        # attempts shown absent lately are checked for a call created after all.
        since = self.wall() - UNSEEN_HORIZON
        await self._settle(self.ledger.in_doubt() + self.ledger.suspects(since=since))
        if self.settings.redial_in_doubt:
            for entry in self.ledger.in_doubt():
                if grace_ends(entry, self.settings.in_doubt_grace) > self.wall():
                    continue  # its call may still appear: no person can know yet either
                why = f"redialed on request (--redial-in-doubt): {entry.error}"
                self.ledger.resolve(entry.key, Status.PENDING, error=why)
        if self.settings.sync:
            await self._sync()
        # Who is dialed now: the planner the dry run uses too.
        ledger, now = self.ledger, self.clock().timestamp()
        until = seconds_until(self.settings, self.clock())

        def due(index: int, key: str) -> str | None:
            if ledger.status_of(key) is not Status.CALLED:
                return None
            entry = ledger.get(key)
            return None if entry is None else due_under(self.settings, entry, now=now)

        choice = choose(self.loaded, open_key=ledger.open_key, open_keys=ledger.open_keys,
                        due=due if self.settings.retry_outcomes else None,
                        closed=self.hours if self.hours.window else None,
                        max_calls=self.settings.max_calls, until=until)  # fmt: skip
        leads = self.loaded.leads
        for index, why in choice.recycled:
            ledger.recycle(leads[index].key, why)
        self.recycled += len(choice.recycled)
        for index, why in choice.deferred:
            ledger.defer(leads[index], why)
        self.deferred += len(choice.deferred)
        if choice.held is not None:
            for lead in choice.held:
                ledger.defer(lead, choice.held_reason, Status.PENDING)
        self.to_dial = choice.to_dial
        self.skipped = choice.already_done
        self.left_for_later = choice.held_count
        self.ended_by = self.ended_by or choice.ended_by
        if until is not None and until > 0:
            asyncio.get_running_loop().call_later(until, self._until_reached)
        # An adaptive split learns from the outcomes the sync above recorded: counted once.
        if self.settings.allocate == "adaptive":
            self.resolver = SettingsResolver(self.settings, ledger.get, ledger.entries)
        if on_start is not None:
            on_start(self)
        deadline = None if until is None else time.monotonic() + until
        await self._dispatch(self.to_dial, on_outcome)
        await self._settle_the_rest(on_outcome, deadline)

    async def _settle_the_rest(
        self, on_outcome: Callable[[Outcome], None] | None, deadline: float | None
    ) -> None:
        """Once every lead was tried: look up the leads in doubt, dial again those proven
        absent, and (``settle``) wait out the grace of those not listed yet, then look again;
        a few rounds at most. A wait that would end past ``--until`` (``deadline``, monotonic)
        is not begun, nor one after a failed listing: the next run settles them. A first
        signal ends the wait."""
        redials = waits = 0
        while not self.stop.is_set():
            doubtful = self.ledger.in_doubt()
            if not doubtful:
                return
            absent = await self._settle(doubtful)
            again = [lead for lead in self.to_dial if self.ledger.should_dial(lead)]
            if self.settings.max_calls is None:  # a batch dials no more than its cap
                again += self._leads_of(absent - {lead.key for lead in again})
            if again and redials < SETTLE_ROUNDS:
                redials += 1
                await self._dispatch(again, on_outcome)
                continue
            grace = self.settings.in_doubt_grace
            ends = graces_left(self.ledger.in_doubt(), grace, self.wall())
            if not ends or not self.settings.settle or waits >= SETTLE_ROUNDS or self.unlisted:
                return
            wait = max(ends) - self.wall()
            if deadline is not None and time.monotonic() + wait > deadline:
                return  # past --until: the next run settles them
            waits += 1
            if self.on_wait is not None:
                self.on_wait(len(ends), wait)
            began = self.wall()
            await _sleep_unless(self.stop, self.sleep(wait))
            self.waited += self.wall() - began

    def _leads_of(self, keys: set[str]) -> list[Lead]:
        """The dialable leads of the leads file with these keys (leads from an earlier run
        proven absent at the end of this one, so not in ``to_dial``)."""
        if not keys:
            return []
        leads = self.loaded.leads
        return [leads[i] for i, key in self.loaded.pending_keys()
                if key in keys and self.ledger.should_dial(leads[i])]  # fmt: skip

    async def _sync(self) -> None:
        """Record the outcome of every earlier call not synced yet (``--sync``)."""

        self.synced = await sync_outcomes(
            self.ledger.with_status(Status.CALLED),
            self.client.get_call,
            record=_recorder(self.ledger),
            limiter=self.limiter,
            stop=self.stop,
            concurrency=min(5, self.settings.concurrency),
        )

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
            body = self.call.body(lead.phone, lead.params, lead.settings)
            return (await self.client.create_call(body)).call_id

        def seen(outcome: Outcome) -> None:
            self.touched.add(outcome.lead.key)
            done.add(outcome.lead.key)
            if on_outcome is not None:
                on_outcome(outcome)

        resolved = self.resolver.resolve_all(leads)  # each chosen just before its intent
        result = await dispatch(resolved, send, ledger=self.ledger, limiter=self.limiter,
                                concurrency=self.settings.concurrency, retry=self.retry,
                                stop=self.stop, on_outcome=seen,
                                admit=self.hours if self.hours.window else None)  # fmt: skip
        self.sent += result.sent
        self.first_send = self.first_send or result.first_send
        self.last_send = result.last_send or self.last_send
        self.rate_limited += result.rate_limited
        self.rate_lowered_to = result.lowered_to or self.rate_lowered_to
        self.auth_error = self.auth_error or result.auth_error
        self.unreachable = self.unreachable or result.unreachable
        self.deferred += result.counts.get("deferred", 0)
        return done

    async def _settle(self, entries: list[Entry]) -> set[str]:
        """Look ``entries`` up (one listing) and record each verdict; returns the keys of the
        leads proven absent (to dial again)."""
        absent: set[str] = set()
        self.unlisted = False
        verdicts = await reconcile(entries, self.client.list_calls,
                                   playbook_id=self.settings.playbook, limiter=self.limiter,
                                   grace=self.settings.in_doubt_grace, clock=self.wall,
                                   sleep=self.sleep)  # fmt: skip
        for key, verdict in verdicts.items():
            before = self.ledger.get(key)
            was = _cause(before.error) if before else ""
            if isinstance(verdict, Late):
                if verdict.late or verdict.unseen != before.unseen:  # type: ignore[union-attr]
                    if verdict.call_id is not None:
                        self.touched.add(key)  # settled now: called
                    self.ledger.record_late_calls(key, list(verdict.late), unseen=verdict.unseen,
                                                  call_id=verdict.call_id)  # fmt: skip
                    self.rang_twice += len(verdict.late) - (verdict.call_id is not None)
                    self.found_late += verdict.call_id is not None
                continue
            self.touched.add(key)
            if isinstance(verdict, Found):
                self.reconciled["found"] += 1
                why = f"confirmed by GET /calls after: {was}"
                self.ledger.resolve(key, Status.CALLED, call_id=verdict.call_id, error=why)
                if verdict.late or verdict.unseen != before.unseen:  # type: ignore[union-attr]
                    self.ledger.record_late_calls(key, list(verdict.late), unseen=verdict.unseen)
                    self.rang_twice += len(verdict.late)
            elif isinstance(verdict, Absent):
                self.reconciled["absent"] += 1
                why = f"not found by GET /calls, so not placed: {was}"
                self.ledger.resolve(key, Status.PENDING, error=why)
                absent.add(key)
            elif isinstance(verdict, Waiting):
                until = utc_iso(verdict.until)
                why = (f"{was}; not in GET /calls yet: it may still be created, so it is "
                       f"looked up again after {until} (the grace) before any redial")  # fmt: skip
                self.ledger.resolve(key, Status.IN_DOUBT, error=why)
            else:
                self.unlisted = True
                if key not in self.undecided:  # counted once, however often it was tried
                    self.undecided.add(key)
                    self.reconciled["undecided"] += 1
                self.ledger.resolve(key, Status.IN_DOUBT, error=verdict.reason)
        return absent


async def sync_ledger(
    ledger: Ledger,
    client: MeetzyClient,
    *,
    limits: list[tuple[int, float]],
    concurrency: int,
    handle_signals: bool,
    budget: AccountBudget | None = None,
) -> SyncResult:
    """``dialer sync``: record the outcome of every call in ``ledger`` not synced yet, within
    the rate windows (seeded with the ledger's recent sends). A first signal stops it."""
    stop = asyncio.Event()
    task = asyncio.current_task()
    assert task is not None
    with _signals(stop.set, task) if handle_signals else contextlib.nullcontext():
        try:
            return await sync_outcomes(ledger.with_status(Status.CALLED), client.get_call,
                                       record=_recorder(ledger),
                                       limiter=_limiter(limits, ledger, budget),
                                       stop=stop, concurrency=concurrency)  # fmt: skip
        except asyncio.CancelledError:
            raise Stopped("stopped at once by a second signal") from None
        finally:
            if budget is not None:
                with contextlib.suppress(OSError):  # a dead pid frees it all the same
                    budget.unregister()
            await client.aclose()


def account_budget(
    folder: Path | None,
    api_url: str,
    token: str,
    limits: list[tuple[int, float]],
    *,
    campaign: Path,
    share: float = 1.0,
    timeout: float = 30.0,
) -> AccountBudget | None:
    """The account's shared budget in ``folder``, the campaign registered in it; None without
    a folder, or when the limits are lifted (above ``SHARED_UP_TO``: a benchmark's, not an
    account's)."""
    if folder is None or any(limit > SHARED_UP_TO for limit, _ in limits):
        return None
    budget = AccountBudget(folder, api_url, token, campaign=str(Path(campaign).resolve()),
                           share=share, timeout=timeout)  # fmt: skip
    try:
        budget.register()
    except OSError as exc:
        raise ConfigError(
            f"cannot write the account's shared rate record in {folder}: "
            f"{exc.strerror or exc}; make that folder writable (or set XDG_STATE_HOME to a "
            "writable folder) and run again (nothing was dialed)"
        ) from exc
    return budget


def _limiter(
    limits: list[tuple[int, float]], ledger: Ledger, budget: AccountBudget | None = None
) -> SlidingWindows:
    """The rate windows, seeded with the ledger's recent requests: the API's windows span
    commands, so an earlier run's (or sync's) last requests still count (cron batches). With
    ``budget``, every send is also taken from the account's record shared on this machine."""
    limiter = SlidingWindows(limits, budget=budget)
    offset = time.monotonic() - time.time()
    limiter.seed(t + offset for t in ledger.recent_sends(within=61.0))
    return limiter


def _recorder(ledger: Ledger) -> Callable[[Entry, CallOutcome], None]:
    """How a sync records a finished call: in ``ledger``, on the lead's row."""

    def record(entry: Entry, outcome: CallOutcome) -> None:
        ledger.record_call_outcome(entry.key, outcome.outcome, duration=outcome.duration,
                                   summary=outcome.summary, at=outcome.at)  # fmt: skip

    return record


@contextlib.contextmanager
def _signals(on_first: Callable[[], None], task: asyncio.Task[Any]) -> Iterator[None]:
    """First SIGINT or SIGTERM: ``on_first`` (start no new call). A SIGINT after that (a second
    Ctrl-C): cancel what is in flight. A later SIGTERM asks the same as the first (``dialer
    stop`` twice, or a supervisor repeating itself, never turns calls in flight into calls in
    doubt; SIGKILL remains for a stop at once, and the journal covers it)."""
    loop = asyncio.get_running_loop()
    seen = 0

    def on_signal(sig: signal.Signals) -> None:
        nonlocal seen
        seen += 1
        if seen == 1:
            on_first()
        elif sig is signal.SIGINT:
            task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _sleep_unless(stop: asyncio.Event, sleeping: Awaitable[None]) -> None:
    """Await ``sleeping`` (an injectable sleep), cut short when ``stop`` is set."""
    sleeper = asyncio.ensure_future(sleeping)
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
    for task in (sleeper, stopper):
        task.cancel()


def _cause(error: str) -> str:
    """The first cause in an in-doubt lead's error, without what earlier look-ups added."""
    return error.split("; not in GET /calls yet", 1)[0]
