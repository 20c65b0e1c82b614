"""The shared shape of a leads file: a ``Sheet`` of text rows, how its header row is found, how
its bytes are opened and read, and how its text is quoted in a message.

``dialer.leads.sheets`` (text files) and ``dialer.leads.workbook`` (.xlsx) both build on it, so
neither imports the other's internals and there is no cycle between them. Every failure is one
``LeadsFileError`` line starting with the file's name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TypeVar

from dialer.errors import LeadsFileError

__all__ = ["HEADER_SEARCH_ROWS", "SHOWN_CHARS", "Rows", "Sheet", "find_header", "locate_header",
           "one_line", "open_input", "read_input"]  # fmt: skip

Rows = list[list[str]]

# The header is searched among this many rows with a value at the top of a file, each compared
# with the rows after it, up to _LOOK_AHEAD of them.
HEADER_SEARCH_ROWS = 20
_LOOK_AHEAD = 20


@dataclass
class Sheet:
    """An open file: its header row, then the rows below it in chunks of ``(first row, rows)``.

    Row numbers are the spreadsheet's: a CSV's first line is row 1, whichever row holds the
    header. Every row has as many cells as the header (CSV rows that are short are padded with
    empty cells, wide ones cut).
    """

    name: str  # the file's name, to start messages with
    title: str  # the sheet's name in a workbook, "" for a text file
    encoding: str  # the text encoding, or "xlsx"
    delimiter: str  # "," ";" "\t", or "" for a workbook
    header: list[str]  # the header row's cells as read (not trimmed)
    header_row: int
    first_column: int  # 0-based column of the first cell (a sheet's data may start right of A)
    chunks: Iterator[tuple[int, Rows]]
    warnings: list[str] = field(default_factory=list)  # the header's row; options that do not apply
    # With keep_wide: row -> why it was cut (more filled fields than the header), filled in as
    # the chunks are read (a row is here before its chunk is handed over).
    wide: dict[int, str] = field(default_factory=dict)


_T = TypeVar("_T")


def find_header(filled: Sequence[int]) -> int | None:
    """Which row is the header, given how many filled cells each of the top rows has.

    Among the first ``HEADER_SEARCH_ROWS`` rows with a value, the first with at least two
    filled cells and at least half as many as the fullest of the ``_LOOK_AHEAD`` rows after it
    (a title has one, or a few against many); else the first row with a value. None: no value.
    """
    seen = 0
    for index, count in enumerate(filled):
        if not count:
            continue
        seen += 1
        if seen > HEADER_SEARCH_ROWS:
            break
        after = max(filled[index + 1 : index + 1 + _LOOK_AHEAD], default=0)
        if count >= 2 and 2 * count >= after:
            return index
    return next((index for index, count in enumerate(filled) if count), None)


def locate_header(
    name: str,
    records: Iterator[_T],
    cells: Callable[[_T], list[str]],
    row: Callable[[_T], int],
    header_row: int | None,
    empty: str = "the file is empty",
) -> tuple[list[_T], int, list[str]]:
    """Read the top of a file: (the records read, the header's index among them, warnings).

    ``records`` is left just after the last record read, which may be past the header; ``cells``
    and ``row`` give a record's cells and its spreadsheet row number. ``LeadsFileError`` when the
    file has no value (``empty`` says so), or when ``header_row`` is past the end or names an
    empty row.
    """
    head: list[_T] = []
    filled: list[int] = []
    seen = 0
    for record in records:
        head.append(record)
        count = sum(1 for cell in cells(record) if cell.strip())
        filled.append(count)
        if header_row is None:
            seen += count > 0
            if seen >= HEADER_SEARCH_ROWS + _LOOK_AHEAD:
                break
        elif row(record) >= header_row + _LOOK_AHEAD:
            break
    if header_row is None:
        found = find_header(filled)
        if found is None:
            raise LeadsFileError(f"{name}: {empty}")
        above = [row(record) for record, count in zip(head[:found], filled, strict=False) if count]
        warnings = []
        if above:
            number = row(head[found])
            skipped = (
                f"row {above[0]}" if above[0] == number - 1 else f"rows {above[0]}-{number - 1}"
            )
            warnings.append(
                f"header found on row {number}: {skipped} above it skipped "
                "(name another with --header-row N)"
            )
        return head, found, warnings
    at = next((i for i, record in enumerate(head) if row(record) == header_row), None)
    if at is None:
        last = row(head[-1]) if head else 0
        raise LeadsFileError(
            f"{name}: --header-row {header_row} is past the end: the file has {last} rows"
        )
    if not filled[at]:
        raise LeadsFileError(
            f"{name}: --header-row {header_row}: row {header_row} is empty; "
            "name the row that holds the column names"
        )
    return head, at, []


SHOWN_CHARS = 200  # of a header or another file's text quoted in a message; longer is cut


def one_line(value: object, limit: int = SHOWN_CHARS) -> str:
    """``value`` as text with its white space folded to single spaces, cut to ``limit``
    characters with "..." (a 100 MB header line must not make a 100 MB message)."""
    text = str(value)
    if len(text) > 4 * limit:  # fold only what can be shown
        text = text[: 4 * limit]
        cut = True
    else:
        cut = False
    text = " ".join(text.split())
    if cut or len(text) > limit:
        return text[:limit].rstrip() + "..."
    return text


def open_input(path: Path) -> BinaryIO:
    """``path`` opened for reading bytes; every failure one ``LeadsFileError`` line."""
    name = path.name
    try:
        return path.open("rb")
    except FileNotFoundError as exc:
        raise LeadsFileError(f"{name}: file not found") from exc
    except OSError as exc:
        if isinstance(exc, IsADirectoryError) or path.is_dir():
            raise LeadsFileError(f"{name}: is a directory, not a leads file") from exc
        reason = "permission denied" if isinstance(exc, PermissionError) else exc.strerror
        raise LeadsFileError(f"{name}: cannot read the file ({reason or exc})") from exc


def read_input(name: str, handle: BinaryIO, size: int = -1) -> bytes:
    """Up to ``size`` bytes of an open input; a read error is one ``LeadsFileError`` line."""
    try:
        return handle.read(size)
    except OSError as exc:
        raise LeadsFileError(f"{name}: cannot read the file ({exc.strerror or exc})") from exc


# --- delimited text -------------------------------------------------------------------------------
