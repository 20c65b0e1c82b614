"""The account's rate budget on this machine: one record of recent requests per API address and
token, shared by every dialer process (``run``, ``sync``, ``--sync``, the look-ups).

The API's limits are per account, so the windows must count every process's requests. Each
account has one file in a per-user folder (``state_folder()``: ``$XDG_STATE_HOME/dialer``,
else ``~/.local/state/dialer``; folder ``0700``, file ``0600``), named by a fingerprint of the
API address and the token (a cut sha256: never the token), ``<key>.json``: the recent sends
(allowed at, answered at or ``null`` while in flight, campaign, pid, ticket) and the running
campaigns (id = the results path, pid, share, last seen, and ``ready``: when it will next ask
for a send, while it has leads waiting). Each request is one short read-modify-write of it
under a blocking ``flock`` of the file, written back in place (a temp file and a rename cost
a few milliseconds on some file systems; the record is a minute's worth, not worth an fsync).
``dialer status`` reads it without the lock; a torn read shows as an empty record.

A send in flight counts as *now* in every window, an answered one at its answer's time.
Entries of dead processes and sends older than the longest window (in flight: plus the request
timeout) are dropped; a dead process's send still in flight counts from the moment its death is
noticed, since the server may have seen it arrive just then.

Fair sharing, work-conserving: when every window has room, a campaign takes the send unless
another campaign that is ready to send right now has used less of the last minute for its
share (``(sent + 1) / share`` compared): campaigns waiting together share the budget in
proportion to their shares, and a campaign with nothing waiting holds no share.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dialer.files import make_folder, open_private

POLL = 0.02  # seconds before a look again, while sends in flight or a fair turn hold us back
STALE = 1.0  # a campaign that said it would be back and was not, this long ago, is not waiting
KEEP = 61.0  # seconds an answered send stays in the record (the longest window, and a margin)
SHARED_UP_TO = 1000  # limits above this per window are lifted: the budget stays this process's


def state_folder(environ: Mapping[str, str] | None = None) -> Path:
    """Where the per-user records live: ``$XDG_STATE_HOME/dialer``, else
    ``~/.local/state/dialer`` (the XDG base directory specification)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_STATE_HOME", "")
    if not base or not os.path.isabs(base):
        base = os.path.join(env.get("HOME") or os.path.expanduser("~"), ".local", "state")
    return Path(base) / "dialer"


def account_key(api_url: str, token: str) -> str:
    """The record's name: a fingerprint of the API address and the token, never the token."""
    digest = hashlib.sha256(f"{api_url.rstrip('/')}\n{token}".encode()).hexdigest()
    return digest[:24]


