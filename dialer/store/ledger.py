"""The ledger: what each lead's state is, kept in a journal and a results CSV, under a run lock.

Owns three files beside the results CSV (``leads.results.csv`` below):

* ``leads.results.csv``          one row per lead (UTF-8 with a BOM for Excel, every cell made
                                 safe from formula injection): what a person reads. Rows are
                                 appended as leads finish and the file is compacted (temp file,
                                 fsync, rename, fsync of the directory) when the run closes; a
                                 reader keeps the last row per lead, so a crash leaves it usable.
* ``leads.results.csv.journal``  the source of truth: an append-only log of lead states, the
                                 last line per lead winning. ``dialing`` (the intent) is written
                                 and fsynced BEFORE each ``POST /call``; concurrent intents share
                                 one fsync. A line is ``<crc32 hex> <json>``. A torn last line is
                                 cut off; damage anywhere else stops the run.
* ``leads.results.csv.lock``     an OS lock (flock, ``files.RunLock``): released by the kernel
                                 when the holder dies, even by SIGKILL; the file is never deleted.
* ``leads.results.csv.sandbox``   present when the campaign's calls are the sandbox's
                                 (``dialer.store.sandboxmark``): written before anything else by a
                                 ``sandbox=True`` ledger; a ledger of the other kind refuses.
* ``leads.results.csv.state``    a snapshot of the replayed state (``store.cache``), written at
                                 close: an open uses it only while the journal and the results
                                 still begin with the bytes it was taken from, and replays only
                                 what follows. It only saves time; the journal stays the truth.

An intent with no outcome after it means the process died between deciding to dial and
learning the answer: the phone may have rung, so the lead is ``in_doubt`` and is not dialed
again blindly.

A write the OS refuses (a full disk, a quota, a read-only or failing disk) stops the run with
ONE ``LedgerError`` naming the file; the first such error is the ledger's ``failure``: every
later write raises it again (nothing is dialed after it), and ``close`` reports nothing more.
An append that fails part-way is cut back off (truncating needs no space), so the journal and
the results CSV stay whole lines. Only this module writes these files (the results CSV's
format lives in ``results``, a journal line's in ``journal``, the snapshot's in ``cache``).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import errno
import heapq
import io
import json
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from dialer.errors import LedgerError, LedgerLocked, write_failed
from dialer.files import (
    STATE_NAMES,
    RunLock,
    atomic_file,
    file_mode,
    make_folder,
    move_into_state_folder,
    open_private,
    state_file,
    state_folder,
    truncate_file,
)
from dialer.model import LOAD_TIME, NEVER_SENT, Lead, Outcome, Status
from dialer.store.cache import (
    EntryTable,
    LedgerState,
    file_digest,
    read_snapshot,
    release_freed_memory,
    snapshot_mark,
    state_path,
    write_parts,
)
from dialer.store.journal import (
    encode_line,
    journal_path,
    read_journal,
    scan_journal,
    to_record,
)
from dialer.store.results import (
    RANG_TWICE,
    RESULT_COLUMNS,
    Entry,
    replace_results,
    row_cells,
    utc_iso,
)
from dialer.store.salvage import (
    DIALED,
    ResultsCheck,
    inspect_results,
    missing_rows,
    read_leniently,
    set_aside,
)
from dialer.store.sandboxmark import check_kind, mark_sandbox

_STATUSES = list(Status)
_FINISHED = DIALED - {Status.DIALING}  # a journal line so: the results must have a row


def runs_path(results: Path) -> Path:
    """The run log: one audit record a run (or sync)."""
    return state_file(results, "runs.jsonl")


def lock_path(results: Path) -> Path:
    """The campaign's lock (in its state folder: a run moves an older campaign's files there
    under it)."""
    return state_folder(results) / "lock"


def lock_info_path(results: Path) -> Path:
    """The lock's note: which process holds it (pid, host, since), for messages and ``stop``."""
    return state_folder(results) / "lock.info"


class Appender:
    """A file appended to with ``os.write``, unbuffered: each ``append`` is written whole or,
    when the OS refuses part of it (no space left), cut back off, so the file never ends in a
    torn line. One writer at a time (the run lock)."""

    def __init__(self, path: Path, *, follow: bool = False) -> None:
        self.path = path
        # A new file is private (0600); never opened through a symlink unless ``follow`` (a
        # path the user named: ``--log-file``).
        self.fd = open_private(path, os.O_WRONLY | os.O_APPEND, follow=follow)
        try:
            self.size = os.fstat(self.fd).st_size
        except OSError:
            os.close(self.fd)
            raise

    def append(self, data: bytes) -> None:
        """Write ``data`` at the end; raises ``OSError`` with the file as it was before."""
        before, view = self.size, memoryview(data)
        try:
            while view:
                written = os.write(self.fd, view)
                if written <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                view = view[written:]
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, before)  # a torn line cut off: needs no free space
            raise
        self.size = before + len(data)

    def fsync(self) -> None:
        os.fsync(self.fd)

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


