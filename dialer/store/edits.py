"""What changed in the leads file since the ledger last saw it: rows gone, rows back, rows
moved, and phones changed after a call.

``compare(loaded, state)`` walks the file's dialable leads once, by their ledger keys (the E.164
phone), against the ledger's state, with no ``Entry`` built per lead, and returns
``FileChanges``; the run applies it to the ledger (``Ledger.mark_removed``, ``mark_returned``,
``move_rows``) before dialing, the dry run only reports it. The rules:

* A lead the ledger holds as never called (``pending``, ``deferred``) whose phone is no longer
  a dialable row of the file becomes ``removed``: never dialed, never counted pending. If its
  phone comes back into the file it is ``pending`` again.
* A lead with a history (``called``, ``failed``, ``in_doubt``) whose phone is no longer in the
  file keeps its status: it is only counted, "no longer in the leads file".
* A lead still in the file whose row number changed gets the current one (``moves``). Leads
  never called get it anyway when the run records them.
* A new phone is a new lead (the ledger's key is the phone), so a corrected phone is dialed.
  When the row is recognisably the one of a lead called under a phone no longer in the file,
  that is reported (``PhoneChange``), never acted upon. The row is recognised by its CRM id
  (``--id-column``), or, without one, by its cells: every cell but the phone equal to those of
  the old phone's row in the leads file as the last run read it (the parse cache), at least
  one of them not empty, and those cells found in one old row and one new row only.

Comparing costs about a second a million leads, so a run that finds the ledger exactly as the
last run (or ``dialer sync``) left it, with the very same leads file, carries the last
comparison's findings instead (``carried``, from the mark ``mark`` gave, kept by
``dialer.store.cache``): nothing can have moved, come back or left since.

Pure: no files, no network; the caller hands in the previous parse and the mark, if any.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress
from typing import Any

from dialer.leads.loader import LoadResult
from dialer.model import LOAD_TIME, Lead, Status
from dialer.store.results import Entry
from dialer.store.state import EntryTable, LedgerState

REMOVED_REASON = "no longer in the leads file: never sent"
RETURNED_REASON = "back in the leads file"

_STATUSES = list(Status)
_CODE = {status: code for code, status in enumerate(_STATUSES)}
_OPEN = frozenset({_CODE[Status.PENDING], _CODE[Status.DEFERRED]})
_REMOVED = _CODE[Status.REMOVED]
_LOAD_TIME = frozenset(_CODE[status] for status in LOAD_TIME)
# Leads whose call may exist: a new phone on their row is worth a word.
_CALLED = frozenset({Status.CALLED, Status.IN_DOUBT, Status.DIALING})


@dataclass(frozen=True)
class PhoneChange:
    """A row whose lead was called under another phone, now gone from the file."""

    row: int
    old: str
    new: str
    certain: bool = True  # False: the old call may or may not have been placed (in doubt)


class Moves:
    """Leads still in the file whose row number changed: ``(key, row)`` pairs, kept as two
    arrays for the snapshot's leads (a reordered million-row file costs 8 bytes a lead)."""

    def __init__(self, base: EntryTable) -> None:
        self._base = base
        self._at = array("I")  # indices into base
        self._rows = array("i")
        self._extra: list[tuple[str, int]] = []  # leads held outside the table

    def add(self, at: int | None, key: str, row: int) -> None:
        if at is None:
            self._extra.append((key, row))
        else:
            self._at.append(at)
            self._rows.append(row)

    def __len__(self) -> int:
        return len(self._at) + len(self._extra)

    def __iter__(self) -> Iterator[tuple[str, int]]:
        keys = self._base.keys
        for at, row in zip(self._at, self._rows, strict=True):
            yield keys[at], row
        yield from self._extra


