"""Tests for dialer.leads.phones: a phone cell as E.164 or a reason, and region checks."""

from __future__ import annotations

import phonenumbers
import pycountry
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from dialer.errors import ConfigError
from dialer.leads.phones import (
    REASON_EMPTY,
    REASON_EXCEL_NUMBER,
    REASON_FORMULA,
    REASON_NOT_A_NUMBER,
    REASON_SCIENTIFIC,
    REASON_SEVERAL,
    REASON_TOO_LONG,
    REASON_TOO_SHORT,
    ParsedPhone,
    check_region,
    country_region,
    normalize,
    normalize_many,
    normalize_rows,
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


# --- Excel formula damage ------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", ["-2237", "-6989", "-1199", "-9", "-123456", "#NAME?", "#VALUE!", "#REF!", "#ERROR!"]
)
def test_excel_formula_damage_is_named(raw: str) -> None:
    assert normalize(raw, "US") == ParsedPhone(None, REASON_FORMULA)
    assert REASON_FORMULA.startswith("Excel evaluated this number as a formula")


@pytest.mark.parametrize("raw", ["-1234567890", "-", "#", "- 2237"])
def test_other_minus_signs_are_not_called_formula_damage(raw: str) -> None:
    assert normalize(raw, "US").reason != REASON_FORMULA


# --- extensions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "extension"),
    [("201-555-0123 x89", "89"), ("201-555-0123 x58884", "58884"),
     ("(201) 555-0123 ext. 12", "12"), ("201-555-0123", "")],
)  # fmt: skip
def test_the_main_number_is_dialed_and_the_extension_kept(raw: str, extension: str) -> None:
    assert normalize(raw, "US") == ParsedPhone("+12015550123", extension=extension)


# --- each row's country -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "region"),
    [
        ("US", "US"), ("us", "US"), ("U.S.", "US"), ("USA", "US"), ("U.S.A.", "US"),
        ("United States", "US"), ("united states of america", "US"),
        ("Estados Unidos", "US"), ("États-Unis", "US"), ("Etats Unis", "US"),
        ("Vereinigte Staaten", "US"), ("Stati Uniti", "US"),
        ("España", "ES"), ("Espana", "ES"), ("Espagne", "ES"), ("Spanien", "ES"), ("ESP", "ES"),
        ("Deutschland", "DE"), ("Allemagne", "DE"), ("Alemanha", "DE"), ("Germania", "DE"),
        ("UK", "GB"), ("England", "GB"), ("Royaume-Uni", "GB"), ("Reino Unido", "GB"),
        ("Bahamas", "BS"), ("Australia", "AU"), ("Trinidad & Tobago", "TT"),
        ("Slovakia (Slovak Republic)", "SK"), ("  Mexico  ", "MX"), ("México", "MX"),
        ("+34", "ES"), ("44", "GB"),
    ],
)  # fmt: skip
def test_a_country_cell_is_read_as_people_write_it(cell: str, region: str) -> None:
    assert country_region(cell) == (region, "")


def test_a_country_cell_that_names_no_dialable_country_gives_the_reason() -> None:
    assert country_region("") == ("", "")
    assert country_region("Narnia", "Country") == (
        "",
        "unknown country 'Narnia' in column Country: write an ISO code such as US, or fix the cell",
    )
    assert country_region("Korea", "Pais")[1].startswith("unknown country 'Korea' in column Pais")
    region, reason = country_region("Antarctica")  # ISO knows it, phonenumbers does not
    assert region == "" and "(AQ)" in reason and "+ country code" in reason


def rows(*phones: list[str], countries: list[str] | None = None, region: str = "ES"):
    parsed, sources = normalize_rows(list(phones), countries, region)
    return [(p.e164 or p.reason, s) for p, s in zip(parsed, sources, strict=True)]


def test_the_rows_country_decides_and_never_the_default_region() -> None:
    # 612345678 is a valid Spanish number: in a US row it is invalid, not dialed as +34.
    assert rows(["612345678", "201-555-0123", "0412 345 678", "612345678"],
                countries=["US", "United States", "Australia", ""]) == [
        ("invalid number for US", 0), ("+12015550123", 0), ("+61412345678", 0),
        ("+34612345678", 0),
    ]  # fmt: skip


def test_an_explicit_prefix_wins_over_the_country_column() -> None:
    assert rows(["+34 612 345 678", "0034 612 345 678", "+1 201 555 0123"],
                countries=["US", "US", "Narnia"]) == [
        ("+34612345678", 0), ("+34612345678", 0), ("+12015550123", 0),
    ]  # fmt: skip


def test_a_row_whose_country_is_unknown_is_rejected_not_guessed() -> None:
    [(reason, _)] = rows(["612345678"], countries=["Narnia"])
    assert reason.startswith("unknown country 'Narnia' in column Country")


def test_a_bahamas_row_is_invalid_for_bs_not_us() -> None:
    assert rows(["555-867-5309"], countries=["Bahamas"]) == [("invalid number for BS", 0)]


def test_per_row_fallback_over_phone_columns() -> None:
    mobile = ["612345678", "", "abc", "abc", "", "12345"]
    phone = ["699000111", "699000222", "699000333", "", "", ""]
    assert rows(mobile, phone) == [
        ("+34612345678", 0),  # the first column wins when it dials
        ("+34699000222", 1),  # empty first cell: the second
        ("+34699000333", 1),  # invalid first cell: the second
        (REASON_NOT_A_NUMBER, 0),  # none dials: the first non-empty cell's reason
        (REASON_EMPTY, 0),
        ("invalid number for ES", 0),
    ]
    assert rows(["", "12345"], ["abc", ""]) == [
        (REASON_NOT_A_NUMBER, 1),
        ("invalid number for ES", 0),
    ]


def test_one_column_rows_agree_with_normalize_many() -> None:
    cells = ["612345678", "", "+1 201 555 0123 x9", "abc", "-2237"]
    parsed, sources = normalize_rows([cells], None, "ES")
    assert parsed == normalize_many(cells, "ES") and sources == bytearray(len(cells))


# --- property: a row's national number is never dialed with another country's prefix ---------

_COUNTRIES = {c.alpha_2: c for c in pycountry.countries}
_ROW_REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS & set(_COUNTRIES))


def _spellings(region: str) -> list[str]:
    country = _COUNTRIES[region]
    names = [region, region.lower(), country.alpha_3, country.name, country.name.upper()]
    return [*names, getattr(country, "common_name", country.name)]


@settings(max_examples=400, deadline=None)
@given(
    region=st.sampled_from(_ROW_REGIONS),
    kind=st.sampled_from(_TYPES),
    spelling=st.integers(0, 5),
    style=st.sampled_from(["national", "digits"]),
    default=st.sampled_from(["ES", "US", "GB", "MX", "DE"]),
)
def test_a_national_number_is_never_dialed_with_another_countrys_prefix(
    region: str, kind: int, spelling: int, style: str, default: str
) -> None:
    example = phonenumbers.example_number_for_type(region, kind)
    assume(example is not None)
    if style == "national":
        text = phonenumbers.format_number(example, PhoneNumberFormat.NATIONAL)
    else:
        text = phonenumbers.national_significant_number(example)
    assume(not text.lstrip("( ").startswith(("+", "00")))  # that would be an explicit prefix
    country = _spellings(region)[spelling]
    [parsed], _ = normalize_rows([[text]], [country], default)
    code = phonenumbers.country_code_for_region(region)
    if parsed.ok:
        assert parsed.e164.startswith(f"+{code}"), (text, country, parsed)
        assert phonenumbers.parse(parsed.e164).country_code == code
    else:
        assert parsed.reason
