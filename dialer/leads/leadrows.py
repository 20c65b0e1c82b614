"""``LeadRows``: the leads of one file, kept compactly, each ``Lead`` built on access.

A million leads as ``Lead`` objects with their params dicts cost 600 bytes a row or more;
here a row costs about 20 bytes plus its text (one more when the file has several phone
columns: which one gave the number). The loader appends rows chunk by chunk; the
parse cache (``dialer.store.cache``) dumps and restores the whole table as bytes.
"""

from __future__ import annotations

import json
from array import array
from bisect import bisect_right
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from itertools import accumulate, compress, islice
from operator import itemgetter
from types import MappingProxyType
from typing import overload

from dialer.campaign import check_call_setting
from dialer.model import NO_SETTINGS, Lead, PhoneKeys, Status

REASON_DNC = "on the do-not-call list"

# --- the leads, stored compactly --------------------------------------------------------------

_CODES = (Status.PENDING, Status.INVALID, Status.DUPLICATE, Status.DNC, Status.MISSING_PARAM)
_PENDING, _INVALID, _DUPLICATE, _DNC, _MISSING = range(len(_CODES))
_SEP = "\x1f"  # ends each cell of a row; a row with the separator in a cell is kept aside


def _taker(columns: Sequence[int]) -> Callable[[Sequence[str]], Sequence[str]]:
    """The cells of ``columns`` of a row, in that order, as one C call (``itemgetter``)."""
    if len(columns) > 1:
        return itemgetter(*columns)
    if columns:
        only = columns[0]
        return lambda values: (values[only],)
    return lambda values: ()


BULK_KEYS = 4096  # from this many dialable leads, the planner gets their keys as numbers
_BULK_ROWS = 100_000  # from this many rows, duplicates are found with numpy (``_claimed_in_bulk``)
_BLOCK = 1 << 16  # rows looked up at a time there


def _claimed(codes: bytearray, phones: array[int]) -> Iterator[tuple[int, int]]:
    """``(i, first)`` for each pending or missing-param row ``i`` whose number an earlier
    pending row ``first`` claimed (the first pending row with that number), in order."""
    owner: dict[int, int] = {}  # number -> the index of the first pending row claiming it
    for i in compress(range(len(codes)), _marks(codes, {_PENDING})):
        owner.setdefault(phones[i], i)
    for i in compress(range(len(codes)), _marks(codes, {_PENDING, _MISSING})):
        first = owner.get(phones[i], i)
        if first < i:
            yield i, first


def _claimed_in_bulk(codes: bytearray, phones: array[int]) -> Iterator[tuple[int, int]]:
    """``_claimed``'s pairs, found with numpy: the pending rows' numbers sorted once (a stable
    sort keeps the first row of each number first), then looked up a block of rows at a time.
    A million rows hold ~40 MB of arrays at most, where ``_claimed``'s dict of Python ints
    holds ~80 MB."""
    import numpy as np  # here: pandas has loaded it for a big file already; small ones skip it

    status = np.frombuffer(codes, dtype=np.uint8)
    numbers = np.frombuffer(phones, dtype=np.int64)
    try:
        pending = np.flatnonzero(status == _PENDING)
        order = np.argsort(numbers[pending], kind="stable")
        pending = pending[order]  # by number, then by row
        sorted_numbers = numbers[pending]
        del order
        starts = np.ones(len(pending), dtype=bool)
        starts[1:] = sorted_numbers[1:] != sorted_numbers[:-1]
        claimed, owners = sorted_numbers[starts], pending[starts]
        del pending, sorted_numbers, starts
        found: list[tuple[int, int]] = []
        for lo in range(0, len(status), _BLOCK):
            block = status[lo : lo + _BLOCK]
            rows = np.flatnonzero((block == _PENDING) | (block == _MISSING)) + lo
            if not len(claimed) or not len(rows):
                continue
            wanted = numbers[rows]
            at = np.minimum(np.searchsorted(claimed, wanted), len(claimed) - 1)
            first = owners[at]
            hit = (claimed[at] == wanted) & (first < rows)
            found += zip(rows[hit].tolist(), first[hit].tolist(), strict=True)
    finally:
        del status, numbers  # the views pin the buffers: let the caller write codes again
    return iter(found)


