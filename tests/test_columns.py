"""Which columns mean what (issue 14): phone columns found as real CRM exports name them,
the choice among several by the numbers they hold, repeated headers made distinct, columns by
letter or position, ``--phone-column A,B`` and ``--params``. Fixtures reproduce the real
layouts' headers (small, written here); the CLI runs assert from ``sim.calls`` who was dialed."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from dialer.errors import ColumnError
from dialer.leads.loader import ColumnMapping, load_dnc, load_leads
from tests.conftest import mobiles, read_rows, run_cli

M = [m[3:] for m in mobiles(6)]  # national Spanish mobiles: 612340000, 612340001, ...


def write(tmp_path: Path, text: str, name: str = "leads.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- the phone column as people name it -----------------------------------------------------------

LAYOUTS = {
    "google": (
        "Name,Phone 1 - Type,Phone 1 - Value,Phone 2 - Type,Phone 2 - Value\n"
        f"Ana,Mobile,{M[0]},Work,\n",
        ["Phone 1 - Value"],
    ),
    "outlook": (
        "First Name,Home Phone,Business Phone,Business Fax,Home Mobile,Primary Phone,Pager,"
        f"Assistant's Phone,Car Phone\nAna,,,{M[1]},{M[0]},,{M[2]},{M[3]},\n",
        ["Home Mobile"],
    ),
    "thunderbird": (
        "First Name,Work Phone,Home Phone,Fax Number,Pager Number,Mobile Number\n"
        f"Ana,{M[0]},,{M[1]},{M[2]},\n",
        ["Work Phone"],
    ),
    "salesforce_contact": (
        "Id,Phone,Fax,MobilePhone,HomePhone,OtherPhone,AssistantPhone,DoNotCall,"
        f"HasOptedOutOfFax\n003A,{M[0]},{M[1]},,{M[2]},,{M[3]},false,false\n",
        ["Phone"],
    ),
    "zoho": (
        "Display Name,Phone,Billing Phone,Billing Fax,Shipping Phone,MobilePhone\n"
        f"Ana,{M[0]},,{M[1]},{M[2]},\n",
        ["Phone"],
    ),
    "wave": (
        "customer_name,phone,fax,mobile,toll_free,ship-to_phone\n"
        f"Ana,,{M[1]},{M[0]},{M[2]},{M[3]}\n",
        ["mobile"],
    ),
    "hubspot": (
        f"First Name,Phone Number,Mobile Phone Number\nAna,{M[1]},{M[0]}\n",
        ["Mobile Phone Number", "Phone Number"],
    ),
    "datablist": (f"Index,First Name,Phone 1,Phone 2\n1,Ana,{M[0]},{M[1]}\n", ["Phone 1"]),
    "civicrm": (
        "First Name,Last Name,Phone,Phone Ext,Last Name,Mum-phone,Mum-home-mobile,Sister-phone\n"
        f"Susie,Jones,{M[0]},123,Smith,{M[1]},{M[2]},{M[3]}\n",
        ["Phone"],
    ),
    "invoice_ninja": (f"Name,Phone,First Name,Phone\nAna,,Ana,{M[0]}\n", ["Phone (2)"]),
    "spanish": (
        f"Nombre,Teléfono fijo,Teléfono móvil,Fax\nAna,,{M[0]},{M[1]}\n",
        ["Teléfono móvil"],
    ),
    "french": (f"Nom,Téléphone portable,Télécopie\nAna,{M[0]},{M[1]}\n", ["Téléphone portable"]),
    "german": (f"Name,Telefax,Handy,Telefonnummer\nAna,{M[1]},{M[0]},\n", ["Handy"]),
    "german_mobilnummer": (f"Name,Mobilnummer,Fax\nAna,{M[0]},{M[1]}\n", ["Mobilnummer"]),
    "italian": (f"Nome,Fax,Cellulare,Telefono\nAna,{M[1]},{M[0]},\n", ["Cellulare"]),
    "portuguese": (f"Nome,Telemóvel,Fax\nAna,{M[0]},{M[1]}\n", ["Telemóvel"]),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_each_layout_s_phone_column_is_found(tmp_path: Path, layout: str) -> None:
    text, expected = LAYOUTS[layout]
    result = load_leads(write(tmp_path, text))
    assert result.phone_columns == expected
    assert result.phone_column == expected[0]
    assert result.leads[0].phone == mobiles(1)[0]  # M[0], never a fax or somebody else's
    assert not set(expected) & set(result.param_names)  # no phone column is sent as a param


def test_fax_and_pager_only_is_no_phone_column_and_names_them(tmp_path: Path) -> None:
    path = write(tmp_path, f"Name,Fax,Pager,Business Fax\nAna,{M[0]},{M[1]},{M[2]}\n")
    with pytest.raises(ColumnError) as info:
        load_leads(path)
    assert str(info.value) == (
        "leads.csv: no phone column found (columns: Name, Fax, Pager, Business Fax; never "
        "dialed: 'Fax', 'Pager', 'Business Fax'); name it with --phone-column"
    )


def test_no_phone_column_among_many_says_how_many_instead_of_listing_them(tmp_path) -> None:
    header = ",".join(f"Field {i}" for i in range(83))
    with pytest.raises(ColumnError) as info:
        load_leads(write(tmp_path, header + "\n" + ",".join("x" * 83) + "\n"))
    message = str(info.value)
    assert message.startswith("leads.csv: no phone column found (83 columns: Field 0, Field 1,")
    assert "Field 82" not in message and len(message) < 200


def test_one_filled_phone_column_is_used_and_the_empty_ones_named(tmp_path: Path) -> None:
    text = "Id,Phone,MobilePhone,OtherPhone\n" + "".join(f"{i},{m},,\n" for i, m in enumerate(M))
    result = load_leads(write(tmp_path, text))
    assert result.phone_columns == ["Phone"]
    assert result.warnings == [
        "phone column 'Phone': the only phone column holding numbers "
        "(empty: 'MobilePhone', 'OtherPhone')"
    ]


def test_asking_lists_only_phone_columns_with_counts_in_the_first_10000_rows(tmp_path) -> None:
    rows = "".join(f"Ana,{M[i % 6]},{M[0] if i < 3 else ''}\n" for i in range(10_050))
    with pytest.raises(ColumnError) as info:
        load_leads(write(tmp_path, "Name,Home Phone,Work Phone\n" + rows))
    assert str(info.value) == (
        "leads.csv: several phone columns hold numbers in the first 10,000 rows: "
        "'Home Phone' (10,000), 'Work Phone' (3); choose with --phone-column (several, "
        "comma-separated, are tried in order)"
    )


def test_a_do_not_call_list_with_one_obvious_phone_column_still_loads(tmp_path: Path) -> None:
    path = write(tmp_path, f"Name,Mobile Phone,Fax\nAna,{M[0]},{M[1]}\n", "dnc.csv")
    assert load_dnc(path).numbers == {mobiles(1)[0]}


# --- every column addressable ---------------------------------------------------------------------


def test_repeated_headers_are_distinct_and_both_sent(tmp_path: Path) -> None:
    text = f"First Name,Last Name,Phone,Last Name\nSusie,Jones,{M[0]},Smith\n"
    result = load_leads(write(tmp_path, text))
    assert result.param_names == ["First Name", "Last Name", "Last Name (2)"]
    assert result.leads[0].params["Last Name"] == "Jones"
    assert result.leads[0].params["Last Name (2)"] == "Smith"
    assert result.warnings == [
        "2 columns (B, D) are named 'Last Name': they are 'Last Name', 'Last Name (2)' in flags "
        "and params"
    ]
    # --exclude names the one it means: the mother's surname goes, the lead's stays.
    result = load_leads(write(tmp_path, text), ColumnMapping(exclude=frozenset({"Last Name (2)"})))
    assert result.leads[0].params == {"First Name": "Susie", "Last Name": "Jones"}
    result = load_leads(write(tmp_path, text), ColumnMapping(rename={"Last Name (2)": "mum"}))
    assert result.leads[0].params["mum"] == "Smith"
    assert result.leads[0].params["Last Name"] == "Jones"


def test_the_hint_for_a_repeated_reserved_header_acts_on_the_column_it_names(tmp_path) -> None:
    path = write(tmp_path, f"Name,Phone,Mobile,Phone\nAna,x,{M[0]},y\n")
    result = load_leads(path)
    assert result.phone_columns == ["Mobile"]
    assert result.param_names == ["Name", "Phone (2)"]
    assert (
        "column 'Phone' ignored: 'Phone' is a call setting; rename it with --param Phone=NAME"
        in (result.warnings)
    )
    renamed = load_leads(path, ColumnMapping(rename={"Phone": "first_phone"}))
    assert renamed.leads[0].params == {"Name": "Ana", "first_phone": "x", "Phone (2)": "y"}


def test_a_column_by_letter_or_position_and_a_header_always_wins(tmp_path: Path) -> None:
    path = write(tmp_path, f"Name,Notes,Tel A,Tel B\nAna,vip,{M[0]},{M[1]}\n")
    for ref in ("D", "#4"):
        result = load_leads(path, ColumnMapping(phone_column=ref))
        assert result.phone_columns == ["Tel B"]
        assert result.leads[0].phone == mobiles(2)[1]
    result = load_leads(path, ColumnMapping(phone_column="C", exclude=frozenset({"B"})))
    assert result.phone_columns == ["Tel A"]
    assert result.param_names == ["Name", "Tel B"]
    # a column whose header is "C" is that column, not the third one
    path = write(tmp_path, f"Name,C,Mobile\nAna,x,{M[0]}\n", "c.csv")
    assert load_leads(path, ColumnMapping(exclude=frozenset({"C"}))).param_names == ["Name"]
    with pytest.raises(ColumnError, match=r"no column 'Z' for --exclude"):
        load_leads(path, ColumnMapping(exclude=frozenset({"Z"})))


def test_phone_column_list_and_a_header_with_a_comma(tmp_path: Path) -> None:
    path = write(tmp_path, f'Name,"Phone, main",Mobile\nAna,{M[0]},{M[1]}\n')
    result = load_leads(path, ColumnMapping(phone_column="Mobile, Phone, main"))
    assert result.phone_columns == ["Mobile", "Phone, main"]
    result = load_leads(path, ColumnMapping(phone_column="Phone, main"))
    assert result.phone_columns == ["Phone, main"]
    result = load_leads(path, ColumnMapping(phone_column="C,B"))
    assert result.phone_columns == ["Mobile", "Phone, main"]
    assert result.param_names == ["Name"]  # neither phone column is sent
    with pytest.raises(ColumnError) as info:
        load_leads(path, ColumnMapping(phone_column="Mobile,Fax"))
    assert str(info.value) == (
        "leads.csv: no column 'Fax' for --phone-column (columns: Name, Phone, main, Mobile)"
    )


# --- send what you mean ---------------------------------------------------------------------------


def test_params_sends_only_the_columns_named(tmp_path: Path) -> None:
    path = write(tmp_path, f"Id,Name,Email,PhotoUrl,Phone,Notes\n7,Ana,a@x.es,/p.png,{M[0]},vip\n")
    result = load_leads(path, ColumnMapping(send_only=("Name,email", "F")))
    assert result.param_names == ["Name", "Email", "Notes"]
    mapping = ColumnMapping(send_only=("firstname", "Email"), rename={"Name": "firstname"},
                            exclude=frozenset({"Email"}))  # fmt: skip
    assert load_leads(path, mapping).leads[0].params == {"firstname": "Ana"}
    with pytest.raises(ColumnError) as info:
        load_leads(path, ColumnMapping(send_only=("Name", "Owner")))
    assert str(info.value) == (
        "leads.csv: no column 'Owner' for --params (columns: Id, Name, Email, PhotoUrl, Phone, "
        "Notes)"
    )


# --- through the installed CLI, against the simulator --------------------------------------------


def _bodies(sim) -> dict[str, dict]:
    counts = collections.Counter(call.phone for call in sim.calls)
    assert all(n == 1 for n in counts.values()), counts  # nobody dialed twice
    return {call.phone: call.body for call in sim.calls}


def test_cli_two_phone_columns_dial_the_filled_one(sim, tmp_path: Path) -> None:
    rows = "".join(f"Client {i},,Ana,{m}\n" for i, m in enumerate(M[:4]))
    leads = write(tmp_path, "Name,Phone,First Name,Phone\n" + rows)
    proc = run_cli("run", str(leads), "--playbook", "pb", url=sim.url)
    assert proc.returncode == 0, proc.stderr
    bodies = _bodies(sim)
    assert set(bodies) == set(mobiles(4))
    assert all("Phone" not in b and "Phone (2)" not in b for b in bodies.values())


def test_cli_salesforce_contact_dials_phone_never_home_or_assistant(sim, tmp_path) -> None:
    rows = "".join(f"00{i},{M[i]},,,{M[i + 3]},{M[i + 3]}\n" for i in range(3))
    leads = write(tmp_path, "Id,Phone,Fax,MobilePhone,HomePhone,AssistantPhone\n" + rows)
    proc = run_cli("run", str(leads), "--playbook", "pb", "--dry-run")
    assert "Warning:       several phone columns hold numbers: dialing 'Phone' (3)" in proc.stdout
    proc = run_cli("run", str(leads), "--playbook", "pb", url=sim.url)
    assert proc.returncode == 0, proc.stderr
    assert set(_bodies(sim)) == set(mobiles(3))


def test_cli_civicrm_sends_both_surnames_and_never_dials_the_mother(sim, tmp_path) -> None:
    leads = write(
        tmp_path,
        "First Name,Last Name,Phone,Phone Ext,Last Name,Mum-phone,Sister-phone\n"
        f"Susie,Jones,{M[0]},123,Smith,{M[1]},{M[2]}\n",
    )
    proc = run_cli("run", str(leads), "--playbook", "pb", "--dry-run")
    assert "Custom params: First Name, Last Name, Phone Ext, Last Name (2)," in proc.stdout
    proc = run_cli("run", str(leads), "--playbook", "pb", url=sim.url)
    assert proc.returncode == 0, proc.stderr
    bodies = _bodies(sim)
    assert list(bodies) == [mobiles(1)[0]]
    assert bodies[mobiles(1)[0]]["Last Name"] == "Jones"
    assert bodies[mobiles(1)[0]]["Last Name (2)"] == "Smith"


def test_cli_params_limits_the_call_body_and_letters_name_columns(sim, tmp_path) -> None:
    leads = write(
        tmp_path,
        "Id,Name,Email,PhotoUrl,Tel A,Tel B\n"
        + "".join(f"{i},Ana {i},a{i}@x.es,/p.png,{M[i]},{M[i + 3]}\n" for i in range(3)),
    )
    out = tmp_path / "out.csv"
    proc = run_cli("run", str(leads), "--playbook", "pb", "--phone-column", "F", "--params",
                   "Name", "--params", "C", "--param", "Name=firstname", "--output", str(out),
                   url=sim.url)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    bodies = _bodies(sim)
    assert set(bodies) == set(mobiles(6)[3:])  # column F, Tel B: never Tel A
    for i, phone in enumerate(mobiles(6)[3:]):
        assert bodies[phone] == {"phone": phone, "playbook_id": "pb",
                                 "firstname": f"Ana {i}", "Email": f"a{i}@x.es"}  # fmt: skip
    assert len(read_rows(out)) == 3
