"""Issue 14, reading rows: the header found below title and blank lines (or named with
``--header-row``), a trailing delimiter on every row, a row too wide rejected alone.

The fixtures are small files shaped like the real exports in /work/shared/realdata (a school
finder's ``;`` export with a title line, a trailing ``;`` and an unquoted ``;`` in one email
cell; Invoice Ninja's three title/blank lines): each through both text parsers, a workbook, and
the installed CLI against the simulator.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dialer.errors import ColumnError, ConfigError, LeadsFileError
from dialer.leads import loader
from dialer.leads.loader import ColumnMapping, load_dnc, load_leads
from dialer.leads.table import find_header
from dialer.model import Status
from tests.conftest import per_phone, read_rows, run_cli
from tests.test_workbook import make_xlsx

WIDE = (
    "row has 14 fields but the header has 13 (an unquoted ';' in a value?): "
    "quote the value or remove the delimiter, then rerun"
)

# The Comunidad de Madrid school finder's export: cp1252, ";", CRLF, a title line wider than
# the header, a 13-column header, a ";" after the last value of every data row, and in row 5
# an unquoted ";" inside EMAIL2 (14 filled fields).
_MADRID_HEADER = (
    "AREA TERRITORIAL;CODIGO CENTRO;TIPO DE CENTRO;CENTRO;DOMICILIO;MUNICIPIO;"
    "DISTRITO MUNICIPAL;COD. POSTAL;TELEFONO;FAX;EMAIL;EMAIL2;TITULARIDAD"
)


def _school(code: int, phone: str, email2: str = "-") -> str:
    return (
        f"Madrid-Este;{code};CPR;Centro {code};Calle Mayor, 1 ;Alcalá;-;28801;{phone};-;"
        f"c{code}@educa.madrid.org;{email2};Privado;"
    )


MADRID = "\r\n".join(
    [
        "CONSULTA DE CENTROS Y SERVICIOS EDUCATIVOS" + ";" * 14,
        _MADRID_HEADER,
        _school(1, "916326518"),
        _school(2, "916694580"),
        _school(3, "916750360", "direccion@jaby.com; secretaria@jaby.com"),
        _school(4, "-"),
        _school(5, "918539000"),
        "",
    ]
).encode("cp1252")

# Invoice Ninja v4.5.17's client export: every cell quoted, three title/blank lines as wide
# as the header above it.
_NINJA_TITLES = [
    ["Invoice Ninja v4.5.17 - December 19, 2020 11:28 pm", "", "", "", ""],
    ["", "", "", "", ""],
    ["CLIENTS", "", "", "", ""],
]
_NINJA_ROWS = [
    ["Name", "Balance", "Country", "Email", "Phone"],
    ["Ludwig Krajcik", "$-142.85", "", "brook59@example.org", "612345678"],
    ["Bradly Jaskolski", "$310.81", "", "gheidenreich@example.org", "622111222"],
]
NINJA = "".join(
    ",".join(f'"{cell}"' for cell in row) + "\n" for row in _NINJA_TITLES + _NINJA_ROWS
).encode()


def write(tmp_path: Path, data: bytes, name: str = "leads.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def rows(result: loader.LoadResult) -> list[tuple[int, str, Status]]:
    return [(lead.row, lead.phone, lead.status) for lead in result.leads]


# --- the rule -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filled", "expected"),
    [
        ([13, 12, 13], 0),  # a plain file: the first row
        ([1, 13, 13, 12], 1),  # a title line (one filled cell)
        ([1, 0, 1, 26, 10, 11], 3),  # Invoice Ninja: title, blank, "CLIENTS"
        ([0, 0, 3, 3], 2),  # blank lines only
        ([2, 9, 9], 1),  # a two-cell title against nine-cell rows
        ([2, 3, 3], 0),  # a header missing a name is still a header
        ([1, 1, 1], 0),  # one column (a do-not-call list): the first row with a value
        ([0, 0], None),  # nothing at all
    ],
)
def test_the_header_is_the_first_row_that_looks_like_one(
    filled: list[int], expected: int | None
) -> None:
    assert find_header(filled) == expected


# --- real layouts, both parsers -------------------------------------------------------------------


def test_a_title_line_a_trailing_delimiter_and_one_wide_row(tmp_path: Path, engine: str) -> None:
    result = load_leads(write(tmp_path, MADRID), ColumnMapping(phone_column="TELEFONO"))
    assert (result.encoding, result.delimiter) == ("cp1252", ";")
    assert rows(result) == [
        (3, "+34916326518", Status.PENDING),
        (4, "+34916694580", Status.PENDING),
        (5, "916750360", Status.INVALID),  # the wide row: rejected whatever its phone
        (6, "-", Status.INVALID),
        (7, "+34918539000", Status.PENDING),
    ]
    assert result.leads[2].reason == WIDE
    assert result.leads[0].params["TITULARIDAD"] == "Privado"  # the trailing ";" is no column
    assert "" not in result.param_names
    assert result.warnings == [
        "header found on row 2: row 1 above it skipped (name another with --header-row N)"
    ]


def test_three_title_and_blank_lines_above_the_header(tmp_path: Path, engine: str) -> None:
    result = load_leads(write(tmp_path, NINJA))
    assert result.phone_column == "Phone"
    assert rows(result) == [
        (5, "+34612345678", Status.PENDING),
        (6, "+34622111222", Status.PENDING),
    ]
    assert result.warnings[0] == (
        "header found on row 4: rows 1-3 above it skipped (name another with --header-row N)"
    )


def test_a_wide_row_in_a_later_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    # Pandas reads 14 columns (the widest of the top rows); a 15-field row two chunks on makes
    # its C parser stop, and the csv module reads the rest: the same leads as the csv path.
    monkeypatch.setattr(loader, "_CHUNK_ROWS", 2)
    schools = [_school(i, f"91{i:07d}") for i in range(1, 8)]
    schools[5] = _school(6, "916000006", "a@x.es; b@x.es")
    text = "\r\n".join(["Title" + ";" * 14, _MADRID_HEADER, *schools, ""])
    result = load_leads(write(tmp_path, text.encode("cp1252")))
    assert [(lead.row, lead.status.value) for lead in result.leads] == [
        (3, "pending"), (4, "pending"), (5, "pending"), (6, "pending"), (7, "pending"),
        (8, "invalid"), (9, "pending"),
    ]  # fmt: skip
    assert result.leads[5].reason == WIDE


def test_a_wide_row_left_of_its_cut_empty_is_still_rejected(tmp_path: Path, engine: str) -> None:
    text = "name,phone\nAna,612345678\n,,,622111222\nEva,633444555\n"
    result = load_leads(write(tmp_path, text.encode()))
    assert rows(result) == [
        (2, "+34612345678", Status.PENDING),
        (3, "", Status.INVALID),
        (4, "+34633444555", Status.PENDING),
    ]
    assert result.leads[1].reason.startswith("row has 4 fields but the header has 2")
    assert result.warnings == []  # not counted as an empty row


def test_most_rows_wide_is_refused_with_a_hint(tmp_path: Path, engine: str) -> None:
    # The wrong delimiter forced: the header is one field, every address splits in two.
    path = write(tmp_path, MADRID)
    with pytest.raises(LeadsFileError) as info:
        load_leads(path, delimiter=",", header_row=2)
    assert str(info.value) == (
        "leads.csv: 5 of 5 rows have more fields than the header on row 2 (1 fields): "
        "if the column names are on another row, name it with --header-row N; if the values "
        "are not separated by ',', pass --delimiter"
    )
    # In a longer file, the first rows are enough to tell (before the columns are mapped).
    schools = [_school(i, f"91{i:07d}") for i in range(50)]
    longer = write(tmp_path, "\r\n".join(["Title", _MADRID_HEADER, *schools]).encode(), "l.csv")
    with pytest.raises(LeadsFileError, match=r"^l\.csv: 21 of the first 21 rows have more"):
        load_leads(longer, delimiter=",", header_row=2)


def test_most_rows_wide_further_down_is_refused_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    monkeypatch.setattr(loader, "_CHUNK_ROWS", 7)
    lines = ["phone,name"] + [f"6123456{i:02d},Lead {i}" for i in range(20)]
    lines += [f"6223456{i:02d},Lead, {i}" for i in range(30)]
    with pytest.raises(LeadsFileError, match=r"^leads\.csv: 30 of 50 rows have more fields"):
        load_leads(write(tmp_path, "\n".join(lines).encode()))


def test_a_do_not_call_list_still_refuses_a_wide_row(tmp_path: Path, engine: str) -> None:
    # A shifted cell there could let a blocked number through: the whole list is refused.
    path = write(tmp_path, b"phone,name\n612345678,Ana\n622111222,Luis, Gil\n", "dnc.csv")
    with pytest.raises(LeadsFileError, match=r"^dnc\.csv: row 3 has 3 fields but the header"):
        load_dnc(path)


# --- --header-row -------------------------------------------------------------------------------


def test_header_row_forces_the_header(tmp_path: Path, engine: str) -> None:
    text = "Exported by CRM,2024-03-05\nphone,name\n612345678,Ana\n622111222,Luis\n"
    path = write(tmp_path, text.encode())
    with pytest.raises(ColumnError):  # found: the two-cell title line looks like a header
        load_leads(path)
    result = load_leads(path, header_row=2)
    assert rows(result) == [
        (3, "+34612345678", Status.PENDING),
        (4, "+34622111222", Status.PENDING),
    ]
    assert result.warnings == []


@pytest.mark.parametrize(
    ("header_row", "error", "message"),
    [
        (0, ConfigError, "--header-row 0: rows are numbered from 1, as in a spreadsheet"),
        (9, LeadsFileError, "leads.csv: --header-row 9 is past the end: the file has 4 rows"),
        (2, LeadsFileError, "leads.csv: --header-row 2: row 2 is empty; "
                            "name the row that holds the column names"),
    ],
)  # fmt: skip
def test_a_bad_header_row_is_one_line(
    tmp_path: Path, engine: str, header_row: int, error: type[Exception], message: str
) -> None:
    path = write(tmp_path, b"Title\n\nphone\n612345678\n")
    with pytest.raises(error) as info:
        load_leads(path, header_row=header_row)
    assert str(info.value) == message


# --- workbooks ------------------------------------------------------------------------------------


def test_a_workbook_with_title_rows(tmp_path: Path) -> None:
    path = make_xlsx(
        tmp_path / "leads.xlsx",
        (
            "Leads",
            [
                ["Leads of March", None, None],
                [None, None, None],
                ["name", "phone", "city"],
                ["Ana", "612345678", "Soria"],
                ["Luis", 622111222, "Vigo"],
            ],
        ),
        start="B2",
    )
    result = load_leads(path)
    assert rows(result) == [
        (5, "+34612345678", Status.PENDING),
        (6, "+34622111222", Status.PENDING),
    ]
    assert result.warnings == [
        "header found on row 4: rows 2-3 above it skipped (name another with --header-row N)"
    ]
    forced = load_leads(path, header_row=4)
    assert list(forced.leads) == list(result.leads) and forced.warnings == []
    with pytest.raises(LeadsFileError, match=r"^leads\.xlsx: --header-row 3: row 3 is empty"):
        load_leads(path, header_row=3)


# --- through the installed CLI, against the simulator --------------------------------------------


def test_the_school_export_dials_every_school_once_and_rejects_the_wide_row(sim, tmp_path):
    path = write(tmp_path, MADRID)
    rejects = tmp_path / "rejects.csv"
    proc = run_cli("run", str(path), "--playbook", "pb", "--phone-column", "TELEFONO",
                   "--rejects", str(rejects), url=sim.url)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "header found on row 2: row 1 above it skipped" in proc.stdout
    assert per_phone(sim) == {"+34916326518": 1, "+34916694580": 1, "+34918539000": 1}
    bodies = {call.phone: call.body for call in sim.calls}
    assert bodies["+34916326518"]["TITULARIDAD"] == "Privado"
    assert bodies["+34916326518"]["CENTRO"] == "Centro 1"
    wide = [r for r in read_rows(rejects) if r["row"] == "5"]
    assert len(wide) == 1 and wide[0]["status"] == "invalid" and wide[0]["reason"] == WIDE
    # A rerun dials nobody again.
    again = run_cli("run", str(path), "--playbook", "pb", "--phone-column", "TELEFONO",
                    url=sim.url)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert len(sim.calls) == 3


def test_header_row_from_the_command_line_and_the_campaign_file(sim, tmp_path):
    text = "Exported by CRM,2024-03-05\nphone,name\n612345678,Ana\n622111222,Luis\n"
    path = write(tmp_path, text.encode())
    dry = run_cli("run", str(path), "--playbook", "pb", "--dry-run", token=None)
    assert dry.returncode == 2 and "no phone column found" in dry.stderr
    proc = run_cli("run", str(path), "--playbook", "pb", "--header-row", "2", url=sim.url)
    assert proc.returncode == 0, proc.stderr
    assert per_phone(sim) == {"+34612345678": 1, "+34622111222": 1}
    assert {call.body["name"] for call in sim.calls} == {"Ana", "Luis"}
    rows_ = {r["row"]: r["status"] for r in read_rows(tmp_path / "leads.results.csv")}
    assert rows_ == {"3": "called", "4": "called"}  # the spreadsheet's row numbers
    # The same from a campaign file; the results resume: nobody dialed twice.
    (tmp_path / "c.toml").write_text('playbook = "pb"\nheader_row = 2\n', encoding="utf-8")
    again = run_cli("run", str(path), "--campaign", str(tmp_path / "c.toml"), url=sim.url)
    assert again.returncode == 0, again.stderr
    assert len(sim.calls) == 2
    (tmp_path / "bad.toml").write_text('playbook = "pb"\nheader_row = 0\n', encoding="utf-8")
    bad = run_cli("run", str(path), "--campaign", str(tmp_path / "bad.toml"), url=sim.url)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "'header_row' must be a row number of at least 1" in bad.stderr
