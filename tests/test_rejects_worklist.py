"""The rejects file is a worklist: what to fix in the leads file, never a leads file itself.

Run through the installed CLI against the simulator: every row is in the rejects with what to do,
duplicates and do-not-call rows say there is nothing to fix, fixing the row in the leads file
and rerunning dials the fixed number (once), and the rejects file is refused as a leads file (it
would ring the duplicates a second time).
"""

from __future__ import annotations

from tests.conftest import read_rows, run_cli

RUN = ("--playbook", "pb", "--max-per-minute", "1000")


def test_the_rejects_say_what_to_do_and_a_fix_in_the_leads_file_is_dialed_once(sim, tmp_path):
    leads = tmp_path / "leads.csv"
    leads.write_text(
        "name,phone\nAna,+34612340001\nBea,12345\nAna again,612 34 00 01\nDon,+34612340009\n",
        encoding="utf-8",
    )
    (tmp_path / "dnc.txt").write_text("+34612340009\n", encoding="utf-8")
    rejects = tmp_path / "rejects.csv"
    args = ("run", str(leads), *RUN, "--dnc", str(tmp_path / "dnc.txt"), "--rejects", str(rejects))
    proc = run_cli(*args, url=sim.url)
    assert proc.returncode == 0, proc.stderr
    assert [c.phone for c in sim.calls] == ["+34612340001"]
    rows = read_rows(rejects)
    assert [(r["row"], r["status"], r["to do"]) for r in rows] == [
        ("3", "invalid", "fix row 3 in leads.csv and rerun it: the fixed row is dialed then"),
        ("4", "duplicate", "nothing to fix: the same person as another row, called once"),
        ("5", "dnc", "nothing to fix: on the do-not-call list, never called"),
    ]
    assert rows[1]["reason"] == "same phone as row 2" and rows[1]["phone"] == "+34612340001"

    # The worklist cannot be run as a campaign: its duplicate row would ring Ana again.
    again = run_cli("run", str(rejects), *RUN, url=sim.url)
    assert again.returncode == 2
    assert again.stderr.strip() == (
        "error: rejects.csv: this is a rejects file written by dialer, not a leads file: fix "
        "the rows in the original leads file and rerun that file"
    )
    assert len(sim.calls) == 1

    # The fix goes into the leads file; the rerun dials the fixed number, and only it.
    leads.write_text(leads.read_text(encoding="utf-8").replace("12345", "612340002"))
    proc = run_cli(*args, url=sim.url)
    assert proc.returncode == 0, proc.stderr
    assert sorted(c.phone for c in sim.calls) == ["+34612340001", "+34612340002"]
    assert [r["status"] for r in read_rows(rejects)] == ["duplicate", "dnc"]


def test_with_two_phone_columns_the_rejects_say_which_cell_was_wrong(sim, tmp_path):
    leads = tmp_path / "leads.csv"
    leads.write_text(
        "name,Mobile,Phone\nAna,,12345\nBea,99,\nCruz,612340003,612340004\n", encoding="utf-8"
    )
    rejects = tmp_path / "rejects.csv"
    proc = run_cli("run", str(leads), *RUN, "--phone-column", "Mobile,Phone", "--rejects",
                   str(rejects), url=sim.url)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert [c.phone for c in sim.calls] == ["+34612340003"]
    assert [(r["row"], r["Mobile"], r["phone column"]) for r in read_rows(rejects)] == [
        ("2", "12345", "Phone"),
        ("3", "99", "Mobile"),
    ]
