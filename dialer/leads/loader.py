"""The leads file: mapping its columns and turning each row into a ``Lead``; the do-not-call list.

This module owns the column mapping (the phone columns, detected or named; the country column,
detected by name (``_COUNTRY_NAMES``) or named; the CRM id column; custom params renamed, chosen
or left out; required params) and each row's load-time status.
Reading files (formats, encodings, delimiters, workbooks) belongs to ``dialer.leads.sheets``.

Columns. A repeated header is made distinct: its copies are ``Phone``, ``Phone (2)``, ... (a
warning names them); those are the names every flag takes and the params they are sent as. A
flag names a column by its header (exactly, else in any case), else by its spreadsheet letter
(``C``, ``AB``: capitals only) or position (``#3``), both counted as the spreadsheet does; a
header always wins, so a column named "C" is never taken for the third one.

The phone column. A header names a phone by its words (camelCase, digits and punctuation split:
``MobilePhone``, ``Phone 1 - Value``, ``Business Phone 2``, ``Teléfono móvil``, ``Handy``,
``telemóvel``...), never a fax, pager, toll-free line, extension, label (``Phone 1 - Type``) or
somebody else's phone (assistant, mother, spouse, emergency contact, ship-to...). Each is a
*mobile* (mobile, cell, móvil, Handy...), the *primary* phone (a plain ``Phone``, ``Phone 1``,
``Phone Number``, ``Primary Phone``, ``Teléfono``) or *another* (``Home Phone``, ``Phone 2``,
``Billing Phone``...); "Number" alone counts only when no header names a phone. With several,
the first 10,000 rows tell which hold numbers (cells of 7 to 15 digits, whatever their country):

* one holds numbers: it is the phone column;
* otherwise, among those holding numbers (or all, when none does), at most one mobile and at
  most one primary, and one of them at least: the mobile, then the primary where the mobile is
  empty or invalid; the others are not dialed, and a warning says which were chosen and why;
* otherwise the load stops and asks for ``--phone-column``, listing how many numbers each holds.

``--phone-column A,B`` names them (tried in that order in each row); a header with a comma in
it is matched whole first. Phone columns are never sent as params. ``--params A,B`` sends only
those columns (by column, or by the name ``--param`` gives them); ``--exclude`` still removes.

Call settings per lead. A column named after a call setting (``language``, ``voice_id``,
``voice_model``, ``version_id``, ``interrupt``; any case), or named by ``--setting-column
SETTING=COL``, gives each row's own value of it (``Lead.settings``), checked by
``dialer.campaign.check_call_setting`` (the campaign's own rules) and never sent as a param; a
blank cell leaves the campaign's. A ``playbook_id`` column is refused (``ColumnError``) unless
left out: a leads file must not redirect calls to another playbook.

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
rows of six short columns peaks at about 250 MB. Phone parsing (~30 µs a number) runs on a
process pool once a file passes 20,000 rows; chunks come back in file order and the pool runs
the very function the serial path runs, so both give the same leads.

It is pure: it reads the given files and nothing else, writes no files, never touches the
network (the pool's workers only parse phone cells), and raises only ``DialerError``
subclasses with one-line messages: ``LeadsFileError`` and ``ColumnError`` (starting with the
file's name) and ``ConfigError`` (a bad region, encoding, delimiter or param name).
"""

from __future__ import annotations

import os
import re
import shlex
import unicodedata
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import TypeVar

from dialer.campaign import LEAD_SETTINGS
from dialer.errors import ColumnError, ConfigError, LeadsFileError
from dialer.leads.leadrows import REASON_DNC, LeadRows, RowPlan
from dialer.leads.phones import (
    check_region,
    country_region,
    normalize,
    normalize_many,
    normalize_rows,
)
from dialer.leads.sheets import open_sheet
from dialer.leads.table import SHOWN_CHARS, Rows, one_line
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

# Header names of a country column, after _fold() and without punctuation, best first: a plain
# "Country" beats a mailing or home address's, which beats billing/work, which beats shipping
# and "other" ones. Only the best-ranked column is read (the first of its rank in the file); a
# row whose cell there is empty uses --default-region. A relative's ("Mum-Country") never counts.
_COUNTRY_NAMES = (
    frozenset({"country", "countrycode", "countryname", "countryregion", "countryiso",
               "isocountry", "pais", "codigopais", "pays", "codepays", "land", "landercode",
               "paese", "nazione", "nation"}),
    frozenset({"mailingcountry", "homecountry", "homecountryregion", "address1country",
               "primarycountry", "contactcountry", "addresscountry"}),
    frozenset({"billingcountry", "workcountry", "businesscountry", "businesscountryregion",
               "companycountry"}),
    frozenset({"shippingcountry", "shiptocountry", "othercountry", "othercountryregion",
               "address2country"}),
)  # fmt: skip

