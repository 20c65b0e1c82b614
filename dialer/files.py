"""Files the dialer writes: private to their owner, never written through a planted symlink.

Owns how every file and folder the dialer creates comes to exist (the results CSV, the journal,
the snapshot, the parse cache and leads mark, the run log, the lock and its note, ``--rejects``,
``--log-file``, the HTML report):

* a new file is ``0600`` and a new folder ``0700`` (readable by the owner only), whatever the
  umask; a file the user already has keeps the mode they gave it, also across an atomic rewrite;
* a file is opened with ``O_NOFOLLOW``: a symlink planted at a name the dialer writes makes the
  write fail instead of overwriting the file it points to;
* an atomic rewrite goes through a temp file with an unpredictable name in the same folder
  (``tempfile.mkstemp``: created exclusively, so never through a symlink), renamed over the
  target (a symlink at the target is replaced, not followed);
* an output path that names one of the command's inputs is refused before anything is written.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from dialer.errors import ConfigError

PRIVATE_FILE = 0o600
PRIVATE_FOLDER = 0o700
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


# Everything a campaign keeps besides its results CSV lives in one folder beside it:
# ``leads.results.csv`` and ``leads.results.csv.dialer/``. These are the names inside it; a
# campaign from before that folder kept each as ``<results>.<name>`` beside the results.
STATE_FOLDER_SUFFIX = ".dialer"
STATE_NAMES = ("journal", "state", "leads-cache", "leads-mark", "runs.jsonl", "lock",
               "lock.info", "sandbox", "sandbox-calls.jsonl")  # fmt: skip


def state_folder(results: Path) -> Path:
    """The campaign's state folder: ``<results>.dialer`` beside the results CSV."""
    return results.with_name(results.name + STATE_FOLDER_SUFFIX)


def state_file(results: Path, name: str) -> Path:
    """The campaign file ``name`` (one of ``STATE_NAMES``) in its state folder; for a campaign
    in the layout before that folder, not opened by a run since, the file beside the results,
    where it still is (read-only commands read it there; a run moves it first)."""
    folder = state_folder(results)
    if not folder.is_dir():
        old = results.with_name(f"{results.name}.{name}")
        if os.path.lexists(old):
            return old
    return folder / name


def move_into_state_folder(results: Path) -> list[str]:
    """Move the campaign's files from beside ``results`` (the layout before the state folder)
    into its state folder, which is created; returns the names moved. A name already in the
    folder is left where it is. The caller holds the campaign's lock. Raises ``OSError``."""
    folder = state_folder(results)
    make_folder(folder)
    moved = []
    for name in STATE_NAMES:
        old = results.with_name(f"{results.name}.{name}")
        if name == "lock" or not os.path.lexists(old) or os.path.lexists(folder / name):
            continue
        os.rename(old, folder / name)
        moved.append(name)
    if moved:
        sync_folder(folder)
        sync_folder(results.parent)
    return moved


def make_folder(path: Path) -> None:
    """Create ``path`` and any missing parent, each ``0700``; an existing one is left as is."""
    missing = []
    for folder in (path, *path.parents):
        if folder.is_dir():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir(PRIVATE_FOLDER)
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue
        os.chmod(folder, PRIVATE_FOLDER)  # the umask could have taken the owner's bits


def open_private(path: str | Path, flags: int, *, follow: bool = False) -> int:
    """``os.open`` of ``path`` for writing, created ``0600`` when missing (an existing file keeps
    its mode), never through a symlink (``OSError`` ELOOP instead) unless ``follow`` (a path
    the user named, such as ``--log-file /dev/stdout``). Returns the descriptor."""
    flags |= _CLOEXEC | (0 if follow else _NOFOLLOW)
    for _ in range(10):  # a file removed between the two opens: try again
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
        except FileExistsError:
            try:
                return os.open(path, flags & ~os.O_CREAT)
            except FileNotFoundError:
                continue
        try:
            os.fchmod(fd, PRIVATE_FILE)  # the umask could have taken the owner's bits
        except OSError:
            os.close(fd)
            raise
        return fd
    return os.open(path, flags, PRIVATE_FILE)