def alive(pid: int) -> bool:
    """True when a process ``pid`` exists (ours, since the folder is ours)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Running:
    """A campaign running on the account, as the record shows it."""

    campaign: str
    pid: int
    share: float


class AccountBudget:
    """This process's handle on the account's shared record (see the module's docstring)."""

    def __init__(
        self,
        folder: Path,
        api_url: str,
        token: str,
        *,
        campaign: str,
        share: float = 1.0,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        pid: int | None = None,
        is_alive: Callable[[int], bool] = alive,
    ) -> None:
        if not share > 0:
            raise ValueError("share must be a positive number")
        self.folder = Path(folder)
        key = account_key(api_url, token)
        self.path = self.folder / f"{key}.json"
        self.campaign, self.share, self.timeout = campaign, float(share), timeout
        self.clock, self.is_alive = clock, is_alive
        self.pid = os.getpid() if pid is None else pid
        self.others_seen: set[str] = set()  # other campaigns seen running during this run
        self._fd = -1
        self._tickets = 0

    # --- the record, under the lock --------------------------------------------------------

    @contextlib.contextmanager
    def _record(self) -> Iterator[dict[str, Any]]:
        """The record, read and written back in place under an exclusive ``flock`` of its file
        (a rename per request would cost more than the rest: see the module's docstring)."""
        if self._fd < 0:
            make_folder(self.folder)
            self._fd = open_private(self.path, os.O_RDWR)
        fd = self._fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            state = parse_record(os.pread(fd, max(os.fstat(fd).st_size, 1), 0))
            yield state
            data = json.dumps(state, separators=(",", ":")).encode()
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _prune(self, state: dict[str, Any], now: float) -> dict[str, Any]:
        campaigns = state["campaigns"]
        for cid in [c for c, info in campaigns.items() if not self.is_alive(int(info["pid"]))]:
            del campaigns[cid]
        kept = []
        for send in state["sends"]:
            at, done, cid, pid = send[0], send[1], send[2], int(send[3])
            if done is None and pid != self.pid and not self.is_alive(pid):
                send[1] = done = now  # its process died: it may have arrived just now
            if done is None:
                timeout = float(campaigns.get(cid, {}).get("timeout", self.timeout))
                if at >= now - KEEP - timeout:
                    kept.append(send)
            elif done >= now - KEEP:
                kept.append(send)
        state["sends"] = kept
        me = campaigns.setdefault(self.campaign, {})
        me.update(pid=self.pid, share=self.share, seen=now, timeout=self.timeout)
        me.setdefault("ready", None)
        self.others_seen.update(c for c in campaigns if c != self.campaign)
        return me

    # --- what the limiter asks ----------------------------------------------------------------

    def register(self) -> None:
        """Enter the campaign in the record (it shows in ``dialer status`` from now on)."""
        with self._record() as state:
            self._prune(state, self.clock())

    def unregister(self) -> None:
        """Leave the record: the campaign's share is freed at once (its sends still count)."""
        with self._record() as state:
            self._prune(state, self.clock())
            state["campaigns"].pop(self.campaign, None)
        self.close()

    def take(
        self,
        windows: Sequence[tuple[int, float]],
        *,
        more: bool,
        in_flight: bool = True,
        then: Callable[[], float] | None = None,
    ) -> str | float:
        """One send now, if the account's windows have room and it is this campaign's fair
        turn: its ticket (for ``answered``). Else the seconds to wait before asking again.
        ``more``: this process has more sends waiting after this one, which its own limits
        let go ``then()`` seconds from now (others are not held back for it meanwhile)."""
        now = self.clock()
        with self._record() as state:
            me = self._prune(state, now)
            sends = state["sends"]
            times = sorted(now if s[1] is None else s[1] for s in sends)
            wait = float(state.get("paused_until") or 0.0) - now  # a 429 pauses the account
            for limit, period in windows:
                inside = times[_first_inside(times, now - period) :]
                if len(inside) >= limit:
                    leaving = inside[len(inside) - limit]
                    wait = max(wait, POLL if leaving >= now else leaving + period - now)
            if wait <= 0 and self._behind_someone(state, now, max(p for _, p in windows)):
                wait = POLL
            if wait > 0:
                me["ready"] = now + wait
                return wait
            self._tickets += 1
            ticket = f"{self.pid}.{self._tickets}"
            sends.append([now, None if in_flight else now, self.campaign, self.pid, ticket])
            me["ready"] = (now + (then() if then else 0.0)) if more else None
            return ticket

    def _behind_someone(self, state: dict[str, Any], now: float, span: float) -> bool:
        """True when another campaign ready to send now has used less of the last ``span``
        seconds for its share than this one would after one more send."""
        campaigns = state["campaigns"]
        waiting = {
            cid: float(info.get("share") or 1.0)
            for cid, info in campaigns.items()
            if cid != self.campaign
            and info.get("ready") is not None
            and now - STALE <= float(info["ready"]) <= now + POLL
        }
        if not waiting:
            return False
        used: Counter[str] = Counter(
            s[2] for s in state["sends"] if (now if s[1] is None else s[1]) > now - span
        )
        mine = (used[self.campaign] + 1) / self.share
        return any((used[cid] + 1) / share < mine for cid, share in waiting.items())

    def answered(self, ticket: str) -> None:
        """The send of ``ticket`` got its answer (or was given up): it counts from now."""
        now = self.clock()
        with self._record() as state:
            self._prune(state, now)
            for send in state["sends"]:
                if send[4] == ticket and send[1] is None:
                    send[1] = max(now, send[0])
                    break

    def pause_for(self, seconds: float) -> None:
        """A 429 asked to wait ``seconds``: every campaign on the account waits (never shortens)."""
        now = self.clock()
        with self._record() as state:
            self._prune(state, now)
            state["paused_until"] = max(float(state.get("paused_until") or 0.0), now + seconds)

    def idle(self) -> None:
        """Nothing of this campaign waits for a send any more: it holds no share."""
        with self._record() as state:
            self._prune(state, self.clock())["ready"] = None


def parse_record(data: bytes) -> dict[str, Any]:
    """The record in ``data`` (an empty one when missing or unreadable). Only the first JSON
    value counts: a writer killed between writing and cutting the file leaves a whole new
    record followed by the old one's tail."""
    try:
        state, _ = json.JSONDecoder().raw_decode(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        state = None
    if not isinstance(state, dict):
        state = {}
    if not isinstance(state.get("campaigns"), dict):
        state["campaigns"] = {}
    if not isinstance(state.get("sends"), list):
        state["sends"] = []
    return state


def read_record(path: Path) -> dict[str, Any]:
    """The record at ``path``, read without the lock (an empty one when missing or torn)."""
    try:
        with open(path, "rb") as handle:
            return parse_record(handle.read())
    except OSError:
        return parse_record(b"")


def running_campaigns(
    folder: Path, api_url: str, token: str, *, is_alive: Callable[[int], bool] = alive
) -> list[Running]:
    """The campaigns running on this account on this machine, read without taking the lock
    and without writing (``dialer status``)."""
    state = read_record(Path(folder) / f"{account_key(api_url, token)}.json")
    found = []
    for cid, info in state["campaigns"].items():
        with contextlib.suppress(KeyError, TypeError, ValueError):
            pid, share = int(info["pid"]), float(info.get("share") or 1.0)
            if is_alive(pid):
                found.append(Running(str(cid), pid, share))
    return sorted(found, key=lambda r: r.campaign)


def _first_inside(times: list[float], since: float) -> int:
    """The index of the first of ``times`` (sorted) after ``since``."""
    return bisect.bisect_right(times, since)