_CHUNK_ROWS = 10_000  # rows read at a time, and the unit of work for the process pool
_PARALLEL_MIN_ROWS = 20_000  # phones parsed in the process before a pool is worth starting


@dataclass(frozen=True)
class ColumnMapping:
    """How columns map to the call: which holds the phone and the CRM id, which params are
    renamed or left out, and which must not be empty."""

    phone_column: str | None = None  # None: detect; "A,B": several, tried in order per row
    rename: dict[str, str] = field(default_factory=dict)  # column -> custom param name
    exclude: frozenset[str] = frozenset()  # columns not sent
    id_column: str | None = None  # its cell becomes Lead.crm_id; never sent as a param
    country_column: str | None = None  # None: detect by name
    require: tuple[str, ...] = ()  # params (final name, or column header) that must have a value
    send_only: tuple[str, ...] | None = None  # columns sent as params ("A,B" too); None: all
    # call setting -> the column holding each lead's own value (--setting-column); a column
    # named after a call setting (``language``...) is taken without it
    setting_columns: dict[str, str] = field(default_factory=dict)


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
    mapping: ColumnMapping = ColumnMapping(),
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
        headers = _distinct(headers, table.first_column, warnings)
        chunks: Iterator[tuple[int, Rows]] = iter(table.chunks)
        first = next(chunks, None)  # the first chunk tells which phone columns are filled
        sample = first[1][:_SAMPLE_ROWS] if first is not None else []
        peeked: list[tuple[int, Rows] | None] = []

        def more() -> bool:
            """Whether the file goes on past ``sample`` (asked only when choosing among
            several phone columns: a second chunk held costs ~5 MB at a million rows)."""
            if not peeked:
                peeked.append(next(chunks, None) if first is not None else None)
            return peeked[0] is not None or len(sample) < (len(first[1]) if first else 0)

        plan = _plan(name, headers, mapping, warnings, sample, table.first_column, more)
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

        def prepared() -> Iterator[tuple[list[tuple[int, list[str]]], _Cells]]:
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
        with _PhoneParser(region, allow_possible, one_line(country_name)) as parser:
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
        column, header_is_data = _dnc_column(table.name, table.header, region)
        chunks: Iterable[tuple[int, Rows]] = table.chunks
        if header_is_data:
            chunks = chain([(table.header_row, [table.header])], chunks)

        def cells() -> Iterator[tuple[None, _Cells]]:
            for _, rows in chunks:
                found = [row[column].strip() for row in rows if any(c.strip() for c in row)]
                yield None, ([found], None)

        with _PhoneParser(region, allow_possible=True) as parser:
            for _, (verdicts, _sources) in parser.ordered(cells()):
                found = [verdict for verdict in verdicts if verdict[0] == "+"]
                numbers.update(found)
                skipped += len(verdicts) - len(found)
    return DncList(frozenset(numbers), skipped, path)


# --- phone parsing, in order, on a pool for large files ---------------------------------------

_T = TypeVar("_T")
# A batch of rows' cells to read: one list of cells per phone column, and the country cells.
_Cells = tuple[list[list[str]], list[str] | None]
# Per row, its E.164 number (with "x" and the extension's digits when it had one: "+1201x89")
# or the reason it has none (a reason never starts with "+"); and per row the index into the
# plan's phone columns of the cell that gave it (empty when there is one phone column).
_Verdicts = tuple[list[str], bytes]


def _verdicts(cells: _Cells, region: str, allow_possible: bool, country_column: str) -> _Verdicts:
    """The verdicts of a batch of rows (``_Verdicts``).

    The unit of work of both paths: run in this process, or on the pool (plain strings are
    cheaper to send back than ``ParsedPhone`` objects). One phone column and no country column
    take the per-cell path; otherwise each row is read by ``normalize_rows``.
    """
    phones, countries = cells
    if len(phones) == 1 and countries is None:
        parsed = normalize_many(phones[0], region, allow_possible=allow_possible)
        sources = b""
    else:
        parsed, found = normalize_rows(
            phones, countries, region, country_column=country_column,
            allow_possible=allow_possible,
        )  # fmt: skip
        sources = bytes(found) if len(phones) > 1 else b""
    verdicts = [
        (f"{p.e164}x{p.extension}" if p.extension else p.e164) if p.e164 else p.reason
        for p in parsed
    ]
    return verdicts, sources


