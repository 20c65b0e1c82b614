"""The derived files: the parse cache (used only for the very files and settings it was made
from) and the ledger's compact entry table."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dialer
from dialer.campaign import Settings
from dialer.engine.run import load
from dialer.model import Status
from dialer.store.cache import (
    _SOURCES,
    leads_cache_path,
    read_parts,
    save_leads_cache,
    write_parts,
)
from dialer.store.results import Entry
from dialer.store.state import EntryTable


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def campaign(tmp_path: Path) -> Settings:
    leads = write(
        tmp_path / "leads.csv",
        "name,phone,city\nAna,612345678,Madrid\nBea,+34 612 345 679,\n"
        "Dup,0034612345678,Sevilla\nBad,12345,Bilbao\nOdd,612345670,a\x1fb\n",
    )
    write(tmp_path / "dnc.csv", "phone\n612345670\n")
    return Settings(leads=leads, playbook="pb", output=tmp_path / "leads.results.csv")


def cached(settings: Settings):
    """Load once and keep the cache (as a run does), then load again."""
    first = load(settings)
    save_leads_cache(settings.output, first)
    return first, load(settings)


def test_a_second_load_comes_from_the_cache_and_equals_a_fresh_parse(campaign):
    first, second = cached(campaign)
    assert not first.from_cache and second.from_cache
    assert leads_cache_path(campaign.output).exists()
    assert second == first and list(second.leads) == list(first.leads)
    assert [second.leads[i] for i in range(len(first.leads))] == list(first.leads)
    assert second.leads.counts() == first.leads.counts()
    assert second.path == campaign.leads


@pytest.mark.parametrize(
    "change",
    [
        "leads file",
        "leads file, same size",
        "mapping",
        "exclude",
        "required param",
        "dnc file",
        "dnc switched on",
        "region",
        "allow_possible",
    ],
)
def test_the_cache_is_not_used_once_anything_the_parse_depends_on_changes(campaign, change):
    cached(campaign)
    settings = campaign
    if change == "leads file":
        write(campaign.leads, campaign.leads.read_text(encoding="utf-8") + "Cy,612345671,x\n")
    elif change == "leads file, same size":
        text = campaign.leads.read_text(encoding="utf-8")
        write(campaign.leads, text.replace("612345678,Madrid", "612345677,Madrid"))
    elif change == "mapping":
        settings = dataclasses.replace(campaign, params={"name": "first_name"})
    elif change == "exclude":
        settings = dataclasses.replace(campaign, exclude=("city",))
    elif change == "required param":
        settings = dataclasses.replace(campaign, require=("city",))
    elif change == "dnc file":
        settings = dataclasses.replace(campaign, dnc=str(campaign.leads.parent / "dnc.csv"))
        cached(settings)
        write(campaign.leads.parent / "dnc.csv", "phone\n612345679\n")
    elif change == "dnc switched on":
        settings = dataclasses.replace(campaign, dnc=str(campaign.leads.parent / "dnc.csv"))
    elif change == "region":
        settings = dataclasses.replace(campaign, default_region="FR")
    elif change == "allow_possible":
        settings = dataclasses.replace(campaign, allow_possible=True)
    got = load(settings)
    assert not got.from_cache
    fresh = dataclasses.replace(settings, output=campaign.output.with_name("other.csv"))
    assert list(got.leads) == list(load(fresh).leads)


def test_the_dnc_change_really_changes_the_leads(campaign):
    with_dnc = dataclasses.replace(campaign, dnc=str(campaign.leads.parent / "dnc.csv"))
    before, _ = cached(with_dnc)
    write(campaign.leads.parent / "dnc.csv", "phone\n612345679\n")
    after = load(with_dnc)
    assert not after.from_cache
    assert [lead.status for lead in before.leads] != [lead.status for lead in after.leads]


@pytest.mark.parametrize("damage", ["truncated", "flipped", "garbage", "empty"])
def test_a_damaged_cache_is_ignored(campaign, damage):
    first, _ = cached(campaign)
    path = leads_cache_path(campaign.output)
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "flipped":
        data[-3] ^= 0x40
    elif damage == "garbage":
        data = bytearray(b"not a cache at all")
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    again = load(campaign)
    assert not again.from_cache and list(again.leads) == list(first.leads)


def test_a_dry_run_load_writes_no_cache(campaign):
    load(campaign)
    assert not leads_cache_path(campaign.output).exists()


def test_write_parts_is_atomic_and_cleans_its_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "x.state"
    write_parts(path, {"kind": "a"}, [b"one", b"two"], durable=True)
    header, parts = read_parts(path)
    assert header["kind"] == "a" and [bytes(p) for p in parts] == [b"one", b"two"]

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr("dialer.files.os.replace", boom)  # where the atomic write lives
    with pytest.raises(OSError):
        write_parts(path, {"kind": "b"}, [b"three"], durable=True)
    assert read_parts(path)[0]["kind"] == "a"  # the old file stands whole
    assert [p.name for p in tmp_path.iterdir()] == ["x.state"]  # no temp file left


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=6)
entries = st.builds(
    Entry,
    key=st.sampled_from(["+34600000001", "+34600000002", "+34600000003", "row:7", "k\x1e"]),
    row=st.integers(0, 2**40),
    phone=texts,
    status=st.sampled_from(list(Status)),
    call_id=texts,
    attempts=st.integers(0, 9),
    error=texts,
    updated_at=texts,
    sent_at=st.floats(allow_nan=False),
    crm_id=texts,
    outcome=texts,
    summary=texts,
    history=texts,
)
tables = st.lists(st.tuples(entries, st.booleans()), max_size=6).map(
    lambda pairs: {entry.key: (entry, journaled) for entry, journaled in pairs}
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(tables, tables)
def test_a_merged_table_equals_the_table_built_from_the_merged_entries(first, changes):
    base = EntryTable.build(first.values())
    merged = EntryTable.merged(base, changes)
    expected = {**first, **changes}
    assert merged is not None
    got = {key: (merged.entry(i), bool(merged.journaled[i])) for i, key in enumerate(merged.keys)}
    assert got == expected
    header, parts = merged.dump()
    again = EntryTable.restore(header, [memoryview(p) for p in parts])
    assert [again.entry(i) for i in range(len(again))] == [
        merged.entry(i) for i in range(len(merged))
    ]


def test_a_key_holding_the_separator_gives_no_table():
    assert EntryTable.build([(Entry("a\x1fb", 2, "x", Status.CALLED), True)]) is None


def test_the_cache_key_hashes_every_module_that_parses(tmp_path: Path) -> None:
    """Loading a CSV and a workbook imports only modules whose code the key hashes (errors.py
    holds messages, not parsing), so a change to any of them invalidates the cache."""
    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(["phone"])
    book.active.append(["612345678"])
    book.save(tmp_path / "l.xlsx")
    (tmp_path / "l.csv").write_text("phone\n612345678\n", encoding="utf-8")
    script = (
        "import sys; from pathlib import Path; from dialer.leads.loader import load_leads; "
        f"[load_leads(Path({str(tmp_path)!r}) / name) for name in ('l.csv', 'l.xlsx')]; "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('dialer.'))))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    package = Path(dialer.__file__).parent
    loaded = set()
    for name in done.stdout.split():
        path = Path(*name.split(".")[1:])
        loaded.add(str(path / "__init__.py" if (package / path).is_dir() else f"{path}.py"))
    assert "leads/workbook.py" in loaded
    assert loaded - {"errors.py"} <= set(_SOURCES)


def test_unseen_since_finds_exactly_the_entries_watching_for_a_late_call():
    """The byte-level shortcut (no ``Entry`` built for a lead with nothing watched) gives what
    a plain filter over every entry gives, odd entries (a separator in a text) included."""
    import time as _time

    from dialer.store.state import LedgerState

    now = _time.time()
    entries = []
    for i in range(60):
        entries.append((Entry(
            f"+3461234{i:04d}", i + 2, f"+3461234{i:04d}", Status.CALLED, call_id=f"c{i}",
            sent_at=now - (10 if i % 4 else 90_000), error="odd\x1f" if i % 7 == 0 else "",
            unseen=f"{now - 100:.3f}" if i % 3 == 0 else "",
            abandoned_at="1.000" if i % 5 == 0 else "",
        ), True))  # fmt: skip
    state = LedgerState(EntryTable.build(entries), {})
    expected = {e.key for e, _ in entries if e.unseen and e.sent_at >= now - 3600}
    assert {e.key for e in state.unseen_since(now - 3600)} == expected
    assert expected and len(expected) < 20


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(tables, tables, st.lists(st.integers(0, 5), max_size=8))
def test_in_row_order_lists_every_entry_as_sorting_them_by_row_and_phone_does(first, changes, rows):
    """The compaction's streamed order (no list of every ``Entry``) is ``sorted``'s, whatever
    the table's order, the overlay over it and the rows moved in place."""
    from dialer.store.state import LedgerState

    state = LedgerState(EntryTable.build(first.values()), {k: e for k, (e, _) in changes.items()})
    for key, row in zip(list(state), rows, strict=False):
        state.set_row(key, row)
    expected = sorted(state.values(), key=lambda e: (e.row, e.phone))
    got = list(state.in_row_order())
    assert [(e.row, e.phone) for e in got] == [(e.row, e.phone) for e in expected]
    assert sorted(got, key=repr) == sorted(expected, key=repr)


