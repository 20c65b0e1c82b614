"""The loader's fast paths give what the plain per-row paths give.

``_clean`` keeps a chunk's rows as read when no cell has white space around it or a CRLF in
it (one search a chunk); ``LeadRows.add_chunk`` gathers a chunk's rows and adds them to its
arrays at once, with each row's end computed from character counts when the chunk is ASCII.
Both are checked against the plain rule, written out here, on generated cells that mix the
cases the fast paths must notice: white space of every kind, CRLF, NUL, the row separator,
text that is not ASCII. ``phones.is_valid`` answers as ``phonenumbers.is_valid_number`` does, for
every region's example numbers, their near misses, and any digits under any country code.
Duplicates are found with numpy in a big file: the same pairs as the plain dict pass.
"""

from __future__ import annotations

from array import array

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.leads import leadrows, loader, phones
from dialer.leads.leadrows import LeadRows, RowPlan
from dialer.model import Lead, Status

# Cells built from the characters that matter to the fast paths, and plain ones.
_CHARS = st.sampled_from(["a", "7", " ", "\t", "\r", "\n", "\x00", "\x1f", "\u00a0", "é", "\u3000"])
CELLS = st.text(_CHARS, max_size=5) | st.sampled_from(["", "x", "Ana", "612345678"])


def plain_clean(first_row: int, rows: list[list[str]]) -> tuple[list, int]:
    """``_clean``'s rule, a cell at a time: CRLF as LF, white space around trimmed, an empty
    row skipped and counted."""
    kept, blank = [], 0
    for offset, cells in enumerate(rows):
        values = [cell.replace("\r\n", "\n").strip() for cell in cells]
        if any(values):
            kept.append((first_row + offset, values))
        else:
            blank += 1
    return kept, blank


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(CELLS, min_size=3, max_size=3), max_size=8))
def test_a_chunk_kept_as_read_is_what_trimming_each_cell_gives(rows: list[list[str]]) -> None:
    expected = plain_clean(5, [list(cells) for cells in rows])
    seen: set[int] = set()
    assert loader._clean(5, [list(cells) for cells in rows], [], seen, {}) == expected


def test_a_clean_chunk_is_kept_as_read_and_a_padded_one_is_not() -> None:
    assert loader._already_clean([["a b", "c"], ["", "+34 612 345 678"]])
    for padded in (" a", "a ", "a\u00a0", "\ta", "a\r\nb", "a\n"):
        assert not loader._already_clean([["x", padded], ["y", "z"]]), repr(padded)


ROW = st.tuples(
    st.sampled_from(["+34612345678", "+34612345679", "+34612345678x12", "invalid number for ES"]),
    st.lists(CELLS, min_size=3, max_size=3),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(ROW, max_size=6), max_size=4))
def test_rows_added_a_chunk_at_a_time_read_back_as_each_row_says(chunks: list) -> None:
    """id, two params, the phone: each row's Lead is what its cells and verdict say, read by
    iteration, by index and after a dump and restore (ASCII chunks and others alike)."""
    plan = RowPlan(phones=(3,), id_index=0, params=[(1, "a"), (2, "b")], required=[],
                   unnamed=[], sent=[0, 1, 2])  # fmt: skip
    leads = LeadRows(["a", "b"], has_id=True)
    expected: list[Lead] = []
    row = 2
    for chunk in chunks:
        kept = []
        for verdict, (crm, a, b) in chunk:
            raw = "612 345 678"
            kept.append((row, [crm, a, b, raw]))
            params = {name: value for name, value in (("a", a), ("b", b)) if value}
            if verdict.startswith("+"):
                phone, _, extension = verdict.partition("x")
                if extension:
                    params.setdefault("extension", extension)
                expected.append(Lead(row, phone, params, crm_id=crm))
            else:
                expected.append(Lead(row, raw, params, Status.INVALID, verdict, crm))
            row += 1
        leads.add_chunk(kept, [verdict for verdict, _ in chunk], plan, None)
    assert list(leads) == expected
    assert [leads[i] for i in range(len(leads))] == expected
    assert list(LeadRows.restore(leads.dump())) == expected


# --- phones.is_valid: phonenumbers.is_valid_number's answer, cheaper -----------------------------

_CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


def _examples() -> list[phonenumbers.PhoneNumber]:
    """An example number of every type of every region (valid ones, to be sure of the True
    side), and each with its last digit changed and one digit more or less."""
    found = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in phonenumbers.PhoneNumberType.values():
            number = phonenumbers.example_number_for_type(region, kind)
            if number is None:
                continue
            nsn = phonenumbers.national_significant_number(number)
            for digits in (nsn, nsn[:-1] + str((int(nsn[-1]) + 3) % 10), nsn + "5", nsn[:-1]):
                found.append(phonenumbers.PhoneNumber(country_code=number.country_code,
                                                      national_number=int(digits)))  # fmt: skip
            found.append(number)
    return found


def test_every_regions_example_numbers_and_near_misses_judged_as_phonenumbers_does() -> None:
    examples = _examples()
    assert sum(phonenumbers.is_valid_number(n) for n in examples) > 1000
    assert [phones.is_valid(n) for n in examples] == [
        phonenumbers.is_valid_number(n) for n in examples
    ]


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(_CODES), st.text("0123456789", min_size=1, max_size=17), st.booleans())
def test_any_number_judged_as_phonenumbers_does(code: int, digits: str, zero: bool) -> None:
    number = phonenumbers.PhoneNumber(country_code=code, national_number=int(digits),
                                      italian_leading_zero=zero or None)  # fmt: skip
    assert phones.is_valid(number) == phonenumbers.is_valid_number(number)


# --- duplicates: found with numpy in a big file, with a dict in a small one -------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0, 1, 3, 4]), st.integers(0, 6)), max_size=60))
def test_duplicates_found_in_bulk_are_those_the_plain_pass_finds(rows: list) -> None:
    """Codes pending (0), invalid (1), dnc (3), missing param (4) over a few numbers: the
    same ``(row, first claimant)`` pairs either way, blocks of 8 rows in bulk."""
    codes = bytearray(code for code, _ in rows)
    numbers = array("q", [number for _, number in rows])
    expected = list(leadrows._claimed(codes, numbers))
    assert all(codes[first] == 0 and first < i for i, first in expected)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(leadrows, "_BLOCK", 8)
        assert list(leadrows._claimed_in_bulk(codes, numbers)) == expected
