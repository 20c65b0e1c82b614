"""Phone cells read in order, on a process pool for large files.

Phone parsing (~20 µs a number) runs in this process for the first 20,000 rows, then on a
process pool (if there is more than one core); batches come back in file order and the pool runs
the very function the serial path runs (``_verdicts``), so both give the same leads. Any trouble
with the pool falls back to this process. The workers only parse phone cells: no files, no
network.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from dialer.leads.phones import normalize_many, normalize_rows

__all__ = ["Cells", "PhoneParser"]

_PARALLEL_MIN_ROWS = 20_000  # phones parsed in the process before a pool is worth starting

_T = TypeVar("_T")
# A batch of rows' cells to read: one list of cells per phone column, and the country cells.
Cells = tuple[list[list[str]], list[str] | None]
# Per row, its E.164 number (with "x" and the extension's digits when it had one: "+1201x89")
# or the reason it has none (a reason never starts with "+"); and per row the index into the
# plan's phone columns of the cell that gave it (empty when there is one phone column).
_Verdicts = tuple[list[str], bytes]


def _verdicts(cells: Cells, region: str, allow_possible: bool, country_column: str) -> _Verdicts:
    """The verdicts of a batch of rows (``_Verdicts``).

    The unit of work of both paths: run in this process, or on the pool (plain strings are
    cheaper to send back than ``ParsedPhone`` objects). One phone column and no country column
    take the per-cell path; otherwise each row is read by ``normalize_rows``.
    """
    phones, countries = cells
    if len(phones) == 1 and countries is None:
        parsed = normalize_many(phones[0], region, allow_possible=allow_possible)
        sources = b""
    else:
        parsed, found = normalize_rows(
            phones, countries, region, country_column=country_column,
            allow_possible=allow_possible,
        )  # fmt: skip
        sources = bytes(found) if len(phones) > 1 else b""
    verdicts = [
        (f"{p.e164}x{p.extension}" if p.extension else p.e164) if p.e164 else p.reason
        for p in parsed
    ]
    return verdicts, sources


class PhoneParser:
    """Reads batches of rows' phone cells in order: in this process for the first
    ``_PARALLEL_MIN_ROWS``, then on a process pool (if there is more than one core). Any trouble
    with the pool falls back to this process: same function, same results."""

    def __init__(self, region: str, allow_possible: bool, country_column: str = "") -> None:
        self._args = (region, allow_possible, country_column)
        self._pool: ProcessPoolExecutor | None = None
        self._workers = _worker_count()
        self._failed = False

    def __enter__(self) -> PhoneParser:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def ordered(self, batches: Iterable[tuple[_T, Cells]]) -> Iterator[tuple[_T, _Verdicts]]:
        """(payload, verdicts) for each (payload, cells), in the order given."""
        in_flight: deque[tuple[_T, Cells, Future[_Verdicts] | None]] = deque()
        seen = 0
        for payload, cells in batches:
            seen += len(cells[0][0]) if cells[0] else 0
            in_flight.append((payload, cells, self._submit(cells, seen)))
            while len(in_flight) > (2 * self._workers if self._pool is not None else 0):
                yield self._result(*in_flight.popleft())
        while in_flight:
            yield self._result(*in_flight.popleft())

    def _submit(self, cells: Cells, seen: int) -> Future[_Verdicts] | None:
        if self._pool is None:
            if self._failed or self._workers < 2 or seen <= _PARALLEL_MIN_ROWS:
                return None
            try:
                self._pool = ProcessPoolExecutor(max_workers=self._workers)
            except (OSError, ValueError, NotImplementedError):
                self._failed = True
                return None
        try:
            return self._pool.submit(_verdicts, cells, *self._args)
        except (BrokenProcessPool, RuntimeError, OSError):
            self._give_up()
            return None

    def _result(
        self, payload: _T, cells: Cells, future: Future[_Verdicts] | None
    ) -> tuple[_T, _Verdicts]:
        if future is not None:
            try:
                return payload, future.result()
            except (BrokenProcessPool, OSError):
                self._give_up()
        return payload, _verdicts(cells, *self._args)

    def _give_up(self) -> None:
        self._failed = True
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _worker_count() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return min(cores, 8)