class _PhoneParser:
    """Reads batches of rows' phone cells in order: in this process for the first
    ``_PARALLEL_MIN_ROWS``, then on a process pool (if there is more than one core). Any trouble
    with the pool falls back to this process: same function, same results."""

    def __init__(self, region: str, allow_possible: bool, country_column: str = "") -> None:
        self._args = (region, allow_possible, country_column)
        self._pool: ProcessPoolExecutor | None = None
        self._workers = _worker_count()
        self._failed = False

    def __enter__(self) -> _PhoneParser:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def ordered(self, batches: Iterable[tuple[_T, _Cells]]) -> Iterator[tuple[_T, _Verdicts]]:
        """(payload, verdicts) for each (payload, cells), in the order given."""
        in_flight: deque[tuple[_T, _Cells, Future[_Verdicts] | None]] = deque()
        seen = 0
        for payload, cells in batches:
            seen += len(cells[0][0]) if cells[0] else 0
            in_flight.append((payload, cells, self._submit(cells, seen)))
            while len(in_flight) > (2 * self._workers if self._pool is not None else 0):
                yield self._result(*in_flight.popleft())
        while in_flight:
            yield self._result(*in_flight.popleft())

    def _submit(self, cells: _Cells, seen: int) -> Future[_Verdicts] | None:
        if self._pool is None:
            if self._failed or self._workers < 2 or seen <= _PARALLEL_MIN_ROWS:
                return None
            try:
                self._pool = ProcessPoolExecutor(max_workers=self._workers)
            except (OSError, ValueError, NotImplementedError):
                self._failed = True
                return None
        try:
            return self._pool.submit(_verdicts, cells, *self._args)
        except (BrokenProcessPool, RuntimeError, OSError):
            self._give_up()
            return None

    def _result(
        self, payload: _T, cells: _Cells, future: Future[_Verdicts] | None
    ) -> tuple[_T, _Verdicts]:
        if future is not None:
            try:
                return payload, future.result()
            except (BrokenProcessPool, OSError):
                self._give_up()
        return payload, _verdicts(cells, *self._args)

    def _give_up(self) -> None:
        self._failed = True
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _worker_count() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return min(cores, 8)


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


# --- mapping --------------------------------------------------------------------------------------


def _plan(
    name: str,
    headers: list[str],
    mapping: ColumnMapping,
    warnings: list[str],
    sample: Rows = (),  # type: ignore[assignment]
    first_column: int = 0,
    more: Callable[[], bool] = lambda: False,  # the file has more rows than ``sample``
) -> RowPlan:
    phones = _phone_columns(name, headers, mapping, sample, first_column, warnings, more)
    id_index = None
    if mapping.id_column is not None:
        id_index = _column(name, headers, mapping.id_column, "--id-column", first_column)
    settings = _settings(name, headers, phones, id_index, mapping, first_column)
    own = [index for index, _ in settings]
    params = _params(name, headers, phones, id_index, mapping, warnings, first_column, own)
    required = _required(name, headers, params, mapping, first_column)
    unnamed = [index for index, header in enumerate(headers) if not header]
    sent = ([id_index] if id_index is not None else []) + [index for index, _ in params]
    sent += [index for index, _ in settings]
    country = _country_index(name, headers, mapping, first_column)
    return RowPlan(phones, id_index, params, required, unnamed, sent, country, settings)


def _settings(
    name: str,
    headers: list[str],
    phones: tuple[int, ...],
    id_index: int | None,
    mapping: ColumnMapping,
    first_column: int = 0,
) -> list[tuple[int, str]]:
    """(column, call setting) of each column giving its lead's own call setting: those
    ``--setting-column`` names, then each column named after a call setting (``language``,
    ``voice_id``...) that is not renamed, left out or already one. A column named
    ``playbook_id`` is refused: a leads file must not redirect calls to another playbook."""
    excluded = {_find(headers, column, first_column) for column in mapping.exclude}
    renamed = {_find(headers, column, first_column) for column in mapping.rename}
    found: dict[str, int] = {}
    for setting, column in mapping.setting_columns.items():
        flag = f"--setting-column {setting}={column}"
        index = _column(name, headers, column, flag, first_column)
        if index in phones or index == id_index:
            what = "a phone column" if index in phones else "the id column"
            raise ColumnError(f"{name}: column '{one_line(headers[index])}' is {what}: "
                              f"it cannot give {setting} too ({flag})")  # fmt: skip
        found[setting] = index
    for index, header in enumerate(headers):
        folded = header.strip().casefold()
        if index in phones or index == id_index or index in excluded or index in renamed:
            continue
        if folded == "playbook_id":
            raise ColumnError(
                f"{name}: column '{one_line(header)}' would choose each lead's playbook: the "
                "playbook is the campaign's (--playbook), a leads file must not redirect calls "
                f"to another one; rename the column, or leave it out with --exclude "
                f"{shlex.quote(one_line(header))}"
            )
        if folded in LEAD_SETTINGS and folded not in found and index not in found.values():
            found[folded] = index
    return sorted(((index, setting) for setting, index in found.items()))


