"""A full disk (a quota, a read-only disk) mid-run: one clear error, whole files, a safe rerun.

In-process, each write point of a run is refused in turn (``ENOSPC`` from ``os.write`` after half
the bytes, as a full disk does, or from ``os.fsync``/``os.replace``) while ``run_campaign`` dials
the real simulator; end to end, the installed CLI writes to a small tmpfs that a filler file fills
while it runs. Either way: exit 4 with one line naming the file, the lock released, ``dialer
status`` still reads the campaign, and once there is space again a rerun finishes it with
nobody dialed twice and nobody lost (from the simulator's own record).
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fnmatch
import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import filelock
import pytest

from dialer.campaign import Settings
from dialer.engine.run import run_campaign
from dialer.errors import EXIT_LEDGER, LedgerError
from dialer.reports.report import status_lines
from dialer.store.journal import journal_path, read_journal
from dialer.store.ledger import lock_path
from dialer.store.results import read_results
from tests.conftest import TOKEN, cli_env, dialer_exe, mobiles, read_rows, run_cli, write_leads

LEADS = 12


class DiskFull:
    """Refuses the ``at``-th ``op`` (write, fsync, replace) on the file whose name ends with
    ``suffix`` (a glob: a temp file's name holds a random part) with ``code``, and every one
    after it while ``active``. A refused ``os.write`` first writes half of its bytes, as a disk
    that fills up in the middle of a write does."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, op: str, suffix: str, at: int,
                 code: int = errno.ENOSPC) -> None:  # fmt: skip
        self.op, self.suffix, self.at, self.code = op, suffix, at, code
        self.seen = 0
        self.refused = 0
        self.active = True
        real_write, real_fsync, real_replace = os.write, os.fsync, os.replace

        def write(fd: int, data: bytes) -> int:
            if self._refuse("write", _fd_path(fd)):
                half = bytes(data)[: max(1, len(data) // 2)]
                if self.refused == 1 and len(data) > 1:
                    return real_write(fd, half)  # a short write: the next call fails
                raise OSError(code, os.strerror(code))
            return real_write(fd, data)

        def fsync(fd: int) -> None:
            if self._refuse("fsync", _fd_path(fd)):
                raise OSError(code, os.strerror(code))
            real_fsync(fd)

        def replace(src: object, dst: object, **kwargs: object) -> None:
            if self._refuse("replace", str(src)):
                raise OSError(code, os.strerror(code))
            real_replace(src, dst, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "write", write)
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)

    def _refuse(self, op: str, path: str) -> bool:
        if not self.active or op != self.op or not fnmatch.fnmatch(path, "*" + self.suffix):
            return False
        self.seen += 1
        if self.seen < self.at:
            return False
        self.refused += 1
        return True


def _named(suffix: str) -> str:
    """The file a write point's ``suffix`` is about (its temp file's pattern cut off)."""
    return suffix.removesuffix(".*.tmp").removesuffix(".????????.tmp")


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def _settings(tmp_path: Path, phones: list[str]) -> Settings:
    leads = write_leads(tmp_path / "leads.csv", phones)
    return Settings(leads=leads, playbook="pb", output=tmp_path / "leads.results.csv",
                    max_per_second=100, max_per_minute=6000, concurrency=3,
                    in_doubt_grace=0.2)  # fmt: skip


def _run(sim, settings: Settings):
    return run_campaign(settings, api_url=sim.url, token=TOKEN)


def _assert_whole_and_unlocked(out: Path) -> None:
    """The files a reader needs are whole, and the lock is free."""
    data = out.read_bytes()
    assert not data or data.endswith(b"\r\n")  # no torn last row
    read_results(out)  # every row reads
    journal = journal_path(out)
    if journal.exists():
        _, good, size = read_journal(journal)
        assert good == size  # no torn last line either
    lock = filelock.FileLock(lock_path(out), timeout=0)
    lock.acquire()  # raises Timeout if the failed run kept it
    lock.release()
    assert status_lines(out)  # ``dialer status`` reads the campaign


def _assert_finished_once(sim, out: Path, phones: list[str]) -> None:
    """Every lead rang exactly once, and the results say so with the true call ids."""
    assert collections.Counter(call.phone for call in sim.calls) == collections.Counter(phones)
    entries = {e.phone: e for e in read_results(out)}
    assert {p: e.status.value for p, e in entries.items()} == dict.fromkeys(phones, "called")
    assert {p: e.call_id for p, e in entries.items()} == {c.phone: c.id for c in sim.calls}


# Each write point of a run that must stop it: (what, op, file suffix, which call fails).
STOPS = [
    ("results header", "write", "leads.results.csv", 1),
    ("journal line", "write", "/journal", 7),
    ("journal fsync", "fsync", "/journal", 4),
    ("results row", "write", "leads.results.csv", 5),
    ("results compaction", "fsync", "leads.results.csv.????????.tmp", 1),
    ("results compaction rename", "replace", "leads.results.csv.????????.tmp", 1),
    ("runs log", "write", "/runs.jsonl", 1),
]


@pytest.mark.parametrize(("what", "op", "suffix", "at"), STOPS, ids=[s[0] for s in STOPS])
def test_a_full_disk_at_each_write_point_is_one_ledger_error_and_a_rerun_finishes(
    sim, tmp_path, monkeypatch, what, op, suffix, at
):
    sim.config.per_second = sim.config.per_minute = None
    phones = mobiles(LEADS)
    settings = _settings(tmp_path, phones)
    out = settings.output
    disk = DiskFull(monkeypatch, op, suffix, at)
    with pytest.raises(LedgerError) as raised:
        _run(sim, settings)
    assert disk.refused, f"the {what} was never written"
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("cannot "), message
    assert _named(suffix) in message  # names the file
    assert "No space left on device: free some space and run the same command again" in message
    assert "nobody is dialed twice" in message
    before = collections.Counter(call.phone for call in sim.calls)
    assert max(before.values(), default=0) <= 1
    disk.active = False  # space again
    _assert_whole_and_unlocked(out)
    _run(sim, settings)
    _assert_finished_once(sim, out, phones)


# Derived files and the lock's note only save time or inform: refusing them is no error.
DERIVED = [
    ("snapshot", "fsync", "leads.results.csv.dialer/state.*.tmp", 1),
    ("parse cache", "fsync", "leads.results.csv.dialer/leads-cache.*.tmp", 1),
]


@pytest.mark.parametrize(("what", "op", "suffix", "at"), DERIVED, ids=[s[0] for s in DERIVED])
def test_a_full_disk_for_a_derived_file_is_no_error(
    sim, tmp_path, monkeypatch, what, op, suffix, at
):
    sim.config.per_second = sim.config.per_minute = None
    phones = mobiles(LEADS)
    settings = _settings(tmp_path, phones)
    stale = tmp_path / _named(suffix)
    stale.parent.mkdir(exist_ok=True)
    stale.write_bytes(b"dialer-cache 1\n{}\n")  # an old one: it must go, not stay stale
    disk = DiskFull(monkeypatch, op, suffix, at)
    summary = _run(sim, settings)
    assert disk.refused, f"the {what} was never written"
    assert not stale.exists()
    assert not list(stale.parent.glob(stale.name + ".*.tmp"))  # the temp file went
    assert summary.counts == {"called": LEADS}
    _assert_whole_and_unlocked(settings.output)
    disk.active = False
    _run(sim, settings)  # nothing left to do, and the slow path reads right
    _assert_finished_once(sim, settings.output, phones)


def test_a_lock_note_that_cannot_be_written_is_no_error(sim, tmp_path, monkeypatch):
    sim.config.per_second = sim.config.per_minute = None
    phones = mobiles(LEADS)
    settings = _settings(tmp_path, phones)
    note = tmp_path / "leads.results.csv.dialer" / "lock.info"
    note.parent.mkdir()
    note.write_text('{"pid": 1, "host": "old", "since": "2020-01-01T00:00:00Z"}')  # stale
    disk = DiskFull(monkeypatch, "replace", "leads.results.csv.dialer/lock.info.*.tmp", 1)
    summary = _run(sim, settings)
    assert disk.refused
    assert summary.counts == {"called": LEADS}
    assert not note.exists()  # a stale note would name the wrong holder
    assert not list(tmp_path.glob("**/*.tmp"))  # nor is a half-written one left
    _assert_finished_once(sim, settings.output, phones)


def test_a_read_only_disk_says_so_and_what_to_do(sim, tmp_path, monkeypatch):
    sim.config.per_second = sim.config.per_minute = None
    phones = mobiles(LEADS)
    settings = _settings(tmp_path, phones)
    disk = DiskFull(monkeypatch, "write", "/journal", 5, code=errno.EROFS)
    with pytest.raises(LedgerError, match=r"Read-only file system: make it writable and run the "
                       r"same command again; nobody is dialed twice"):  # fmt: skip
        _run(sim, settings)
    disk.active = False
    _assert_whole_and_unlocked(settings.output)
    _run(sim, settings)
    _assert_finished_once(sim, settings.output, phones)


def test_after_a_refused_write_nothing_more_is_written_nor_dialed(sim, tmp_path, monkeypatch):
    """Once a journal write was refused, no intent is written and no POST is sent, even when
    the disk would take the next write: the run stops at the first refusal."""
    sim.config.per_second = sim.config.per_minute = None
    sim.config.latency = 0.05  # leads in flight when the write fails
    phones = mobiles(LEADS)
    settings = _settings(tmp_path, phones)
    disk = DiskFull(monkeypatch, "write", "/journal", 4)
    refuse = disk._refuse
    # The disk takes writes again right after refusing one (space freed by someone else).
    monkeypatch.setattr(disk, "_refuse", lambda op, path: refuse(op, path) and disk.refused <= 2)
    with pytest.raises(LedgerError, match="No space left on device"):
        _run(sim, settings)
    assert disk.refused == 2  # the short write, then the refusal
    journal = read_journal(journal_path(settings.output))[0]
    assert len(journal) == 3  # the three lines before the refusal; not one after it
    intents = {e.phone for e in journal if e.status.value == "dialing"}
    assert {c.phone for c in sim.calls} <= intents  # every call had its intent first
    disk.active = False
    _run(sim, settings)
    _assert_finished_once(sim, settings.output, phones)


# --- end to end: the installed CLI on a small tmpfs that fills up mid-run ---------------------


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 512 KiB tmpfs mounted for the test (root only; skipped where mount is refused)."""
    where = tmp_path / "disk"
    where.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs",
                               str(where)], capture_output=True, text=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc}): the in-process tests cover this")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): "
                    "the in-process tests cover this")  # fmt: skip
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=10)


def _fill(disk: Path) -> Path:
    """Write a filler file until the disk is full."""
    filler = disk / f"filler-{uuid.uuid4().hex}"
    with open(filler, "wb", buffering=0) as handle:
        block = b"\0" * 4096
        with contextlib.suppress(OSError):
            while True:
                handle.write(block)
    return filler


def test_a_disk_that_fills_mid_run_exits_4_and_a_rerun_after_freeing_it_finishes(
    sim, tmp_path, small_disk
):
    sim.config.per_second = sim.config.per_minute = None
    sim.config.latency = 0.1  # the run lasts a few seconds: the disk fills while it goes
    phones = mobiles(80)
    leads = write_leads(tmp_path / "leads.csv", phones)
    out = small_disk / "leads.results.csv"
    flags = ["--playbook", "pb", "--output", str(out), "--in-doubt-grace", "0.3",
             "--max-per-second", "50", "--max-per-minute", "3000",
             "--concurrency", "2"]  # fmt: skip
    env = {**os.environ, **cli_env(sim.url)}
    child = subprocess.Popen([dialer_exe(), "run", str(leads), *flags], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    journal = journal_path(out)
    deadline = time.monotonic() + 15
    while not (journal.exists() and journal.read_bytes().count(b"\n") >= 10):
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the run wrote no journal"
        time.sleep(0.02)
    filler = _fill(small_disk)
    stdout, stderr = child.communicate(timeout=30)
    context = f"stdout: {stdout}\nstderr: {stderr}"
    assert child.returncode == EXIT_LEDGER, context
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, context
    assert re.match(rf"error: cannot write (the journal )?{small_disk}/leads\.results\.csv",
                    lines[0]), context  # fmt: skip
    assert (
        "No space left on device: free some space and run the same command again; "
        "nobody is dialed twice" in lines[0]
    ), context
    assert max(collections.Counter(c.phone for c in sim.calls).values()) == 1
    assert len(sim.calls) < len(phones), "the disk filled too late to test anything"

    status = run_cli("status", str(out))  # right after the failure, the disk still full
    assert status.returncode == 0, status.stderr
    assert "cannot be read" not in status.stdout + status.stderr

    filler.unlink()  # space again
    again = run_cli("run", str(leads), *flags, url=sim.url)
    assert again.returncode == 0, again.stdout + again.stderr
    created = collections.Counter(c.phone for c in sim.calls)
    assert created == collections.Counter(phones)  # nobody twice, nobody lost
    rows = {r["phone"]: r for r in read_rows(out)}
    assert {p: r["status"] for p, r in rows.items()} == dict.fromkeys(phones, "called")
    assert {p: r["call_id"] for p, r in rows.items()} == {c.phone: c.id for c in sim.calls}


# --- outputs the user names: a clear line, no half-written file -------------------------------

FULL = Path("/dev/full")  # every write to it fails with ENOSPC


@pytest.mark.skipif(not FULL.exists(), reason="no /dev/full on this system")
def test_rejects_on_a_full_disk_is_one_line_and_nobody_is_dialed(sim, tmp_path):
    sim.config.per_second = sim.config.per_minute = None
    phones = mobiles(4)
    leads = write_leads(tmp_path / "leads.csv", [*phones, "12345"])  # one invalid row
    flags = ["--playbook", "pb", "--max-per-minute", "1000"]
    proc = run_cli("run", str(leads), *flags, "--rejects", str(FULL), url=sim.url)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: cannot write --rejects {FULL}: No space left on device: "
        "free some space or choose another file"
    ]
    assert sim.calls == []  # the list is written before anyone is dialed
    again = run_cli("run", str(leads), *flags, url=sim.url)
    assert again.returncode == 0, again.stdout + again.stderr
    assert collections.Counter(c.phone for c in sim.calls) == collections.Counter(phones)


@pytest.mark.skipif(not FULL.exists(), reason="no /dev/full on this system")
def test_a_log_file_on_a_full_disk_is_one_line_after_a_finished_run(sim, tmp_path):
    sim.config.per_second = sim.config.per_minute = None
    phones = mobiles(4)
    leads = write_leads(tmp_path / "leads.csv", phones)
    flags = ["--playbook", "pb", "--max-per-minute", "1000"]
    proc = run_cli("run", str(leads), *flags, "--log-file", str(FULL), url=sim.url)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: cannot write --log-file {FULL}: No space left on device: the run itself "
        "ended and its results are saved; free some space or choose another file"
    ]
    assert collections.Counter(c.phone for c in sim.calls) == collections.Counter(phones)
    rows = read_rows(tmp_path / "leads.results.csv")
    assert sorted(r["status"] for r in rows) == ["called"] * 4


def test_a_disk_gone_read_only_between_runs_exits_4_and_says_what_to_do(sim, tmp_path, small_disk):
    sim.config.per_second = sim.config.per_minute = None
    phones = mobiles(6)
    leads = write_leads(tmp_path / "leads.csv", phones[:3])
    out = small_disk / "leads.results.csv"
    flags = ["--playbook", "pb", "--output", str(out), "--max-per-minute", "1000"]
    assert run_cli("run", str(leads), *flags, url=sim.url).returncode == 0
    write_leads(leads, phones)  # three more leads, and the disk turns read-only
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True, timeout=10)
    proc = run_cli("run", str(leads), *flags, url=sim.url)
    assert proc.returncode == EXIT_LEDGER, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: cannot lock {out}.dialer/lock: Read-only file system: make it writable and "
        "run the same command again; nobody is dialed twice (calls that may have started are "
        "looked up first)"
    ]
    assert len(sim.calls) == 3
    status = run_cli("status", str(out))
    assert status.returncode == 0 and "3 leads: 3 called" in status.stdout, status.stdout
    subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True, timeout=10)
    again = run_cli("run", str(leads), *flags, url=sim.url)
    assert again.returncode == 0, again.stdout + again.stderr
    assert collections.Counter(c.phone for c in sim.calls) == collections.Counter(phones)


def test_a_full_disk_during_sync_is_one_ledger_error_and_the_next_sync_records_all(
    sim, tmp_path, monkeypatch
):
    from dialer.engine.run import sync_campaign

    sim.config.per_second = sim.config.per_minute = None
    sim.config.ring_seconds = sim.config.talk_seconds = 0.01
    phones = mobiles(LEADS)
    settings = _settings(tmp_path, phones)
    _run(sim, settings)
    time.sleep(0.1)  # every call is over
    out = settings.output
    disk = DiskFull(monkeypatch, "write", "leads.results.csv", 4)
    with pytest.raises(LedgerError, match=r"cannot write .*leads\.results\.csv: No space left"):
        sync_campaign(out, api_url=sim.url, token=TOKEN, max_per_minute=6000)
    disk.active = False
    _assert_whole_and_unlocked(out)
    sync_campaign(out, api_url=sim.url, token=TOKEN, max_per_minute=6000)
    entries = read_results(out)
    assert all(e.outcome for e in entries) and len(entries) == LEADS
    _assert_finished_once(sim, out, phones)
