"""Derived files that only save time, never the source of truth: the parse cache and the snapshot.

Owns three files in the campaign's state folder (``leads.results.csv.dialer/`` beside the
results CSV ``leads.results.csv``: ``files.state_file``), each written only under the run
lock, atomically (temp file, fsync, rename, fsync of the directory), with a SHA-256 of its
payload; any doubt about one (a checksum, a key, a size, a format) and it is ignored, never
trusted, and the slow path runs instead. Deleting any of them at any time is safe.

* ``leads-cache``  the leads file as the loader parsed it (``LeadRows.dump``),
  keyed by a SHA-256 of everything the parse depends on (``leads_key``): the leads file's bytes,
  the do-not-call file's bytes, the column mapping, region, encoding, delimiter, sheet,
  ``allow_possible``, the phonenumbers version and the source of the parsing modules.
* ``state``        the ledger's replayed state (``EntryTable``) as of a journal
  prefix and a results-file prefix, each named by its length and SHA-256. It is used only while
  both files still begin with exactly those bytes; then only what follows is replayed.
* ``leads-mark``   which leads file (its parse cache key) the ledger was last
  compared with (``dialer.store.edits``), and what that left to say, as of the journal and results
  files' sizes and last 64 KiB at the close. While nothing has touched them since and the file
  is the same, a run need not compare a million leads again.

The table the snapshot holds, and the ledger's view over it, are ``dialer.store.state``'s.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import sys
from collections.abc import (
    Sequence,
)
from pathlib import Path
from typing import Any

from dialer.files import atomic_file, make_folder, state_file
from dialer.leads.leadrows import LeadRows
from dialer.leads.loader import LoadResult
from dialer.store.journal import from_record
from dialer.store.results import Entry
from dialer.store.state import EntryTable

_MAGIC = b"dialer-cache 1\n"
# The code a parse depends on: a change to any of it makes every cache stale.
# The parsing code, relative to the ``dialer`` package: a change to any of it re-parses.
_SOURCES = ("leads/__init__.py", "leads/loader.py", "leads/columns.py", "leads/headers.py",
            "leads/phonecolumns.py", "leads/phonepool.py", "leads/leadrows.py",
            "leads/phones.py", "leads/sheets.py", "leads/table.py", "leads/workbook.py",
            "model.py", "campaign.py")  # fmt: skip


def leads_cache_path(results: Path) -> Path:
    return state_file(results, "leads-cache")


def state_path(results: Path) -> Path:
    return state_file(results, "state")


def leads_mark_path(results: Path) -> Path:
    return state_file(results, "leads-mark")


# --- the file: a header, parts, a checksum ---------------------------------------------------


def write_parts(
    path: Path, header: dict[str, Any], parts: Sequence[bytes | bytearray | memoryview],
    durable: bool,
) -> None:  # fmt: skip
    """Write ``parts`` (byte buffers) under a JSON ``header``, atomically. Raises ``OSError``."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    sizes = [memoryview(part).nbytes for part in parts]
    head = {**header, "sizes": sizes, "sha256": digest.hexdigest()}
    with atomic_file(path, "wb", durable=durable) as handle:
        handle.write(_MAGIC + json.dumps(head, ensure_ascii=False).encode() + b"\n")
        for part in parts:
            handle.write(part)


def read_parts(path: Path) -> tuple[dict[str, Any], list[bytearray]] | None:
    """The header and parts ``write_parts`` wrote, or None (missing, damaged, another format).
    Each part is read into a buffer of its own (no copy of the whole file is ever held)."""
    try:
        with open(path, "rb") as handle:
            if handle.read(len(_MAGIC)) != _MAGIC:
                return None
            try:
                header = json.loads(handle.readline())
                sizes = [int(size) for size in header["sizes"]]
            except (ValueError, TypeError, KeyError):
                return None
            if any(size < 0 for size in sizes) or sum(sizes) > os.fstat(handle.fileno()).st_size:
                return None
            digest, parts = hashlib.sha256(), []
            for size in sizes:
                part = bytearray(size)
                if handle.readinto(part) != size:
                    return None
                digest.update(part)
                parts.append(part)
            if handle.read(1) or digest.hexdigest() != header.get("sha256"):
                return None
    except (OSError, ValueError):
        return None
    return header, parts


def file_digest(path: Path, size: int | None = None) -> str:
    """SHA-256 of the first ``size`` bytes of ``path`` (all of it by default)."""
    digest = hashlib.sha256()
    left = size
    with open(path, "rb") as handle:
        while left is None or left > 0:
            block = handle.read(1 << 20 if left is None else min(1 << 20, left))
            if not block:
                break
            digest.update(block)
            if left is not None:
                left -= len(block)
    if left:
        raise OSError(f"{path} is shorter than {size} bytes")
    return digest.hexdigest()