def _fold(header: str) -> str:
    """Lower-case, accents and separators removed: "Teléfono Móvil" -> "telefonomovil"."""
    text = unicodedata.normalize("NFKD", header.strip().lower())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return re.sub(r"[\s_\-.]+", "", text)


def _listing(headers: Iterable[str], limit: int = SHOWN_CHARS) -> str:
    """The headers for a message, cut after about ``limit`` characters."""
    shown: list[str] = []
    size = 0
    for header in headers:
        if not header:
            continue
        if size >= limit:
            shown.append("...")
            break
        shown.append(one_line(header, limit - size if size else limit))
        size += len(shown[-1]) + 2
    return ", ".join(shown)


def _quoted(headers: Iterable[str], most: int = 6) -> str:
    """``'A', 'B'`` for a message; after ``most`` of them, "and N more"."""
    items = [f"'{one_line(header, 60)}'" for header in headers]
    if len(items) > most:
        items = [*items[:most], f"and {len(items) - most} more"]
    return ", ".join(items)


# --- naming a column: its header, its letter or its position -------------------------------------

_LETTERS = re.compile(r"[A-Z]{1,3}")
_POSITION = re.compile(r"#(\d{1,5})")


def letter(column: int) -> str:
    """The spreadsheet letter of a 0-based sheet column: 0 -> "A", 27 -> "AB"."""
    text = ""
    column += 1
    while column:
        column, rest = divmod(column - 1, 26)
        text = chr(ord("A") + rest) + text
    return text


def _distinct(headers: list[str], first_column: int, warnings: list[str]) -> list[str]:
    """The headers with each repeated one made distinct: "Phone", "Phone (2)", ...; a warning
    says which columns were renamed, so that every flag can name each of them."""
    taken = set(headers)
    seen: dict[str, list[int]] = {}
    names = list(headers)
    for index, header in enumerate(headers):
        if not header:
            continue
        copies = seen.setdefault(header, [])
        copies.append(index)
        if len(copies) > 1:
            n = len(copies)
            while f"{header} ({n})" in taken:
                n += 1
            names[index] = f"{header} ({n})"
            taken.add(names[index])
    for header, copies in seen.items():
        if len(copies) > 1:
            where = ", ".join(letter(first_column + i) for i in copies)
            warnings.append(
                f"{len(copies)} columns ({where}) are named '{one_line(header, 60)}': "
                f"they are {_quoted(names[i] for i in copies)} in flags and params"
            )
    return names


def _find(headers: list[str], wanted: str, first_column: int = 0) -> int | None:
    """Index of the column named ``wanted``: its header exactly (after trimming), else its
    header in any case, else a spreadsheet letter ("C", "AB": capitals only) or a position
    ("#3"), counted as the spreadsheet does. A header always wins over a letter or position."""
    target = wanted.replace("\ufeff", "").strip()
    if target in headers:
        return headers.index(target)
    folded = [h.casefold() for h in headers]
    if target.casefold() in folded:
        return folded.index(target.casefold())
    number = None
    if match := _POSITION.fullmatch(target):
        number = int(match[1])
    elif _LETTERS.fullmatch(target):
        number = 0
        for ch in target:
            number = number * 26 + ord(ch) - ord("A") + 1
    if number is not None and 0 <= number - 1 - first_column < len(headers):
        return number - 1 - first_column
    return None


def _column(name: str, headers: list[str], wanted: str, flag: str, first_column: int) -> int:
    """The column ``wanted`` names for ``flag`` (``_find``), else one ``ColumnError`` line."""
    index = _find(headers, wanted, first_column)
    if index is None:
        raise ColumnError(f"{name}: no column '{wanted}' for {flag} (columns: {_listing(headers)})")
    return index


