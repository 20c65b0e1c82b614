"""Appending to a file whole or not at all: the journal's, the results CSV's and the run log's
writes (``Appender``, ``append_whole``).

A write the OS refuses part-way (no space left) is cut back off, so a file never ends in a torn
line; truncating needs no free space.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from dialer.files import open_private


class Appender:
    """A file appended to with ``os.write``, unbuffered: each ``append`` is written whole or,
    when the OS refuses part of it (no space left), cut back off, so the file never ends in a
    torn line. One writer at a time (the run lock)."""

    def __init__(self, path: Path, *, follow: bool = False) -> None:
        self.path = path
        # A new file is private (0600); never opened through a symlink unless ``follow`` (a
        # path the user named: ``--log-file``).
        self.fd = open_private(path, os.O_WRONLY | os.O_APPEND, follow=follow)
        try:
            self.size = os.fstat(self.fd).st_size
        except OSError:
            os.close(self.fd)
            raise

    def append(self, data: bytes) -> None:
        """Write ``data`` at the end; raises ``OSError`` with the file as it was before."""
        before, view = self.size, memoryview(data)
        try:
            while view:
                written = os.write(self.fd, view)
                if written <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                view = view[written:]
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, before)  # a torn line cut off: needs no free space
            raise
        self.size = before + len(data)

    def fsync(self) -> None:
        os.fsync(self.fd)

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


def append_whole(path: Path, data: bytes, *, follow: bool = False) -> None:
    """Append ``data`` to ``path`` whole or not at all (see ``Appender``); raises ``OSError``."""
    appender = Appender(path, follow=follow)
    try:
        appender.append(data)
    finally:
        appender.close()