def release_freed_memory() -> None:
    """Hand the memory freed so far back to the system. After a big file was read, parsed and
    dropped, glibc keeps the freed heap pages mapped and a million-lead run's peak stacks on
    top of them; ``malloc_trim`` returns them. A no-op where the C library has no such call."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


# --- the parse cache's key ---------------------------------------------------------------------


def leads_key(leads: Path, dnc: Path | None, options: dict[str, Any]) -> str | None:
    """A SHA-256 naming one parse: the files' bytes, the options, the parsing code and the
    phonenumbers version. None when a file cannot be read (the loader then says why)."""
    import phonenumbers

    here = Path(__file__).parents[1]  # the dialer package
    try:
        parts = {
            "leads": file_digest(leads),
            "dnc": file_digest(dnc) if dnc is not None else None,
            "code": [file_digest(here / name) for name in _SOURCES],
        }
    except OSError:
        return None
    parts |= {
        "options": options,
        "phonenumbers": phonenumbers.__version__,
        "python": list(sys.version_info[:2]),
        "byteorder": sys.byteorder,
    }
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def read_leads_cache(results: Path, key: str, leads: Path) -> LoadResult | None:
    """The load the parse cache holds for ``key``, or None."""
    found = read_parts(leads_cache_path(results))
    if found is None:
        return None
    header, parts = found
    try:
        if header.get("kind") != "leads" or header.get("key") != key:
            return None
        info = header["load"]
        return LoadResult(path=leads, leads=LeadRows.restore(parts), cache_key=key,
                          from_cache=True, **info)  # fmt: skip
    except (ValueError, TypeError, KeyError):
        return None


def read_previous_leads(results: Path) -> LeadRows | None:
    """The leads as the last run read them, whatever their key (``dialer.store.edits`` compares a
    changed file with them), or None. Read it before ``save_leads_cache`` replaces it."""
    found = read_parts(leads_cache_path(results))
    if found is None or found[0].get("kind") != "leads":
        return None
    try:
        return LeadRows.restore(found[1])
    except (ValueError, TypeError, KeyError):
        return None


def save_leads_cache(results: Path, loaded: LoadResult, *, durable: bool = True) -> None:
    """Keep ``loaded`` for the next run (under the run lock); any trouble only costs time."""
    if loaded.from_cache or not loaded.cache_key or not isinstance(loaded.leads, LeadRows):
        return
    info = {name: getattr(loaded, name) for name in ("phone_column", "param_names", "encoding",
            "delimiter", "warnings", "id_column", "sheet", "phone_columns", "country_column",
            "countries")}  # fmt: skip
    header = {"kind": "leads", "key": loaded.cache_key, "load": info}
    try:
        make_folder(leads_cache_path(results).parent)
        write_parts(leads_cache_path(results), header, loaded.leads.dump(), durable)
    except OSError:  # a full disk, say: no cache, and the stale one goes (it saves nothing)
        with contextlib.suppress(OSError):
            leads_cache_path(results).unlink()


# --- the leads mark --------------------------------------------------------------------------


def _ends(*paths: Path) -> list[list[Any]]:
    """Each file's size and the SHA-256 of its last 64 KiB: any append or rewrite changes it."""
    found = []
    for path in paths:
        with open(path, "rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - 65536))
            found.append([size, hashlib.sha256(handle.read()).hexdigest()])
    return found


def write_leads_mark(results: Path, journal: Path, mark: dict[str, Any], durable: bool) -> None:
    """Keep ``mark`` as true of the journal and the results as they are now (under the run
    lock, once both are closed); any trouble only costs the next run a full comparison."""
    with contextlib.suppress(OSError):
        header = {**mark, "kind": "leads-mark", "files": _ends(journal, results)}
        write_parts(leads_mark_path(results), header, [], durable)


def read_leads_mark(results: Path, journal: Path) -> dict[str, Any] | None:
    """The mark ``write_leads_mark`` left, if the journal and the results are still exactly as
    they were then; else None."""
    found = read_parts(leads_mark_path(results))
    try:
        if found is None or found[0].get("kind") != "leads-mark":
            return None
        return found[0] if found[0].get("files") == _ends(journal, results) else None
    except OSError:
        return None


# --- the ledger's state, over the snapshot -------------------------------------------------


def read_snapshot(
    results: Path, journal: Path
) -> tuple[EntryTable, dict[str, Entry], int, int] | None:
    """(table, load-time rows, journal bytes, results bytes) of the snapshot, if both files
    still begin with the very bytes it was taken from; else None (replay everything)."""
    found = read_parts(state_path(results))
    if found is None:
        return None
    header, parts = found
    try:
        if header.get("kind") != "ledger-state":
            return None
        (journal_size, journal_sha), (results_size, results_sha) = (
            header["journal"], header["results"])  # fmt: skip
        for path, size, sha in ((journal, journal_size, journal_sha),
                                (results, results_size, results_sha)):  # fmt: skip
            if size and file_digest(path, int(size)) != sha:
                return None
        table = EntryTable.restore(header, parts)
        loads = {}
        for record in header["loads"]:
            entry = from_record(record)
            loads[entry.key] = entry
        return table, loads, int(journal_size), int(results_size)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def snapshot_mark(results: Path) -> tuple[int, str] | None:
    """``(size, sha256)`` of the results file as the last close left it (the snapshot names
    it), or None without a usable snapshot: a file that no longer begins with those bytes was
    changed by another program."""
    found = read_parts(state_path(results))
    try:
        size, sha = found[0]["results"] if found is not None else (None, None)
        return (int(size), str(sha)) if size is not None else None
    except (TypeError, ValueError, KeyError):
        return None
