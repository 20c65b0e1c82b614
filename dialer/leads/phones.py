"""Phone numbers: turning a spreadsheet cell into a dialable E.164 number, or a reason why not.

This module owns E.164 parsing and validity (through ``phonenumbers``), reading a row's country
cell (ISO codes and country names in English, Spanish, French, German, Italian and Portuguese,
through ``pycountry`` and its translations), the per-row fallback over several phone columns,
and the check of the ``--default-region`` code. It is pure: no network, no files, no printing.

Which country a row's number belongs to (``normalize_rows``), first rule that applies:

* an explicit international prefix (``+``, or ``00``) wins over everything: ``+1 201 555 0123``
  is a US number in any row;
* a row whose country cell names a country reads its number in that country's region: with
  Country=US, ``612345678`` is "invalid number for US", never the Spanish number it would be
  under ``--default-region ES``; nobody is dialed abroad by a guess;
* a row whose country cell is empty (or a file with no country column) uses ``--default-region``;
* a country cell that names no country ("Narnia") rejects the row with the reason, and a country
  ``phonenumbers`` has no numbering for (Antarctica) too: the row is never guessed into another
  region. A number with an explicit prefix in such a row is still read (the prefix says it all).

A country cell is an ISO 3166 alpha-2 or alpha-3 code, a country name (official, common or
translated), folded (case, accents, punctuation: "U.S.", "USA", "États-Unis", "España" all
read), a name with a parenthesised remark ("Slovakia (Slovak Republic)"), a dialing code
("+34", "34"), or one of a tiny list of common aliases (``_ALIASES``: UK, England...).

Rules, in the order they apply to a cell:

* surrounding whitespace is stripped; an empty cell is rejected ("empty phone");
* values a spreadsheet has turned into numbers are rejected, never repaired: scientific
  notation (``3,46123456E+10``) has lost digits, and a trailing ``.0`` (``612345678.0``) shows the
  column was numeric, so leading zeros and ``+`` signs may be gone too;
* spaces, dots, dashes, brackets, a ``+`` or ``00`` international prefix and an extension are
  accepted; a number without a country code belongs to the default region;
* the number must be valid for its region (``phonenumbers.is_valid_number``), not just plausible;
  with ``allow_possible=True`` a number of a possible length for its region
  (``phonenumbers.is_possible_number``) is accepted too, but a valid reading always wins;
* Excel damage is named, not read: a short negative integer (``-2237``, what Excel makes of
  ``+1-532-344-1362`` taken as a formula) or an error value (``#NAME?``) where a phone was;
* the result is E.164, which never carries an extension: the dialer calls the main number, and
  the extension (``555-867-5309 x89``, ``ext. 12``) is kept in ``ParsedPhone.extension`` (the
  loader sends it as the custom param ``extension``).

Several phone columns (``--phone-column Mobile,Phone``): in each row the first cell that gives a
dialable number is used; when none does, the row's reason is the first non-empty cell's (or
"empty phone"), and ``normalize_rows`` says which cell that was.
"""

from __future__ import annotations

import functools
import gettext
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult
from phonenumbers.phonemetadata import PhoneMetadata

from dialer.errors import ConfigError

__all__ = [
    "ParsedPhone",
    "check_region",
    "country_region",
    "normalize",
    "normalize_many",
    "normalize_rows",
]

REASON_EMPTY = "empty phone"
REASON_SCIENTIFIC = (
    "phone in scientific notation (digits lost): "
    "format the column as text in the spreadsheet and export again"
)
REASON_EXCEL_NUMBER = (
    "phone stored as a number (ends in '.0'): "
    "format the column as text in the spreadsheet and export again"
)
REASON_FORMULA = (
    "Excel evaluated this number as a formula: "
    "format the column as text before saving, and export again"
)
REASON_NOT_A_NUMBER = "not a phone number"
REASON_TOO_SHORT = "not a phone number (too few digits)"
REASON_TOO_LONG = "not a phone number (too many digits)"
REASON_SEVERAL = "several numbers in one cell: keep one phone per cell"