def _columns_named(
    name: str,
    headers: list[str],
    spec: str,
    flag: str,
    first_column: int,
    aliases: dict[str, int] | None = None,
) -> list[int]:
    """The columns ``spec`` names: one column (a header with a comma in it is matched whole
    first), else a comma-separated list; ``aliases`` are further names (renamed params)."""
    aliases = aliases or {}

    def one(text: str) -> int | None:
        found = _find(headers, text, first_column)
        return aliases.get(text.strip()) if found is None else found

    pieces = spec.split(",")
    found: list[int] = []
    start = 0
    while start < len(pieces):
        if not pieces[start].strip():
            start += 1
            continue
        for end in range(len(pieces), start, -1):  # the longest run naming a column
            index = one(",".join(pieces[start:end]))
            if index is not None:
                break
        else:
            part = one_line(pieces[start].strip())
            raise ColumnError(
                f"{name}: no column '{part}' for {flag} (columns: {_listing(headers)})"
            )
        if index not in found:
            found.append(index)
        start = end
    if not found:
        raise ConfigError(f"{flag}: no column named")
    return found


# --- which columns hold the phone -------------------------------------------------------------

# Header words, after _words() (accents removed, lower case, camelCase and compounds split).
_PHONE_WORDS = frozenset(
    {
        "phone", "phones", "telephone", "telephones", "telephon", "tel", "telf", "tlf", "tfno",
        "tfn", "telefono", "telefonos", "telefone", "telefones", "telefon", "telefoon",
        "landline", "festnetz", "msisdn", "fon",
    }
)  # fmt: skip
_MOBILE_WORDS = frozenset(
    {
        "mobile", "mobil", "cell", "cellular", "celular", "cellulare", "cel", "movil", "moviles",
        "movel", "telemovel", "handy", "portable", "gsm", "whatsapp", "natel",
    }
)  # fmt: skip
_NUMBER_WORDS = frozenset(
    {"number", "numbers", "no", "num", "nr", "nro", "numero", "numeros", "nummer", "value"}
)
# Words that add nothing to a phone's name: "Phone Number", "Número de teléfono".
_FILLER_WORDS = frozenset({"de", "del", "da", "do", "di", "du", "of", "the", "contact",
                           "contacto", "contato", "kontakt", "lead", "customer", "client",
                           "cliente", "kunde"})  # fmt: skip
_PRIMARY_WORDS = frozenset({"primary", "main", "principal", "default", "preferred"})
# A header with one of these is never the number to dial: a fax or pager, a toll-free line,
# an extension, a label, a flag about the phone, or somebody else's phone.
_NOT_DIALED_WORDS = frozenset(
    {
        # fax, pager, lines that are not a person's phone
        "fax", "faxes", "telefax", "telecopie", "telecopieur", "facsimile", "pager", "beeper",
        "buscapersonas", "cercapersone", "piepser", "toll", "tollfree", "video", "telex", "tty",
        "tdd", "isdn",
        # parts of a number, labels and flags about it
        "ext", "extn", "extension", "extensions", "durchwahl", "anexo", "type", "types", "label",
        "kind", "tipo", "typ", "status", "verified", "valid", "validated", "opt", "opted",
        "optout", "optin", "consent", "dnc", "country", "code", "prefix", "prefijo",
        "indicativo", "vorwahl", "date", "count",
        # somebody else's phone
        "assistant", "assistants", "asistente", "assistente", "secretary", "secretaria", "mum",
        "mom", "mother", "mama", "madre", "mere", "mutter", "father", "dad", "padre", "pere",
        "vater", "sister", "brother", "hermana", "hermano", "sibling", "spouse", "wife",
        "husband", "partner", "esposa", "esposo", "conjuge", "parent", "parents", "guardian",
        "tutor", "emergency", "emergencia", "notfall", "urgence", "manager", "boss",
        "supervisor", "referrer", "referral", "related", "relative", "relation", "kin",
        "child", "son", "daughter", "ship", "shipping", "spedizione", "envio",
    }
)  # fmt: skip
# The other words a phone's header may hold ("Home Phone", "homephone", "Teléfono fijo"); a
# header with a word not known here names something else ("Phone Verified", "name;phone").
_QUALIFIER_WORDS = frozenset(
    {
        "home", "work", "business", "office", "other", "personal", "private", "company", "car",
        "direct", "billing", "day", "daytime", "evening", "alt", "alternate", "alternative",
        "secondary", "additional", "casa", "trabajo", "oficina", "empresa", "particular",
        "domicilio", "fijo", "domicile", "bureau", "travail", "perso", "professionnel", "pro",
        "fixe", "privat", "privado", "geschaftlich", "dienstlich", "arbeit", "buro", "lavoro",
        "ufficio", "fisso", "abitazione", "trabalho", "residencial", "comercial", "fixo",
        "pessoal",
    }
)  # fmt: skip
_VOCABULARY = (
    _PHONE_WORDS | _MOBILE_WORDS | _NUMBER_WORDS | _FILLER_WORDS | _PRIMARY_WORDS
    | _NOT_DIALED_WORDS | _QUALIFIER_WORDS
)  # fmt: skip
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=\d)")
# A cell that holds a phone-like number, whatever its country: 7 to 15 digits with phone
# punctuation, maybe an extension. Only counts which phone columns are filled.
_NUMBER_LIKE = re.compile(
    r"^\+?[\d\s().\-/]+(?:\s*(?:x|ext\.?|extension|#)\s*\d{1,6})?$", re.IGNORECASE
)
_SAMPLE_ROWS = 10_000  # rows looked at to count the numbers in each phone column


