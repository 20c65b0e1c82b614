"""Scale benchmark: every command on a campaign of a big leads file.

Runs the installed ``dialer`` CLI as a subprocess (runs against its built-in sandbox, on
127.0.0.1) and reports wall time and peak RSS of each, median and spread over ``--repeat``
runs. Targets (issue 17): at 1,000,000 leads every command peaks under 400 MB on a 2-core
machine, a resume starts to dial within 3 s, the dry run takes at most 25 s. "first resume" is
the one that still parses the leads and replays the whole journal (a fresh copy each run);
"resume start-up" and "resume, whole run" start from the parse cache and snapshot it left.
"run, new rows" is a run of the grown leads file (the same rows and NEW_ROWS more at the end)
from the state a resume left: it parses the changed file and dials only the new rows.
"status" and "report" read the finished campaign. "first resume, rows moved" is the first
resume once a row was inserted at the top of the leads file: every lead's row number changes,
and each gets a journal line saying so.

    python benchmarks/bench_scale.py                 # 1,000,000 rows, 3 runs each
    python benchmarks/bench_scale.py --rows 20000 --repeat 1   # a smoke run
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
import zlib
from pathlib import Path

from common import dialer_exe

NEW_ROWS = 20  # rows appended to the leads file for the "run, new rows" case


def make_leads(path: Path, rows: int) -> list[tuple[int, str]]:
    """A leads file with mixed phone formats, 1% invalid numbers; returns the row number and
    E.164 phone of each valid row."""
    rng = random.Random(1)
    phones = []
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["first_name", "last_name", "email", "phone", "program", "city"])
        for i in range(rows):
            n = 600_000_000 + rng.randrange(100_000_000)
            digits = str(n)
            style = rng.random()
            if style < 0.01:
                phone = "12345"
            elif style < 0.4:
                phone = f"+34 {digits[:3]} {digits[3:6]} {digits[6:]}"
            elif style < 0.8:
                phone = digits
            else:
                phone = f"0034{digits}"
            if phone != "12345":
                phones.append((i + 2, f"+34{digits}"))
            writer.writerow([f"Name{i}", f"Last{i}", f"n{i}@example.com", phone, "MBA", "Madrid"])
    return phones


def make_done_campaign(results: Path, leads: Path, phones: list[tuple[int, str]]) -> None:
    """Results and journal as a finished campaign leaves them: every phone called once, on
    the row the leads file has it (a resume then has no row numbers to update)."""
    seen = set()
    journal = results.with_name(results.name + ".dialer") / "journal"  # the state folder
    journal.parent.mkdir(mode=0o700, exist_ok=True)
    # Resumed with --sandbox: marked as the sandbox's, as a --sandbox run marks its campaign.
    (journal.parent / "sandbox").write_bytes(b"This campaign was run with --sandbox.\n")
    with open(results, "w", encoding="utf-8-sig", newline="") as out, open(journal, "w") as log:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(["row", "crm_id", "phone", "status", "call_id", "attempts", "error",
                         "updated_at"])  # fmt: skip
        for row, phone in phones:
            if phone in seen:
                continue
            seen.add(phone)
            writer.writerow([row, "", phone, "called", f"id-{row}", 1, "", "2026-11-25T10:00:00Z"])
            record = {"k": phone, "row": row, "phone": phone, "status": "called",
                      "call_id": f"id-{row}", "attempts": 1, "error": "",
                      "at": "2026-11-25T10:00:00Z", "sent": 1.0, "crm": ""}  # fmt: skip
            payload = json.dumps(record, separators=(",", ":"))
            log.write(f"{zlib.crc32(payload.encode()):08x} {payload}\n")


def measure(args: list[str], until: str | None = None) -> tuple[float, float]:
    """Wall seconds (to the first stdout line containing ``until``, or to the end) and that
    child's own peak RSS in MB (``os.wait4`` gives one child's resource usage)."""
    started = time.monotonic()
    child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seconds = None
    assert child.stdout is not None
    for line in child.stdout:
        if until is not None and seconds is None and until in line:
            seconds = time.monotonic() - started
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode not in (0, 6):
        raise SystemExit(f"{' '.join(args)} failed with exit code {child.returncode}")
    seconds = seconds if seconds is not None else time.monotonic() - started
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    dialer = dialer_exe()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        leads = folder / "leads.csv"
        phones = make_leads(leads, opts.rows)
        results = folder / "done.results.csv"
        make_done_campaign(results, leads, phones)
        pristine = folder / "pristine"
        pristine.mkdir()
        for path in folder.glob("done.results.csv*"):  # the results and its state folder
            copy = shutil.copytree if path.is_dir() else shutil.copy
            copy(path, pristine / path.name)

        shifted = folder / "shifted.csv"  # one row inserted on top: every row number moves
        with open(leads, encoding="utf-8") as source, open(shifted, "w", encoding="utf-8") as out:
            out.write(source.readline() + "New,Row,new@example.com,612000000,MBA,Madrid\n")
            shutil.copyfileobj(source, out)
        grown = folder / "grown.csv"  # the same rows and NEW_ROWS new ones at the end
        shutil.copy(leads, grown)
        with open(grown, "a", encoding="utf-8") as out:
            for i in range(NEW_ROWS):
                out.write(f"New{i},Row,new{i}@example.com,+34 699 {i:03d} 111,MBA,Madrid\n")

        def resume(path: Path = leads) -> list[str]:
            return [dialer, "run", str(path), "--playbook", "pb", "--sandbox",
                    "--output", str(results)]  # fmt: skip

        def fresh() -> None:  # the finished campaign as first made: no snapshot, no cache
            for path in folder.glob("done.results.csv*"):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            for path in pristine.iterdir():
                copy = shutil.copytree if path.is_dir() else shutil.copy
                copy(path, folder / path.name)

        warm = folder / "warm"  # the campaign as a resume leaves it: parse cache, snapshot

        def warmed() -> None:  # taken once, after the resume cases; restored before each run
            if not warm.exists():
                warm.mkdir()
                for path in folder.glob("done.results.csv*"):
                    copy = shutil.copytree if path.is_dir() else shutil.copy
                    copy(path, warm / path.name)
            for path in folder.glob("done.results.csv*"):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            for path in warm.iterdir():
                copy = shutil.copytree if path.is_dir() else shutil.copy
                copy(path, folder / path.name)

        # (command, stdout marker to time to or None for the end, set-up before each run)
        cases = {
            "dry run": ([dialer, "run", str(leads), "--playbook", "pb", "--dry-run"], None, None),
            # A resume of a finished campaign: the time until it knows what to dial. The first
            # resume parses the leads and replays the journal, and leaves the parse cache and
            # the ledger's snapshot; every later resume starts from those.
            "first resume": (resume(), " to dial", fresh),
            "resume start-up": (resume(), " to dial", None),
            "resume, whole run": (resume(), None, None),
            "run, new rows": (resume(grown), None, warmed),
            "status": ([dialer, "status", str(results)], None, warmed),
            "report": ([dialer, "report", str(results)], None, warmed),
            "first resume, rows moved": (resume(shifted), " to dial", fresh),
        }
        print(f"{opts.rows:,} rows, {os.cpu_count()} cores, {opts.repeat} runs each")
        print(f"{'case':<26}{'wall s (median)':>16}{'spread':>10}{'peak MB (max)':>15}")
        for name, (args, until, setup) in cases.items():
            walls, peaks = [], []
            for _ in range(opts.repeat):
                if setup is not None:
                    setup()
                wall, peak = measure(args, until)
                walls.append(wall)
                peaks.append(peak)
            spread = max(walls) - min(walls)
            print(f"{name:<26}{statistics.median(walls):>16.1f}{spread:>10.1f}{max(peaks):>15.0f}")


if __name__ == "__main__":
    main()
