"""The journal is the truth, the results CSV its readable face: a results file re-saved by a
spreadsheet, damaged, torn or missing is rebuilt from the journal (the user's copy kept aside),
read leniently when the journal is gone too, and refused in one line when it cannot be read.

End to end through the installed CLI against the simulator: a campaign of 30 leads, the results
re-saved as a spreadsheet would, then a rerun with 5 more leads; from the simulator's own record,
nobody is dialed twice and nobody is lost.
"""

from __future__ import annotations

import collections
import csv
import io

import pytest

from dialer.errors import EXIT_LEDGER
from dialer.store.journal import journal_path
from dialer.store.salvage import inspect_results, read_leniently
from tests.conftest import mobiles, read_rows, run_cli, write_leads

BOM = b"\xef\xbb\xbf"
BAD = "not a phone"  # a load-time row (invalid): results-only, re-derived by every run


def _rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def _write(rows: list[list[str]], *, bom: bool = True, **options: object) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n", **options).writerows(rows)  # type: ignore[arg-type]
    return (BOM if bom else b"") + out.getvalue().encode("utf-8")


def excel_europe(data: bytes) -> bytes:
    """Excel in a Spanish locale: ';', Windows-1252, CRLF, no BOM, '+' and ' guards gone."""
    rows = [[c.lstrip("+'") for c in row] for row in _rows(data)]
    out = io.StringIO()
    csv.writer(out, delimiter=";", lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode("cp1252")


def all_quoted(data: bytes) -> bytes:
    return _write(_rows(data), quoting=csv.QUOTE_ALL)


def blank_lines(data: bytes) -> bytes:
    rows = _rows(data)
    return _write(rows[:10]) + b"\r\n\r\n" + _write(rows[10:], bom=False) + b"\r\n"


def sorted_by_call_id(data: bytes) -> bytes:
    header, *rows = _rows(data)
    at = header.index("call_id")
    return _write([header, *sorted(rows, key=lambda r: r[at], reverse=True)])


def rows_deleted(data: bytes) -> bytes:
    header, *rows = _rows(data)
    return _write([header, *rows[:5], *rows[12:]])


def plus_stripped(data: bytes) -> bytes:
    header, *rows = _rows(data)
    at = header.index("phone")
    return _write([header, *([*r[:at], r[at].lstrip("+"), *r[at + 1 :]] for r in rows)])


def guard_added(data: bytes) -> bytes:
    header, *rows = _rows(data)
    at = header.index("phone")
    return _write([header, *([*r[:at], "'" + r[at], *r[at + 1 :]] for r in rows)])


def bom_dropped(data: bytes) -> bytes:
    return data.removeprefix(BOM)


def torn_last_row(data: bytes) -> bytes:
    """A row appended by a later run, cut short by a crash or a full disk."""
    last = data.rstrip(b"\r\n").rsplit(b"\r\n", 1)[1]
    return data + last[: len(last) // 3]


VARIANTS = {
    "excel_europe": excel_europe,
    "all_quoted": all_quoted,
    "blank_lines": blank_lines,
    "sorted_by_call_id": sorted_by_call_id,
    "rows_deleted": rows_deleted,
    "plus_stripped": plus_stripped,
    "guard_added": guard_added,
    "bom_dropped": bom_dropped,
    "torn_last_row": torn_last_row,
}


def campaign(sim, tmp_path, n: int = 30):
    leads = write_leads(tmp_path / "leads.csv", [*mobiles(n), BAD])
    out = tmp_path / "leads.results.csv"
    first = run_cli("run", str(leads), "--playbook", "pb", url=sim.url)
    assert first.returncode == 0, first.stderr
    assert len(sim.calls) == n
    return leads, out


def rerun_with_more(sim, leads, n: int = 30, more: int = 5):
    write_leads(leads, [*mobiles(n), BAD, *mobiles(more, start=n)])
    return run_cli("run", str(leads), "--playbook", "pb", url=sim.url)


def assert_everyone_called_once(sim, out, n: int):
    created = collections.Counter(call.phone for call in sim.calls)
    assert max(created.values()) == 1  # nobody twice
    assert set(created) == set(mobiles(n))  # nobody lost
    rows = read_rows(out)
    called = {r["phone"]: r["call_id"] for r in rows if r["status"] == "called"}
    assert called == {call.phone: call.id for call in sim.calls}
    assert [r["status"] for r in rows if r["phone"] == BAD] == ["invalid"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_resaved_results_file_is_rebuilt_from_the_journal(sim, tmp_path, variant):
    leads, out = campaign(sim, tmp_path)
    resaved = VARIANTS[variant](out.read_bytes())
    out.write_bytes(resaved)

    status = run_cli("status", str(out), token=None)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith(f"{out.name}: 31 leads: 30 called, 1 invalid")
    told = "is torn" if variant == "torn_last_row" else "the next 'dialer run'"
    assert told in status.stdout

    again = rerun_with_more(sim, leads)
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stdout + again.stderr
    assert_everyone_called_once(sim, out, 35)
    kept = list(tmp_path.glob("leads.results.csv.bak-*"))
    if variant == "torn_last_row":
        assert "its last row was torn" in again.stdout and not kept
    else:
        assert "rebuilt from the journal (31 leads)" in again.stdout
        assert [k.read_bytes() for k in kept] == [resaved]  # the user's copy, kept aside
        assert f"your copy was kept as {kept[0].name}" in again.stdout
    status = run_cli("status", str(out), token=None)
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[0] == f"{out.name}: 36 leads: 35 called, 1 invalid"


def test_a_missing_results_file_is_rebuilt_from_the_journal(sim, tmp_path):
    leads, out = campaign(sim, tmp_path)
    out.unlink()
    status = run_cli("status", str(out), token=None)
    assert status.returncode == 0, status.stderr
    assert "30 called" in status.stdout and "is missing: shown from the journal" in status.stdout
    again = rerun_with_more(sim, leads)
    assert again.returncode == 0, again.stderr
    assert "is missing: rebuilt from the journal (30 leads)" in again.stdout
    assert_everyone_called_once(sim, out, 35)


def test_with_the_journal_gone_a_resaved_file_is_read_leniently(sim, tmp_path):
    leads, out = campaign(sim, tmp_path)
    journal_path(out).unlink()
    (out.with_name(out.name + ".dialer") / "state").unlink()
    resaved = excel_europe(out.read_bytes())
    out.write_bytes(resaved)

    status = run_cli("status", str(out), token=None)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith(f"{out.name}: 31 leads: 30 called, 1 invalid")
    assert "its journal is gone: read leniently, 31 leads (30 called, 1 invalid)" in status.stdout

    again = rerun_with_more(sim, leads)
    assert again.returncode == 0, again.stderr
    assert "read it leniently, recovered 31 leads (30 called, 1 invalid)" in again.stdout
    assert_everyone_called_once(sim, out, 35)
    assert [k.read_bytes() for k in tmp_path.glob("leads.results.csv.bak-*")] == [resaved]
    # The journal is the truth again: a later re-save is rebuilt from it, nobody forgotten.
    out.write_bytes(excel_europe(out.read_bytes()))
    third = rerun_with_more(sim, leads, more=6)
    assert third.returncode == 0, third.stderr
    assert "rebuilt from the journal (36 leads)" in third.stdout
    assert_everyone_called_once(sim, out, 36)


def test_a_good_results_file_rebuilds_a_lost_journal(sim, tmp_path):
    leads, out = campaign(sim, tmp_path)
    journal_path(out).unlink()
    again = rerun_with_more(sim, leads)
    assert again.returncode == 0, again.stderr
    assert f"the journal {journal_path(out).name} was missing: rebuilt it" in again.stdout
    out.write_bytes(plus_stripped(out.read_bytes()))
    third = rerun_with_more(sim, leads, more=6)
    assert "rebuilt from the journal (36 leads)" in third.stdout
    assert_everyone_called_once(sim, out, 36)


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\x01\x02garbage\xff\xfe",
        b"name;phone\r\nAna;34612340000\r\n",
        b"row,phone,status\r\n2,34612340000,rang\r\n",
    ],
    ids=["binary", "no_status_column", "unknown_status"],
)
def test_an_unreadable_results_file_without_a_journal_is_one_line_exit_4(sim, tmp_path, content):
    leads, out = campaign(sim, tmp_path)
    journal_path(out).unlink()
    out.write_bytes(content)
    for proc in (run_cli("status", str(out), token=None), rerun_with_more(sim, leads)):
        assert proc.returncode == EXIT_LEDGER, proc.stdout + proc.stderr
        [line] = proc.stderr.splitlines()
        assert line.startswith(f"error: {out.name} cannot be read as dialer results (")
        assert "restore the file" in line and "would be dialed again" in line
        assert "choose another --output" not in line
    assert len(sim.calls) == 30  # nobody dialed again
    assert out.read_bytes() == content  # the user's file untouched


# --- detection, without the CLI ---------------------------------------------------------------

CLEAN = _write(
    [
        ["row", "crm_id", "phone", "status", "call_id", "attempts", "error", "updated_at"],
        ["2", "", "+34612340000", "called", "c-1", "1", "", "2025-11-25T10:00:00Z"],
        ["3", "", "x", "invalid", "", "0", "'=bad", ""],
    ]
)


def test_the_dialers_own_file_is_ok(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(CLEAN)
    check = inspect_results(path)
    assert check.ok and check.torn_at is None and len(check.entries) == 2


@pytest.mark.parametrize(
    ("damage", "kind", "problem"),
    [
        (lambda d: d.removeprefix(BOM), "re-saved", "no UTF-8 BOM"),
        (lambda d: d.replace(b",", b";"), "re-saved", "';' between cells"),
        (lambda d: d.replace(b"\r\n", b"\n"), "re-saved", "its header was re-written"),
        (lambda d: d.replace(b"+34", b"34"), "re-saved", "not in E.164"),
        (lambda d: d.replace(b"'=bad", b"=bad"), "re-saved", "formula guard"),
        (lambda d: d.replace(b"c-1", b'"c-1"'), "re-saved", "quoting or line ends"),
        (lambda d: d + b"\r\n", "re-saved", "blank lines"),
        (lambda d: d.replace(b"called", b"rang"), "damaged", "line 2 cannot be read"),
        (lambda d: d.replace(b"status", b"state"), "damaged", "no column status"),
        (lambda d: d.replace(b"\xef\xbb\xbfrow", b"\xef\xbb\xbf\xe9"), "re-saved", "not UTF-8"),
    ],
)
def test_what_another_program_did_is_found(tmp_path, damage, kind, problem):
    path = tmp_path / "r.csv"
    path.write_bytes(damage(CLEAN))
    check = inspect_results(path)
    assert check.kind == kind and problem in check.problem


def test_a_torn_last_row_is_left_out_and_a_whole_one_kept(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(CLEAN + b"4,,+3461234")
    check = inspect_results(path)
    assert check.ok and check.torn_at == len(CLEAN) and len(check.entries) == 2
    path.write_bytes(CLEAN + b"4,,+34612340001,\r\n")  # too few cells, no status
    assert inspect_results(path).torn_at == len(CLEAN)
    path.write_bytes(CLEAN + b"4,,+34612340001,called,c-2,1,,")  # whole, its CRLF lost
    check = inspect_results(path)
    assert check.ok and check.torn_at is None and check.unterminated and len(check.entries) == 3
    path.write_bytes(CLEAN.replace(b"\r\n3,", b"\r\n3,,") + b"4,,+3461234")  # damage before
    assert inspect_results(path).kind == "damaged"


def test_a_file_changed_since_the_last_close_is_found_by_its_snapshot_mark(tmp_path):
    import hashlib

    path = tmp_path / "r.csv"
    path.write_bytes(CLEAN)
    mark = (len(CLEAN), hashlib.sha256(CLEAN).hexdigest())
    assert inspect_results(path, written=mark).ok
    path.write_bytes(CLEAN + b"4,,+34612340001,called,c-2,1,,\r\n")  # appended: still ours
    assert inspect_results(path, written=mark).ok
    header, first, second = _rows(CLEAN)
    path.write_bytes(_write([header, second, first]))  # sorted otherwise
    check = inspect_results(path, written=mark)
    assert check.kind == "re-saved" and "sorted, deleted or edited" in check.problem


def test_the_lenient_read_puts_the_plus_back_and_refuses_a_guess(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(excel_europe(CLEAN))
    entries, told = read_leniently(path)
    assert {e.key: e.status.value for e in entries} == {"+34612340000": "called",
                                                        "row:3": "invalid"}  # fmt: skip
    assert told == "2 leads (1 called, 1 invalid)"
    path.write_bytes(b"row;phone;status\r\n2;612 34 00 00;called\r\n")  # national: ES
    assert [e.key for e in read_leniently(path)[0]] == ["+34612340000"]


@pytest.mark.parametrize("block", [1, 7, 64, 1 << 20])
def test_the_file_read_a_block_at_a_time_reads_as_a_whole(tmp_path, monkeypatch, block):
    """``inspect_results`` reads the file a block at a time (a million rows are never held
    whole): whatever the block size, a cell holding line ends, a torn or unterminated last row
    and an accent split between blocks read as they would whole."""
    import dialer.store.salvage as salvage

    rows = [_rows(CLEAN)[0]]
    rows += [[str(n), "", f"+3461234{n:04d}", "called", f"c-{n}", "1",
              "línea\r\ncon\rsaltos" if n % 3 else "", ""] for n in range(2, 40)]  # fmt: skip
    body = _write(rows)
    monkeypatch.setattr(salvage, "_BLOCK", block)
    path = tmp_path / "r.csv"
    for data, torn, unterminated, count in (
        (body, None, False, 38),
        (body + b"40,,+3461234", len(body), False, 38),
        (body + b"40,,+34612340040,called,c-40,1,,", None, True, 39),
    ):
        path.write_bytes(data)
        check = inspect_results(path)
        assert check.ok, check.problem
        found = (check.torn_at, check.unterminated, len(check.entries))
        assert found == (torn, unterminated, count)
        assert {e.error for e in check.entries} == {"línea\r\ncon\rsaltos", ""}