def test_in_row_order_sorts_a_reordered_million_row_table_too():
    """Beyond the entries merged in (a reordered file): sorted whole, ties by phone."""
    from dialer.store.state import LedgerState

    entries = [(Entry(f"+3460{i:07d}", (i * 7919) % 70_000, f"+3460{i:07d}", Status.CALLED), True)
               for i in range(70_001)]  # fmt: skip
    state = LedgerState(EntryTable.build(entries), {})
    got = [(e.row, e.phone) for e in state.in_row_order()]
    assert got == sorted((e.row, e.phone) for e, _ in entries)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(tables, tables)
def test_a_table_updated_in_place_dumps_and_restores_to_the_same_entries(first, changes):
    """``put`` over existing keys leaves garbage in the blob; ``dump`` packs it, and a
    replaced entry with the same text reuses its bytes."""
    table = EntryTable.build(first.values())
    assert table is not None and table.update(changes.values())
    expected = {**first, **changes}
    got = {key: (table.entry(i), bool(table.journaled[i])) for i, key in enumerate(table.keys)}
    assert got == expected
    header, parts = table.dump()
    again = EntryTable.restore(header, [bytearray(p) for p in parts])
    assert [again.entry(i) for i in range(len(again))] == [
        table.entry(i) for i in range(len(table))
    ]
    assert again.garbage == 0 and len(again.text) == len(table.text) - table.garbage


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(tables, tables)
def test_a_states_items_and_values_walk_the_table_as_its_keys_and_lookups_say(first, changes):
    """``items``/``values`` walk the table by position (no key looked up, ``dialer status``'s
    million leads): the same pairs, in the same order, as iterating the keys and asking each,
    the overlay's entries winning and its new leads last; ``status_in`` agrees with ``status``."""
    from dialer.store.state import LedgerState

    state = LedgerState(EntryTable.build(first.values()), {k: e for k, (e, _) in changes.items()})
    assert list(state.items()) == [(key, state[key]) for key in state]
    assert list(state.values()) == [state[key] for key in state]
    keys = [*state, "+999", "row:77"]
    wanted = {None, Status.CALLED}
    assert state.status_in(keys, wanted) == [state.status(key) in wanted for key in keys]


