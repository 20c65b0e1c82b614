"""One place for a campaign's state: the results CSV, and one folder beside it.

Through the installed CLI against the simulator: after a run the leads folder holds the
results and one more entry; a campaign in the layout before the folder (its files beside the
results) is read where it is by `dialer status` and moved into the folder, with a line saying
so, by the next run, which dials nobody twice.
"""

from __future__ import annotations

import collections

from tests.conftest import mobiles, run_cli, write_leads

RUN = ("--playbook", "pb", "--max-per-minute", "1000")


def _to_old_layout(results):
    """The campaign as the dialer before the state folder left it: ``<results>.<name>``."""
    folder = results.with_name(results.name + ".dialer")
    for path in folder.iterdir():
        path.rename(results.with_name(f"{results.name}.{path.name}"))
    folder.rmdir()


def test_a_run_leaves_the_results_and_one_folder(sim, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    leads = write_leads(data / "leads.csv", mobiles(3))
    assert run_cli("run", str(leads), *RUN, url=sim.url).returncode == 0
    assert run_cli("sync", str(data / "leads.results.csv"), url=sim.url).returncode == 0
    assert sorted(p.name for p in data.iterdir()) == [
        "leads.csv", "leads.results.csv", "leads.results.csv.dialer",
    ]  # fmt: skip


def test_a_campaign_of_the_old_layout_is_read_then_moved_once(sim, tmp_path):
    phones = mobiles(5)
    leads = write_leads(tmp_path / "leads.csv", phones[:3])
    out = tmp_path / "leads.results.csv"
    assert run_cli("run", str(leads), *RUN, url=sim.url).returncode == 0
    _to_old_layout(out)
    assert (tmp_path / "leads.results.csv.journal").exists()
    status = run_cli("status", str(out))
    assert status.returncode == 0 and "3 leads: 3 called" in status.stdout, status.stdout
    write_leads(leads, phones)
    proc = run_cli("run", str(leads), *RUN, url=sim.url)
    assert proc.returncode == 0, proc.stderr
    assert (
        "this campaign's files (journal, state, leads-cache, leads-mark, runs.jsonl) were moved "
        "into leads.results.csv.dialer/, the one folder beside leads.results.csv that now "
        "holds them" in proc.stdout
    ), proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "leads.csv", "leads.results.csv", "leads.results.csv.dialer",
    ]  # fmt: skip
    assert collections.Counter(c.phone for c in sim.calls) == collections.Counter(phones)
    again = run_cli("run", str(leads), *RUN, url=sim.url)
    assert again.returncode == 0 and "were moved" not in again.stdout
    assert len(sim.calls) == 5
