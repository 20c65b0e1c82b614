"""End to end, lead files as the tools really write them, through the installed CLI.

Each fixture is the bytes Excel, LibreOffice or a CRM export produce (Windows-1252 with
semicolons and CRLF, a BOM glued to the header, UTF-16 "Unicode text", quoted newlines, an
Excel-mangled phone column). The dry run's preview is compared line by line; a real run
against the simulator shows what reached the API, from the simulator's own record.
"""

from __future__ import annotations

import pytest

from tests.conftest import read_rows, run_cli

# Excel "CSV (separado por punto y coma)" on a Spanish Windows: cp1252, ';', CRLF.
SPAIN = (
    "Nombre;Teléfono;Programa;Id CRM\r\n"
    "José;612 34 56 78;Grado en Economía;A-1\r\n"
    "María;+34 (622) 11-12-22;Máster;A-2\r\n"
    '"Peña; Luis";0034.633.444.555;"Doble\r\nlínea";A-3\r\n'
    "Ana;3,46123456E+10;Grado;A-4\r\n"
    "Bea;612345678 ext. 12;Grado;A-5\r\n"
    'Carla;911 23 45 67;=HYPERLINK("http://x");=1+2\r\n'
).encode("cp1252")


def dry_run(path, *flags: str):
    proc = run_cli("run", str(path), "--playbook", "pb", "--dry-run", *flags, token=None)
    assert "Traceback" not in proc.stdout + proc.stderr
    return proc


def test_a_spanish_excel_csv_is_read_with_its_accents_delimiter_and_mangled_phones(tmp_path):
    path = tmp_path / "leads.csv"
    path.write_bytes(SPAIN)
    proc = dry_run(path, "--id-column", "Id CRM")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1:8] == [
        f"Leads file:    {path} (cp1252, delimiter ';')",
        "Phone column:  Teléfono",
        "Custom params: Nombre, Programa",
        "Rows:          6 (4 dialable, 1 invalid, 1 duplicate)",
        "To dial now:   4",
        "Rejected rows (2):",
        "  row 5     invalid   3,46123456E+10: phone in scientific notation (digits lost): "
        "format the column as text in the spreadsheet and export again",
    ]
    assert "  row 6     duplicate +34612345678: same phone as row 2" in lines
    assert '    "Nombre": "José",' in lines and '    "Programa": "Grado en Economía",' in lines


def test_what_reaches_the_api_from_a_spanish_excel_csv(sim, tmp_path):
    path = tmp_path / "leads.csv"
    path.write_bytes(SPAIN)
    proc = run_cli("run", str(path), "--playbook", "pb", "--id-column", "Id CRM", url=sim.url)
    assert proc.returncode == 0, proc.stderr
    bodies = {call.phone: call.body for call in sim.calls}
    assert sorted(bodies) == ["+34612345678", "+34622111222", "+34633444555", "+34911234567"]
    assert bodies["+34612345678"] == {"Nombre": "José", "Programa": "Grado en Economía",
                                      "phone": "+34612345678", "playbook_id": "pb"}  # fmt: skip
    assert bodies["+34633444555"]["Nombre"] == "Peña; Luis"
    assert bodies["+34633444555"]["Programa"] == "Doble\nlínea"  # the quoted line break kept
    assert bodies["+34911234567"]["Programa"] == '=HYPERLINK("http://x")'  # the value, untouched
    rows = {r["row"]: r for r in read_rows(tmp_path / "leads.results.csv")}
    assert rows["7"]["crm_id"] == "'=1+2"  # neutralised for the spreadsheet
    assert rows["7"]["phone"] == "+34911234567"  # a clean E.164 phone stays readable
    assert rows["5"]["status"] == "invalid" and "scientific notation" in rows["5"]["error"]
    raw = (tmp_path / "leads.results.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfrow,") and b"\r\n" in raw  # a BOM, for Excel


@pytest.mark.parametrize(
    ("name", "data", "encoding", "delimiter", "column"),
    [
        # A BOM glued to a header padded with spaces, in another case.
        ("bom.csv", "\ufeff Phone ,first name\n+34 612-345-678,Ana\n".encode(), "utf-8-sig",
         "','", "Phone"),
        # Excel's "Unicode text": UTF-16 with a BOM, tabs, CRLF.
        ("u16.txt", "móvil\tnombre\r\n612345678\tJosé\r\n".encode("utf-16"), "utf-16", "tab",
         "móvil"),
        # LibreOffice's default: UTF-8 without a BOM, commas, quoted commas.
        ("lo.csv", 'name,TELEPHONE\n"García, Ana",+34612345678\n'.encode(), "utf-8", "','",
         "TELEPHONE"),
    ],
)  # fmt: skip
def test_encodings_dialects_and_headers(tmp_path, name, data, encoding, delimiter, column):
    path = tmp_path / name
    path.write_bytes(data)
    proc = dry_run(path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1] == f"Leads file:    {path} ({encoding}, delimiter {delimiter})"
    assert lines[2] == f"Phone column:  {column}"
    assert lines[4] == "Rows:          1 (1 dialable)"
    assert '    "phone": "+34612345678",' in lines


