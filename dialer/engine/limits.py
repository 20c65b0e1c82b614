"""Rate limits: exact sliding windows over send times, one shared pause for the whole pool, the
account's budget shared with the other dialer processes, and 429s remembered briefly.

The API documents "100 requests per minute, burst 10 per second" without naming the algorithm,
so the dialer keeps the strictest reading: no 1 s window ever holds more than 10 sends and no
60 s window more than 100, whatever the window's start.

Why not aiolimiter: it is a leaky bucket. ``AsyncLimiter(10, 1)`` lets a full burst through and
then keeps leaking, so 19 sends fit in one second (199 in a minute when nested with
``AsyncLimiter(100, 60)``); a bucket sized to be strict loses 40% of the minute budget. A log of
the last sends is exact, tiny, and can also be paused, which aiolimiter cannot.

When a send reaches the server is unknown: somewhere between the moment the windows allowed it
and its answer. So a send taken ``in_flight`` counts as *now* in every window until its answer
arrives (``answered``), then at its answer's time: a stall of any length between the windows
and the socket (a slow disk, a busy machine) cannot make two bursts meet in one of the
server's windows. ``margin`` widens every window a little for network jitter only.

``budget`` (a ``dialer.engine.budget.AccountBudget``) makes the windows the account's, not this
process's: every send is also taken from the record every dialer process on this machine
shares for that API address and token, fairly between the campaigns that are waiting.

After repeated 429s (``slow_down``) the limits step down; after ``quiet`` seconds without a
429 they climb back by additive steps toward the configured limits (``rate_changes`` keeps
what happened, for the run's summary).
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

POLL = 0.02  # seconds between looks while only sends in flight (or a fair turn) hold us back
QUIET = 60.0  # seconds without a 429 before a lowered rate starts climbing back
CLIMB_EVERY = 10.0  # then one additive step per this many seconds
CLIMB_STEP = 0.1  # each step: this share of the configured limit (at least 1)


class SlidingWindows:
    """At most ``limit`` sends in any ``period`` seconds, for every ``(limit, period)`` given.

    ``acquire()`` waits for room in every window (and for any pause), then records the send.
    Waiters are served first come, first served.
    """

    def __init__(
        self,
        windows: Sequence[tuple[int, float]],
        *,
        margin: float = 0.1,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        budget: Any = None,
        quiet: float = QUIET,
    ) -> None:
        if not windows or any(limit < 1 or period <= 0 for limit, period in windows):
            raise ValueError("each window needs a limit >= 1 and a period > 0")
        self._windows = [(int(limit), float(period) + margin) for limit, period in windows]
        self._configured = list(self._windows)
        self.margin = margin
        self._sends: deque[float] = deque(maxlen=max(limit for limit, _ in self._windows))
        self._flights: Counter[float] = Counter()  # sends allowed, not answered yet
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._paused_until = float("-inf")
        self.last_send = 0.0  # when the last send was recorded: ``answered`` takes it back
        self.budget = budget  # the account's shared record, or None: this process alone
        self._tickets: dict[float, list[Any]] = {}  # a flight's time -> its budget tickets
        self._waiting = 0
        self.quiet = quiet
        self._last_429 = float("-inf")
        self._last_change = float("-inf")
        self.rate_changes: list[tuple[float, int]] = []  # (time, per-minute limit) on change

    @property
    def windows(self) -> list[tuple[int, float]]:
        """The windows in force, margins included."""
        return list(self._windows)

    @property
    def in_flight(self) -> int:
        return sum(self._flights.values())

    def delay(self, now: float | None = None, *, extra: int = 0) -> float:
        """Seconds until one more send is allowed (0 when it is allowed now), in this process;
        ``extra``: as if that many more sends were in flight."""
        now = self._clock() if now is None else now
        self._climb(now)
        wait = self._paused_until - now
        flying = self.in_flight + extra
        for limit, period in self._windows:
            if flying >= limit:
                wait = max(wait, POLL)  # room comes with an answer: look again soon
            elif len(self._sends) >= limit - flying:
                # The (limit - flying)-th most recent answered send must have left the window.
                wait = max(wait, self._sends[flying - limit] + period - now)
        return max(0.0, wait)

    def try_acquire(self, *, in_flight: bool = False) -> bool:
        """Record a send now if every window has room and nobody is waiting (no await, so the
        pool pays for no task when the limits are far off); False otherwise."""
        if self._lock.locked() or self.delay() > 0:
            return False
        ticket = None
        if self.budget is not None:
            ticket = self.budget.take(self._windows, more=False, in_flight=in_flight,
                                      then=self._next)  # fmt: skip
            if not isinstance(ticket, str):
                return False
        self._record(self._clock(), in_flight, ticket)
        return True

    async def acquire(self, *, in_flight: bool = False) -> float:
        """Wait for room in every window, record the send, and return its time. ``in_flight``:
        the send counts as now in every window until ``answered``."""
        self._waiting += 1
        try:
            async with self._lock:
                while True:
                    wait = self.delay()
                    ticket = None
                    if wait <= 0 and self.budget is not None:
                        taken = self.budget.take(self._windows, more=self._waiting > 1,
                                                 in_flight=in_flight, then=self._next)  # fmt: skip
                        if isinstance(taken, str):
                            ticket = taken
                        else:
                            wait = taken
                    if wait <= 0:
                        now = self._clock()
                        self._record(now, in_flight, ticket)
                        return now
                    await self._sleep(wait)
        finally:
            self._waiting -= 1
            if self._waiting == 0 and self.budget is not None:
                self.budget.idle()

    def _next(self) -> float:
        """Seconds until this process could send again after the send being taken now."""
        return self.delay(extra=1)

    def _record(self, now: float, in_flight: bool, ticket: Any) -> None:
        self.last_send = now
        if in_flight:
            self._flights[now] += 1
        else:
            self._append(now)
        if ticket is not None:
            self._tickets.setdefault(now, []).append(ticket)

    def _append(self, when: float) -> None:
        sends = self._sends
        if not sends or sends[-1] <= when:
            sends.append(when)
            return
        if len(sends) == sends.maxlen:
            sends.popleft()
        bisect.insort(sends, when)

    def answered(self, recorded: float) -> None:
        """The send recorded at ``recorded`` got its answer (or was given up): from now on it
        counts at this moment, the latest the server can have seen it arrive. Never earlier."""
        now = self._clock()
        tickets = self._tickets.get(recorded)
        if tickets:
            self.budget.answered(tickets.pop())
            if not tickets:
                del self._tickets[recorded]
        if self._flights.get(recorded):
            self._flights[recorded] -= 1
            if not self._flights[recorded]:
                del self._flights[recorded]
            self._append(max(now, recorded))
            return
        sends = self._sends
        i = bisect.bisect_left(sends, recorded)
        if now <= recorded or i >= len(sends) or sends[i] != recorded:
            return  # already out of every window's reach (or a clock that did not move)
        del sends[i]
        bisect.insort(sends, now)

    def pause_for(self, seconds: float) -> None:
        """Hold every sender for ``seconds`` from now (a 429's ``Retry-After``); never shortens.
        With a ``budget``, every process on the account is held too."""
        self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))
        if self.budget is not None and seconds > 0:
            self.budget.pause_for(seconds)

    def seed(self, times: Iterable[float]) -> None:
        """Count earlier sends (on this clock) against the windows, e.g. from a previous run."""
        merged = sorted([*self._sends, *times])
        self._sends.clear()
        self._sends.extend(merged[-(self._sends.maxlen or 0) :])

    def rate_limited(self) -> None:
        """The API answered 429: a lowered rate climbs back only after ``quiet`` seconds."""
        self._last_429 = self._clock()

    def slow_down(self, factor: float) -> None:
        """Lower every window's limit by ``factor`` (0 < factor <= 1), keeping at least 1."""
        if not 0 < factor <= 1:
            raise ValueError("slow_down takes a factor in (0, 1]")
        now = self._clock()
        self._last_429 = max(self._last_429, now)
        self._windows = [(max(1, int(limit * factor)), period) for limit, period in self._windows]
        self._changed(now)

    def _climb(self, now: float) -> None:
        """After ``quiet`` seconds without a 429, one additive step back toward the configured
        limits every ``CLIMB_EVERY`` seconds."""
        if self._windows == self._configured or now - self._last_429 < self.quiet:
            return
        if now - max(self._last_change, self._last_429 + self.quiet - CLIMB_EVERY) < CLIMB_EVERY:
            return
        self._windows = [
            (min(full, limit + max(1, round(full * CLIMB_STEP))), period)
            for (limit, period), (full, _) in zip(self._windows, self._configured, strict=True)
        ]
        self._changed(now)

    def _changed(self, now: float) -> None:
        self._last_change = now
        minute = self._windows[-1][0]
        if not self.rate_changes or self.rate_changes[-1][1] != minute:
            self.rate_changes.append((now, minute))

    @property
    def configured(self) -> list[tuple[int, float]]:
        """The windows as configured, before any slow-down."""
        return list(self._configured)
