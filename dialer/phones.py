"""Phone numbers: turning a spreadsheet cell into a dialable E.164 number, or a reason why not.

This module owns E.164 parsing and validity (through ``phonenumbers``) and the check of the
``--default-region`` code. It is pure: no network, no files, no printing.

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
* the result is E.164, which never carries an extension: the dialer calls the main number.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

from dialer.errors import ConfigError

__all__ = ["ParsedPhone", "check_region", "normalize", "normalize_many"]

REASON_EMPTY = "empty phone"
REASON_SCIENTIFIC = (
    "phone in scientific notation (digits lost): "
    "format the column as text in the spreadsheet and export again"
)
REASON_EXCEL_NUMBER = (
    "phone stored as a number (ends in '.0'): "
    "format the column as text in the spreadsheet and export again"
)
REASON_NOT_A_NUMBER = "not a phone number"
REASON_TOO_SHORT = "not a phone number (too few digits)"
REASON_TOO_LONG = "not a phone number (too many digits)"
REASON_SEVERAL = "several numbers in one cell: keep one phone per cell"

# Excel's "General" format shows long numbers as 3,46123456E+10 (comma in Spanish locales).
_SCIENTIFIC = re.compile(r"^[+-]?\d+(?:[.,]\d*)?[eE][+-]?\d+$")
# A numeric cell exported as a float: digits, then ".0" (or ",0" in comma-decimal locales).
_EXCEL_FLOAT = re.compile(r"^\+?\d+[.,]0+$")
# "00" international prefix, possibly inside a leading bracket: "0034 ...", "(0034) ...".
_DOUBLE_ZERO = re.compile(r"^(\(?\s*)00(?=\d)")
# Real extensions are short; a long "extension" is a second number after a comma or ";".
_MAX_EXTENSION_DIGITS = 6
_POSSIBLE = phonenumbers.is_possible_number_with_reason


@dataclass(frozen=True, slots=True)
class ParsedPhone:
    """A cell's verdict: ``e164`` when dialable, else ``None`` and a one-sentence ``reason``."""

    e164: str | None
    reason: str = ""

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

    region = default_region.upper()
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        number = None
        error = exc
    else:
        error = None

    valid = number is not None and phonenumbers.is_valid_number(number)
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
            if candidate is not None and phonenumbers.is_valid_number(candidate):
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
    return ParsedPhone(phonenumbers.format_number(number, PhoneNumberFormat.E164))


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
    """The region a number claims (``US`` for +1, ``GB`` for +44...), else the default."""
    region = phonenumbers.region_code_for_number(number)
    if not region or region in ("ZZ", "001"):
        region = phonenumbers.region_code_for_country_code(number.country_code or 0)
    if not region or region == "ZZ":
        return default_region
    if region == "001":
        return f"+{number.country_code}"
    return region
