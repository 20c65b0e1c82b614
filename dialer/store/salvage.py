"""Whether the results CSV is still the dialer's own, and what to do when it is not.

The journal is the truth; the results CSV is its readable face. This module owns telling the
two kinds of results file apart and recovering from the second:

* ``inspect_results``: the file exactly as the dialer writes it (UTF-8 with a BOM, its header,
  ``,`` and CRLF, minimal quoting, every cell made formula-safe, a dialable lead's phone in
  E.164), and still the bytes the last close wrote (the snapshot names them). A torn last row
  (no newline at the end, or too few cells and no status: a crash or a full disk mid-append)
  is left out, as ``journal.read_journal`` leaves out a torn last line. Anything else (another
  delimiter or encoding, quotes, blank lines, rows sorted or deleted, ``+`` stripped from
  phones, ``'`` guards removed or added, unreadable rows, a wrong header) is a ``problem``.
* ``read_leniently``: only when the journal is gone too, a re-saved results file read as
  leniently as a leads file (``dialer.leads.sheets`` sniffs the delimiter and encoding; phones are
  normalised back to E.164), or one ``LedgerError`` line saying what to do.
* ``set_aside``: the user's file moved beside the results (``.bak-<time>``), never deleted.

The ledger decides when to rebuild; this module never writes the results or the journal.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import hashlib
import io
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from dialer.errors import LeadsFileError, LedgerError
from dialer.files import PRIVATE_FILE
from dialer.leads.phones import normalize
from dialer.model import LOAD_TIME, Status, ledger_key
from dialer.store.results import RESULT_COLUMNS, Entry, safe_cell
from dialer.store.state import EntryTable

_BOM = codecs.BOM_UTF8
_E164 = re.compile(r"\+[1-9]\d{6,14}")
_BLOCK = 1 << 20  # the results file is read this many bytes at a time
_LINES = re.compile(r"[^\r\n]*(?:\r\n?|\n)|[^\r\n]+")  # a line and its end, as csv reads it
_STATUS = {status.value: status for status in Status}
_REQUIRED = ("row", "phone", "status")
# Statuses only a request makes: a lead with one was (or may have been) dialed.
DIALED = frozenset({Status.CALLED, Status.FAILED, Status.IN_DOUBT, Status.DIALING})


@dataclass
class ResultsCheck:
    """What ``inspect_results`` found: the rows read, and whether the file is the dialer's own.

    The last row per lead, torn row left out: the dialed and pending leads' in ``table`` (a
    compact ``EntryTable``, each marked as not from the journal), the rows rejected at load
    time (a few) in ``loads``; ``entries`` lists both as ``Entry`` objects."""

    table: EntryTable = field(default_factory=EntryTable)
    loads: dict[str, Entry] = field(default_factory=dict)
    problem: str = ""  # why the file is not the dialer's own ("" when it is)
    kind: str = ""  # "missing", "re-saved", "damaged" (with ``problem``), else ""
    torn_at: int | None = None  # the byte offset where a torn last row starts
    unterminated: bool = False  # the last row is whole but has lost its line end

    @property
    def ok(self) -> bool:
        return not self.kind

    @property
    def entries(self) -> list[Entry]:
        """Every row kept, as ``Entry`` objects (a million of them for a million leads: the
        ledger's usual path reads ``table`` instead)."""
        table = self.table
        return [*self.loads.values(), *(table.entry(i) for i in range(len(table)))]


def inspect_results(
    path: Path, *, start: int = 0, written: tuple[int, str] | None = None
) -> ResultsCheck:
    """Check ``path`` against the dialer's own format and read its rows.

    ``start`` > 0 checks only the rows from that byte on (the snapshot vouches for the bytes
    before it). ``written`` is ``(size, sha256)`` of the file the dialer's last close left:
    a file that no longer begins with those bytes was changed by someone else.
    """
    try:
        with open(path, "rb") as handle:
            return _inspect(handle, start, written)
    except FileNotFoundError:
        return ResultsCheck(problem="is missing", kind="missing")
    except OSError as exc:
        raise LedgerError(f"cannot read {path}: {exc.strerror}") from exc


def _inspect(handle: BinaryIO, start: int, written: tuple[int, str] | None) -> ResultsCheck:
    """``inspect_results`` of an open file, read a block at a time: a million rows' text is
    never held whole (only the table it fills)."""
    size = os.fstat(handle.fileno()).st_size
    check = ResultsCheck()
    signs = []  # what another program did to the file as a whole
    header_line = handle.readline()
    if start == 0:
        if not size:
            return ResultsCheck(problem="is empty", kind="missing")
        if written is not None and not _begins_with(handle, *written):
            check.kind, check.problem = "re-saved", "rows were sorted, deleted or edited"
        if not header_line.startswith(_BOM):
            signs.append("no UTF-8 BOM")
        at = len(header_line)
    else:
        at = start
    decodes = _decodes(handle, at, size)
    try:
        header_text = header_line.removeprefix(_BOM).decode("utf-8")
    except UnicodeDecodeError:
        decodes = False
        header_text = header_line.removeprefix(_BOM).decode("utf-8", "replace")
    if not decodes:
        signs.append("not UTF-8")
    header = next(csv.reader([header_text]), [])
    missing = [c for c in _REQUIRED if c not in header]
    if missing and any(len(header_text.split(d)) > len(header) for d in ";\t"):
        signs.append(f"'{_delimiter(header_text)}' between cells")
    if signs:
        return _resaved(", ".join(signs))
    if missing:
        return _damaged(f"its header has no column {', '.join(missing)}")
    if start == 0 and header_text != _line(header):
        return _resaved("its header was re-written")
    if any(name not in RESULT_COLUMNS for name in header):
        return _damaged("its header has columns the dialer never writes")
    torn = _torn(handle, at, size)
    end, tail = size, ""
    if torn is not None:
        handle.seek(at + torn)
        if _whole_row(handle.read(), len(header), header.index("status")):
            check.unterminated = True  # a whole row, only its line end lost: kept
            tail = "\r\n"
        else:
            check.torn_at = end = at + torn
    lines: list[str] = []  # the physical lines of the row being read

    def feed() -> Iterator[str]:  # as io.StringIO(text, newline="") splits the text
        for text in _text(handle, at, end, tail):
            for match in _LINES.finditer(text):
                lines.append(match.group())
                yield lines[-1]

    reader = csv.reader(feed(), strict=True)
    width = len(header)
    columns = {name: i for i, name in enumerate(header)}
    pos, line, table, loads = 0, 1, check.table, check.loads
    try:
        cells = next(reader, None)
        while cells is not None:
            raw = "".join(lines)
            lines.clear()
            following = next(reader, None)
            line += 1
            last = following is None and check.torn_at is None
            if last and cells and len(cells) < width and not _cell(cells, columns, "status"):
                check.torn_at = at + _bytes_of(handle, at, pos)
                break  # a torn last row that happened to end its line: left out
            if not cells:
                return _resaved(f"blank lines (line {line})")
            if len(cells) != width:
                return _damaged(f"line {line} has {len(cells)} cells, not {width}")
            expected = _line(cells)
            if raw != expected:
                return _resaved(f"its quoting or line ends changed (line {line})")
            pos += len(expected)
            try:
                entry = _entry(cells, columns)
            except (KeyError, ValueError):
                return _damaged(f"line {line} cannot be read")
            if not _GUARDED.isdisjoint([c[:1] for c in cells]) and any(
                safe_cell(c) != c for c in cells
            ):
                return _resaved(f"a formula guard (') was removed (line {line})")
            if entry.status in LOAD_TIME:
                loads[entry.key] = entry
            else:
                if not _E164.fullmatch(entry.phone):
                    return _resaved(f"the phone on line {line} is not in E.164 ({entry.phone!r})")
                if not table.put(entry, False):  # the key is E.164: only a new Entry field
                    raise TypeError("EntryTable does not know the fields of Entry")
            cells = following
    except csv.Error as exc:
        return _damaged(f"it cannot be parsed: {exc}")
    return check


def missing_rows(check: ResultsCheck, journal: Iterable[Entry]) -> list[str]:
    """Keys of the leads the journal says finished (or were settled) that the results file has
    no row for: rows deleted by hand (the file is then rebuilt from the journal)."""
    have = set(check.table.keys) | set(check.loads)
    last = {entry.key: entry for entry in journal}
    return [k for k, e in last.items() if e.status in DIALED - {Status.DIALING} and k not in have]


def read_leniently(path: Path, *, region: str = "ES") -> tuple[list[Entry], str]:
    """A results file re-saved by another program, read as leniently as a leads file, when
    there is no journal to rebuild it from: the entries, and what was recovered (one line).
    Raises ``LedgerError`` (one line: which file, what to do) when it cannot be read."""
    from dialer.leads.sheets import open_sheet  # here: only a lost journal needs it

    entries: dict[str, Entry] = {}
    try:
        with open_sheet(path) as sheet:
            names = [_name(cell) for cell in sheet.header]
            if missing := [c for c in _REQUIRED if c not in names]:
                raise _unreadable(path, f"it has no column {', '.join(missing)}")
            columns = {name: i for i, name in enumerate(names)}
            rows = [(first + i, cells) for first, chunk in sheet.chunks
                    for i, cells in enumerate(chunk)]  # fmt: skip
    except LeadsFileError as exc:
        raise _unreadable(path, str(exc).removeprefix(f"{path.name}: ")) from exc
    while rows and not any(c.strip() for c in rows[-1][1]):
        rows.pop()
    for index, (number, cells) in enumerate(rows):
        cells = [_unguard(c.strip()) for c in cells]
        if not any(cells):
            continue  # a blank line
        status = _STATUS.get(_cell(cells, columns, "status").lower())
        if status is None and index == len(rows) - 1 and _torn_cells(cells, columns):
            break  # a torn last row
        try:
            if status is None:
                shown = _cell(cells, columns, "status")
                raise ValueError(f"no status the dialer knows ({shown!r})")
            entry = _entry(cells, columns, status=status)
            if status not in LOAD_TIME:
                phone = _e164(entry.phone, region)
                entry = replace(entry, key=phone, phone=phone)
        except ValueError as exc:
            raise _unreadable(path, f"row {number} cannot be read: {exc}") from exc
        entries[entry.key] = entry
    found = list(entries.values())
    counts = Counter(e.status.value for e in found)
    told = ", ".join(f"{n:,} {s}" for s, n in sorted(counts.items(), key=lambda i: -i[1]))
    return found, f"{len(found):,} leads ({told or 'none'})"


def set_aside(path: Path) -> Path | None:
    """Move the user's copy of ``path`` to ``<name>.bak-<UTC time>`` beside it (never deleted);
    None when there is no file."""
    if not path.exists():
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.bak-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.bak-{stamp}-{n}")
    try:
        os.rename(path, target)
    except OSError as exc:
        raise LedgerError(f"cannot keep {path} aside as {target.name}: {exc.strerror}") from exc
    if not target.is_symlink():  # the copy holds the leads' data: the owner's only
        with contextlib.suppress(OSError):
            os.chmod(target, PRIVATE_FILE)
    return target


# --- helpers ---------------------------------------------------------------------------------


_OUT = io.StringIO()
_WRITER = csv.writer(_OUT, lineterminator="\r\n")


def _line(cells: list[str]) -> str:
    """``cells`` as the dialer's writer puts them on a line."""
    _OUT.seek(0)
    _OUT.truncate()
    _WRITER.writerow(cells)
    return _OUT.getvalue()


def _delimiter(line: str) -> str:
    return "tab" if line.count("\t") > line.count(";") else ";"


def _torn(handle: BinaryIO, at: int, size: int) -> int | None:
    """Where a last row without its newline starts (from ``at``, where the rows start), or
    None when the rows end a line."""
    if size <= at:
        return None
    handle.seek(size - 1)
    if handle.read(1) == b"\n":
        return None
    end = size
    while end > at:  # back a block at a time to the last newline
        begin = max(at, end - _BLOCK)
        handle.seek(begin)
        found = handle.read(end - begin).rfind(b"\n")
        if found >= 0:
            return begin + found + 1 - at
        end = begin
    return 0


def _blocks(handle: BinaryIO, at: int, end: int) -> Iterator[bytes]:
    """The bytes from ``at`` to ``end``, a block at a time, each ending a line (``\\n``)
    where one can (a UTF-8 character never holds that byte: each block decodes alone)."""
    handle.seek(at)
    left, rest = end - at, b""
    while left > 0:
        block = handle.read(min(_BLOCK, left))
        if not block:
            break
        left -= len(block)
        block = rest + block
        cut = block.rfind(b"\n") + 1 if left > 0 else len(block)
        rest = block[cut:]
        if cut:
            yield block[:cut]
    if rest:
        yield rest


def _decodes(handle: BinaryIO, at: int, end: int) -> bool:
    """Whether the bytes from ``at`` to ``end`` are UTF-8 (read a block at a time)."""
    try:
        for block in _blocks(handle, at, end):
            block.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _text(handle: BinaryIO, at: int, end: int, tail: str) -> Iterator[str]:
    """The text from ``at`` to ``end`` (UTF-8: ``_decodes`` said so), a block at a time,
    and ``tail`` after it."""
    last = None
    for block in _blocks(handle, at, end):
        if last is not None:
            yield last.decode("utf-8")
        last = block
    if last is not None or tail:
        yield (last or b"").decode("utf-8") + tail  # the tail ends the last line


def _bytes_of(handle: BinaryIO, at: int, chars: int) -> int:
    """How many bytes the first ``chars`` characters from ``at`` take (the rare torn row)."""
    handle.seek(at)
    return len(handle.read(chars * 4).decode("utf-8", "ignore")[:chars].encode("utf-8"))


def _whole_row(raw: bytes, width: int, status_at: int) -> bool:
    """True when an unterminated last line is still a whole row with a status."""
    try:
        cells = next(csv.reader([raw.decode("utf-8")], strict=True), [])
    except (UnicodeDecodeError, csv.Error):
        return False
    return len(cells) == width and cells[status_at] in _STATUS


def _torn_cells(cells: list[str], columns: dict[str, int]) -> bool:
    """True for a row cut within or before its status: nothing after it, and the status empty
    or the start of one."""
    at = columns["status"]
    status = cells[at].lower() if at < len(cells) else ""
    rest = [c for i, c in enumerate(cells) if i > at and c]
    return not rest and any(known.startswith(status) for known in _STATUS)


def _begins_with(handle: BinaryIO, size: int, sha: str) -> bool:
    """Whether the file's first ``size`` bytes have the SHA-256 ``sha`` (read a block at a
    time)."""
    digest = hashlib.sha256()
    handle.seek(0)
    left = size
    while left > 0:
        block = handle.read(min(_BLOCK, left))
        if not block:
            return False
        digest.update(block)
        left -= len(block)
    return digest.hexdigest() == sha


def _resaved(why: str) -> ResultsCheck:
    return ResultsCheck(problem=why, kind="re-saved")


def _damaged(why: str) -> ResultsCheck:
    return ResultsCheck(problem=why, kind="damaged")


def _cell(cells: list[str], columns: dict[str, int], name: str) -> str:
    i = columns.get(name)
    return cells[i] if i is not None and i < len(cells) else ""


_FIELDS = ("row", "crm_id", "phone", "status", "call_id", "attempts", "error", "updated_at",
           "outcome", "duration", "summary", "outcome_at", "history", "phone_column",
           "version_id", "language")  # fmt: skip
_GUARDED = frozenset("=+-@\t\r")  # a cell starting so is written with a leading '


def _entry(cells: list[str], columns: dict[str, int], status: Status | None = None) -> Entry:
    """One row as an ``Entry``; raises KeyError or ValueError."""
    width = len(cells)
    (row, crm_id, phone, state, call_id, attempts, error, updated_at, outcome, duration, summary,
     outcome_at, history, phone_column, version_id, language) = (
        cells[i] if (i := columns.get(name, width)) < width else "" for name in _FIELDS
    )  # fmt: skip
    status = status or _STATUS[state]
    number = int(_number(row))
    key = ledger_key(number, phone, status)
    if summary.startswith("'") and summary[1:2] and safe_cell(summary[1:]) != summary[1:]:
        summary = summary[1:]  # the guard was the dialer's, not the API's
    return Entry(key, number, phone, status, call_id, int(_number(attempts or "0")), error,
                 updated_at, crm_id=crm_id, outcome=outcome, duration=duration, summary=summary,
                 outcome_at=outcome_at, history=history, phone_column=phone_column,
                 version_id=version_id, language=language)  # fmt: skip


def _number(text: str) -> str:
    """``7``, also as a spreadsheet may write it (``7.0``)."""
    return text[:-2] if text.endswith(".0") else text


def _name(cell: str) -> str:
    return cell.strip().strip("\ufeff").strip().lower()


def _unguard(cell: str) -> str:
    """A cell without a ``'`` a spreadsheet or the dialer put before a formula-like value."""
    return cell[1:] if cell.startswith("'") and cell[1:2] in ("=", "+", "-", "@") else cell


def _e164(phone: str, region: str) -> str:
    """A dialable lead's phone back in E.164 (``34612340000`` -> ``+34612340000``)."""
    text = phone.strip()
    if _E164.fullmatch(text):
        return text
    digits = re.sub(r"[\s().-]", "", text)
    readings = {normalize(text, region).e164}
    if digits.isdigit():  # the dialer wrote E.164: a spreadsheet may have dropped the '+'
        readings.add(normalize("+" + digits, region).e164)
    found = sorted(r for r in readings if r)
    if len(found) != 1:
        why = "two readings" if found else "not a number the dialer could have dialed"
        raise ValueError(f"the phone {text!r} is {why}")
    return found[0]


def _unreadable(path: Path, why: str) -> LedgerError:
    return LedgerError(
        f"{path.name} cannot be read as dialer results ({why}) and its journal is gone: restore "
        "the file from a backup; move it away only if nobody was called from it, since every "
        "lead it lists would be dialed again"
    )
