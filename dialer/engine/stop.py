"""``dialer stop``: the clean stop of Ctrl-C, asked for from another process.

Owns finding the process that holds a campaign's lock (the lock's note beside the results:
pid, host, since when), asking it to stop with SIGTERM, which a run or a sync takes as a first
Ctrl-C (start no new call, let the calls in flight finish, write everything), waiting for the
lock to be free, and reading how the run ended from the campaign's run log. It never sends
anything stronger: a stop that takes long leaves the run finishing its calls in flight, which
is what keeps anybody from ringing twice. A second ``dialer stop`` sends SIGTERM again, and a
run takes every SIGTERM after its first as the same request (only a second Ctrl-C stops at
once), so two stops never turn calls in flight into calls in doubt.

The clock, the sleep and the signal sender are injectable; nothing here prints.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dialer.errors import ConfigError
from dialer.files import RunLock
from dialer.store.ledger import lock_info_path, lock_path, read_runs

__all__ = ["StopResult", "stop_campaign"]

_NOTE_WAIT = 2.0  # seconds to wait for a run that just took the lock to write its note


@dataclass(frozen=True)
class StopResult:
    """What ``stop_campaign`` found and did."""

    results: Path
    running: bool  # a run or sync held the campaign's lock when asked
    pid: int = 0  # the process asked to stop
    ended: bool = False  # the lock was free again within the wait
    waited: float = 0.0  # seconds spent waiting
    # The run log's record of how it ended ({} when none was written, e.g. a sync)
    record: dict[str, Any] = field(default_factory=dict)


def is_running(results: Path) -> bool:
    """Whether a run or a sync holds the lock of the campaign whose results are ``results``."""
    path = lock_path(results)
    if not path.exists():
        return False
    lock = RunLock(path)
    try:
        if lock.acquire():
            lock.release()
            return False
    except OSError as exc:
        raise ConfigError(f"cannot check {path.name}: {exc.strerror or exc}") from exc
    return True


def stop_campaign(
    results: str | Path,
    *,
    wait: float = 300.0,
    poll: float = 0.2,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    send: Callable[[int, int], None] = os.kill,
) -> StopResult:
    """Ask the run (or sync) holding ``results``'s campaign to stop as Ctrl-C does, and wait
    up to ``wait`` seconds for it to end. Returns ``running=False`` when nothing held it.
    ``ConfigError`` when the holder cannot be asked: its note is missing, it runs on another
    host, or it belongs to another user."""
    results = Path(results)
    if not is_running(results):
        return StopResult(results, running=False)
    start = clock()
    pid = _holder(results, clock, sleep, start)
    if pid is None:
        if not is_running(results):  # it ended while we read its note
            return StopResult(results, running=False)
        raise ConfigError(
            f"{results.name} is in use by a dialer run whose process is not recorded: stop it "
            "where it runs (Ctrl-C)"
        )
    runs_before = len(read_runs(results))
    try:
        send(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass  # it just ended; the lock says so below
    except PermissionError as exc:
        raise ConfigError(
            f"{results.name} is in use by pid {pid}, which belongs to another user: stop it "
            "as that user"
        ) from exc
    while is_running(results):
        if clock() - start >= wait:
            return StopResult(results, running=True, pid=pid, waited=clock() - start)
        sleep(poll)
    runs = read_runs(results)
    record = runs[-1] if len(runs) > runs_before else {}
    return StopResult(results, running=True, pid=pid, ended=True, waited=clock() - start,
                      record=record)  # fmt: skip


def _holder(
    results: Path, clock: Callable[[], float], sleep: Callable[[float], None], start: float
) -> int | None:
    """The pid holding the lock: the one in the lock's note, once the kernel's list of locks
    (where there is one) confirms it holds the lock, so a note left by an earlier run never
    names a stranger; None when there is none (a run that took the lock this very moment is
    given ``_NOTE_WAIT`` seconds to write its note)."""
    while True:
        try:
            info = json.loads(lock_info_path(results).read_text(encoding="utf-8"))
            pid, host = int(info["pid"]), str(info["host"])
        except (OSError, ValueError, KeyError, TypeError):
            pid, host = 0, ""
        if host and host != socket.gethostname():
            raise ConfigError(
                f"{results.name} is in use by pid {pid} on host {host}: stop it there"
            )
        holders = _flock_holders(lock_path(results))
        if pid and (holders is None or pid in holders):
            return pid
        if clock() - start >= _NOTE_WAIT:
            return holders.pop() if holders is not None and len(holders) == 1 else None
        sleep(0.05)


def _flock_holders(path: Path) -> set[int] | None:
    """The pids holding a ``flock`` on ``path`` by the kernel's list (``/proc/locks``), or None
    where there is no such list."""
    try:
        st = path.stat()
        text = Path("/proc/locks").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    holders = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == wanted:
            try:
                holders.add(int(parts[4]))
            except ValueError:
                continue
    return holders
