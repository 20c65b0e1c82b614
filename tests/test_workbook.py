"""Tests for dialer.leads.workbook: Excel workbooks as text, via ``open_sheet`` and the loader."""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from dialer.errors import LeadsFileError
from dialer.leads.loader import load_leads
from dialer.leads.phones import REASON_EXCEL_NUMBER, REASON_SCIENTIFIC
from dialer.leads.sheets import open_sheet
from dialer.model import Lead, Status


def make_xlsx(
    path: Path,
    *sheets_rows: tuple[str, list[list[Any]]],
    formats: dict[str, str] | None = None,
    start: str = "A1",
) -> Path:
    """A workbook written by openpyxl: (title, rows) per sheet; ``formats`` by cell of sheet 1."""
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for number, (title, rows) in enumerate(sheets_rows):
        sheet = workbook.create_sheet(title)
        first = sheet[start]
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                if value is not None:
                    sheet.cell(row=first.row + r, column=first.column + c, value=value)
        if number == 0:
            for reference, code in (formats or {}).items():
                sheet[reference].number_format = code
    workbook.save(path)
    return path


def write(tmp_path: Path, text: str, name: str = "leads.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


# --- workbooks ------------------------------------------------------------------------------------


def test_xlsx_cells_come_out_as_text(tmp_path: Path) -> None:
    path = make_xlsx(
        tmp_path / "leads.xlsx",
        (
            "Leads",
            [
                ["Nombre", "Teléfono", "CP", "Alta", "Cita", "Hora", "VIP", "Nota", "Importe"],
                ["José", 34612345678, "08001", dt.date(2024, 3, 5), None, None, True, 7, 0.5],
                ["Ana", 622111222, 8001, None, dt.datetime(2024, 3, 5, 10, 30), None, False],
                ["Luis", "+34 633 444 555", None, None, None, dt.time(9, 15), None, None, 1250.75],
            ],
        ),
    )
    result = load_leads(path)
    assert (result.encoding, result.delimiter, result.sheet) == ("xlsx", "", "Leads")
    assert result.phone_column == "Teléfono"
    assert result.leads == [
        Lead(
            2,
            "+34612345678",  # typed as a number: its digits, not 34612345678.0 or 3.46E+10
            {"Nombre": "José", "CP": "08001", "Alta": "2024-03-05", "VIP": "TRUE"}
            | {"Nota": "7", "Importe": "0.5"},
        ),
        Lead(
            3,
            "+34622111222",
            {"Nombre": "Ana", "CP": "8001", "Cita": "2024-03-05T10:30:00", "VIP": "FALSE"},
        ),
        Lead(4, "+34633444555", {"Nombre": "Luis", "Hora": "09:15:00", "Importe": "1250.75"}),
    ]


def test_xlsx_numbers_that_lost_digits_are_rejected(tmp_path: Path) -> None:
    # What Excel stores when it reads "3,46123456E+10" from a CSV: the number 34612345600 with
    # the scientific format. Read as it shows, the phone rule rejects it instead of dialing
    # +34 612 345 600, someone else's phone.
    path = make_xlsx(
        tmp_path / "leads.xlsx",
        (
            "Leads",
            [
                ["name", "phone", "amount"],
                ["sci", 3.46123456e10, 1.5e6],
                ["sci3", 3.46123456e10, None],
                ["text", "3,46123456E+10", None],
                ["huge", 1234567890123456789, None],
                ["float", 612345678.5, None],
                ["ok", 34612345678, None],
            ],
        ),
        formats={"B2": "0.00E+00", "C2": "0.00E+00", "B3": "0.000E+00"},
    )
    result = load_leads(path)
    assert [(lead.phone, lead.status, lead.reason) for lead in result.leads] == [
        ("3.46E+10", Status.INVALID, REASON_SCIENTIFIC),
        ("3.461E+10", Status.INVALID, REASON_SCIENTIFIC),
        ("3,46123456E+10", Status.INVALID, REASON_SCIENTIFIC),
        ("1.234567890123457e+18", Status.INVALID, REASON_SCIENTIFIC),  # 16+ digits
        ("612345678.5", Status.INVALID, "invalid number for ES"),
        ("+34612345678", Status.PENDING, ""),
    ]
    assert result.leads[0].params == {"name": "sci", "amount": "1.50E+06"}  # as Excel shows it


def test_xlsx_scientific_cells_found_right_of_column_a(tmp_path: Path) -> None:
    path = make_xlsx(
        tmp_path / "leads.xlsm",  # a macro-enabled workbook reads the same
        ("Leads", [["name", "phone"], ["Ana", 3.46123456e10], ["Luis", 34622111222]]),
        formats={"D4": "0.00E+00"},
        start="C3",
    )
    assert [(lead.row, lead.phone) for lead in load_leads(path).leads] == [
        (4, "3.46E+10"),
        (5, "+34622111222"),
    ]


def test_xlsx_float_with_point_zero_text_is_caught(tmp_path: Path) -> None:
    path = make_xlsx(tmp_path / "leads.xlsx", ("S", [["phone"], ["612345678.0"]]))
    assert load_leads(path).leads[0].reason == REASON_EXCEL_NUMBER


def test_xlsx_first_sheet_or_named_one(tmp_path: Path) -> None:
    path = make_xlsx(
        tmp_path / "leads.xlsx",
        ("Leads", [["phone", "name"], ["612345678", "Ana"]]),
        ("Otros", [["móvil", "name"], ["622111222", "Luis"]]),
    )
    assert load_leads(path).leads == [Lead(2, "+34612345678", {"name": "Ana"})]
    for name in ("Otros", " otros "):
        result = load_leads(path, sheet=name)
        assert result.sheet == "Otros"
        assert result.leads == [Lead(2, "+34622111222", {"name": "Luis"})]


def test_xlsx_unknown_sheet(tmp_path: Path) -> None:
    path = make_xlsx(tmp_path / "leads.xlsx", ("A", [["phone"]]), ("B", [["phone"]]))
    with pytest.raises(LeadsFileError) as info:
        load_leads(path, sheet="X")
    assert str(info.value) == "leads.xlsx: no sheet 'X' (sheets: A, B)"


def test_xlsx_rows_keep_the_sheets_numbers(tmp_path: Path) -> None:
    # Data placed from C3: blank rows above the header and blank rows between leads.
    path = make_xlsx(
        tmp_path / "leads.xlsx",
        (
            "Leads",
            [
                ["name", "phone", None],
                ["Ana", "612345678", None],
                [None, None, None],
                ["Luis", "622111222", "x"],
            ],
        ),
        start="C3",
    )
    result = load_leads(path)
    assert [(lead.row, lead.phone) for lead in result.leads] == [
        (4, "+34612345678"),
        (6, "+34622111222"),
    ]
    assert result.warnings == [
        "column 5 has values but no header: its values are not sent",
        "1 empty row(s) skipped",
    ]


def test_xlsx_empty_sheet(tmp_path: Path) -> None:
    path = make_xlsx(tmp_path / "leads.xlsx", ("Leads", []))
    with pytest.raises(LeadsFileError) as info:
        load_leads(path)
    assert str(info.value) == "leads.xlsx: sheet 'Leads' is empty"


def test_xlsx_not_a_workbook(tmp_path: Path) -> None:
    renamed = write(tmp_path, "phone\n612345678\n", name="leads.xlsx")
    with pytest.raises(LeadsFileError) as info:
        load_leads(renamed)
    assert str(info.value) == "leads.xlsx: not an .xlsx workbook (is it a CSV renamed .xlsx?)"


def test_xlsx_old_excel_file_renamed(tmp_path: Path) -> None:
    path = tmp_path / "leads.xlsx"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512))
    with pytest.raises(LeadsFileError) as info:
        load_leads(path)
    assert str(info.value) == (
        "leads.xlsx: not an .xlsx workbook (an Excel 97-2003 file, or password-protected): "
        "save it as .xlsx without a password"
    )


