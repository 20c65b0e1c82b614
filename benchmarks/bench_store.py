"""The store, chosen again: the dialer's journal (+ results CSV + snapshot) against SQLite.

Issue 17 asks to compare the append-only journal with SQLite (WAL, ``synchronous=FULL``, one
file, indexed look-ups) for the same guarantees and keep the simpler. What each must do, per
call: make the intent durable before the POST (one fsync), record the outcome (the next
intent's fsync covers it), and on a resume, know every lead's state. This measures both doing
exactly that in this process, on this disk:

* ``intents``: N leads, each an intent (durable) then an outcome, one after the other (the
  cost a sequential run pays per call); the journal through the real ``Ledger``, SQLite as one
  ``INSERT OR REPLACE`` committed per intent and one per outcome;
* ``resume``: opening a campaign of ``--leads`` finished leads and reading every lead's status
  (the journal through ``read_state``, which uses the snapshot; SQLite by one ``SELECT``),
  wall time (memory at scale is ``bench_scale.py``'s).

    python benchmarks/bench_store.py                    # 2,000 intents, 1,000,000-lead resume
    python benchmarks/bench_store.py --intents 200 --leads 20000   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from pathlib import Path

from dialer.model import Lead, Outcome, Status
from dialer.store.ledger import Ledger, read_state


def journal_intents(folder: Path, n: int) -> float:
    out = folder / "j.results.csv"
    start = time.perf_counter()
    with Ledger(out) as ledger:
        for i in range(n):
            lead = Lead(i + 2, f"+3461{i:07d}", {}, Status.PENDING)
            ledger.intent(lead)
            ledger.outcome(Outcome(lead, Status.CALLED, call_id=f"id-{i}", attempts=1))
    return time.perf_counter() - start


def _sqlite(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS leads (key TEXT PRIMARY KEY, row INTEGER, phone TEXT,"
        " status TEXT, call_id TEXT, attempts INTEGER, error TEXT, updated_at TEXT)"
    )
    return db


def sqlite_intents(folder: Path, n: int) -> float:
    db = _sqlite(folder / "s.db")
    start = time.perf_counter()
    for i in range(n):
        key = f"+3461{i:07d}"
        db.execute(
            "INSERT OR REPLACE INTO leads VALUES (?,?,?,?,?,?,?,?)",
            (key, i + 2, key, "dialing", "", 0, "", ""),
        )  # autocommit: durable
        db.execute(
            "UPDATE leads SET status='called', call_id=?, attempts=1 WHERE key=?", (f"id-{i}", key)
        )
    db.close()
    return time.perf_counter() - start


def journal_resume(folder: Path, n: int) -> tuple[float, int]:
    out = folder / "r.results.csv"
    with Ledger(out, durable=False) as ledger:  # a finished campaign, then its snapshot
        for i in range(n):
            lead = Lead(i + 2, f"+3461{i:07d}", {}, Status.PENDING)
            ledger.intent(lead)  # not durable here: only the resume is timed
            ledger.outcome(Outcome(lead, Status.CALLED, call_id=f"id-{i}", attempts=1))
    start = time.perf_counter()
    state = read_state(out)
    called = sum(1 for e in state.values() if e.status is Status.CALLED)
    return time.perf_counter() - start, called


def sqlite_resume(folder: Path, n: int) -> tuple[float, int]:
    db = _sqlite(folder / "r.db")
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO leads VALUES (?,?,?,?,?,?,?,?)",
        (
            (
                f"+3461{i:07d}",
                i + 2,
                f"+3461{i:07d}",
                "called",
                f"id-{i}",
                1,
                "",
                "2026-12-01T00:00:00Z",
            )
            for i in range(n)
        ),
    )
    db.execute("COMMIT")
    db.close()
    start = time.perf_counter()
    db = _sqlite(folder / "r.db")
    state = {key: status for key, status in db.execute("SELECT key, status FROM leads")}
    called = sum(1 for status in state.values() if status == "called")
    db.close()
    return time.perf_counter() - start, called


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intents", type=int, default=2000)
    parser.add_argument("--leads", type=int, default=1_000_000)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        folder = Path(tmp)
        rows = {}
        j = journal_intents(folder, opts.intents)
        s = sqlite_intents(folder, opts.intents)
        rows["intents"] = (
            f"{1000 * j / opts.intents:.2f} ms/call",
            f"{1000 * s / opts.intents:.2f} ms/call",
        )
        jr = journal_resume(folder, opts.leads)
        sr = sqlite_resume(folder, opts.leads)
        assert jr[1] == sr[1] == opts.leads, (jr, sr)
        rows["resume"] = (f"{jr[0]:.2f} s", f"{sr[0]:.2f} s")
    print(
        f"{opts.intents:,} intents (each durable before its POST), "
        f"a {opts.leads:,}-lead resume, on this disk"
    )
    print(f"{'case':<10}{'journal + snapshot':>24}{'SQLite WAL, FULL':>24}")
    for case, (a, b) in rows.items():
        print(f"{case:<10}{a:>24}{b:>24}")
    print(json.dumps({"intents": opts.intents, "leads": opts.leads}))


if __name__ == "__main__":
    main()
