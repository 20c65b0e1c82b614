"""The ledger's state in memory, compactly: every lead's ``Entry`` without an object per lead.

Owns two classes. ``EntryTable`` holds the entries as columns: the keys in a ``KeyIndex``
(numbers, not strings), the statuses, rows, attempts and send times in arrays, the text
fields in one blob; it is the snapshot's layout too (``dump``/``restore``, which
``dialer.store.cache`` writes and reads). ``LedgerState`` is the ledger's view of every lead:
that table, read without building an ``Entry`` per lead, under a dict of the entries replayed
after it or written since; a ``MutableMapping`` from ledger key to ``Entry``, with the bulk
queries the planner, ``status`` and the report use.
"""

from __future__ import annotations

import heapq
import sys
from array import array
from collections import Counter
from collections.abc import (
    ItemsView,
    Iterable,
    Iterator,
    MutableMapping,
    Sequence,
    ValuesView,
)
from dataclasses import fields, replace
from typing import Any

from dialer.model import Status
from dialer.store.keyindex import KeyIndex, key_codes
from dialer.store.results import Entry

_SEP = "\x1f"  # ends each text field of an entry; an entry holding it is kept aside ("odd")
_STATUSES = list(Status)
_SHOWN: list[Status | None] = [*_STATUSES]
_CODES = {status: code for code, status in enumerate(_STATUSES)}
_SEP_BYTE = _SEP.encode()

# --- the ledger's state, compactly ------------------------------------------------------------