def test_xlsx_corrupt(tmp_path: Path) -> None:
    whole = make_xlsx(tmp_path / "whole.xlsx", ("Leads", [["phone"], ["612345678"]]))
    truncated = tmp_path / "leads.xlsx"
    truncated.write_bytes(whole.read_bytes()[:600])
    with pytest.raises(LeadsFileError) as info:
        load_leads(truncated)
    message = str(info.value)
    assert message.startswith("leads.xlsx: not a readable .xlsx workbook (")
    assert "\n" not in message

    other_zip = tmp_path / "other.xlsx"
    with zipfile.ZipFile(other_zip, "w") as package:
        package.writestr("hello.txt", "not a workbook")
    with pytest.raises(LeadsFileError, match=r"^other\.xlsx: not a readable \.xlsx workbook \("):
        load_leads(other_zip)


def test_xls_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(LeadsFileError) as info:
        load_leads(write(tmp_path, "phone\n", name="Leads.XLS"))
    assert str(info.value) == (
        "Leads.XLS: .xls files (Excel 97-2003) are not supported: save it as .xlsx or CSV UTF-8"
    )


def test_options_that_do_not_apply_are_warned_about(tmp_path: Path) -> None:
    workbook = make_xlsx(tmp_path / "leads.xlsx", ("Leads", [["phone"], ["612345678"]]))
    result = load_leads(workbook, encoding="cp1252", delimiter=";")
    assert result.warnings == [
        "--encoding cp1252 ignored: a workbook has no text encoding",
        "--delimiter ignored: a workbook has no delimiter",
    ]
    text = load_leads(write(tmp_path, "phone\n612345678\n"), sheet="Leads")
    assert text.warnings == ["--sheet Leads ignored: leads.csv is not a workbook"]


def test_open_sheet_chunks(tmp_path: Path) -> None:
    path = make_xlsx(tmp_path / "leads.xlsx", ("Leads", [["phone"], *([str(i)] for i in range(5))]))
    with open_sheet(path, chunk_rows=2) as sheet:
        assert (sheet.header, sheet.header_row, sheet.title) == (["phone"], 1, "Leads")
        assert list(sheet.chunks) == [(2, [["0"], ["1"]]), (4, [["2"], ["3"]]), (6, [["4"]])]
