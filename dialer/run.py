"""One run of a campaign, the library's front door: load, open the ledger, dispatch, summarise.

``plan(settings)`` is the dry run: it reads the leads (and the results, to show what a resume
would skip) and returns what would be sent, without a token, a network or a file written.
``run_campaign(settings, ...)`` dials. Both take plain values and return dataclasses; neither
prints nor exits. ``sandbox()`` starts the built-in simulator for ``--sandbox``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from dialer.campaign import Settings
from dialer.client import CallSettings, MeetzyClient
from dialer.dispatcher import RetryPolicy, dispatch
from dialer.errors import Stopped
from dialer.ledger import Ledger, read_results
from dialer.limits import SlidingWindows
from dialer.loader import ColumnMapping, LoadResult, load_leads
from dialer.model import LOAD_TIME, Lead, Outcome, Status


@dataclass(frozen=True)
class Plan:
    """What a run would do now (the dry run's answer)."""

    load: LoadResult
    to_dial: list[Lead]
    already_done: int  # dialable leads the results already hold (final or in doubt)
    sample_body: dict[str, Any] | None  # one request body, without the token


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
) -> RunSummary:
    """Dial every lead of ``settings.leads`` that has no final result yet.

    Raises ``InputError`` before dialing anyone, ``LedgerError``/``LedgerLocked`` before or
    while dialing, ``AuthError`` after the first 401/403 (leads in flight are recorded first),
    and ``Stopped`` after a second signal. A first signal ends the run early and cleanly:
    the summary says ``stopped``.
    """
    loaded = load(settings)
    started = time.monotonic()
    with Ledger(settings.output, durable=durable) as ledger:
        for lead in loaded.leads:
            if lead.status in LOAD_TIME:
                ledger.record_load(lead)
        dialable = [lead for lead in loaded.leads if lead.status is Status.PENDING]
        to_dial = [lead for lead in dialable if ledger.should_dial(lead)]
        call = call_settings(settings)
        if on_start is not None:
            sample = call.body(to_dial[0].phone, to_dial[0].params) if to_dial else None
            on_start(Plan(loaded, to_dial, len(dialable) - len(to_dial), sample))
        result = asyncio.run(
            _dial(settings, to_dial, ledger, call, api_url, token, transport, retry,
                  on_outcome, handle_signals)
        )  # fmt: skip
        counts = Counter(entry.status.value for entry in ledger.entries())
    done = sum(result.counts.values())
    not_started = len(to_dial) - done
    if not_started:
        counts[Status.PENDING.value] += not_started
    if result.auth_error is not None:
        raise result.auth_error
    return RunSummary(
        output=settings.output,
        counts=dict(counts),
        this_run=dict(result.counts),
        sent=result.sent,
        skipped=len(dialable) - len(to_dial),
        not_started=not_started,
        elapsed=time.monotonic() - started,
        rate_limited=result.rate_limited,
        stopped=result.stopped,
        warnings=list(loaded.warnings),
    )


async def _dial(
    settings: Settings,
    leads: list[Lead],
    ledger: Ledger,
    call: CallSettings,
    api_url: str,
    token: str,
    transport: httpx.AsyncBaseTransport | None,
    retry: RetryPolicy | None,
    on_outcome: Callable[[Outcome], None] | None,
    handle_signals: bool,
) -> Any:
    stop = asyncio.Event()
    limiter = SlidingWindows([(settings.max_per_second, 1.0), (settings.max_per_minute, 60.0)])
    client = MeetzyClient(
        api_url,
        token,
        timeout=settings.timeout,
        max_connections=settings.concurrency,
        transport=transport,
    )

    async def send(lead: Lead) -> str:
        return (await client.create_call(call.body(lead.phone, lead.params))).call_id

    task = asyncio.create_task(
        dispatch(leads, send, ledger=ledger, limiter=limiter, concurrency=settings.concurrency,
                 retry=retry, stop=stop, on_outcome=on_outcome)
    )  # fmt: skip
    with _signals(stop, task) if handle_signals else contextlib.nullcontext():
        try:
            return await task
        except asyncio.CancelledError:
            raise Stopped(
                "stopped at once by a second signal: leads in flight are recorded in doubt"
            ) from None
        finally:
            await client.aclose()


@contextlib.contextmanager
def _signals(stop: asyncio.Event, task: asyncio.Task[Any]) -> Iterator[None]:
    """First SIGINT/SIGTERM: start no new call. Second: cancel what is in flight."""
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            task.cancel()
        stop.set()

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