def append_whole(path: Path, data: bytes, *, follow: bool = False) -> None:
    """Append ``data`` to ``path`` whole or not at all (see ``Appender``); raises ``OSError``."""
    appender = Appender(path, follow=follow)
    try:
        appender.append(data)
    finally:
        appender.close()


class Ledger:
    """One campaign's results, journal and lock. Use as a context manager around a run."""

    def __init__(
        self,
        results: str | Path,
        *,
        durable: bool = True,
        region: str = "ES",
        sandbox: bool | None = None,
        sync: bool = False,
    ) -> None:
        self.results = Path(results)
        # True: the sandbox's calls (marked, a real campaign refused); False: real ones (a
        # sandbox campaign refused); None: either (``dialer.store.sandboxmark``).
        self.sandbox, self._sync = sandbox, sync  # sync: for ``dialer sync``'s advice
        self.journal = state_folder(self.results) / "journal"  # where ``open`` keeps it
        self.durable = durable
        self.region = region  # to read a phone a spreadsheet stripped of its '+' (no journal)
        self._entries = LedgerState(None, {})
        # What the results CSV and the journal say before this run's changes (see _replay).
        self._base: EntryTable | None = None
        self._load_rows: dict[str, Entry] = {}  # load-time rows the results CSV holds
        self._journal_start = 0  # the journal's size once opened: this run appends after it
        self._lock = RunLock(lock_path(self.results))
        self._info = lock_info_path(self.results)
        self._journal_file: Appender | None = None
        self._results_file: Appender | None = None
        self._row = io.StringIO()  # one results row, as the csv module writes it
        self._results_writer = csv.writer(self._row, lineterminator="\r\n")
        self._written = self._synced = 0  # journal lines written / known durable
        self._sync_lock = asyncio.Lock()
        self.torn_tail = False  # the journal's last line was torn by a crash and ignored
        # The first write the OS refused: raised again by every later write, never by close.
        self.failure: LedgerError | None = None
        # What opening found wrong with the results file and did about it, one line each.
        self.notices: list[str] = []
        self._adopt: list[Entry] = []  # results rows the journal lacks: journaled at open
        # Called once the results are compacted and the snapshot saved, still under the lock.
        self.after_close: Callable[[], None] | None = None

    # --- opening and closing --------------------------------------------------------------

    def __enter__(self) -> Ledger:
        self.open()
        return self

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        self.close(quiet=exc_type is not None)

    def open(self) -> None:
        """Take the lock, then read the results CSV and replay the journal over it (from the
        snapshot of both, when it still matches them: only what follows it is read)."""
        self._take_lock()
        try:
            if self.sandbox is not None:  # before anything is written: a refusal changes nothing
                check_kind(self.results, sandbox=self.sandbox, sync=self._sync)
                if self.sandbox:
                    mark_sandbox(self.results, durable=self.durable)
            self._replay()
            self._journal_file = self._open_append(self.journal)
            for entry in self._adopt:  # the journal is the truth again for these leads
                self._log(entry)
            # An intent never answered: the phone may have rung. The process that sent it is
            # gone, so its request was abandoned by now at the latest: the grace counts from
            # now, and is journaled so that every later open counts from the same moment.
            crashed = self._entries.with_status(Status.DIALING)
            for entry in crashed:
                self._log(replace(
                    entry, status=Status.IN_DOUBT, attempts=entry.attempts + 1,
                    error="interrupted between the intent and the answer: the call may exist",
                    abandoned_at=f"{time.time():.3f}", updated_at=utc_iso(),
                ))  # fmt: skip
            if crashed or self._adopt:
                self._fsync()
            if _older_header(self.results):
                # Written by an older dialer, with fewer columns: rewritten with today's,
                # so that the rows appended below fit its header.
                # Streamed, an entry at a time (a million leads are not held twice).
                loads = sorted(self._load_rows.values(), key=_row_phone)
                rows = heapq.merge(self._entries.in_row_order(), loads, key=_row_phone)
                replace_results(self.results, rows, durable=self.durable,
                                keep_mode=file_mode(self.results))  # fmt: skip
            self._results_file = self._open_append(self.results)
            if self._results_file.size == 0:
                # A BOM, so Excel reads UTF-8 accents right, and the header.
                self._append_row(RESULT_COLUMNS, prefix="\ufeff")
        except BaseException:
            self._close_files()
            self._release_lock()
            raise

    def close(self, *, quiet: bool = False) -> None:
        """Make the journal durable, compact the results CSV to one row per lead (atomically),
        save the snapshot and release the lock, whatever fails on the way.

        Raises the ``LedgerError`` of a write that fails here, unless a write failed earlier
        (that first error is the one reported: the caller has it) or ``quiet`` (an exception
        is already on its way). The files stay readable either way: a compaction that cannot
        be written leaves the appended results CSV, whole, in place."""
        earlier = self.failure
        error: LedgerError | None = None
        try:
            if self._journal_file is not None and earlier is None:
                try:
                    self._fsync()
                except LedgerError as exc:
                    error = exc
            self._close_files()
            if self._lock.is_locked:
                # The old snapshot goes first: one naming the results file before this
                # compaction would, after a crash between the two, take it for a re-saved one.
                with contextlib.suppress(OSError):
                    state_path(self.results).unlink()
                try:
                    self._compact()
                except LedgerError as exc:
                    error = error or exc
                self._save_snapshot()
                if self.after_close is not None and error is None and earlier is None:
                    self.after_close()  # a derived file: only over files closed whole
        finally:
            self._release_lock()
        if error is not None and earlier is None and not quiet:
            raise error

    def _close_files(self) -> None:
        for handle in (self._journal_file, self._results_file):
            if handle is not None:
                with contextlib.suppress(OSError):  # nothing is buffered: nothing is lost
                    handle.close()
        self._journal_file = self._results_file = None

    def _failed(self, path: Path, exc: OSError, doing: str = "write") -> LedgerError:
        """The ``LedgerError`` for a refused write; the first one becomes ``failure``."""
        error = write_failed(path, exc, doing=doing)
        if self.failure is None:
            self.failure = error
        return error

    def _check_writable(self) -> None:
        """After a refused write, nothing more is written (nor dialed): the first error again."""
        if self.failure is not None:
            raise self.failure

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

    def _open_append(self, path: Path) -> Appender:
        try:
            return Appender(path)
        except OSError as exc:
            raise self._failed(path, exc) from exc

    # --- reading the state ----------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        return self._entries.get(key)

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    def entries_by_key(self) -> Mapping[str, Entry]:
        """A read-only copy of the state by key (cheap: the snapshot's table is shared)."""
        return LedgerState(self._entries.base, dict(self._entries.overlay))

    def counts(self) -> Counter[str]:
        """Leads per status value, with no ``Entry`` built for the snapshot's leads."""
        return self._entries.counts()

    def should_dial(self, lead: Lead) -> bool:
        """True for a dialable lead the ledger has no final or in-doubt record of."""
        return lead.status is Status.PENDING and self.open_key(lead.key)

    def open_key(self, key: str) -> bool:
        """True when the ledger has no final or in-doubt record for a dialable lead's ``key``."""
        status = self._entries.status(key)
        return status is None or status in NEVER_SENT

    def open_keys(self, keys: Sequence[str]) -> list[bool]:
        """``open_key`` of each of ``keys`` at once (a resume's planner asks for a million)."""
        return self._entries.status_in(keys, [None, *NEVER_SENT])

    def status_of(self, key: str) -> Status | None:
        """The status recorded for ``key``, None if none (no ``Entry`` is built)."""
        return self._entries.status(key)

    def recent_sends(self, within: float) -> list[float]:
        """Wall-clock times of the last sends (one per lead) in the last ``within`` seconds,
        and of a recent ``dialer sync``'s look-ups: an earlier command's requests still count
        against the API's rate windows."""
        cutoff = time.time() - within
        times = self._entries.sent_since(cutoff)
        for record in read_runs(self.results)[-3:]:
            times += [t for t in record.get("request_times", ()) if t >= cutoff]
        return sorted(times)

    def with_status(self, status: Status) -> list[Entry]:
        """The entries of one status (an ``Entry`` is built only for those)."""
        return self._entries.with_status(status)

    def in_doubt(self) -> list[Entry]:
        """Leads whose call may or may not exist: to reconcile before anything new is dialed."""
        return self._entries.with_status(Status.IN_DOUBT)

    # --- writing --------------------------------------------------------------------------
    # Every journal line is one lead's whole state; replaying keeps the last line per lead.

    def defer(self, lead: Lead, reason: str, status: Status = Status.DEFERRED) -> None:
        """A lead not dialed now, for a later run: ``deferred`` (outside its calling hours) or
        ``pending`` (held back, not reached). A results row only: re-judged every run."""
        entry = self._entries.get(lead.key)
        if entry is not None and entry.status not in NEVER_SENT:
            return
        entry = Entry(lead.key, lead.row, lead.phone, status, error=reason,
                      attempts=entry.attempts if entry else 0, updated_at=utc_iso(),
                      crm_id=lead.crm_id, history=entry.history if entry else "",
                      unseen=entry.unseen if entry else "",
                      phone_column=lead.phone_column,
                      version_id=entry.version_id if entry else "",
                      language=entry.language if entry else "")  # fmt: skip
        self._entries[entry.key] = entry
        self._write_row(entry)

    def mark_removed(self, leads: Iterable[tuple[str, str]]) -> None:
        """Leads never called whose phone is no longer in the leads file, as ``(key, reason)``:
        ``removed``, so that nobody counts them pending (``dialer.store.edits``)."""
        for key, reason in leads:
            entry = replace(self._entries[key], status=Status.REMOVED, error=reason,
                            updated_at=utc_iso())  # fmt: skip
            self._log(entry)
            self._write_row(entry)

    def mark_returned(self, leads: Iterable[tuple[str, int]]) -> None:
        """Removed leads back in the leads file, as ``(key, row)``: ``pending`` again."""
        for key, row in leads:
            entry = replace(self._entries[key], row=row, status=Status.PENDING,
                            error="back in the leads file", updated_at=utc_iso())  # fmt: skip
            self._log(entry)
            self._write_row(entry)

    def move_rows(self, moves: Iterable[tuple[str, int]]) -> int:
        """Give leads the leads file moved, as ``(key, row)``, their current row number. A
        journal line each, written in batches and not fsynced (a lost one only leaves the old
        number until the next run); the results CSV gets them when it is compacted at close.
        Returns how many moved."""
        if self._journal_file is None:
            raise LedgerError("the ledger is not open")
        batch: list[str] = []
        moved = 0
        for key, row in moves:
            batch.append(encode_line(self._entries.set_row(key, row)))
            if len(batch) >= 10_000:
                moved += self._append(batch)
        return moved + self._append(batch)

    def _append(self, lines: list[str]) -> int:
        """Append whole journal lines at once; returns how many, and empties ``lines``."""
        if not lines:
            return 0
        self._check_writable()
        try:
            self._journal_file.append("".join(lines).encode())  # type: ignore[union-attr]
        except OSError as exc:
            raise self._failed(self.journal, exc, "write the journal") from exc
        count = len(lines)
        self._written += count
        lines.clear()
        return count

    def keep_load_rows(self) -> None:
        """Keep the load-time rows (invalid, duplicate...) the results hold, as they are: for
        a command that does not read the leads file again (``dialer sync``). A run instead
        re-judges every row with ``record_load``, and drops the rows that are no longer so."""
        for entry in self._load_rows.values():
            self._entries[entry.key] = entry

    def record_load(self, lead: Lead) -> None:
        """A lead final at load time (invalid, duplicate): a results row, no journal record.
        A row the results CSV already holds for it, alike but for its time, is kept as is."""
        entry = Entry(lead.key, lead.row, lead.phone, lead.status, error=lead.reason,
                      updated_at=utc_iso(), crm_id=lead.crm_id,
                      phone_column=lead.phone_column)  # fmt: skip
        before = self._load_rows.get(entry.key)
        if before is not None and replace(before, updated_at=entry.updated_at) == entry:
            self._entries[entry.key] = before
            return
        self._entries[entry.key] = entry
        self._write_row(entry)

    def intent(self, lead: Lead) -> None:
        """Durably record that ``lead`` is about to be dialed (fsync now), with the version and
        language it is sent with (``lead.settings``). Call BEFORE the POST."""
        self._log(self._dialing(lead))
        self._fsync()

    async def intent_async(self, lead: Lead) -> None:
        """``intent`` for the pool: concurrent intents share one fsync (group commit)."""
        self._log(self._dialing(lead))
        await self.sync()

    def not_sent(self, lead: Lead, error: str) -> None:
        """Close an intent whose request provably created no call (a retry may follow)."""
        entry = self._entries[lead.key]
        self._log(replace(entry, status=Status.PENDING, error=error, updated_at=utc_iso()))

    def outcome(self, outcome: Outcome) -> None:
        """Record how a lead's dispatch ended: journal, then its results row.

        Not fsynced here: the next intent's fsync (or ``close``) covers it, and a lost
        outcome only brings the lead back as in doubt, to be reconciled.
        """
        lead = outcome.lead
        before = self._entries.get(lead.key)
        abandoned = f"{outcome.abandoned_at:.3f}" if outcome.abandoned_at else ""
        entry = Entry(lead.key, lead.row, lead.phone, outcome.status, outcome.call_id,
                      (before.attempts if before else 0) + outcome.attempts, outcome.error,
                      utc_iso(), outcome.sent_at or (before.sent_at if before else 0.0),
                      lead.crm_id, history=before.history if before else "",
                      abandoned_at=abandoned, unseen=before.unseen if before else "",
                      phone_column=lead.phone_column, **_sent_with(lead))  # fmt: skip
        self._log(entry)
        self._write_row(entry)

    def resolve(self, key: str, status: Status, *, call_id: str = "", error: str = "") -> None:
        """Settle an in-doubt lead: ``called`` (found), ``pending`` (proven absent), or still
        ``in_doubt`` with a new reason. A lead proven absent keeps its attempt's time in
        ``unseen``: later look-ups check that no call of it appears after all."""
        entry = self._entries[key]
        changes: dict[str, Any] = {"status": status, "call_id": call_id, "error": error,
                                   "updated_at": utc_iso()}  # fmt: skip
        if status is not Status.IN_DOUBT:
            changes["abandoned_at"] = ""
        if status is Status.PENDING and entry.status is Status.IN_DOUBT and entry.sent_at:
            changes["unseen"] = f"{entry.unseen} {entry.sent_at:.3f}".strip()
        entry = replace(entry, **changes)
        self._log(entry)
        self._write_row(entry)

    def record_late_calls(
        self, key: str, found: list[tuple[str, str]], *, unseen: str, call_id: str | None = None
    ) -> None:
        """Calls that attempts shown absent created after all, found by a later look-up:
        ``(call id, created)`` each. With ``call_id`` the lead was not dialed again yet: it is
        ``called`` with that call. Every other found call rang the lead a second time: it goes
        into ``history`` as ``rang-twice``. ``unseen`` is what is left to watch for."""
        entry = self._entries[key]
        items = [f"{call} {RANG_TWICE} {created or '-'}" for call, created in found
                 if call != call_id]  # fmt: skip
        history = "; ".join(x for x in (entry.history, *items) if x)
        changes: dict[str, Any] = {"history": history, "unseen": unseen, "updated_at": utc_iso()}
        if call_id is not None:
            changes |= {"status": Status.CALLED, "call_id": call_id, "abandoned_at": "",
                        "error": "its earlier attempt, shown absent before, was listed later: "
                                 "called once, not dialed again"}  # fmt: skip
        entry = replace(entry, **changes)
        self._log(entry)
        self._write_row(entry)

    def suspects(self, *, since: float) -> list[Entry]:
        """Leads with an attempt shown absent since ``since`` whose call might still appear:
        only a lead sent to since then can have one, so only those entries are built."""
        return self._entries.unseen_since(since)

    def record_call_outcome(
        self, key: str, outcome: str, *, duration: str = "", summary: str = "", at: str = ""
    ) -> None:
        """What became of a called lead's current call (``dialer sync``): its final status."""
        entry = replace(self._entries[key], outcome=outcome, duration=duration,
                        summary=summary, outcome_at=at or utc_iso(),
                        updated_at=utc_iso())  # fmt: skip
        self._log(entry)
        self._write_row(entry)

    def recycle(self, key: str, reason: str) -> None:
        """A called lead to dial again (a retryable outcome, attempts left, cool-down over):
        its current call moves to ``history`` and it is ``pending`` for a new attempt."""
        entry = self._entries[key]
        item = " ".join((entry.call_id, entry.outcome or "-", entry.outcome_at or "-"))
        history = f"{entry.history}; {item}" if entry.history else item
        entry = replace(entry, status=Status.PENDING, call_id="", outcome="", duration="",
                        summary="", outcome_at="", history=history, error=reason,
                        updated_at=utc_iso())  # fmt: skip
        self._log(entry)
        self._write_row(entry)

    def _dialing(self, lead: Lead) -> Entry:
        before = self._entries.get(lead.key)
        return Entry(lead.key, lead.row, lead.phone, Status.DIALING,
                     attempts=before.attempts if before else 0, updated_at=utc_iso(),
                     sent_at=time.time(), crm_id=lead.crm_id,
                     history=before.history if before else "",
                     unseen=before.unseen if before else "",
                     phone_column=lead.phone_column, **_sent_with(lead))  # fmt: skip

    def _log(self, entry: Entry) -> None:
        """Append one state line to the journal (written whole, not yet fsynced)."""
        self._check_writable()
        if self._journal_file is None:
            raise LedgerError("the ledger is not open")
        try:
            self._journal_file.append(encode_line(entry).encode())
        except OSError as exc:
            raise self._failed(self.journal, exc, "write the journal") from exc
        self._written += 1
        self._entries[entry.key] = entry

    def _fsync(self) -> None:
        self._check_writable()
        if self._journal_file is None or not self.durable:
            return
        try:
            self._journal_file.fsync()
        except OSError as exc:
            # A failed fsync may have dropped the data: retrying it proves nothing. Stop.
            raise self._failed(self.journal, exc, "sync the journal") from exc

    async def sync(self) -> None:
        """Make every line written so far durable; callers waiting together share one fsync.
        After a refused write or fsync, every caller gets that error: nobody is dialed."""
        target = self._written
        async with self._sync_lock:
            self._check_writable()
            if self._synced >= target:
                return  # an fsync that started after our write already covered it
            upto = self._written
            await asyncio.to_thread(self._fsync)
            self._synced = upto

    def _write_row(self, entry: Entry) -> None:
        self._check_writable()
        self._append_row(row_cells(entry))

    def _append_row(self, cells: list[str], prefix: str = "") -> None:
        """Append one results row whole (a refused write leaves the file as it was)."""
        if self._results_file is None:
            raise LedgerError("the ledger is not open")
        self._row.seek(0)
        self._row.truncate()
        self._row.write(prefix)
        self._results_writer.writerow(cells)
        try:
            self._results_file.append(self._row.getvalue().encode())
        except OSError as exc:
            raise self._failed(self.results, exc) from exc

    def _read_journal(self, start: int = 0) -> list[Entry]:
        """The journal's records from ``start``; a torn tail is cut off, so that the next
        record starts on a line of its own."""
        records: list[Entry] = []
        self._scan_journal(start, records.append)
        return records

    def log_run(self, record: Mapping[str, Any]) -> None:
        """Append one run's audit record to ``<results>.runs.jsonl`` (whole, or not at all)."""
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)
        path = runs_path(self.results)
        try:
            append_whole(path, (line + "\n").encode())
        except OSError as exc:
            raise self._failed(path, exc) from exc

    def _compact(self) -> None:
        try:
            replace_results(self.results, self._entries.in_row_order(), durable=self.durable)
        except LedgerError as exc:
            if self.failure is None:
                self.failure = exc
            raise

    # --- the snapshot: the replayed state, so that the next open reads only what follows -----

    def _replay(self) -> None:
        """The state before this run: the snapshot if it still matches the files, then the
        results rows and journal lines after it (all of both without one). Per lead, the
        journal's last line beats any results row; a results row counts only otherwise. A
        results file that is not the dialer's own any more is rebuilt first (``_salvage``).

        Everything is folded into one ``EntryTable`` as it is read, a row or a line at a time
        (no ``Entry`` kept per lead); the rows rejected at load time are kept apart."""
        found = read_snapshot(self.results, self.journal)
        check = inspect_results(self.results, start=found[3]) if found is not None else None
        if check is None or not check.ok:
            found = None  # no snapshot, or trouble after it: the whole file is looked at
            check = inspect_results(self.results, written=snapshot_mark(self.results))
        if found is not None:
            base, loads, journal_at, _ = found
            loads.update(check.loads)
            rows = check.table
            for i in range(len(rows)):
                j = base.keys.get(rows.keys[i])
                if j is None or not base.journaled[j]:  # else the journal has the say
                    base.put(rows.entry(i), False)
            self._scan_journal(journal_at, lambda entry: base.put(entry, True))
        elif check.ok:
            base, loads = check.table, dict(check.loads)
            known, lines = len(base), [0]

            def put(entry: Entry) -> None:
                lines[0] += 1
                base.put(entry, True)

            self._scan_journal(0, put)
            gone = any(_STATUSES[base.status[i]] in _FINISHED for i in range(known, len(base)))
            if gone:  # rows deleted by hand: rebuilt from the journal (read again, whole)
                check = inspect_results(self.results, written=snapshot_mark(self.results))
                base, loads = self._salvaged(check)
            elif not lines[0]:  # no journal: the rows that record calls become its lines
                self._adopt = [base.entry(i) for i in range(len(base)) if _dialed(base.entry(i))]
                if self._adopt:
                    self.notices.append(f"the journal {self.journal.name} was missing: rebuilt "
                                        f"it from {self.results.name} "
                                        f"({len(self._adopt):,} leads)")  # fmt: skip
        else:
            base, loads = self._salvaged(check)
        if check.torn_at is not None:
            self._cut_torn_row(check.torn_at)
        elif check.unterminated:
            self._end_last_row()
        self._base, self._load_rows = base, loads
        self._entries = LedgerState(base, {})
        release_freed_memory()  # the files' text and the rows read: a run's peak starts here

    def _salvaged(self, check: ResultsCheck) -> tuple[EntryTable, dict[str, Entry]]:
        """The table and load-time rows ``_salvage`` leaves (the rare path: whole lists)."""
        records = self._read_journal()
        base, loads = EntryTable(), {}
        for entry in self._salvage(check, records):
            if entry.status in LOAD_TIME:
                loads[entry.key] = entry
            else:
                base.put(entry, False)
        if not base.update((entry, True) for entry in records):
            raise TypeError("EntryTable does not know the fields of Entry")
        return base, loads

    def _scan_journal(self, start: int, sink: Callable[[Entry], object]) -> None:
        """``_read_journal`` handing each record to ``sink`` instead of listing them."""
        good, size = scan_journal(self.journal, sink, start=start)
        self._journal_start = good
        if good < size:
            self.torn_tail = True
            try:
                truncate_file(self.journal, good)
            except OSError as exc:
                raise self._failed(self.journal, exc, "repair the journal") from exc

    def _salvage(self, check: ResultsCheck, records: list[Entry]) -> list[Entry]:
        """The results rows to replay under the journal's ``records``. A results file that is
        missing, damaged or re-saved by another program is rebuilt from the journal, the
        user's copy kept aside; without a journal it is read leniently and the journal
        rebuilt from it; a journal gone under a good results file is rebuilt from it too."""
        name = self.results.name
        gone = missing_rows(check, records) if check.ok and records else []
        if check.ok and not gone:
            if not records:  # no journal: the rows that record calls become its lines
                self._adopt = [e for e in check.entries if _dialed(e)]
                if self._adopt:
                    self.notices.append(f"the journal {self.journal.name} was missing: rebuilt "
                                        f"it from {name} ({len(self._adopt):,} leads)")  # fmt: skip
            return check.entries
        how = _how(check, gone)
        if not records:
            if check.kind == "missing":
                return []  # a new campaign
            rows, told = read_leniently(self.results, region=self.region)
            kept = self._rewrite(rows)
            self._adopt = [e for e in rows if _dialed(e)]
            self.notices.append(f"{name} {how} and its journal is gone: read it leniently, "
                                f"recovered {told}; your copy was kept as {kept}")  # fmt: skip
            return rows
        state = {entry.key: entry for entry in records}
        rows = _kept_rows(self.results, state, self.region)
        self._adopt = [e for e in rows if _dialed(e)]
        kept = self._rewrite([*rows, *state.values()])
        count = len({e.key for e in rows} | set(state))
        told = f"{name} {how}: rebuilt from the journal ({count:,} leads)"
        self.notices.append(told + (f"; your copy was kept as {kept}" if kept else ""))
        return rows

    def _rewrite(self, entries: list[Entry]) -> str:
        """Move the user's results file aside and write ``entries`` in its place; the name of
        the copy kept ("" when there was no file). The snapshot, naming the old file, goes."""
        mode = file_mode(self.results)  # the user's choice, kept by the rewritten file
        kept = set_aside(self.results)
        shown = [replace(e, status=Status.IN_DOUBT) if e.status is Status.DIALING else e
                 for e in entries]  # fmt: skip
        replace_results(self.results, sorted(shown, key=lambda e: (e.row, e.phone)),
                        durable=self.durable, keep_mode=mode)  # fmt: skip
        with contextlib.suppress(OSError):
            state_path(self.results).unlink()
        return kept.name if kept is not None else ""

    def _cut_torn_row(self, at: int) -> None:
        """Cut a torn last row off (a crash or a full disk mid-append), as the journal's."""
        try:
            truncate_file(self.results, at)
        except OSError as exc:
            raise LedgerError(f"cannot repair {self.results}: {exc.strerror}") from exc
        self.notices.append(
            f"{self.results.name}: its last row was torn (a crash or a full disk while it "
            "was written) and was left out; the journal keeps every dialed lead's state"
        )

    def _end_last_row(self) -> None:
        """End a whole last row that lost its line end, so the next row starts a line."""
        try:
            append_whole(self.results, b"\r\n")
        except OSError as exc:
            raise LedgerError(f"cannot repair {self.results}: {exc.strerror}") from exc

    def _save_snapshot(self) -> None:
        """Write the state as the journal and the compacted results CSV now give it (not this
        run's in-memory view: an in-doubt conversion is redone from the journal each open).
        Only saves time: on any trouble, no snapshot, and the next open replays everything.
        The table read at open is updated in place: the run is over."""
        try:
            base = self._base if self._base is not None else EntryTable()
            self._base = None  # from here on half-updated: never read again
            overlay, journaled = self._entries.overlay, set()  # the overlay's keys only

            def put(entry: Entry) -> None:
                if entry.key in overlay:
                    journaled.add(entry.key)
                if not base.put(entry, True):
                    raise ValueError("no layout for these entries")

            scan_journal(self.journal, put, start=self._journal_start)
            for key, entry in overlay.items():
                if entry.status in LOAD_TIME or key in journaled:
                    continue  # a load-time row (kept apart), or the journal decides this lead
                i = base.keys.get(key)
                if (i is None or not base.journaled[i]) and not base.put(entry, False):
                    raise ValueError("no layout for these entries")  # a results row only
            loads = [to_record(e) for e in self._entries.overlay.values() if e.status in LOAD_TIME]
            header, parts = base.dump()
            header |= {
                "kind": "ledger-state",
                "journal": [self.journal.stat().st_size, file_digest(self.journal)],
                "results": [self.results.stat().st_size, file_digest(self.results)],
                "loads": loads,
            }
            write_parts(state_path(self.results), header, parts, self.durable)
        except (OSError, ValueError, LedgerError):
            with contextlib.suppress(OSError):
                state_path(self.results).unlink()  # stale anyway: it names the old files