class EntryTable:
    """Ledger entries kept compactly: fixed-size fields in arrays, text fields in one blob; an
    ``Entry`` is built on access. Each entry also carries whether the journal gave it (the
    journal beats the results CSV for such a key).

    ``put`` adds an entry or replaces one in place (its new text goes at the blob's end, the
    old bytes become garbage until ``dump`` writes the blob compacted), so replaying a million
    results rows and journal lines builds the table one entry at a time, never a million
    ``Entry`` objects. A text field of ``Entry`` is one more column here with no code: a blank
    one costs a byte an entry."""

    def __init__(self) -> None:
        self.keys = KeyIndex()  # each entry's key, and each key's entry (``keys.get``)
        self.status = bytearray()  # index into Status
        self.journaled = bytearray()  # 1: the journal's last record; 0: a results row
        self.rows = array("q")
        self.attempts = array("q")
        self.sent = array("d")
        self.starts = array("q")  # per entry: where its text begins in ``text``
        self.ends = array("q")  # ... and ends
        self.text = bytearray()
        self.garbage = 0  # bytes of ``text`` no entry points at any more
        self.odd: dict[int, list[str]] = {}  # entries with the separator in a text field

    def __len__(self) -> int:
        return len(self.keys)

    def entry(self, i: int) -> Entry:
        texts = self.odd.get(i)
        if texts is None:
            texts = self.text[self.starts[i] : self.ends[i]].decode().split(_SEP)[:-1]
        return Entry(key=self.keys[i], row=self.rows[i], status=_STATUSES[self.status[i]],
                     attempts=self.attempts[i], sent_at=self.sent[i],
                     **dict(zip(_TEXT_FIELDS, texts, strict=True)))  # fmt: skip

    def put(self, entry: Entry, journaled: bool) -> bool:
        """Add ``entry`` or replace the one of its key; False (nothing changed) when its key
        holds the separator or this layout does not know ``Entry``'s fields."""
        if _TEXT_FIELDS is None or _SEP in entry.key:
            return False
        values = [getattr(entry, name) for name in _TEXT_FIELDS]
        raw = "".join(value + _SEP for value in values).encode()
        odd = raw.count(_SEP_BYTE) != len(values)
        if odd:
            raw = b""
        code = _CODES[entry.status]
        i = self.keys.get(entry.key)
        if i is not None and i not in self.odd and self.text[self.starts[i] : self.ends[i]] == raw:
            start = self.starts[i]  # the same text (a journal line over its results row)
            self.garbage -= len(raw)  # not garbage after all (counted again below)
        else:
            start = len(self.text)
            self.text += raw
        if i is None:
            self.keys.append(entry.key)
            self.status.append(code)
            self.journaled.append(journaled)
            self.rows.append(entry.row)
            self.attempts.append(entry.attempts)
            self.sent.append(entry.sent_at)
            self.starts.append(start)
            self.ends.append(start + len(raw))
            if odd:
                self.odd[len(self.keys) - 1] = values
            return True
        self.garbage += self.ends[i] - self.starts[i]
        self.status[i], self.journaled[i] = code, journaled
        self.rows[i], self.attempts[i], self.sent[i] = entry.row, entry.attempts, entry.sent_at
        self.starts[i], self.ends[i] = start, start + len(raw)
        if odd:
            self.odd[i] = values
        else:
            self.odd.pop(i, None)
        return True

    def update(self, changes: Iterable[tuple[Entry, bool]]) -> bool:
        """``put`` each of ``changes`` (in place); False as ``put`` says (the table is then
        part-changed: do not keep it)."""
        return all(self.put(entry, journaled) for entry, journaled in changes)

    @classmethod
    def build(cls, entries: Iterable[tuple[Entry, bool]]) -> EntryTable | None:
        """A table of ``(entry, journaled)`` (the last one per key wins), or None when
        ``Entry`` has fields this layout does not know, or a key holds the separator."""
        table = cls()
        return table if table.update(entries) else None

    def copy(self) -> EntryTable:
        table = EntryTable()
        table.keys = self.keys.copy()
        table.status, table.journaled = bytearray(self.status), bytearray(self.journaled)
        table.rows, table.attempts, table.sent = (array("q", self.rows),
            array("q", self.attempts), array("d", self.sent))  # fmt: skip
        table.starts, table.ends = array("q", self.starts), array("q", self.ends)
        table.text, table.garbage = bytearray(self.text), self.garbage
        table.odd = {i: list(values) for i, values in self.odd.items()}
        return table

    @classmethod
    def merged(
        cls, base: EntryTable | None, changes: dict[str, tuple[Entry, bool]]
    ) -> EntryTable | None:
        """A copy of ``base`` with ``changes`` applied (new keys at the end); None as
        ``build`` says. (The ledger updates its own table in place instead.)"""
        table = base.copy() if base is not None else cls()
        return table if table.update(changes.values()) else None

    def pack(self) -> None:
        """Lay the blob out as each entry's text in entry order and nothing else, in place:
        the entries already so from the first one on (usually all but the few a run changed)
        stay where they are; only the text of the entries after them is copied (a million
        leads' blob is never held twice)."""
        starts, ends, text = self.starts, self.ends, self.text
        n, k, at = len(starts), 0, 0
        while k < n and starts[k] == at:
            at = ends[k]
            k += 1
        if k == n and at == len(text):
            self.garbage = 0
            return
        tail = bytearray()
        with memoryview(text) as view:
            for i in range(k, n):
                start, end = starts[i], ends[i]
                starts[i] = at + len(tail)
                tail += view[start:end]
                ends[i] = at + len(tail)
        del text[at:]
        text += tail
        self.garbage = 0

    def dump(self) -> tuple[dict[str, Any], list[bytes | bytearray | memoryview]]:
        """The header and parts of the snapshot file (views of the table: write them before
        changing it). Packs the blob first (``pack``)."""
        self.pack()
        keys, other = self.keys.dump()
        header = {"fields": _LAYOUT, "count": len(self), "odd": list(self.odd.items()),
                  "other_keys": other}  # fmt: skip
        offsets = array("q", [0])
        offsets += self.ends
        arrays = (self.rows, self.attempts, self.sent, offsets)
        parts = [keys, self.status, self.journaled, self.text]
        return header, parts + [memoryview(values).cast("B") for values in arrays]

    @classmethod
    def restore(cls, header: dict[str, Any], parts: Sequence[bytes | bytearray | memoryview]
                ) -> EntryTable:  # fmt: skip
        """The table ``dump`` gave; ``ValueError`` when the parts do not fit together. A list
        of parts is emptied as they are used (a part is freed once it is copied, not at the
        end: a million leads' snapshot is never held twice)."""
        if header.get("fields") != _LAYOUT or len(parts) != 8:
            raise ValueError("another layout")
        table = cls()
        n = int(header["count"])
        taken = list(parts)
        if isinstance(parts, list):
            parts.clear()
        table.keys = KeyIndex.restore(taken[0], header["other_keys"])
        taken[0] = b""
        table.status, table.journaled = bytearray(taken[1]), bytearray(taken[2])
        text = taken[3]
        table.text = text if isinstance(text, bytearray) else bytearray(text)
        del text
        offsets = array("q")
        for k, name in enumerate(("rows", "attempts", "sent", None), start=4):
            values = getattr(table, name)[:0] if name else offsets
            values.frombytes(taken[k])
            taken[k] = b""
            if name:
                setattr(table, name, values)
        lengths = (len(table.keys), len(table.status), len(table.journaled), len(table.rows),
                   len(table.attempts), len(table.sent), len(offsets) - 1)  # fmt: skip
        if lengths != (n,) * 7:
            raise ValueError("parts of another length")
        if max(table.status, default=0) >= len(_STATUSES) or offsets[-1] != len(table.text):
            raise ValueError("values out of range")
        table.starts, table.ends = offsets[:-1], offsets[1:]
        del offsets
        table.odd = {int(i): [str(v) for v in values] for i, values in header["odd"]}
        return table


