"""The Meetzy HTTP API, and the only module that speaks HTTP to it.

Owns: request bodies (``CallSettings.body``), the API's two success shapes, its error bodies
in every shape, and the mapping of httpx exceptions and HTTP statuses onto the ``DialerError``
tree by *phase* (``_map_transport_error`` and ``_map_response``: the one place this happens):

* ``NotSent``        nothing reached the API, or it refused before creating: retry is safe
* ``Rejected``       the API refused this call (4xx); ``AuthError`` for 401/403
* ``OutcomeUnknown`` the request may have been processed but the answer was lost

The token lives here and in the process environment only: it is sent as a header and never
put in a message, a repr or a dataclass.
"""

from __future__ import annotations

import email.utils
import ipaddress
import json as jsonlib
import math
import os
import time
import urllib.request
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from dialer import __version__
from dialer.errors import (
    AuthError,
    ConfigError,
    NotSent,
    OutcomeUnknown,
    RateLimited,
    Rejected,
)

DEFAULT_API_URL = "https://api.meetzy.io"
TOKEN_ENV = "MEETZY_API_TOKEN"
TOKEN_FILE_ENV = "MEETZY_API_TOKEN_FILE"
URL_ENV = "MEETZY_API_URL"

# A Retry-After longer than this is read as this: a run never sleeps for hours on one header.
MAX_RETRY_AFTER = 300.0

# Keys the dialer sets itself: a custom param can never overwrite them.
RESERVED_KEYS = frozenset(
    {"phone", "playbook_id", "version_id", "voice_id", "voice_model", "language", "interrupt"}
)


