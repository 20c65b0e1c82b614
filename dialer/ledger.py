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
* ``leads.results.csv.lock``     an OS lock (flock through filelock): released by the kernel
                                 when the holder dies, even by SIGKILL; the file is never deleted.
* ``leads.results.csv.state``    a snapshot of the replayed state (``dialer.cache``), written at
                                 close: an open uses it only while the journal and the results
                                 still begin with the bytes it was taken from, and replays only
                                 what follows. It only saves time; the journal stays the truth.

An intent with no outcome after it means the process died between deciding to dial and
learning the answer: the phone may have rung, so the lead is ``in_doubt`` and is not dialed
again blindly. Only this module writes these files (the results CSV's format lives in
``results``, a journal line's in ``journal``, the snapshot's in ``cache``).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import filelock

from dialer.cache import (
    EntryTable,
    LedgerState,
    file_digest,
    read_snapshot,
    state_path,
    write_parts,
)
from dialer.errors import LedgerError, LedgerLocked
from dialer.journal import encode_line, journal_path, read_journal, to_record
from dialer.model import LOAD_TIME, Lead, Outcome, Status
from dialer.results import (
    RESULT_COLUMNS,
    Entry,
    read_results,
    replace_results,
    row_cells,
    utc_iso,
)

# A lead the API never saw: dialed when its phone is (again) a dialable row of the leads file.
_NEVER_SENT = (Status.PENDING, Status.DEFERRED, Status.REMOVED)


def runs_path(results: Path) -> Path:
    return results.with_name(results.name + ".runs.jsonl")


def lock_path(results: Path) -> Path:
    return results.with_name(results.name + ".lock")


