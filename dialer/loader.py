"""The leads file: reading it, mapping its columns, and turning each row into a ``Lead``.

This module owns file formats (``.csv``/``.txt`` today; ``.xlsx`` joins ``_READERS`` later),
text encodings (UTF-8 with or without BOM, UTF-16 with BOM, else detected, e.g. Windows-1252
Excel exports), delimiter sniffing, the phone column and custom param mapping, and each row's
load-time status: ``pending``, ``invalid`` or ``duplicate``.

It is pure: it reads the leads file and nothing else, writes no files, never touches the
network, and raises only ``DialerError`` subclasses with one-line messages: ``LeadsFileError``
and ``ColumnError`` (starting with the file's name) and ``ConfigError`` (a bad region, encoding
or param name).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from charset_normalizer import from_bytes

from dialer.errors import ColumnError, ConfigError, LeadsFileError
from dialer.model import Lead, Status
from dialer.phones import check_region, normalize

__all__ = ["RESERVED", "ColumnMapping", "LoadResult", "load_leads"]

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

_SNIFF_BYTES = 16 * 1024
_DELIMITERS = ",;\t"
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


@dataclass(frozen=True)
class ColumnMapping:
    """How columns map to the call: which holds the phone, which params are renamed or left out."""

    phone_column: str | None = None  # None: detect
    rename: dict[str, str] = field(default_factory=dict)  # column -> custom param name
    exclude: frozenset[str] = frozenset()  # columns not sent


@dataclass
class LoadResult:
    """Every data row of one leads file as a ``Lead``, plus what was learnt reading it."""

    path: Path
    phone_column: str  # the header as it appears in the file
    param_names: list[str]  # custom param names that will be sent, in column order
    leads: list[Lead]  # every data row, in file order: pending, invalid or duplicate
    encoding: str
    delimiter: str
    warnings: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Number of leads per status value, e.g. ``{"pending": 10, "invalid": 1, ...}``."""
        counts: dict[str, int] = {}
        for lead in self.leads:
            counts[lead.status.value] = counts.get(lead.status.value, 0) + 1
        return counts


def load_leads(
    path: str | Path,
    mapping: ColumnMapping = ColumnMapping(),
    *,
    default_region: str = "ES",
    encoding: str | None = None,
) -> LoadResult:
    """Read a leads file into one ``Lead`` per data row (``encoding`` overrides detection)."""
    path = Path(path)
    name = path.name
    region = check_region(default_region)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        shown = f"'{path.suffix}'" if path.suffix else "(no extension)"
        raise LeadsFileError(f"{name}: unsupported file type {shown} (use .csv or .txt)")
    data = _read_bytes(path)
    table, used_encoding, delimiter = reader(name, data, encoding)
    return _build(path, table, mapping, region, used_encoding, delimiter)


# --- reading ------------------------------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    name = path.name
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise LeadsFileError(f"{name}: file not found") from exc
    except OSError as exc:
        if isinstance(exc, IsADirectoryError) or path.is_dir():
            raise LeadsFileError(f"{name}: is a directory, not a leads file") from exc
        reason = "permission denied" if isinstance(exc, PermissionError) else exc.strerror
        raise LeadsFileError(f"{name}: cannot read the file ({reason or exc})") from exc


def _read_delimited(
    name: str, data: bytes, encoding: str | None
) -> tuple[list[list[str]], str, str]:
    """Decode and split a delimited text file into rows of cells (the header is row 0)."""
    text, used = _decode(name, data, encoding)
    if not text.strip().strip("\ufeff"):
        raise LeadsFileError(f"{name}: the file is empty")
    delimiter = _sniff_delimiter(text[:_SNIFF_BYTES])
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=delimiter,
            header=None,
            index_col=False,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
        )
    except pd.errors.EmptyDataError as exc:
        raise LeadsFileError(f"{name}: the file is empty") from exc
    except pd.errors.ParserError as exc:
        raise LeadsFileError(f"{name}: {_parser_problem(str(exc))}") from exc
    except (ValueError, MemoryError) as exc:
        raise LeadsFileError(f"{name}: cannot parse the file ({_one_line(exc)})") from exc
    rows = [
        ["" if cell is None else str(cell) for cell in row]
        for row in frame.itertuples(index=False, name=None)
    ]
    return rows, used, delimiter


# Each reader: (file name, raw bytes, encoding override) -> (rows, encoding, delimiter).
# An .xlsx reader goes here: it returns the first sheet's cells as text, encoding "xlsx".
_READERS: dict[str, Callable[[str, bytes, str | None], tuple[list[list[str]], str, str]]] = {
    ".csv": _read_delimited,
    ".txt": _read_delimited,
}


def _decode(name: str, data: bytes, encoding: str | None) -> tuple[str, str]:
    """Decode the file's bytes: the given encoding, a BOM, UTF-8, else a detected encoding."""
    if encoding:
        try:
            codec = codecs.lookup(encoding).name
        except LookupError as exc:
            raise ConfigError(f"unknown encoding '{encoding}' for {name}") from exc
        if codec == "utf-8" and data.startswith(codecs.BOM_UTF8):
            codec = "utf-8-sig"
        try:
            return data.decode(codec), codec
        except UnicodeDecodeError as exc:
            raise LeadsFileError(
                f"{name}: not valid {encoding} (byte {exc.start}): check the file's encoding"
            ) from exc
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(codec), codec
            except UnicodeDecodeError:
                break  # a BOM-like start that is not one: detect below
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    codec = _detect(data)
    if codec is None:
        raise LeadsFileError(
            f"{name}: cannot tell the text encoding; save it as CSV UTF-8 "
            "or pass the encoding (e.g. --encoding cp1252)"
        )
    return data.decode(codec, errors="replace"), codec