@dataclass
class FileChanges:
    """How the leads file differs from what the ledger holds."""

    removed: list[tuple[str, str]] = field(default_factory=list)  # (key, reason) to mark now
    still_removed: int = 0  # leads already removed, still not in the file
    returned: list[tuple[str, int]] = field(default_factory=list)  # (key, row): pending again
    gone: Counter[str] = field(default_factory=Counter)  # status -> leads kept, not in file
    gone_in_doubt: list[str] = field(default_factory=list)  # their keys: settled, then judged
    moves: Moves = field(default_factory=lambda: Moves(EntryTable()))
    phone_changes: list[PhoneChange] = field(default_factory=list)

    @property
    def removed_total(self) -> int:
        """Leads never called and no longer in the file, newly removed or already."""
        return len(self.removed) + self.still_removed

    def record(self) -> dict[str, object]:
        """The figures for a run's audit record."""
        return {"removed": self.removed_total, "returned": len(self.returned),
                "kept": dict(self.gone), "rows_moved": len(self.moves),
                "phone_changes": len(self.phone_changes)}  # fmt: skip


def carried(mark: Mapping[str, Any], leads_key: str, removed: int) -> FileChanges | None:
    """The changes to report for the leads file ``leads_key`` when the ledger is as the run
    that wrote ``mark`` left it, with ``removed`` leads removed; None when ``mark`` was made
    for another file (or is not one)."""
    if not leads_key or mark.get("leads") != leads_key:
        return None
    try:
        kept = Counter({str(status): int(n) for status, n in mark["kept"].items()})
        doubt = [str(key) for key in mark["gone_in_doubt"]]
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return FileChanges(still_removed=removed, gone=kept, gone_in_doubt=doubt)


def mark(
    changes: FileChanges, leads_key: str, status_of: Callable[[str], Status | None]
) -> dict[str, Any]:
    """What stays true once a run applied ``changes`` (for ``carried``): the leads kept though
    no longer in the file, counted by their status now, and those still in doubt."""
    kept = Counter(changes.gone)
    doubt = []
    for key in changes.gone_in_doubt:
        kept[Status.IN_DOUBT.value] -= 1
        status = status_of(key)
        if status in (Status.IN_DOUBT, Status.DIALING):
            doubt.append(key)
            kept[Status.IN_DOUBT.value] += 1
        elif status in (Status.CALLED, Status.FAILED):
            kept[status.value] += 1  # type: ignore[union-attr]
    return {"leads": leads_key, "kept": {s: n for s, n in kept.items() if n > 0},
            "gone_in_doubt": doubt}  # fmt: skip


def compare(
    loaded: LoadResult,
    state: Mapping[str, Entry],
    *,
    previous: Callable[[], Sequence[Lead] | None] | None = None,
) -> FileChanges:
    """How ``loaded`` differs from the ledger's ``state`` (see the module's rules).
    ``previous`` gives the leads as the last run read them, asked for only when a row without
    a CRM id may hold a called lead's new phone."""
    if not isinstance(state, LedgerState):  # read_state without a snapshot: a plain dict
        state = LedgerState(None, state if isinstance(state, dict) else dict(state))
    table = state
    base, overlay = table.base, table.overlay
    index, codes, rows = base.keys, base.status, base.rows
    changes = FileChanges(moves=Moves(base))
    if not len(table):  # nothing recorded (a first run): nothing can differ, no pass needed
        return changes
    seen = bytearray(len(base))
    seen_extra: set[str] = set()
    fresh = array("I")  # file indices of leads never called: a new phone may be among them
    for i, key, row in loaded.pending_rows():
        entry = overlay.get(key)
        at = index.get(key)
        if at is not None:
            seen[at] = 1
        if entry is not None:
            if at is None:
                seen_extra.add(key)
            code, was, at = _CODE[entry.status], entry.row, None
        elif at is not None:
            code, was = codes[at], rows[at]
        else:
            fresh.append(i)
            continue
        if code in _OPEN:
            fresh.append(i)
        elif code == _REMOVED:
            changes.returned.append((key, row))
            fresh.append(i)
        elif was != row and code not in _LOAD_TIME:
            changes.moves.add(at, key, row)
    called: list[Entry] = []
    for key, status in _unseen(base, overlay, seen, seen_extra):
        if status in (Status.PENDING, Status.DEFERRED):
            changes.removed.append((key, REMOVED_REASON))
        elif status is Status.REMOVED:
            changes.still_removed += 1
        elif status not in LOAD_TIME:
            shown = Status.IN_DOUBT if status is Status.DIALING else status
            changes.gone[shown.value] += 1
            if shown is Status.IN_DOUBT:
                changes.gone_in_doubt.append(key)
            if status in _CALLED:
                called.append(table[key])
    if changes.removed:
        changes.removed = _why_removed(loaded, changes.removed)
    if called and fresh:
        if loaded.id_column:
            changes.phone_changes = _by_id(loaded.leads, fresh, called)
        elif previous is not None and (old := previous()) is not None:
            changes.phone_changes = _by_cells(loaded.leads, fresh, called, old)
    return changes


