"""Tests for dialer.leads.loader: encodings, delimiters, rows, column mapping and error messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialer.errors import ColumnError, ConfigError, DialerError, LeadsFileError
from dialer.leads import loader, phonepool
from dialer.leads.loader import RESERVED, ColumnMapping, LeadRows, LoadResult, load_leads
from dialer.leads.phones import REASON_EMPTY, REASON_SCIENTIFIC
from dialer.model import Lead, Status

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLE = Path(__file__).parent.parent / "sample_data" / "leads.csv"


def write(tmp_path: Path, text: str, name: str = "leads.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def statuses(result: LoadResult) -> list[tuple[int, str, Status]]:
    return [(lead.row, lead.phone, lead.status) for lead in result.leads]


# --- files as real tools write them -----------------------------------------------------------


def test_libreoffice_utf8() -> None:
    result = load_leads(FIXTURES / "libreoffice_utf8.csv")
    assert (result.encoding, result.delimiter) == ("utf-8", ",")
    assert result.phone_column == "Teléfono móvil"
    assert result.param_names == ["Nombre", "Apellidos", "Correo", "Programa"]
    assert result.warnings == []  # its language column gives each lead's own language
    assert [dict(lead.settings) for lead in result.leads] == [
        {"language": "ES"},
        {"language": "EN"},
        {},
        {},
    ]
    assert result.leads[0] == Lead(
        2,
        "+34612345678",
        {
            "Nombre": "José",
            "Apellidos": "García López",
            "Correo": "jose@example.com",
            "Programa": "Grado en Derecho, bilingüe",
        },
        settings={"language": "ES"},
    )
    # Empty cells are not sent.
    assert result.leads[1].params == {
        "Nombre": "María Ángeles",
        "Apellidos": "Ibáñez",
        "Programa": "Máster en Finanzas",
    }
    assert result.leads[3] == Lead(
        5,
        "12345",
        result.leads[3].params,
        Status.INVALID,
        "invalid number for ES",
    )
    assert result.counts() == {"pending": 3, "invalid": 1}


def test_excel_utf8_bom_crlf() -> None:
    result = load_leads(FIXTURES / "excel_utf8_bom.csv")
    assert (result.encoding, result.delimiter) == ("utf-8-sig", ",")
    assert result.phone_column == "phone"  # no BOM glued to the first header
    assert result.param_names == ["first_name", "last_name", "program_of_interest", "city"]
    assert statuses(result) == [
        (2, "+34633444555", Status.PENDING),
        (3, "+14155552671", Status.PENDING),
        (4, "+442079460958", Status.PENDING),
        (5, "+34612345678", Status.PENDING),
        (6, "+34612345678", Status.DUPLICATE),
    ]
    assert result.leads[4].reason == "same phone as row 5"
    assert result.leads[0].params["first_name"] == "Íñigo"
    assert result.leads[2].params["program_of_interest"] == "Finance, MSc"
    assert result.leads[4].params["city"] == "A Coruña"  # no stray "\r"


def test_excel_cp1252_semicolon_keeps_accents() -> None:
    result = load_leads(FIXTURES / "excel_cp1252_semicolon.csv")
    assert (result.encoding, result.delimiter) == ("cp1252", ";")
    assert result.phone_column == "Teléfono"
    assert result.param_names == ["Nombre", "Apellidos", "Población", "Importe matrícula"]
    first = result.leads[0]
    assert first == Lead(
        2,
        "+34612345678",
        {
            "Nombre": "Begoña",
            "Apellidos": "Muñoz Peña",
            "Población": "Logroño",
            "Importe matrícula": "1.250 €",
        },
    )
    assert result.leads[1] == Lead(
        3, "3,46699E+10", result.leads[1].params, Status.INVALID, REASON_SCIENTIFIC
    )
    assert result.leads[1].params["Apellidos"] == "Ibáñez"
    assert result.leads[3].params["Población"] == "Alcalá de Henares; Madrid"
    assert result.counts() == {"pending": 3, "invalid": 1}


def test_quoted_newlines_count_as_one_row() -> None:
    result = load_leads(FIXTURES / "embedded_newline.csv")
    assert statuses(result) == [
        (2, "+34699123456", Status.PENDING),
        (3, "+34911234567", Status.PENDING),
        (4, "+34655987654", Status.PENDING),
    ]
    assert result.leads[0].params["notes"] == "Llamar por la tarde.\nPrefiere WhatsApp"
    assert result.leads[1].params["notes"] == (
        "Visita el campus el lunes;\nviene con su madre,\ny su hermano"
    )
    assert result.leads[2].params == {"name": "Lucía Díaz"}


def test_excel_unicode_text_utf16_tabs() -> None:
    result = load_leads(FIXTURES / "excel_unicode.txt")
    assert (result.encoding, result.delimiter) == ("utf-16", "\t")
    assert result.phone_column == "Móvil"
    assert [lead.params for lead in result.leads] == [
        {"Nombre": "José", "Ciudad": "Málaga"},
        {"Nombre": "Begoña", "Ciudad": "Donostia"},
    ]


def test_sample_data_counts() -> None:
    result = load_leads(SAMPLE)
    assert result.counts() == {"pending": 9, "invalid": 2, "duplicate": 1}
    assert len(result.leads) == 12
    assert result.phone_column == "phone"
    assert result.param_names == [
        "first_name",
        "last_name",
        "email",
        "program_of_interest",
        "city",
    ]
    assert result.warnings == []
    by_status = {lead.status: lead for lead in reversed(result.leads)}
    assert by_status[Status.DUPLICATE].reason == "same phone as row 2"
    invalid = [(lead.row, lead.phone, lead.reason) for lead in result.leads if lead.reason]
    assert invalid == [
        (8, "", REASON_EMPTY),
        (9, "12345", "invalid number for ES"),
        (10, "+34612345678", "same phone as row 2"),
    ]


# --- encodings, delimiters, rows ---------------------------------------------------------------


def test_cp1252_with_only_a_few_accents(tmp_path: Path) -> None:
    # Short files tie between cp1250 and cp1252 in detection; ñ must stay ñ.
    path = write(tmp_path, "nombre;telefono\r\nBegoña;612345678\r\n", encoding="cp1252")
    result = load_leads(path)
    assert result.encoding == "cp1252"
    assert result.leads[0].params == {"nombre": "Begoña"}


def test_encoding_override(tmp_path: Path) -> None:
    path = write(tmp_path, "nombre,phone\nJosé,612345678\n", encoding="latin-1")
    assert load_leads(path, encoding="latin-1").leads[0].params == {"nombre": "José"}
    with pytest.raises(LeadsFileError, match=r"^leads\.csv: not valid utf-8 \(byte \d+\)"):
        load_leads(path, encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown encoding 'klingon'"):
        load_leads(path, encoding="klingon")


def test_undecodable_bytes(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    path.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 8)
    with pytest.raises(LeadsFileError) as info:
        load_leads(path)
    assert str(info.value).startswith("leads.csv: cannot tell the text encoding; save it as")
    assert "--encoding" in str(info.value)


def test_headers_trimmed_and_stray_bom(tmp_path: Path) -> None:
    path = write(tmp_path, "\ufeff\ufeff name , Phone ,\tcity\t\nAna,612345678, Soria \n")
    result = load_leads(path)
    assert result.phone_column == "Phone"
    assert result.leads == [Lead(2, "+34612345678", {"name": "Ana", "city": "Soria"})]


def test_single_column_file(tmp_path: Path) -> None:
    result = load_leads(write(tmp_path, "telefono\n612345678\n622111222\n"))
    assert result.delimiter == ","
    assert [lead.phone for lead in result.leads] == ["+34612345678", "+34622111222"]
    assert result.param_names == []


def test_semicolon_file_with_commas_in_values(tmp_path: Path) -> None:
    text = 'nombre;ciudad;telefono\nJosé;"Madrid, España";612345678\nAna;Soria, España;622111222\n'
    result = load_leads(write(tmp_path, text))
    assert result.delimiter == ";"
    assert [lead.params["ciudad"] for lead in result.leads] == ["Madrid, España", "Soria, España"]


def test_blank_rows_keep_numbering(tmp_path: Path) -> None:
    path = write(tmp_path, "name,phone\r\nAna,612345678\r\n\r\n,\r\nLuis,622111222\r\n")
    result = load_leads(path)
    assert statuses(result) == [
        (2, "+34612345678", Status.PENDING),
        (5, "+34622111222", Status.PENDING),
    ]
    assert result.warnings == ["2 empty row(s) skipped"]


def test_short_rows_and_unnamed_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "name,phone,\nAna,612345678,x\nLuis\n")
    result = load_leads(path)
    assert result.leads[1] == Lead(3, "", {"name": "Luis"}, Status.INVALID, REASON_EMPTY)
    assert result.warnings == ["column 3 has values but no header: its values are not sent"]


def test_invalid_phone_keeps_raw_cell_and_no_numbers_are_coerced(tmp_path: Path) -> None:
    path = write(
        tmp_path, "phone,zip,notes\n  612345678.0  ,08001,NA\n0034 622 111 222,00123,null\n"
    )
    result = load_leads(path)
    assert result.leads[0].phone == "612345678.0"
    assert result.leads[0].status is Status.INVALID
    assert result.leads[0].reason.startswith("phone stored as a number")
    assert result.leads[0].params == {"zip": "08001", "notes": "NA"}
    assert result.leads[1].params == {"zip": "00123", "notes": "null"}


def test_duplicates_compare_e164(tmp_path: Path) -> None:
    text = "phone\n+34 612 345 678\n612-345-678\n0034612345678\n612345679\n"
    result = load_leads(write(tmp_path, text))
    assert [(lead.status, lead.reason) for lead in result.leads] == [
        (Status.PENDING, ""),
        (Status.DUPLICATE, "same phone as row 2"),
        (Status.DUPLICATE, "same phone as row 2"),
        (Status.PENDING, ""),
    ]


def test_default_region(tmp_path: Path) -> None:
    path = write(tmp_path, "phone\n(415) 555-2671\n")
    assert load_leads(path, default_region="us").leads[0].phone == "+14155552671"
    assert load_leads(path).leads[0].status is Status.INVALID
    with pytest.raises(ConfigError, match="unknown region 'XX'"):
        load_leads(path, default_region="XX")


def test_header_only_means_zero_leads(tmp_path: Path) -> None:
    result = load_leads(write(tmp_path, "name,phone\r\n"))
    assert result.leads == []
    assert result.counts() == {}


def test_txt_suffix_accepted(tmp_path: Path) -> None:
    result = load_leads(write(tmp_path, "name\tphone\nAna\t612345678\n", name="leads.TXT"))
    assert result.delimiter == "\t"
    assert len(result.leads) == 1


# --- column mapping -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    ["Phone", "PHONE NUMBER", "phone_number", "Teléfono", "Teléfono Móvil", "Tel.", "mobile",
     "Móvil", "Cell-Phone", "celular", "WhatsApp", "Número"],
)  # fmt: skip
def test_phone_column_detected(tmp_path: Path, header: str) -> None:
    result = load_leads(write(tmp_path, f"name,{header}\nAna,612345678\n"))
    assert result.phone_column == header
    assert result.leads[0].phone == "+34612345678"


def test_strong_phone_name_beats_number(tmp_path: Path) -> None:
    result = load_leads(write(tmp_path, "number,name,phone\n7,Ana,612345678\n"))
    assert result.phone_column == "phone"
    assert result.param_names == ["number", "name"]


def test_no_phone_column(tmp_path: Path) -> None:
    with pytest.raises(ColumnError) as info:
        load_leads(write(tmp_path, "a,b,c\n1,2,3\n"))
    assert str(info.value) == (
        "leads.csv: no phone column found (columns: a, b, c); name it with --phone-column"
    )


def test_several_phone_columns_mobile_first_then_the_primary(tmp_path: Path) -> None:
    result = load_leads(write(tmp_path, "name,mobile,phone\nAna,612345678,622111222\n"))
    assert result.phone_columns == ["mobile", "phone"]
    assert result.leads[0].phone == "+34612345678"
    assert result.warnings == [
        "several phone columns hold numbers: dialing 'mobile' (1), else 'phone' (1) where it is "
        "empty or invalid (the mobile first, then the primary phone); or choose with "
        "--phone-column (several, comma-separated, are tried in order)"
    ]


def test_several_phone_columns_with_no_rule_ask_with_counts(tmp_path: Path) -> None:
    text = "name,Home Phone,Work Phone\nAna,612345678,622111222\nEva,633444555,\n"
    with pytest.raises(ColumnError) as info:
        load_leads(write(tmp_path, text))
    assert str(info.value) == (
        "leads.csv: several phone columns hold numbers: 'Home Phone' (2), 'Work Phone' (1); "
        "choose with --phone-column (several, comma-separated, are tried in order)"
    )


def test_phone_column_chosen(tmp_path: Path) -> None:
    path = write(tmp_path, "name,mobile,phone\nAna,612345678,622111222\n")
    result = load_leads(path, ColumnMapping(phone_column="  MOBILE "))
    assert result.phone_column == "mobile"
    assert result.leads[0].phone == "+34612345678"
    # The other phone column is a reserved name: not sent, with a warning.
    assert result.param_names == ["name"]
    assert result.warnings == [
        "column 'phone' ignored: 'phone' is a call setting; rename it with --param phone=NAME"
    ]


def test_phone_column_missing(tmp_path: Path) -> None:
    path = write(tmp_path, "a,b,c\n1,2,3\n")
    with pytest.raises(ColumnError) as info:
        load_leads(path, ColumnMapping(phone_column="X"))
    assert str(info.value) == "leads.csv: no column 'X' for --phone-column (columns: a, b, c)"


def test_rename_and_exclude(tmp_path: Path) -> None:
    text = "Nombre,Email,phone,Language,Notes\nAna,ana@example.com,612345678,ES,vip\n"
    mapping = ColumnMapping(
        rename={"Nombre": "firstname", "language": "lead_language"},
        exclude=frozenset({"notes"}),
    )
    result = load_leads(write(tmp_path, text), mapping)
    assert result.param_names == ["firstname", "Email", "lead_language"]
    assert result.leads[0].params == {
        "firstname": "Ana",
        "Email": "ana@example.com",
        "lead_language": "ES",
    }
    assert result.warnings == []


def test_rename_missing_column(tmp_path: Path) -> None:
    path = write(tmp_path, "a,b,phone\n1,2,612345678\n")
    with pytest.raises(ColumnError) as info:
        load_leads(path, ColumnMapping(rename={"nombre": "firstname"}))
    assert str(info.value) == (
        "leads.csv: no column 'nombre' for --param nombre=firstname (columns: a, b, phone)"
    )


def test_exclude_missing_column(tmp_path: Path) -> None:
    path = write(tmp_path, "a,b,phone\n1,2,612345678\n")
    with pytest.raises(ColumnError) as info:
        load_leads(path, ColumnMapping(exclude=frozenset({"notes"})))
    assert str(info.value) == "leads.csv: no column 'notes' for --exclude (columns: a, b, phone)"


def test_rename_onto_reserved_or_taken_name(tmp_path: Path) -> None:
    path = write(tmp_path, "lang,name,first,phone\nES,Ana,Ana,612345678\n")
    result = load_leads(path, ColumnMapping(rename={"lang": "language"}))
    assert "lang" not in result.param_names
    assert result.warnings == [
        "column 'lang' ignored: 'language' is a call setting; choose another name with --param"
    ]
    with pytest.raises(ColumnError) as info:
        load_leads(path, ColumnMapping(rename={"first": "name"}))
    assert str(info.value) == (
        "leads.csv: columns 'name' and 'first' would both send param 'name'; "
        "rename one with --param or leave one out with --exclude"
    )


def test_every_reserved_name_is_held_back(tmp_path: Path) -> None:
    # A column named after a call setting gives its lead's own setting, never a param.
    names = sorted(RESERVED - {"phone", "playbook_id"})
    values = {
        "version_id": "v2",
        "voice_id": "3",
        "voice_model": "fast",
        "language": "fr",
        "interrupt": "yes",
    }
    header = ",".join(["tel", *names, "city"])
    row = ",".join(["612345678", *(values[name] for name in names), "Soria"])
    result = load_leads(write(tmp_path, f"{header}\n{row}\n"))
    assert result.param_names == ["city"]
    assert result.leads[0].params == {"city": "Soria"}
    assert result.leads[0].settings == values | {"language": "FR", "interrupt": "true"}
    assert result.warnings == []


# --- file errors --------------------------------------------------------------------------------


def test_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(LeadsFileError) as info:
        load_leads(tmp_path / "missing" / "leads.csv")
    assert str(info.value) == "leads.csv: file not found"
    assert isinstance(info.value.__cause__, FileNotFoundError)


@pytest.mark.parametrize("text", ["", "\n\n", "  \r\n", "\ufeff"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    with pytest.raises(LeadsFileError) as info:
        load_leads(write(tmp_path, text))
    assert str(info.value) == "leads.csv: the file is empty"


def test_a_first_row_with_no_names_is_skipped(tmp_path: Path) -> None:
    result = load_leads(write(tmp_path, ",,\nphone,name\n612345678,Ana\n"))
    assert statuses(result) == [(3, "+34612345678", Status.PENDING)]
    assert result.warnings == []  # nothing but blank rows above the header


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "leads.csv"
    folder.mkdir()
    with pytest.raises(LeadsFileError, match=r"^leads\.csv: is a directory"):
        load_leads(folder)


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (PermissionError(13, "Permission denied"), "cannot read the file (permission denied)"),
        (OSError(5, "Input/output error"), "cannot read the file (Input/output error)"),
    ],
)
def test_unreadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError, message: str
) -> None:
    path = write(tmp_path, "phone\n612345678\n")

    def refuse(self: Path, *args: object, **kwargs: object) -> object:
        raise error

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(LeadsFileError) as info:
        load_leads(path)
    assert str(info.value) == f"leads.csv: {message}"
    assert info.value.__cause__ is error


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "leads.xls",
            "leads.xls: .xls files (Excel 97-2003) are not supported: "
            "save it as .xlsx or CSV UTF-8",
        ),
        ("leads.ods", "leads.ods: unsupported file type '.ods' (use .csv, .txt or .xlsx)"),
        ("leads", "leads: unsupported file type (no extension) (use .csv, .txt or .xlsx)"),
    ],
)
def test_unsupported_suffix(tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(LeadsFileError) as info:
        load_leads(write(tmp_path, "phone\n612345678\n", name=name))
    assert str(info.value) == message


def test_ragged_row(tmp_path: Path, engine: str) -> None:
    # One row with an unquoted delimiter is rejected alone; the others load.
    path = write(tmp_path, 'name,phone\n"Ana\nMaría",612345678\nLuis, Gil,622111222\n')
    result = load_leads(path)
    assert statuses(result) == [
        (2, "+34612345678", Status.PENDING),
        (3, "Gil", Status.INVALID),  # the cell where the phone should be, trimmed
    ]
    assert result.leads[1].reason == (
        "row has 3 fields but the header has 2 (an unquoted ',' in a value?): "
        "quote the value or remove the delimiter, then rerun"
    )


def test_unclosed_quote(tmp_path: Path, engine: str) -> None:
    path = write(tmp_path, 'name,phone\nAna,612345678\nLuis,"622111222\n')
    with pytest.raises(LeadsFileError) as info:
        load_leads(path)
    assert str(info.value) == "leads.csv: a quoted value starting in row 3 is never closed"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=300) | st.text(alphabet=',;\t"\n\r abcphone0123456789+é', max_size=120))
def test_only_dialer_errors_escape(tmp_path: Path, content: bytes | str) -> None:
    path = tmp_path / "fuzz.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    try:
        result = load_leads(path, ColumnMapping(phone_column="phone"))
    except DialerError as exc:
        assert str(exc).startswith("fuzz.csv: ")
        assert "\n" not in str(exc)
    else:
        assert all(lead.row >= 2 for lead in result.leads)


# --- the CRM id column --------------------------------------------------------------------------


def test_id_column(tmp_path: Path) -> None:
    path = write(tmp_path, "CRM ID,name,phone\n  A-17 ,Ana,612345678\n,Luis,622111222\n")
    result = load_leads(path, ColumnMapping(id_column="crm id"))
    assert result.id_column == "CRM ID"
    assert result.param_names == ["name"]  # the id is not sent
    assert result.leads == [
        Lead(2, "+34612345678", {"name": "Ana"}, crm_id="A-17"),
        Lead(3, "+34622111222", {"name": "Luis"}),
    ]
    assert load_leads(path).param_names == ["CRM ID", "name"]  # no id column: a param


def test_id_column_missing(tmp_path: Path) -> None:
    path = write(tmp_path, "a,b,phone\n1,2,612345678\n")
    with pytest.raises(ColumnError) as info:
        load_leads(path, ColumnMapping(id_column="id"))
    assert str(info.value) == "leads.csv: no column 'id' for --id-column (columns: a, b, phone)"


def test_id_column_renamed_is_still_not_sent(tmp_path: Path) -> None:
    path = write(tmp_path, "id,phone\n7,612345678\n")
    result = load_leads(path, ColumnMapping(id_column="id", rename={"id": "lead_id"}))
    assert result.param_names == []
    assert result.leads[0].crm_id == "7"
    assert result.warnings == ["column 'id' is the id column: --param for it is ignored"]


def test_id_kept_on_rejected_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "id,phone\nA1,612345678\nA2,12345\nA3,612345678\n")
    result = load_leads(path, ColumnMapping(id_column="id"))
    assert [(lead.crm_id, lead.status) for lead in result.leads] == [
        ("A1", Status.PENDING),
        ("A2", Status.INVALID),
        ("A3", Status.DUPLICATE),
    ]


# --- required params ----------------------------------------------------------------------------


def test_required_params(tmp_path: Path) -> None:
    text = (
        "Nombre,Email,phone\n"
        "Ana,ana@example.com,612345678\n"
        ",luis@example.com,622111222\n"
        " , ,633444555\n"
    )
    mapping = ColumnMapping(rename={"Nombre": "firstname"}, require=("firstname", "email"))
    result = load_leads(write(tmp_path, text), mapping)
    assert [(lead.status, lead.reason) for lead in result.leads] == [
        (Status.PENDING, ""),
        (Status.MISSING_PARAM, "missing required param 'firstname'"),
        (Status.MISSING_PARAM, "missing required params 'firstname', 'Email'"),
    ]
    assert result.leads[1].params == {"Email": "luis@example.com"}
    assert result.leads[1].phone == "+34622111222"  # E.164, but keyed by row
    assert result.leads[1].key == "row:3"
    assert result.counts() == {"pending": 1, "missing_param": 2}


def test_required_by_header_of_a_renamed_column(tmp_path: Path) -> None:
    path = write(tmp_path, "Nombre,phone\n,612345678\n")
    mapping = ColumnMapping(rename={"Nombre": "firstname"}, require=("Nombre", "FIRSTNAME"))
    lead = load_leads(path, mapping).leads[0]
    assert lead.reason == "missing required param 'firstname'"  # named once, by its param


def test_required_unknown(tmp_path: Path) -> None:
    path = write(tmp_path, "name,phone\nAna,612345678\n")
    with pytest.raises(ColumnError) as info:
        load_leads(path, ColumnMapping(require=("email",)))
    assert str(info.value) == (
        "leads.csv: no param or column 'email' for --require (columns: name, phone)"
    )
    with pytest.raises(ConfigError, match=r"^--require: the param name is empty$"):
        load_leads(path, ColumnMapping(require=(" ",)))


# --- the order of the load-time checks ----------------------------------------------------------


def test_status_precedence(tmp_path: Path) -> None:
    text = (
        "name,phone\n"
        ",612345678\n"  # 2 missing: does not claim the phone...
        "Ana,612 345 678\n"  # 3 ...so this complete row is dialed
        "Eva,0034612345678\n"  # 4 duplicate of 3
        ",612345678\n"  # 5 missing and after 3: duplicate (it would be one once fixed)
        "Bea,699000000\n"  # 6 on the list
        "Bea,699000000\n"  # 7 on the list, not a duplicate
        ",n/a\n"  # 8 invalid first
        ",699000000\n"  # 9 on the list beats missing
    )
    result = load_leads(
        write(tmp_path, text), ColumnMapping(require=("name",)), dnc={"+34699000000"}
    )
    assert [(lead.row, lead.status, lead.reason) for lead in result.leads] == [
        (2, Status.MISSING_PARAM, "missing required param 'name'"),
        (3, Status.PENDING, ""),
        (4, Status.DUPLICATE, "same phone as row 3"),
        (5, Status.DUPLICATE, "same phone as row 3"),
        (6, Status.DNC, "on the do-not-call list"),
        (7, Status.DNC, "on the do-not-call list"),
        (8, Status.INVALID, "not a phone number"),
        (9, Status.DNC, "on the do-not-call list"),
    ]


# --- --allow-possible ---------------------------------------------------------------------------


def test_allow_possible(tmp_path: Path) -> None:
    path = write(tmp_path, "phone\n+34 412 345 678\n612345678\n12345\n")
    strict = load_leads(path)
    assert [(lead.status, lead.reason) for lead in strict.leads] == [
        (Status.INVALID, "invalid number for ES"),
        (Status.PENDING, ""),
        (Status.INVALID, "invalid number for ES"),
    ]
    loose = load_leads(path, allow_possible=True)
    assert [(lead.phone, lead.status) for lead in loose.leads] == [
        ("+34412345678", Status.PENDING),
        ("+34612345678", Status.PENDING),
        ("12345", Status.INVALID),  # not even a possible length
    ]


# --- many rows: compact storage, process pool -----------------------------------------------------


def mixed_file(tmp_path: Path, rows: int = 400) -> Path:
    """Every kind of row, repeated: valid formats, invalid, duplicates, dnc, missing params."""
    kinds = [
        lambda i: f"A{i},Lead {i},+34 6{i:08d}",
        lambda i: f"A{i},Lead {i},0034 6{i - 1:08d}",  # the row above, written another way
        lambda i: f"A{i},,6{i:08d}",  # missing param
        lambda i: f"A{i},Lead {i},3,46E+10",
        lambda i: f'A{i},"Lead\n{i}",699000000',  # on the list
        lambda i: f"A{i},Lead {i},",
        lambda i: f"A{i},Lead {i},+44 20 7946 0{i:03d}",
        lambda i: ",,",  # empty row
    ]
    lines = ["id,name,phone"] + [kinds[i % len(kinds)](i) for i in range(rows)]
    return write(tmp_path, "\n".join(lines).replace("3,46E+10", '"3,46E+10"') + "\n")


def test_pool_and_serial_paths_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = mixed_file(tmp_path)
    mapping = ColumnMapping(id_column="id", require=("name",))
    serial = load_leads(path, mapping, dnc={"+34699000000"})

    started: list[int] = []

    class CountingPool(phonepool.ProcessPoolExecutor):
        def __init__(self, max_workers: int) -> None:
            started.append(max_workers)
            super().__init__(max_workers=max_workers)

    monkeypatch.setattr(phonepool, "ProcessPoolExecutor", CountingPool)
    monkeypatch.setattr(phonepool, "_worker_count", lambda: 2)
    monkeypatch.setattr(phonepool, "_PARALLEL_MIN_ROWS", 0)
    monkeypatch.setattr(loader, "_CHUNK_ROWS", 7)
    pooled = load_leads(path, mapping, dnc={"+34699000000"})
    assert started == [2]
    assert list(pooled.leads) == list(serial.leads)
    assert pooled.warnings == serial.warnings == ["50 empty row(s) skipped"]
    assert serial.counts() == {
        "pending": 100,
        "invalid": 100,
        "duplicate": 50,
        "dnc": 50,
        "missing_param": 50,
    }


def test_pool_trouble_falls_back_to_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = mixed_file(tmp_path, rows=80)
    expected = list(load_leads(path).leads)

    class NoPool:
        def __init__(self, max_workers: int) -> None:
            raise OSError(38, "Function not implemented")

    class BrokenPool:
        def __init__(self, max_workers: int) -> None:
            pass

        def submit(self, *args: object, **kwargs: object) -> object:
            raise phonepool.BrokenProcessPool("a worker died")

        def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
            pass

    monkeypatch.setattr(phonepool, "_worker_count", lambda: 2)
    monkeypatch.setattr(phonepool, "_PARALLEL_MIN_ROWS", 0)
    monkeypatch.setattr(loader, "_CHUNK_ROWS", 5)
    for pool in (NoPool, BrokenPool):
        monkeypatch.setattr(phonepool, "ProcessPoolExecutor", pool)
        assert list(load_leads(path).leads) == expected


def test_pending_keys_and_rejects_agree_for_lead_rows_and_a_plain_list(tmp_path: Path) -> None:
    loaded = load_leads(write(tmp_path, "phone\n612345678\nabc\n612345679\n612345678\n"))
    assert isinstance(loaded.leads, LeadRows)
    as_list = LoadResult(loaded.path, "phone", [], list(loaded.leads), "utf-8", ",")
    for result in (loaded, as_list):
        assert list(result.pending_keys()) == [(0, "+34612345678"), (2, "+34612345679")]
        assert [(x.row, x.status) for x in result.rejects()] == [
            (3, Status.INVALID), (5, Status.DUPLICATE)
        ]  # fmt: skip
