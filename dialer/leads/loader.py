"""The leads file: turning each row into a ``Lead``; the do-not-call list.

This module owns reading a leads file's rows by its column mapping (``dialer.leads.columns``:
which column holds what; ``dialer.leads.phonecolumns``: which hold the phone) and each row's
load-time status. Reading files (formats, encodings, delimiters, workbooks) belongs to
``dialer.leads.sheets``; the phone cells are read on a pool (``dialer.leads.phonepool``).


A row's status, decided in this order (the first that applies wins):

1. ``invalid``: no phone cell gives a dialable number, read in the row's own country
   (``dialer.leads.phones`` has the rules; ``Lead.phone`` keeps the cell whose reason is given), or
   the row has more filled fields than the header (an unquoted delimiter in a value), or one of
   its call setting cells is not a valid value (the reason says which and why);
2. ``dnc``: the number, as E.164, is on the do-not-call list;
3. ``duplicate``: an earlier row that will be dialed (``pending``) has the same E.164 number;
4. ``missing_param``: a required param is empty;
5. ``pending``: it will be dialed, and it claims its number.

Only ``pending`` rows claim a number, so a row with a missing param does not make a later,
complete row with the same phone a duplicate: the complete one is dialed. A row after a
``pending`` one with the same phone is a ``duplicate`` even if it also misses a param (it would
be a duplicate once fixed). Numbers compare as E.164, so ``+34 612 345 678``, ``0034612345678``
and ``612345678`` are the same phone, for duplicates and for the do-not-call list alike.

Scale: a file is read in chunks of 10,000 rows and the leads are kept compactly in a
``LeadRows`` (a read-only sequence that builds each ``Lead`` when asked for): loading a million
rows of six short columns peaks at about 200 MB.

It is pure: it reads the given files and nothing else, writes no files, never touches the
network (the pool's workers only parse phone cells), and raises only ``DialerError``
subclasses with one-line messages: ``LeadsFileError`` and ``ColumnError`` (starting with the
file's name) and ``ConfigError`` (a bad region, encoding, delimiter or param name).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

from dialer.errors import LeadsFileError
from dialer.leads.columns import ColumnMapping, plan_columns
from dialer.leads.headers import distinct
from dialer.leads.leadrows import REASON_DNC, LeadRows, key_batches
from dialer.leads.phonecolumns import SAMPLE_ROWS, dnc_column
from dialer.leads.phonepool import Cells, PhoneParser
from dialer.leads.phones import check_region, country_region
from dialer.leads.sheets import open_sheet
from dialer.leads.table import Rows, one_line
from dialer.model import LOAD_TIME, RESERVED, Lead, Status

__all__ = [
    "REASON_DNC",
    "REJECTS_COLUMNS",
    "RESERVED",
    "ColumnMapping",
    "DncList",
    "LeadRows",
    "LoadResult",
    "load_dnc",
    "load_leads",
]


# The first columns of a rejects file (``dialer.reports.report.write_rejects``). A file starting
# with them is refused as a leads file: imported as a new campaign, its duplicates would be called
# again.
REJECTS_COLUMNS = ("row", "status", "reason", "to do")

_CHUNK_ROWS = 10_000  # rows read at a time, and the unit of work for the process pool


@dataclass(frozen=True)
class DncList:
    """A do-not-call list: its numbers as E.164, and how many non-empty rows gave none."""

    numbers: frozenset[str]
    skipped: int
    path: Path

    def __contains__(self, e164: object) -> bool:
        return e164 in self.numbers

    def __len__(self) -> int:
        return len(self.numbers)


@dataclass
class LoadResult:
    """Every data row of one leads file as a ``Lead``, plus what was learnt reading it."""

    path: Path
    phone_column: str  # the header as it appears in the file
    param_names: list[str]  # custom param names that will be sent, in column order
    leads: Sequence[Lead]  # every data row, in file order (a LeadRows when loaded from a file)
    encoding: str  # the text encoding, or "xlsx"
    delimiter: str  # "," ";" "\t", or "" for a workbook
    warnings: list[str] = field(default_factory=list)
    id_column: str = ""  # the CRM id column's header, "" when none
    sheet: str = ""  # the sheet read from a workbook, "" for a text file
    country_column: str = ""  # the header of the column giving each row's country, "" none
    # Rows per country read from it (ISO alpha-2; "" an empty cell: the default region;
    # "?" a cell naming no country the dialer can dial).
    countries: dict[str, int] = field(default_factory=dict)
    # The parse cache's key for this load ("" when none) and whether the cache gave it.
    cache_key: str = field(default="", compare=False, repr=False)
    from_cache: bool = field(default=False, compare=False, repr=False)
    # Every phone column, tried in this order in each row (``phone_column`` is the first).
    phone_columns: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Number of leads per status value, e.g. ``{"pending": 10, "invalid": 1, ...}``."""
        if isinstance(self.leads, LeadRows):
            return self.leads.counts()
        counts: dict[str, int] = {}
        for lead in self.leads:
            counts[lead.status.value] = counts.get(lead.status.value, 0) + 1
        return counts

    def pending_keys(self) -> Iterator[tuple[int, str]]:
        """``(index, ledger key)`` of each dialable lead, in order; no ``Lead`` is built for a
        ``LeadRows`` (a big resume judges a million leads by their keys)."""
        if isinstance(self.leads, LeadRows):
            return self.leads.pending_keys()
        return ((i, x.key) for i, x in enumerate(self.leads) if x.status is Status.PENDING)

    def pending_batches(self, size: int) -> Iterator[tuple[list[int], Sequence[str]]]:
        """``pending_keys`` ``size`` leads at a time, as ``(indexes, keys)``; for a
        ``LeadRows`` the keys are ``PhoneKeys`` (numbers, no string built a lead)."""
        if isinstance(self.leads, LeadRows):
            yield from self.leads.pending_batches(size)
            return
        yield from key_batches(self.pending_keys(), size)

    def pending_rows(self) -> Iterator[tuple[int, str, int]]:
        """``(index, ledger key, row number)`` of each dialable lead, in order; no ``Lead`` is
        built for a ``LeadRows``."""
        if isinstance(self.leads, LeadRows):
            return self.leads.pending_rows()
        return ((i, x.key, x.row) for i, x in enumerate(self.leads) if x.status is Status.PENDING)

    def rejects(self) -> Iterator[Lead]:
        """The leads final at load time (invalid, duplicate, dnc, missing_param), in order;
        for a ``LeadRows``, only those are built."""
        leads = self.leads
        if isinstance(leads, LeadRows):
            return (leads[i] for i in leads.indices(LOAD_TIME))
        return (lead for lead in leads if lead.status in LOAD_TIME)