def _marks(codes: bytes | bytearray, wanted: Collection[int]) -> bytes:
    """A byte per code: 1 where it is one of ``wanted``, else 0 (for ``itertools.compress``)."""
    return codes.translate(bytes(int(code in wanted) for code in range(256)))


_FORMAT = 4  # of LeadRows.dump: bump it whenever the stored layout changes


def _lead_setters() -> tuple[Callable[[Lead, object], None], ...] | None:
    """The slot setters of ``Lead``'s eight fields, to build one without its ``__init__`` (a
    frozen dataclass's costs ~1 µs, a million times over on each pass over a big file); None
    (use ``Lead(...)``) unless ``Lead`` is exactly these fields with no ``__post_init__``."""
    names = ("row", "phone", "params", "status", "reason", "crm_id", "phone_column", "settings")
    if tuple(f.name for f in fields(Lead)) != names or "__post_init__" in vars(Lead):
        return None
    return tuple(getattr(Lead, name).__set__ for name in names)


_SETTERS = _lead_setters()


def _make_lead(row: int, phone: str, params: dict[str, str], status: Status, reason: str,
               crm_id: str, phone_column: str, settings: Mapping[str, str]) -> Lead:  # fmt: skip
    values = (row, phone, params, status, reason, crm_id, phone_column, settings)
    if _SETTERS is None:
        return Lead(*values)
    lead = object.__new__(Lead)
    for setter, value in zip(_SETTERS, values, strict=True):
        setter(lead, value)
    return lead


@dataclass(frozen=True)
class RowPlan:
    """Where each thing is in a row, as indexes into the header (the loader makes it from the
    column mapping; ``LeadRows.add_chunk`` reads rows by it)."""

    phones: tuple[int, ...]  # the phone columns, tried in this order in each row
    id_index: int | None
    params: list[tuple[int, str]]  # (column, param name) sent, in column order
    required: list[tuple[int, str]]  # (column, name shown in the reason)
    unnamed: list[int]  # columns with no header
    sent: list[int]  # the columns kept with each lead: the CRM id first, then the params
    country: int | None = None  # the column naming each row's country; None: the default region
    # (column, call setting) of each column giving its row's own call setting (``Lead.settings``)
    settings: list[tuple[int, str]] = field(default_factory=list)

    @property
    def phone(self) -> int:
        """The first phone column (the one named in messages)."""
        return self.phones[0]

    @property
    def param_names(self) -> list[str]:
        return [param for _, param in self.params]


def key_batches(
    pending: Iterable[tuple[int, str]], size: int
) -> Iterator[tuple[list[int], list[str]]]:
    """``(index, key)`` pairs ``size`` at a time, as ``(indexes, keys)``."""
    pending = iter(pending)
    while batch := list(islice(pending, size)):
        yield [i for i, _ in batch], [key for _, key in batch]


