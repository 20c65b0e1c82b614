"""The results CSV: one row per lead, as a person or a spreadsheet reads it.

Owns the file's columns, reading it back (the last row per lead wins, so a file a crash left
uncompacted still reads right), making every cell safe from spreadsheet formula injection, and
replacing the file atomically (through ``dialer.files``: private, never through a symlink).
Only the ledger calls the writers.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from dialer.errors import ConfigError, LedgerError, write_failed
from dialer.files import atomic_file, state_file
from dialer.model import Status, ledger_key

RESULT_COLUMNS = [
    "row", "crm_id", "phone", "status", "call_id", "attempts", "error", "updated_at",
    "outcome", "duration", "summary", "outcome_at", "calls", "history", "phone_column",
    "version_id", "language",
]  # fmt: skip
# API call statuses that end a call: ``dialer sync`` records them as the lead's ``outcome``.
# Any other status (queued, ringing, open, wmat) is a call still in progress.
FINAL_OUTCOMES = frozenset(
    {"closed", "no-answer", "voicemail", "busy", "failed", "recall-scheduled",
     "wrong-phone-format"}
)  # fmt: skip
# What an outcome means, defined once for the summary, ``report --by`` and ``--allocate
# adaptive``: somebody answered (talked it through, or asked to be called again); a success
# (the call ran its course: the API's ``success`` is true exactly for these).
ANSWERED_OUTCOMES = frozenset({"closed", "recall-scheduled"})
SUCCESS_OUTCOME = "closed"
# A cell starting with one of these is a formula to a spreadsheet (OWASP "CSV injection").
# The ``history`` outcome of a call found late, after the lead was dialed again.
RANG_TWICE = "rang-twice"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_E164 = re.compile(r"\+[1-9]\d{6,14}")


@dataclass(frozen=True, slots=True)
class Entry:
    """The ledger's record of one lead."""

    key: str
    row: int
    phone: str
    status: Status
    call_id: str = ""
    attempts: int = 0
    error: str = ""
    updated_at: str = ""
    sent_at: float = 0.0  # unix time of the last intent (0: unknown), for reconciliation
    crm_id: str = ""  # the CRM's id of the row (--id-column)
    # What became of the call (``dialer sync``): the API's final status, seconds, its summary,
    # and when it ended. Empty until synced.
    outcome: str = ""
    duration: str = ""
    summary: str = ""
    outcome_at: str = ""
    # Earlier attempts of a recycled lead, oldest first: "call_id outcome outcome_at" items
    # joined by "; ". The current attempt is ``call_id``/``outcome``. An item whose outcome is
    # ``rang-twice`` is a call a lost answer created after all, found once the lead had been
    # dialed again: that person's phone rang twice.
    history: str = ""
    # The leads file's phone column the number came from, when it has several
    # (``--phone-column Mobile,Phone``); "" with one.
    phone_column: str = ""
    # In doubt: when the dialer gave up on the answer (unix seconds as text; "" unknown). The
    # grace is counted from it. Kept in the journal, not a results column.
    abandoned_at: str = ""
    # Unix times (as text, space-separated) of earlier attempts that a listing showed absent:
    # a call created very late could still appear; later look-ups check for it.
    unseen: str = ""
    # The playbook version and the language the lead's last intent was sent with ("" none:
    # the API's default). A recycled attempt or a rerun keeps the version of a split.
    version_id: str = ""
    language: str = ""

    @property
    def calls(self) -> int:
        """Calls the API created for this lead: the earlier attempts plus the current one."""
        return len(self.earlier_calls()) + (1 if self.call_id else 0)

    @property
    def rang_twice(self) -> int:
        """Calls found to have rung this lead a second time (a lost answer's late call)."""
        return sum(outcome == RANG_TWICE for _, outcome, _ in self.earlier_calls())

    def unseen_times(self) -> list[float]:
        """The attempts a listing showed absent whose call could still appear, oldest first."""
        return sorted(float(t) for t in self.unseen.split())

    def earlier_calls(self) -> list[tuple[str, str, str]]:
        """``(call_id, outcome, outcome_at)`` of each earlier attempt, oldest first."""
        out = []
        for item in self.history.split(";"):
            parts = item.split()
            if parts:
                parts += [""] * (3 - len(parts))
                out.append((parts[0], parts[1], parts[2]))
        return out


def row_cells(entry: Entry) -> list[str]:
    cells = [str(entry.row), entry.crm_id, entry.phone, entry.status.value, entry.call_id,
             str(entry.attempts), entry.error, entry.updated_at, entry.outcome, entry.duration,
             entry.summary, entry.outcome_at, str(entry.calls) if entry.calls else "",
             entry.history, entry.phone_column, entry.version_id, entry.language]  # fmt: skip
    return [safe_cell(cell) for cell in cells]


