"""LeadRows: the loaded leads kept compactly behave as a read-only list of ``Lead``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialer.leads.leadrows import LeadRows
from dialer.leads.loader import ColumnMapping, load_leads
from dialer.model import Lead, Status


def write(tmp_path: Path, text: str, name: str = "leads.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_lead_rows_behave_as_a_read_only_list(tmp_path: Path) -> None:
    path = write(tmp_path, 'id,note,phone\n1,"a\x1fb",612345678\n2,,12345\n3,x,612345678\n')
    leads = load_leads(path, ColumnMapping(id_column="id")).leads
    assert isinstance(leads, LeadRows)
    every = [
        Lead(2, "+34612345678", {"note": "a\x1fb"}, crm_id="1"),  # the separator, kept aside
        Lead(3, "12345", {}, Status.INVALID, "invalid number for ES", "2"),
        Lead(4, "+34612345678", {"note": "x"}, Status.DUPLICATE, "same phone as row 2", "3"),
    ]
    assert leads == every
    assert every == leads
    assert leads != every[:2]
    assert len(leads) == 3
    assert leads[-1] == every[-1]
    assert leads[1:] == every[1:]
    assert list(reversed(leads)) == every[::-1]
    assert [leads[i] for i in range(3)] == list(leads)
    assert every[1] in leads
    with pytest.raises(IndexError):
        leads[3]
    assert repr(leads) == repr(every)
    assert leads.counts() == {"pending": 1, "invalid": 1, "duplicate": 1}


def test_lead_rows_with_no_params(tmp_path: Path) -> None:
    leads = load_leads(write(tmp_path, "phone\n612345678\n\n612345678\nabc\n")).leads
    assert leads == [
        Lead(2, "+34612345678"),
        Lead(4, "+34612345678", {}, Status.DUPLICATE, "same phone as row 2"),
        Lead(5, "abc", {}, Status.INVALID, "not a phone number"),
    ]


def test_pending_keys_and_indices_build_no_lead(tmp_path: Path, monkeypatch) -> None:
    leads = load_leads(write(tmp_path, "phone\n612345678\nabc\n612345679\n612345678\n")).leads
    assert isinstance(leads, LeadRows)

    def no_lead(*args):
        raise AssertionError("a Lead was built")

    monkeypatch.setattr(LeadRows, "__getitem__", no_lead)
    monkeypatch.setattr(LeadRows, "__iter__", no_lead)
    assert list(leads.pending_keys()) == [(0, "+34612345678"), (2, "+34612345679")]
    assert list(leads.indices({Status.INVALID, Status.DUPLICATE})) == [1, 3]
    assert leads.counts() == {"pending": 2, "invalid": 1, "duplicate": 1}


def test_dump_and_restore_give_equal_leads(tmp_path: Path) -> None:
    path = write(tmp_path, 'id,note,phone\n1,"a\x1fb",612345678\n2,,12345\n3,x,612345678\n')
    leads = load_leads(path, ColumnMapping(id_column="id")).leads
    assert isinstance(leads, LeadRows)
    again = LeadRows.restore(leads.dump())
    assert again == leads and list(again) == list(leads)


def test_the_phone_column_and_extension_of_each_row_survive_dump_and_restore(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "Name,Mobile,Phone,Country\n"
                 "A,,201-555-0123 x89,US\n"
                 "B,612345678,,\n"
                 "C,abc,12345,ES\n")  # fmt: skip
    loaded = load_leads(path, ColumnMapping(phone_column="Mobile,Phone"))
    leads = loaded.leads
    assert isinstance(leads, LeadRows)
    expected = [
        Lead(2, "+12015550123", {"Name": "A", "Country": "US", "extension": "89"},
             phone_column="Phone"),
        Lead(3, "+34612345678", {"Name": "B"}, phone_column="Mobile"),
        Lead(4, "abc", {"Name": "C", "Country": "ES"}, Status.INVALID, "not a phone number",
             phone_column="Mobile"),
    ]  # fmt: skip
    assert list(leads) == expected and [leads[i] for i in range(3)] == expected
    assert LeadRows.restore(leads.dump()) == expected
    assert loaded.param_names == ["Name", "Country", "extension"]
    assert loaded.countries == {"US": 1, "": 1, "ES": 1}


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.sampled_from(["612345678", "+34 612 345 678", "622111222", "6330", "abc"]),
                  st.sampled_from(["", "Ana"])),
        max_size=25,
    )
)  # fmt: skip
def test_duplicates_follow_the_rule(tmp_path: Path, rows: list[tuple[str, str]]) -> None:
    """Only pending rows claim a number; a later pending or missing-param row with a claimed
    number is a duplicate of the first row that claimed it (checked against a plain loop)."""
    text = "phone,name\n" + "".join(f"{phone},{name}\n" for phone, name in rows)
    leads = load_leads(write(tmp_path, text), ColumnMapping(require=("name",))).leads
    assert isinstance(leads, LeadRows)
    owner: dict[str, int] = {}
    expected = []
    for number, (phone, name) in enumerate(rows, start=2):
        e164 = "+34" + phone.replace("+34", "").replace(" ", "")
        if len(e164) != 12:
            expected.append(Status.INVALID)
        elif e164 in owner:
            expected.append(f"same phone as row {owner[e164]}")
        elif not name:
            expected.append(Status.MISSING_PARAM)
        else:
            owner[e164] = number
            expected.append(Status.PENDING)
    got = [lead.reason if lead.status is Status.DUPLICATE else lead.status for lead in leads]
    assert got == expected
    assert leads.counts() == dict(Counter(lead.status.value for lead in leads))
    pending = [i for i, lead in enumerate(leads) if lead.status is Status.PENDING]
    assert list(leads.indices({Status.PENDING})) == pending


@pytest.mark.parametrize("bulk", [True, False])
def test_pending_batches_are_pending_keys_in_batches_as_numbers(tmp_path: Path, monkeypatch, bulk):
    """The planner's batches: the same indexes and keys as ``pending_keys``, in order, cut
    every ``size`` leads; in a big file the keys as numbers (``PhoneKeys``) read back as the
    same text, in a small one as text (no numpy imported for a few leads)."""
    from dialer.leads import leadrows
    from dialer.model import PhoneKeys

    monkeypatch.setattr(leadrows, "BULK_KEYS", 1 if bulk else 4096)

    lines = ["name,phone"]
    for row in range(2, 30):  # every fifth phone is no number: an invalid row, not pending
        lines.append(f"L{row},{'none' if row % 5 == 0 else f'+34 600 00{row:04d}'}")
    path = tmp_path / "leads.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    leads = load_leads(path).leads
    assert isinstance(leads, LeadRows)
    expected = list(leads.pending_keys())
    batches = list(leads.pending_batches(4))
    assert all(isinstance(keys, PhoneKeys) is bulk for _, keys in batches)
    assert [len(keys) for _, keys in batches][:-1] == [4] * (len(batches) - 1)
    got = [(i, key) for indexes, keys in batches for i, key in zip(indexes, keys, strict=True)]
    assert got == expected and len(expected) == 23
    assert [keys[0] for _, keys in batches] == [next(iter(keys)) for _, keys in batches]