# Excel's "General" format shows long numbers as 3,46123456E+10 (comma in Spanish locales).
_SCIENTIFIC = re.compile(r"^[+-]?\d+(?:[.,]\d*)?[eE][+-]?\d+$")
# A numeric cell exported as a float: digits, then ".0" (or ",0" in comma-decimal locales).
_EXCEL_FLOAT = re.compile(r"^\+?\d+[.,]0+$")
# What Excel leaves of a phone it took for a formula: "+1-532-344-1362" becomes -2237, or an
# error value when the formula could not be computed.
_FORMULA_DAMAGE = re.compile(
    r"^(?:-\d{1,6}|#(?:NAME\?|VALUE!|REF!|ERROR!|N/A|NUM!|NULL!|DIV/0!))$", re.IGNORECASE
)
# "00" international prefix, possibly inside a leading bracket: "0034 ...", "(0034) ...".
_DOUBLE_ZERO = re.compile(r"^(\(?\s*)00(?=\d)")
# Real extensions are short; a long "extension" is a second number after a comma or ";".
_MAX_EXTENSION_DIGITS = 6
_POSSIBLE = phonenumbers.is_possible_number_with_reason


@dataclass(frozen=True, slots=True)
class ParsedPhone:
    """A cell's verdict: ``e164`` when dialable (and its ``extension``, digits, when the cell
    had one), else ``None`` and a one-sentence ``reason``."""

    e164: str | None
    reason: str = ""
    extension: str = ""

    @property
    def ok(self) -> bool:
        """True when the number can be dialed."""
        return self.e164 is not None


def check_region(code: str) -> str:
    """Return ``code`` upper-cased if ``phonenumbers`` knows the region, else raise ConfigError."""
    region = code.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(
            f"unknown region '{code}' for --default-region: "
            "use a two-letter country code such as ES, US, GB"
        )
    return region


def normalize(raw: str, default_region: str = "ES", *, allow_possible: bool = False) -> ParsedPhone:
    """Parse one phone cell; numbers without a country code belong to ``default_region``.

    ``allow_possible`` also accepts a number that has a possible length for its region but is
    not valid by phonenumbers' metadata (a new range, a test number): strict by default.
    """
    text = (raw or "").strip()
    if not text:
        return ParsedPhone(None, REASON_EMPTY)
    if _SCIENTIFIC.match(text):
        return ParsedPhone(None, REASON_SCIENTIFIC)
    if _EXCEL_FLOAT.match(text):
        return ParsedPhone(None, REASON_EXCEL_NUMBER)
    if _FORMULA_DAMAGE.match(text):
        return ParsedPhone(None, REASON_FORMULA)

    region = default_region.upper()
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        number = None
        error = exc
    else:
        error = None

    valid = number is not None and is_valid(number)
    candidate = None
    if not valid:
        # "00" is the international prefix in most of the world, but phonenumbers only reads it
        # as one when the default region uses it (Spain does, the US does not).
        retry = _with_plus(text)
        if retry is not None:
            try:
                candidate = phonenumbers.parse(retry, region)
            except NumberParseException:
                candidate = None
            if candidate is not None and is_valid(candidate):
                number, error, valid = candidate, None, True

    if not valid:
        # Not valid under any reading: with allow_possible, a possible one will do ("00..."
        # written as "+" first, as it was meant to be international).
        possible = _first_possible(candidate, number) if allow_possible else None
        if possible is None:
            if number is None:
                return ParsedPhone(None, _parse_failure(error))
            return ParsedPhone(None, f"invalid number for {_region_label(number, region)}")
        number = possible
    extension = number.extension or ""
    if sum(ch.isdigit() for ch in extension) > _MAX_EXTENSION_DIGITS:
        return ParsedPhone(None, REASON_SEVERAL)
    number.extension = None
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    return ParsedPhone(e164, extension="".join(ch for ch in extension if ch.isdigit()))


def normalize_many(
    raws: Sequence[str], default_region: str = "ES", *, allow_possible: bool = False
) -> list[ParsedPhone]:
    """``normalize`` over a batch, in order (the unit of work the loader hands to a process)."""
    seen: dict[str, ParsedPhone] = {}
    out: list[ParsedPhone] = []
    for raw in raws:
        parsed = seen.get(raw)
        if parsed is None:
            parsed = normalize(raw, default_region, allow_possible=allow_possible)
            seen[raw] = parsed
        out.append(parsed)
    return out


