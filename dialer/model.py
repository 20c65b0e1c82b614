"""Plain values passed between the layers: a lead, its status, one send's outcome.

Nothing here does I/O. The loader makes ``Lead`` values, the dispatcher turns them into
``Outcome`` values, the ledger stores both.
"""

from __future__ import annotations

import enum
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, overload


class Status(enum.StrEnum):
    """A lead's status, as written in the results CSV ``status`` column."""

    PENDING = "pending"  # not tried yet, or proven not called: a later run dials it
    DIALING = "dialing"  # intent recorded, no outcome yet (only seen after a crash)
    CALLED = "called"  # final: the API created the call; ``call_id`` holds its id
    FAILED = "failed"  # final: the API refused it, ``error`` says why
    IN_DOUBT = "in_doubt"  # the request was sent but the answer lost: the phone may have rung
    INVALID = "invalid"  # final at load time: empty or invalid phone, never sent
    DUPLICATE = "duplicate"  # final at load time: an earlier row has the same phone
    DNC = "dnc"  # final at load time: the phone is on the do-not-call list
    MISSING_PARAM = "missing_param"  # final at load time: a required param is empty
    DEFERRED = "deferred"  # outside its calling hours now: a later run dials it
    REMOVED = "removed"  # no longer in the leads file: never sent (pending again if put back)


LOAD_TIME = frozenset({Status.INVALID, Status.DUPLICATE, Status.DNC, Status.MISSING_PARAM})


# Body keys of POST /call the dialer sets itself (the phone and the call settings): a leads
# column so named is never sent as a custom param, and a param can never overwrite one.
RESERVED = frozenset(
    {"phone", "playbook_id", "version_id", "voice_id", "voice_model", "language", "interrupt"}
)


# A lead with no call settings of its own (read-only, shared by every such lead).
NO_SETTINGS: Mapping[str, str] = MappingProxyType({})


def ledger_key(row: int, phone: str, status: Status) -> str:
    """The key a lead has in the ledger: its E.164 phone when dialable (one person, one key),
    ``row:<n>`` for a row rejected at load time (its phone may be empty or repeated)."""
    return f"row:{row}" if status in LOAD_TIME else phone


class PhoneKeys(Sequence[str]):
    """The ledger keys of dialable leads kept as their E.164 numbers (``codes``: an int64
    array, e.g. numpy's): ``+34600111222`` is 34600111222. A key's text is built only when it
    is asked for; the ledger's table, which keeps its keys as those numbers too, reads
    ``codes`` straight (a resume judges a million leads without a string each)."""

    __slots__ = ("codes",)

    def __init__(self, codes: Any) -> None:
        self.codes = codes

    def __len__(self) -> int:
        return len(self.codes)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> PhoneKeys: ...
    def __getitem__(self, index: int | slice) -> str | PhoneKeys:
        if isinstance(index, slice):
            return PhoneKeys(self.codes[index])
        return f"+{int(self.codes[index])}"

    def __iter__(self) -> Iterator[str]:
        return (f"+{code}" for code in self.codes.tolist())


# A lead the API never saw: dialed when its phone is (again) a dialable row of the leads file.
NEVER_SENT = frozenset({Status.PENDING, Status.DEFERRED, Status.REMOVED})

# The order statuses are listed in, wherever counts are shown (terminal lines, the report).
STATUS_ORDER = tuple(s.value for s in (
    Status.CALLED, Status.FAILED, Status.IN_DOUBT, Status.DIALING, Status.PENDING,
    Status.DEFERRED, Status.INVALID, Status.DUPLICATE, Status.DNC, Status.MISSING_PARAM,
    Status.REMOVED,
))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Lead:
    """One row of the leads file.

    ``row`` is the row's number as a spreadsheet shows it (the header is row 1).
    ``phone`` is E.164 for a dialable lead, else the raw cell. ``params`` are the custom
    params to send (renamed, excluded and empty cells already dropped). ``settings`` are the
    lead's own call settings (``language``, ``voice_id``...: checked, as sent, blank cells
    left out), laid over the campaign's; leads with the same ones share one read-only mapping.
    """

    row: int
    phone: str
    params: dict[str, str] = field(default_factory=dict)
    status: Status = Status.PENDING
    reason: str = ""
    crm_id: str = ""  # the CRM's id for the row (--id-column), carried into the results
    # The phone column the number (or the invalid cell) came from, when the file has several
    # (--phone-column Mobile,Phone); "" with one.
    phone_column: str = ""
    settings: Mapping[str, str] = field(default_factory=lambda: NO_SETTINGS)

    @property
    def key(self) -> str:
        """The ledger key: the E.164 phone for a dialable lead, the row for a load-time reject."""
        return ledger_key(self.row, self.phone, self.status)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one lead's dispatch ended in."""

    lead: Lead
    status: Status
    call_id: str = ""
    attempts: int = 0
    error: str = ""
    sent_at: float = 0.0  # wall time the last request left (0: none sent)
    abandoned_at: float = 0.0  # in doubt: wall time the dialer gave up on the answer


def per_minute(count: int, span: float) -> float:
    """A sustained rate, ``count`` events over ``span`` seconds, as events per started minute:
    ``count`` over the number of 60 s windows the span touches. It never exceeds a per-minute
    limit that every 60 s window kept (300 calls in 130 s at 100 a minute: 100, not 138)."""
    return count / (int(max(span, 0.0) // 60) + 1)


class Subset(Sequence[Lead]):
    """Some leads of a larger sequence, kept as indices (4 bytes a lead, not a ``Lead``)."""

    def __init__(self, base: Sequence[Lead], indices: Iterable[int] = ()) -> None:
        self._base = base
        self._indices = array("I", indices)

    @classmethod
    def where(cls, base: Sequence[Lead], keep: Callable[[Lead], bool]) -> Subset:
        """The leads of ``base`` for which ``keep`` holds, in order."""
        return cls(base, (i for i, lead in enumerate(base) if keep(lead)))

    def filter(self, keep: Callable[[Lead], bool]) -> Subset:
        """The leads of this subset for which ``keep`` holds, in order."""
        base = self._base
        return Subset(base, (i for i in self._indices if keep(base[i])))

    def __len__(self) -> int:
        return len(self._indices)

    @overload
    def __getitem__(self, index: int) -> Lead: ...
    @overload
    def __getitem__(self, index: slice) -> Subset: ...
    def __getitem__(self, index: int | slice) -> Lead | Subset:
        if isinstance(index, slice):
            return Subset(self._base, self._indices[index])
        return self._base[self._indices[index]]

    def __iter__(self) -> Iterator[Lead]:
        base = self._base
        for i in self._indices:
            yield base[i]
