"""The leads file: mapping its columns and turning each row into a ``Lead``; the do-not-call list.

This module owns the column mapping (the phone column, detected or named; the country column,
detected by name (``_COUNTRY_NAMES``) or named; the CRM id column; custom params renamed or left
out; required params) and each row's load-time status. Reading
files (formats, encodings, delimiters, workbooks) belongs to ``dialer.sheets``.

A row's status, decided in this order (the first that applies wins):

1. ``invalid``: no phone cell gives a dialable number, read in the row's own country
   (``dialer.phones`` has the rules; ``Lead.phone`` keeps the cell whose reason is given);
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

import dataclasses
import os
import re
import unicodedata
from collections import Counter, deque
from collections.abc import Collection, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import TypeVar

from dialer.errors import ColumnError, ConfigError, LeadsFileError
from dialer.leadrows import REASON_DNC, LeadRows
from dialer.model import LOAD_TIME, Lead, Status
from dialer.phones import check_region, country_region, normalize, normalize_many, normalize_rows
from dialer.sheets import SHOWN_CHARS, Rows, one_line, open_sheet

__all__ = [
    "REASON_DNC",
    "RESERVED",
    "ColumnMapping",
    "DncList",
    "LeadRows",
    "LoadResult",
    "load_dnc",
    "load_leads",
]


# Body keys of POST /call that are call settings, not custom params.
RESERVED = frozenset(
    {"phone", "playbook_id", "version_id", "voice_id", "voice_model", "language", "interrupt"}
)

# Header names recognised as the phone column, after _fold(). Weak names are used only when no
# strong name is present, so "id, number, phone" picks "phone".
_PHONE_NAMES = frozenset(
    {
        "phone", "phonenumber", "phoneno", "phonenum", "telephone", "telephonenumber",
        "tel", "telno", "telf", "tlf", "tfno", "telefono", "numerotelefono",
        "numerodetelefono", "telefonomovil", "telefonocelular", "telefone", "telefon",
        "mobile", "mobilephone", "mobilenumber", "mobileno", "phonemobile", "movil",
        "numeromovil", "cell", "cellphone", "cellnumber", "cellular", "celular", "handy",
        "whatsapp", "whatsappnumber", "msisdn", "contactnumber", "contactphone",
    }
)  # fmt: skip
_WEAK_PHONE_NAMES = frozenset({"number", "numero"})

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

    phone_column: str | None = None  # None: detect
    rename: dict[str, str] = field(default_factory=dict)  # column -> custom param name
    exclude: frozenset[str] = frozenset()  # columns not sent
    id_column: str | None = None  # its cell becomes Lead.crm_id; never sent as a param
    country_column: str | None = None  # None: detect by name
    require: tuple[str, ...] = ()  # params (final name, or column header) that must have a value


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
) -> LoadResult:
    """Read a leads file (.csv, .txt, .xlsx) into one ``Lead`` per data row.

    ``encoding`` and ``delimiter`` (``,`` ``;`` ``tab``) override detection for text files;
    ``sheet`` names a workbook's sheet (default: the first). ``dnc`` holds E.164 numbers never
    to call (``load_dnc``). ``allow_possible`` accepts numbers of a possible length that
    phonenumbers does not know as valid.
    """
    path = Path(path)
    name = path.name
    region = check_region(default_region)
    blocked = dnc.numbers if isinstance(dnc, DncList) else dnc
    if blocked is not None and not isinstance(blocked, set | frozenset):
        blocked = frozenset(blocked)
    with open_sheet(
        path, encoding=encoding, delimiter=delimiter, sheet=sheet, chunk_rows=_CHUNK_ROWS
    ) as table:
        headers = [cell.replace("\ufeff", "").strip() for cell in table.header]
        if not any(headers):
            if all(not any(c.strip() for c in row) for _, rows in table.chunks for row in rows):
                raise LeadsFileError(f"{name}: the file is empty")
            raise LeadsFileError(f"{name}: the first row has no column names")
        warnings = list(table.warnings)
        plan = _plan(name, headers, mapping, warnings)
        leads = LeadRows(
            plan.param_names,
            has_id=plan.id_index is not None,
            phone_columns=[headers[i] for i in plan.phones] if len(plan.phones) > 1 else (),
        )
        blank_rows = 0
        unnamed_values: set[int] = set()
        country_cells: Counter[str] = Counter()

        def prepared() -> Iterator[tuple[list[tuple[int, list[str]]], _Cells]]:
            nonlocal blank_rows
            for first_row, rows in table.chunks:
                kept, blank = _clean(first_row, rows, plan.unnamed, unnamed_values)
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
                leads._add_chunk(kept, verdicts, plan, blocked, sources)
        leads._settle()

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
    first_row: int, rows: Rows, unnamed: Sequence[int], unnamed_values: set[int]
) -> tuple[list[tuple[int, list[str]]], int]:
    """(row number, trimmed cells) of each non-empty row, and how many rows were empty."""
    kept: list[tuple[int, list[str]]] = []
    blank = 0
    for offset, cells in enumerate(rows):
        values = [cell.replace("\r\n", "\n").strip() for cell in cells]
        if not any(values):
            blank += 1
            continue
        for index in unnamed:
            if values[index]:
                unnamed_values.add(index)
        kept.append((first_row + offset, values))
    return kept, blank


# --- mapping --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """Where each thing is in a row: indexes into the header."""

    phones: tuple[int, ...]  # the phone columns, tried in this order in each row
    id_index: int | None
    params: list[tuple[int, str]]  # (column, param name) sent, in column order
    required: list[tuple[int, str]]  # (column, name shown in the reason)
    unnamed: list[int]  # columns with no header
    sent: list[int]  # the columns kept with each lead: the CRM id first, then the params
    country: int | None = None  # the column naming each row's country; None: the default region

    @property
    def phone(self) -> int:
        """The first phone column (the one named in messages)."""
        return self.phones[0]

    @property
    def param_names(self) -> list[str]:
        return [param for _, param in self.params]


def _plan(name: str, headers: list[str], mapping: ColumnMapping, warnings: list[str]) -> _Plan:
    phones = _phone_list(name, headers, mapping)
    phone = phones[0]
    id_index = None
    if mapping.id_column is not None:
        id_index = _find(headers, mapping.id_column)
        if id_index is None:
            raise ColumnError(
                f"{name}: no column '{mapping.id_column}' for --id-column "
                f"(columns: {_listing(headers)})"
            )
    params = _params(name, headers, phone, id_index, mapping, warnings)
    required = _required(name, headers, params, mapping)
    unnamed = [index for index, header in enumerate(headers) if not header]
    sent = ([id_index] if id_index is not None else []) + [index for index, _ in params]
    country = _country_index(name, headers, mapping)
    return _Plan(phones, id_index, params, required, unnamed, sent, country)


def _phone_list(name: str, headers: list[str], mapping: ColumnMapping) -> tuple[int, ...]:
    """The phone columns, tried in this order in each row: ``--phone-column A,B`` (when no
    column is named so), else the one ``_phone_index`` finds. (A minimal stand-in: the
    "columns" work of issue 14 owns parsing the flag.)"""
    wanted = mapping.phone_column
    if wanted is None or "," not in wanted or _find(headers, wanted) is not None:
        return (_phone_index(name, headers, mapping),)
    found: list[int] = []
    for part in wanted.split(","):
        index = _phone_index(name, headers, dataclasses.replace(mapping, phone_column=part))
        if index not in found:
            found.append(index)
    return tuple(found)


def _fold(header: str) -> str:
    """Lower-case, accents and separators removed: "Teléfono Móvil" -> "telefonomovil"."""
    text = unicodedata.normalize("NFKD", header.strip().lower())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return re.sub(r"[\s_\-.]+", "", text)


def _listing(headers: Iterable[str]) -> str:
    """The headers for a message, cut after about ``SHOWN_CHARS`` characters."""
    shown: list[str] = []
    size = 0
    for header in headers:
        if not header:
            continue
        if size >= SHOWN_CHARS:
            shown.append("...")
            break
        shown.append(one_line(header, SHOWN_CHARS - size if size else SHOWN_CHARS))
        size += len(shown[-1]) + 2
    return ", ".join(shown)


def _find(headers: list[str], wanted: str) -> int | None:
    """Index of the column named ``wanted``: exact after trimming, else case-insensitive."""
    target = wanted.replace("\ufeff", "").strip()
    if target in headers:
        return headers.index(target)
    folded = [h.casefold() for h in headers]
    return folded.index(target.casefold()) if target.casefold() in folded else None


def _named_phone_columns(headers: list[str]) -> list[int]:
    """Columns whose header names a phone; a strong name beats "number"."""
    for names in (_PHONE_NAMES, _WEAK_PHONE_NAMES):
        found = [i for i, h in enumerate(headers) if h and _fold(h) in names]
        if found:
            return found
    return []


def _country_index(name: str, headers: list[str], mapping: ColumnMapping) -> int | None:
    """The column giving each row's country: ``--country-column``, else the best-ranked header
    of ``_COUNTRY_NAMES`` (the first of its rank), else None (every row: the default region)."""
    if mapping.country_column is not None:
        index = _find(headers, mapping.country_column)
        if index is None:
            raise ColumnError(
                f"{name}: no column '{mapping.country_column}' for --country-column "
                f"(columns: {_listing(headers)})"
            )
        return index
    folded = [re.sub(r"[^0-9a-z]", "", _fold(header)) for header in headers]
    for names in _COUNTRY_NAMES:
        for index, key in enumerate(folded):
            if key and key in names:
                return index
    return None


def _phone_index(name: str, headers: list[str], mapping: ColumnMapping) -> int:
    if mapping.phone_column is not None:
        index = _find(headers, mapping.phone_column)
        if index is None:
            raise ColumnError(
                f"{name}: no column '{mapping.phone_column}' (columns: {_listing(headers)})"
            )
        return index
    found = _named_phone_columns(headers)
    if len(found) > 1:
        shown = _listing(headers[i] for i in found)
        raise ColumnError(
            f"{name}: several phone columns ({shown}); choose one with --phone-column"
        )
    if not found:
        raise ColumnError(
            f"{name}: no phone column found (columns: {_listing(headers)}); "
            "name it with --phone-column"
        )
    return found[0]


def _params(
    name: str,
    headers: list[str],
    phone: int,
    id_index: int | None,
    mapping: ColumnMapping,
    warnings: list[str],
) -> list[tuple[int, str]]:
    """(column index, param name) of every column sent as a custom param, in column order."""
    renamed: dict[int, str] = {}
    for column, new in mapping.rename.items():
        index = _find(headers, column)
        if index is None:
            raise ColumnError(
                f"{name}: no column '{column}' for --param {column}={new} "
                f"(columns: {_listing(headers)})"
            )
        if not new.strip():
            raise ConfigError(f"--param {column}={new}: the param name is empty")
        renamed[index] = new.strip()
    excluded: set[int] = set()
    for column in sorted(mapping.exclude):
        index = _find(headers, column)
        if index is None:
            raise ColumnError(
                f"{name}: no column '{column}' for --exclude (columns: {_listing(headers)})"
            )
        excluded.add(index)
    if phone in renamed:
        warnings.append(
            f"column '{one_line(headers[phone])}' is the phone column: --param for it is ignored"
        )
    if id_index is not None and id_index in renamed and id_index != phone:
        warnings.append(
            f"column '{one_line(headers[id_index])}' is the id column: --param for it is ignored"
        )

    chosen: list[tuple[int, str]] = []
    owner: dict[str, int] = {}
    for index, header in enumerate(headers):
        if index in (phone, id_index) or index in excluded or not header:
            continue
        param = renamed.get(index, header)
        if param.lower() in RESERVED:
            hint = (
                "choose another name with --param"
                if index in renamed
                else f"rename it with --param {one_line(header)}=NAME"
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
    name: str, headers: list[str], params: list[tuple[int, str]], mapping: ColumnMapping
) -> list[tuple[int, str]]:
    """(column, label) of each required param: by its final param name, else by its header."""
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
            index = _find(headers, key)
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