# The number types ``phonenumbers`` tries, in its order; a number is valid when the general
# description and one of them match (mobile only when its pattern is not the fixed line's).
_KINDS = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan",
          "voicemail", "fixed_line")  # fmt: skip
_Desc = tuple[frozenset[int], str]  # possible lengths (none: any), the pattern


def is_valid(number: phonenumbers.PhoneNumber) -> bool:
    """``phonenumbers.is_valid_number(number)``, the same answer at a fraction of the cost
    (a million numbers a file): for a country code of one region, the region's patterns are
    compiled once and tried straight; any other code asks the library itself."""
    valid = _validator(number.country_code or 0)
    if valid is None:
        return phonenumbers.is_valid_number(number)
    return valid(phonenumbers.national_significant_number(number))


@functools.cache
def _validator(country_code: int) -> Callable[[str], bool] | None:
    """The validity test of national significant numbers under ``country_code``, as
    ``phonenumbers``' ``_number_type_helper`` decides it (type UNKNOWN: invalid); None when
    several regions share the code (the library picks the region by the number) or the code
    is unusual."""
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code, ())
    if len(regions) != 1 or regions[0] == phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY:
        return None
    region = regions[0]
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    if metadata is None or phonenumbers.country_code_for_valid_region(region) != country_code:
        return None

    def desc(found: object) -> _Desc | None:
        pattern = getattr(found, "national_number_pattern", None)
        if found is None or not pattern:
            return None  # phonenumbers: no description, or an empty pattern, matches nothing
        return frozenset(getattr(found, "possible_length", None) or ()), pattern

    general = desc(metadata.general_desc)
    names = _KINDS if metadata.same_mobile_and_fixed_line_pattern else (*_KINDS, "mobile")
    kinds = [kind for name in names if (kind := desc(getattr(metadata, name))) is not None]
    if general is None:
        return lambda nsn: False
    # Per length a number may have: one pattern, the general one and then any of the kinds
    # that allow that length (a kind with no lengths listed allows any). None: no match.
    by_length: dict[int, re.Pattern[str] | None] = {}

    def pattern_for(length: int) -> re.Pattern[str] | None:
        if length not in by_length:
            allowed = [p for lengths, p in kinds if not lengths or length in lengths]
            fits = allowed and (not general[0] or length in general[0])
            either = "|".join(f"(?:{p})" for p in allowed)
            by_length[length] = re.compile(rf"(?=(?:{general[1]})\Z)(?:{either})") if fits else None
        return by_length[length]

    def valid(nsn: str) -> bool:
        pattern = pattern_for(len(nsn))
        return pattern is not None and pattern.fullmatch(nsn) is not None

    return valid


def _first_possible(
    *numbers: phonenumbers.PhoneNumber | None,
) -> phonenumbers.PhoneNumber | None:
    """The first of ``numbers`` with a possible length for its region, else None.

    A length only possible for local dialing (7 digits in the US) is not enough: the number
    cannot be dialed without its area code.
    """
    for number in numbers:
        if number is not None and _POSSIBLE(number) == ValidationResult.IS_POSSIBLE:
            return number
    return None


def _with_plus(text: str) -> str | None:
    """``text`` with a leading ``00`` international prefix written as ``+``, or None."""
    if "+" in text:
        return None
    match = _DOUBLE_ZERO.match(text)
    if match is None:
        return None
    return f"{match.group(1)}+{text[match.end() :]}"


def _parse_failure(error: NumberParseException | None) -> str:
    """A short reason for a cell ``phonenumbers`` could not parse at all."""
    kind = error.error_type if error is not None else None
    if kind in (NumberParseException.TOO_SHORT_NSN, NumberParseException.TOO_SHORT_AFTER_IDD):
        return REASON_TOO_SHORT
    if kind == NumberParseException.TOO_LONG:
        return REASON_TOO_LONG
    if kind == NumberParseException.INVALID_COUNTRY_CODE:
        return "not a phone number (unknown country code)"
    return REASON_NOT_A_NUMBER


