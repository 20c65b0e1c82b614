"""One planner: the dry run's "To dial now" is what a run started at that moment dials.

Each case runs the dry run and then the run in this process with the same injected clock,
against the simulator over real HTTP, and compares the dry run's count (and the line it
prints) with the calls the simulator created: across ``--max-calls``, ``--until``, calling
hours (leads in other time zones, and hours no lead's zones share) and recycling.
"""

from __future__ import annotations

from typing import ClassVar

import pytest

from dialer.engine.planner import HELD_BATCH, choose
from dialer.model import Lead, Status
from tests.conftest import mobiles, per_phone, run_cli, run_here, write_leads

NOON_MADRID = "2026-11-25T12:00:00+01:00"  # a Wednesday; 03:00 in San Francisco
SF = "+14155552671"

CASES = {
    "everyone": {},
    "a batch of 2": {"max_calls": 2},
    "past --until": {"until": "11:00", "timezone": "Europe/Madrid"},
    "before --until": {"until": "18:00", "timezone": "Europe/Madrid", "max_calls": 3},
    "San Francisco asleep": {"calling_hours": "09:00-20:00"},
    "hours nobody shares": {"calling_hours": "01:00-02:00"},
    "hours and a batch": {"calling_hours": "09:00-20:00", "max_calls": 4},
}


def _to_dial(lines: list[str]) -> int:
    [line] = [x for x in lines if x.startswith("To dial now:")]
    return int(line.split()[3].replace(",", ""))


@pytest.mark.parametrize("flags", CASES.values(), ids=CASES.keys())
def test_the_dry_run_says_what_the_run_dials(sim, tmp_path, flags):
    leads = write_leads(tmp_path / "l.csv", [*mobiles(6), SF])
    preview, lines = run_here(leads, now=NOON_MADRID, dry_run=True, **flags)
    assert sim.calls == []
    assert _to_dial(lines) == len(preview.to_dial)
    summary, said = run_here(leads, url=sim.url, now=NOON_MADRID, **flags)
    assert len(sim.calls) == len(preview.to_dial)
    assert sorted(c.phone for c in sim.calls) == sorted(x.phone for x in preview.to_dial)
    assert summary.counts.get("deferred", 0) == preview.deferred
    assert f"7 rows in l.csv: {len(preview.to_dial)} to dial" in said[0]


def test_the_dry_run_counts_recycled_leads_as_the_run_dials_them(sim, tmp_path):
    sim.config.ring_seconds = sim.config.talk_seconds = 0.05
    ana, bea, cruz = mobiles(3)
    sim.config.outcomes = {ana: ["busy", "closed"], bea: ["closed"], cruz: ["no-answer"]}
    leads = write_leads(tmp_path / "l.csv", [ana, bea, cruz])
    assert run_cli("run", str(leads), "--playbook", "pb", url=sim.url).returncode == 0
    assert run_cli("sync", str(tmp_path / "l.results.csv"), url=sim.url).returncode == 0
    recycle = {"retry_outcomes": "no-answer,busy", "max_attempts": 3, "retry_after": "4h",
               "max_calls": 1}  # fmt: skip
    later = "2030-01-09T12:00:00+01:00"  # long after the cool-down
    preview, lines = run_here(leads, now=later, dry_run=True, **recycle)
    assert _to_dial(lines) == 1 and preview.held == 1
    run_here(leads, url=sim.url, now=later, **recycle)
    assert per_phone(sim) == {ana: 2, bea: 1, cruz: 1}  # the batch of one took the first due


def _lead(row: int, phone: str) -> Lead:
    return Lead(row, phone, {}, Status.PENDING)


def test_choose_orders_recycles_defers_and_holds():
    """The planner alone: open leads and leads due again in file order, calling hours, then
    the cap; nothing else decides."""

    class Loaded:
        leads: ClassVar = [
            _lead(2, "+1"),
            _lead(3, "+2"),
            _lead(4, "+3"),
            _lead(5, "+4"),
            _lead(6, "+5"),
        ]

        def pending_batches(self, size):  # one batch: (indexes, keys), as LoadResult's
            yield list(range(len(self.leads))), [x.phone for x in self.leads]

    choice = choose(
        Loaded(),  # type: ignore[arg-type]
        open_key=lambda key: key in {"+1", "+3", "+4", "+5"},
        due=lambda i, key: "due again" if key == "+2" else None,
        closed=lambda lead: "asleep" if lead.phone == "+3" else None,
        max_calls=2,
    )
    assert [x.phone for x in choice.to_dial] == ["+1", "+2"]
    assert choice.recycled == [(1, "due again")] and choice.deferred == [(2, "asleep")]
    assert [x.phone for x in choice.held] == ["+4", "+5"] and choice.held_reason == HELD_BATCH
    assert (choice.already_done, choice.ended_by) == (0, "max_calls")
    passed = choose(Loaded(), open_key=lambda key: True, until=-5)  # type: ignore[arg-type]
    assert (len(passed.to_dial), passed.held_count, passed.ended_by) == (0, 5, "until")


def test_choose_judges_the_same_leads_with_their_keys_as_numbers(tmp_path, monkeypatch):
    """A big file's dialable leads reach the ledger as numbers (``PhoneKeys``), a small one's
    as text: the planner picks the same leads either way, the called ones left out, the
    overlay's (a lead made pending again, rejects) taken into account."""
    from dialer.leads import leadrows
    from dialer.leads.loader import load_leads
    from dialer.model import Outcome
    from dialer.store.ledger import Ledger

    path = write_leads(tmp_path / "l.csv", [*mobiles(40), "nonsense", mobiles(1)[0]])
    loaded = load_leads(path)
    leads = [lead for lead in loaded.leads if lead.status is Status.PENDING]
    with Ledger(tmp_path / "l.results.csv", durable=False) as ledger:
        for lead in leads[::3]:
            ledger.intent(lead)
            ledger.outcome(Outcome(lead, Status.CALLED, call_id=f"c-{lead.row}", attempts=1))
        for lead in loaded.rejects():
            ledger.record_load(lead)
        picked = {}
        for bulk in (1, 4096):
            monkeypatch.setattr(leadrows, "BULK_KEYS", bulk)
            choice = choose(loaded, open_key=ledger.open_key, open_keys=ledger.open_keys)
            picked[bulk] = [lead.key for lead in choice.to_dial]
    assert picked[1] == picked[4096] == [lead.key for lead in leads if leads.index(lead) % 3]
    assert len(picked[1]) == 26
