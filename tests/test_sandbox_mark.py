"""Sandbox campaigns are marked, and never pass for real ones (nor the reverse): issue 15, item 7.

The installed CLI as a subprocess: ``--sandbox`` runs on its built-in simulator; real runs on
the ``sim`` fixture's simulator on 127.0.0.1, whose own record (``sim.calls``) says who was
called.
"""

from __future__ import annotations

import collections

from dialer.store.journal import journal_path
from dialer.store.sandboxmark import REAL, SANDBOX, campaign_kind, mark_path, sandbox_store
from tests.conftest import mobiles, read_rows, run_cli, write_leads

REFUSED_REAL = (
    "error: {out} holds the simulated calls of a --sandbox run, not real ones: a real run would "
    "take those leads as done and call nobody; give the real run its own results file with "
    "--output (a new file); the sandbox's stay as they are\n"
)
REFUSED_SANDBOX = (
    "error: {out} is a real campaign's results: --sandbox must not mix simulated calls into "
    "them; give the sandbox run its own results file with --output (a new file)\n"
)


def sandbox_run(leads, out):
    proc = run_cli("run", str(leads), "--playbook", "pb", "--sandbox", "--output", str(out),
                   token=None)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_a_real_run_refuses_a_sandbox_campaigns_results(sim, tmp_path):
    phones = mobiles(3)
    leads = write_leads(tmp_path / "l.csv", phones)
    out = tmp_path / "real.csv"
    sandbox_run(leads, out)
    assert mark_path(out).is_file() and campaign_kind(out) == SANDBOX
    before = out.read_bytes()
    proc = run_cli("run", str(leads), "--playbook", "pb", "--output", str(out), url=sim.url)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == REFUSED_REAL.format(out=out)
    dry = run_cli("run", str(leads), "--playbook", "pb", "--output", str(out), "--dry-run")
    assert (dry.returncode, dry.stderr) == (2, REFUSED_REAL.format(out=out))
    assert sim.calls == [] and out.read_bytes() == before  # nothing sent, nothing written
    # What the message says to do: a new file; every lead then gets its one real call.
    proc = run_cli("run", str(leads), "--playbook", "pb", "--output", str(tmp_path / "new.csv"),
                   url=sim.url)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert collections.Counter(c.phone for c in sim.calls) == collections.Counter(phones)


def test_the_sandbox_refuses_a_real_campaigns_results(sim, tmp_path):
    phones = mobiles(2)
    leads = write_leads(tmp_path / "l.csv", phones)
    out = tmp_path / "l.results.csv"
    assert run_cli("run", str(leads), "--playbook", "pb", url=sim.url).returncode == 0
    before = out.read_bytes()
    proc = run_cli("run", str(leads), "--playbook", "pb", "--sandbox", "--output", str(out),
                   token=None)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr == REFUSED_SANDBOX.format(out=out)
    assert out.read_bytes() == before
    assert not mark_path(out).exists() and not sandbox_store(out).exists()
    assert campaign_kind(out) == REAL
    again = run_cli("run", str(leads), "--playbook", "pb", url=sim.url)  # still the real one
    assert again.returncode == 0 and "0 to dial, 2 already done" in again.stdout
    assert collections.Counter(c.phone for c in sim.calls) == collections.Counter(phones)


def test_sync_refuses_the_other_kind_both_ways(sim, tmp_path):
    leads = write_leads(tmp_path / "l.csv", mobiles(2))
    fake, real = tmp_path / "fake.csv", tmp_path / "real.csv"
    sandbox_run(leads, fake)
    proc = run_cli("sync", str(fake), url=sim.url)
    assert proc.returncode == 2
    assert proc.stderr == (
        f"error: {fake} holds the simulated calls of a --sandbox run, not real ones: the real "
        "API does not know them; look them up with 'dialer sync --sandbox'\n"
    )
    assert [r for r in sim.requests if r.method == "GET"] == []  # nothing asked of the API
    assert run_cli("run", str(leads), "--playbook", "pb", "--output", str(real),
                   url=sim.url).returncode == 0  # fmt: skip
    proc = run_cli("sync", str(real), "--sandbox", token=None)
    assert proc.returncode == 2
    assert proc.stderr == (
        f"error: {real} is a real campaign's results: --sandbox must not mix simulated calls "
        "into them; look their calls up without --sandbox\n"
    )


def test_the_mark_outlives_a_rebuilt_results_file_or_journal(sim, tmp_path):
    leads = write_leads(tmp_path / "l.csv", mobiles(2))
    out = tmp_path / "real.csv"
    sandbox_run(leads, out)
    out.unlink()  # the results file lost: a sandbox run rebuilds it from the journal
    again = sandbox_run(leads, out)
    assert "0 to dial, 2 already done" in again.stdout
    journal_path(out).unlink()  # the journal lost: rebuilt from the results file
    sandbox_run(leads, out)
    assert [r["status"] for r in read_rows(out)] == ["called", "called"]
    proc = run_cli("run", str(leads), "--playbook", "pb", "--output", str(out), url=sim.url)
    assert (proc.returncode, proc.stderr) == (2, REFUSED_REAL.format(out=out))
    assert sim.calls == []


def test_a_sandbox_campaign_from_before_the_mark_is_known_by_its_call_store(sim, tmp_path):
    leads = write_leads(tmp_path / "l.csv", mobiles(2))
    out = tmp_path / "real.csv"
    sandbox_run(leads, out)
    mark_path(out).unlink()  # as a sandbox run made before the mark existed left it
    proc = run_cli("run", str(leads), "--playbook", "pb", "--output", str(out), url=sim.url)
    assert (proc.returncode, proc.stderr) == (2, REFUSED_REAL.format(out=out))
    assert sim.calls == []
    sandbox_run(leads, out)  # the sandbox takes it as its own, and marks it again
    assert mark_path(out).is_file()


def test_a_new_campaign_is_of_neither_kind_until_something_is_written(tmp_path):
    out = tmp_path / "r.csv"
    assert campaign_kind(out) is None
    out.write_text("\ufeffrow,phone,status\r\n", encoding="utf-8")  # a header only
    assert campaign_kind(out) is None
    out.write_text("\ufeffrow,phone,status\r\n2,+34612340000,pending\r\n", encoding="utf-8")
    assert campaign_kind(out) == REAL
