"""Spreadsheet files as rows of text: CSV/TXT and Excel ``.xlsx``, read in chunks.

This module owns file formats and encodings; the loader owns what the columns mean. It opens a
file, finds its header row and hands the rows after it over in chunks of text cells, so a
million-row file is never held whole:

* ``.csv``/``.txt``: the text encoding is the given one, else a BOM (UTF-8, UTF-16, UTF-32),
  else UTF-8 if every byte decodes, else detected by charset-normalizer on the first 4 MB
  (Windows-1252 preferred when it reads as well, for Excel's Spanish exports). The delimiter is
  ``,`` ``;`` or tab: the given one, else sniffed from the first 16 KB. Pandas' C parser splits
  the rows of files of 256 MiB or more, Python's csv module those of smaller ones (where
  importing pandas costs more time and memory than it saves); both split alike, a property
  test checks it. Cells stay text as written: ``NA``, ``null`` and ``08001`` are not converted.
* ``.xlsx``/``.xlsm``: the first sheet or the named one, every cell as the text a person
  would expect (``dialer.leads.workbook``). ``.xls`` (Excel 97-2003) is refused with a message
  saying to save it as ``.xlsx``.

The header is the first row that looks like one (``table.find_header``): among the first
``HEADER_SEARCH_ROWS`` rows with a value, the first with at least two filled cells and at least
half as many as the fullest of the rows after it, so title and blank lines above it are skipped
(and named in a warning); ``header_row`` forces it. Row numbers stay the spreadsheet's. A text
row with more fields than the header is cut to the header's width when its extra cells are
empty (a trailing delimiter on every row); when they hold values it is a *wide* row: refused as
a file error, or, with ``keep_wide``, handed over in ``Sheet.wide`` (row -> reason) for the
loader to reject alone, unless most rows are wide (then the header or the delimiter is wrong).

Every failure is a one-line ``LeadsFileError`` starting with the file's name (or a
``ConfigError`` for a bad option value). Nothing here knows what a phone or a lead is.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import chain, islice
from operator import itemgetter
from pathlib import Path
from typing import BinaryIO

from dialer.errors import ConfigError, LeadsFileError
from dialer.leads.table import (
    Rows,
    Sheet,
    locate_header,
    one_line,
    open_input,
    read_input,
)

__all__ = ["DELIMITERS", "check_delimiter", "check_header_row", "open_sheet"]

# What --delimiter accepts, and what each means.
DELIMITERS = {",": ",", ";": ";", "\t": "\t", "tab": "\t", "\\t": "\t"}

_TEXT_SUFFIXES = frozenset({".csv", ".txt"})
_XLSX_SUFFIXES = frozenset({".xlsx", ".xlsm"})
_SNIFF_BYTES = 16 * 1024
_DETECT_BYTES = 4 * 1024 * 1024
_BLOCK_BYTES = 1024 * 1024
# Text files this big or bigger are split by pandas' C parser, smaller ones by Python's csv
# module. Measured on 2026-12-02 at a million rows of six short columns (67 MB): csv 1.45-1.70 s
# of CPU, pandas 1.59-1.84 s with its import (1.20-1.33 s without), and pandas holds 45 MB more
# for the rest of the command (its modules; 55 MB more at the peak): it pays only for files of
# several million rows, where the leads themselves are beyond the memory a command aims at.
PANDAS_FROM_BYTES = 256 * 1024 * 1024
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
    header_row: int | None = None,
    keep_wide: bool = False,
) -> Iterator[Sheet]:
    """Open ``path`` (.csv, .txt, .xlsx) and yield it as a ``Sheet``; closed on leaving.

    ``header_row`` (1-based, the spreadsheet's row) forces the header's row, else it is found.
    ``keep_wide``: a text row with more filled fields than the header is cut and listed in
    ``Sheet.wide`` instead of refusing the file (unless most rows are).
    """
    name = path.name
    forced = check_delimiter(delimiter)
    check_header_row(header_row)
    suffix = path.suffix.lower()
    if suffix == ".xls":
        raise LeadsFileError(
            f"{name}: .xls files (Excel 97-2003) are not supported: save it as .xlsx or CSV UTF-8"
        )
    if suffix in _TEXT_SUFFIXES:
        handle = open_input(path)
        try:
            opened = _open_delimited(
                handle, name, encoding, forced, chunk_rows, header_row=header_row,
                keep_wide=keep_wide,
            )  # fmt: skip
            if sheet is not None:
                opened.warnings.append(f"--sheet {sheet} ignored: {name} is not a workbook")
            yield opened
        finally:
            handle.close()
    elif suffix in _XLSX_SUFFIXES:
        from dialer.leads.workbook import open_xlsx  # here: a text file never needs it

        opened = open_xlsx(path, name, sheet, chunk_rows, header_row=header_row)
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


def check_header_row(value: int | None) -> None:
    """``ConfigError`` unless ``value`` is None or a row number (1 or more)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"--header-row {value!r}: rows are numbered from 1, as in a spreadsheet")


# --- the header -----------------------------------------------------------------------------------


