"""The results CSV: reading it back, and cells made safe for spreadsheets."""

from __future__ import annotations

import csv

import pytest

from dialer.errors import LedgerError
from dialer.model import Lead, Status
from dialer.store.ledger import Ledger
from dialer.store.results import read_results


def rows(path):
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def test_read_results_keeps_the_last_row_per_lead(tmp_path):
    out = tmp_path / "r.csv"
    out.write_text(
        "row,phone,status,call_id,attempts,error,updated_at\r\n"
        "2,+34612345678,in_doubt,,1,lost,\r\n"
        "2,+34612345678,called,c-1,1,,\r\n",
        encoding="utf-8",
    )
    [entry] = read_results(out)
    assert entry.status is Status.CALLED and entry.call_id == "c-1"
    assert read_results(tmp_path / "missing.csv") == []


def test_a_foreign_csv_is_not_taken_for_results(tmp_path):
    out = tmp_path / "leads.csv"
    out.write_text("name,phone\nAna,+34612345678\n", encoding="utf-8")
    with pytest.raises(LedgerError, match="not a dialer results file"):
        read_results(out)


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+34 612 =1+1", "'+34 612 =1+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("+34612345678", "+34612345678"),  # a clean E.164 phone stays readable
        ("José", "José"),
        ("", ""),
    ],
)
def test_cells_from_the_input_are_neutralised(tmp_path, cell, written):
    out = tmp_path / "r.csv"
    lead = Lead(5, cell, status=Status.INVALID, reason="invalid", crm_id=cell)
    with Ledger(out) as ledger:
        ledger.record_load(lead)
    [row] = rows(out)
    assert row["phone"] == written and row["crm_id"] == written


def test_times_are_written_in_utc_with_z_and_read_back_with_or_without_an_offset():
    from datetime import UTC, datetime

    from dialer.store.results import parse_utc, utc_iso

    assert utc_iso(1764064800.7) == "2025-11-25T10:00:00Z"
    assert parse_utc("2025-11-25T10:00:00Z") == datetime(2025, 11, 25, 10, tzinfo=UTC)
    assert parse_utc(" 2025-11-25T11:00:00+01:00 ") == datetime(2025, 11, 25, 10, tzinfo=UTC)
    assert parse_utc("2025-11-25 10:00:00") == datetime(2025, 11, 25, 10, tzinfo=UTC)
    assert parse_utc("") is None and parse_utc("-") is None and parse_utc("soon") is None
    assert parse_utc(utc_iso()) is not None
