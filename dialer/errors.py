"""The dialer's one error family: every failure the library raises is a ``DialerError``.

The tree, grouped by what the user or the dialer must do next::

    DialerError                         exit 1: a bug or an unexpected state
    ├── InputError                      exit 2: the input cannot be used; nothing was dialed
    │   ├── ConfigError                 a flag, the campaign file, or the environment (token, URL)
    │   ├── LeadsFileError              the leads file is missing, empty or unreadable
    │   └── ColumnError                 no phone column, several candidates, an unknown column
    ├── SendError                       one request did not end in a call we know the id of
    │   ├── NotSent                     provably no call was created: retrying is safe
    │   │   ├── RateLimited             429: the API asks us to slow down (``retry_after``)
    │   │   └── Unreachable             lead after lead never got through: the run stops (exit 7)
    │   ├── Rejected                    the API answered and refused this call: final for the lead
    │   │   └── AuthError               401/403: the token is bad; the whole run stops (exit 3)
    │   └── OutcomeUnknown              sent, but the answer was lost: the phone may have rung
    ├── LedgerError                     exit 4: the results or journal cannot be trusted or written
    │   └── LedgerLocked                exit 5: another run holds this campaign's lock
    └── Stopped                         exit 130: a signal stopped the run early

``client`` is the only place that turns httpx exceptions into this tree. A message is always one
line (white space is folded); the CLI prints it on stderr and exits with ``exit_code``. Messages
never carry the token.
"""

from __future__ import annotations

import errno
from pathlib import Path

# Documented exit codes (README "Exit codes" lists the same table).
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_INPUT = 2
EXIT_AUTH = 3
EXIT_LEDGER = 4
EXIT_LOCKED = 5
EXIT_IN_DOUBT = 6
EXIT_UNREACHABLE = 7
EXIT_STOPPED = 130


class DialerError(Exception):
    """Base of every error the dialer raises on purpose."""

    exit_code: int = EXIT_INTERNAL

    def __init__(self, message: str) -> None:
        message = " ".join(message.split())  # one line, whatever a file's cells held
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --- input errors: the user fixes a file, a flag or the environment -------------------------


class InputError(DialerError):
    """The input cannot be used as given; nothing was dialed."""

    exit_code = EXIT_INPUT


class ConfigError(InputError):
    """A flag, the campaign file or an environment variable has a bad or missing value."""


class LeadsFileError(InputError):
    """The leads file is missing, empty or cannot be read."""


class ColumnError(InputError):
    """The leads file's columns do not map: no phone column, several, or an unknown name."""


# --- send errors, by phase --------------------------------------------------------------------


class SendError(DialerError):
    """A ``POST /call`` that did not end with a known call id."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class NotSent(SendError):
    """No call was created, provably (nothing reached the API, or it refused before creating)."""


class RateLimited(NotSent):
    """429: the API refused the request for its rate limit; ``retry_after`` in seconds if given."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, status=429, code="rate_limited")
        self.retry_after = retry_after


class Unreachable(NotSent):
    """Several leads in a row were not sent after every retry: the run stops; nothing rang."""

    exit_code = EXIT_UNREACHABLE


class Rejected(SendError):
    """The API answered with a refusal (4xx): this lead's call was not created and will not be."""


class AuthError(Rejected):
    """401/403: the token is missing, wrong or not allowed. Stops the whole run."""

    exit_code = EXIT_AUTH


class OutcomeUnknown(SendError):
    """The request may have reached the API but its answer was lost: the phone may have rung."""


# --- ledger errors ----------------------------------------------------------------------------


class LedgerError(DialerError):
    """The results file or journal cannot be read, trusted or written."""

    exit_code = EXIT_LEDGER


class LedgerLocked(LedgerError):
    """Another run holds the lock on this campaign's results."""

    exit_code = EXIT_LOCKED


def write_failed(path: str | Path, exc: OSError, *, doing: str = "write") -> LedgerError:
    """The one line for a campaign file the OS would not let us write (a full disk, a quota,
    a read-only or failing disk): the file, the cause in words, and safe advice. Rerunning is
    safe: every intent was made durable before its ``POST``, and a call whose outcome could
    not be written is looked up (``GET /calls``), never dialed again blindly."""
    cause = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free some space"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = "make it writable"
    elif exc.errno == errno.ELOOP:  # opened with O_NOFOLLOW: never written through a symlink
        cause, fix = "it is a symbolic link, which the dialer never writes through", "remove it"
    else:
        fix = "check the disk"
    return LedgerError(
        f"cannot {doing} {path}: {cause}: {fix} and run the same command again; "
        "nobody is dialed twice (calls that may have started are looked up first)"
    )


class Stopped(DialerError):
    """A signal (Ctrl-C, SIGTERM) stopped the run before every lead was tried."""

    exit_code = EXIT_STOPPED