def _words(header: str) -> tuple[str, ...]:
    """A header as lower-case words without accents: camelCase, digits, punctuation and known
    compounds split ("MobilePhone 2" -> mobile, phone, 2; "telefonnummer" -> telefon, nummer)."""
    if len(header) > 80:  # no phone's name is that long (and a 5 MB "header" must stay cheap)
        return ()
    text = unicodedata.normalize("NFKD", header)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    found: list[str] = []
    for part in re.findall(r"[A-Za-z0-9]+", text):
        if part.lower() not in _VOCABULARY:  # "WhatsApp" is one word, "MobilePhone" two
            part = _CAMEL.sub(" ", part)
        for word in re.findall(r"[a-z]+|\d+", part.lower()):
            found.extend(_compound(word))
    return tuple(found)


def _compound(word: str) -> list[str]:
    """``word`` split into known words if it is a run of them ("mobilephone"), else itself."""
    if word in _VOCABULARY or len(word) < 5 or not word.isalpha():
        return [word]
    best: list[list[str] | None] = [[]] + [None] * len(word)  # best[i]: a split of word[:i]
    for end in range(2, len(word) + 1):
        for start in range(end - 2, -1, -1):
            before = best[start]
            if before is None or word[start:end] not in _VOCABULARY:
                continue
            if best[end] is None or len(before) + 1 < len(best[end] or ()):
                best[end] = [*before, word[start:end]]
    return best[-1] or [word]


@dataclass(frozen=True)
class _PhoneKind:
    """What a header says about the phone it holds."""

    rank: str  # "mobile", "primary" or "other" (Home Phone, Phone 2, Billing Phone...)
    weak: bool = False  # only "Number": used when no column is named as a phone


def _phone_kind(header: str) -> _PhoneKind | None:
    """The kind of phone a header names, or None when it names none or one never dialed."""
    words = _words(header)
    if not words or any(word in _NOT_DIALED_WORDS for word in words):
        return None
    digits = [int(word) for word in words if word.isdigit()]
    secondary = any(n > 1 for n in digits)
    rest = {w for w in words if not w.isdigit() and len(w) > 1} - _NUMBER_WORDS - _FILLER_WORDS
    if rest - _PHONE_WORDS - _MOBILE_WORDS - _PRIMARY_WORDS - _QUALIFIER_WORDS:
        return None
    if rest & _MOBILE_WORDS:
        return _PhoneKind("other" if secondary else "mobile")
    if rest & _PHONE_WORDS:
        plain = not (rest - _PHONE_WORDS - _PRIMARY_WORDS)
        return _PhoneKind("primary" if plain and not secondary else "other")
    if not rest and not digits and set(words) & _NUMBER_WORDS - {"value", "no"}:
        if "contact" in words:  # "Contact Number"
            return _PhoneKind("primary")
        if len(words) == 1:  # "Number", "Número": only when no column is named as a phone
            return _PhoneKind("primary", weak=True)
    return None


def _named_phone_columns(headers: list[str]) -> list[int]:
    """Columns whose header names a phone that may be dialed; a phone's name beats "Number"."""
    kinds = {i: _phone_kind(h) for i, h in enumerate(headers) if h}
    strong = [i for i, kind in kinds.items() if kind is not None and not kind.weak]
    return strong or [i for i, kind in kinds.items() if kind is not None]