class Ledger:
    """One campaign's results, journal and lock. Use as a context manager around a run."""

    def __init__(self, results: str | Path, *, durable: bool = True) -> None:
        self.results = Path(results)
        self.journal = journal_path(self.results)
        self.durable = durable
        self._entries = LedgerState(None, {})
        # What the results CSV and the journal say before this run's changes (see _replay).
        self._base: EntryTable | None = None
        self._tail: dict[str, tuple[Entry, bool]] = {}  # key -> (entry, from the journal)
        self._load_rows: dict[str, Entry] = {}  # load-time rows the results CSV holds
        self._journal_start = 0  # the journal's size once opened: this run appends after it
        self._lock = filelock.FileLock(
            lock_path(self.results), timeout=0, preserve_lock_file=True, fallback_to_soft=False
        )
        self._info = self.results.with_name(self.results.name + ".lock.info")
        self._journal_file: IO[str] | None = None
        self._results_file: IO[str] | None = None
        self._results_writer: Any = None
        self._written = self._synced = 0  # journal lines written / known durable
        self._sync_lock = asyncio.Lock()
        self.torn_tail = False  # the journal's last line was torn by a crash and ignored
        # Called once the results are compacted and the snapshot saved, still under the lock.
        self.after_close: Callable[[], None] | None = None

    # --- opening and closing --------------------------------------------------------------

    def __enter__(self) -> Ledger:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open(self) -> None:
        """Take the lock, then read the results CSV and replay the journal over it (from the
        snapshot of both, when it still matches them: only what follows it is read)."""
        self._take_lock()
        try:
            self._replay()
            # An intent never answered: the phone may have rung.
            for entry in self._entries.with_status(Status.DIALING):
                self._entries[entry.key] = replace(
                    entry,
                    status=Status.IN_DOUBT,
                    attempts=entry.attempts + 1,
                    error="interrupted between the intent and the answer: the call may exist",
                )
            self._journal_file = self._open_append(self.journal)
            self._results_file = self._open_append(self.results)
            self._results_writer = csv.writer(self._results_file, lineterminator="\r\n")
            if self.results.stat().st_size == 0:
                self._results_file.write("\ufeff")  # a BOM, so Excel reads UTF-8 accents right
                self._results_writer.writerow(RESULT_COLUMNS)
                self._results_file.flush()
        except BaseException:
            self._release_lock()
            raise

    def close(self) -> None:
        """Compact the results CSV to one row per lead, atomically, and release the lock."""
        try:
            if self._journal_file is not None:
                self._fsync()
            for handle in (self._journal_file, self._results_file):
                if handle is not None:
                    handle.close()
            self._journal_file = self._results_file = None
            if self._lock.is_locked:
                self._compact()
                self._save_snapshot()
                if self.after_close is not None:
                    self.after_close()
        finally:
            self._release_lock()

    def _take_lock(self) -> None:
        self.results.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except filelock.Timeout:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                info = json.loads(self._info.read_text(encoding="utf-8"))
                holder = f" (pid {info['pid']} on {info['host']}, since {info['since']})"
            raise LedgerLocked(
                f"{self.results.name} is in use by another dialer run{holder}: "
                "wait for it to finish; nothing was touched"
            ) from None
        except OSError as exc:
            raise LedgerError(f"cannot lock {self.results}: {exc.strerror}") from exc
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": utc_iso()}
        with contextlib.suppress(OSError):
            self._info.write_text(json.dumps(info), encoding="utf-8")

    def _release_lock(self) -> None:
        if self._lock.is_locked:
            self._lock.release()

    def _open_append(self, path: Path) -> IO[str]:
        try:
            return open(path, "a", encoding="utf-8", newline="")
        except OSError as exc:
            raise LedgerError(f"cannot write {path}: {exc.strerror}") from exc

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
        return status is None or status in _NEVER_SENT

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
        if entry is not None and entry.status not in _NEVER_SENT:
            return
        entry = Entry(lead.key, lead.row, lead.phone, status, error=reason,
                      attempts=entry.attempts if entry else 0, updated_at=utc_iso(),
                      crm_id=lead.crm_id, history=entry.history if entry else "")  # fmt: skip
        self._entries[entry.key] = entry
        self._write_row(entry)

    def mark_removed(self, leads: Iterable[tuple[str, str]]) -> None:
        """Leads never called whose phone is no longer in the leads file, as ``(key, reason)``:
        ``removed``, so that nobody counts them pending (``dialer.edits``)."""
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
        try:
            self._journal_file.write("".join(lines))  # type: ignore[union-attr]
            self._journal_file.flush()  # type: ignore[union-attr]
        except OSError as exc:
            raise LedgerError(f"cannot write the journal {self.journal}: {exc.strerror}") from exc
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
                      updated_at=utc_iso(), crm_id=lead.crm_id)  # fmt: skip
        before = self._load_rows.get(entry.key)
        if before is not None and replace(before, updated_at=entry.updated_at) == entry:
            self._entries[entry.key] = before
            return
        self._entries[entry.key] = entry
        self._write_row(entry)

    def intent(self, lead: Lead) -> None:
        """Durably record that ``lead`` is about to be dialed (fsync now). Call BEFORE the POST."""
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
        entry = Entry(lead.key, lead.row, lead.phone, outcome.status, outcome.call_id,
                      (before.attempts if before else 0) + outcome.attempts, outcome.error,
                      utc_iso(), outcome.sent_at or (before.sent_at if before else 0.0),
                      lead.crm_id, history=before.history if before else "")  # fmt: skip
        self._log(entry)
        self._write_row(entry)

    def resolve(self, key: str, status: Status, *, call_id: str = "", error: str = "") -> None:
        """Settle an in-doubt lead: ``called`` (found), ``pending`` (proven absent), or still
        ``in_doubt`` with a new reason."""
        entry = replace(self._entries[key], status=status, call_id=call_id, error=error,
                        updated_at=utc_iso())  # fmt: skip
        self._log(entry)
        self._write_row(entry)

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
                     history=before.history if before else "")  # fmt: skip

    def _log(self, entry: Entry) -> None:
        """Append one state line to the journal (written and flushed, not yet fsynced)."""
        if self._journal_file is None:
            raise LedgerError("the ledger is not open")
        try:
            self._journal_file.write(encode_line(entry))
            self._journal_file.flush()
        except OSError as exc:
            raise LedgerError(f"cannot write the journal {self.journal}: {exc.strerror}") from exc
        self._written += 1
        self._entries[entry.key] = entry

    def _fsync(self) -> None:
        if self._journal_file is None or not self.durable:
            return
        try:
            os.fsync(self._journal_file.fileno())
        except OSError as exc:
            # A failed fsync may have dropped the data: retrying it proves nothing. Stop.
            raise LedgerError(f"cannot sync the journal {self.journal}: {exc.strerror}") from exc

    async def sync(self) -> None:
        """Make every line written so far durable; callers waiting together share one fsync."""
        target = self._written
        async with self._sync_lock:
            if self._synced >= target:
                return  # an fsync that started after our write already covered it
            upto = self._written
            await asyncio.to_thread(self._fsync)
            self._synced = upto

    def _write_row(self, entry: Entry) -> None:
        if self._results_file is None:
            raise LedgerError("the ledger is not open")
        try:
            self._results_writer.writerow(row_cells(entry))
            self._results_file.flush()
        except OSError as exc:
            raise LedgerError(f"cannot write {self.results}: {exc.strerror}") from exc

    def _read_journal(self, start: int = 0) -> list[Entry]:
        records, good, size = read_journal(self.journal, start=start)
        self._journal_start = good
        if good < size:
            # Cut the torn tail off so the next record starts on a line of its own.
            self.torn_tail = True
            try:
                os.truncate(self.journal, good)
            except OSError as exc:
                raise LedgerError(f"cannot repair {self.journal}: {exc.strerror}") from exc
        return records

    def log_run(self, record: Mapping[str, Any]) -> None:
        """Append one run's audit record to ``<results>.runs.jsonl``."""
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)
        try:
            with open(runs_path(self.results), "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        except OSError as exc:
            raise LedgerError(f"cannot write {runs_path(self.results)}: {exc.strerror}") from exc

    def _compact(self) -> None:
        rows = sorted(self._entries.values(), key=lambda e: (e.row, e.phone))
        replace_results(self.results, rows, durable=self.durable)

    # --- the snapshot: the replayed state, so that the next open reads only what follows -----

    def _replay(self) -> None:
        """The state before this run: the snapshot if it still matches the files, then the
        results rows and journal lines after it (all of both without one). Per lead, the
        journal's last line beats any results row; a results row counts only otherwise."""
        found = read_snapshot(self.results, self.journal)
        base, loads, journal_at, results_at = found or (None, {}, 0, 0)
        tail: dict[str, tuple[Entry, bool]] = {}
        for entry in read_results(self.results, start=results_at):
            if entry.status in LOAD_TIME:
                loads[entry.key] = entry
                continue
            i = base.index.get(entry.key) if base is not None else None
            if i is None or not base.journaled[i]:  # type: ignore[union-attr]
                tail[entry.key] = (entry, False)
        for entry in self._read_journal(start=journal_at):
            tail[entry.key] = (entry, True)
        self._base, self._tail, self._load_rows = base, tail, loads
        self._entries = LedgerState(base, {key: entry for key, (entry, _) in tail.items()})

    def _save_snapshot(self) -> None:
        """Write the state as the journal and the compacted results CSV now give it (not this
        run's in-memory view: an in-doubt conversion is redone from the journal each open).
        Only saves time: on any trouble, no snapshot, and the next open replays everything."""
        try:
            changes = dict(self._tail)
            for entry in read_journal(self.journal, start=self._journal_start)[0]:
                changes[entry.key] = (entry, True)
            base = self._base
            for key, entry in self._entries.overlay.items():
                if entry.status in LOAD_TIME or changes.get(key, (None, False))[1]:
                    continue  # a load-time row (kept apart), or the journal decides this lead
                i = base.index.get(key) if base is not None else None
                if i is None or not base.journaled[i]:  # type: ignore[union-attr]
                    changes[key] = (entry, False)  # a results row only (defer): it stands
            table = EntryTable.merged(base, changes)
            loads = [to_record(e) for e in self._entries.overlay.values() if e.status in LOAD_TIME]
            if table is None:
                raise ValueError("no layout for these entries")
            header, parts = table.dump()
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


def read_state(results: str | Path) -> Mapping[str, Entry]:
    """Every lead's state from the results CSV and the journal, read-only, without the lock
    (``dialer status``, ``report``, the dry run): what a run would start from, less its
    in-doubt conversion. From the snapshot and what follows it when the snapshot still
    matches both files, as ``Ledger.open`` does; else everything is replayed."""
    results = Path(results)
    journal = journal_path(results)
    found = read_snapshot(results, journal)
    if found is None:
        state = {e.key: e for e in read_results(results)}
        for entry in read_journal(journal)[0]:
            state[entry.key] = entry
        return state
    base, loads, journal_at, results_at = found
    overlay: dict[str, Entry] = dict(loads)
    for entry in read_results(results, start=results_at):
        i = base.index.get(entry.key)
        if entry.status in LOAD_TIME or i is None or not base.journaled[i]:
            overlay[entry.key] = entry  # the journal has no say on this lead: the row stands
    for entry in read_journal(journal, start=journal_at)[0]:
        overlay[entry.key] = entry
    return LedgerState(base, overlay)


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
