"""Tests for dialer.phones: normalising a phone cell to E.164 or a reason, and region checks."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from dialer.errors import ConfigError
from dialer.phones import (
    REASON_EMPTY,
    REASON_EXCEL_NUMBER,
    REASON_NOT_A_NUMBER,
    REASON_SCIENTIFIC,
    REASON_SEVERAL,
    REASON_TOO_LONG,
    REASON_TOO_SHORT,
    ParsedPhone,
    check_region,
    normalize,
    normalize_many,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+34 612 345 678", "+34612345678"),
        ("612345678", "+34612345678"),
        ("  612345678\t", "+34612345678"),
        ("612.345.678", "+34612345678"),
        ("612-34-56-78", "+34612345678"),
        ("(+34) 633-444-555", "+34633444555"),
        ("0034 622 111 222", "+34622111222"),
        ("(0034) 622 111 222", "+34622111222"),
        ("34612345678", "+34612345678"),  # "+" lost by a spreadsheet
        ("91 123 45 67", "+34911234567"),
        ("+1 415 555 2671", "+14155552671"),
        ("+1 (415) 555-2671", "+14155552671"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+44 (0)20 7946 0958", "+442079460958"),
        ("\u00a0+34\u00a0612\u00a0345\u00a0678\u00a0", "+34612345678"),
    ],
)
def test_accepted_formats(raw: str, expected: str) -> None:
    assert normalize(raw) == ParsedPhone(expected)
    assert normalize(raw).ok


@pytest.mark.parametrize(
    ("raw", "extension"),
    [("612 345 678 ext. 12", "12"), ("612345678 x12", "12"), ("+34 612345678;ext=5", "5"),
     ("612345678 #12", "12")],
)  # fmt: skip
def test_extension_is_kept_apart_and_not_dialed(raw: str, extension: str) -> None:
    assert normalize(raw) == ParsedPhone("+34612345678", extension=extension)


def test_default_region_applies_to_national_numbers() -> None:
    assert normalize("(415) 555-2671", "US").e164 == "+14155552671"
    assert normalize("020 7946 0958", "gb").e164 == "+442079460958"
    assert normalize("+34 612 345 678", "US").e164 == "+34612345678"


def test_double_zero_prefix_outside_regions_that_use_it() -> None:
    # The US international prefix is 011, but "00" is what people in Europe write.
    assert normalize("0034 622 111 222", "US").e164 == "+34622111222"
    # A region's own prefix still works: Australia dials out with 0011.
    assert normalize("0011 34 622 111 222", "AU").e164 == "+34622111222"


@pytest.mark.parametrize("raw", ["", "   ", "\t\n"])
def test_empty(raw: str) -> None:
    assert normalize(raw) == ParsedPhone(None, REASON_EMPTY)


@pytest.mark.parametrize(
    "raw", ["3,46123456E+10", "3.46E+10", "3.4612E10", "6,12346E+08", "3.46123e+10", "3E10"]
)
def test_scientific_notation_is_rejected_not_repaired(raw: str) -> None:
    parsed = normalize(raw)
    assert parsed == ParsedPhone(None, REASON_SCIENTIFIC)
    assert parsed.reason == (
        "phone in scientific notation (digits lost): "
        "format the column as text in the spreadsheet and export again"
    )


@pytest.mark.parametrize("raw", ["612345678.0", "34612345678.0", "612345678,0", "612345678.00"])
def test_excel_float_is_rejected(raw: str) -> None:
    parsed = normalize(raw)
    assert parsed == ParsedPhone(None, REASON_EXCEL_NUMBER)
    assert parsed.reason.startswith("phone stored as a number")


@pytest.mark.parametrize("raw", ["n/a", "abc", "-", "?", "+34"])
def test_not_a_phone_number(raw: str) -> None:
    assert normalize(raw) == ParsedPhone(None, REASON_NOT_A_NUMBER)


def test_unparseable_with_a_precise_cause() -> None:
    assert normalize("00") == ParsedPhone(None, REASON_TOO_SHORT)
    assert normalize("1234567890123456789") == ParsedPhone(None, REASON_TOO_LONG)
    assert normalize("+999 1234567").reason == "not a phone number (unknown country code)"
    for parsed in (normalize("00"), normalize("1234567890123456789")):
        assert parsed.reason.startswith(REASON_NOT_A_NUMBER)


@pytest.mark.parametrize(
    ("raw", "region", "reason"),
    [
        ("12345", "ES", "invalid number for ES"),
        ("61234567", "ES", "invalid number for ES"),  # one digit short
        ("+34 (0) 612 345 678", "ES", "invalid number for ES"),
        ("+1 212 000 0000", "ES", "invalid number for US"),  # region of the number
        ("555 0000", "US", "invalid number for US"),
        ("+800 1234 567", "ES", "invalid number for +800"),  # non-geographic code
    ],
)
def test_invalid_number(raw: str, region: str, reason: str) -> None:
    assert normalize(raw, region) == ParsedPhone(None, reason)


def test_two_numbers_in_one_cell_is_not_an_extension() -> None:
    assert normalize("612345678, 699112233") == ParsedPhone(None, REASON_SEVERAL)


def test_reasons_are_one_short_line() -> None:
    for raw in ["", "3.46E+10", "612345678.0", "abc", "12345", "00", "612345678, 699112233"]:
        reason = normalize(raw).reason
        assert reason and "\n" not in reason and len(reason) < 120


def test_check_region() -> None:
    assert check_region("ES") == "ES"
    assert check_region(" gb ") == "GB"
    assert check_region("us") == "US"


@pytest.mark.parametrize("code", ["XX", "", "ESP", "001", "Spain"])
def test_check_region_rejects_unknown(code: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_region(code)
    assert str(info.value) == (
        f"unknown region '{code}' for --default-region: "
        "use a two-letter country code such as ES, US, GB"
    )


# --- allow_possible ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+34 412 345 678", "ES", "+34412345678"),  # a possible length, no known range
        ("412345678", "ES", "+34412345678"),
        ("+1 212 000 0000", "ES", "+12120000000"),
        ("+44 7700 900123", "ES", "+447700900123"),
        ("0034 412 345 678", "US", "+34412345678"),  # "00" read as "+" here too
        ("+34 412 345 678 ext. 5", "ES", "+34412345678"),
    ],
)
def test_allow_possible_accepts_a_possible_number(raw: str, region: str, expected: str) -> None:
    assert normalize(raw, region).e164 is None  # strict by default
    assert normalize(raw, region, allow_possible=True).e164 == expected


@pytest.mark.parametrize(
    ("raw", "region", "reason"),
    [
        ("12345", "ES", "invalid number for ES"),  # too short to be possible
        ("555 0000", "US", "invalid number for US"),  # possible only for local dialing
        ("+34 (0) 612 345 678", "ES", "invalid number for ES"),  # too long
        ("3.46E+10", "ES", REASON_SCIENTIFIC),
        ("612345678.0", "ES", REASON_EXCEL_NUMBER),
        ("abc", "ES", REASON_NOT_A_NUMBER),
        ("", "ES", REASON_EMPTY),
        ("+34 412345678, 622111222", "ES", REASON_SEVERAL),
    ],
)
def test_allow_possible_still_rejects(raw: str, region: str, reason: str) -> None:
    assert normalize(raw, region, allow_possible=True) == ParsedPhone(None, reason)


def test_allow_possible_prefers_a_valid_reading() -> None:
    # Valid numbers come out exactly as in strict mode.
    for raw in ["612345678", "0034 622 111 222", "+1 415 555 2671", "+44 20 7946 0958"]:
        assert normalize(raw, allow_possible=True) == normalize(raw)


def test_normalize_many_keeps_order_and_results() -> None:
    raws = ["612345678", "", "abc", "612345678", "+34 412 345 678", "3.46E+10", ""]
    assert normalize_many(raws) == [normalize(raw) for raw in raws]
    assert normalize_many(raws, "US", allow_possible=True) == [
        normalize(raw, "US", allow_possible=True) for raw in raws
    ]
    assert normalize_many([]) == []


# --- property: phonenumbers' own formats of a valid number come back as the same E.164 --------

_TYPES = [
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST,
    PhoneNumberType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER,
    PhoneNumberType.UAN,
]
_REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)


@st.composite
def valid_numbers(draw: st.DrawFn) -> phonenumbers.PhoneNumber:
    """A valid number: a region's example number with its last digits changed."""
    example = phonenumbers.example_number_for_type(
        draw(st.sampled_from(_REGIONS)), draw(st.sampled_from(_TYPES))
    )
    assume(example is not None)
    digits = draw(st.integers(min_value=0, max_value=3))
    modulus = 10**digits
    national = example.national_number - example.national_number % modulus
    number = phonenumbers.PhoneNumber(
        country_code=example.country_code,
        national_number=national + draw(st.integers(0, modulus - 1)),
        italian_leading_zero=example.italian_leading_zero,
        number_of_leading_zeros=example.number_of_leading_zeros,
    )
    assume(phonenumbers.is_valid_number(number))
    return number


