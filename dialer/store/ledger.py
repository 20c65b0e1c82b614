"""The ledger: what each lead's state is, kept in a journal and a results CSV, under a run lock.

Owns the results CSV (``leads.results.csv`` below) and, in its state folder
``leads.results.csv.dialer/`` (``files.state_folder``), the journal, the lock and the marks:

* ``leads.results.csv``          one row per lead (UTF-8 with a BOM for Excel, every cell made
                                 safe from formula injection): what a person reads. Rows are
                                 appended as leads finish and the file is compacted (temp file,
                                 fsync, rename, fsync of the directory) when the run closes; a
                                 reader keeps the last row per lead, so a crash leaves it usable.
* ``journal``                    the source of truth: an append-only log of lead states, the
                                 last line per lead winning. ``dialing`` (the intent) is written
                                 and fsynced BEFORE each ``POST /call``; concurrent intents share
                                 one fsync. A line is ``<crc32 hex> <json>``. A torn last line is
                                 cut off; damage anywhere else stops the run.
* ``lock``                       an OS lock (flock, ``files.RunLock``): released by the kernel
                                 when the holder dies, even by SIGKILL; the file is never deleted.
* ``sandbox``                    present when the campaign's calls are the sandbox's
                                 (``dialer.store.sandboxmark``): written before anything else by a
                                 ``sandbox=True`` ledger; a ledger of the other kind refuses.
* ``state``                      a snapshot of the replayed state (``store.cache``), written at
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
the results CSV stay whole lines. Only the ledger writes these files: this module (the run's
writes), ``replay`` (the state read at open, a damaged file rebuilt, the snapshot saved at
close) and ``locking`` (the lock), which ``Ledger`` builds on; ``readstate`` reads them without
the lock. The results CSV's format lives in ``results``, a journal line's in ``journal``, the
snapshot file's in ``cache``, the state it holds in ``state``, the appends in ``appender``.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import heapq
import io
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from dialer.errors import LedgerError
from dialer.files import RunLock, file_mode, state_folder
from dialer.model import NEVER_SENT, Lead, Outcome, Status
from dialer.store.appender import Appender, append_whole
from dialer.store.cache import state_path
from dialer.store.journal import encode_line, journal_path
from dialer.store.locking import Locking, lock_info_path, lock_path
from dialer.store.readstate import read_runs, read_state, read_state_noted, runs_path
from dialer.store.replay import Replay
from dialer.store.results import (
    RANG_TWICE,
    RESULT_COLUMNS,
    Entry,
    replace_results,
    row_cells,
    utc_iso,
)
from dialer.store.sandboxmark import check_kind, mark_sandbox
from dialer.store.state import EntryTable, LedgerState

# Re-exported: the names callers have imported from here.
__all__ = ["Appender", "Ledger", "append_whole", "journal_path", "lock_info_path", "lock_path",
           "read_runs", "read_state", "read_state_noted", "runs_path"]  # fmt: skip


class Ledger(Locking, Replay):
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
        self._flushing: asyncio.Future[None] | None = None  # the fsync under way
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

    def _check_writable(self) -> None:
        """After a refused write, nothing more is written (nor dialed): the first error again."""
        if self.failure is not None:
            raise self.failure

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
        before = self._load_rows.get(lead.key)
        entry = Entry(lead.key, lead.row, lead.phone, lead.status, error=lead.reason,
                      updated_at=before.updated_at if before is not None else "",
                      crm_id=lead.crm_id, phone_column=lead.phone_column)  # fmt: skip
        if entry == before:  # (its time taken from the row, so as not to build another)
            self._entries[entry.key] = before
            return
        entry = replace(entry, updated_at=utc_iso())
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
        """Make every line written so far durable; callers waiting together share one fsync
        (group commit) and wake together when it ends: they wait on one task, not on a lock
        handed from caller to caller, one loop turn each. A line written while an fsync runs
        waits for the next one, which its first caller starts. After a refused write or fsync,
        every caller gets that error: nobody is dialed."""
        target = self._written
        while True:
            self._check_writable()
            if self._synced >= target:
                return  # an fsync that started after our write covered it
            if self._flushing is None:

                async def flush() -> None:
                    upto = self._written  # every line written before the fsync starts
                    try:
                        await asyncio.to_thread(self._fsync)
                        self._synced = max(self._synced, upto)
                    finally:
                        self._flushing = None  # before the task is done: no caller spins

                self._flushing = asyncio.ensure_future(flush())
                # Its error is every waiting caller's; read here too, in case none is left.
                self._flushing.add_done_callback(lambda t: t.cancelled() or t.exception())
            # Shielded: a caller cancelled (a second signal) does not cancel the others' fsync.
            await asyncio.shield(self._flushing)

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