def load_leads(
    path: str | Path,
    mapping: ColumnMapping = ColumnMapping(),  # noqa: B008 (a frozen dataclass)
    *,
    default_region: str = "ES",
    encoding: str | None = None,
    delimiter: str | None = None,
    sheet: str | None = None,
    dnc: DncList | Collection[str] | None = None,
    allow_possible: bool = False,
    header_row: int | None = None,
) -> LoadResult:
    """Read a leads file (.csv, .txt, .xlsx) into one ``Lead`` per data row.

    ``encoding`` and ``delimiter`` (``,`` ``;`` ``tab``) override detection for text files;
    ``sheet`` names a workbook's sheet (default: the first); ``header_row`` the header's row
    (default: found, ``dialer.leads.sheets``). ``dnc`` holds E.164 numbers never to call
    (``load_dnc``). ``allow_possible`` accepts numbers of a possible length that phonenumbers
    does not know as valid. A row with more filled fields than the header is ``invalid``.
    """
    path = Path(path)
    name = path.name
    region = check_region(default_region)
    blocked = dnc.numbers if isinstance(dnc, DncList) else dnc
    if blocked is not None and not isinstance(blocked, set | frozenset):
        blocked = frozenset(blocked)
    with open_sheet(
        path, encoding=encoding, delimiter=delimiter, sheet=sheet, chunk_rows=_CHUNK_ROWS,
        header_row=header_row, keep_wide=True,
    ) as table:  # fmt: skip
        headers = [cell.replace("\ufeff", "").strip() for cell in table.header]
        if not any(headers):
            if all(not any(c.strip() for c in row) for _, rows in table.chunks for row in rows):
                raise LeadsFileError(f"{name}: the file is empty")
            raise LeadsFileError(f"{name}: the first row has no column names")
        if tuple(h.casefold() for h in headers[: len(REJECTS_COLUMNS)]) == REJECTS_COLUMNS:
            raise LeadsFileError(
                f"{name}: this is a rejects file written by dialer, not a leads file: fix the "
                "rows in the original leads file and rerun that file"
            )
        warnings = list(table.warnings)
        headers = distinct(headers, table.first_column, warnings)
        chunks: Iterator[tuple[int, Rows]] = iter(table.chunks)
        first = next(chunks, None)  # the first chunk tells which phone columns are filled
        sample = first[1][:SAMPLE_ROWS] if first is not None else []
        peeked: list[tuple[int, Rows] | None] = []

        def more() -> bool:
            """Whether the file goes on past ``sample`` (asked only when choosing among
            several phone columns: a second chunk held costs ~5 MB at a million rows)."""
            if not peeked:
                peeked.append(next(chunks, None) if first is not None else None)
            return peeked[0] is not None or len(sample) < (len(first[1]) if first else 0)

        plan = plan_columns(name, headers, mapping, warnings, sample, table.first_column, more)
        chunks = chain([c for c in (first, *peeked) if c is not None], chunks)
        leads = LeadRows(
            plan.param_names,
            has_id=plan.id_index is not None,
            phone_columns=[headers[i] for i in plan.phones] if len(plan.phones) > 1 else (),
            settings=[setting for _, setting in plan.settings],
        )
        blank_rows = 0
        unnamed_values: set[int] = set()
        country_cells: Counter[str] = Counter()

        def prepared() -> Iterator[tuple[list[tuple[int, list[str]]], Cells]]:
            nonlocal blank_rows
            for first_row, rows in chunks:
                kept, blank = _clean(first_row, rows, plan.unnamed, unnamed_values, table.wide)
                blank_rows += blank
                phones = [[values[i] for _, values in kept] for i in plan.phones]
                countries = None
                if plan.country is not None:
                    countries = [values[plan.country] for _, values in kept]
                    country_cells.update(countries)
                yield kept, (phones, countries)

        country_name = headers[plan.country] if plan.country is not None else ""
        with PhoneParser(region, allow_possible, one_line(country_name)) as parser:
            for kept, (verdicts, sources) in parser.ordered(prepared()):
                if table.wide:
                    _reject_wide(kept, verdicts, table.wide)
                leads.add_chunk(kept, verdicts, plan, blocked, sources)
        leads.settle()

    for index in sorted(unnamed_values):
        column = table.first_column + index + 1
        warnings.append(f"column {column} has values but no header: its values are not sent")
    if blank_rows:
        warnings.append(f"{blank_rows} empty row(s) skipped")
    countries: dict[str, int] = {}
    for cell, count in country_cells.most_common():
        code = country_region(cell, country_name)[0] if cell else ""
        code = code or ("?" if cell else "")
        countries[code] = countries.get(code, 0) + count
    param_names = list(plan.param_names)
    if leads.has_extensions and "extension" not in param_names:
        param_names.append("extension")
    return LoadResult(
        path=path,
        phone_column=headers[plan.phone],
        param_names=param_names,
        leads=leads,
        encoding=table.encoding,
        delimiter=table.delimiter,
        warnings=warnings,
        id_column=headers[plan.id_index] if plan.id_index is not None else "",
        sheet=table.title,
        phone_columns=[headers[i] for i in plan.phones],
        country_column=country_name,
        countries=countries,
    )


