"""The journal's line format, and reading a journal back.

A journal line is one lead's whole state: ``<crc32 hex> <json>``, the JSON's keys short, the
call's outcome fields written only when set. Reading keeps every whole, valid line; a last line
torn by a crash is left out (the ledger cuts it off); damage anywhere before it raises
``LedgerError``, since guessing could ring someone twice. The ledger owns writing the file;
this module owns what a line holds.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dialer.errors import LedgerError
from dialer.files import state_file
from dialer.model import Status
from dialer.store.results import Entry


def journal_path(results: Path) -> Path:
    return state_file(results, "journal")


_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode  # made once


def encode_line(entry: Entry) -> str:
    """The journal line for ``entry``, newline included."""
    payload = _ENCODE(to_record(entry))
    return f"{zlib.crc32(payload.encode()):08x} {payload}\n"


def read_journal(journal: Path, *, start: int = 0) -> tuple[list[Entry], int, int]:
    """The journal's records, the bytes they span and the file's size (a torn last line is
    left out). Damage before the last line raises ``LedgerError``; a missing file is empty.
    ``start`` (a line's start) reads only the records from that byte on; the sizes stay
    counted from the file's start. ``scan_journal`` does the same without the list."""
    records: list[Entry] = []
    good, size = scan_journal(journal, records.append, start=start)
    return records, good, size


def scan_journal(journal: Path, sink: Callable[[Entry], object], *, start: int = 0
                 ) -> tuple[int, int]:  # fmt: skip
    """Hand each record of the journal to ``sink``, in order, reading line by line (a
    million-line journal is never held whole); ``(good, size)`` as ``read_journal`` says.
    Raises ``LedgerError`` as it does, after handing over the records before the damage."""
    try:
        handle = open(journal, "rb")  # noqa: SIM115
    except FileNotFoundError:
        return 0, 0
    except OSError as exc:
        raise LedgerError(f"cannot read the journal {journal}: {exc.strerror}") from exc
    good = start  # bytes of the journal that hold whole, valid lines
    with handle:
        try:
            handle.seek(start)
            lines = iter(handle)
            raw = next(lines, b"")
            number = 0
            while raw.endswith(b"\n"):
                number += 1
                following = next(lines, b"")
                record = decode_line(raw[:-1])
                if record is None:
                    if not following:
                        break  # the last line, garbled by a crash mid-write: a torn tail
                    where = f"line {number}" + (f" after byte {start:,}" if start else "")
                    raise LedgerError(
                        f"the journal {journal} is damaged at {where}: the run stops so "
                        "that nobody is dialed twice; restore the file or ask for help"
                    )
                sink(record)
                good += len(raw)
                raw = following
            size = handle.seek(0, 2)
        except OSError as exc:
            raise LedgerError(f"cannot read the journal {journal}: {exc.strerror}") from exc
    return good, size


# Journal keys of the fields written only when set (most lines have none): the call's outcome,
# a recycled lead's history, an in-doubt lead's look-up times, the phone column the number
# came from (a file with several), and the version and language the call was sent with.
_OUTCOME_KEYS = {"o": "outcome", "d": "duration", "s": "summary", "oa": "outcome_at",
                 "h": "history", "ab": "abandoned_at", "u": "unseen",
                 "pc": "phone_column", "v": "version_id", "lg": "language"}  # fmt: skip


def to_record(entry: Entry) -> dict[str, Any]:
    record = {"k": entry.key, "row": entry.row, "phone": entry.phone,
              "status": entry.status.value, "call_id": entry.call_id,
              "attempts": entry.attempts, "error": entry.error, "at": entry.updated_at,
              "sent": entry.sent_at, "crm": entry.crm_id}  # fmt: skip
    for short, name in _OUTCOME_KEYS.items():
        if value := getattr(entry, name):
            record[short] = value
    return record


def decode_line(raw: bytes) -> Entry | None:
    """One journal line, or None when its checksum, JSON or fields do not hold."""
    crc, _, payload = raw.partition(b" ")
    try:
        if crc != b"%08x" % zlib.crc32(payload):  # the exact bytes written: no lenient parse
            return None
        return from_record(json.loads(payload))
    except (ValueError, TypeError, KeyError):
        return None


def from_record(r: dict[str, Any]) -> Entry:
    """The entry ``to_record`` gave; raises ValueError, TypeError or KeyError."""
    extra = {name: str(r[short]) for short, name in _OUTCOME_KEYS.items() if short in r}
    return Entry(str(r["k"]), int(r["row"]), str(r["phone"]), Status(r["status"]),
                 str(r["call_id"]), int(r["attempts"]), str(r["error"]), str(r["at"]),
                 float(r["sent"]), str(r.get("crm", "")), **extra)  # fmt: skip
