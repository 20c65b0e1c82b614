"""Spreadsheet files as rows of text: CSV/TXT and Excel ``.xlsx``, read in chunks.

This module owns file formats and encodings; the loader owns what the columns mean. It opens a
file, finds its header row and hands the rows after it over in chunks of text cells, so a
million-row file is never held whole:

* ``.csv``/``.txt``: the text encoding is the given one, else a BOM (UTF-8, UTF-16, UTF-32),
  else UTF-8 if every byte decodes, else detected by charset-normalizer on the first 4 MB
  (Windows-1252 preferred when it reads as well, for Excel's Spanish exports). The delimiter is
  ``,`` ``;`` or tab: the given one, else sniffed from the first 16 KB. Pandas' C parser splits
  the rows of files of 8 MiB or more, Python's csv module those of smaller ones (where importing
  pandas would cost more than it saves); both split alike, a property test checks it. Cells stay
  text as written: ``NA``, ``null`` and ``08001`` are not converted.
* ``.xlsx``/``.xlsm``: the first sheet or the named one, every cell as the text a person
  would expect (``dialer.workbook``). ``.xls`` (Excel 97-2003) is refused with a message
  saying to save it as ``.xlsx``.

Every failure is a one-line ``LeadsFileError`` starting with the file's name (or a
``ConfigError`` for a bad option value). Nothing here knows what a phone or a lead is.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from dialer.errors import ConfigError, LeadsFileError

__all__ = ["DELIMITERS", "Sheet", "check_delimiter", "one_line", "open_sheet"]

# What --delimiter accepts, and what each means.
DELIMITERS = {",": ",", ";": ";", "\t": "\t", "tab": "\t", "\\t": "\t"}

_TEXT_SUFFIXES = frozenset({".csv", ".txt"})
_XLSX_SUFFIXES = frozenset({".xlsx", ".xlsm"})
_SNIFF_BYTES = 16 * 1024
_DETECT_BYTES = 4 * 1024 * 1024
_BLOCK_BYTES = 1024 * 1024
# Text files this big or bigger are split by pandas' C parser, smaller ones by Python's csv
# module: pandas splits a million rows in 0.6 s where csv takes 1.0 s, but importing pandas
# (and numpy) costs 0.3 s of CPU, more than csv's extra time below a few hundred thousand rows.
PANDAS_FROM_BYTES = 8 * 1024 * 1024
_SNIFF_CANDIDATES = ",;\t"
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# How much worse (charset-normalizer "chaos") Windows-1252 may look than the best guess and
# still be chosen: short Spanish files tie between cp1250 and cp1252, and cp1250 turns ñ into ń.
_CP1252_TOLERANCE = 0.02

Rows = list[list[str]]


@dataclass
class Sheet:
    """An open file: its header row, then the rows below it in chunks of ``(first row, rows)``.

    Row numbers are the spreadsheet's: the header of a CSV is row 1. Every row has as many
    cells as the header (CSV rows that are short are padded with empty cells).
    """

    name: str  # the file's name, to start messages with
    title: str  # the sheet's name in a workbook, "" for a text file
    encoding: str  # the text encoding, or "xlsx"
    delimiter: str  # "," ";" "\t", or "" for a workbook
    header: list[str]  # the header row's cells as read (not trimmed)
    header_row: int
    first_column: int  # 0-based column of the first cell (a sheet's data may start right of A)
    chunks: Iterator[tuple[int, Rows]]
    warnings: list[str] = field(default_factory=list)  # options that do not apply to the file


def check_delimiter(value: str | None) -> str | None:
    """``,`` ``;`` or tab for a --delimiter value ("tab" and ``\\t`` mean tab), None for none."""
    if value is None:
        return None
    found = DELIMITERS.get(value) or DELIMITERS.get(value.strip().lower())
    if found is None:
        raise ConfigError(f"unknown delimiter '{one_line(value)}' for --delimiter: use , ; or tab")
    return found


@contextmanager
def open_sheet(
    path: Path,
    *,
    encoding: str | None = None,
    delimiter: str | None = None,
    sheet: str | None = None,
    chunk_rows: int = 10_000,
) -> Iterator[Sheet]:
    """Open ``path`` (.csv, .txt, .xlsx) and yield it as a ``Sheet``; closed on leaving."""
    name = path.name
    forced = check_delimiter(delimiter)
    suffix = path.suffix.lower()
    if suffix == ".xls":
        raise LeadsFileError(
            f"{name}: .xls files (Excel 97-2003) are not supported: save it as .xlsx or CSV UTF-8"
        )
    if suffix in _TEXT_SUFFIXES:
        handle = _open(path)
        try:
            opened = _open_delimited(handle, name, encoding, forced, chunk_rows)
            if sheet is not None:
                opened.warnings.append(f"--sheet {sheet} ignored: {name} is not a workbook")
            yield opened
        finally:
            handle.close()
    elif suffix in _XLSX_SUFFIXES:
        from dialer.workbook import open_xlsx  # here: a text file never needs it

        opened = open_xlsx(path, name, sheet, chunk_rows)
        if encoding is not None:
            opened.warnings.append(
                f"--encoding {encoding} ignored: a workbook has no text encoding"
            )
        if forced is not None:
            opened.warnings.append("--delimiter ignored: a workbook has no delimiter")
        yield opened
    else:
        shown = f"'{path.suffix}'" if path.suffix else "(no extension)"
        raise LeadsFileError(f"{name}: unsupported file type {shown} (use .csv, .txt or .xlsx)")


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


def _open(path: Path) -> BinaryIO:
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


def _read(name: str, handle: BinaryIO, size: int = -1) -> bytes:
    try:
        return handle.read(size)
    except OSError as exc:
        raise LeadsFileError(f"{name}: cannot read the file ({exc.strerror or exc})") from exc


# --- delimited text -------------------------------------------------------------------------------


def _open_delimited(
    handle: BinaryIO, name: str, encoding: str | None, delimiter: str | None, chunk_rows: int
) -> Sheet:
    codec, errors = _choose_encoding(name, handle, encoding)
    handle.seek(0)
    head = _read(name, handle, _SNIFF_BYTES)
    sample = codecs.getincrementaldecoder(codec)(errors="replace").decode(head)
    if not sample.strip().strip("\ufeff") and len(head) < _SNIFF_BYTES:
        raise LeadsFileError(f"{name}: the file is empty")
    used = delimiter or _sniff_delimiter(sample)
    handle.seek(0)
    if _size(handle) < PANDAS_FROM_BYTES:
        chunks = _csv_chunks(name, handle, codec, errors, used, chunk_rows)
    else:
        chunks = _pandas_chunks(name, handle, codec, errors, used, chunk_rows)
    first_row, rows = next(chunks, (1, []))
    if not rows:
        raise LeadsFileError(f"{name}: the file is empty")
    header = rows[0]

    def body() -> Iterator[tuple[int, Rows]]:
        if len(rows) > 1:
            yield first_row + 1, rows[1:]
        yield from chunks

    return Sheet(name, "", codec, used, header, 1, 0, body())


def _size(handle: BinaryIO) -> int:
    try:
        return os.fstat(handle.fileno()).st_size
    except (OSError, AttributeError, ValueError):
        return PANDAS_FROM_BYTES  # not a plain file: the parser that streams any size


def _csv_chunks(
    name: str, handle: BinaryIO, codec: str, errors: str, delimiter: str, chunk_rows: int
) -> Iterator[tuple[int, Rows]]:
    """Python's csv module, made to split exactly as pandas' C parser does (a property test
    checks it): rows are padded to the first row's width, a row wider than it is refused, a
    blank first line reads as an empty file and a quote left open at the end is refused."""
    if csv.field_size_limit() < PANDAS_FROM_BYTES:
        # Pandas has no limit on a value; csv's default (128 Ki characters) would turn a quote
        # left open early in the file into a vaguer error. No value of a smaller file is longer.
        csv.field_size_limit(PANDAS_FROM_BYTES)
    text = io.TextIOWrapper(handle, encoding=codec, errors=errors, newline="")
    end = f"\x00dialer-end-{os.getpid()}-{id(text)}"  # a record of its own, unless a quote is open
    reader = csv.reader(_with_end_mark(text, end), delimiter=delimiter, strict=False)
    width, rows, first, number = 0, [], 1, 0
    try:
        for cells in reader:
            number += 1
            if cells == [end]:
                if number == 1:
                    raise LeadsFileError(f"{name}: the file is empty")
                break
            if cells and end in cells[-1]:  # the mark swallowed by a quote left open
                raise LeadsFileError(
                    f"{name}: a quoted value starting in row {number} is never closed"
                )
            if number == 1:
                width = len(cells)
                if not width:
                    raise LeadsFileError(f"{name}: the file is empty")
            elif len(cells) > width:
                raise LeadsFileError(
                    f"{name}: row {number} has {len(cells)} fields but the header has {width} "
                    "(an unquoted delimiter in a value?)"
                )
            elif len(cells) < width:
                cells += [""] * (width - len(cells))
            rows.append(cells)
            if len(rows) == chunk_rows:
                yield first, rows
                first, rows = first + len(rows), []
    except (csv.Error, UnicodeError, OSError) as exc:
        raise LeadsFileError(f"{name}: cannot parse the file ({one_line(exc)})") from exc
    if rows:
        yield first, rows


def _with_end_mark(lines: Iterator[str], end: str) -> Iterator[str]:
    """The file's lines, then a line holding only ``end`` (csv ends a record at the end of
    each line it is given, so a last line without a newline stays a record of its own)."""
    yield from lines
    yield end + "\n"


def _pandas_chunks(
    name: str, handle: BinaryIO, codec: str, errors: str, delimiter: str, chunk_rows: int
) -> Iterator[tuple[int, Rows]]:
    """Pandas' C parser (``dtype=object``, no NA conversion), in chunks of text rows."""
    import pandas as pd  # here, not at the top: a small file or a cached resume never pays it

    with _parse_errors(name):
        reader = pd.read_csv(
            handle,
            sep=delimiter,
            header=None,
            index_col=False,
            dtype=object,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
            encoding=codec,
            encoding_errors=errors,
            chunksize=chunk_rows,
        )
    yield from _frames(name, reader)


