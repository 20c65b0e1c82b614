"""The results CSV: one row per lead, as a person or a spreadsheet reads it.

Owns the file's columns, reading it back (the last row per lead wins, so a file a crash left
uncompacted still reads right), making every cell safe from spreadsheet formula injection, and
replacing the file atomically. Only the ledger calls the writers.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dialer.errors import LedgerError
from dialer.model import LOAD_TIME, Status

RESULT_COLUMNS = [
    "row", "crm_id", "phone", "status", "call_id", "attempts", "error", "updated_at"
]  # fmt: skip
# A cell starting with one of these is a formula to a spreadsheet (OWASP "CSV injection").
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


def row_cells(entry: Entry) -> list[str]:
    cells = [str(entry.row), entry.crm_id, entry.phone, entry.status.value, entry.call_id,
             str(entry.attempts), entry.error, entry.updated_at]  # fmt: skip
    return [safe_cell(cell) for cell in cells]


def safe_cell(value: str) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula (OWASP's advice: a leading
    ``'``). A plain E.164 phone is left alone: ``+34612345678`` is a number, not a formula."""
    if value.startswith(_FORMULA_START) and not _E164.fullmatch(value):
        return "'" + value
    return value


def replace_results(path: Path, entries: Iterable[Entry], *, durable: bool = True) -> None:
    """Write ``entries`` as the whole results file: temp file, fsync, rename, fsync folder."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\r\n")
            writer.writerow(RESULT_COLUMNS)
            writer.writerows(row_cells(e) for e in entries)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
        if durable:
            _fsync_dir(path.parent)
    except OSError as exc:
        raise LedgerError(f"cannot rewrite {path}: {exc.strerror}") from exc


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_results(path: str | Path) -> list[Entry]:
    """Read a results CSV (a missing file reads as empty); the last row per lead wins."""
    path = Path(path)
    try:
        handle = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise LedgerError(f"cannot read {path}: {exc.strerror}") from exc
    entries: dict[str, Entry] = {}
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("row", "phone", "status") if c not in (reader.fieldnames or [])]
        if reader.fieldnames and missing:
            raise LedgerError(
                f"{path.name} is not a dialer results file (no column {', '.join(missing)}): "
                "choose another --output"
            )
        for line, rec in enumerate(reader, start=2):
            try:
                status = Status(rec["status"])
                row = int(rec["row"])
                attempts = int(rec.get("attempts") or 0)
            except (ValueError, TypeError) as exc:
                raise LedgerError(f"{path.name} row {line} cannot be read: {exc}") from exc
            key = f"row:{row}" if status in LOAD_TIME else rec["phone"]
            entries[key] = Entry(
                key,
                row,
                rec["phone"],
                status,
                rec.get("call_id") or "",
                attempts,
                rec.get("error") or "",
                rec.get("updated_at") or "",
                crm_id=rec.get("crm_id") or "",
            )
    return list(entries.values())
