"""Which columns hold the phone: what a header's words say of the phone it holds, the choice
among several phone columns, and the do-not-call list's column.

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
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from dialer.errors import ColumnError
from dialer.leads.headers import columns_named, listing, quoted
from dialer.leads.phones import normalize
from dialer.leads.table import Rows, one_line

__all__ = ["SAMPLE_ROWS", "dnc_column", "phone_columns"]


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
SAMPLE_ROWS = 10_000  # rows looked at to count the numbers in each phone column


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


def phone_columns(
    name: str,
    headers: list[str],
    named: str | None,
    sample: Rows,
    first_column: int,
    warnings: list[str],
    more: Callable[[], bool] = lambda: False,
) -> tuple[int, ...]:
    """The phone columns, in the order each row tries them (see the module's docstring):
    those ``named`` (``--phone-column``), else detected."""
    if named is not None:
        return tuple(columns_named(name, headers, named, "--phone-column", first_column))
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
            f"numbers{where} (empty: {quoted(headers[i] for i in empty)})"
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
    note = f"; never dialed: {quoted(headers[i] for i in never)}" if never else ""
    if len(named) <= 12:
        columns = f"columns: {listing(headers)}"
    else:
        columns = f"{len(named):,} columns: {listing(headers, 60)}"
    return f"{name}: no phone column found ({columns}{note}); name it with --phone-column"


def dnc_column(name: str, header: list[str], region: str) -> tuple[int, bool]:
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
        f"{name}: no phone column found in the do-not-call list (columns: {listing(cells)})"
    )
