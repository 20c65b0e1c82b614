"""Rate limits: exact sliding windows over send times, and one shared pause for the whole pool.

The API documents "100 requests per minute, burst 10 per second" without naming the algorithm,
so the dialer keeps the strictest reading: no 1 s window ever holds more than 10 sends and no
60 s window more than 100, whatever the window's start.

Why not aiolimiter: it is a leaky bucket. ``AsyncLimiter(10, 1)`` lets a full burst through and
then keeps leaking, so 19 sends fit in one second (199 in a minute when nested with
``AsyncLimiter(100, 60)``); a bucket sized to be strict loses 40% of the minute budget. A log of
the last sends is exact, tiny, and can also be paused, which aiolimiter cannot.

``margin`` widens every window a little so that network jitter between our send and the
server's arrival time cannot squeeze two windows' worth of requests into one. A send whose
answer came back (``answered``) counts from then on at its answer's time, not at the moment it
was allowed: the server saw it arrive somewhere in between, so a stall of the event loop
between the windows and the socket (a slow disk, a busy machine) cannot make two bursts meet in
one of the server's windows.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


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
    ) -> None:
        if not windows or any(limit < 1 or period <= 0 for limit, period in windows):
            raise ValueError("each window needs a limit >= 1 and a period > 0")
        self._windows = [(int(limit), float(period) + margin) for limit, period in windows]
        self._sends: deque[float] = deque(maxlen=max(limit for limit, _ in self._windows))
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._paused_until = float("-inf")
        self.last_send = 0.0  # when the last send was recorded: ``answered`` takes it back

    @property
    def windows(self) -> list[tuple[int, float]]:
        """The windows in force, margins included."""
        return list(self._windows)

    def delay(self, now: float | None = None) -> float:
        """Seconds until one more send is allowed (0 when it is allowed now)."""
        now = self._clock() if now is None else now
        wait = self._paused_until - now
        for limit, period in self._windows:
            if len(self._sends) >= limit:
                # The limit-th most recent send must have left the window.
                wait = max(wait, self._sends[-limit] + period - now)
        return max(0.0, wait)

    def try_acquire(self) -> bool:
        """Record a send now if every window has room and nobody is waiting (no await, so the
        pool pays for no task when the limits are far off); False otherwise."""
        if self._lock.locked() or self.delay() > 0:
            return False
        self.last_send = self._clock()
        self._sends.append(self.last_send)
        return True

    async def acquire(self) -> float:
        """Wait for room in every window, record the send, and return its time."""
        async with self._lock:
            while (wait := self.delay()) > 0:
                await self._sleep(wait)
            now = self._clock()
            self._sends.append(now)
            self.last_send = now
            return now

    def answered(self, recorded: float) -> None:
        """The send recorded at ``recorded`` got its answer (or was given up): from now on it
        counts at this moment, the latest the server can have seen it arrive. Never earlier."""
        now = self._clock()
        sends = self._sends
        i = bisect.bisect_left(sends, recorded)
        if now <= recorded or i >= len(sends) or sends[i] != recorded:
            return  # already out of every window's reach (or a clock that did not move)
        del sends[i]
        bisect.insort(sends, now)

    def pause_for(self, seconds: float) -> None:
        """Hold every sender for ``seconds`` from now (a 429's ``Retry-After``); never shortens."""
        self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    def seed(self, times: Iterable[float]) -> None:
        """Count earlier sends (on this clock) against the windows, e.g. from a previous run."""
        merged = sorted([*self._sends, *times])
        self._sends.clear()
        self._sends.extend(merged[-(self._sends.maxlen or 0) :])

    def slow_down(self, factor: float) -> None:
        """Lower every window's limit by ``factor`` (0 < factor <= 1), keeping at least 1."""
        if not 0 < factor <= 1:
            raise ValueError("slow_down takes a factor in (0, 1]")
        self._windows = [(max(1, int(limit * factor)), period) for limit, period in self._windows]