class _Wide:
    """Rows with more filled fields than the header: refused, or kept in ``rows`` as
    row -> reason (``keep``), unless more than half of all rows are."""

    def __init__(self, name: str, width: int, header_row: int, delimiter: str, keep: bool):
        self.name, self.width, self.header_row, self.keep = name, width, header_row, keep
        self.delimiter = "tab" if delimiter == "\t" else delimiter
        self.rows: dict[int, str] = {}
        self._reasons: dict[int, str] = {}

    def add(self, row: int, cells: Sequence[str]) -> None:
        fields = max(i for i, cell in enumerate(cells) if cell.strip()) + 1
        if not self.keep:
            raise LeadsFileError(
                f"{self.name}: row {row} has {fields} fields but the header has {self.width} "
                "(an unquoted delimiter in a value?)"
            )
        reason = self._reasons.get(fields)
        if reason is None:
            reason = self._reasons[fields] = (
                f"row has {fields} fields but the header has {self.width} (an unquoted "
                f"'{self.delimiter}' in a value?): quote the value or remove the delimiter, "
                "then rerun"
            )
        self.rows[row] = reason

    def finish(self, total: int, wide: int | None = None, which: str = "") -> None:
        """Refuse the file when more than half of its ``total`` data rows are wide (or ``wide``
        of the ``total`` rows of a part of it ``which`` names)."""
        wide = len(self.rows) if wide is None else wide
        if 2 * wide > total:
            raise LeadsFileError(
                f"{self.name}: {wide:,} of {which}{total:,} rows have more fields than the "
                f"header on row {self.header_row} ({self.width} fields): if the column names "
                "are on another row, name it with --header-row N; if the values are not "
                f"separated by '{self.delimiter}', pass --delimiter"
            )


def _open_delimited(
    handle: BinaryIO,
    name: str,
    encoding: str | None,
    delimiter: str | None,
    chunk_rows: int,
    *,
    header_row: int | None = None,
    keep_wide: bool = False,
) -> Sheet:
    codec, errors = _choose_encoding(name, handle, encoding)
    handle.seek(0)
    head = read_input(name, handle, _SNIFF_BYTES)
    sample = codecs.getincrementaldecoder(codec)(errors="replace").decode(head)
    if not sample.strip().strip("\ufeff") and len(head) < _SNIFF_BYTES:
        raise LeadsFileError(f"{name}: the file is empty")
    used = delimiter or _sniff_delimiter(sample)
    handle.seek(0)
    text = io.TextIOWrapper(handle, encoding=codec, errors=errors, newline="")
    records = _records(name, text, used)
    top, at, warnings = locate_header(
        name, enumerate(records, 1), itemgetter(1), itemgetter(0), header_row
    )
    header = top[at][1]
    width = len(header)
    wide = _Wide(name, width, at + 1, used, keep_wide)
    below = [cells for _, cells in top[at + 1 :]]
    after = next(records, None)  # None: the whole file is read
    if after is not None:
        below.append(after)
    if keep_wide:  # most of the rows read so far too wide: say so before the columns are mapped
        filled = [cells for cells in below if any(cell.strip() for cell in cells)]
        wider = sum(1 for cells in filled if any(cell.strip() for cell in cells[width:]))
        wide.finish(len(filled), wider, "" if after is None else "the first ")
    if _size(handle) < PANDAS_FROM_BYTES:
        chunks = _csv_chunks(chain(below, records), at + 2, width, chunk_rows, wide)
    else:
        text.detach()  # pandas reads the file from its start
        columns = max(len(cells) for cells in chain((c for _, c in top), below))  # all read
        chunks = _pandas_chunks(
            name, handle, codec, errors, used, chunk_rows, skip=at + 1, width=width,
            columns=columns, wide=wide,
        )  # fmt: skip

    def body() -> Iterator[tuple[int, Rows]]:
        total = 0
        for first, rows in chunks:
            total += len(rows)
            yield first, rows
        wide.finish(total)

    return Sheet(name, "", codec, used, header, at + 1, 0, body(), warnings, wide.rows)


def _size(handle: BinaryIO) -> int:
    try:
        return os.fstat(handle.fileno()).st_size
    except (OSError, AttributeError, ValueError):
        return PANDAS_FROM_BYTES  # not a plain file: the parser that streams any size


def _records(name: str, text: io.TextIOWrapper, delimiter: str) -> Iterator[list[str]]:
    """Every record of a text file as its fields (Python's csv module), one per spreadsheet row.

    Made to split exactly as pandas' C parser does (a property test checks it); a quote left
    open at the end is refused.
    """
    if csv.field_size_limit() < PANDAS_FROM_BYTES:
        # Pandas has no limit on a value; csv's default (128 Ki characters) would turn a quote
        # left open early in the file into a vaguer error. No value of a smaller file is longer.
        csv.field_size_limit(PANDAS_FROM_BYTES)
    end = f"\x00dialer-end-{os.getpid()}-{id(text)}"  # a record of its own, unless a quote is open
    reader = csv.reader(_with_end_mark(text, end), delimiter=delimiter, strict=False)
    number = 0
    try:
        for cells in reader:
            number += 1
            if cells == [end]:
                return
            if cells and end in cells[-1]:  # the mark swallowed by a quote left open
                raise LeadsFileError(
                    f"{name}: a quoted value starting in row {number} is never closed"
                )
            yield cells
    except (csv.Error, UnicodeError, OSError) as exc:
        raise LeadsFileError(f"{name}: cannot parse the file ({one_line(exc)})") from exc