def _region_label(number: phonenumbers.PhoneNumber, default_region: str) -> str:
    """The region a number claims (``US`` for +1, ``GB`` for +44...), else the default; a
    number read in ``default_region`` with its country code is that region's (a Bahamas row's
    invalid number is "invalid number for BS", not for US)."""
    if number.country_code == phonenumbers.country_code_for_region(default_region):
        return default_region
    region = phonenumbers.region_code_for_number(number)
    if not region or region in ("ZZ", "001"):
        region = phonenumbers.region_code_for_country_code(number.country_code or 0)
    if not region or region == "ZZ":
        return default_region
    if region == "001":
        return f"+{number.country_code}"
    return region


# --- each row's country ---------------------------------------------------------------------

# Names people write that ISO 3166 does not: a deliberately tiny list on top of pycountry.
_ALIASES = {
    "uk": "GB", "greatbritain": "GB", "britain": "GB", "england": "GB", "scotland": "GB",
    "wales": "GB", "northernireland": "GB", "usofa": "US", "america": "US",
    "holland": "NL", "southkorea": "KR", "northkorea": "KP", "russia": "RU",
}  # fmt: skip
# Languages whose country names are read (pycountry's gettext catalogs), besides English.
_LANGUAGES = ("es", "fr", "de", "it", "pt", "pt_BR")
_REMARK = re.compile(r"\s*\([^)]*\)\s*")
_DIALING_CODE = re.compile(r"^\+?\d{1,3}$")
_SHOWN = 40  # characters of a cell quoted in a reason


def fold_country(text: str) -> str:
    """Case, accents, punctuation and spaces folded away: "États-Unis" -> "etatsunis"."""
    text = unicodedata.normalize("NFKD", text.casefold().replace("&", " and "))
    return "".join(ch for ch in text if ch.isalnum() and not unicodedata.combining(ch))


@functools.cache
def _country_names() -> dict[str, str]:
    """Folded code or name -> ISO alpha-2, built once: codes first, then English names, the
    aliases, then the translations (an earlier source wins a clash). pycountry is imported
    here, not at start-up: most commands never read a country."""
    import pycountry

    table: dict[str, str] = {}

    def add(name: str | None, code: str) -> None:
        key = fold_country(name or "")
        if key and key not in table:
            table[key] = code

    countries = list(pycountry.countries)
    for country in countries:
        add(country.alpha_2, country.alpha_2)
    for country in countries:
        add(country.alpha_3, country.alpha_2)
    english = [
        (name, country.alpha_2)
        for country in countries
        for name in (
            getattr(country, "common_name", None),
            country.name,
            getattr(country, "official_name", None),
        )
        if name
    ]
    for name, code in english:
        add(name, code)
    for alias, code in _ALIASES.items():
        add(alias, code)
    for language in _LANGUAGES:
        catalog = gettext.translation(
            "iso3166-1", pycountry.LOCALES_DIR, languages=[language], fallback=True
        )
        for name, code in english:
            add(catalog.gettext(name), code)
    return table


@functools.lru_cache(maxsize=65536)
def country_region(cell: str, column: str = "Country") -> tuple[str, str]:
    """``(region, "")`` when ``cell`` names a country whose numbers ``phonenumbers`` reads,
    ``("", "")`` for an empty cell, else ``("", reason)``; ``column`` is named in the reason.
    Cached per distinct cell: a million rows hold a few hundred countries."""
    text = cell.strip()
    if not text:
        return "", ""
    names = _country_names()
    code = names.get(fold_country(text))
    if code is None and "(" in text:
        code = names.get(fold_country(_REMARK.sub(" ", text)))
    if code is None and _DIALING_CODE.match(text):
        region = phonenumbers.region_code_for_country_code(int(text.lstrip("+")))
        code = region if region in phonenumbers.SUPPORTED_REGIONS else None
    shown = text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."
    if code is None:
        return "", (
            f"unknown country '{shown}' in column {column}: "
            "write an ISO code such as US, or fix the cell"
        )
    if code not in phonenumbers.SUPPORTED_REGIONS:
        return "", (
            f"no phone numbers known for country '{shown}' ({code}) in column {column}: "
            "write the number with its + country code"
        )
    return code, ""


def _explicit_prefix(text: str) -> bool:
    """True when the cell carries its own country code (``+`` or ``00``)."""
    return text.lstrip("( ").startswith(("+", "00"))


