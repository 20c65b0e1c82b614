"""Excel workbooks (``.xlsx``/``.xlsm``) as rows of text, for ``dialer.leads.sheets``.

The first sheet or the named one, read with python-calamine. Every cell becomes the text a
person would expect: text as is; a whole number as its digits (``34612345678``, never
``34612345678.0``: exact up to 15 digits, which covers every E.164 number); other numbers in
Python's shortest form (``0.5``, ``1.2345678901234567e+18``: the phone rules reject both); a
number formatted as scientific in the workbook (``0.00E+00``, what Excel applies when it parses
``3,46123456E+10`` from a CSV: the digits are gone) as it displays, ``3.46E+10``; dates as ISO
text (``2024-03-05``, ``2024-03-05T10:30:00``); booleans as ``TRUE``/``FALSE``; error values
and formulas without a cached value as empty. Rows keep the sheet's own numbers; the header
is found as in a text file (title and blank rows above it skipped), or named by its row.
Every failure is a one-line ``LeadsFileError`` starting with the file's name.

A workbook is a zip: before anything unpacks it, the members' declared sizes are checked (at
most ``MAX_UNPACKED`` in all, none unpacking to more than ``MAX_RATIO`` times its packed size:
a zip bomb is refused) and each member is unpacked once, counting, to prove it holds no more
than it declares; every read after that is capped at the declared size.
"""

from __future__ import annotations

import datetime as dt
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from itertools import chain
from operator import itemgetter
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from xml.etree import ElementTree

from dialer.errors import LeadsFileError
from dialer.leads.table import Rows, Sheet, locate_header, one_line, open_input, read_input

__all__ = ["open_xlsx"]

_BLOCK_BYTES = 1024 * 1024  # of a sheet's XML, scanned for scientific-format cells
MAX_UNPACKED = 1 << 30  # bytes: all members of a workbook, unpacked (Excel's largest sheets fit)
MAX_RATIO = 200  # unpacked / packed size of a member over _RATIO_FROM bytes (XML: about 10)
_RATIO_FROM = 1 << 20
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # a zip member's local header (APPNOTE 4.3.7)

_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # Excel 97-2003 (and password-protected .xlsx)
# Built-in number formats that show a number in scientific notation (ECMA-376 18.8.30).
_SCIENTIFIC_FORMAT_IDS = frozenset({11, 48})
_CELL_TAG = re.compile(rb"<c\s([^>]*)>")
_ATTRIBUTE = re.compile(rb'\b(r|s)="([^"]*)"')
_REFERENCE = re.compile(r"([A-Z]+)(\d+)")
_DECIMALS = re.compile(r"\.(0+)")
_NS_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_NS_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_NS_PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"


def open_xlsx(
    path: Path, name: str, sheet: str | None, chunk_rows: int, *, header_row: int | None = None
) -> Sheet:
    """The sheet ``sheet`` (default: the first) of workbook ``path`` as a ``Sheet``; its header
    found as in a text file (``dialer.leads.table.locate_header``), or on row ``header_row``."""
    with open_input(path) as handle:
        magic = read_input(name, handle, 4)
    if magic == _OLE_MAGIC:
        raise LeadsFileError(
            f"{name}: not an .xlsx workbook (an Excel 97-2003 file, or password-protected): "
            "save it as .xlsx without a password"
        )
    if magic != _ZIP_MAGIC:
        raise LeadsFileError(f"{name}: not an .xlsx workbook (is it a CSV renamed .xlsx?)")
    _check_package(path, name)  # before python-calamine unpacks anything
    from python_calamine import CalamineError, CalamineWorkbook, PasswordError  # workbooks only

    try:
        with CalamineWorkbook.from_path(str(path)) as workbook:
            title = _sheet_title(name, workbook.sheet_names, sheet)
            data = workbook.get_sheet_by_name(title)  # the sheet's cells, held apart from the file
    except PasswordError as exc:
        raise LeadsFileError(f"{name}: the workbook is password-protected") from exc
    except CalamineError as exc:
        raise LeadsFileError(f"{name}: not a readable .xlsx workbook ({one_line(exc)})") from exc
    if data.start is None:
        raise LeadsFileError(f"{name}: sheet '{title}' is empty")
    first_column = data.start[1]
    scientific = _scientific_cells(path, name, title, first_column)
    rows = _workbook_rows(data.iter_rows(), scientific)
    top, at, warnings = locate_header(
        name, rows, itemgetter(1), itemgetter(0), header_row, f"sheet '{title}' is empty"
    )
    number, header = top[at]
    chunks = _batched(chain(top[at + 1 :], rows), chunk_rows)
    return Sheet(name, title, "xlsx", "", header, number, first_column, chunks, warnings)