def _detect(data: bytes) -> str | None:
    """charset-normalizer's guess, preferring Windows-1252 when it reads the bytes as well."""
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
        found = csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        found = ""
    if found and found in _DELIMITERS:
        return found
    first_line = sample.lstrip("\ufeff").splitlines()[0] if sample.strip() else ""
    widths = {d: len(next(csv.reader([first_line], delimiter=d), [])) for d in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda d: widths[d])
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
    return f"cannot parse the file ({_one_line(message)})"


def _one_line(value: object) -> str:
    return " ".join(str(value).split())


# --- mapping --------------------------------------------------------------------------------------


def _fold(header: str) -> str:
    """Lower-case, accents and separators removed: "Teléfono Móvil" -> "telefonomovil"."""
    text = unicodedata.normalize("NFKD", header.strip().lower())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return re.sub(r"[\s_\-.]+", "", text)


def _listing(headers: Iterable[str]) -> str:
    return ", ".join(_one_line(h) for h in headers if h)


def _find(headers: list[str], wanted: str) -> int | None:
    """Index of the column named ``wanted``: exact after trimming, else case-insensitive."""
    target = wanted.replace("\ufeff", "").strip()
    if target in headers:
        return headers.index(target)
    folded = [h.casefold() for h in headers]
    return folded.index(target.casefold()) if target.casefold() in folded else None


def _phone_index(name: str, headers: list[str], mapping: ColumnMapping) -> int:
    if mapping.phone_column is not None:
        index = _find(headers, mapping.phone_column)
        if index is None:
            raise ColumnError(
                f"{name}: no column '{mapping.phone_column}' (columns: {_listing(headers)})"
            )
        return index
    for names in (_PHONE_NAMES, _WEAK_PHONE_NAMES):
        found = [i for i, h in enumerate(headers) if h and _fold(h) in names]
        if len(found) == 1:
            return found[0]
        if found:
            shown = ", ".join(headers[i] for i in found)
            raise ColumnError(
                f"{name}: several phone columns ({shown}); choose one with --phone-column"
            )
    raise ColumnError(
        f"{name}: no phone column found (columns: {_listing(headers)}); name it with --phone-column"
    )


def _params(
    name: str, headers: list[str], phone: int, mapping: ColumnMapping, warnings: list[str]
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
        warnings.append(f"column '{headers[phone]}' is the phone column: --param for it is ignored")

    chosen: list[tuple[int, str]] = []
    owner: dict[str, int] = {}
    for index, header in enumerate(headers):
        if index == phone or index in excluded or not header:
            continue
        param = renamed.get(index, header)
        if param.lower() in RESERVED:
            hint = (
                "choose another name with --param"
                if index in renamed
                else f"rename it with --param {header}=NAME"
            )
            warnings.append(f"column '{header}' ignored: '{param}' is a call setting; {hint}")
            continue
        if param in owner:
            raise ColumnError(
                f"{name}: columns '{headers[owner[param]]}' and '{header}' would both send "
                f"param '{param}'; rename one with --param or leave one out with --exclude"
            )
        owner[param] = index
        chosen.append((index, param))
    return chosen


# --- rows ---------------------------------------------------------------------------------------


def _build(
    path: Path,
    rows: list[list[str]],
    mapping: ColumnMapping,
    region: str,
    encoding: str,
    delimiter: str,
) -> LoadResult:
    name = path.name
    headers = [cell.replace("\ufeff", "").strip() for cell in rows[0]]
    if not any(headers):
        raise LeadsFileError(f"{name}: the first row has no column names")
    warnings: list[str] = []
    phone = _phone_index(name, headers, mapping)
    params = _params(name, headers, phone, mapping, warnings)

    leads: list[Lead] = []
    first_row: dict[str, int] = {}
    blank_rows = 0
    unnamed_values: set[int] = set()
    for offset, cells in enumerate(rows[1:]):
        row = offset + 2  # the header is spreadsheet row 1
        values = [cell.replace("\r\n", "\n").strip() for cell in cells]
        if not any(values):
            blank_rows += 1
            continue
        unnamed_values.update(i for i, v in enumerate(values) if v and not headers[i])
        sent = {param: values[i] for i, param in params if values[i]}
        parsed = normalize(values[phone], region)
        if parsed.e164 is None:
            leads.append(Lead(row, values[phone], sent, Status.INVALID, parsed.reason))
        elif parsed.e164 in first_row:
            reason = f"same phone as row {first_row[parsed.e164]}"
            leads.append(Lead(row, parsed.e164, sent, Status.DUPLICATE, reason))
        else:
            first_row[parsed.e164] = row
            leads.append(Lead(row, parsed.e164, sent))

    for index in sorted(unnamed_values):
        warnings.append(f"column {index + 1} has values but no header: its values are not sent")
    if blank_rows:
        warnings.append(f"{blank_rows} empty row(s) skipped")
    return LoadResult(
        path=path,
        phone_column=headers[phone],
        param_names=[param for _, param in params],
        leads=leads,
        encoding=encoding,
        delimiter=delimiter,
        warnings=warnings,
    )