def _country_index(
    name: str, headers: list[str], mapping: ColumnMapping, first_column: int = 0
) -> int | None:
    """The column giving each row's country: ``--country-column``, else the best-ranked header
    of ``_COUNTRY_NAMES`` (the first of its rank), else None (every row: the default region)."""
    if mapping.country_column is not None:
        return _column(name, headers, mapping.country_column, "--country-column", first_column)
    folded = [re.sub(r"[^0-9a-z]", "", _fold(header)) for header in headers]
    for names in _COUNTRY_NAMES:
        for index, key in enumerate(folded):
            if key and key in names:
                return index
    return None


def _not_dialed(headers: list[str]) -> list[int]:
    """Columns named as a phone that is never dialed (a fax, a pager, somebody else's)."""
    near = _PHONE_WORDS | _MOBILE_WORDS | {"fax", "telefax", "telecopie", "pager"}
    found = []
    for index, header in enumerate(headers):
        words = set(_words(header))
        if words & near and words & _NOT_DIALED_WORDS:
            found.append(index)
    return found


def _numbers_in(column: int, rows: Rows) -> int:
    """How many cells of ``column`` hold a phone-like number (7 to 15 digits)."""
    count = 0
    for row in rows:
        cell = row[column].strip() if column < len(row) else ""
        if cell and _NUMBER_LIKE.match(cell):
            digits = sum(ch.isdigit() for ch in cell.split("x")[0].split("X")[0].split("#")[0])
            count += 7 <= digits <= 15
    return count


def _phone_columns(
    name: str,
    headers: list[str],
    mapping: ColumnMapping,
    sample: Rows,
    first_column: int,
    warnings: list[str],
    more: Callable[[], bool] = lambda: False,
) -> tuple[int, ...]:
    """The phone columns, in the order each row tries them (see the module's docstring)."""
    if mapping.phone_column is not None:
        spec = mapping.phone_column
        return tuple(_columns_named(name, headers, spec, "--phone-column", first_column))
    found = _named_phone_columns(headers)
    if not found:
        raise ColumnError(_no_phone_column(name, headers))
    if len(found) == 1:
        return (found[0],)
    counts = {index: _numbers_in(index, sample) for index in found}
    where = f" in the first {len(sample):,} rows" if more() else ""
    filled = [index for index in found if counts[index]] or found

    def shown(columns: Iterable[int]) -> str:
        return ", ".join(f"'{one_line(headers[i], 60)}' ({counts[i]:,})" for i in columns)

    empty = [index for index in found if index not in filled]
    if len(filled) == 1:
        warnings.append(
            f"phone column '{one_line(headers[filled[0]], 60)}': the only phone column holding "
            f"numbers{where} (empty: {_quoted(headers[i] for i in empty)})"
        )
        return (filled[0],)
    ranks = {index: _phone_kind(headers[index]) for index in filled}
    mobiles = [i for i in filled if (kind := ranks[i]) is not None and kind.rank == "mobile"]
    primaries = [i for i in filled if (kind := ranks[i]) is not None and kind.rank == "primary"]
    choose = "choose with --phone-column (several, comma-separated, are tried in order)"
    if len(mobiles) > 1 or len(primaries) > 1 or not (mobiles or primaries):
        raise ColumnError(
            f"{name}: several phone columns hold numbers{where}: {shown(filled)}; {choose}"
        )
    chosen = (*mobiles, *primaries)
    if len(chosen) == 2:
        rule = (
            f"dialing {shown(mobiles)}, else {shown(primaries)} where it is empty or invalid "
            "(the mobile first, then the primary phone)"
        )
    else:
        rule = f"dialing {shown(chosen)} (the {'mobile' if mobiles else 'primary'} phone)"
    unused = [index for index in filled if index not in chosen]
    rule += f"; not dialed: {shown(unused)}" if unused else ""
    held = "several phone columns hold" if counts[chosen[0]] else "no phone column holds"
    warnings.append(f"{held} numbers{where}: {rule}; or {choose}")
    return chosen


def _no_phone_column(name: str, headers: list[str]) -> str:
    """The "no phone column found" message: the columns (with many, how many and the first
    few), and the phone-like columns never dialed (a fax, a pager, somebody else's phone)."""
    named = [header for header in headers if header]
    never = _not_dialed(headers)
    note = f"; never dialed: {_quoted(headers[i] for i in never)}" if never else ""
    if len(named) <= 12:
        columns = f"columns: {_listing(headers)}"
    else:
        columns = f"{len(named):,} columns: {_listing(headers, 60)}"
    return f"{name}: no phone column found ({columns}{note}); name it with --phone-column"