def _check_package(path: Path, name: str) -> None:
    """Refuse a workbook that would unpack to far more than it is (a zip bomb), by its
    declared sizes and then by unpacking each member once with a cap on the bytes produced."""
    try:
        with zipfile.ZipFile(path) as package:
            members = package.infolist()
            declared = sum(member.file_size for member in members)
            if declared > MAX_UNPACKED:
                raise _too_big(name, f"{declared:,} bytes unpacked")
            for member in members:
                size, packed = member.file_size, max(member.compress_size, 1)
                if size > _RATIO_FROM and size > MAX_RATIO * packed:
                    raise _too_big(name, f"{member.filename} unpacks {size // packed:,} times over")
                if _unpacked_size(package, member, size) > size:
                    raise _too_big(name, f"{member.filename} holds more than it declares")
    except LeadsFileError:
        raise
    except Exception as exc:  # zipfile and zlib raise many kinds on a damaged package
        raise LeadsFileError(f"{name}: not a readable .xlsx workbook ({one_line(exc)})") from exc


def _too_big(name: str, why: str) -> LeadsFileError:
    return LeadsFileError(
        f"{name}: refused: the workbook would unpack to far more than its size ({why}); "
        "open it in Excel and save it again, or save the sheet as CSV"
    )


def _unpacked_size(package: zipfile.ZipFile, member: zipfile.ZipInfo, cap: int) -> int:
    """The bytes ``member`` unpacks to, counted up to ``cap`` + 1 (never more is produced)."""
    if member.compress_type == zipfile.ZIP_STORED:
        return member.compress_size
    if member.compress_type != zipfile.ZIP_DEFLATED:
        raise ValueError(f"{member.filename}: compression method {member.compress_type}")
    handle = package.fp
    if handle is None:
        raise ValueError("the package is closed")
    handle.seek(member.header_offset)
    header = _LOCAL_HEADER.unpack(handle.read(_LOCAL_HEADER.size))
    if header[0] != b"PK\x03\x04":
        raise ValueError(f"{member.filename}: bad local header")
    handle.seek(header[-2] + header[-1], 1)  # past the name and the extra field
    inflate = zlib.decompressobj(-zlib.MAX_WBITS)
    left, produced = member.compress_size, 0
    while left > 0 and not inflate.eof:
        data = handle.read(min(left, 1 << 16))
        if not data:
            break
        left -= len(data)
        while data and produced <= cap:
            produced += len(inflate.decompress(data, cap + 1 - produced))
            data = inflate.unconsumed_tail
        if produced > cap:
            return produced
    return produced + len(inflate.flush())  # what the last input still held


def _sheet_title(name: str, titles: list[str], wanted: str | None) -> str:
    if not titles:
        raise LeadsFileError(f"{name}: the workbook has no sheets")
    if wanted is None:
        return titles[0]
    if wanted in titles:
        return wanted
    folded = [title.strip().casefold() for title in titles]
    if wanted.strip().casefold() in folded:
        return titles[folded.index(wanted.strip().casefold())]
    raise LeadsFileError(f"{name}: no sheet '{wanted}' (sheets: {', '.join(titles)})")


def _workbook_rows(
    source: Iterator[list[object]], scientific: dict[int, dict[int, int]]
) -> Iterator[tuple[int, list[str]]]:
    """(sheet row number, cells as text) for every row; python-calamine starts at row 1."""
    for index, values in enumerate(source):
        cells = [value if value.__class__ is str else _cell_text(value) for value in values]
        for column, decimals in scientific.get(index, {}).items():
            value = values[column] if column < len(values) else None
            if isinstance(value, float | int) and not isinstance(value, bool):
                cells[column] = f"{value:.{decimals}E}"
        yield index + 1, cells


def _batched(rows: Iterator[tuple[int, list[str]]], size: int) -> Iterator[tuple[int, Rows]]:
    chunk: Rows = []
    first = 0
    for number, cells in rows:
        if not chunk:
            first = number
        chunk.append(cells)
        if len(chunk) >= size:
            yield first, chunk
            chunk = []
    if chunk:
        yield first, chunk