def safe_cell(value: str) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula (OWASP's advice: a leading
    ``'``). A plain E.164 phone is left alone: ``+34612345678`` is a number, not a formula."""
    if value.startswith(_FORMULA_START) and not _E164.fullmatch(value):
        return "'" + value
    return value


def utc_iso(unix: float | None = None) -> str:
    """A time as the results write it: ISO 8601 in UTC to the second, with ``Z`` (now if
    ``unix`` is None)."""
    when = datetime.now(UTC) if unix is None else datetime.fromtimestamp(unix, UTC)
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_utc(text: str) -> datetime | None:
    """A time as the results hold it (``Z`` or an offset; without one, UTC), else None."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _unsafe(value: str) -> str:
    """Undo ``safe_cell`` on a free-text cell read back (the quote was ours, not the API's)."""
    return value[1:] if value.startswith("'") and value[1:].startswith(_FORMULA_START) else value


def replace_results(
    path: Path, entries: Iterable[Entry], *, durable: bool = True, keep_mode: int | None = None
) -> None:
    """Write ``entries`` as the whole results file: temp file, fsync, rename, fsync folder. The
    file keeps its mode (or ``keep_mode``); a new one is private (``dialer.files``)."""
    try:
        with atomic_file(path, "w", durable=durable, keep_mode=keep_mode, encoding="utf-8-sig",
                         newline="") as handle:  # fmt: skip
            writer = csv.writer(handle, lineterminator="\r\n")
            writer.writerow(RESULT_COLUMNS)
            writer.writerows(row_cells(e) for e in entries)
    except OSError as exc:  # the temp file is gone: ``path`` is as it was, whole
        raise write_failed(path, exc) from exc


def read_results(path: str | Path, *, start: int = 0) -> list[Entry]:
    """Read a results CSV (a missing file reads as empty); the last row per lead wins.

    ``start`` > 0 reads only the rows from that byte on (it must begin a row), with the
    columns of the file's header: the rows appended since a snapshot (``dialer.store.cache``).
    """
    path = Path(path)
    try:
        handle = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise LedgerError(f"cannot read {path}: {exc.strerror}") from exc
    entries: dict[str, Entry] = {}
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, [])
            if start > 0:
                handle.buffer.seek(start)
                reader = csv.reader(io.StringIO(handle.buffer.read().decode(), newline=""))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise LedgerError(f"cannot read {path}: {exc}") from exc
        missing = [c for c in ("row", "phone", "status") if c not in header]
        if header and missing:
            raise LedgerError(
                f"{path.name} is not a dialer results file (no column {', '.join(missing)})"
            )
        at = {name: i for i, name in enumerate(header)}  # a repeated name: the last wins
        width = len(header)
        columns = [at.get(name, width) for name in _READ_COLUMNS]
        line = 1
        for cells in reader:
            line += 1
            if not cells:
                continue  # a blank line, as DictReader skips
            cells += [""] * (width + 1 - len(cells))
            (row, crm_id, phone, status, call_id, attempts, error, updated_at, outcome,
             duration, summary, outcome_at, history, phone_column, version_id, language) = (
                cells[i] for i in columns)  # fmt: skip
            try:
                state = _STATUS[status]
                number = int(row)
                tries = int(attempts or 0)
            except (KeyError, ValueError) as exc:
                raise LedgerError(f"{path.name} row {line} cannot be read: {exc}") from exc
            key = ledger_key(number, phone, state)
            entries[key] = Entry(key, number, phone, state, call_id, tries, error, updated_at,
                                 crm_id=crm_id, outcome=outcome, duration=duration,
                                 summary=_unsafe(summary), outcome_at=outcome_at,
                                 history=history, phone_column=phone_column,
                                 version_id=version_id, language=language)  # fmt: skip
    return list(entries.values())


_READ_COLUMNS = ("row", "crm_id", "phone", "status", "call_id", "attempts", "error",
                 "updated_at", "outcome", "duration", "summary", "outcome_at",
                 "history", "phone_column", "version_id", "language")  # fmt: skip
_STATUS = {status.value: status for status in Status}


def require_results(path: str | Path) -> Path:
    """``path`` as a results file that exists (or whose journal does: the results are rebuilt
    from it), else the one line that says what to do."""
    path = Path(path)
    if not path.is_file() and not state_file(path, "journal").is_file():
        raise ConfigError(f"no results file {path}: run 'dialer run' first, or check the path")
    return path
