"""Naming a column: by its header, its spreadsheet letter or its position; repeated headers
made distinct; headers quoted in a message. Pure functions of a header list, shared by the
column mapping (``dialer.leads.columns``) and the phone columns' detection
(``dialer.leads.phonecolumns``).

Columns. A repeated header is made distinct: its copies are ``Phone``, ``Phone (2)``, ... (a
warning names them); those are the names every flag takes and the params they are sent as. A
flag names a column by its header (exactly, else in any case), else by its spreadsheet letter
(``C``, ``AB``: capitals only) or position (``#3``), both counted as the spreadsheet does; a
header always wins, so a column named "C" is never taken for the third one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from dialer.errors import ColumnError, ConfigError
from dialer.leads.table import SHOWN_CHARS, one_line

__all__ = [
    "column_index",
    "columns_named",
    "distinct",
    "find",
    "fold",
    "letter",
    "listing",
    "quoted",
]


def fold(header: str) -> str:
    """Lower-case, accents and separators removed: "Teléfono Móvil" -> "telefonomovil"."""
    text = unicodedata.normalize("NFKD", header.strip().lower())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return re.sub(r"[\s_\-.]+", "", text)


def listing(headers: Iterable[str], limit: int = SHOWN_CHARS) -> str:
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


def quoted(headers: Iterable[str], most: int = 6) -> str:
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


def distinct(headers: list[str], first_column: int, warnings: list[str]) -> list[str]:
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
                f"they are {quoted(names[i] for i in copies)} in flags and params"
            )
    return names


def find(headers: list[str], wanted: str, first_column: int = 0) -> int | None:
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


def column_index(name: str, headers: list[str], wanted: str, flag: str, first_column: int) -> int:
    """The column ``wanted`` names for ``flag`` (``find``), else one ``ColumnError`` line."""
    index = find(headers, wanted, first_column)
    if index is None:
        raise ColumnError(f"{name}: no column '{wanted}' for {flag} (columns: {listing(headers)})")
    return index


def columns_named(
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
        found = find(headers, text, first_column)
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
                f"{name}: no column '{part}' for {flag} (columns: {listing(headers)})"
            )
        if index not in found:
            found.append(index)
        start = end
    if not found:
        raise ConfigError(f"{flag}: no column named")
    return found