def test_status_in_a_big_batch_of_phone_keys_agrees_with_status_one_key_at_a_time():
    """A resume's planner asks ``status_in`` 65,536 keys at a time, as numbers (``PhoneKeys``:
    no key's text built); the numpy path (4,096 keys or more) must give what ``status`` gives
    key by key: the table's entries, the overlay's winning over them (new leads, changed
    statuses, a key repeated in the batch), a key nobody recorded, and ``row:`` keys."""
    import numpy

    from dialer.model import PhoneKeys
    from dialer.store.state import LedgerState

    statuses = [Status.CALLED, Status.PENDING, Status.IN_DOUBT, Status.FAILED]
    base = [Entry(f"+346{i:08d}", i + 2, f"+346{i:08d}", statuses[i % 4]) for i in range(6000)]
    overlay = {
        "+34600000004": Entry("+34600000004", 6, "+34600000004", Status.PENDING),  # was called
        "+34600000001": Entry("+34600000001", 3, "+34600000001", Status.CALLED),  # was pending
        "+34699999999": Entry("+34699999999", 9000, "+34699999999", Status.DIALING),  # new
        "row:5": Entry("row:5", 5, "", Status.INVALID),
    }
    state = LedgerState(EntryTable.build((e, False) for e in base), overlay)
    codes = [int(e.key[1:]) for e in base[:5000]]
    codes += [34600000004, 34699999999, 34688888888, 34600000001]  # a repeat, new, unknown
    keys = PhoneKeys(numpy.array(codes, dtype=numpy.int64))
    for wanted in ({None, Status.PENDING}, {Status.CALLED}, {Status.DIALING, Status.IN_DOUBT}):
        expected = [state.status(key) in wanted for key in keys]
        assert state.status_in(keys, wanted) == expected
        assert state.status_in(list(keys), wanted) == expected  # the keys as text: the same
        texts = [*keys, "row:5", "row:6"]
        assert state.status_in(texts, wanted) == [state.status(k) in wanted for k in texts]
    assert state.status("+34600000004") is Status.PENDING  # the check above saw the overlay