def load_dnc(
    path: str | Path,
    *,
    default_region: str = "ES",
    encoding: str | None = None,
    delimiter: str | None = None,
    sheet: str | None = None,
) -> DncList:
    """Read a do-not-call list (.csv, .txt, .xlsx) into E.164 numbers.

    The numbers are in the column a leads file's phone column would be found by, or, in a file
    with no header (its first row is a number, or a lone cell of mostly digits), in the first
    column holding one. Rows that give no number are counted in ``skipped``; empty rows are
    ignored. A number need only be possible, not valid: an entry that blocks nothing dialable
    costs nothing, and one dropped could let a call through.
    """
    path = Path(path)
    region = check_region(default_region)
    numbers: set[str] = set()
    skipped = 0
    with open_sheet(
        path, encoding=encoding, delimiter=delimiter, sheet=sheet, chunk_rows=_CHUNK_ROWS
    ) as table:
        column, header_is_data = dnc_column(table.name, table.header, region)
        chunks: Iterable[tuple[int, Rows]] = table.chunks
        if header_is_data:
            chunks = chain([(table.header_row, [table.header])], chunks)

        def cells() -> Iterator[tuple[None, Cells]]:
            for _, rows in chunks:
                found = [row[column].strip() for row in rows if any(c.strip() for c in row)]
                yield None, ([found], None)

        with PhoneParser(region, allow_possible=True) as parser:
            for _, (verdicts, _sources) in parser.ordered(cells()):
                found = [verdict for verdict in verdicts if verdict[0] == "+"]
                numbers.update(found)
                skipped += len(verdicts) - len(found)
    return DncList(frozenset(numbers), skipped, path)


