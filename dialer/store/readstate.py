"""A campaign's state read without the lock (``dialer status``, ``report``, the dry run), and what
the ledger and those readers share about a results file gone wrong.

Owns ``read_state`` / ``read_state_noted`` (the snapshot and what follows it, else the results
rows and the journal replayed; a results file that is not the dialer's own any more is shown
from the journal), the run log's reading (``read_runs``, ``runs_path``), and the rules both the
ledger's open and these readers apply: which results row records a call (``dialed_row``), what
a rebuild keeps of a re-saved file (``kept_rows``), how a message says what became of it
(``how_changed``). It never writes a file.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dialer.errors import LedgerError
from dialer.files import state_file
from dialer.model import LOAD_TIME, Status
from dialer.store.cache import read_snapshot, snapshot_mark
from dialer.store.journal import journal_path, read_journal, scan_journal
from dialer.store.results import Entry
from dialer.store.salvage import (
    DIALED,
    ResultsCheck,
    inspect_results,
    missing_rows,
    read_leniently,
)
from dialer.store.state import LedgerState

STATUSES = list(Status)
FINISHED = DIALED - {Status.DIALING}  # a journal line so: the results must have a row


def runs_path(results: Path) -> Path:
    """The run log: one audit record a run (or sync)."""
    return state_file(results, "runs.jsonl")


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
        if not any(STATUSES[table.status[i]] in FINISHED for i in range(known, len(table))):
            return LedgerState(table, dict(check.loads)), _torn_note(results, check)
        check = inspect_results(results, written=snapshot_mark(results))  # read again, whole
    records = read_journal(journal)[0]
    gone = missing_rows(check, records) if check.ok and records else []
    how = how_changed(check, gone)
    if not records:
        if check.kind == "missing":
            return {}, []
        rows, told = read_leniently(results, region=region)
        note = f"{results.name} {how} and its journal is gone: read leniently, {told}"
        return {e.key: e for e in rows}, [note + "; the next run rewrites it"]
    state = {e.key: e for e in records}
    rows = kept_rows(results, state, region)
    state.update((e.key, e) for e in rows)
    note = (f"{results.name} {how}: shown from the journal ({len(state):,} leads); the next "
            "'dialer run' or 'dialer sync' rebuilds it and keeps your copy")  # fmt: skip
    return state, [note]


def how_changed(check: ResultsCheck, gone: list[str]) -> str:
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


def dialed_row(entry: Entry) -> bool:
    """A results row that records a request (or a recycled lead's earlier calls)."""
    return entry.status not in LOAD_TIME and (
        entry.status in DIALED or bool(entry.history) or entry.attempts > 0
    )


def kept_rows(results: Path, journaled: Mapping[str, Entry], region: str) -> list[Entry]:
    """What a rebuild from the journal keeps of a re-saved results file, read leniently when
    it can be: the load-time rows (a ``dialer sync`` does not re-derive them) and, so that
    no call is ever forgotten, any dialed lead the journal has no line for."""
    if not results.is_file():
        return []
    try:
        rows, _ = read_leniently(results, region=region)
    except LedgerError:
        return []
    return [e for e in rows if e.status in LOAD_TIME or (dialed_row(e) and e.key not in journaled)]


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