def normalize_rows(
    columns: Sequence[Sequence[str]],
    countries: Sequence[str] | None,
    default_region: str = "ES",
    *,
    country_column: str = "Country",
    allow_possible: bool = False,
) -> tuple[list[ParsedPhone], bytearray]:
    """Read a batch of rows: per row, its verdict and which of ``columns`` it came from.

    ``columns`` holds one sequence of cells per phone column, tried in that order in each row;
    ``countries`` the rows' country cells (None: no country column). The rules are the module's:
    a country cell decides the region, the default region only fills in for an empty one. A
    row's verdict is its first dialable cell's, else its first non-empty cell's reason (else
    "empty phone"); the index says which cell that was (0 for an empty row).
    """
    default = default_region.upper()
    regions: dict[str, tuple[str, str]] = {}  # country cell -> (region, why): a few per file
    seen: dict[tuple[str, str], ParsedPhone] = {}
    out: list[ParsedPhone] = []
    sources = bytearray()
    for i in range(len(columns[0])):
        region, why = default, ""
        if countries is not None and (cell := countries[i]):
            found = regions.get(cell)
            if found is None:
                found = regions[cell] = country_region(cell, country_column)
            region, why = found
        chosen: ParsedPhone | None = None
        source = 0
        for k, column in enumerate(columns):
            raw = column[i]
            if not raw:
                continue
            key = (raw, why or region)
            parsed = seen.get(key)
            if parsed is None:
                if not raw.strip():
                    continue
                if not why:
                    parsed = normalize(raw, region, allow_possible=allow_possible)
                elif _explicit_prefix(raw.strip()):
                    parsed = normalize(raw, default, allow_possible=allow_possible)
                else:
                    parsed = ParsedPhone(None, why)
                seen[key] = parsed
            if parsed.ok:
                chosen, source = parsed, k
                break
            if chosen is None:
                chosen, source = parsed, k
        out.append(chosen or ParsedPhone(None, REASON_EMPTY))
        sources.append(source)
    return out, sources


# --- the language of a number's country (--language auto) -------------------------------------

# A country's call language, for the countries with one the API speaks. A country with several
# (CH, BE, LU...) is left out: its leads get the campaign's fallback, never a guess.
_LANGUAGES = {
    "ES": "ES MX AR CO CL PE VE EC GT CU BO DO HN PY SV NI CR PA UY PR GQ",
    "EN": "GB US IE AU NZ CA IM JE GG",
    "FR": "FR MC GP MQ GF RE YT PM BL MF NC PF",
    "DE": "DE AT LI",
    "IT": "IT SM VA",
    "PT": "PT BR AO MZ",
}
LANGUAGE_OF_REGION = {
    region: language for language, regions in _LANGUAGES.items() for region in regions.split()
}
_MIXED = "?"  # a dialing code whose regions speak different languages (+1: US, CA, PR, DO...)
_AREA_LANGUAGES: dict[str, str | None] = {}  # "+1809" -> "ES": NANP regions go by area code


@functools.cache
def _code_language(code: int) -> str | None:
    """The language of every region of dialing code ``code``; ``_MIXED`` when they differ."""
    found = {LANGUAGE_OF_REGION.get(r) for r in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[code]}
    return found.pop() if len(found) == 1 else _MIXED


def number_language(e164: str) -> str | None:
    """The call language of an E.164 number's country (``LANGUAGE_OF_REGION``), None when its
    country has none there. Cheap per number: looked up once per dialing code (per area code
    in the +1 plan, where US, CA, PR and DO share the code); only other shared codes parse."""
    for width in (1, 2, 3):
        code = int(e164[1 : 1 + width] or 0)
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return None
    language = _code_language(code)
    if language != _MIXED:
        return language
    key = e164[:5] if code == 1 else e164
    if key not in _AREA_LANGUAGES:
        try:
            region = phonenumbers.region_code_for_number(phonenumbers.parse(e164))
        except NumberParseException:
            region = None
        if code != 1 and len(_AREA_LANGUAGES) > 10_000:
            _AREA_LANGUAGES.clear()  # a bounded cache: numbers of mixed codes are few
        _AREA_LANGUAGES[key] = LANGUAGE_OF_REGION.get(region or "")
    return _AREA_LANGUAGES[key]
