"""Edits to the leads file between runs: rows removed, phones changed, rows reordered.

The end-to-end tests run the installed ``dialer`` CLI against the real simulator and assert
from its own record of created calls (``sim.calls``) that nobody was dialed twice, and the
exact lines the user is told. The unit tests check ``dialer.store.edits.compare`` on plain states.
"""

from __future__ import annotations

import collections
import csv
import json
from pathlib import Path

from dialer.leads.loader import ColumnMapping, load_leads
from dialer.model import Status
from dialer.store.edits import REMOVED_REASON, PhoneChange, compare
from dialer.store.results import RESULT_COLUMNS, Entry
from tests.conftest import mobiles, read_rows, run_cli, write_leads

AGAIN = "not dialed; pending again if put back"


def created_per_phone(sim) -> collections.Counter[str]:
    return collections.Counter(call.phone for call in sim.calls)


def run(leads: Path, *args: str, url: str):
    proc = run_cli("run", str(leads), "--playbook", "pb", *args, url=url)
    assert "Traceback" not in proc.stdout + proc.stderr
    return proc


def status(results: Path) -> list[str]:
    proc = run_cli("status", str(results), token=None)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def write_rows(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# --- rows removed ---------------------------------------------------------------------------


def test_rows_removed_between_batches_are_removed_not_pending_and_come_back(sim, tmp_path):
    phones = mobiles(10)
    leads = write_leads(tmp_path / "l.csv", phones)
    results = tmp_path / "l.results.csv"
    first = run(leads, "--max-calls", "5", url=sim.url)
    assert first.returncode == 0, first.stderr
    assert status(results)[0] == "l.results.csv: 10 leads: 5 called, 5 pending"
    # Rows 8 to 10 (never called) are deleted from the file.
    write_leads(leads, phones[:7])
    dry = run(leads, "--dry-run", url=sim.url)
    assert dry.returncode == 0, dry.stderr
    line = f"Not in l.csv any more: 3 leads never called, now removed ({AGAIN})"
    assert line in dry.stdout.splitlines()
    assert "To dial now:   2 (5 already done in" in dry.stdout
    second = run(leads, url=sim.url)
    assert second.returncode == 0, second.stderr
    out = second.stdout.splitlines()
    assert out[0] == "7 rows in l.csv: 2 to dial, 5 already done"
    assert out[1] == line
    assert "Campaign: 7 called, 3 removed" in out
    assert created_per_phone(sim) == collections.Counter(phones[:7])  # nobody else, once each
    assert status(results)[0] == "l.results.csv: 10 leads: 7 called, 3 removed"
    rows = {r["phone"]: r for r in read_rows(results)}
    assert [rows[p]["status"] for p in phones[7:]] == ["removed"] * 3
    assert rows[phones[9]]["error"] == REMOVED_REASON
    # A third run changes nothing and says the same.
    third = run(leads, url=sim.url)
    assert third.returncode == 0 and line in third.stdout.splitlines()
    assert len(sim.calls) == 7
    # Row 10 is put back: pending again, dialed once.
    write_leads(leads, [*phones[:7], phones[9]])
    fourth = run(leads, url=sim.url)
    assert fourth.returncode == 0, fourth.stderr
    out = fourth.stdout.splitlines()
    assert out[0] == "8 rows in l.csv: 1 to dial, 7 already done"
    assert "Back in l.csv: 1 removed lead, pending again" in out
    assert f"Not in l.csv any more: 2 leads never called, now removed ({AGAIN})" in out
    assert created_per_phone(sim) == collections.Counter([*phones[:7], phones[9]])
    assert status(results)[0] == "l.results.csv: 10 leads: 8 called, 2 removed"


def test_called_leads_no_longer_in_the_file_keep_their_results(sim, tmp_path):
    phones = mobiles(4)
    leads = write_leads(tmp_path / "l.csv", phones)
    results = tmp_path / "l.results.csv"
    assert run(leads, url=sim.url).returncode == 0
    write_leads(leads, phones[:2])
    second = run(leads, url=sim.url)
    assert second.returncode == 0, second.stderr
    line = "Not in l.csv any more, results kept: 2 called"
    assert line in second.stdout.splitlines()
    assert "Campaign: 4 called" in second.stdout.splitlines()
    assert len(sim.calls) == 4
    lines = status(results)
    assert lines[0] == "l.results.csv: 4 leads: 4 called"
    assert "Not in the leads file at the last run, results kept: 2 called" in lines
    record = json.loads(
        (tmp_path / "l.results.csv.dialer" / "runs.jsonl").read_text().splitlines()[-1]
    )
    assert record["leads_file_changes"]["kept"] == {"called": 2}


# --- a phone changed after a call -----------------------------------------------------------


def test_a_phone_changed_after_a_call_is_reported_and_dialed_once_by_crm_id(sim, tmp_path):
    phones, new = mobiles(3), mobiles(1, start=50)[0]
    header = ["crm", "name", "phone"]
    leads = write_rows(tmp_path / "l.csv", header,
                       [[f"C{i}", f"Name {i}", p] for i, p in enumerate(phones)])  # fmt: skip
    args = ("--id-column", "crm")
    assert run(leads, *args, url=sim.url).returncode == 0
    # Row 3 (C1) gets a corrected phone, and its name is fixed too: the CRM id tells.
    write_rows(leads, header, [["C0", "Name 0", phones[0]], ["C1", "Name One", new],
                               ["C2", "Name 2", phones[2]]])  # fmt: skip
    dry = run(leads, *args, "--dry-run", url=sim.url)
    said = f"row 3: phone changed from {phones[1]} to {new} after a call: dialed as a new lead"
    assert said in dry.stdout.splitlines()
    second = run(leads, *args, url=sim.url)
    assert second.returncode == 0, second.stderr
    assert said in second.stdout.splitlines()
    assert second.stdout.splitlines()[0] == "3 rows in l.csv: 1 to dial, 2 already done"
    assert created_per_phone(sim) == collections.Counter([*phones, new])
    rows = {r["phone"]: r for r in read_rows(tmp_path / "l.results.csv")}
    assert rows[new]["status"] == "called" and rows[new]["row"] == "3"
    assert rows[phones[1]]["status"] == "called"  # the old call's history stays
    # Once the new phone is called, the next run has nothing to say about it.
    third = run(leads, *args, url=sim.url)
    assert "phone changed" not in third.stdout and len(sim.calls) == 4


def test_a_phone_changed_after_a_call_is_recognised_by_its_other_cells(sim, tmp_path):
    phones, new = mobiles(3), mobiles(1, start=50)[0]
    leads = write_leads(tmp_path / "l.csv", phones, email=["a@x.es", "b@x.es", "c@x.es"])
    assert run(leads, url=sim.url).returncode == 0
    write_leads(leads, [phones[0], new, phones[2]], email=["a@x.es", "b@x.es", "c@x.es"])
    second = run(leads, url=sim.url)
    assert second.returncode == 0, second.stderr
    said = f"row 3: phone changed from {phones[1]} to {new} after a call: dialed as a new lead"
    assert said in second.stdout.splitlines()
    assert created_per_phone(sim) == collections.Counter([*phones, new])


def test_a_new_phone_with_other_cells_changed_too_is_not_called_a_change(sim, tmp_path):
    phones, new = mobiles(2), mobiles(1, start=50)[0]
    leads = write_leads(tmp_path / "l.csv", phones)
    assert run(leads, url=sim.url).returncode == 0
    leads.write_text(f"first_name,phone\nSomeone Else,{new}\nLead 1,{phones[1]}\n")
    second = run(leads, url=sim.url)
    assert second.returncode == 0, second.stderr
    assert "phone changed" not in second.stdout
    assert created_per_phone(sim) == collections.Counter([*phones, new])


# --- rows reordered -------------------------------------------------------------------------


def test_row_numbers_follow_the_file_after_rows_are_reordered(sim, tmp_path):
    phones = mobiles(6)
    leads = write_leads(tmp_path / "l.csv", phones)
    results = tmp_path / "l.results.csv"
    assert run(leads, "--max-calls", "4", url=sim.url).returncode == 0
    # Reversed, and two new leads on top: every row number changes.
    order = [*mobiles(2, start=60), *reversed(phones)]
    write_leads(leads, order, city=["Madrid"] * 8)
    second = run(leads, url=sim.url)
    assert second.returncode == 0, second.stderr
    assert "Row numbers follow l.csv: 4 leads moved" in second.stdout.splitlines()
    rows = read_rows(results)
    assert {r["phone"]: int(r["row"]) for r in rows} == {p: i for i, p in enumerate(order, 2)}
    assert [r["phone"] for r in rows] == order  # the compacted file is in the file's order
    assert created_per_phone(sim) == collections.Counter(order)
    lines = status(results)
    assert lines[0] == "l.results.csv: 8 leads: 8 called"
    third = run(leads, url=sim.url)
    assert "Row numbers follow" not in third.stdout and len(sim.calls) == 8


# --- compare(), the rules on plain states ---------------------------------------------------


def load(tmp_path: Path, text: str, **mapping: str):
    path = tmp_path / "leads.csv"
    path.write_text(text, encoding="utf-8")
    return load_leads(path, ColumnMapping(**mapping))


def entry(phone: str, row: int, status: Status, **more: str) -> Entry:
    return Entry(phone, row, phone, status, **more)


def test_compare_sorts_every_ledger_lead_by_what_the_file_says(tmp_path):
    a, b, c, d, e, f, g = mobiles(7)
    loaded = load(tmp_path, f"name,phone\nA,{a}\nB,{b}\nE,{e}\n")
    state = {
        a: entry(a, 2, Status.CALLED),  # same row: nothing
        b: entry(b, 5, Status.FAILED),  # moved from row 5 to 3
        c: entry(c, 6, Status.PENDING),  # gone, never called: removed
        d: entry(d, 7, Status.DEFERRED),  # idem
        e: entry(e, 8, Status.REMOVED),  # back
        f: entry(f, 9, Status.DIALING),  # gone, may have been called: kept, counted in doubt
        g: entry(g, 10, Status.REMOVED),  # still gone
        "row:11": Entry("row:11", 11, "12345", Status.INVALID),
    }
    changes = compare(loaded, state)
    assert changes.removed == [(c, REMOVED_REASON), (d, REMOVED_REASON)]
    assert changes.still_removed == 1 and changes.removed_total == 3
    assert changes.returned == [(e, 4)]
    assert changes.gone == {"in_doubt": 1} and changes.gone_in_doubt == [f]
    assert list(changes.moves) == [(b, 3)]
    assert changes.phone_changes == []


def test_compare_says_why_a_phone_still_in_the_file_is_removed(tmp_path):
    a, b = mobiles(2)
    dnc = tmp_path / "dnc.csv"
    dnc.write_text(f"phone\n{b}\n")
    from dialer.leads.loader import load_dnc

    path = tmp_path / "leads.csv"
    path.write_text(f"name,phone\nA,{a}\nB,{b}\n")
    loaded = load_leads(path, dnc=load_dnc(dnc))
    changes = compare(loaded, {b: entry(b, 3, Status.PENDING)})
    assert changes.removed == [(b, "no longer dialable in the leads file (row 3: dnc): never sent")]


def test_compare_finds_a_changed_phone_by_crm_id_only_when_the_id_is_unambiguous(tmp_path):
    a, b, new, other = mobiles(4)
    loaded = load(tmp_path, f"id,phone\nX1,{new}\nX2,{other}\n", id_column="id")
    state = {a: entry(a, 2, Status.CALLED, crm_id="X1"),
             b: entry(b, 3, Status.IN_DOUBT, crm_id="X2"),
             "+34612349999": entry("+34612349999", 4, Status.CALLED, crm_id="X2")}  # fmt: skip
    changes = compare(loaded, state)
    assert changes.phone_changes == [PhoneChange(2, a, new, True)]


def test_compare_by_cells_needs_the_previous_parse_and_unique_cells(tmp_path):
    a, b, c, new1, new2 = mobiles(5)
    old = load(tmp_path, f"city,phone\nMadrid,{a}\nMadrid,{b}\nLeón,{c}\n").leads
    loaded = load(tmp_path, f"city,phone\nMadrid,{new1}\nLeón,{new2}\n")
    state = {p: entry(p, i, Status.CALLED) for i, p in enumerate((a, b, c), 2)}
    assert compare(loaded, state).phone_changes == []  # no previous parse: nothing said
    changes = compare(loaded, state, previous=lambda: old)
    # "Madrid" was two called rows: ambiguous, not said. "León" was one: said.
    assert changes.phone_changes == [PhoneChange(3, c, new2, True)]


def test_moved_rows_are_journaled_so_every_reader_sees_them_before_the_results_are_compacted(
    tmp_path,
):
    from dialer.model import Lead, Outcome
    from dialer.store.ledger import Ledger, read_state

    a, b = mobiles(2)
    results = tmp_path / "l.results.csv"
    with Ledger(results, durable=False) as ledger:
        for row, phone in ((2, a), (3, b)):
            ledger.outcome(Outcome(Lead(row, phone), Status.CALLED, call_id=f"id-{row}"))
    with Ledger(results, durable=False) as ledger:  # from the snapshot: rows change in place
        assert ledger.move_rows([(a, 3), (b, 2)]) == 2
        assert ledger.get(a).row == 3 and ledger.get(a).call_id == "id-2"
        # Not compacted yet (as after a crash): the journal has the new numbers.
        assert {e.key: e.row for e in read_state(results).values()} == {a: 3, b: 2}
    assert [(r["row"], r["phone"]) for r in read_rows(results)] == [("2", b), ("3", a)]
    with Ledger(results, durable=False) as ledger:
        assert ledger.get(a).row == 3 and ledger.get(b).row == 2


def test_an_unchanged_file_carries_the_last_comparison_through_runs_and_syncs(
    sim, tmp_path, monkeypatch
):
    from dialer.campaign import build_settings
    from dialer.engine import run as run_module
    from dialer.store.cache import leads_mark_path

    phones = mobiles(6)
    leads = write_leads(tmp_path / "l.csv", phones)
    results = tmp_path / "l.results.csv"
    assert run(leads, "--max-calls", "4", url=sim.url).returncode == 0
    write_leads(leads, [phones[0], phones[1], phones[4]])  # 2 called and 1 never called gone
    said = ["Not in l.csv any more: 1 lead never called, now removed (" + AGAIN + ")",
            "Not in l.csv any more, results kept: 2 called"]  # fmt: skip
    assert run(leads, url=sim.url).stdout.splitlines()[1:3] == said
    assert leads_mark_path(results).exists()
    synced = run_cli("sync", str(results), url=sim.url)
    assert synced.returncode == 0, synced.stderr
    # Nothing to compare: the mark, still true after the sync, says it all (compare would fail).
    monkeypatch.setattr(run_module, "compare", None)
    preview = run_module.plan(build_settings(leads, {"playbook": "pb"}))
    assert preview.changes.removed_total == 1 and preview.changes.gone == {"called": 2}
    assert run(leads, url=sim.url).stdout.splitlines()[1:3] == said
    # Any other change to the results (here a row appended by hand) and it compares again.
    monkeypatch.undo()
    compared = []
    monkeypatch.setattr(
        run_module, "compare", lambda *a, **k: compared.append(1) or compare(*a, **k)
    )
    with open(results, "a", encoding="utf-8") as handle:
        cells = ["9", "", mobiles(1, start=90)[0], "pending", "", "0"]
        handle.write(",".join(cells + [""] * (len(RESULT_COLUMNS) - len(cells))) + "\r\n")
    preview = run_module.plan(build_settings(leads, {"playbook": "pb"}))
    assert compared and preview.changes.removed_total == 2  # the appended lead is not in the file


def test_an_in_doubt_lead_no_longer_in_the_file_found_not_placed_is_removed_not_dialed(
    sim, tmp_path
):
    phones = mobiles(3)
    sim.config.faults = {phones[2]: ["500_before"]}  # no call made, but the answer is a 500
    sim.config.list_status = 404  # and GET /calls cannot tell: in doubt
    leads = write_leads(tmp_path / "l.csv", phones)
    first = run(leads, "--in-doubt-grace", "0", url=sim.url)
    assert first.returncode == 6, first.stdout + first.stderr
    sim.config.list_status = None
    write_leads(leads, phones[:2])
    second = run(leads, "--in-doubt-grace", "0", url=sim.url)
    assert second.returncode == 0, second.stdout + second.stderr
    out = second.stdout.splitlines()
    assert "Not in l.csv any more, results kept: 1 in_doubt" in out  # before the look-up
    assert "Campaign: 2 called, 1 removed" in out
    assert not any(line.startswith("Not in the leads file any more") for line in out)
    assert created_per_phone(sim) == collections.Counter(phones[:2])  # never dialed again
    rows = {r["phone"]: r for r in read_rows(tmp_path / "l.results.csv")}
    assert rows[phones[2]]["status"] == "removed"
    assert rows[phones[2]]["error"] == "no longer in the leads file: not placed, never sent"