def _csv_chunks(
    rows: Iterator[list[str]], first: int, width: int, chunk_rows: int, wide: _Wide
) -> Iterator[tuple[int, Rows]]:
    """The data rows from spreadsheet row ``first`` on, each made ``width`` cells wide: a short
    row padded with empty cells, a longer one cut (and given to ``wide`` when a cut cell holds
    a value), in chunks of ``chunk_rows``."""
    chunk: Rows = []
    for cells in rows:
        size = len(cells)
        if size != width:
            if size < width:
                cells += [""] * (width - size)
            else:
                if "".join(cells[width:]).strip():  # (faster than any(): a trailing delimiter)
                    wide.add(first + len(chunk), cells)
                del cells[width:]
        chunk.append(cells)
        if len(chunk) == chunk_rows:
            yield first, chunk
            first, chunk = first + len(chunk), []
    if chunk:
        yield first, chunk


def _with_end_mark(lines: Iterator[str], end: str) -> Iterator[str]:
    """The file's lines, then a line holding only ``end`` (csv ends a record at the end of
    each line it is given, so a last line without a newline stays a record of its own)."""
    for line in lines:  # noqa: UP028 (yield from would close the file with this generator)
        yield line
    yield end + "\n"


def _pandas_chunks(
    name: str,
    handle: BinaryIO,
    codec: str,
    errors: str,
    delimiter: str,
    chunk_rows: int,
    *,
    skip: int,
    width: int,
    columns: int,
    wide: _Wide,
) -> Iterator[tuple[int, Rows]]:
    """The data rows after the first ``skip`` records, split by pandas' C parser (``dtype=object``,
    no NA conversion) ``columns`` wide, then cut to ``width`` as ``_csv_chunks`` does. The
    file is read from its start (pandas' ``skiprows`` loses a last record after a lone CR).

    A record the C parser refuses (wider than ``columns``, a quote left open) hands the rest of
    the file, from the chunk it is in, over to the csv module: the same rows, or the same error.
    """
    import pandas as pd  # here, not at the top: a small file or a cached resume never pays it

    handle.seek(0)
    with _parse_errors(name):
        reader = pd.read_csv(
            handle,
            sep=delimiter,
            header=None,
            names=range(columns),
            index_col=False,
            dtype=object,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
            encoding=codec,
            encoding_errors=errors,
            chunksize=chunk_rows,
        )
    row = 1
    while True:
        try:
            with _parse_errors(name):
                frame = next(reader, None)
        except _Refused:
            reader.close()
            handle.seek(0)
            text = io.TextIOWrapper(handle, encoding=codec, errors=errors, newline="")
            records = _records(name, text, delimiter)
            next(islice(records, row - 1, row - 1), None)  # past the records already read
            yield from _csv_chunks(records, row, width, chunk_rows, wide)
            return
        if frame is None:
            return
        if row <= skip:  # the header and the rows above it
            drop = min(skip + 1 - row, len(frame))
            frame = frame.iloc[drop:]
            row += drop
        if not len(frame):
            continue
        if columns > width:
            full = frame.to_numpy(dtype=object)
            cut = full[:, width:]
            for index in (cut != "").any(axis=1).nonzero()[0].tolist():  # then blanks aside
                if "".join(cut[index]).strip():
                    wide.add(row + index, full[index].tolist())
            rows = full[:, :width].tolist()
        else:
            rows = frame.to_numpy(dtype=object).tolist()
        yield row, rows
        row += len(rows)


class _Refused(Exception):
    """Pandas' C parser refused a record: the csv module reads the rest."""


@contextmanager
def _parse_errors(name: str) -> Iterator[None]:
    """Pandas' errors while splitting rows: ``_Refused`` for a record its C parser refuses,
    else a one-line LeadsFileError."""
    import pandas as pd

    try:
        yield
    except pd.errors.ParserError as exc:
        raise _Refused from exc
    except pd.errors.EmptyDataError as exc:
        raise LeadsFileError(f"{name}: the file is empty") from exc
    except (ValueError, MemoryError, UnicodeError) as exc:
        raise LeadsFileError(f"{name}: cannot parse the file ({one_line(exc)})") from exc


def _choose_encoding(name: str, handle: BinaryIO, encoding: str | None) -> tuple[str, str]:
    """(codec, decode errors): the given encoding, a BOM, UTF-8, else a detected encoding."""
    head = read_input(name, handle, 4)
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
    detected = _detect(read_input(name, handle, _DETECT_BYTES))
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
        block = read_input(name, handle, _BLOCK_BYTES)
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