def test_an_xlsx_made_by_a_real_writer_keeps_leading_zeros_and_text(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Leads"
    sheet.append(["Teléfono", "Nombre"])
    sheet.append(["0034612345678", "José"])  # typed as text: the 00 prefix survives
    sheet.append([34612345679, "Ana"])  # a number cell, as Excel stores an unformatted column
    book.create_sheet("Other").append(["phone"])
    path = tmp_path / "leads.xlsx"
    book.save(path)
    proc = dry_run(path, "--sheet", "Leads")
    assert proc.returncode == 0, proc.stderr
    assert "Rows:          2 (2 dialable)" in proc.stdout
    assert '    "Nombre": "José",' in proc.stdout
    missing = dry_run(path, "--sheet", "Nope")
    assert missing.returncode == 2
    assert missing.stderr == "error: leads.xlsx: no sheet 'Nope' (sheets: Leads, Other)\n"


def test_a_dnc_list_with_one_number_per_line_in_any_format(sim, tmp_path):
    leads = tmp_path / "l.csv"
    leads.write_text("phone\n612345678\n+34612345679\n", encoding="utf-8")
    dnc = tmp_path / "dnc.txt"
    dnc.write_text("0034 612 34 56 78\n", encoding="utf-8")
    proc = run_cli("run", str(leads), "--playbook", "pb", "--dnc", str(dnc), url=sim.url)
    assert proc.returncode == 0, proc.stderr
    assert [c.phone for c in sim.calls] == ["+34612345679"]
    rows = {r["phone"]: r["status"] for r in read_rows(tmp_path / "l.results.csv")}
    assert rows == {"+34612345678": "dnc", "+34612345679": "called"}


@pytest.mark.parametrize(
    ("name", "data", "flags", "message"),
    [
        ("gone.csv", None, (), "error: {name}: file not found\n"),
        ("empty.csv", b"", (), "error: {name}: the file is empty\n"),
        ("nophone.csv", b"name,email\nA,a@x\n", (),
         "error: {name}: no phone column found (columns: name, email); name it with "
         "--phone-column\n"),
        ("ragged.csv", b"phone,name\n612345678,A,x\n612345679,B,extra\n", (),
         "error: {name}: 2 of 2 rows have more fields than the header on row 1 (2 fields): if "
         "the column names are on another row, name it with --header-row N; if the values are "
         "not separated by ',', pass --delimiter\n"),
        ("l.csv", b"phone\n612345678\n", ("--header-row", "9"),
         "error: l.csv: --header-row 9 is past the end: the file has 2 rows\n"),
        ("l.csv", b"phone\n612345678\n", ("--header-row", "0"),
         "error: --header-row must be a row number of at least 1 (rows are numbered as in a "
         "spreadsheet), not 0\n"),
        ("l.csv", b"title\n\nphone\n612345678\n", ("--header-row", "2"),
         "error: l.csv: --header-row 2: row 2 is empty; name the row that holds the column "
         "names\n"),
        ("l.csv", b"phone\n612345678\n", ("--phone-column", "Tel"),
         "error: {name}: no column 'Tel' for --phone-column (columns: phone)"),
        ("l.csv", b"phone\n612345678\n", ("--encoding", "bogus"),
         "error: --encoding is not an encoding Python knows: 'bogus'\n"),
        ("l.pdf", b"%PDF-1.4", (), "error: l.pdf: unsupported file type '.pdf' (use .csv, .txt "
         "or .xlsx)\n"),
        ("bad.xlsx", b"phone\n612345678\n", (), "error: bad.xlsx: not an .xlsx workbook (is it a "
         "CSV renamed .xlsx?)\n"),
        ("l.csv", b"phone\n612345678\n", ("--require", "name"),
         "error: l.csv: no param or column 'name' for --require (columns: phone)\n"),
        ("weird.csv", b"phone;name\n\xff\xfe\xfa\n", ("--encoding", "utf-8"),
         "error: weird.csv: not valid utf-8 (byte 11): check the file's encoding\n"),
        ("l.csv", b"phone\n612345678\n", ("--dnc", "nodnc.txt"),
         "error: nodnc.txt: file not found\n"),
    ],
)  # fmt: skip
def test_refusals_are_one_line_with_exit_2_and_nothing_dialed(sim, tmp_path, name, data, flags,
                                                            message):  # fmt: skip
    path = tmp_path / name
    if data is not None:
        path.write_bytes(data)
    proc = run_cli("run", str(path), "--playbook", "pb", *flags, url=sim.url)
    assert proc.returncode == 2
    expected = message.format(name=name)
    assert proc.stderr.startswith(expected) and proc.stderr.count("\n") == 1, proc.stderr
    assert sim.calls == [] and not (tmp_path / f"{path.stem}.results.csv").exists()