@dataclass(frozen=True, slots=True)
class CallSettings:
    """The call settings sent with every ``POST /call``; ``None`` means "not set: API default"."""

    playbook_id: str
    version_id: str | None = None
    voice_id: str | None = None
    voice_model: str | None = None
    language: str | None = None
    interrupt: bool | None = None

    def body(self, phone: str, params: Mapping[str, str]) -> dict[str, Any]:
        """The JSON body for one call: custom params first, then the fixed keys on top."""
        body: dict[str, Any] = {k: v for k, v in params.items() if k not in RESERVED_KEYS}
        body["phone"] = phone
        body["playbook_id"] = self.playbook_id
        for key in ("version_id", "voice_id", "voice_model", "language", "interrupt"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        return body


@dataclass(frozen=True, slots=True)
class Created:
    """``POST /call`` created a call."""

    call_id: str


# --- configuration from the environment -------------------------------------------------------


def token_from_env(environ: Mapping[str, str] | None = None, token_file: str | None = None) -> str:
    """The API token from ``--token-file``, ``MEETZY_API_TOKEN_FILE`` or ``MEETZY_API_TOKEN``."""
    env = os.environ if environ is None else environ
    path = token_file or env.get(TOKEN_FILE_ENV)
    if path:
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the token file {path}: {exc.strerror}") from exc
        if not token:
            raise ConfigError(f"the token file {path} is empty")
        return token
    token = env.get(TOKEN_ENV, "").strip()
    if not token:
        raise ConfigError(
            f"{TOKEN_ENV} is not set: export your Meetzy API token in it "
            "(or use --sandbox to try the dialer without one)"
        )
    return token


def redact(text: str, token: str) -> str:
    """``text`` with ``token`` hidden (a token shorter than 8 characters is no real one)."""
    return text.replace(token, "<token>") if len(token) >= 8 else text


def check_api_url(url: str) -> str:
    """Validate ``MEETZY_API_URL``: https anywhere, plain http only to a loopback host."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{URL_ENV} must be an http(s) URL such as {DEFAULT_API_URL}, not {url!r}"
        )
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(
            f"{URL_ENV} uses plain http:// to {parts.hostname}: the token would travel in clear; "
            "use https:// (plain http is allowed only for 127.0.0.1 or localhost)"
        )
    return url.strip().rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- the client -----------------------------------------------------------------------------


class MeetzyClient:
    """An async client for the Meetzy API over one httpx transport.

    Each request is an ``httpx.Request`` handed straight to the transport's
    ``handle_async_request``, and the answer an ``httpx.Response``: ``httpx.AsyncClient``'s
    per-request machinery (auth flows, redirects, cookies, event hooks) is skipped, since a
    bearer-token JSON API uses none of it, and it cost about as much CPU as the transport itself
    (benchmarks/README.md). ``transport`` lets tests and the sandbox swap the network
    (``httpx.ASGITransport``, ``httpx.MockTransport``) instead of patching; it is used as given.
    Without one, requests go over aiohttp (``_default_transport``).
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        max_connections: int = 10,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._transport = transport or _default_transport(self.base_url, max_connections)
        self._call_url = httpx.URL(self.base_url + "/call")  # parsed once: one per POST /call
        self._headers = [
            ("Authorization", f"Bearer {token}"),
            ("Accept", "application/json"),
            ("User-Agent", f"dialer/{__version__}"),
        ]
        self._json_headers = [*self._headers, ("Content-Type", "application/json")]
        timeouts = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self._extensions = {"timeout": timeouts.as_dict()}  # where AsyncClient puts them

    def __repr__(self) -> str:
        return f"MeetzyClient({self.base_url!r}, token=<hidden>)"

    async def __aenter__(self) -> MeetzyClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def create_call(self, body: Mapping[str, Any]) -> Created:
        """``POST /call``: ``Created``, or raises NotSent / Rejected / OutcomeUnknown."""
        response = await self._request("POST", "/call", json=body)
        return Created(_call_id(response))

    async def get_call(self, call_id: str) -> dict[str, Any]:
        """``GET /call/{id}``: one call's details (``status``, ``duration``, ``summary``...)."""
        response = await self._request("GET", f"/call/{quote(call_id, safe='')}")
        data = _json(response)
        if isinstance(data, dict) and isinstance(data.get("data"), dict) and "status" not in data:
            data = data["data"]  # the older envelope, {"success": true, "data": {...}}
        if not isinstance(data, dict) or not isinstance(data.get("status"), str):
            raise OutcomeUnknown("GET /call answered without a call status", status=200)
        return data

    async def list_calls(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """``GET /calls``: the listed calls in either documented shape, ``to`` always set."""
        response = await self._request("GET", "/calls", params=params)
        data = _json(response)
        calls = data.get("calls") if isinstance(data, dict) else data
        if not isinstance(calls, list):
            raise OutcomeUnknown("GET /calls answered with an unexpected body", status=200)
        out = []
        for call in calls:
            if isinstance(call, dict):
                call = dict(call)
                call.setdefault("to", call.get("phone"))
                out.append(call)
        return out

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One request, its answer read whole: a 2xx answer, or the dialer error it means."""
        headers, content = self._headers, None
        if json is not None:
            headers, content = self._json_headers, _json_bytes(json)
        request = httpx.Request(
            method,
            self._call_url if path == "/call" else self.base_url + path,
            params=dict(params) if params else None,
            headers=headers,
            content=content,
            extensions=self._extensions,
        )
        try:
            response = await self._transport.handle_async_request(request)
            try:
                await response.aread()
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise self._map_transport_error(exc) from exc
        _map_response(response, self._redact)
        return response

    def _redact(self, text: str) -> str:
        return redact(text, self._token)

    def _map_transport_error(self, exc: httpx.HTTPError) -> NotSent | OutcomeUnknown:
        """The one place httpx exceptions become dialer errors, by whether the request left."""
        detail = self._redact(f"{type(exc).__name__}: {exc}".rstrip(": "))
        where = urlsplit(self.base_url).netloc
        if isinstance(exc, _NEVER_SENT):
            return NotSent(f"request not sent to {where} ({detail})", code="not_sent")
        if isinstance(exc, httpx.TimeoutException):
            return OutcomeUnknown(f"no answer from {where} in time ({detail})", code="timeout")
        return OutcomeUnknown(f"answer from {where} lost ({detail})", code="answer_lost")


# --- the transport: httpx's API over aiohttp ---------------------------------------------------


def _default_transport(base_url: str, max_connections: int) -> httpx.AsyncBaseTransport:
    """httpx over aiohttp (``httpx-aiohttp``), with its errors mapped by phase; httpx's own
    transport through the proxy when the environment routes ``base_url`` through one
    (``HTTPS_PROXY``, ``ALL_PROXY``... unless ``NO_PROXY`` names the host).

    Why aiohttp: httpx's own pool (httpcore) scans every connection on every request, so at 100
    connections its CPU cost dominates a run (benchmarks/bench_transport.py: about 10x the wall
    and 20x the CPU of this transport for 2,000 POSTs at concurrency 100).
    """
    parts = urlsplit(base_url)
    most = max_connections
    limits = httpx.Limits(max_connections=most, max_keepalive_connections=most)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass_environment(parts.hostname or "", proxies):
        return httpx.AsyncHTTPTransport(proxy=proxy, limits=limits)
    from httpx_aiohttp import AiohttpTransport  # imported here: a dry run never needs it

    return _PhasedTransport(AiohttpTransport(limits=limits))


class _PhasedTransport(httpx.AsyncBaseTransport):
    """An ``httpx_aiohttp.AiohttpTransport`` whose failures are re-raised as the httpx error of
    the right *phase*. Its own mapping is not safe here: it turns every
    ``aiohttp.ClientConnectionError``, including a server that dropped the connection after
    reading the request, into ``httpx.ConnectTimeout``, which would read as "never sent"."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await self._inner.handle_async_request(request)
        except Exception as exc:
            raise _by_phase(exc, request) from exc
        response.stream = _PhasedStream(response.stream, request)  # type: ignore[arg-type]
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class _PhasedStream(httpx.AsyncByteStream):
    """The answer's body: the request was sent, so any failure reading it is an answer lost."""

    def __init__(self, inner: Any, request: httpx.Request) -> None:
        self._inner, self._request = inner, request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except Exception as exc:
            raise _by_phase(exc, self._request, answering=True) from exc

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        except Exception as exc:
            raise _by_phase(exc, self._request, answering=True) from exc


def _by_phase(exc: Exception, request: httpx.Request, answering: bool = False) -> Exception:
    """The httpx error for an aiohttp failure, by whether the request can have left.

    Only a failure to get a connection (refused, unresolvable, timed out waiting for the pool
    or the connect) proves nothing was sent; every other failure may come after the server read
    the request. Exceptions that are neither aiohttp's nor the OS's (bugs) pass unchanged."""
    import aiohttp

    cause = exc.__cause__ if isinstance(exc, httpx.HTTPError) and exc.__cause__ else exc
    if not isinstance(cause, aiohttp.ClientError | OSError):
        return exc
    detail = f"{type(cause).__name__}: {cause}".rstrip(": ")
    if not answering:
        if isinstance(cause, aiohttp.ConnectionTimeoutError):  # the pool or the TCP connect
            return httpx.ConnectTimeout(detail, request=request)
        if isinstance(cause, aiohttp.ClientConnectorError):  # includes DNS, TLS handshake
            return httpx.ConnectError(detail, request=request)
        if isinstance(cause, aiohttp.InvalidURL):
            return httpx.UnsupportedProtocol(detail, request=request)
    if isinstance(cause, TimeoutError):
        return httpx.ReadTimeout(detail, request=request)
    return httpx.ReadError(detail, request=request)


# Raised before a single byte of the request reached the server.
_NEVER_SENT: tuple[type[httpx.HTTPError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
)


def _map_response(response: httpx.Response, redact: Any = str) -> None:
    """Raise the dialer error an HTTP answer means; return quietly on 2xx."""
    status = response.status_code
    if 200 <= status < 300:
        return
    code, message = _error_detail(response)
    text = redact(
        f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    )
    if status in (401, 403):
        raise AuthError(
            f"the API refused the token ({text}): check {TOKEN_ENV}", status=status, code=code
        )
    if status == 429:
        raise RateLimited(f"rate limited ({text})", retry_after=_retry_after(response))
    if status == 503 and code:
        # The API's own documented error body: it refused before creating anything.
        raise NotSent(f"service unavailable ({text})", status=status, code=code)
    if 400 <= status < 500:
        raise Rejected(text, status=status, code=code)
    raise OutcomeUnknown(
        f"server error after the request was sent ({text})", status=status, code=code
    )


def _json_bytes(body: Mapping[str, Any]) -> bytes:
    """A JSON request body, encoded as httpx encodes ``json=``."""
    return jsonlib.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _error_detail(response: httpx.Response) -> tuple[str, str]:
    """``(code, message)`` from any error body shape; ``("", "")`` when it has none."""
    data = _json(response)
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            return str(err.get("code") or ""), str(err.get("message") or "")
        if isinstance(err, str):
            return "", err
        if isinstance(data.get("message"), str):
            return "", data["message"]
    return "", "body is not JSON" if response.content else ""


def _call_id(response: httpx.Response) -> str:
    """The call id from either success shape; anything else means we cannot know."""
    data = _json(response)
    if isinstance(data, dict) and data.get("success") is not False:
        call_id = data.get("id")
        inner = data.get("data")
        if not call_id and isinstance(inner, dict):
            call_id = inner.get("call_id") or inner.get("id")
        if (
            isinstance(call_id, str | int)
            and not isinstance(call_id, bool)
            and str(call_id).strip()
        ):
            return str(call_id).strip()
    shape = "not JSON" if data is None else "without a call id"
    raise OutcomeUnknown(
        f"HTTP {response.status_code} answer {shape}: the call may have been created",
        status=response.status_code,
        code="bad_answer",
    )


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), if usable."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, OverflowError):
            return None
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)