def _cell_text(value: object) -> str:
    """A workbook cell's value as text (see the module docstring for the rules)."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        seconds = int(value.total_seconds())
        sign = "-" if seconds < 0 else ""
        hours, rest = divmod(abs(seconds), 3600)
        return f"{sign}{hours}:{rest // 60:02d}:{rest % 60:02d}"
    return "" if value is None else str(value)


def _scientific_cells(
    path: Path, name: str, title: str, first_column: int
) -> dict[int, dict[int, int]]:
    """Cells of sheet ``title`` whose number format is scientific: row -> column -> decimals.

    Rows are 0-based sheet rows, columns 0-based from ``first_column``. python-calamine gives
    values but not formats, so this reads the styles, and the sheet's XML only when some style
    is scientific. A package this cannot read is refused: guessing could dial a number whose
    digits are lost.
    """
    try:
        with zipfile.ZipFile(path) as package:
            styles = _scientific_styles(package)
            if not styles:
                return {}
            part = _sheet_part(package, title)
            with package.open(part) as stream:
                return _scan_cells(stream, styles, first_column)
    except Exception as exc:  # zipfile and ElementTree raise many kinds on a damaged package
        raise LeadsFileError(f"{name}: not a readable .xlsx workbook ({one_line(exc)})") from exc


def _scientific_styles(package: zipfile.ZipFile) -> dict[int, int]:
    """Cell style index -> decimals shown, for the styles with a scientific number format."""
    try:
        root = ElementTree.fromstring(package.read("xl/styles.xml"))
    except KeyError:
        return {}
    custom = {
        int(fmt.get("numFmtId", "-1")): fmt.get("formatCode", "")
        for fmt in root.iter(f"{_NS_MAIN}numFmt")
    }
    found: dict[int, int] = {}
    cell_xfs = root.find(f"{_NS_MAIN}cellXfs")
    for index, xf in enumerate(cell_xfs if cell_xfs is not None else []):
        format_id = int(xf.get("numFmtId", "0"))
        code = custom.get(format_id, "")
        unquoted = re.sub(r'"[^"]*"|\\.', "", code)
        if format_id in _SCIENTIFIC_FORMAT_IDS or re.search(r"[eE][+-]", unquoted):
            decimals = _DECIMALS.search(unquoted.split("E")[0].split("e")[0])
            found[index] = len(decimals.group(1)) if decimals else (1 if format_id == 48 else 2)
    return found


def _sheet_part(package: zipfile.ZipFile, title: str) -> str:
    """The zip member holding sheet ``title``, from the workbook and its relationships."""
    workbook = ElementTree.fromstring(package.read("xl/workbook.xml"))
    rel_id = next(
        (
            s.get(f"{_NS_REL}id")
            for s in workbook.iter(f"{_NS_MAIN}sheet")
            if s.get("name") == title
        ),
        None,
    )
    rels = ElementTree.fromstring(package.read("xl/_rels/workbook.xml.rels"))
    for rel in rels.iter(f"{_NS_PKG_REL}Relationship"):
        if rel.get("Id") == rel_id:
            target = rel.get("Target", "")
            if target.startswith("/"):
                return target.lstrip("/")
            return str(PurePosixPath("xl") / target)
    raise KeyError(f"no part for sheet '{title}'")


def _scan_cells(
    stream: BinaryIO, styles: dict[int, int], first_column: int
) -> dict[int, dict[int, int]]:
    """Scan a sheet's XML in blocks for ``<c r="B5" s="3">`` cells with one of ``styles``."""
    found: dict[int, dict[int, int]] = {}
    tail = b""
    while True:
        block = stream.read(_BLOCK_BYTES)
        data = tail + block
        cut = data.rfind(b"<") if block else len(data)
        for match in _CELL_TAG.finditer(data, 0, cut):
            attributes = dict(_ATTRIBUTE.findall(match.group(1)))
            style = attributes.get(b"s")
            if style is None or int(style) not in styles:
                continue
            reference = _REFERENCE.fullmatch(attributes.get(b"r", b"").decode("ascii"))
            if reference is None:
                continue
            letters, digits = reference.groups()
            column = _column_index(letters) - first_column
            if column >= 0:
                found.setdefault(int(digits) - 1, {})[column] = styles[int(style)]
        if not block:
            return found
        tail = data[cut:]


def _column_index(letters: str) -> int:
    index = 0
    for letter in letters:
        index = index * 26 + ord(letter) - ord("A") + 1
    return index - 1
