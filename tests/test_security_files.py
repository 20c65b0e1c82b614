"""Issue 15, the files part: what the dialer writes is private, never written through a planted
symlink, never over one of its inputs, formula-safe in its headers; what it reads is bounded.

Through the installed CLI against the real simulator; ``sim.calls`` says whether anyone rang.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import os
import stat
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path

import openpyxl

from dialer.files import atomic_file
from dialer.leads.workbook import MAX_RATIO
from tests.conftest import mobiles, read_rows, run_cli, write_leads

RUN = ["--playbook", "pb", "--max-per-minute", "1000"]


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_every_file_and_folder_a_run_creates_is_the_owners_only_whatever_the_umask(sim, tmp_path):
    leads = write_leads(tmp_path / "leads.csv", [*mobiles(3), "12345"])
    out = tmp_path / "new" / "deeper" / "leads.results.csv"  # folders the dialer creates
    with umask(0o022):
        proc = run_cli("run", str(leads), *RUN, "--output", str(out),
                       "--rejects", str(tmp_path / "rejects.csv"),
                       "--log-file", str(tmp_path / "run.log"), url=sim.url)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        sandbox = run_cli("run", str(leads), *RUN, "--sandbox", "--output",
                          str(out.with_name("sb.results.csv")))  # fmt: skip
        assert sandbox.returncode == 0, sandbox.stderr
        report = run_cli("report", str(out), "--html", str(tmp_path / "report.html"))
        assert report.returncode == 0, report.stderr
    assert mode(tmp_path / "new") == mode(out.parent) == 0o700
    # Beside each results CSV, one more entry: the campaign's state folder.
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "leads.results.csv", "leads.results.csv.dialer", "sb.results.csv", "sb.results.csv.dialer",
    ]  # fmt: skip
    state, sandbox_state = (
        out.parent / "leads.results.csv.dialer",
        out.parent / "sb.results.csv.dialer",
    )
    assert mode(state) == mode(sandbox_state) == 0o700
    names = {p.name for p in state.iterdir()}
    assert {"journal", "lock", "lock.info", "state", "leads-cache", "runs.jsonl"} <= names
    assert "sandbox-calls.jsonl" in {p.name for p in sandbox_state.iterdir()}  # the call store
    written = [out, out.with_name("sb.results.csv"), *state.iterdir(), *sandbox_state.iterdir()]
    written += [tmp_path / "rejects.csv", tmp_path / "run.log", tmp_path / "report.html"]
    assert {str(p): oct(mode(p)) for p in written} == {str(p): "0o600" for p in written}
    assert not [p for p in out.parent.rglob("*.tmp")]


def test_a_rewrite_keeps_the_mode_the_user_gave_the_results(sim, tmp_path):
    phones = mobiles(4)
    leads = write_leads(tmp_path / "leads.csv", phones[:2])
    out = tmp_path / "leads.results.csv"
    assert run_cli("run", str(leads), *RUN, url=sim.url).returncode == 0
    os.chmod(out, 0o640)  # on purpose: the user's group may read it
    write_leads(leads, phones)
    with umask(0o077):
        assert run_cli("run", str(leads), *RUN, url=sim.url).returncode == 0
    assert mode(out) == 0o640  # compacted (atomically replaced), mode kept
    assert len(read_rows(out)) == 4


def test_planted_symlinks_never_make_the_dialer_overwrite_another_file(sim, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    leads = write_leads(tmp_path / "leads.csv", mobiles(3))
    out = tmp_path / "leads.results.csv"
    # The old fixed temp name, the lock's note, the snapshot and the parse cache, in the state
    # folder, and where a campaign of the layout before it kept them (moved in at its open).
    folder = out.with_name(out.name + ".dialer")
    folder.mkdir(mode=0o700)
    for name in ("lock.info", "state.tmp", "state", "leads-cache"):
        (folder / name).symlink_to(victim)
    for suffix in (".tmp", ".lock.info", ".state"):
        out.with_name(out.name + suffix).symlink_to(victim)
    proc = run_cli("run", str(leads), *RUN, url=sim.url)
    assert proc.returncode == 0, proc.stderr
    assert victim.read_text() == "precious\n"
    assert collections.Counter(c.phone for c in sim.calls) == collections.Counter(mobiles(3))
    assert not (folder / "lock.info").is_symlink()  # replaced, not followed


def test_a_symlink_planted_at_the_journal_or_the_lock_stops_the_run_before_any_call(sim, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    leads = write_leads(tmp_path / "leads.csv", mobiles(3))
    out = tmp_path / "leads.results.csv"
    folder = out.with_name(out.name + ".dialer")
    folder.mkdir(mode=0o700)
    for name in ("lock", "journal"):
        link = folder / name
        link.symlink_to(victim)
        proc = run_cli("run", str(leads), *RUN, url=sim.url)
        assert proc.returncode == 4, proc.stdout + proc.stderr
        [line] = proc.stderr.strip().splitlines()
        assert link.name in line and "symbolic link" in line, line
        assert victim.read_text() == "precious\n"
        assert sim.calls == []
        link.unlink()


def test_an_atomic_write_makes_an_unpredictable_temp_file_and_never_follows_a_link(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    target = tmp_path / "out.csv"
    target.with_name("out.csv.tmp").symlink_to(victim)
    seen = []
    with umask(0), atomic_file(target, "w") as handle:
        seen.extend(tmp_path.glob("out.csv.*.tmp"))
        handle.write("new\n")
    assert victim.read_text() == "precious\n"
    assert target.read_text() == "new\n" and mode(target) == 0o600
    [temp] = seen  # beside the target, with a random part in its name
    assert temp.name != "out.csv.tmp" and not temp.exists()


def test_rejects_naming_the_leads_file_is_refused_and_the_leads_file_is_unchanged(sim, tmp_path):
    leads = write_leads(tmp_path / "leads.csv", [*mobiles(2), "12345"])
    before = leads.read_bytes()
    (tmp_path / "link.csv").symlink_to(leads)
    for flags in (["--rejects", str(leads)], ["--rejects", str(tmp_path / "link.csv")],
                  ["--dry-run", "--rejects", str(leads)], ["--log-file", str(leads)],
                  ["--output", str(leads)]):  # fmt: skip
        proc = run_cli("run", str(leads), *RUN, *flags, url=sim.url)
        assert proc.returncode == 2, flags
        [line] = proc.stderr.strip().splitlines()
        assert "is the leads file" in line and "nothing was written" in line, line
        assert leads.read_bytes() == before
    assert sim.calls == []
    out = tmp_path / "leads.results.csv"
    proc = run_cli("run", str(leads), *RUN, "--rejects", str(out), url=sim.url)
    assert proc.returncode == 2 and "is the results file" in proc.stderr
    assert sim.calls == []
    assert run_cli("run", str(leads), *RUN, url=sim.url).returncode == 0
    results = out.read_bytes()
    proc = run_cli("report", str(out), "--html", str(out))
    assert proc.returncode == 2 and "--html" in proc.stderr and "is the results file" in proc.stderr
    assert out.read_bytes() == results


def test_a_formula_in_a_column_name_comes_out_quoted_in_the_rejects_header(tmp_path):
    leads = tmp_path / "leads.csv"
    leads.write_text('phone,=HYPERLINK("http://x")\n+34612340000,a\n12345,b\n', encoding="utf-8")
    rejects = tmp_path / "rejects.csv"
    proc = run_cli("run", str(leads), *RUN, "--dry-run", "--rejects", str(rejects))
    assert proc.returncode == 0, proc.stderr
    with open(rejects, encoding="utf-8-sig", newline="") as handle:
        header = next(csv.reader(handle))
    assert header[-1] == '\'=HYPERLINK("http://x")'
    assert all(not cell.startswith(("=", "+", "-", "@")) for cell in header)


def test_a_huge_one_line_header_makes_a_short_error(tmp_path):
    leads = tmp_path / "leads.csv"
    leads.write_text("a" * 5_000_000 + "," + ",".join(f"c{i}" for i in range(100_000)))
    proc = run_cli("run", str(leads), *RUN, "--dry-run")
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert len(line) < 600 and "..." in line and "no phone column" in line, line[:600]


def _workbook(path: Path, padding: int = 0) -> Path:
    book = openpyxl.Workbook()
    book.active.append(["phone", "name"])
    book.active.append(["+34612340000", "Ana"])
    book.save(path)
    if padding:  # the sheet's XML padded with spaces: a few hundred KB packed
        plain = zipfile.ZipFile(path)
        parts = {info.filename: plain.read(info.filename) for info in plain.infolist()}
        plain.close()
        sheet = "xl/worksheets/sheet1.xml"
        parts[sheet] = parts[sheet].replace(b"</sheetData>", b"</sheetData>" + b" " * padding)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bomb:
            for name, data in parts.items():
                bomb.writestr(name, data)
    return path


def test_an_xlsx_zip_bomb_is_refused_with_one_line(tmp_path):
    good = run_cli("run", str(_workbook(tmp_path / "ok.xlsx")), *RUN, "--dry-run")
    assert good.returncode == 0 and "To dial now:   1" in good.stdout, good.stderr
    bomb = _workbook(tmp_path / "bomb.xlsx", padding=100 << 20)
    assert bomb.stat().st_size * MAX_RATIO < 100 << 20
    proc = run_cli("run", str(bomb), *RUN, "--dry-run")
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: bomb.xlsx: refused: the workbook would unpack to far more")


def test_an_xlsx_member_that_unpacks_to_more_than_it_declares_is_refused(tmp_path):
    path = _workbook(tmp_path / "liar.xlsx", padding=1 << 20)
    with zipfile.ZipFile(path) as package:
        member = package.getinfo("xl/worksheets/sheet1.xml")
    data = bytearray(path.read_bytes())
    small = 1000  # declared unpacked size, far below the real one
    struct.pack_into("<L", data, member.header_offset + 22, small)  # the local header
    at = data.find(b"xl/worksheets/sheet1.xml", data.find(b"PK\x01\x02"))
    central = at - 46  # the central directory entry of that member
    assert data[central : central + 4] == b"PK\x01\x02"
    struct.pack_into("<L", data, central + 24, small)
    path.write_bytes(bytes(data))
    proc = run_cli("run", str(path), *RUN, "--dry-run")
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert "holds more than it declares" in line, line