def _params(
    name: str,
    headers: list[str],
    phones: tuple[int, ...],
    id_index: int | None,
    mapping: ColumnMapping,
    warnings: list[str],
    first_column: int = 0,
    own: Collection[int] = (),
) -> list[tuple[int, str]]:
    """(column index, param name) of every column sent as a custom param, in column order:
    every named column but the phone columns, the id column and those giving a lead's own
    call settings (``own``), or only those ``send_only``
    names (``--params``), less those ``--exclude`` names."""
    renamed: dict[int, str] = {}
    for column, new in mapping.rename.items():
        index = _column(name, headers, column, f"--param {column}={new}", first_column)
        if not new.strip():
            raise ConfigError(f"--param {column}={new}: the param name is empty")
        renamed[index] = new.strip()
    excluded: set[int] = set()
    for column in sorted(mapping.exclude):
        excluded.add(_column(name, headers, column, "--exclude", first_column))
    wanted: set[int] | None = None
    if mapping.send_only is not None:
        aliases = {new: index for index, new in renamed.items()}
        wanted = set()
        for spec in mapping.send_only:
            wanted.update(_columns_named(name, headers, spec, "--params", first_column, aliases))
    for index in sorted(set(renamed) | (wanted or set())):
        if index in phones:
            flag = "--param" if index in renamed else "--params"
            warnings.append(
                f"column '{one_line(headers[index])}' is a phone column: {flag} for it is ignored"
            )
        elif index == id_index or index in own:
            flag = "--param" if index in renamed else "--params"
            what = "the id column" if index == id_index else "a call setting's column"
            warnings.append(
                f"column '{one_line(headers[index])}' is {what}: {flag} for it is ignored"
            )

    chosen: list[tuple[int, str]] = []
    owner: dict[str, int] = {}
    for index, header in enumerate(headers):
        if index in phones or index == id_index or index in own or index in excluded or not header:
            continue
        if wanted is not None and index not in wanted:
            continue
        param = renamed.get(index, header)
        if param.lower() in RESERVED:
            hint = (
                "choose another name with --param"
                if index in renamed
                else f"rename it with --param {shlex.quote(one_line(header) + '=NAME')}"
            )
            warnings.append(
                f"column '{one_line(header)}' ignored: '{param}' is a call setting; {hint}"
            )
            continue
        if param in owner:
            raise ColumnError(
                f"{name}: columns '{one_line(headers[owner[param]])}' and '{one_line(header)}' "
                f"would both send param '{one_line(param)}'; rename one with --param or leave "
                "one out with --exclude"
            )
        owner[param] = index
        chosen.append((index, param))
    return chosen


def _required(
    name: str,
    headers: list[str],
    params: list[tuple[int, str]],
    mapping: ColumnMapping,
    first_column: int = 0,
) -> list[tuple[int, str]]:
    """(column, label) of each required param: by its final param name, else by its column."""
    by_param = {param: index for index, param in params}
    by_folded = {param.casefold(): index for index, param in reversed(params)}
    labels = dict(params)
    required: list[tuple[int, str]] = []
    for wanted in mapping.require:
        key = wanted.strip()
        if not key:
            raise ConfigError("--require: the param name is empty")
        index = by_param.get(key)
        if index is None:
            index = by_folded.get(key.casefold())
        if index is None:
            index = _find(headers, key, first_column)
        if index is None:
            raise ColumnError(
                f"{name}: no param or column '{wanted}' for --require "
                f"(columns: {_listing(headers)})"
            )
        entry = (index, labels.get(index, headers[index]))
        if entry not in required:
            required.append(entry)
    return required


def _dnc_column(name: str, header: list[str], region: str) -> tuple[int, bool]:
    """(column holding the numbers, whether the first row is a number rather than a header)."""
    cells = [cell.replace("\ufeff", "").strip() for cell in header]
    named = _named_phone_columns(cells)
    if len(named) > 1:
        shown = ", ".join(cells[i] for i in named)
        raise ColumnError(f"{name}: several phone columns ({shown}) in the do-not-call list")
    if named:
        return named[0], False
    for index, cell in enumerate(cells):
        if cell and normalize(cell, region, allow_possible=True).ok:
            return index, True
    filled = [i for i, cell in enumerate(cells) if cell]
    if len(filled) == 1:
        text = "".join(cells[filled[0]].split())
        digits = sum(ch.isdigit() for ch in text)
        return filled[0], digits * 2 >= len(text)  # a mistyped number, or a title
    raise ColumnError(
        f"{name}: no phone column found in the do-not-call list (columns: {_listing(cells)})"
    )
