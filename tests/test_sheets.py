"""Tests for dialer.leads.sheets: delimiter override, text in blocks and chunks, both parsers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialer.errors import ColumnError, ConfigError, LeadsFileError
from dialer.leads import loader, sheets
from dialer.leads.loader import load_leads
from dialer.leads.sheets import check_delimiter


def write(tmp_path: Path, text: str, name: str = "leads.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


# --- delimiter override ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (",", ","),
        (";", ";"),
        ("\t", "\t"),
        ("tab", "\t"),
        ("TAB", "\t"),
        ("\\t", "\t"),
        (None, None),
    ],
)
def test_check_delimiter(value: str | None, expected: str | None) -> None:
    assert check_delimiter(value) == expected


@pytest.mark.parametrize("value", ["|", "", "comma", ",;"])
def test_check_delimiter_rejects(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_delimiter(value)
    assert str(info.value) == f"unknown delimiter '{value}' for --delimiter: use , ; or tab"


def test_delimiter_override(tmp_path: Path, engine: str) -> None:
    # One column of "name,city" values split by ";": the sniffer is free to guess either way,
    # the override is not.
    path = write(tmp_path, "telefono;nombre,ciudad\n612345678;Ana,Soria\n622111222;Luis,Vigo\n")
    result = load_leads(path, delimiter=";")
    assert result.delimiter == ";"
    assert [lead.params for lead in result.leads] == [
        {"nombre,ciudad": "Ana,Soria"},
        {"nombre,ciudad": "Luis,Vigo"},
    ]
    tabs = write(tmp_path, "phone\tname\n612345678\tAna, Gil\n", name="leads.txt")
    assert load_leads(tabs, delimiter="tab").leads[0].params == {"name": "Ana, Gil"}
    with pytest.raises(ConfigError, match=r"^unknown delimiter '\|' for --delimiter"):
        load_leads(path, delimiter="|")


def test_wrong_delimiter_override_is_a_column_error(tmp_path: Path, engine: str) -> None:
    path = write(tmp_path, "name;phone\nAna;612345678\n")
    with pytest.raises(ColumnError) as info:
        load_leads(path, delimiter=",")
    assert str(info.value) == (
        "leads.csv: no phone column found (columns: name;phone); name it with --phone-column"
    )


# --- text files read in blocks and chunks ---------------------------------------------------------


def test_utf8_validated_across_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    # Tiny blocks split "é" and "ñ" between reads: still UTF-8, never a fallback guess.
    monkeypatch.setattr(sheets, "_BLOCK_BYTES", 3)
    path = write(tmp_path, "nombre,telefono\nJosé Muñoz,612345678\n")
    result = load_leads(path)
    assert result.encoding == "utf-8"
    assert result.leads[0].params == {"nombre": "José Muñoz"}


@pytest.mark.parametrize("block", [3, 5, 1024 * 1024])
def test_bad_byte_offset_across_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int, engine: str
) -> None:
    monkeypatch.setattr(sheets, "_BLOCK_BYTES", block)
    path = tmp_path / "leads.csv"
    path.write_bytes(b"phone,name\n612345678,Jos\xe9\n")
    with pytest.raises(LeadsFileError) as info:
        load_leads(path, encoding="utf-8")
    assert str(info.value) == "leads.csv: not valid utf-8 (byte 24): check the file's encoding"


def test_cp1252_accents_far_from_the_start(tmp_path: Path, engine: str) -> None:
    # Excel "CSV (separado por comas)": Windows-1252, ";" and the first accent after 40 KB.
    lines = ["nombre;telefono"] + [f"Lead {i};6{i:08d}" for i in range(3000)] + ["Begoña;699999999"]
    path = write(tmp_path, "\r\n".join(lines) + "\r\n", encoding="cp1252")
    result = load_leads(path)
    assert (result.encoding, result.delimiter) == ("cp1252", ";")
    assert result.leads[-1].params == {"nombre": "Begoña"}


def test_chunks_do_not_change_the_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    text = (
        "name,phone\nAna,612345678\n\n"
        '"Luis\nGil",622111222\nEva,612345678\n,\nIo,x\nBea,633444555\n'
    )
    path = write(tmp_path, text)
    whole = load_leads(path)
    monkeypatch.setattr(loader, "_CHUNK_ROWS", 2)
    chunked = load_leads(path)
    assert list(chunked.leads) == list(whole.leads)
    assert chunked.warnings == whole.warnings == ["2 empty row(s) skipped"]
    assert [lead.row for lead in chunked.leads] == [2, 4, 5, 7, 8]


def test_a_wide_row_after_the_first_chunk_is_rejected_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    # Pandas refuses the record mid-file: the csv module reads the rest, with the same result.
    monkeypatch.setattr(loader, "_CHUNK_ROWS", 2)
    rows = "".join(f"Lead {i},61234567{i}\n" for i in range(6))
    path = write(tmp_path, f"name,phone\n{rows}Luis, Gil,622111222\nEva,699999999\n")
    result = load_leads(path)
    assert [(lead.row, lead.status.value) for lead in result.leads][-3:] == [
        (7, "pending"),
        (8, "invalid"),
        (9, "pending"),
    ]
    assert result.leads[-2].reason == (
        "row has 3 fields but the header has 2 (an unquoted ',' in a value?): "
        "quote the value or remove the delimiter, then rerun"
    )


# --- the two parsers of text files ----------------------------------------------------------------

Split = tuple[int, list[str], list[tuple[int, list[str]]], dict[int, str], list[str]] | str


def _split(
    path: Path, pandas: bool, chunk_rows: int = 3, *, keep_wide: bool = True, **options: Any
) -> Split:
    """What one parser makes of ``path`` (UTF-8, ","): (header row, header, (row, cells) of each
    data row, wide rows, warnings), or the one-line error it raises. (Where one chunk ends is
    the parser's business: pandas' first one also holds the rows above the header.)"""
    saved = sheets.PANDAS_FROM_BYTES
    sheets.PANDAS_FROM_BYTES = 0 if pandas else 1 << 62
    try:
        with open(path, "rb") as handle:
            found = sheets._open_delimited(
                handle, path.name, "utf-8", ",", chunk_rows, keep_wide=keep_wide, **options
            )
            rows = [
                (first + i, cells) for first, chunk in found.chunks for i, cells in enumerate(chunk)
            ]
            return found.header_row, found.header, rows, dict(found.wide), found.warnings
    except LeadsFileError as exc:
        return str(exc)
    finally:
        sheets.PANDAS_FROM_BYTES = saved


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(alphabet=',"\n\r a\x00é', max_size=60), st.booleans())
def test_csv_module_splits_as_pandas_does(tmp_path: Path, text: str, keep_wide: bool) -> None:
    """Files under PANDAS_FROM_BYTES are split by csv, bigger ones by pandas: the same header,
    the same rows, padded and cut the same, the same wide rows and the same refusals (a row too
    wide, most rows too wide, a quote never closed)."""
    path = tmp_path / "leads.csv"
    path.write_bytes(text.encode())
    for chunk_rows in (1, 3):
        by_csv = _split(path, False, chunk_rows, keep_wide=keep_wide)
        assert by_csv == _split(path, True, chunk_rows, keep_wide=keep_wide)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a,b,c\n1,2\n\n", (1, ["a", "b", "c"], [(2, ["1", "2", ""]), (3, ["", "", ""])], {}, [])),
        ('a,b\n"x\ny",z\n"p""q",r', (1, ["a", "b"], [(2, ["x\ny", "z"]), (3, ['p"q', "r"])], {},
                                     [])),
        ('a,b\n1,2\n3,"4\n', "leads.csv: a quoted value starting in row 3 is never closed"),
        ("a,b\n1,2\n3,4,5\n6,7\n", (1, ["a", "b"],
                                   [(2, ["1", "2"]), (3, ["3", "4"]), (4, ["6", "7"])],
                                   {3: "row has 3 fields but the header has 2 (an unquoted ',' "
                                       "in a value?): quote the value or remove the delimiter, "
                                       "then rerun"}, [])),
        ("a,b\n1,2,3\n4,5,6\n", "leads.csv: 2 of 2 rows have more fields than the header on "
                                "row 1 (2 fields): if the column names are on another row, name "
                                "it with --header-row N; if the values are not separated by ',', "
                                "pass --delimiter"),
        ("a,b\n1,2,\n3,4, \n", (1, ["a", "b"], [(2, ["1", "2"]), (3, ["3", "4"])], {}, [])),
        ("\na,b\n1,2\n", (2, ["a", "b"], [(3, ["1", "2"])], {}, [])),
        ("Title,,,\n,,,\na,b,c\n1,2,3,\n", (3, ["a", "b", "c"], [(4, ["1", "2", "3"])], {},
                                          ["header found on row 3: rows 1-2 above it skipped "
                                           "(name another with --header-row N)"])),
        ("\n ,\n", "leads.csv: the file is empty"),
    ],
)  # fmt: skip
def test_both_parsers_on_known_files(tmp_path: Path, text: str, expected: Split) -> None:
    path = write(tmp_path, text)
    assert _split(path, False, chunk_rows=10) == expected
    assert _split(path, True, chunk_rows=10) == expected


def test_a_wide_row_is_refused_when_not_kept(tmp_path: Path) -> None:
    # A do-not-call list or a results file: a shifted row is never read as something else.
    path = write(tmp_path, "a,b\n1,2\n3,4,5\n6,7\n")
    expected = (
        "leads.csv: row 3 has 3 fields but the header has 2 (an unquoted delimiter in a value?)"
    )
    assert _split(path, False, keep_wide=False) == expected
    assert _split(path, True, keep_wide=False) == expected


def test_a_quote_left_open_in_a_long_file_is_named(tmp_path: Path, engine: str) -> None:
    # The open quote swallows 300 KB: more than csv's default field limit (128 Ki characters).
    rows = "".join(f"Lead {i},6{i:08d}\n" for i in range(15_000))
    path = write(tmp_path, f'name,phone\nAna,"612345678\n{rows}')
    with pytest.raises(LeadsFileError) as info:
        load_leads(path)
    assert str(info.value) == "leads.csv: a quoted value starting in row 2 is never closed"


def test_the_size_of_a_file_picks_its_parser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    used: list[str] = []
    for name in ("_csv_chunks", "_pandas_chunks"):
        real = getattr(sheets, name)

        def spy(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            used.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(sheets, name, spy)
    path = write(tmp_path, "name,phone\nAna,612345678\n")
    size = path.stat().st_size
    monkeypatch.setattr(sheets, "PANDAS_FROM_BYTES", size + 1)
    assert load_leads(path).leads[0].params == {"name": "Ana"}
    monkeypatch.setattr(sheets, "PANDAS_FROM_BYTES", size)
    assert load_leads(path).leads[0].params == {"name": "Ana"}
    assert used == ["_csv_chunks", "_pandas_chunks"]
