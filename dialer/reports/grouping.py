"""Which group each lead of a campaign is in, for ``dialer report RESULTS --by COLUMN``.

Owns finding COLUMN and reading its value for every lead: a column of the results file (``status``,
``phone_column``, ``version_id``, ``language``... read from the ledger's entry, or from the results
CSV's own cells for a column the entry does not carry), else a column of the leads file the
campaign last ran on (``program_of_interest``...), which the run log (``runs.jsonl`` in the state
folder) names with the settings it was read with. A lead is matched to its leads-file row by the
row number the ledger holds (the last run kept it in step with the file). A column found in
neither is one line naming the columns there are. Reads only; never locks or writes.
"""

from __future__ import annotations

import csv
import enum
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from dialer.errors import ConfigError, DialerError
from dialer.leads.sheets import open_sheet
from dialer.model import Status, ledger_key
from dialer.reports.compare import Comparison, compare, parse_success
from dialer.store.cache import file_digest
from dialer.store.ledger import read_runs, read_state
from dialer.store.results import RESULT_COLUMNS, Entry, require_results

_ENTRY_FIELDS = frozenset(f.name for f in fields(Entry)) | {"calls"}
_STATUS = {status.value: status for status in Status}
SHOWN_COLUMNS = 40  # columns listed in the one-line error at most


def load_comparison(results: str | Path, column: str) -> Comparison:
    """``compare`` the leads of the results file ``results`` grouped by ``column``.
    ``ConfigError`` (one line) when no such column is in the results nor the leads file."""
    results = require_results(results)
    state = read_state(results)
    header, cells = _results_cells(results)
    success = None
    if "success" in header:
        said = {k: parse_success(row.get("success", "")) for k, row in cells.items()}
        success = {k: v for k, v in said.items() if v is not None}
    found = _match(column, [*RESULT_COLUMNS, *(h for h in header if h not in RESULT_COLUMNS)])
    if found is not None:
        pairs = [(_entry_value(e, found, cells), e) for e in state.values()]
        return compare(found, pairs, source=results.name, success=success)
    leads, settings, digest = _leads_file(results)
    where = (
        f"--by {column}: not a column of {results.name} ({_listing([*RESULT_COLUMNS, *header])})"
    )
    if leads is None:
        raise ConfigError(f"{where}, and no run recorded which leads file the campaign used")
    if not leads.is_file():
        raise ConfigError(f"{where}, and {leads}, the leads file it ran on, is not there")
    try:
        with open_sheet(leads, encoding=settings.get("encoding"),
                        delimiter=settings.get("delimiter"), sheet=settings.get("sheet"),
                        header_row=settings.get("header_row")) as sheet:  # fmt: skip
            names = [str(h).strip() for h in sheet.header]
            found = _match(column, names)
            if found is None:
                raise ConfigError(f"{where} nor of {leads.name} ({_listing(names)})")
            wanted = {e.row for e in state.values() if e.call_id or e.history}
            by_row = dict(_column_cells(sheet.chunks, names.index(found), wanted))
    except DialerError:
        raise
    except OSError as exc:
        raise ConfigError(f"--by {column}: cannot read {leads}: {exc.strerror or exc}") from exc
    notes = []
    if digest and _digest(leads) != digest:
        notes.append(f"{leads.name} changed since the last run: its rows are matched to leads "
                     "by the row numbers that run gave them")  # fmt: skip
    pairs = [(by_row.get(e.row, ""), e) for e in state.values()]
    return compare(found, pairs, source=leads.name, success=success, notes=notes)


def _match(column: str, names: list[str]) -> str | None:
    """``column`` as named in ``names``: exactly, else ignoring case and outer spaces."""
    if column in names:
        return column
    folded = column.strip().casefold()
    return next((n for n in names if n.strip().casefold() == folded), None)


def _entry_value(entry: Entry, column: str, cells: dict[str, dict[str, str]]) -> str:
    if column in _ENTRY_FIELDS:
        value: Any = getattr(entry, column)
        if isinstance(value, enum.Enum):
            value = value.value
        return "" if column == "calls" and not value else str(value)
    return cells.get(entry.key, {}).get(column, "")


def _results_cells(results: Path) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The results CSV's header and each lead's cells by ledger key (the last row wins); a file
    that cannot be read gives none (the ledger's entries still carry every standard column)."""
    cells: dict[str, dict[str, str]] = {}
    try:
        with open(results, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            for row in reader:
                named = dict(zip(header, row, strict=False))
                status = _STATUS.get(named.get("status", ""))
                if status is None or not named.get("row", "").isdigit():
                    continue
                cells[ledger_key(int(named["row"]), named.get("phone", ""), status)] = named
    except (OSError, UnicodeDecodeError, csv.Error):
        return list(RESULT_COLUMNS), {}
    return header, cells


def _leads_file(results: Path) -> tuple[Path | None, dict[str, Any], str]:
    """The leads file of the campaign's last run, the settings it was read with and its
    SHA-256 then; a relative path is looked for from here, then beside the results."""
    runs = [r for r in read_runs(results) if r.get("leads_file")]
    if not runs:
        return None, {}, ""
    last = runs[-1]
    path = Path(last["leads_file"])
    if not path.is_absolute() and not path.is_file():
        beside = results.parent / path.name
        path = beside if beside.is_file() else path
    return path, dict(last.get("settings") or {}), str(last.get("leads_sha256") or "")


def _digest(path: Path) -> str:
    try:
        return file_digest(path)
    except OSError:
        return ""


def _column_cells(
    chunks: Iterator[tuple[int, list[list[str]]]], index: int, rows: set[int]
) -> Iterator[tuple[int, str]]:
    """``(row number, cell)`` of column ``index`` for the rows in ``rows``."""
    for first, chunk in chunks:
        for offset, cells in enumerate(chunk):
            if first + offset in rows:
                yield first + offset, str(cells[index]).strip() if index < len(cells) else ""


def _listing(names: list[str]) -> str:
    unique = list(dict.fromkeys(n for n in names if n))
    shown = ", ".join(unique[:SHOWN_COLUMNS])
    return shown + (f", ... ({len(unique) - SHOWN_COLUMNS} more)" if len(unique) > SHOWN_COLUMNS
                    else "")  # fmt: skip