@settings(max_examples=300, deadline=None)
@given(
    number=valid_numbers(),
    style=st.sampled_from(
        [PhoneNumberFormat.NATIONAL, PhoneNumberFormat.INTERNATIONAL, PhoneNumberFormat.E164]
    ),
    other_region=st.sampled_from(_REGIONS),
)
def test_formatted_valid_numbers_normalize_back(
    number: phonenumbers.PhoneNumber, style: int, other_region: str
) -> None:
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    text = phonenumbers.format_number(number, style)
    # A national number only means something in its own region; the others carry their code.
    if style == PhoneNumberFormat.NATIONAL:
        region = phonenumbers.region_code_for_number(number)
    else:
        region = other_region
    assert normalize(text, region) == ParsedPhone(e164)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.sampled_from(["ES", "US", "GB", "MX"]))
def test_any_text_gives_a_verdict(raw: str, region: str) -> None:
    parsed = normalize(raw, region)
    if parsed.e164 is None:
        assert parsed.reason
    else:
        assert parsed.reason == ""
        assert parsed.e164.startswith("+") and parsed.e164[1:].isdigit()
        assert phonenumbers.is_valid_number(phonenumbers.parse(parsed.e164))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.sampled_from(["ES", "US", "GB", "MX"]))
def test_allow_possible_only_widens(raw: str, region: str) -> None:
    strict = normalize(raw, region)
    loose = normalize(raw, region, allow_possible=True)
    if strict.ok:
        assert loose == strict
    if loose.ok:
        number = phonenumbers.parse(loose.e164)
        assert phonenumbers.is_possible_number(number)