def _text_fields() -> tuple[str, ...] | None:
    """The text fields of ``Entry`` besides its key, or None if it has a field of a type this
    layout does not store (then no snapshot is written: the slow path stays right)."""
    known = {"key": "str", "row": "int", "status": "Status", "attempts": "int", "sent_at": "float"}
    text = []
    for field in fields(Entry):
        kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
        if field.name in known:
            if kind != known[field.name]:
                return None
        elif kind == "str":
            text.append(field.name)
        else:
            return None
    return tuple(text) if len(text) + len(known) == len(fields(Entry)) else None


_TEXT_FIELDS = _text_fields()
# "keys 2": the keys as numbers (``store.keyindex``); a snapshot of text keys is not read.
_LAYOUT = [[f.name for f in fields(Entry)], [s.value for s in _STATUSES], sys.byteorder,
           "keys 2"]  # fmt: skip


def _row_phone(entry: Entry) -> tuple[int, str]:
    return entry.row, entry.phone


def _by_phone(entries: Iterable[Entry]) -> list[Entry]:
    """Entries of one row number in (row, phone) order, stably."""
    return sorted(entries, key=lambda entry: entry.phone)


class LedgerState(MutableMapping[str, Entry]):
    """The ledger's entries: a read-only ``EntryTable`` (from the snapshot) under a dict of
    the entries replayed after it or written since. The table builds an ``Entry`` only when
    one is asked for, so a million finished leads cost no million objects."""

    def __init__(self, base: EntryTable | None, overlay: dict[str, Entry]) -> None:
        self.base = base if base is not None else EntryTable()
        self.overlay = overlay
        self._extra = sum(key not in self.base.keys for key in overlay)

    def __getitem__(self, key: str) -> Entry:
        entry = self.overlay.get(key)
        if entry is not None:
            return entry
        i = self.base.keys.get(key)
        if i is None:
            raise KeyError(key)
        return self.base.entry(i)

    def get(self, key: str, default: Any = None) -> Any:
        entry = self.overlay.get(key)
        if entry is not None:
            return entry
        i = self.base.keys.get(key)
        return default if i is None else self.base.entry(i)

    def status(self, key: str) -> Status | None:
        """The status of ``key``'s entry, None if it has none (no ``Entry`` built)."""
        entry = self.overlay.get(key)
        if entry is not None:
            return entry.status
        i = self.base.keys.get(key)
        return None if i is None else _STATUSES[self.base.status[i]]

    def statuses(self, keys: Sequence[str]) -> list[Status | None]:
        """``status`` of each of ``keys`` at once (the table searched in one call)."""
        base, overlay = self.base, self.overlay
        codes, shown = base.status, _SHOWN
        found = [shown[codes[i]] if i >= 0 else None for i in base.keys.find_many(keys)]
        if overlay:
            for n, key in enumerate(keys):
                entry = overlay.get(key)
                if entry is not None:
                    found[n] = entry.status
        return found

    def status_in(self, keys: Sequence[str], wanted: Iterable[Status | None]) -> list[bool]:
        """Whether the status of each of ``keys`` is one of ``wanted`` (None: no entry), all
        at once: ``statuses`` with no ``Status`` looked at one by one."""
        wanted = set(wanted)
        if len(keys) < 4096:
            return [status in wanted for status in self.statuses(keys)]
        import numpy

        base, overlay = self.base, self.overlay
        asked = key_codes(keys)
        at = base.keys.find_array(keys, asked)
        codes = numpy.frombuffer(base.status, dtype=numpy.uint8) if base.status else None
        known = numpy.full(len(keys), len(_STATUSES), dtype=numpy.int64)  # no entry
        if codes is not None:
            known[at >= 0] = codes[at[at >= 0]]
            del codes
        table = numpy.array([s in wanted for s in _STATUSES] + [None in wanted], dtype=bool)
        found: list[bool] = table[known].tolist()
        for n, entry in _in_overlay(keys, asked, overlay):
            found[n] = entry.status in wanted
        return found

    def with_status(self, status: Status) -> list[Entry]:
        code, base, overlay = _STATUSES.index(status), self.base, self.overlay
        found = []
        i = base.status.find(code)
        while i >= 0:
            if base.keys[i] not in overlay:
                found.append(base.entry(i))
            i = base.status.find(code, i + 1)
        return found + [entry for entry in overlay.values() if entry.status is status]

    def in_row_order(self) -> Iterator[Entry]:
        """Every entry, ordered by (row, phone) as ``sorted`` would (stably, in iteration
        order), building one ``Entry`` at a time: the results CSV's compaction."""
        base, overlay = self.base, self.overlay
        n, keys = len(base), base.keys
        extra, shown = [], {}  # the overlay's new leads; the table's entries it replaces
        rows = array("q", base.rows)
        for key, entry in overlay.items():
            if (i := keys.get(key)) is not None:
                rows[i] = entry.row
                shown[i] = entry
            else:
                extra.append(entry)
        rows.extend(entry.row for entry in extra)

        def at(i: int) -> Entry:
            if i >= n:
                return extra[i - n]
            entry = shown.get(i)
            return entry if entry is not None else base.entry(i)

        # The table is in the order the results CSV had when it was read, which this wrote
        # sorted: the entries that break the order (moved rows, new leads) are sorted apart
        # and merged in. Many of them (a reordered file): all are sorted by their rows.
        late, side, last = bytearray(len(rows)), [], -(2**63)
        for i, row in enumerate(rows):
            if row > last:
                last = row
            else:
                late[i] = 1
                side.append(i)
        if len(side) <= 65536:
            main = (at(i) for i, out in enumerate(late) if not out)
            rest = sorted(map(at, side), key=_row_phone)
            yield from heapq.merge(main, rest, key=_row_phone)
            return
        del late, side
        import numpy  # here: only a close after a reordered file needs it

        values = numpy.frombuffer(rows, dtype=numpy.int64)
        order = numpy.argsort(values, kind="stable")
        ordered = values[order]
        tied = numpy.zeros(len(order), dtype=bool)  # True: the row number of the one before
        tied[1:] = ordered[1:] == ordered[:-1]
        group: list[int] = []
        for start in range(0, len(order), 65536):
            for i, tie in zip(order[start : start + 65536].tolist(),
                              tied[start : start + 65536].tolist(), strict=True):  # fmt: skip
                if not tie and group:
                    yield from _by_phone(map(at, group))
                    group.clear()
                group.append(i)
        yield from _by_phone(map(at, group))

    def set_row(self, key: str, row: int) -> Entry:
        """Give ``key``'s entry another row number (the leads file moved it); the table's
        arrays are changed in place, so a reordered million-row file builds no ``Entry`` to
        keep. Returns the entry as it now is."""
        entry = self.overlay.get(key)
        if entry is not None:
            entry = replace(entry, row=row)
            self.overlay[key] = entry
            return entry
        i = self.base.keys.get(key)
        if i is None:
            raise KeyError(key)
        self.base.rows[i] = row
        return self.base.entry(i)

    def sent_since(self, cutoff: float) -> list[float]:
        base, overlay = self.base, self.overlay
        keys, times = base.keys, []
        if base.sent and max(base.sent) >= cutoff:  # a resume long after the last run: never
            times = [t for i, t in enumerate(base.sent) if t >= cutoff and keys[i] not in overlay]
        return times + [e.sent_at for e in overlay.values() if e.sent_at >= cutoff]

    def unseen_since(self, cutoff: float) -> list[Entry]:
        """The entries sent to at or after ``cutoff`` that watch for a late call (``unseen``
        set). An ``Entry`` is built only for those: in the table, an entry whose last text
        field (``unseen``) is empty ends its text with two separators."""
        base, overlay = self.base, self.overlay
        found = []
        if base.sent and max(base.sent) >= cutoff:
            text, ends, odd = base.text, base.ends, base.odd
            last_empty = _TEXT_FIELDS is not None and _TEXT_FIELDS[-1] == "unseen"
            sep = _SEP.encode()[0]
            for i, t in enumerate(base.sent):
                if t < cutoff or base.keys[i] in overlay:
                    continue
                if last_empty and i not in odd and text[ends[i] - 2] == sep:
                    continue  # nothing watched: no Entry built
                entry = base.entry(i)
                if entry.unseen:
                    found.append(entry)
        return found + [e for e in overlay.values() if e.sent_at >= cutoff and e.unseen]

    def counts(self) -> Counter[str]:
        base, overlay = self.base, self.overlay
        found = [base.status.count(code) for code in range(len(_STATUSES))]
        for i in map(base.keys.get, overlay):
            if i is not None:
                found[base.status[i]] -= 1  # shown by the overlay instead
        counts = Counter({_STATUSES[code].value: n for code, n in enumerate(found) if n})
        counts.update(entry.status.value for entry in overlay.values())
        return counts

    def __setitem__(self, key: str, entry: Entry) -> None:
        if key not in self.overlay and key not in self.base.keys:
            self._extra += 1
        self.overlay[key] = entry

    def __delitem__(self, key: str) -> None:
        raise TypeError("a ledger entry is never removed")

    def __iter__(self) -> Iterator[str]:
        yield from self.base.keys
        keys = self.base.keys
        yield from (key for key in self.overlay if key not in keys)

    def values(self) -> ValuesView[Entry]:
        """Every entry, in ``__iter__``'s order, walking the table (no key looked up)."""
        return _Values(self)

    def items(self) -> ItemsView[str, Entry]:
        """``(key, entry)`` in ``__iter__``'s order, walking the table (no key looked up)."""
        return _Items(self)

    def walk(self) -> Iterator[tuple[str, Entry]]:
        """``items`` as a plain iterator: the table's entries (the overlay's where it has
        one), then the overlay's new leads."""
        return ((entry.key, entry) for entry in self.walk_entries())

    def walk_entries(self) -> Iterator[Entry]:
        """``values`` as a plain iterator (see ``walk``)."""
        base, overlay = self.base, self.overlay
        keys, extra, shown = base.keys, [], {}
        for key, entry in overlay.items():
            i = keys.get(key)
            if i is None:
                extra.append(entry)
            else:
                shown[i] = entry
        if not shown:
            yield from map(base.entry, range(len(base)))
        else:
            for i in range(len(base)):
                entry = shown.get(i)
                yield entry if entry is not None else base.entry(i)
        yield from extra

    def __len__(self) -> int:
        return len(self.base) + self._extra

    def __contains__(self, key: object) -> bool:
        return key in self.overlay or key in self.base.keys


