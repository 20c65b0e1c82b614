"""The ledger's opening half: the state before a run, read from the snapshot, the results CSV
and the journal, and the snapshot saved at close (``Replay``, which ``store.ledger.Ledger``
builds on).

Owns the replay's rules: per lead, the journal's last line beats any results row; a results row
counts only otherwise; everything is folded into one ``EntryTable`` as it is read (no ``Entry``
kept per lead), the rows rejected at load time kept apart. A results file that is not the
dialer's own any more (missing, damaged, re-saved by another program, rows deleted) is rebuilt
from the journal, the user's copy kept aside; a journal gone under a good results file is
rebuilt from it. A torn journal tail or results row is cut off. The snapshot is only a saving:
used while the files still begin with its bytes, and written at close from the files as they
then are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from dialer.errors import LedgerError, write_failed
from dialer.files import file_mode, truncate_file
from dialer.model import LOAD_TIME, Status
from dialer.store.appender import append_whole
from dialer.store.cache import (
    file_digest,
    read_snapshot,
    release_freed_memory,
    snapshot_mark,
    state_path,
    write_parts,
)
from dialer.store.journal import scan_journal, to_record
from dialer.store.readstate import FINISHED, STATUSES, dialed_row, how_changed, kept_rows
from dialer.store.results import Entry, replace_results
from dialer.store.salvage import (
    ResultsCheck,
    inspect_results,
    missing_rows,
    read_leniently,
    set_aside,
)
from dialer.store.state import EntryTable, LedgerState


class Replay:
    """What ``Ledger`` reads at open and saves at close (see the module): the methods that
    fill its state from the files, for ``Ledger`` to call under its lock."""

    results: Path
    journal: Path
    durable: bool
    region: str
    torn_tail: bool
    failure: LedgerError | None
    notices: list[str]
    _entries: LedgerState
    _base: EntryTable | None
    _load_rows: dict[str, Entry]
    _journal_start: int
    _adopt: list[Entry]

    def _failed(self, path: Path, exc: OSError, doing: str = "write") -> LedgerError:
        """The ``LedgerError`` for a refused write; the first one becomes ``failure``."""
        error = write_failed(path, exc, doing=doing)
        if self.failure is None:
            self.failure = error
        return error

    def _read_journal(self, start: int = 0) -> list[Entry]:
        """The journal's records from ``start``; a torn tail is cut off, so that the next
        record starts on a line of its own."""
        records: list[Entry] = []
        self._scan_journal(start, records.append)
        return records

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
            gone = any(STATUSES[base.status[i]] in FINISHED for i in range(known, len(base)))
            if gone:  # rows deleted by hand: rebuilt from the journal (read again, whole)
                check = inspect_results(self.results, written=snapshot_mark(self.results))
                base, loads = self._salvaged(check)
            elif not lines[0]:  # no journal: the rows that record calls become its lines
                self._adopt = [base.entry(i) for i in range(len(base)) if dialed_row(base.entry(i))]
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
                self._adopt = [e for e in check.entries if dialed_row(e)]
                if self._adopt:
                    self.notices.append(f"the journal {self.journal.name} was missing: rebuilt "
                                        f"it from {name} ({len(self._adopt):,} leads)")  # fmt: skip
            return check.entries
        how = how_changed(check, gone)
        if not records:
            if check.kind == "missing":
                return []  # a new campaign
            rows, told = read_leniently(self.results, region=self.region)
            kept = self._rewrite(rows)
            self._adopt = [e for e in rows if dialed_row(e)]
            self.notices.append(f"{name} {how} and its journal is gone: read it leniently, "
                                f"recovered {told}; your copy was kept as {kept}")  # fmt: skip
            return rows
        state = {entry.key: entry for entry in records}
        rows = kept_rows(self.results, state, self.region)
        self._adopt = [e for e in rows if dialed_row(e)]
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
