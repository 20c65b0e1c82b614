"""A campaign's run lock as the ledger takes it: where the lock and its note live, who holds it
(for the message a second run gets, and ``dialer stop``), and the one-time move of a campaign's
files from beside its results into its state folder (``Locking``, which ``Ledger`` builds on).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path

from dialer.errors import LedgerLocked, write_failed
from dialer.files import (
    STATE_NAMES,
    RunLock,
    atomic_file,
    make_folder,
    move_into_state_folder,
    state_folder,
)
from dialer.store.results import utc_iso


def lock_path(results: Path) -> Path:
    """The campaign's lock (in its state folder: a run moves an older campaign's files there
    under it)."""
    return state_folder(results) / "lock"


def lock_info_path(results: Path) -> Path:
    """The lock's note: which process holds it (pid, host, since), for messages and ``stop``."""
    return state_folder(results) / "lock.info"


class Locking:
    """Taking and releasing a campaign's lock (see the module), for ``Ledger``."""

    results: Path
    notices: list[str]
    _lock: RunLock
    _info: Path

    def _take_lock(self) -> None:
        try:
            make_folder(state_folder(self.results))
        except OSError as exc:
            raise write_failed(state_folder(self.results), exc, doing="create the folder") from exc
        try:
            taken = self._lock.acquire()
        except OSError as exc:
            raise write_failed(lock_path(self.results), exc, doing="lock") from exc
        if not taken:
            raise self._locked(self._info)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": utc_iso()}
        try:  # only tells a second run who holds the lock: a failure here is no error
            with atomic_file(self._info, "w", durable=False, encoding="utf-8") as handle:
                handle.write(json.dumps(info))
        except OSError:
            with contextlib.suppress(OSError):
                self._info.unlink()  # torn or stale: it would name the wrong holder
        self._move_old_layout()

    def _locked(self, note: Path) -> LedgerLocked:
        holder = ""
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            info = json.loads(note.read_text(encoding="utf-8"))
            holder = f" (pid {info['pid']} on {info['host']}, since {info['since']})"
        return LedgerLocked(
            f"{self.results.name} is in use by another dialer run{holder}: "
            "wait for it to finish; nothing was touched"
        )

    def _move_old_layout(self) -> None:
        """A campaign whose files lie beside its results (the layout before the state folder)
        has them moved into the folder, once, under both locks (a run of an older version
        holding the old lock is waited for, as any other run)."""
        beside = [self.results.with_name(f"{self.results.name}.{n}") for n in STATE_NAMES]
        if not any(os.path.lexists(path) for path in beside):
            return
        old_lock = self.results.with_name(self.results.name + ".lock")
        lock = RunLock(old_lock)
        try:
            if not lock.acquire():
                self._release_lock()
                raise self._locked(self.results.with_name(self.results.name + ".lock.info"))
            moved = move_into_state_folder(self.results)
            with contextlib.suppress(OSError):
                self.results.with_name(self.results.name + ".lock.info").unlink()
            with contextlib.suppress(FileNotFoundError):
                old_lock.unlink()
        except OSError as exc:
            self._release_lock()
            raise write_failed(state_folder(self.results), exc, doing="move files into") from exc
        finally:
            lock.release()
        folder = state_folder(self.results).name
        self.notices.append(
            f"this campaign's files ({', '.join(moved) or 'its lock'}) were moved into "
            f"{folder}/, the one folder beside {self.results.name} that now holds them"
        )

    def _release_lock(self) -> None:
        if self._lock.is_locked:
            self._lock.release()
