"""The 16 real exports of ../shared/realdata, each run through the installed CLI against the
simulator: the right people, in the right country, once.

Every file is a real CRM's or tool's export (SOURCES.md there says whose); they are read where
they are, never copied into the project. For each, a real run (the simulator's limits off, so
900 calls take seconds) must exit 0, create at most one call per number, and dial no row in
another country than the row's own: the expected country code is worked out here
independently of the dialer (pycountry's names and codes, phonenumbers' codes), from the
file's own cells read with the csv module, and a call whose number carries another code is
someone abroad rung by mistake. A row whose cell starts with ``+`` or ``00`` chose its country
itself; a row with no country is read in the default region (ES). Then what each layout must
do, file by file (issue 14).
"""

from __future__ import annotations

import collections
import csv
import io
import re
from pathlib import Path

import phonenumbers
import pycountry
import pytest

from tests.conftest import read_rows, run_cli

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
FILES = sorted(REALDATA.glob("*.csv")) if REALDATA.is_dir() else []
FAST = ("--playbook", "pb", "--max-per-second", "1000", "--max-per-minute", "100000")

pytestmark = pytest.mark.skipif(not FILES, reason=f"no real exports at {REALDATA}")


def _dry(path: Path, *flags: str) -> dict[str, str]:
    proc = run_cli("run", str(path), *FAST, "--dry-run", *flags)
    assert proc.returncode == 0, proc.stderr
    return {line[:15].strip(): line[15:] for line in proc.stdout.splitlines() if line[:15].strip()}


def _rows(path: Path, encoding: str, delimiter: str) -> dict[int, list[str]]:
    """The file's records by spreadsheet row number (title lines count; quoted line breaks do
    not start a row), read with the csv module."""
    text = path.read_bytes().decode(encoding)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    return {number: cells for number, cells in enumerate(reader, start=1)}


def _column(header: list[str], name: str) -> int:
    """The index of a column as the dialer names it: "Phone (2)" is the second "Phone"."""
    header = [h.replace("\ufeff", "").strip() for h in header]
    match = re.fullmatch(r"(.*) \((\d+)\)", name)
    if name in header:
        return header.index(name)
    assert match, (name, header)
    base, nth = match.group(1), int(match.group(2))
    return [i for i, h in enumerate(header) if h == base][nth - 1]


