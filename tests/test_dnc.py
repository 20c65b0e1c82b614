"""Tests for the do-not-call list: load_dnc, and leads on it marked ``dnc`` at load time."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest

from dialer.errors import ColumnError, LeadsFileError
from dialer.leads.loader import REASON_DNC, ColumnMapping, DncList, load_dnc, load_leads
from dialer.model import Status


def write(tmp_path: Path, text: str, name: str = "dnc.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_headed_csv_with_other_columns(tmp_path: Path) -> None:
    text = (
        "Nombre;Teléfono;Fecha baja\r\n"
        "Ana;+34 612 345 678;2024-01-02\r\n"
        "Luis;0034 622 111 222;2024-01-03\r\n"
        "Eva;612-34-56-78;2024-01-04\r\n"  # the same as Ana's, written another way
        "\r\n"  # an empty row: ignored, not skipped
        "Bea;12345;2024-01-05\r\n"
        "Io;;2024-01-06\r\n"
    )
    dnc = load_dnc(write(tmp_path, text, encoding="cp1252"))
    assert dnc == DncList(frozenset({"+34612345678", "+34622111222"}), 2, tmp_path / "dnc.csv")
    assert "+34612345678" in dnc
    assert len(dnc) == 2


def test_plain_list_without_header(tmp_path: Path) -> None:
    text = "612345678\n+34 622 111 222\n0034633444555\n(415) 555-2671\nabc\n\n+1 415 555 2671\n"
    dnc = load_dnc(write(tmp_path, text, name="dnc.txt"))
    assert dnc.numbers == {"+34612345678", "+34622111222", "+34633444555", "+14155552671"}
    assert dnc.skipped == 2  # "(415) 555-2671" is not Spanish, "abc" is no number
    us = load_dnc(tmp_path / "dnc.txt", default_region="US")
    assert "+14155552671" in us
    assert us.skipped == 2  # now "612345678" is the one that does not parse, with "abc"


def test_single_column_with_a_title_or_a_broken_first_number(tmp_path: Path) -> None:
    titled = load_dnc(write(tmp_path, "Números bloqueados\n612345678\n"))
    assert (titled.numbers, titled.skipped) == (frozenset({"+34612345678"}), 0)
    broken = load_dnc(write(tmp_path, "61234 56\n612345678\n"))
    assert (broken.numbers, broken.skipped) == (frozenset({"+34612345678"}), 1)


def test_headerless_several_columns(tmp_path: Path) -> None:
    dnc = load_dnc(write(tmp_path, "Ana,612345678,x\nLuis,622111222,y\n"))
    assert dnc.numbers == {"+34612345678", "+34622111222"}


def test_possible_numbers_are_kept(tmp_path: Path) -> None:
    # Not valid for phonenumbers, but of a possible length: blocking it costs nothing.
    dnc = load_dnc(write(tmp_path, "phone\n+34 412 345 678\n"))
    assert dnc.numbers == {"+34412345678"}


def test_xlsx_list_with_numbers_as_numbers(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    workbook.active.title = "Resumen"
    sheet = workbook.create_sheet("Bajas")
    for row in (["Móvil"], [612345678], [34622111222], ["+34 633 444 555"]):
        sheet.append(row)
    workbook.save(tmp_path / "dnc.xlsx")
    dnc = load_dnc(tmp_path / "dnc.xlsx", sheet="Bajas")
    assert dnc.numbers == {"+34612345678", "+34622111222", "+34633444555"}
    with pytest.raises(LeadsFileError, match=r"^dnc\.xlsx: sheet 'Resumen' is empty$"):
        load_dnc(tmp_path / "dnc.xlsx")


def test_column_errors(tmp_path: Path) -> None:
    with pytest.raises(ColumnError) as info:
        load_dnc(write(tmp_path, "phone,mobile\n612345678,622111222\n"))
    assert (
        str(info.value) == "dnc.csv: several phone columns (phone, mobile) in the do-not-call list"
    )
    with pytest.raises(ColumnError) as info:
        load_dnc(write(tmp_path, "name,city\nAna,Soria\n"))
    assert str(info.value) == (
        "dnc.csv: no phone column found in the do-not-call list (columns: name, city)"
    )
    with pytest.raises(LeadsFileError, match=r"^missing\.csv: file not found$"):
        load_dnc(tmp_path / "missing.csv")


# --- leads on the list ----------------------------------------------------------------------------


def test_leads_on_the_list_are_dnc(tmp_path: Path) -> None:
    dnc = load_dnc(write(tmp_path, "612 345 678\n", name="dnc.txt"))
    leads = write(
        tmp_path,
        "name,phone\n"
        "Ana,0034612345678\n"  # on the list, written another way
        "Luis,622111222\n"
        "Eva,+34 612-345-678\n"  # on the list again: dnc, not duplicate
        "Bea,12345\n",  # invalid first, whatever the list says
        name="leads.csv",
    )
    result = load_leads(leads, dnc=dnc)
    assert [(lead.row, lead.phone, lead.status, lead.reason) for lead in result.leads] == [
        (2, "+34612345678", Status.DNC, REASON_DNC),
        (3, "+34622111222", Status.PENDING, ""),
        (4, "+34612345678", Status.DNC, REASON_DNC),
        (5, "12345", Status.INVALID, "invalid number for ES"),
    ]
    assert REASON_DNC == "on the do-not-call list"
    assert result.counts() == {"pending": 1, "invalid": 1, "dnc": 2}
    assert result.leads[0].key == "row:2"
    # A plain set of E.164 numbers works the same.
    assert list(load_leads(leads, dnc=frozenset(dnc.numbers)).leads) == list(result.leads)
    assert load_leads(leads, dnc={"+34622111222"}).leads[1].status is Status.DNC


def test_dnc_beats_missing_param_and_keeps_params(tmp_path: Path) -> None:
    leads = write(tmp_path, "name,phone,id\n,612345678,A1\n", name="leads.csv")
    result = load_leads(
        leads, ColumnMapping(id_column="id", require=("name",)), dnc={"+34612345678"}
    )
    lead = result.leads[0]
    assert (lead.status, lead.reason, lead.crm_id) == (Status.DNC, REASON_DNC, "A1")


def test_possible_number_on_the_list_blocks_an_allowed_possible_lead(tmp_path: Path) -> None:
    dnc = load_dnc(write(tmp_path, "+34 412 345 678\n", name="dnc.txt"))
    leads = write(tmp_path, "phone\n412345678\n", name="leads.csv")
    assert load_leads(leads, dnc=dnc).leads[0].status is Status.INVALID
    assert load_leads(leads, dnc=dnc, allow_possible=True).leads[0].status is Status.DNC