def _frames(name: str, reader: Iterator[Any]) -> Iterator[tuple[int, Rows]]:
    """Pandas' chunks as lists of text rows, numbered from 1; its errors as LeadsFileError."""
    row = 1
    while True:
        with _parse_errors(name):
            frame = next(reader, None)
        if frame is None:
            return
        rows = frame.to_numpy(dtype=object).tolist()
        yield row, rows
        row += len(rows)


@contextmanager
def _parse_errors(name: str) -> Iterator[None]:
    """Pandas' errors while splitting rows, as one-line LeadsFileError."""
    import pandas as pd

    try:
        yield
    except pd.errors.EmptyDataError as exc:
        raise LeadsFileError(f"{name}: the file is empty") from exc
    except pd.errors.ParserError as exc:
        raise LeadsFileError(f"{name}: {_parser_problem(str(exc))}") from exc
    except (ValueError, MemoryError, UnicodeError) as exc:
        raise LeadsFileError(f"{name}: cannot parse the file ({one_line(exc)})") from exc


def _choose_encoding(name: str, handle: BinaryIO, encoding: str | None) -> tuple[str, str]:
    """(codec, decode errors): the given encoding, a BOM, UTF-8, else a detected encoding."""
    head = _read(name, handle, 4)
    if encoding:
        try:
            codec = codecs.lookup(encoding).name
        except LookupError as exc:
            raise ConfigError(f"unknown encoding '{encoding}' for {name}") from exc
        if codec == "utf-8" and head.startswith(codecs.BOM_UTF8):
            codec = "utf-8-sig"
        bad = _first_bad_byte(name, handle, codec)
        if bad is not None:
            raise LeadsFileError(
                f"{name}: not valid {encoding} (byte {bad}): check the file's encoding"
            )
        return codec, "strict"
    for bom, codec in _BOMS:
        if head.startswith(bom):
            if _first_bad_byte(name, handle, codec) is None:
                return codec, "strict"
            break  # a BOM-like start that is not one: detect below
    if _first_bad_byte(name, handle, "utf-8") is None:
        return "utf-8", "strict"
    handle.seek(0)
    detected = _detect(_read(name, handle, _DETECT_BYTES))
    if detected is None:
        raise LeadsFileError(
            f"{name}: cannot tell the text encoding; save it as CSV UTF-8 "
            "or pass the encoding (e.g. --encoding cp1252)"
        )
    return detected, "replace"


