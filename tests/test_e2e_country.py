"""End to end: each row's country decides how its number is read, through the installed CLI.

Issue 14: a US list was dialed as Spanish numbers because only ``--default-region`` was read.
Each test runs ``dialer run`` against the simulator and checks, from the simulator's own record
(``sim.calls``), who was dialed: the right numbers, in the right country, nobody twice.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tests.conftest import read_rows, run_cli

FORMULA = "Excel evaluated this number as a formula"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def dialed(sim) -> list[str]:
    phones = [call.phone for call in sim.calls]
    assert max(Counter(phones).values(), default=0) <= 1, phones  # nobody rung twice
    return sorted(phones)


def run(sim, path: Path, *flags: str):
    proc = run_cli("run", str(path), "--playbook", "pb", *flags, url=sim.url)
    assert "Traceback" not in proc.stdout + proc.stderr
    return proc


def results(path: Path) -> dict[str, dict[str, str]]:
    return {row["row"]: row for row in read_rows(path.with_suffix(".results.csv"))}


def test_a_us_list_whose_numbers_are_valid_in_spain_is_not_dialed_in_spain(sim, tmp_path):
    # Salesforce's Lead export: Country=US on every row. 612345678 and 911234567 are valid
    # Spanish numbers (the default region): under the old rule two strangers in Spain rang.
    leads = write(tmp_path / "sfdc.csv",
                  "Id,LastName,Country,Phone\n"
                  "00Q1,Lee,US,612345678\n"
                  "00Q2,Kim,US,(201) 555-0123\n"
                  "00Q3,Diaz,US,911234567\n")  # fmt: skip
    proc = run(sim, leads, "--default-region", "ES")
    assert proc.returncode == 0, proc.stderr
    assert dialed(sim) == ["+12015550123"]
    assert not any(call.phone.startswith("+34") for call in sim.calls)
    rows = results(leads)
    assert (rows["2"]["status"], rows["2"]["error"]) == ("invalid", "invalid number for US")
    assert (rows["4"]["status"], rows["4"]["error"]) == ("invalid", "invalid number for US")


def test_a_mixed_country_file_dials_each_number_in_its_own_country(sim, tmp_path):
    leads = write(tmp_path / "mixed.csv",
                  "Name,Phone,Billing Country,Country\n"
                  "Ana,612 345 678,US,España\n"
                  "Bob,(201) 555-0123,ES,United States\n"
                  "Cat,0412 345 678,,Australia\n"
                  "Dan,020 7946 0958,,UK\n"
                  "Eva,030 123456,,Deutschland\n"
                  "Fay,622 111 222,,\n"
                  "Gil,+34 633 444 555,,Estados Unidos\n"
                  "Hal,699 000 111,,Narnia\n")  # fmt: skip
    dry = run(sim, leads, "--dry-run")
    assert "Country:       from column 'Country' (" in dry.stdout  # "Country" beats billing's
    proc = run(sim, leads)
    assert proc.returncode == 0, proc.stderr
    assert dialed(sim) == sorted([
        "+34612345678", "+12015550123", "+61412345678", "+442079460958", "+4930123456",
        "+34622111222",  # an empty country cell: the default region (ES)
        "+34633444555",  # an explicit + prefix wins over the column
    ])  # fmt: skip
    row = results(leads)["9"]
    assert row["status"] == "invalid" and row["error"].startswith("unknown country 'Narnia'")


def test_country_column_flag_and_a_missing_name(sim, tmp_path):
    leads = write(tmp_path / "leads.csv",
                  "Name,Phone,Residence\n"
                  "Ana,(201) 555-0123,USA\n"
                  "Bob,612 345 678,USA\n")  # fmt: skip
    proc = run(sim, leads, "--country-column", "Missing")
    assert proc.returncode == 2 and sim.calls == []
    assert proc.stderr.strip().splitlines() == [
        "error: leads.csv: no column 'Missing' for --country-column "
        "(columns: Name, Phone, Residence)"
    ]
    proc = run(sim, leads, "--country-column", "Residence")
    assert proc.returncode == 0, proc.stderr
    assert dialed(sim) == ["+12015550123"]
    assert results(leads)["3"]["error"] == "invalid number for US"


def test_phone_column_fallback_dials_the_right_cell_and_says_which(sim, tmp_path):
    leads = write(tmp_path / "contacts.csv",
                  "Name,Mobile,Phone\n"
                  "Ana,612 345 678,911 234 567\n"  # the mobile dials
                  "Bob,,622 111 222\n"  # no mobile: the phone
                  "Cat,12345,633 444 555\n"  # an invalid mobile: the phone
                  "Dan,abc,\n"  # none: the first non-empty cell's reason
                  "Eve,612 345 678,\n")  # fmt: skip
    proc = run(sim, leads, "--phone-column", "Mobile,Phone")
    assert proc.returncode == 0, proc.stderr
    assert dialed(sim) == ["+34612345678", "+34622111222", "+34633444555"]
    rows = results(leads)
    assert [(rows[r]["phone"], rows[r]["phone_column"]) for r in "234"] == [
        ("+34612345678", "Mobile"), ("+34622111222", "Phone"), ("+34633444555", "Phone"),
    ]  # fmt: skip
    assert (rows["5"]["phone"], rows["5"]["error"]) == ("abc", "not a phone number")
    assert rows["6"]["status"] == "duplicate"


def test_excel_formula_damage_is_named_in_the_rejects(sim, tmp_path):
    leads = write(tmp_path / "datablist.csv",
                  "First Name,Country,Phone 1\n"
                  "Roy,United States,-2237\n"
                  "Ann,United States,#NAME?\n"
                  "Liz,United States,201-555-0123\n")  # fmt: skip
    rejects = tmp_path / "rejects.csv"
    proc = run(sim, leads, "--phone-column", "Phone 1", "--rejects", str(rejects))
    assert proc.returncode == 0, proc.stderr
    assert dialed(sim) == ["+12015550123"]
    found = {row["row"]: row["reason"] for row in read_rows(rejects)}
    assert set(found) == {"2", "3"} and all(r.startswith(FORMULA) for r in found.values())
    assert "format the column as text before saving" in found["2"]


def test_an_extension_reaches_the_call_as_a_param(sim, tmp_path):
    leads = write(tmp_path / "wave.csv",
                  "customer_name,phone,country,extension\n"
                  "Luke,201-555-0123 x89,US,\n"
                  "Jess,(201) 555-0124 ext. 12,US,7\n"  # the column's own value is kept
                  "Matt,201-555-0125,US,\n")  # fmt: skip
    proc = run(sim, leads)
    assert proc.returncode == 0, proc.stderr
    bodies = {call.phone: call.body for call in sim.calls}
    assert sorted(bodies) == ["+12015550123", "+12015550124", "+12015550125"]
    assert bodies["+12015550123"]["extension"] == "89"
    assert bodies["+12015550124"]["extension"] == "7"
    assert "extension" not in bodies["+12015550125"]
    dialed(sim)