def _unseen(
    base: EntryTable, overlay: Mapping[str, Entry], seen: bytearray, seen_extra: set[str]
) -> Iterator[tuple[str, Status]]:
    """``(key, status)`` of each lead of the state the file did not name."""
    keys, codes = base.keys, base.status
    for at in compress(range(len(seen)), seen.translate(_FLIP)):
        if keys[at] not in overlay:
            yield keys[at], _STATUSES[codes[at]]
    for key, entry in overlay.items():
        at = base.keys.get(key)
        if key not in seen_extra and (at is None or not seen[at]):
            yield key, entry.status


_FLIP = bytes([1, 0] + [0] * 254)  # seen.translate: 1 where a lead was not seen


def _why_removed(loaded: LoadResult, removed: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The reason each removed lead gets: gone from the file, or its row no longer dialable."""
    gone = {key for key, _ in removed}
    rejected = {lead.phone: lead for lead in loaded.rejects() if lead.phone in gone}
    out = []
    for key, reason in removed:
        lead = rejected.get(key)
        if lead is not None:
            reason = (f"no longer dialable in the leads file (row {lead.row}: "
                      f"{lead.status.value}): never sent")  # fmt: skip
        out.append((key, reason))
    return out


def _change(lead: Lead, entry: Entry) -> PhoneChange:
    return PhoneChange(lead.row, entry.phone, lead.phone, entry.status is Status.CALLED)


def _by_id(leads: Sequence[Lead], fresh: Iterable[int], called: list[Entry]) -> list[PhoneChange]:
    """New phones on rows whose CRM id is that of a lead called under a phone now gone."""
    owners: dict[str, list[Entry]] = {}
    for entry in called:
        if entry.crm_id:
            owners.setdefault(entry.crm_id, []).append(entry)
    if not owners:
        return []
    found = []
    for i in fresh:
        lead = leads[i]
        olds = owners.get(lead.crm_id) if lead.crm_id else None
        if olds is not None and len(olds) == 1:
            found.append(_change(lead, olds[0]))
    return found


def _cells(lead: Lead) -> tuple[str, ...] | None:
    """Every cell of the row but the phone, or None when they are all empty."""
    if not lead.params and not lead.crm_id:
        return None
    return (lead.crm_id, *sorted(f"{name}={value}" for name, value in lead.params.items()))


def _by_cells(
    leads: Sequence[Lead], fresh: Iterable[int], called: list[Entry], old: Sequence[Lead]
) -> list[PhoneChange]:
    """New phones on rows whose other cells are those of a called lead's row, now gone."""
    by_phone = {entry.phone: entry for entry in called}
    olds: dict[tuple[str, ...], list[Entry]] = {}
    for lead in old:
        entry = by_phone.get(lead.phone) if lead.status is Status.PENDING else None
        if entry is not None and (cells := _cells(lead)) is not None:
            olds.setdefault(cells, []).append(entry)
    if not olds:
        return []
    news: dict[tuple[str, ...], list[Lead]] = {}
    for i in fresh:
        lead = leads[i]
        cells = _cells(lead)
        if cells is not None and cells in olds:
            news.setdefault(cells, []).append(lead)
    found = [_change(new[0], olds[cells][0]) for cells, new in news.items()
             if len(new) == 1 and len(olds[cells]) == 1]  # fmt: skip
    return sorted(found, key=lambda change: change.row)
