"""Which API a campaign's calls went to: the sandbox's simulator, or the real one.

A ``--sandbox`` run marks its campaign with ``<results>.sandbox``, a small file written (and
fsynced) under the run lock before the journal or the results CSV get a line, and never
touched again: a results file rebuilt from the journal, or a journal rebuilt from the results,
leaves it in place. A campaign made before the mark existed counts as a sandbox one when the
sandbox's call store (``<results>.sandbox-calls.jsonl``) lies beside it. Any other campaign
with a journal or a results row is a real one; a new one (nothing written yet) is either.

``check_kind`` refuses a real run on a sandbox campaign (its simulated calls would pass for
real ones: nobody dialed) and a sandbox run on a real campaign (simulated calls mixed into
real results), with one line naming the file and what to do. The ledger calls it under its
lock; the dry run, read-only, too. This module owns the mark; the ledger decides when.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from dialer.errors import ConfigError, write_failed
from dialer.files import make_folder, state_file, state_folder, sync_folder

SANDBOX = "sandbox"
REAL = "real"
_MARK_TEXT = (
    b"This campaign was run with --sandbox: its calls are simulated, nobody was called.\n"
    b"A real run refuses these results; give it its own --output.\n"
)


def mark_path(results: str | Path) -> Path:
    """``sandbox`` in the campaign's state folder: present when its calls are the sandbox's."""
    return state_file(Path(results), "sandbox")


def sandbox_store(output: str | Path) -> Path:
    """Where ``--sandbox`` keeps its simulated calls, so a later ``sync --sandbox`` finds them."""
    return state_file(Path(output), "sandbox-calls.jsonl")


def open_sandbox_store(output: str | Path) -> Path:
    """``sandbox_store`` for a ``--sandbox`` run or sync about to start its simulator: always in
    the state folder (created), a store of the layout before it moved there first (the
    simulator appends to the path it is given, so it must not move under it later)."""
    output = Path(output)
    folder = state_folder(output)
    try:
        make_folder(folder)
        old = output.with_name(output.name + ".sandbox-calls.jsonl")
        if old.exists() and not (folder / "sandbox-calls.jsonl").exists():
            os.rename(old, folder / "sandbox-calls.jsonl")
    except OSError as exc:
        raise write_failed(folder, exc, doing="prepare") from exc
    return folder / "sandbox-calls.jsonl"


def campaign_kind(results: str | Path) -> str | None:
    """``SANDBOX``, ``REAL``, or None for a campaign with nothing written yet."""
    results = Path(results)
    if mark_path(results).exists() or sandbox_store(results).exists():
        return SANDBOX
    journal = state_file(results, "journal")
    with contextlib.suppress(OSError):
        if journal.stat().st_size > 0:
            return REAL
    return REAL if _has_rows(results) else None


def _has_rows(results: Path) -> bool:
    """True when ``results`` holds anything after its header line."""
    try:
        with open(results, "rb") as handle:
            head = handle.read(1 << 16)
    except OSError:
        return False
    _, newline, rest = head.partition(b"\n")
    if not newline:
        return len(head) == 1 << 16  # a header longer than this is no header of ours
    return bool(rest.strip())


def check_kind(results: str | Path, *, sandbox: bool, sync: bool = False) -> None:
    """Refuse, with one ``ConfigError`` line (exit 2), a campaign of the other kind; ``sync``:
    for ``dialer sync`` (its advice differs: the same results, the other API)."""
    kind = campaign_kind(results)
    if sandbox and kind == REAL:
        fix = ("look their calls up without --sandbox" if sync else
               "give the sandbox run its own results file with --output (a new file)")  # fmt: skip
        raise ConfigError(
            f"{results} is a real campaign's results: --sandbox must not mix simulated calls "
            f"into them; {fix}"
        )
    if not sandbox and kind == SANDBOX:
        if sync:
            raise ConfigError(
                f"{results} holds the simulated calls of a --sandbox run, not real ones: the "
                "real API does not know them; look them up with 'dialer sync --sandbox'"
            )
        raise ConfigError(
            f"{results} holds the simulated calls of a --sandbox run, not real ones: a real "
            "run would take those leads as done and call nobody; give the real run its own "
            "results file with --output (a new file); the sandbox's stay as they are"
        )


def mark_sandbox(results: str | Path, *, durable: bool = True) -> None:
    """Mark ``results``'s campaign as a sandbox one (once; a mark already there stays).
    Raises ``LedgerError`` when it cannot be written: the run must not go on unmarked."""
    path = mark_path(results)
    if path.exists():
        return
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            os.write(fd, _MARK_TEXT)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        if durable:
            sync_folder(path.parent)
    except FileExistsError:
        return
    except OSError as exc:
        with contextlib.suppress(OSError):
            path.unlink()
        raise write_failed(path, exc, doing="mark the sandbox campaign in") from exc