class LeadRows(Sequence[Lead]):
    """The leads of one file, in file order, kept compactly; each ``Lead`` is built on access.

    A read-only list of ``Lead`` values: index, slice (a list), iterate, ``len``, ``==`` with
    any sequence of leads. Each chunk of rows keeps its cells as one UTF-8 blob (each cell
    followed by a separator), and the phone, row, status and reason of each row sit in arrays:
    about 20 bytes a row plus its text, where a list of ``Lead`` objects with their params
    dicts costs 600 bytes a row or more. Two accesses give equal, not identical, leads.
    ``dump`` and ``restore`` turn it into bytes and back (the parse cache, ``dialer.store.cache``).

    With several phone columns each row keeps which one gave its number (or its reason):
    ``Lead.phone_column``. A phone's extension becomes the param ``extension`` of its row, kept
    aside (few rows have one); a row that already sends a non-empty ``extension`` from a column
    keeps that one.
    """

    __slots__ = (
        "_blobs",
        "_codes",
        "_dup_rows",
        "_ends",
        "_extensions",
        "_has_id",
        "_odd",
        "_params",
        "_phone_columns",
        "_phones",
        "_reason_ids",
        "_reason_index",
        "_reasons",
        "_rows",
        "_setting_names",
        "_settings",
        "_sources",
        "_starts",
    )

    def __init__(
        self,
        params: Sequence[str],
        *,
        has_id: bool = False,
        phone_columns: Sequence[str] = (),
        settings: Sequence[str] = (),
    ) -> None:
        self._params = tuple(params)
        # The call settings each row's last cells give (checked, as sent, "" when blank), and
        # one read-only mapping per distinct combination of them (most leads share a few).
        self._setting_names = tuple(settings)
        self._settings: dict[tuple[str, ...], Mapping[str, str]] = {}
        self._has_id = has_id
        self._phone_columns = tuple(phone_columns)  # named only when there are several
        self._sources = bytearray()  # per row (several phone columns): the one it came from
        self._extensions: dict[int, str] = {}  # row index -> its phone's extension
        self._rows = array("i")  # spreadsheet row numbers
        self._codes = bytearray()  # index into _CODES
        self._phones = array("q")  # E.164 digits; 0 for an invalid phone
        self._reason_ids = array("I")  # index into _reasons
        self._reasons: list[str] = [""]
        self._reason_index: dict[str, int] = {"": 0}
        # per chunk: [crm id] + params [+ raw phone], each + _SEP
        self._blobs: list[bytes | bytearray] = []
        self._starts = array("q")  # per chunk: the index of its first row
        self._ends = array("I")  # per row: where its text ends in its chunk's blob
        self._odd: dict[int, tuple[str, ...]] = {}  # rows with the separator in a cell
        self._dup_rows = array("i")  # per row: the row a duplicate repeats (empty: none)

    @property
    def has_extensions(self) -> bool:
        """True when some dialable row's phone had an extension (sent as the param
        ``extension``); a rejected or duplicate row's extension is never sent."""
        codes = self._codes
        return any(codes[i] == _PENDING for i in self._extensions)

    def counts(self) -> dict[str, int]:
        """Number of leads per status value, in status order, leaving out zeros."""
        found = ((status, self._codes.count(code)) for code, status in enumerate(_CODES))
        return {status.value: n for status, n in found if n}

    def indices(self, statuses: Collection[Status]) -> array[int]:
        """The indexes of the leads whose status is one of ``statuses``, in order (no ``Lead``
        is built: a cheap way to visit the few rejects of a big file; 30 ms for a million)."""
        wanted = {code for code, status in enumerate(_CODES) if status in statuses}
        return array("I", compress(range(len(self._codes)), _marks(self._codes, wanted)))

    def pending_keys(self) -> Iterator[tuple[int, str]]:
        """``(index, ledger key)`` of each dialable lead, in order, with no ``Lead`` built: a
        dialable lead's key is its E.164 phone (the resume of a big campaign visits them all)."""
        phones = self._phones
        for i in self.indices({Status.PENDING}):
            yield i, f"+{phones[i]}"

    def pending_batches(self, size: int) -> Iterator[tuple[list[int], PhoneKeys]]:
        """``pending_keys`` ``size`` leads at a time, as ``(indexes, keys)``: the keys as
        their numbers (``PhoneKeys``), read from the phones' array with numpy, no string
        built; a small file's as text (numpy's import costs more than its keys)."""
        at = self.indices({Status.PENDING})
        if len(at) < BULK_KEYS:
            yield from key_batches(self.pending_keys(), size)
            return
        import numpy as np

        indexes = np.frombuffer(at, dtype=at.typecode)
        phones = np.frombuffer(self._phones, dtype=self._phones.typecode)
        for start in range(0, len(indexes), size):
            part = indexes[start : start + size]
            yield part.tolist(), PhoneKeys(phones[part].astype(np.int64))

    def pending_rows(self) -> Iterator[tuple[int, str, int]]:
        """``(index, ledger key, row number)`` of each dialable lead, in order, no ``Lead``
        built (``dialer.store.edits`` compares a million of them with the ledger)."""
        phones, rows = self._phones, self._rows
        for i in self.indices({Status.PENDING}):
            yield i, f"+{phones[i]}", rows[i]

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> Lead: ...
    @overload
    def __getitem__(self, index: slice) -> list[Lead]: ...
    def __getitem__(self, index: int | slice) -> Lead | list[Lead]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("lead index out of range")
        chunk = bisect_right(self._starts, index) - 1
        start = 0 if index == self._starts[chunk] else self._ends[index - 1]
        text = self._blobs[chunk][start : self._ends[index]]
        return self._lead(index, text.decode().split(_SEP)[:-1] if text else [])

    def __iter__(self) -> Iterator[Lead]:
        # The hot path of every pass over a big file: one decode and one split per chunk, the
        # arrays read a chunk at a time, and each Lead built without its __init__ (_SETTERS).
        names, has_id, odd, reasons = self._params, self._has_id, self._odd, self._reasons
        codes, rows, phones, reason_ids = self._codes, self._rows, self._phones, self._reason_ids
        dup_rows, statuses, new, setters = self._dup_rows, _CODES, object.__new__, _SETTERS
        set_row, set_phone, set_params, set_status, set_reason, set_crm, set_column = (
            setters or [None] * 8
        )[:7]
        set_settings = setters[7] if setters else None
        extensions, sources, columns = self._extensions, self._sources, self._phone_columns
        n_settings, settings_of = len(self._setting_names), self._settings_of
        width = len(names) + has_id + n_settings
        starts = [*self._starts, len(self)]
        for chunk, blob in enumerate(self._blobs):
            cells = blob.decode().split(_SEP) if blob else []
            at = 0
            lo, hi = starts[chunk], starts[chunk + 1]
            for i, code, row, digits, reason_id in zip(
                range(lo, hi), codes[lo:hi], rows[lo:hi], phones[lo:hi], reason_ids[lo:hi],
                strict=True,
            ):  # fmt: skip
                if code == _INVALID:
                    values = cells[at : at + width + 1]
                    at += width + 1
                    phone = values.pop()
                else:
                    values = cells[at : at + width]
                    at += width
                    phone = f"+{digits}"
                if odd and i in odd:
                    values = list(odd[i])
                    if code == _INVALID:
                        phone = values.pop()
                crm_id = values.pop(0) if has_id else ""
                settings = NO_SETTINGS
                if n_settings:
                    if code != _INVALID:
                        settings = settings_of(tuple(values[-n_settings:]))
                    del values[-n_settings:]
                if code == _DUPLICATE:
                    reason = f"same phone as row {dup_rows[i]}"
                else:
                    reason = reasons[reason_id]
                params = dict(zip(names, values, strict=True))
                if "" in values:
                    params = {name: value for name, value in params.items() if value}
                if extensions and i in extensions:
                    params.setdefault("extension", extensions[i])
                column = columns[sources[i]] if columns else ""
                if setters is None:
                    yield Lead(row, phone, params, _CODES[code], reason, crm_id, column, settings)
                    continue
                lead = new(Lead)
                set_row(lead, row)
                set_phone(lead, phone)
                set_params(lead, params)
                set_status(lead, statuses[code])
                set_reason(lead, reason)
                set_crm(lead, crm_id)
                set_column(lead, column)
                set_settings(lead, settings)
                yield lead

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if len(self) <= 20:
            return repr(list(self))
        return f"<LeadRows: {len(self):,} leads, {self.counts()}>"

    def _lead(self, i: int, values: list[str]) -> Lead:
        code = self._codes[i]
        if i in self._odd:
            values = list(self._odd[i])
        phone = values.pop() if code == _INVALID else f"+{self._phones[i]}"
        crm_id = values.pop(0) if self._has_id else ""
        settings, n_settings = NO_SETTINGS, len(self._setting_names)
        if n_settings:
            if code != _INVALID:
                settings = self._settings_of(tuple(values[-n_settings:]))
            del values[-n_settings:]
        params = {name: value for name, value in zip(self._params, values, strict=True) if value}
        if i in self._extensions:
            params.setdefault("extension", self._extensions[i])
        if code == _DUPLICATE:
            reason = f"same phone as row {self._dup_rows[i]}"
        else:
            reason = self._reasons[self._reason_ids[i]]
        column = self._phone_columns[self._sources[i]] if self._phone_columns else ""
        return _make_lead(self._rows[i], phone, params, _CODES[code], reason, crm_id, column,
                          settings)  # fmt: skip

    def _settings_of(self, cells: tuple[str, ...]) -> Mapping[str, str]:
        """The one read-only ``Lead.settings`` of a row whose setting cells are ``cells``."""
        found = self._settings.get(cells)
        if found is None:
            pairs = {k: v for k, v in zip(self._setting_names, cells, strict=True) if v}
            found = self._settings[cells] = MappingProxyType(pairs) if pairs else NO_SETTINGS
        return found

    @property
    def setting_names(self) -> tuple[str, ...]:
        """The call settings the file gives per lead (``Lead.settings``' keys), in column order."""
        return self._setting_names

    def add_chunk(
        self,
        kept: list[tuple[int, list[str]]],
        parsed: list[str],
        plan: RowPlan,
        blocked: Collection[str] | None,
        sources: bytes = b"",
    ) -> None:
        """Record a chunk of rows, before duplicates are known (``settle`` decides those).

        ``parsed`` holds, per row, the E.164 number (then ``x`` and its extension's digits, when
        it had one) or (not starting with "+") the reason; ``sources``, with several phone
        columns, the index into ``plan.phones`` of the cell each verdict came from.
        """
        first = len(self._rows)
        sent, required, phones = plan.sent, plan.required, plan.phones
        own = plan.settings
        take = _taker(sent)
        checked: dict[tuple[int, str], str | None] = {}  # (column, cell) -> as sent, None: bad
        problems: dict[tuple[int, str], str] = {}
        if self._phone_columns:
            self._sources += sources
        else:
            sources = bytes(len(kept))  # one phone column: each verdict is its cell's
        # Per row, gathered for the chunk and added to the arrays at the end (one call each).
        texts: list[str] = []
        rows, codes, numbers, reason_ids = [], bytearray(), [], []
        reason_index, extensions, odd = self._reason_index, self._extensions, self._odd
        for at_row, ((row, values), verdict, source) in enumerate(
            zip(kept, parsed, sources, strict=True), start=first
        ):
            cells = take(values)
            reason = ""
            if own and verdict[0] == "+":
                cells = list(cells)
                for at, (index, setting) in enumerate(own, start=len(cells) - len(own)):
                    cell = values[index]
                    if not cell:
                        continue
                    found = checked.get((index, cell), "")
                    if found == "":
                        try:
                            found = check_call_setting(setting, cell)
                        except ValueError as exc:
                            found = None
                            problems[(index, cell)] = f"{setting} {exc}"
                        checked[(index, cell)] = found
                    if found is None:
                        verdict = problems[(index, cell)]  # the row is invalid, with why
                        break
                    cells[at] = found
            if verdict[0] != "+":
                code, digits, reason = _INVALID, 0, verdict
                cells = (*cells, values[phones[source]])
            else:
                if "x" in verdict:
                    verdict, extension = verdict.split("x")
                    extensions[at_row] = extension
                digits = int(verdict[1:])
                if blocked is not None and verdict in blocked:
                    code, reason = _DNC, REASON_DNC
                else:
                    missing = [label for index, label in required if not values[index]]
                    code = _MISSING if missing else _PENDING
                    if missing:
                        quoted = ", ".join(f"'{label}'" for label in missing)
                        plural = "s" if len(missing) > 1 else ""
                        reason = f"missing required param{plural} {quoted}"
            joined = _SEP.join(cells) + _SEP if cells else ""
            if joined.count(_SEP) != len(cells):
                odd[at_row] = tuple(cells)
                joined = _SEP * len(cells)  # keeps every row's cell count: see __iter__
            texts.append(joined)
            rows.append(row)
            codes.append(code)
            numbers.append(digits)
            reason_id = reason_index.get(reason)
            if reason_id is None:
                reason_id = reason_index[reason] = len(self._reasons)
                self._reasons.append(reason)
            reason_ids.append(reason_id)
        self._rows.fromlist(rows)
        self._codes += codes
        self._phones.fromlist(numbers)
        self._reason_ids.fromlist(reason_ids)
        text = "".join(texts)
        if text.isascii():  # a byte a character: each row's end is the running sum of lengths
            self._ends.fromlist(list(accumulate(map(len, texts))))
        else:
            self._ends.fromlist(list(accumulate(len(one.encode()) for one in texts)))
        if texts:
            self._starts.append(first)
            self._blobs.append(text.encode())

    def settle(self) -> None:
        """Mark duplicates: a row whose number an earlier ``pending`` row already claimed."""
        codes, rows = self._codes, self._rows
        if len(codes) >= _BULK_ROWS:
            found: Iterable[tuple[int, int]] = _claimed_in_bulk(codes, self._phones)
        else:
            found = _claimed(codes, self._phones)
        dup_rows = None
        for i, first in found:
            if dup_rows is None:
                dup_rows = array("i", bytes(4 * len(codes)))
            codes[i] = _DUPLICATE
            dup_rows[i] = rows[first]
        if dup_rows is not None:
            self._dup_rows = dup_rows

    # --- as bytes, for the parse cache ----------------------------------------------------------

    def dump(self) -> list[bytes]:
        """The leads as byte strings (the first a JSON header) that ``restore`` takes back."""
        arrays = [self._rows, self._phones, self._reason_ids, self._starts, self._ends,
                  self._dup_rows]  # fmt: skip
        header = {
            "format": _FORMAT,
            "params": list(self._params),
            "settings": list(self._setting_names),
            "has_id": self._has_id,
            "reasons": self._reasons,
            "odd": [[i, list(cells)] for i, cells in self._odd.items()],
            "phone_columns": list(self._phone_columns),
            "extensions": [[i, extension] for i, extension in self._extensions.items()],
            "blobs": [len(blob) for blob in self._blobs],
            "arrays": [[a.typecode, a.itemsize, len(a)] for a in arrays],
            "codes": len(self._codes),
        }
        parts = [json.dumps(header, ensure_ascii=False).encode(), bytes(self._codes)]
        return parts + [a.tobytes() for a in arrays] + [bytes(self._sources)] + self._blobs

    @classmethod
    def restore(cls, parts: Sequence[bytes | memoryview]) -> LeadRows:
        """The leads ``dump`` gave as ``parts``; ``ValueError`` when they do not fit together."""
        header = json.loads(bytes(parts[0]))
        if header.get("format") != _FORMAT:
            raise ValueError("another format")
        rows = cls(header["params"], has_id=bool(header["has_id"]),
                   phone_columns=[str(name) for name in header["phone_columns"]],
                   settings=[str(name) for name in header["settings"]])  # fmt: skip
        rows._codes = bytearray(parts[1])
        arrays = []
        for (typecode, itemsize, length), raw in zip(header["arrays"], parts[2:8], strict=True):
            values = array(typecode)
            if values.itemsize != itemsize or len(raw) != itemsize * length:
                raise ValueError("arrays of another size")
            values.frombytes(raw)
            arrays.append(values)
        rows._rows, rows._phones, rows._reason_ids, rows._starts, rows._ends = arrays[:5]
        rows._dup_rows = arrays[5]
        rows._reasons = [str(reason) for reason in header["reasons"]]
        rows._reason_index = {reason: i for i, reason in enumerate(rows._reasons)}
        rows._odd = {int(i): tuple(cells) for i, cells in header["odd"]}
        rows._extensions = {int(i): str(extension) for i, extension in header["extensions"]}
        rows._sources = bytearray(parts[8])
        # A bytearray part (``dialer.store.cache.read_parts``) is kept as it is, not copied.
        rows._blobs = [blob if isinstance(blob, bytearray) else bytes(blob) for blob in parts[9:]]
        n = len(rows._rows)
        sizes = (len(rows._codes), len(rows._phones), len(rows._reason_ids), len(rows._ends))
        if sizes != (n, n, n, n) or [len(b) for b in rows._blobs] != header["blobs"]:
            raise ValueError("parts of another length")
        if len(rows._starts) != len(rows._blobs) or len(rows._dup_rows) not in (0, n):
            raise ValueError("chunks that do not fit")
        if len(rows._sources) != (n if rows._phone_columns else 0):
            raise ValueError("phone columns that do not fit")
        return rows
