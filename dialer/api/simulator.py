"""A local stand-in for the Meetzy call API, served on a loopback address only.

This module owns the simulated API and its record of what it was asked: ``POST /call``,
``GET /call/{id}`` and ``GET /calls`` as /work/shared/meetzy-api.md documents them, with bearer
auth, strict sliding-window rate limits, body validation, injectable faults (per phone or by
seeded chance) and a call status that progresses with time. ``Simulator.calls`` holds every call
it created (also those whose answer it then lost); ``Simulator.requests`` every API request it
answered. ``GET /_sim/calls`` and ``GET /_sim/requests`` expose both to another process that
holds the token (they hold lead data, so another local user gets a 401).

It shares no code with the client on purpose: a client bug must not be mirrored here.
A call's final status: the next queued for its phone (``SimConfig.outcomes``), else, when its body
names a ``version_id`` that ``SimConfig.version_outcomes`` gives a mix for, drawn from that mix
(so a test can make version B answer more than A), else fixed by its call id as ``FINAL_MIX``
spreads them. The per-version statuses are deterministic and spread evenly over the version's
calls in the order they arrive (``Simulator._spread``; the seed sets where each version's
sequence starts): any 100 calls of a version follow its mix exactly.

``SimServer`` serves it from a daemon thread (tests, ``--sandbox``); ``serve_forever`` blocks
(``dialer sandbox --port N``).
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import os
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

FAULTS = frozenset(
    {"503_before", "500_before", "500_after", "drop_after", "slow", "garbage_200", "429"}
    | {"create_late"}
)
PHONE_RE = re.compile(r"\+[1-9]\d{6,14}")
RULED_KEYS = frozenset({"phone", "playbook_id", "voice_id", "voice_model", "interrupt"})
SETTINGS_KEYS = RULED_KEYS | {"version_id", "language"}  # every other key is a custom param
FINAL_MIX = (
    ("closed", 55),
    ("no-answer", 20),
    ("voicemail", 10),
    ("busy", 8),
    ("failed", 5),
    ("recall-scheduled", 2),
)  # final status, percent of calls
STATUSES = {"queued", "ringing", "open", "wrong-phone-format", "wmat"} | {s for s, _ in FINAL_MIX}
CALLER_ID = "+34910000000"


@dataclass
class SimConfig:
    """How the simulator behaves; tests may change it while it runs."""

    token: str = "sandbox-token"
    latency: float = 0.0
    per_second: int | None = 10
    per_minute: int | None = 100
    response_shape: str = "new"  # POST /call and GET /calls envelopes: "new" or "old"
    faults: dict[str, list[str]] = field(default_factory=dict)  # each queue is consumed in place
    fault_rates: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    slow_seconds: float = 30.0
    # "create_late": the call is created this long after the POST arrived (a queue, a slow
    # backend), and only then answered: a client that gave up first never hears of it.
    late_seconds: float = 40.0
    playbooks: set[str] | None = None
    ring_seconds: float = 2.0
    talk_seconds: float = 5.0
    list_status: int | None = None  # GET /calls answers this error status instead (e.g. 404)
    # Final statuses to give the next calls to a phone, in order (consumed in place); a phone
    # with none gets one fixed by its call id, spread as FINAL_MIX says.
    outcomes: dict[str, list[str]] = field(default_factory=dict)
    # The final-status mix (status, percent; adding up to 100, like FINAL_MIX) per version_id of
    # the POST body: each version its own answer rate. A version not named uses FINAL_MIX.
    version_outcomes: dict[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)
    # A JSONL file keeping the created calls across restarts (the sandbox of ``dialer sync``).
    store: str | None = None

    def __post_init__(self) -> None:
        if self.response_shape not in ("new", "old"):
            raise ValueError(f"response_shape must be 'new' or 'old', not {self.response_shape!r}")
        named = {f for queue in self.faults.values() for f in queue} | set(self.fault_rates)
        if unknown := sorted(named - FAULTS):
            raise ValueError(f"unknown faults {unknown}; known: {sorted(FAULTS)}")
        finals = {s for s, _ in FINAL_MIX}
        if unknown := sorted({o for q in self.outcomes.values() for o in q} - finals):
            raise ValueError(f"unknown outcomes {unknown}; known: {sorted(finals)}")
        for version, mix in self.version_outcomes.items():
            if unknown := sorted({o for o, _ in mix} - finals):
                raise ValueError(f"version {version}: unknown outcomes {unknown}")
            if sum(percent for _, percent in mix) != 100 or min(p for _, p in mix) < 0:
                raise ValueError(f"version {version}: the percents must add up to 100")


@dataclass
class CallRecord:
    id: str
    phone: str
    playbook_id: str
    body: dict[str, Any]
    created_at: float
    created_time: str
    final: str = ""  # the status it ends in; "" = fixed by its id


@dataclass
class RequestRecord:
    at: float
    wall: float
    method: str
    path: str
    phone: str | None
    status: int
    fault: str | None


class _ConnectionDropped(Exception):
    """Raised once the answer has started: uvicorn then closes the connection mid-body."""


def _quiet_drops(record: logging.LogRecord) -> bool:
    """uvicorn.error filter: a simulated drop is not an error worth a traceback."""
    return not (record.exc_info and isinstance(record.exc_info[1], _ConnectionDropped))


class _DroppedResponse(Response):
    """Sends the status line, headers and half the body, then breaks the connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
        await send(start)
        half = self.body[: len(self.body) // 2]
        await send({"type": "http.response.body", "body": half, "more_body": True})
        raise _ConnectionDropped("simulated connection drop")


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {"success": False, "error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _final_status(call_id: str) -> str:
    """The status a call ends in: fixed by its id, spread over calls as FINAL_MIX says."""
    bucket = _digest(call_id) % 100
    for status, percent in FINAL_MIX:
        if bucket < percent:
            return status
        bucket -= percent
    raise AssertionError("FINAL_MIX must add up to 100")


_Entry = tuple[RequestRecord, Response | None]  # the record to complete; a refusal, if any


class Simulator:
    """The simulated API: an ASGI ``app`` plus the record of calls and requests."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.calls: list[CallRecord] = []
        self.requests: list[RequestRecord] = []
        self.clock: Callable[[], float] = time.monotonic  # for rate windows and ``at``; fakeable
        self._random = random.Random(self.config.seed)
        self._admitted: dict[str, list[float]] = {}  # token -> admission times, ascending
        self._halt = threading.Event()  # set by SimServer.stop(): cut "slow" waits short
        if self.config.store:
            self._restore()
        self.app = Starlette(
            routes=[
                Route("/call", self._post_call, methods=["POST"]),
                Route("/call/{call_id}", self._get_call, methods=["GET"]),
                Route("/calls", self._list_calls, methods=["GET"]),
                Route("/_sim/calls", self._sim_record, methods=["GET"]),
                Route("/_sim/requests", self._sim_record, methods=["GET"]),
            ],
            exception_handlers={404: _no_route, 405: _no_route},
        )

    def _restore(self) -> None:
        """Load the calls kept in ``config.store`` by earlier runs (a missing file: none)."""
        try:
            with open(self.config.store or "", encoding="utf-8") as handle:
                lines = handle.read().splitlines()
        except FileNotFoundError:
            return
        for line in lines:
            try:
                self.calls.append(CallRecord(**json.loads(line)))
            except (ValueError, TypeError):
                continue  # a line torn by a crash: that call is forgotten

    def _keep(self, call: CallRecord) -> None:
        if self.config.store:  # private (0600), never written through a symlink
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(self.config.store, flags, 0o600)
            if os.fstat(fd).st_size == 0:
                os.fchmod(fd, 0o600)  # a new file: the owner's only, whatever the umask
            with open(fd, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(asdict(call)) + "\n")

    def _spread(self, version: str, mix: tuple[tuple[str, int], ...]) -> str:
        """The final status of the version's next call: its k-th call (k from 0) falls in
        bucket (offset + 61 k) mod 100 of ``mix``, the offset fixed by the seed and the version.
        61 and 100 share no factor, so any 100 calls of a version follow its mix exactly and
        fewer come close: a test sees the rates it set, not a chance draw."""
        k = sum(1 for c in self.calls if c.body.get("version_id") == version)
        bucket = (_digest(f"{self.config.seed}:{version}") + 61 * k) % 100
        for status, percent in mix:
            if bucket < percent:
                return status
            bucket -= percent
        raise AssertionError("a final-status mix must add up to 100")

    def calls_for(self, phone: str) -> list[CallRecord]:
        return [c for c in self.calls if c.phone == phone]

    # --- every API request: stamp, auth, rate limit, latency, record -----------------------

    async def _enter(self, request: Request, phone: object = None) -> _Entry:
        """Stamp the arrival and decide auth and rate limit at that instant; then the latency."""
        visit = RequestRecord(
            self.clock(),
            time.time(),
            request.method,
            request.url.path,
            phone if isinstance(phone, str) else None,
            0,
            None,
        )
        refusal = self._authorize(request) or self._admit(visit.at)
        if self.config.latency > 0:
            await asyncio.sleep(self.config.latency)
        if refusal is not None:
            self._answer(visit, refusal)
        return visit, refusal

    def _answer(self, visit: RequestRecord, answer: Response, fault: str | None = None) -> Response:
        visit.status, visit.fault = answer.status_code, fault
        self.requests.append(visit)
        return answer

    def _authorize(self, request: Request) -> Response | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            token.encode(), self.config.token.encode()
        ):
            return None
        return _error(401, "unauthorized", "missing or invalid bearer token")

    def _admit(self, now: float) -> Response | None:
        """Admit a request at ``now`` into the token's windows, or answer 429 with Retry-After."""
        times = self._admitted.setdefault(self.config.token, [])
        del times[: bisect.bisect_right(times, now - 60.0)]
        waits = []
        for limit, span in ((self.config.per_second, 1.0), (self.config.per_minute, 60.0)):
            inside = times[bisect.bisect_right(times, now - span) :]
            if limit is not None and len(inside) >= limit:  # one more would exceed the limit:
                leaving = len(inside) - limit  # room frees when this admission leaves the window
                waits.append(inside[leaving] + span - now if leaving < len(inside) else span)
        if waits:
            retry = max(1, math.ceil(max(waits)))
            return _error(
                429,
                "rate_limited",
                f"rate limit exceeded, retry in {retry} s",
                {"Retry-After": str(retry)},
            )
        bisect.insort(times, now)
        return None

    # --- POST /call -------------------------------------------------------------------------

    async def _post_call(self, request: Request) -> Response:
        body = await _read_json(request)
        visit, refusal = await self._enter(request, body.get("phone") if body else None)
        if refusal is not None:
            return refusal
        if (invalid := self._validate(body)) is not None:
            return self._answer(visit, invalid)
        assert body is not None
        fault = self._pick_fault(body["phone"])
        if fault == "503_before":
            return self._answer(visit, _error(503, "service_unavailable", "try again later"), fault)
        if fault == "500_before":  # an error after the request arrived, yet nothing created
            return self._answer(visit, _error(500, "server_error", "internal error"), fault)
        if fault == "429":
            refused = _error(429, "rate_limited", "too many requests", {"Retry-After": "1"})
            return self._answer(visit, refused, fault)

        if fault == "create_late":
            deadline = time.monotonic() + self.config.late_seconds
            while (left := deadline - time.monotonic()) > 0:
                if self._halt.is_set():  # the server is stopping: no call is created
                    return _DroppedResponse("", media_type="application/json")
                await asyncio.sleep(min(0.05, left))
        now = time.time()
        created = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
        call = CallRecord(
            str(uuid.uuid4()),
            body["phone"],
            body["playbook_id"],
            dict(body),
            now,
            created.replace("+00:00", "Z"),
        )
        if queue := self.config.outcomes.get(call.phone):
            call.final = queue.pop(0)
        elif mix := self.config.version_outcomes.get(version := str(body.get("version_id") or "")):
            call.final = self._spread(version, mix)
        self.calls.append(call)  # from here on the phone rings, whatever the client hears
        self._keep(call)
        payload: dict[str, Any] = {
            "success": True,
            "id": call.id,
            "message": "Call processing started",
        }
        if self.config.response_shape == "old":
            payload = {"success": True, "data": {"call_id": call.id, "status": "initiated"}}
        if fault == "500_after":
            return self._answer(visit, _error(500, "server_error", "internal error"), fault)
        if fault == "garbage_200":
            html = Response("<html>proxy</html>", media_type="text/html")
            return self._answer(visit, html, fault)
        dropped = _DroppedResponse(json.dumps(payload), media_type="application/json")
        if fault == "drop_after":
            return self._answer(visit, dropped, fault)
        answer = self._answer(visit, JSONResponse(payload), fault)
        if fault == "slow":  # recorded already, so a client that gave up can see it happened
            deadline = time.monotonic() + self.config.slow_seconds
            while (left := deadline - time.monotonic()) > 0:
                if self._halt.is_set():  # the server is stopping: this answer is lost
                    return dropped
                await asyncio.sleep(min(0.05, left))
        return answer

    def _validate(self, body: dict[str, Any] | None) -> Response | None:
        if body is None:
            return _error(400, "invalid_body", "the body must be a JSON object (application/json)")
        playbook = body.get("playbook_id")
        if not isinstance(playbook, str) or not playbook.strip():
            return _error(400, "missing_playbook", "playbook_id is required")
        if self.config.playbooks is not None and playbook not in self.config.playbooks:
            return _error(404, "playbook_not_found", f"playbook {playbook!r} not found")
        phone = body.get("phone")
        if not isinstance(phone, str) or not PHONE_RE.fullmatch(phone):
            return _error(400, "invalid_phone", "phone must be E.164, e.g. +34600000000")
        if "voice_id" in body and body["voice_id"] not in [str(n) for n in range(1, 8)]:
            return _error(400, "invalid_voice_id", 'voice_id must be one of "1".."7"')
        if "voice_model" in body and body["voice_model"] not in ("fast", "human"):
            return _error(400, "invalid_voice_model", 'voice_model must be "fast" or "human"')
        if "interrupt" in body and not isinstance(body["interrupt"], bool):
            return _error(400, "invalid_interrupt", "interrupt must be a boolean")
        for key, value in body.items():
            if key not in RULED_KEYS and not isinstance(value, str):
                return _error(400, "invalid_param", f"param {key!r} must be a string")
        return None

    def _pick_fault(self, phone: str) -> str | None:
        """The phone's next queued fault, else a seeded draw from ``fault_rates``."""
        fault = None
        if queue := self.config.faults.get(phone):
            fault = queue.pop(0)
        elif self.config.fault_rates:
            draw = self._random.random()
            for name, rate in sorted(self.config.fault_rates.items()):
                draw -= rate
                if draw < 0:
                    fault = name
                    break
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown simulator fault {fault!r}")
        return fault

    # --- GET /call/{id} and GET /calls ------------------------------------------------------

    def _describe(self, call: CallRecord, now: float) -> dict[str, Any]:
        """The documented call details, as they stand ``now`` (the status moves with time)."""
        age, ring, digest = now - call.created_at, self.config.ring_seconds, _digest(call.id)
        if age < min(0.5, ring / 4):
            status, duration = "queued", 0
        elif age < ring:
            status, duration = "ringing", 0
        elif age < ring + self.config.talk_seconds:
            status, duration = "open", int(age - ring)
        else:
            status = call.final or _final_status(call.id)
            duration = {
                "closed": 30 + digest % 270,
                "voicemail": 12 + digest % 30,
                "recall-scheduled": 5 + digest % 40,
            }.get(status, 0)
        params = {k: v for k, v in call.body.items() if k not in SETTINGS_KEYS}
        closed, name = status == "closed", params.get("firstname", "")
        recorded = status in ("closed", "voicemail", "recall-scheduled")
        return {
            "id": call.id,
            "playbook_id": call.playbook_id,
            "playbook_name": f"Sandbox playbook {call.playbook_id}",
            "version_id": call.body.get("version_id"),
            "from": CALLER_ID,
            "to": call.phone,
            "status": status,
            "duration": duration,
            "transcript": f"Agent: Hola{' ' + name if name else ''}, le llamo de Meetzy.\n"
            "Lead: Sí, dígame."
            if closed
            else None,
            "summary": f"The lead talked with the agent for {duration} s." if closed else None,
            "data": params,
            "success": closed,
            "recording": f"https://sandbox.invalid/{call.id}.mp3" if recorded else None,
            "created_time": call.created_time,
        }

    async def _get_call(self, request: Request) -> Response:
        visit, refusal = await self._enter(request)
        if refusal is not None:
            return refusal
        call_id = request.path_params["call_id"]
        call = next((c for c in reversed(self.calls) if c.id == call_id), None)
        if call is None:
            return self._answer(visit, _error(404, "not_found", f"call {call_id!r} not found"))
        return self._answer(visit, JSONResponse(self._describe(call, time.time())))

    async def _list_calls(self, request: Request) -> Response:
        visit, refusal = await self._enter(request)
        if refusal is not None:
            return refusal
        if self.config.list_status is not None:
            failing = self.config.list_status
            return self._answer(visit, _error(failing, "list_unavailable", "cannot list calls"))
        now, query = time.time(), request.query_params
        status, playbook = query.get("status"), query.get("playbook_id")
        try:
            start, end = _period(query, now)
            if status is not None and status not in STATUSES:
                raise ValueError(f"unknown status {status!r}")
        except ValueError as exc:
            return self._answer(visit, _error(400, "invalid_query", str(exc)))
        old, items = self.config.response_shape == "old", []
        for call in sorted(self.calls, key=lambda c: c.created_at, reverse=True):
            detail = self._describe(call, now)
            if not start <= call.created_at < end or playbook not in (None, call.playbook_id):
                continue
            if status not in (None, detail["status"]):
                continue
            items.append(
                {
                    "id": call.id,
                    "created_time": call.created_time,
                    "timestamp": int(call.created_at),
                    "assistant_id": call.playbook_id,
                    "from": CALLER_ID,
                    ("phone" if old else "to"): call.phone,
                    **{
                        k: detail[k]
                        for k in (
                            "status",
                            "duration",
                            "recording",
                            "transcript",
                            "success",
                            "summary",
                            "data",
                        )
                    },
                    "output": {"outcome": "completed"} if detail["success"] else None,
                }
            )
        return self._answer(visit, JSONResponse(items if old else {"calls": items}))

    async def _sim_record(self, request: Request) -> Response:
        """Inspection endpoints: the bearer token (they serve lead bodies), no rate limit, not
        recorded."""
        if (refusal := self._authorize(request)) is not None:
            return refusal
        if request.url.path.endswith("/calls"):
            return JSONResponse({"calls": [asdict(c) for c in self.calls]})
        return JSONResponse({"requests": [asdict(r) for r in self.requests]})


async def _read_json(request: Request) -> dict[str, Any] | None:
    """The body as a JSON object, or None for any other body or content type."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    try:
        body = json.loads(raw) if media == "application/json" else None
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


async def _no_route(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException) and exc.status_code == 405:
        return _error(405, "method_not_allowed", f"{request.method} is not allowed here")
    return _error(404, "not_found", f"no route {request.url.path}")


def _period(query: Any, now: float) -> tuple[float, float]:
    """The ``[start, end)`` unix-time window that GET /calls query parameters ask for."""
    days = query.get("daysFromNow")
    if "startDate" not in query and "endDate" not in query:
        if days is not None and not (days.isdigit() and 1 <= int(days) <= 90):
            raise ValueError("daysFromNow must be an integer from 1 to 90")
        return now - int(days or 15) * 86400.0, math.inf
    if days is not None:
        raise ValueError("use startDate/endDate or daysFromNow, not both")
    start = _parse_date(query["startDate"], "startDate", 0) if "startDate" in query else 0.0
    end = _parse_date(query["endDate"], "endDate", 1) if "endDate" in query else math.inf
    if start >= end:
        raise ValueError("startDate must be before endDate")
    return start, end


def _parse_date(text: str, name: str, steps: int) -> float:
    """``YYYY-MM-DD`` or ``YYYY-MM-DD HH:mm:ss`` in UTC; ``steps=1`` includes that day/second."""
    for fmt, step in (("%Y-%m-%d", timedelta(days=1)), ("%Y-%m-%d %H:%M:%S", timedelta(seconds=1))):
        try:
            return (datetime.strptime(text, fmt).replace(tzinfo=UTC) + steps * step).timestamp()
        except ValueError:
            continue
    raise ValueError(f"{name} must be YYYY-MM-DD or YYYY-MM-DD HH:mm:ss")


# --- serving on loopback -------------------------------------------------------------------


def _loopback(host: str) -> str:
    try:
        address = ipaddress.ip_address("127.0.0.1" if host == "localhost" else host)
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise ValueError(f"the simulator serves on a loopback address only, not {host!r}")
    return str(address)


def _listen(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP given explicitly: asyncio then sets TCP_NODELAY on each accepted connection;
    # without it every answer on a kept-alive connection waited ~40 ms for a delayed ACK.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def _uvicorn_server(simulator: Simulator) -> uvicorn.Server:
    config = uvicorn.Config(simulator.app, access_log=False, log_level="warning", lifespan="off")
    error_log = logging.getLogger("uvicorn.error")  # Config() configured it: filter after that
    if _quiet_drops not in error_log.filters:
        error_log.addFilter(_quiet_drops)
    return uvicorn.Server(config)


class SimServer:
    """Serves a ``Simulator`` from a daemon thread on a loopback socket it binds itself."""

    def __init__(self, simulator: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.simulator = simulator
        self.host = _loopback(host)
        self.port = port
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        """Bind, serve, wait until it accepts connections; return the base URL."""
        if self._thread is not None:
            raise RuntimeError("this SimServer is already started")
        sock = _listen(self.host, self.port)
        self.port = sock.getsockname()[1]
        server = self._server = _uvicorn_server(self.simulator)
        self.simulator._halt.clear()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=[sock])),
            name=f"meetzy-sim-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 10.0
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                sock.close()
                raise RuntimeError("the simulator's server did not start")
            time.sleep(0.01)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{self.port}"
        return self.url

    def stop(self) -> None:
        """Stop serving; in-flight "slow" answers are cut short so this returns promptly."""
        if self._thread is None or self._server is None:
            return
        self.simulator._halt.set()
        self._server.should_exit = True
        self._thread.join(5.0)
        if self._thread.is_alive():  # a connection that will not close: stop waiting for it
            self._server.force_exit = True
            self._thread.join(5.0)
        self._thread = self._server = None

    def __enter__(self) -> SimServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve_forever(simulator: Simulator, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn's handlers; call it from the main thread)."""
    sock = _listen(_loopback(host), port)
    try:
        _uvicorn_server(simulator).run(sockets=[sock])
    finally:
        sock.close()
