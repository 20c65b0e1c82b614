"""The keys of the ledger's table (``store.state.EntryTable``), kept out of Python objects.

Owns ``KeyIndex``: entry ``i``'s key (``keys[i]``) and the entry of a key (``keys.get(key)``)
for a million leads in about 24 bytes a lead, where a list of ``str`` and a ``dict`` cost
about 128. A ledger key is a lead's E.164 phone (``model.ledger_key``), so it is kept as its
number: ``+34600111222`` is the int64 34600111222. The numbers sit in entry order in one
array; a sorted copy of them, with the entry of each, is searched by bisection; the keys added
since the last merge wait in a small dict and are merged in (a stable sort of a sorted run and
a short one, linear). Any other key (``row:12``, a phone with a leading zero: none in a file
the dialer wrote) is kept as a ``str`` in a list beside, its number then ``-1 - position``.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from dialer.model import PhoneKeys

_LIMIT = 1 << 63
_SMALL = 4096  # up to this many keys, sorted without numpy (a test's table: no import)


def key_code(key: str) -> int:
    """The number ``key`` is kept as: its digits when it is ``+`` and the digits of a number
    written as ``str`` writes it (no leading zero, no sign, no space), else -1."""
    if key[:1] != "+" or not key.isascii():
        return -1
    try:
        code = int(key[1:])
    except ValueError:
        return -1
    return code if 0 <= code < _LIMIT and f"+{code}" == key else -1


def key_codes(keys: Sequence[str]) -> Any:
    """``key_code`` of each of ``keys`` as a numpy int64 array, read by numpy (the digits of
    a batch of phones as a byte matrix); a key it cannot vouch for is read by ``key_code``."""
    import numpy

    if isinstance(keys, PhoneKeys):  # the keys of dialable leads, already numbers
        return numpy.asarray(keys.codes, dtype=numpy.int64)
    try:
        raw = numpy.array(keys, dtype="S")
    except UnicodeEncodeError:  # a key that is not ASCII: never a number
        raw = None
    width = raw.dtype.itemsize if raw is not None else 0
    if raw is None or not 2 <= width <= 19:
        return numpy.fromiter(map(key_code, keys), numpy.int64, len(keys))
    chars = raw.view(numpy.uint8).reshape(len(keys), width)
    plus, body = chars[:, 0], chars[:, 1:]
    pad = body == 0  # after a key shorter than the longest
    digits = body.astype(numpy.int64) - 48
    count = width - 1 - pad.sum(axis=1)
    good = (plus == 43) & (count >= 1) & ((body[:, 0] != 48) | (count == 1))
    good &= (((digits >= 0) & (digits <= 9)) | pad).all(axis=1)
    good &= ~(pad[:, :-1] & ~pad[:, 1:]).any(axis=1)  # padding only at the end
    good &= numpy.fromiter(map(len, keys), numpy.int64, len(keys)) == count + 1  # no NUL
    value = numpy.zeros(len(keys), dtype=numpy.int64)
    for column in range(width - 1):
        value = numpy.where(pad[:, column], value, value * 10 + digits[:, column])
    codes = numpy.where(good, value, -1)
    for n in numpy.flatnonzero(~good).tolist():
        codes[n] = key_code(keys[n])
    return codes


class KeyIndex:
    """Entry keys in entry order (``keys[i]``, iteration) and where each key is (``get``,
    ``in``). Keys are only added (``append``), never removed or changed."""

    def __init__(self) -> None:
        self.codes = array("q")  # per entry: its key's number, or -1 - its place in ``other``
        self.other: list[str] = []  # the keys that are not numbers, in order
        self.other_at: dict[str, int] = {}  # ... and their entries
        self.sorted = array("q")  # the numbers of entries merged so far, ascending
        self.order = array("q")  # the entry of each of ``sorted``
        self.recent: dict[int, int] = {}  # number -> entry, added since the last merge

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, i: int) -> str:
        code = self.codes[i]
        return f"+{code}" if code >= 0 else self.other[-1 - code]

    def __iter__(self) -> Iterator[str]:
        other = self.other
        for code in self.codes:
            yield f"+{code}" if code >= 0 else other[-1 - code]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def get(self, key: str) -> int | None:
        """The entry of ``key``, None when it has none."""
        code = key_code(key)
        if code < 0:
            return self.other_at.get(key)
        return self.find(code)

    def find(self, code: int) -> int | None:
        """The entry of the key whose number is ``code``, None when none is."""
        i = self.recent.get(code)
        if i is not None:
            return i
        found = self.sorted
        j = bisect_left(found, code)
        return self.order[j] if j < len(found) and found[j] == code else None

    def find_many(self, keys: Sequence[str]) -> list[int]:
        """The entry of each of ``keys``, -1 for none: ``get`` for many at once (a resume's
        planner asks for a million, searched by numpy a batch at a time)."""
        if len(keys) < _SMALL:
            return [-1 if (i := self.get(key)) is None else i for key in keys]
        return self.find_array(keys).tolist()  # type: ignore[no-any-return]

    def find_array(self, keys: Sequence[str], codes: Any = None) -> Any:
        """``find_many`` as a numpy int64 array; ``codes``: ``key_codes(keys)`` if known."""
        import numpy

        self.merge()
        codes = key_codes(keys) if codes is None else codes
        if not self.sorted:
            found = numpy.full(len(keys), -1, dtype=numpy.int64)
        else:
            ordered = numpy.frombuffer(self.sorted, dtype=numpy.int64)
            asked = numpy.argsort(codes)  # searched in order: each search starts near the last
            j = numpy.empty_like(asked)
            j[asked] = numpy.searchsorted(ordered, codes[asked])
            del asked
            j[j >= len(ordered)] = 0
            hit = (ordered[j] == codes) & (codes >= 0)
            found = numpy.where(hit, numpy.frombuffer(self.order, dtype=numpy.int64)[j], -1)
            del ordered, j, hit  # the arrays' buffers are free again (they may grow)
        if self.other_at:
            for n in numpy.flatnonzero(codes < 0).tolist():
                found[n] = self.other_at.get(keys[n], -1)
        return found

    def append(self, key: str) -> int:
        """Add ``key`` (which has no entry yet) as the next entry; returns that entry."""
        i = len(self.codes)
        code = key_code(key)
        if code < 0:
            self.codes.append(-1 - len(self.other))
            self.other.append(key)
            self.other_at[key] = i
            return i
        self.codes.append(code)
        self.recent[code] = i
        if len(self.recent) >= max(16384, len(self.sorted) >> 5):
            self.merge()
        return i

    def merge(self) -> None:
        """Fold the recent keys into the sorted arrays (after a bulk load: the dict emptied)."""
        if not self.recent:
            return
        added = sorted(self.recent.items())
        if len(self.sorted) + len(added) <= _SMALL:
            pairs = sorted([*zip(self.sorted, self.order, strict=True), *added])
            self.sorted = array("q", [code for code, _ in pairs])
            self.order = array("q", [i for _, i in pairs])
            self.recent = {}
            return
        import numpy  # here: a small or unchanged table needs none (numpy comes with pandas)

        codes = numpy.fromiter((c for c, _ in added), numpy.int64, len(added))
        at = numpy.fromiter((i for _, i in added), numpy.int64, len(added))
        del added
        where = numpy.searchsorted(numpy.frombuffer(self.sorted, dtype=numpy.int64), codes)
        # One array at a time, each copied into an ``array`` and its numpy result freed: a
        # million keys' merge holds two copies of one array at most.
        self.sorted = _array(numpy.insert(numpy.frombuffer(self.sorted, dtype=numpy.int64),
                                          where, codes))  # fmt: skip
        self.order = _array(numpy.insert(numpy.frombuffer(self.order, dtype=numpy.int64),
                                         where, at))  # fmt: skip
        self.recent = {}

    def copy(self) -> KeyIndex:
        keys = KeyIndex()
        keys.codes, keys.sorted, keys.order = (array("q", self.codes), array("q", self.sorted),
                                               array("q", self.order))  # fmt: skip
        keys.other, keys.other_at = list(self.other), dict(self.other_at)
        keys.recent = dict(self.recent)
        return keys

    def dump(self) -> tuple[memoryview, list[str]]:
        """The numbers (a view: write it before adding keys) and the other keys, in order."""
        return memoryview(self.codes).cast("B"), list(self.other)

    @classmethod
    def restore(cls, codes: bytes | bytearray | memoryview, other: Sequence[str]) -> KeyIndex:
        """The index ``dump`` gave; ``ValueError`` when they do not fit (a key twice, a
        number out of range)."""
        keys = cls()
        keys.codes.frombytes(codes)
        keys.other = [str(key) for key in other]
        if keys.other:
            keys.other_at = dict(_others(keys.codes, keys.other))
            if len(keys.other_at) != len(keys.other) or any(key_code(k) >= 0 for k in keys.other):
                raise ValueError("a key twice, or a number kept as text")
        if len(keys.codes) <= _SMALL:
            pairs = sorted((code, i) for i, code in enumerate(keys.codes) if code >= 0)
            if len(pairs) + len(keys.other) != len(keys.codes):
                raise ValueError("a key out of range")
            keys.sorted = array("q", [code for code, _ in pairs])
            keys.order = array("q", [i for _, i in pairs])
        else:
            keys.sorted, keys.order = _sorted(keys.codes, bool(keys.other))
        found = keys.sorted
        if any(found[j] == found[j + 1] for j in range(len(found) - 1)) if len(found) <= _SMALL \
                else _repeats(found):  # fmt: skip
            raise ValueError("a key twice")
        return keys

    @classmethod
    def of(cls, keys: Iterable[str]) -> KeyIndex:
        """An index of ``keys`` (each once), in their order."""
        index = cls()
        for key in keys:
            index.append(key)
        index.merge()
        return index


def _sorted(codes: array[int], others: bool) -> tuple[array[int], array[int]]:
    """The numbers of ``codes`` ascending, and the entry of each; ``ValueError`` for a
    negative one when there are no ``others``."""
    import numpy

    values = numpy.frombuffer(codes, dtype=numpy.int64)
    if not others and int(values.min()) < 0:
        raise ValueError("a key out of range")
    at = numpy.flatnonzero(values >= 0) if others else None
    order = numpy.argsort(values if at is None else values[at], kind="stable")
    if at is not None:
        order = at[order]
    ordered = values[order]
    del values
    return _array(ordered), _array(order)


def _repeats(found: array[int]) -> bool:
    """Whether an ascending array holds a number twice."""
    import numpy

    values = numpy.frombuffer(found, dtype=numpy.int64)
    return bool((values[1:] == values[:-1]).any())


def _array(values: object) -> array[int]:
    """A numpy int64 array as an ``array('q')`` (one copy, no list)."""
    import numpy

    out = array("q")
    out.frombytes(memoryview(numpy.ascontiguousarray(values, dtype=numpy.int64)).cast("B"))
    return out


def _others(codes: array[int], other: list[str]) -> Iterator[tuple[str, int]]:
    """``(key, entry)`` of each non-number key; ``ValueError`` when ``codes`` does not name
    each of ``other`` exactly once."""
    count, seen = len(other), 0
    for i, code in enumerate(codes):
        if code < 0:
            j = -1 - code
            if j >= count:
                raise ValueError("a key out of range")
            seen += 1
            yield other[j], i
    if seen != count:
        raise ValueError("keys missing")