def _sent_with(lead: Lead) -> dict[str, str]:
    """The version and language a lead is sent with, as its entry records them: the lead's
    settings as the engine resolved them (its own, the split's, the campaign's)."""
    return {"version_id": lead.settings.get("version_id", ""),
            "language": lead.settings.get("language", "")}  # fmt: skip


def _row_phone(entry: Entry) -> tuple[int, str]:
    return entry.row, entry.phone


def _older_header(results: Path) -> bool:
    """Whether ``results`` begins with the header of an older dialer: today's columns, but
    the last ones missing (``version_id``, ``language``...)."""
    try:
        with open(results, "rb") as handle:
            line = handle.readline(4096)
    except OSError:
        return False
    names = line.decode("utf-8", "replace").removeprefix("\ufeff").strip().split(",")
    return len(names) < len(RESULT_COLUMNS) and names == RESULT_COLUMNS[: len(names)]


def read_state(results: str | Path) -> Mapping[str, Entry]:
    """Every lead's state from the results CSV and the journal, read-only, without the lock
    (``dialer status``, ``report``, the dry run): what a run would start from, less its
    in-doubt conversion. See ``read_state_noted``."""
    return read_state_noted(results)[0]


def read_state_noted(
    results: str | Path, *, region: str = "ES"
) -> tuple[Mapping[str, Entry], list[str]]:
    """``read_state``, and what it found wrong with the results file (one line each). From
    the snapshot and what follows it when the snapshot still matches both files, as
    ``Ledger.open`` does; else everything is replayed. A results file that is missing,
    damaged or re-saved by another program is read from the journal instead (the next run
    rebuilds it); without a journal, leniently. Raises ``LedgerError`` only when neither
    can be read."""
    results = Path(results)
    journal = journal_path(results)
    found = read_snapshot(results, journal)
    if found is not None:
        base, loads, journal_at, results_at = found
        check = inspect_results(results, start=results_at)
        if check.ok:
            rows = check.table
            for i in range(len(rows)):
                j = base.keys.get(rows.keys[i])
                if j is None or not base.journaled[j]:  # the journal has no say on this lead
                    base.put(rows.entry(i), False)
            scan_journal(journal, lambda entry: base.put(entry, True), start=journal_at)
            return LedgerState(base, {**loads, **check.loads}), _torn_note(results, check)
    check = inspect_results(results, written=snapshot_mark(results))
    if check.ok:  # the results rows, each lead's journal lines over them: one table
        table, known = check.table, len(check.table)
        scan_journal(journal, lambda entry: table.put(entry, True))
        if not any(_STATUSES[table.status[i]] in _FINISHED for i in range(known, len(table))):
            return LedgerState(table, dict(check.loads)), _torn_note(results, check)
        check = inspect_results(results, written=snapshot_mark(results))  # read again, whole
    records = read_journal(journal)[0]
    gone = missing_rows(check, records) if check.ok and records else []
    how = _how(check, gone)
    if not records:
        if check.kind == "missing":
            return {}, []
        rows, told = read_leniently(results, region=region)
        note = f"{results.name} {how} and its journal is gone: read leniently, {told}"
        return {e.key: e for e in rows}, [note + "; the next run rewrites it"]
    state = {e.key: e for e in records}
    rows = _kept_rows(results, state, region)
    state.update((e.key, e) for e in rows)
    note = (f"{results.name} {how}: shown from the journal ({len(state):,} leads); the next "
            "'dialer run' or 'dialer sync' rebuilds it and keeps your copy")  # fmt: skip
    return state, [note]