def _first_bad_byte(name: str, handle: BinaryIO, codec: str) -> int | None:
    """Offset of the first byte that does not decode as ``codec``, None if the file does."""
    handle.seek(0)
    decoder = codecs.getincrementaldecoder(codec)()
    offset = 0
    while True:
        block = _read(name, handle, _BLOCK_BYTES)
        pending = len(decoder.getstate()[0])
        try:
            decoder.decode(block, final=not block)
        except UnicodeDecodeError as exc:
            return max(offset - pending + exc.start, 0)
        if not block:
            return None
        offset += len(block)


def _detect(data: bytes) -> str | None:
    """charset-normalizer's guess, preferring Windows-1252 when it reads the bytes as well."""
    from charset_normalizer import from_bytes  # here: only a file that is not UTF-8 needs it

    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        return None
    for match in matches:
        if "cp1252" in match.could_be_from_charset:
            if match.chaos <= best.chaos + _CP1252_TOLERANCE:
                try:
                    data.decode("cp1252")
                except UnicodeDecodeError:
                    break
                return "cp1252"
            break
    return codecs.lookup(best.encoding).name


def _sniff_delimiter(sample: str) -> str:
    """``,`` ``;`` or tab: csv.Sniffer on the sample, else the one splitting the header most."""
    cut = sample.rfind("\n")
    if 0 < cut < len(sample) - 1:
        sample = sample[: cut + 1]  # whole lines only
    try:
        found = csv.Sniffer().sniff(sample, delimiters=_SNIFF_CANDIDATES).delimiter
    except csv.Error:
        found = ""
    if found and found in _SNIFF_CANDIDATES:
        return found
    first_line = sample.lstrip("\ufeff").splitlines()[0] if sample.strip() else ""
    widths = {d: len(next(csv.reader([first_line], delimiter=d), [])) for d in _SNIFF_CANDIDATES}
    best = max(_SNIFF_CANDIDATES, key=lambda d: widths[d])
    return best if widths[best] > 1 else ","


def _parser_problem(message: str) -> str:
    """Pandas' tokenizer error as one line in spreadsheet rows (its "line N" counts records)."""
    ragged = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message)
    if ragged:
        want, row, saw = ragged.groups()
        return (
            f"row {row} has {saw} fields but the header has {want} "
            "(an unquoted delimiter in a value?)"
        )
    unclosed = re.search(r"EOF inside string starting at row (\d+)", message)
    if unclosed:
        return f"a quoted value starting in row {int(unclosed.group(1)) + 1} is never closed"
    return f"cannot parse the file ({one_line(message)})"