def _expected_code(country: str) -> int | None:
    """The calling code of the country a cell names, independently of the dialer: pycountry's
    lookup of a code or an English name; None when it names none (such a row must not ring)."""
    if not country.strip():
        return phonenumbers.country_code_for_region("ES")
    try:
        region = pycountry.countries.lookup(country.strip()).alpha_2
    except LookupError:
        return None
    return phonenumbers.country_code_for_region(region) or None


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_each_real_export_rings_nobody_abroad_and_nobody_twice(sim, tmp_path, path):
    sim.config.per_second = sim.config.per_minute = None
    info = _dry(path)
    encoding, delimiter = re.match(r".*\((\S+), delimiter '(.)'\)$", info["Leads file:"]).groups()
    out = tmp_path / "results.csv"
    proc = run_cli("run", str(path), *FAST, "--output", str(out), url=sim.url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = collections.Counter(call.phone for call in sim.calls)
    assert all(n == 1 for n in calls.values()), calls.most_common(3)
    called = {r["phone"]: r for r in read_rows(out) if r["status"] == "called"}
    assert set(called) == set(calls)
    rows = _rows(path, "cp1252" if encoding == "cp1252" else "utf-8-sig", delimiter)
    header_row = min(int(r["row"]) for r in read_rows(out)) - 1
    header = rows[header_row]
    country_at = None
    if "Country:" in info:
        country_at = _column(header, re.match(r"from column '(.*)' \(", info["Country:"]).group(1))
    first_phone = info["Phone column:"].split(", then ")[0]
    for phone, result in called.items():
        cells = rows[int(result["row"])]
        raw = cells[_column(header, result["phone_column"] or first_phone)].strip()
        if raw.startswith(("+", "00")):
            continue  # the cell named its country itself
        country = cells[country_at] if country_at is not None else ""
        code = phonenumbers.parse(phone).country_code
        assert code == _expected_code(country), (path.name, result["row"], raw, country, phone)


def _run(sim, tmp_path: Path, name: str, *flags: str) -> tuple[list[dict[str, str]], str]:
    sim.config.per_second = sim.config.per_minute = None
    out, rejects = tmp_path / "results.csv", tmp_path / "rejects.csv"
    proc = run_cli("run", str(REALDATA / name), *FAST, "--output", str(out), "--rejects",
                   str(rejects), *flags, url=sim.url)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return read_rows(rejects), proc.stdout


def test_salesforce_us_leads_are_dialed_as_us_numbers_never_spanish(sim, tmp_path):
    rejects, _ = _run(sim, tmp_path, "sfdc_Lead.csv")
    assert len(sim.calls) == 21 and all(c.phone.startswith("+1") for c in sim.calls)
    assert {r["reason"] for r in rejects} == {"invalid number for US"}
    assert len(rejects) == 39


def _e164(cell: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(cell, region)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def test_salesforce_contacts_dial_phone_never_home_assistant_or_fax(sim, tmp_path):
    _run(sim, tmp_path, "sfdc_Contact.csv")
    rows = _rows(REALDATA / "sfdc_Contact.csv", "utf-8-sig", ",")
    header = rows[1]
    column = {name: header.index(name) for name in ("Phone", "HomePhone", "OtherPhone",
                                                    "AssistantPhone", "Fax")}  # fmt: skip
    main = {_e164(cells[column["Phone"]], "US") for n, cells in rows.items() if n > 1}
    others = {_e164(cells[column[name]], "US") for n, cells in rows.items() if n > 1
              for name in ("HomePhone", "OtherPhone", "AssistantPhone", "Fax")} - main  # fmt: skip
    dialed = {c.phone for c in sim.calls}
    assert len(dialed) == 35 and dialed <= main and dialed.isdisjoint(others)


def test_a_madrid_school_list_with_a_title_line_and_a_wide_row(sim, tmp_path):
    rejects, stdout = _run(sim, tmp_path, "madridedu_2023-11-25-(496).csv")
    assert len(sim.calls) == 819 and all(c.phone.startswith("+34") for c in sim.calls)
    assert "header found on row 2" in stdout
    wide = [r for r in rejects if "fields but the header has 13" in r["reason"]]
    assert [r["row"] for r in wide] == ["902"]
    duplicates = [r for r in rejects if r["status"] == "duplicate"]
    assert len(duplicates) == 54
    assert {r["to do"] for r in duplicates} == {
        "nothing to fix: the same person as another row, called once"
    }


def test_invoice_ninja_finds_its_header_and_the_filled_phone_column(sim, tmp_path):
    _, stdout = _run(sim, tmp_path, "invoiceninja_clients.csv", "--default-region", "US")
    assert "header found on row 4" in stdout
    assert all(c.phone.startswith("+1") for c in sim.calls)
    rows = _rows(REALDATA / "invoiceninja_clients.csv", "utf-8-sig", ",")
    cells = [cells[_column(rows[4], "Phone (2)")] for n, cells in rows.items() if n > 4]
    expected = {}  # E.164 -> extension, read by phonenumbers from the raw cells
    for cell in cells:
        number = phonenumbers.parse(cell, "US")
        number_ext, number.extension = number.extension or "", None
        expected[phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)] = (
            number_ext
        )
    assert {c.phone: c.body.get("extension", "") for c in sim.calls} == {
        phone: ext for phone, ext in expected.items() if phone in {c.phone for c in sim.calls}
    }
    assert len([c for c in sim.calls if "extension" in c.body]) >= 5


def test_excel_formula_damage_is_named_in_the_rejects(sim, tmp_path):
    rejects, _ = _run(sim, tmp_path, "datablist-excel_customers-100.csv")
    damaged = [r for r in rejects if r["reason"].startswith("Excel evaluated this number")]
    # The cell as Excel saved it (the rejects file shows it formula-safe, behind a quote).
    assert damaged and all(re.fullmatch(r"'?-\d+", r["Phone 1"]) for r in damaged)


def test_civicrm_never_rings_the_mother_and_sends_both_surnames(sim, tmp_path):
    info = _dry(REALDATA / "civicrm_individual_locations_with_related.csv")
    assert info["Phone column:"] == "Phone"  # not Mum-phone, Mum-home-mobile, Sister-phone
    params = info["Custom params:"].split(", ")
    assert "Last Name" in params and "Last Name (2)" in params


def test_freshbooks_us_numbers_are_never_read_as_spanish(sim, tmp_path):
    rejects, _ = _run(sim, tmp_path, "invoiceninja_freshbooks_clients.csv")
    assert sim.calls == []
    assert [r["reason"] for r in rejects] == ["invalid number for US"] * 2