def _how(check: ResultsCheck, gone: list[str]) -> str:
    """What became of a results file, as a message says it."""
    if gone:
        return f"lacks the rows of {len(gone):,} leads the journal holds"
    if check.kind == "missing":
        return f"{check.problem}"
    if check.kind == "damaged":
        return f"is damaged ({check.problem})"
    return f"was re-saved by another program ({check.problem})"


def _torn_note(results: Path, check: ResultsCheck) -> list[str]:
    if check.torn_at is None:
        return []
    return [f"{results.name}: its last row is torn (a crash mid-write) and is ignored"]


def _dialed(entry: Entry) -> bool:
    """A results row that records a request (or a recycled lead's earlier calls)."""
    return entry.status not in LOAD_TIME and (
        entry.status in DIALED or bool(entry.history) or entry.attempts > 0
    )


def _kept_rows(results: Path, journaled: Mapping[str, Entry], region: str) -> list[Entry]:
    """What a rebuild from the journal keeps of a re-saved results file, read leniently when
    it can be: the load-time rows (a ``dialer sync`` does not re-derive them) and, so that
    no call is ever forgotten, any dialed lead the journal has no line for."""
    if not results.is_file():
        return []
    try:
        rows, _ = read_leniently(results, region=region)
    except LedgerError:
        return []
    return [e for e in rows if e.status in LOAD_TIME or (_dialed(e) and e.key not in journaled)]


def read_runs(results: str | Path) -> list[dict[str, Any]]:
    """The audit records of past runs (``<results>.runs.jsonl``), oldest first."""
    try:
        text = runs_path(Path(results)).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise LedgerError(f"cannot read {runs_path(Path(results))}: {exc.strerror}") from exc
    runs = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            runs.append(json.loads(line))
    return runs