class _Values(ValuesView[Entry]):
    _mapping: LedgerState

    def __iter__(self) -> Iterator[Entry]:
        return self._mapping.walk_entries()


class _Items(ItemsView[str, Entry]):
    _mapping: LedgerState

    def __iter__(self) -> Iterator[tuple[str, Entry]]:
        return self._mapping.walk()


def _in_overlay(
    keys: Sequence[str], asked: Any, overlay: dict[str, Entry]
) -> Iterator[tuple[int, Entry]]:
    """``(n, entry)`` for each of ``keys`` (``asked``: their numbers, ``key_codes``) that the
    overlay holds, found by number (each of the batch's numbers searched among the overlay's,
    sorted: no key's text built) and, for a key that is no number, by its text."""
    if not overlay:
        return
    import numpy

    held = list(overlay)
    held_codes = key_codes(held)
    order = numpy.argsort(held_codes)
    ordered = held_codes[order]
    j = numpy.searchsorted(ordered, asked)
    j[j >= len(ordered)] = 0
    for n in numpy.flatnonzero((ordered[j] == asked) & (asked >= 0)).tolist():
        yield n, overlay[held[order[j[n]]]]
    for n in numpy.flatnonzero(asked < 0).tolist():  # keys that are no number: by their text
        entry = overlay.get(keys[n])
        if entry is not None:
            yield n, entry