def truncate_file(path: str | Path, size: int) -> None:
    """Cut the file at ``path`` to ``size`` bytes, never through a symlink (ELOOP instead)."""
    fd = os.open(path, os.O_WRONLY | _NOFOLLOW | _CLOEXEC)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)


def file_mode(path: Path) -> int | None:
    """The permission bits of the regular file at ``path`` (not through a symlink), or None."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return stat.S_IMODE(info.st_mode) if stat.S_ISREG(info.st_mode) else None


def temp_path_pattern(path: Path) -> str:
    """A glob for the temp files ``atomic_file`` makes for ``path`` (beside it)."""
    return f"{path.name}.*.tmp"


@contextmanager
def atomic_file(
    path: Path, mode: str, *, durable: bool = True, keep_mode: int | None = None, **options: Any
) -> Iterator[IO[Any]]:
    """A file written whole or not at all: a temp file beside ``path`` with an unpredictable
    name, then (``durable``: fsync,) rename over ``path`` (and fsync of its folder). On failure
    the temp file goes. The file gets the mode of the one it replaces (or ``keep_mode``), else
    ``0600``."""
    path = Path(path)
    with contextlib.suppress(FileNotFoundError):
        kind = os.lstat(path).st_mode
        if not (stat.S_ISREG(kind) or stat.S_ISLNK(kind)):  # a folder, a device, a pipe
            raise OSError(errno.EEXIST, "it exists and is not a regular file", str(path))
    wanted = keep_mode if keep_mode is not None else file_mode(path)
    fd, name = tempfile.mkstemp(prefix=f"{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        try:
            os.fchmod(fd, PRIVATE_FILE if wanted is None else wanted)
            handle = os.fdopen(fd, mode, **options)
        except BaseException:
            os.close(fd)
            raise
        with handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if durable:
        sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """Make a folder's entries (a file created or renamed in it) durable. Raises ``OSError``."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def output_file(path: str | Path, **options: Any) -> Iterator[IO[Any]]:
    """A file the user named (``--rejects``, ``--html``), opened for text writing: a device or a
    pipe (``/dev/stdout``) is written straight into; any other path whole or not at all
    (``atomic_file``, not durable: it is derived and can be written again)."""
    path = Path(path)
    try:
        special = not stat.S_ISREG(os.stat(path).st_mode) and not path.is_dir()
    except OSError:
        special = False
    if special:
        with open(path, "w", **options) as handle:
            yield handle
        return
    with atomic_file(path, "w", durable=False, **options) as handle:
        yield handle


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when ``a`` and ``b`` name one file: the same inode when both exist (a hard link or
    a symlink included), else the same resolved path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        pass
    with contextlib.suppress(OSError, RuntimeError):
        return Path(a).resolve() == Path(b).resolve()
    return False


def refuse_overwriting_inputs(
    outputs: Mapping[str, str | Path | None], inputs: Mapping[str, str | Path | None]
) -> None:
    """``ConfigError`` when an output path (flag -> path) names one of the ``inputs``
    (what it is -> path), before anything is written."""
    for flag, output in outputs.items():
        if not output:
            continue
        for what, source in inputs.items():
            if source and same_file(output, source):
                raise ConfigError(
                    f"{flag} {output} is the {what}: writing it would destroy it; choose "
                    "another file (nothing was written)"
                )


class RunLock:
    """An OS lock (``flock``) on a private file that is never deleted, taken without waiting:
    the kernel releases it when the holder dies, even by SIGKILL. The file is opened without
    following a symlink and never truncated."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1

    @property
    def is_locked(self) -> bool:
        return self._fd >= 0

    def acquire(self) -> bool:
        """Take the lock: True, or False when another process holds it; ``OSError`` else."""
        if self._fd >= 0:
            return True
        fd = open_private(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                return False
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
