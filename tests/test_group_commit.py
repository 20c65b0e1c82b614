"""Group commit: concurrent intents share one fsync, and nobody is dialed before the fsync that
covers their own intent has ended.

The durability hook is ``os.fsync`` itself, replaced in-process: it records how much of the
journal each fsync covered (its size when the fsync began) once that fsync has returned, and
can hold an fsync back to let other callers pile up behind it.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading

from dialer.engine.dispatcher import dispatch
from dialer.engine.limits import SlidingWindows
from dialer.model import Lead
from dialer.store.ledger import Ledger, journal_path


def leads(n: int) -> list[Lead]:
    return [Lead(row=i + 2, phone=f"+346123450{i:02d}") for i in range(n)]


class Durability:
    """``os.fsync`` recording, per ended fsync, the file size it covered; ``gate`` holds each
    fsync back until it is set."""

    def __init__(self, monkeypatch) -> None:
        self.covered: list[int] = []  # journal bytes durable after each ended fsync, in order
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()  # an fsync has begun (and may be held at the gate)
        real = os.fsync

        def fsync(fd: int) -> None:
            size = os.fstat(fd).st_size  # what this fsync makes durable, at the least
            self.started.set()
            self.gate.wait(10.0)
            real(fd)
            self.covered.append(size)

        monkeypatch.setattr(os, "fsync", fsync)

    @property
    def durable(self) -> int:
        return max(self.covered, default=0)


def intent_end(results, phone: str) -> int:
    """Where the journal's last ``dialing`` line for ``phone`` ends (bytes from the start)."""
    data = journal_path(results).read_bytes()
    end, at = -1, 0
    for line in data.splitlines(keepends=True):
        at += len(line)
        if f'"k":"{phone}"'.encode() in line and b'"status":"dialing"' in line:
            end = at
    assert end > 0, f"no intent for {phone}"
    return end


def test_no_send_leaves_before_the_fsync_covering_its_own_intent_ended(tmp_path, monkeypatch):
    durability = Durability(monkeypatch)
    results = tmp_path / "r.csv"
    sent: list[str] = []
    rng = random.Random(7)

    async def send(lead: Lead) -> str:
        # The journal may hold later intents not durable yet; this lead's must be.
        assert intent_end(results, lead.phone) <= durability.durable
        sent.append(lead.phone)
        await asyncio.sleep(rng.random() * 0.004)
        return "id-" + lead.phone

    limiter = SlidingWindows([(100000, 1.0)], margin=0.0)
    with Ledger(results) as ledger:
        asyncio.run(dispatch(leads(60), send, ledger=ledger, limiter=limiter, concurrency=20))
    assert sorted(sent) == sorted(lead.phone for lead in leads(60))
    assert len(durability.covered) < 60  # intents ready together shared an fsync


def test_callers_of_one_fsync_wake_together(tmp_path, monkeypatch):
    """50 intents written at once: one fsync, and every caller back within one loop turn of
    the others (a lock handed on from caller to caller would take one turn each)."""
    durability = Durability(monkeypatch)
    woke: list[int] = []

    async def main(ledger: Ledger) -> None:
        turns = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal turns
            while not done.is_set():
                turns += 1
                await asyncio.sleep(0)

        async def intent(lead: Lead) -> None:
            await ledger.intent_async(lead)
            woke.append(turns)

        tick = asyncio.ensure_future(ticker())
        await asyncio.gather(*(intent(lead) for lead in leads(50)))
        done.set()
        await tick

    with Ledger(tmp_path / "r.csv") as ledger:
        before = len(durability.covered)  # opening the ledger may fsync
        asyncio.run(main(ledger))
        assert len(durability.covered) - before == 1
    assert len(woke) == 50 and max(woke) - min(woke) <= 1


def test_a_line_written_during_an_fsync_waits_for_the_next_one(tmp_path, monkeypatch):
    durability = Durability(monkeypatch)
    results = tmp_path / "r.csv"
    first, second = leads(2)
    seen_at_return: dict[str, int] = {}

    async def intent(ledger: Ledger, lead: Lead) -> None:
        await ledger.intent_async(lead)
        seen_at_return[lead.phone] = durability.durable

    async def main(ledger: Ledger) -> None:
        durability.gate.clear()
        durability.started.clear()
        one = asyncio.ensure_future(intent(ledger, first))
        while not durability.started.is_set():  # the first fsync has begun, and is held
            await asyncio.sleep(0.001)
        two = asyncio.ensure_future(intent(ledger, second))  # written during that fsync
        await asyncio.sleep(0.01)
        assert not one.done() and not two.done()
        durability.gate.set()
        await asyncio.gather(one, two)

    with Ledger(results) as ledger:
        before = len(durability.covered)
        asyncio.run(main(ledger))
        assert len(durability.covered) - before == 2  # the second line needed its own fsync
        assert seen_at_return[first.phone] >= intent_end(results, first.phone)
        assert seen_at_return[second.phone] >= intent_end(results, second.phone)
        assert durability.covered[before] < intent_end(results, second.phone)


def test_a_cancelled_caller_leaves_the_shared_fsync_to_the_others(tmp_path, monkeypatch):
    durability = Durability(monkeypatch)
    results = tmp_path / "r.csv"
    trio = leads(3)

    async def main(ledger: Ledger) -> None:
        durability.gate.clear()
        durability.started.clear()
        tasks = [asyncio.ensure_future(ledger.intent_async(lead)) for lead in trio]
        while not durability.started.is_set():
            await asyncio.sleep(0.001)
        tasks[0].cancel()  # the caller that started the fsync: a second signal, say
        await asyncio.sleep(0.01)
        durability.gate.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(outcomes[0], asyncio.CancelledError)
        assert outcomes[1:] == [None, None]

    with Ledger(results) as ledger:
        before = len(durability.covered)
        asyncio.run(main(ledger))
        assert len(durability.covered) - before == 1
        assert durability.durable >= max(intent_end(results, lead.phone) for lead in trio)
