"""The ledger: intents before sends, outcomes after, resume state, torn tails, damage, the lock."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import os
import random
import shutil
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialer.errors import LedgerError, LedgerLocked
from dialer.model import Lead, Outcome, Status
from dialer.store import journal as journal_module
from dialer.store.cache import state_path
from dialer.store.journal import read_journal
from dialer.store.ledger import Ledger, journal_path

A = Lead(2, "+34612345678", {"name": "Ana"})
B = Lead(3, "+34612345679", {"name": "Bea"})
BAD = Lead(4, "12345", status=Status.INVALID, reason="invalid number for ES")


def rows(path):
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def test_new_ledger_dials_everything_and_writes_a_header(tmp_path):
    out = tmp_path / "r.csv"
    with Ledger(out) as ledger:
        assert ledger.should_dial(A) and ledger.should_dial(B)
        assert not ledger.should_dial(BAD)
    assert rows(out) == []
    assert out.read_text(encoding="utf-8").startswith(
        "\ufeffrow,crm_id,phone,status,call_id,attempts,error,updated_at"
    )


def test_outcomes_are_final_across_runs(tmp_path):
    out = tmp_path / "r.csv"
    with Ledger(out) as ledger:
        ledger.record_load(BAD)
        ledger.intent(A)
        ledger.outcome(Outcome(A, Status.CALLED, call_id="c-1", attempts=1))
        ledger.intent(B)
        ledger.outcome(Outcome(B, Status.FAILED, attempts=1, error="HTTP 400 invalid_phone"))
    got = {r["phone"]: r for r in rows(out)}
    assert got["+34612345678"]["status"] == "called"
    assert got["+34612345678"]["call_id"] == "c-1"
    assert got["+34612345679"]["error"] == "HTTP 400 invalid_phone"
    assert got["12345"]["status"] == "invalid"
    assert [r["row"] for r in rows(out)] == ["2", "3", "4"]  # compacted in row order
    with Ledger(out) as again:
        assert not again.should_dial(A)
        assert not again.should_dial(B)


def test_an_intent_without_outcome_is_in_doubt_after_a_crash(tmp_path):
    out = tmp_path / "r.csv"
    ledger = Ledger(out)
    ledger.open()
    ledger.intent(A)  # ... and the process dies here: no outcome, no close
    ledger._release_lock()
    with Ledger(out) as again:
        entry = again.get(A.key)
        assert entry is not None and entry.status is Status.IN_DOUBT
        assert not again.should_dial(A)
    assert rows(out)[0]["status"] == "in_doubt"


def test_not_sent_closes_the_intent_and_the_lead_stays_dialable(tmp_path):
    out = tmp_path / "r.csv"
    ledger = Ledger(out)
    ledger.open()
    ledger.intent(A)
    ledger.not_sent(A, "connection refused")
    ledger._release_lock()  # crash during the backoff
    with Ledger(out) as again:
        assert again.should_dial(A)


def test_attempts_add_up_across_runs(tmp_path):
    out = tmp_path / "r.csv"
    with Ledger(out) as ledger:
        ledger.intent(A)
        ledger.outcome(Outcome(A, Status.PENDING, attempts=3, error="not sent"))
    with Ledger(out) as ledger:
        assert ledger.should_dial(A)
        ledger.intent(A)
        ledger.outcome(Outcome(A, Status.CALLED, call_id="c-9", attempts=1))
    assert rows(out)[0]["attempts"] == "4"


def test_a_torn_last_line_is_ignored_and_cut_off(tmp_path):
    out = tmp_path / "r.csv"
    with Ledger(out) as ledger:
        ledger.intent(A)
        ledger.outcome(Outcome(A, Status.CALLED, call_id="c-1", attempts=1))
    journal = journal_path(out)
    whole = journal.read_bytes()
    journal.write_bytes(whole + b'1234abcd {"e":"intent","k":"+346')  # cut mid-write
    with Ledger(out) as ledger:
        assert ledger.torn_tail
        assert ledger.get(A.key).status is Status.CALLED
        ledger.intent(B)
        ledger.outcome(Outcome(B, Status.CALLED, call_id="c-2", attempts=1))
    with Ledger(out) as ledger:  # the next record started on a line of its own
        assert ledger.get(B.key).call_id == "c-2"
    assert journal.read_bytes().startswith(whole)


def test_damage_before_the_last_line_stops_the_run(tmp_path):
    out = tmp_path / "r.csv"
    with Ledger(out) as ledger:
        ledger.intent(A)
        ledger.outcome(Outcome(A, Status.CALLED, call_id="c-1", attempts=1))
    journal = journal_path(out)
    lines = journal.read_bytes().split(b"\n")
    lines[0] = lines[0].replace(b"+34612345678", b"+34612345670")  # checksum no longer holds
    journal.write_bytes(b"\n".join(lines))
    with pytest.raises(LedgerError, match=r"damaged at line 1: the run stops"):
        Ledger(out).open()


def test_results_csv_alone_is_enough_to_resume(tmp_path):
    out = tmp_path / "r.csv"
    with Ledger(out) as ledger:
        ledger.intent(A)
        ledger.outcome(Outcome(A, Status.CALLED, call_id="c-1", attempts=1))
    journal_path(out).unlink()
    with Ledger(out) as ledger:
        assert not ledger.should_dial(A)


def test_a_second_holder_is_refused_with_who_and_since(tmp_path):
    out = tmp_path / "r.csv"
    with Ledger(out), pytest.raises(LedgerLocked, match=r"in use by another dialer run \(pid"):
        Ledger(out).open()
    with Ledger(out):  # released on close
        pass


def test_the_lock_dies_with_its_process(tmp_path):
    out = tmp_path / "r.csv"
    code = (
        "import os, sys; from dialer.store.ledger import Ledger; "
        f"l = Ledger({str(out)!r}); l.open(); print('locked', flush=True); os._exit(0)"
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert child.stdout.strip() == "locked"
    with Ledger(out):  # the dead holder left the lock file, not the lock
        pass
    assert (tmp_path / "r.csv.dialer" / "lock").exists()


# --- property: any prefix of a journal, plus a torn tail, reads back consistently ----------

EVENTS = st.lists(
    st.tuples(st.sampled_from([A, B]), st.sampled_from(["called", "failed", "unknown", "none"])),
    max_size=6,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=EVENTS, cut=st.integers(min_value=0, max_value=10_000))
def test_any_prefix_of_the_journal_is_a_consistent_state(tmp_path_factory, events, cut):
    out = tmp_path_factory.mktemp("p") / "r.csv"
    with Ledger(out, durable=False) as ledger:
        for lead, what in events:
            if not ledger.should_dial(lead):
                continue
            ledger.intent(lead)
            if what == "called":
                ledger.outcome(Outcome(lead, Status.CALLED, call_id="id-" + lead.phone[-2:]))
            elif what == "failed":
                ledger.outcome(Outcome(lead, Status.FAILED, error="HTTP 400"))
            elif what == "unknown":
                ledger.outcome(Outcome(lead, Status.IN_DOUBT, error="timeout"))
    journal = journal_path(out)
    data = journal.read_bytes()
    journal.write_bytes(data[: cut % (len(data) + 1)])
    out.unlink()
    with Ledger(out, durable=False) as ledger:
        for lead in (A, B):
            entry = ledger.get(lead.key)
            # Never "dialing" once open: an unanswered intent is in doubt, never dialable.
            assert entry is None or entry.status in {
                Status.CALLED,
                Status.FAILED,
                Status.IN_DOUBT,
                Status.PENDING,
            }
            if entry is not None and entry.status is Status.CALLED:
                assert entry.call_id == "id-" + lead.phone[-2:]
            assert ledger.should_dial(lead) == (entry is None or entry.status is Status.PENDING)


# --- property: damage before the last line is refused; damage in the last line is a torn tail --


def _journal_of(tmp_path_factory, n):
    """A closed ledger whose journal holds ``n`` records: intent, outcome, intent, ...

    Returns the results path, the journal's lines (each with its newline) and the leads.
    """
    out = tmp_path_factory.mktemp("j") / "r.csv"
    leads = [Lead(i + 2, f"+346123457{i:02d}") for i in range((n + 1) // 2)]
    with Ledger(out, durable=False) as ledger:
        for i in range(n):
            lead = leads[i // 2]
            if i % 2 == 0:
                ledger.intent(lead)
            else:
                ledger.outcome(Outcome(lead, Status.CALLED, call_id=f"c-{lead.row}", attempts=1))
    lines = journal_path(out).read_bytes().splitlines(keepends=True)
    assert len(lines) == n
    out.unlink()  # the journal alone must tell the state
    return out, lines, leads


def _alter(line: bytes, changes) -> bytes:
    """``line`` with byte ``offset % len`` XORed with ``mask`` (1..255) for each change."""
    data = bytearray(line)
    for offset, mask in changes:
        data[offset % len(data)] ^= mask
    return bytes(data)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(min_value=3, max_value=8),
    which=st.integers(min_value=0, max_value=1_000),
    offset=st.integers(min_value=0, max_value=10_000),
    mask=st.integers(min_value=1, max_value=255),
)
def test_damage_to_any_line_but_the_last_is_refused(tmp_path_factory, n, which, offset, mask):
    out, lines, _ = _journal_of(tmp_path_factory, n)
    index = which % (n - 1)  # any line but the last
    body = lines[index][:-1]  # never the newline itself
    damaged = _alter(body, [(offset, mask)]) + b"\n"
    assert damaged != lines[index]
    journal = journal_path(out)
    journal.write_bytes(b"".join([*lines[:index], damaged, *lines[index + 1 :]]))
    before = journal.read_bytes()
    with pytest.raises(LedgerError, match=rf"damaged at line {index + 1}\b"):
        Ledger(out, durable=False).open()
    assert journal.read_bytes() == before  # nothing was cut or "repaired"
    # The refused open released the lock: another (still refused) open says damaged, not locked.
    with pytest.raises(LedgerError, match="damaged at line"):
        Ledger(out, durable=False).open()


def _expected(leads, kept):
    """What replaying the first ``kept`` records (intent, outcome, ...) leaves per lead."""
    state = {}
    for lead in leads:
        intent, outcome = 2 * (lead.row - 2), 2 * (lead.row - 2) + 1
        if outcome < kept:
            state[lead.key] = (Status.CALLED, f"c-{lead.row}")
        elif intent < kept:
            state[lead.key] = (Status.IN_DOUBT, "")  # an intent never answered
    return state


def _check_torn(out, lines, leads):
    journal = journal_path(out)
    with Ledger(out, durable=False) as ledger:
        assert ledger.torn_tail
        got = {e.key: (e.status, e.call_id) for e in ledger.entries()}
        assert got == _expected(leads, len(lines) - 1)
        kept = b"".join(lines[:-1])
        data = journal.read_bytes()
        assert data.startswith(kept)  # the torn line was cut off; what follows it is the
        added = read_journal(journal, start=len(kept))[0]  # intents' in-doubt conversion
        assert sorted(e.key for e in added) == sorted(
            k for k, (status, _) in _expected(leads, len(lines) - 1).items()
            if status is Status.IN_DOUBT
        )  # fmt: skip
        assert all(e.status is Status.IN_DOUBT and e.abandoned_at for e in added)
    with Ledger(out, durable=False) as ledger:  # and the next run reads it cleanly
        assert not ledger.torn_tail


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(min_value=3, max_value=8),
    changes=st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=4
    ),
)
def test_damage_only_in_the_last_line_is_a_torn_tail(tmp_path_factory, n, changes):
    out, lines, leads = _journal_of(tmp_path_factory, n)
    damaged = _alter(lines[-1], changes)  # its newline included
    if damaged == lines[-1]:
        return  # not damage: the same record, its checksum spelled another way
    if b"\n" in damaged[:-1]:
        return  # a newline inside the last line makes it two: damage before the last line
    journal_path(out).write_bytes(b"".join([*lines[:-1], damaged]))
    _check_torn(out, lines, leads)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(n=st.integers(min_value=3, max_value=8), cut=st.integers(min_value=0, max_value=10_000))
def test_a_last_line_cut_anywhere_is_a_torn_tail(tmp_path_factory, n, cut):
    out, lines, leads = _journal_of(tmp_path_factory, n)
    keep = 1 + cut % (len(lines[-1]) - 1)  # 1 .. all but its newline
    journal_path(out).write_bytes(b"".join(lines[:-1]) + lines[-1][:keep])
    _check_torn(out, lines, leads)


# --- the snapshot: a resume reads only what follows it, and it never changes the state ----------

LEADS = [Lead(i + 2, f"+3461234{i:04d}", {"n": str(i)}) for i in range(12)]
REJECT = Lead(30, "999", status=Status.INVALID, reason="invalid number for ES")


class Crash(BaseException):
    """A kill -9 at one step of closing: nothing after it runs (the lock dies with us)."""


def replayed(out):
    """The state a ledger opened on copies of ``out``'s results and journal alone (no
    snapshot) starts from: the ground truth a snapshot must reproduce."""
    copy = out.parent / "truth"
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir()
    if out.exists():
        shutil.copy(out, copy / out.name)
    if journal_path(out).exists():
        journal = journal_path(copy / out.name)
        journal.parent.mkdir(exist_ok=True)
        shutil.copy(journal_path(out), journal)
    ledger = Ledger(copy / out.name, durable=False)
    ledger.open()
    try:
        return view(ledger)
    finally:
        ledger._release_lock()


def view(ledger):
    def same(entry):  # an unanswered intent becomes in doubt at each open, stamped with its time
        if entry.error.startswith("interrupted between the intent"):
            return dataclasses.replace(entry, abandoned_at="", updated_at="")
        return entry

    return {
        "entries": {key: same(e) for key, e in ledger.entries_by_key().items()},
        "in_doubt": sorted(e.key for e in ledger.in_doubt()),
        "dial": [ledger.should_dial(lead) for lead in LEADS],
        "sends": ledger.recent_sends(1e9),
        "counts": ledger.counts(),
        "len": len(ledger.entries()),
    }


def random_session(ledger, rng):
    for lead in rng.sample(LEADS, 5):
        what = rng.choice(["called", "failed", "lost", "not_sent", "defer", "crash", "recycle"])
        entry = ledger.get(lead.key)
        if what == "defer":
            ledger.defer(
                lead, "outside calling hours", rng.choice([Status.DEFERRED, Status.PENDING])
            )
        elif what == "recycle" and entry is not None and entry.status is Status.CALLED:
            ledger.record_call_outcome(lead.key, "no-answer", at="2026-01-01T00:00:00Z")
            ledger.recycle(lead.key, "no-answer: another try")
        elif ledger.should_dial(lead):
            ledger.intent(lead)
            if what == "called":
                ledger.outcome(Outcome(lead, Status.CALLED, call_id=f"c{rng.random()}", attempts=1))
            elif what == "failed":
                ledger.outcome(Outcome(lead, Status.FAILED, attempts=1, error="HTTP 400"))
            elif what == "lost":
                ledger.outcome(Outcome(lead, Status.IN_DOUBT, attempts=1, error="timeout"))
            elif what == "not_sent":
                ledger.not_sent(lead, "connection refused")
            # "crash": the intent stays unanswered
        elif entry is not None and entry.status is Status.IN_DOUBT:
            ledger.resolve(lead.key, rng.choice([Status.CALLED, Status.PENDING]), call_id="c-r")
    ledger.record_load(REJECT)


@pytest.mark.parametrize("seed", range(12))
def test_every_open_from_the_snapshot_equals_a_full_replay_whatever_crashed(
    tmp_path, monkeypatch, seed
):
    rng = random.Random(seed)
    out = tmp_path / "r.csv"
    steps = {"n": 0, "crash_at": None}
    real_replace, real_fsync = os.replace, os.fsync

    def step(real):
        def wrapped(*args):
            steps["n"] += 1
            if steps["crash_at"] is not None and steps["n"] == steps["crash_at"]:
                raise Crash()
            return real(*args)

        return wrapped

    monkeypatch.setattr(os, "replace", step(real_replace))
    monkeypatch.setattr(os, "fsync", step(real_fsync))
    used = 0
    for _ in range(8):
        truth = replayed(out)
        ledger = Ledger(out)
        ledger.open()
        assert view(ledger) == truth  # the snapshot, if used, changed nothing
        used += ledger._base is not None
        random_session(ledger, rng)
        ending = rng.choice(["close", "kill", "crash in close"])
        if ending == "close":
            ledger.close()
        elif ending == "kill":
            ledger._release_lock()  # SIGKILL: no fsync, no compaction, no snapshot
        else:
            # Crash at the k-th fsync/rename of closing: the journal's fsync, the results
            # CSV's temp file, its rename, the folder, the snapshot's temp file, its rename...
            steps["n"], steps["crash_at"] = 0, rng.randint(1, 7)
            with contextlib.suppress(Crash):
                ledger.close()
            steps["crash_at"] = None
            if rng.random() < 0.5:  # a temp file a crash left behind, half written
                torn = out.with_name(out.name + ".dialer") / "state.tmp"
                torn.write_bytes(b"dialer-cache 1\n{")
    assert view(Ledger(out).__enter__()) == replayed(out)
    assert used  # some opens did start from a snapshot


def test_a_resume_replays_only_the_journal_after_the_snapshot(tmp_path, monkeypatch):
    out = tmp_path / "r.csv"
    with Ledger(out) as ledger:
        ledger.intent(A)
        ledger.outcome(Outcome(A, Status.CALLED, call_id="c-1", attempts=1))
    assert state_path(out).exists()
    ledger = Ledger(out)
    ledger.open()
    ledger.intent(B)  # ... and the process dies: the intent is after the snapshot
    ledger._release_lock()
    decoded = []
    real = journal_module.decode_line
    monkeypatch.setattr(journal_module, "decode_line", lambda raw: decoded.append(raw) or real(raw))
    with Ledger(out) as again:
        assert again.get(A.key).status is Status.CALLED
        assert again.get(B.key).status is Status.IN_DOUBT
    # B's intent only, and (when the snapshot is saved) its in-doubt conversion, written by
    # this open; A's lines came from the snapshot
    assert decoded and all(B.phone.encode() in raw for raw in decoded)
    assert b'"dialing"' in decoded[0]


def test_a_snapshot_that_no_longer_matches_the_journal_is_not_used(tmp_path):
    out = tmp_path / "r.csv"
    with Ledger(out) as ledger:
        for lead in (A, B):
            ledger.intent(lead)
            ledger.outcome(Outcome(lead, Status.CALLED, call_id="c-" + lead.phone, attempts=1))
    journal = journal_path(out)
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[0] = lines[0].replace(b"dialing", b"dialinG")  # damage the snapshot covers
    journal.write_bytes(b"".join(lines))
    with pytest.raises(LedgerError, match="damaged at line 1"):
        Ledger(out).open()  # the damage is seen, as without a snapshot


def test_load_time_rows_are_not_written_again_by_every_run(tmp_path):
    out = tmp_path / "r.csv"
    with Ledger(out) as ledger:
        ledger.record_load(REJECT)
    stamped = rows(out)[0]["updated_at"]
    ledger = Ledger(out)
    ledger.open()
    size = out.stat().st_size
    ledger.record_load(REJECT)  # the same reject: nothing to write
    assert out.stat().st_size == size
    ledger.record_load(dataclasses.replace(REJECT, reason="another reason"))
    assert out.stat().st_size > size  # a changed one is written
    ledger.close()
    [row] = rows(out)
    assert row["error"] == "another reason" and row["status"] == "invalid"
    with Ledger(out) as again:
        again.record_load(dataclasses.replace(REJECT, reason="another reason"))
    assert rows(out)[0]["updated_at"] >= stamped


def test_recent_sends_count_a_recent_syncs_look_ups(tmp_path):
    import time

    out = tmp_path / "r.csv"
    now = time.time()
    with Ledger(out) as ledger:
        ledger.intent(A)
        ledger.outcome(Outcome(A, Status.CALLED, call_id="c-1", attempts=1, sent_at=now - 5))
        ledger.log_run({"command": "sync", "request_times": [now - 120, now - 30, now - 2]})
    with Ledger(out) as ledger:
        assert ledger.recent_sends(within=61.0) == [now - 30, now - 5, now - 2]


def test_read_state_from_the_snapshot_equals_a_full_replay(tmp_path, monkeypatch):
    from dialer.store.ledger import read_state

    out = tmp_path / "r.csv"
    leads = [Lead(i, f"+346123400{i:02d}") for i in range(2, 12)]
    with Ledger(out) as ledger:
        ledger.record_load(BAD)
        for lead in leads[:6]:
            ledger.intent(lead)
            ledger.outcome(Outcome(lead, Status.CALLED, call_id=f"c-{lead.row}", attempts=1))
        ledger.record_call_outcome(leads[0].key, "no-answer", at="2026-11-25T10:00:00Z")
    assert state_path(out).exists()
    ledger = Ledger(out)  # a second run, killed: a tail after the snapshot
    ledger.open()
    ledger.recycle(leads[0].key, "attempt 2")
    ledger.intent(leads[0])
    ledger.intent(leads[7])
    ledger.defer(leads[8], "outside calling hours")
    ledger._release_lock()
    decoded = []
    real = journal_module.decode_line
    monkeypatch.setattr(journal_module, "decode_line", lambda raw: decoded.append(raw) or real(raw))
    fast = dict(read_state(out))
    assert len(decoded) == 3  # only the lines after the snapshot were read
    state_path(out).unlink()
    full = dict(read_state(out))
    assert fast == full
    assert full[leads[0].key].status is Status.DIALING and full[leads[0].key].history
    assert full[BAD.key].status is Status.INVALID
    assert full[leads[8].key].status is Status.DEFERRED