# --- rows ---------------------------------------------------------------------------------------


def _clean(
    first_row: int,
    rows: Rows,
    unnamed: Sequence[int],
    unnamed_values: set[int],
    wide: Mapping[int, str],
) -> tuple[list[tuple[int, list[str]]], int]:
    """(row number, trimmed cells) of each non-empty row, and how many rows were empty (a
    ``wide`` row is kept even when the cells left of its cut are empty: it is rejected)."""
    kept: list[tuple[int, list[str]]] = []
    blank = 0
    clean = _already_clean(rows)
    for offset, cells in enumerate(rows):
        values = cells if clean else [cell.replace("\r\n", "\n").strip() for cell in cells]
        if not any(values) and first_row + offset not in wide:
            blank += 1
            continue
        for index in unnamed:
            if values[index]:
                unnamed_values.add(index)
        kept.append((first_row + offset, values))
    return kept, blank


# In a chunk's cells joined with NUL around each: a cell that starts or ends with white space
# (``str.strip`` and ``\s`` agree on what that is). The pattern starts with a literal, so the
# search skips from NUL to NUL in C.
_PADDED_CELL = re.compile(r"\x00(?:(?=\s)|(?<=\s\x00))")


def _already_clean(rows: Rows) -> bool:
    """True when no cell of ``rows`` has white space around it or a CRLF in it: ``_clean``
    would change nothing, so the rows are kept as read (one search a chunk, not a new list and
    a strip per cell). A NUL inside a cell can only make this say False."""
    text = "\x00" + "\x00".join(["\x00".join(cells) for cells in rows]) + "\x00"
    return "\r\n" not in text and _PADDED_CELL.search(text) is None


def _reject_wide(
    kept: list[tuple[int, list[str]]], verdicts: list[str], wide: Mapping[int, str]
) -> None:
    """Make each row that had more filled fields than the header invalid, with the reason
    (``Sheet.wide``), whatever its phone cell held: its cells past the cut are lost."""
    for index, (row, _) in enumerate(kept):
        reason = wide.get(row)
        if reason is not None:
            verdicts[index] = reason
