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

import base64
import email.utils
import ipaddress
import json as jsonlib
import math
import os
import re
import time
import urllib.request
import zlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

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
from dialer.model import RESERVED

DEFAULT_API_URL = "https://api.meetzy.io"
TOKEN_ENV = "MEETZY_API_TOKEN"
TOKEN_FILE_ENV = "MEETZY_API_TOKEN_FILE"
URL_ENV = "MEETZY_API_URL"

# A Retry-After longer than this is read as this: a run never sleeps for hours on one header.
MAX_RETRY_AFTER = 300.0

# The most an answer may hold, counted after decompression: the API's answers are small JSON.
# A longer one is not read further (``OutcomeUnknown`` for a 2xx: the call may exist).
MAX_ANSWER_BYTES = 4 * 1024 * 1024
# A call id as it may go into a URL path and a ``history`` cell: a letter or digit first (so
# never ``.`` or ``..``), then letters, digits and ``._:-``; no ``/``, space, ``;`` or newline.
CALL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

RESERVED_KEYS = RESERVED  # the keys the dialer sets itself (``dialer.model.RESERVED``)


@dataclass(frozen=True, slots=True)
class CallSettings:
    """The call settings sent with every ``POST /call``; ``None`` means "not set: API default"."""

    playbook_id: str
    version_id: str | None = None
    voice_id: str | None = None
    voice_model: str | None = None
    language: str | None = None
    interrupt: bool | None = None

    def body(
        self, phone: str, params: Mapping[str, str], own: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """The JSON body for one call: custom params first, then the fixed keys on top. ``own``
        (``Lead.settings``: a lead's own call settings, as text) is laid over the campaign's;
        never the phone nor the playbook."""
        body: dict[str, Any] = {k: v for k, v in params.items() if k not in RESERVED_KEYS}
        body["phone"] = phone
        body["playbook_id"] = self.playbook_id
        own = own or {}
        for key in ("version_id", "voice_id", "voice_model", "language", "interrupt"):
            value = own.get(key) or getattr(self, key)
            if key == "interrupt" and isinstance(value, str):
                value = value == "true"
            if value is not None:
                body[key] = value
        return body


@dataclass(frozen=True, slots=True)
class Created:
    """``POST /call`` created a call."""

    call_id: str


# --- configuration from the environment -------------------------------------------------------


def token_from_env(environ: Mapping[str, str] | None = None, token_file: str | None = None) -> str:
    """The API token from ``--token-file``, ``MEETZY_API_TOKEN_FILE`` or ``MEETZY_API_TOKEN``,
    its surrounding white space (a token file's last newline) stripped and checked
    (``check_token``): a malformed token is refused here, before anything is sent."""
    env = os.environ if environ is None else environ
    path = token_file or env.get(TOKEN_FILE_ENV)
    if path:
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the token file {path}: {exc.strerror}") from exc
        except UnicodeDecodeError:
            raise ConfigError(
                f"the token file {path} is not UTF-8 text: it must hold the token alone"
            ) from None
        if not token:
            raise ConfigError(f"the token file {path} is empty")
        return check_token(token, f"the token file {path}")
    token = env.get(TOKEN_ENV, "").strip()
    if not token:
        raise ConfigError(
            f"{TOKEN_ENV} is not set: export your Meetzy API token in it "
            "(or use --sandbox to try the dialer without one)"
        )
    return check_token(token, TOKEN_ENV)


def check_token(token: str, where: str = "the API token") -> str:
    """``token`` if it can travel in an ``Authorization`` header as it is: printable ASCII,
    no white space inside. Else ``ConfigError`` naming ``where`` and the first bad character's
    position (never the token itself)."""
    for position, char in enumerate(token, 1):
        if not "!" <= char <= "~":
            kind = "white space" if char.isspace() else (
                "a control character" if ord(char) < 0x20 or ord(char) == 0x7F
                else "a non-ASCII character"
            )  # fmt: skip
            raise ConfigError(
                f"{where} holds {kind} at character {position}: an API token is printable "
                "ASCII without spaces or line breaks; copy it again from the Meetzy dashboard "
                "(nothing was sent)"
            )
    if not token:
        raise ConfigError(f"{where} is empty")
    return token


def redact(text: str, token: str) -> str:
    """``text`` with ``token`` hidden in every form a header can be echoed in: as it is,
    escaped as a repr escapes it, %-encoded, and base64-encoded at any alignment. A token
    shorter than 8 characters is no real one and is left alone."""
    if len(token) < 8:
        return text
    for form in sorted(_token_forms(token), key=len, reverse=True):
        text = text.replace(form, "<token>")
    return text


def _token_forms(token: str) -> set[str]:
    forms = {token, repr(token)[1:-1], ascii(token)[1:-1], quote(token, safe=""),
             quote(token), quote_plus(token), token.encode("unicode_escape").decode()}  # fmt: skip
    raw = token.encode("utf-8", "surrogatepass")
    for pad in range(3):
        # The token's base64 inside a longer text (``Bearer <token>``): drop the characters
        # that depend on what stands before or after it.
        encoded = base64.b64encode(b"\0" * pad + raw).decode()
        start, end = (pad * 4 + 2) // 3, (pad + len(raw)) * 4 // 3
        if end - start >= 8:
            forms.add(encoded[start:end])
            forms.add(encoded[start:end].replace("+", "-").replace("/", "_"))
    return {form for form in forms if len(form) >= 8}


def check_api_url(url: str) -> str:
    """Validate ``MEETZY_API_URL``: https anywhere, plain http only to a loopback host, no
    credentials (``user:pass@``), no white space or control characters."""
    text = url.strip()
    if any(not "!" <= char <= "~" for char in text):
        raise ConfigError(
            f"{URL_ENV} holds white space, a control or a non-ASCII character: "
            f"give a plain URL such as {DEFAULT_API_URL}"
        )
    authority = text.partition("//")[2].partition("/")[0].partition("?")[0].partition("#")[0]
    if "@" in authority:
        raise ConfigError(
            f"{URL_ENV} carries credentials (user:password@): the API takes only the token "
            f"in ${TOKEN_ENV}; remove them from the URL (nothing was sent)"
        )
    try:
        parts = urlsplit(text)
        host, _ = parts.hostname, parts.port
    except ValueError:
        parts, host = urlsplit(""), None
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(
            f"{URL_ENV} must be an http(s) URL such as {DEFAULT_API_URL}, not {text!r}"
        )
    if parts.scheme == "http" and not _is_loopback(host):
        raise ConfigError(
            f"{URL_ENV} uses plain http:// to {host}: the token would travel in clear; "
            "use https:// (plain http is allowed only for 127.0.0.1 or localhost)"
        )
    return text.rstrip("/")


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
        self._token = check_token(token)
        self._transport = transport or _default_transport(self.base_url, max_connections)
        self._call_url = httpx.URL(self.base_url + "/call")  # parsed once: one per POST /call
        self._headers = [
            ("Authorization", f"Bearer {token}"),
            ("Accept", "application/json"),
            ("Accept-Encoding", "gzip, deflate"),  # what ``_read_capped`` can bound
            ("User-Agent", f"dialer/{__version__}"),
        ]
        self._json_headers = [*self._headers, ("Content-Type", "application/json")]
        # A POST /call's headers as httpx would lay them out (Host first), built once: each
        # request copies them and adds its Content-Length (``_post``).
        host = ("Host", self._call_url.netloc.decode("ascii"))
        self._post_headers = httpx.Headers([host, *self._json_headers])
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
        if not valid_call_id(call_id):
            raise Rejected(
                f"call id {call_id!r} is not one the API gives (letters, digits, '._:-'): "
                "not looked up",
                code="bad_call_id",
            )
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
                if call.get("id") and not valid_call_id(_id_text(call["id"])):
                    # Skipping it could prove a placed call absent: the listing is unusable.
                    raise OutcomeUnknown(
                        "GET /calls listed a call with an unusable id", status=200, code="bad_id"
                    )
                call = dict(call)
                to = _id_text(call.get("to")) or _id_text(call.get("phone"))
                call["to"] = to  # a phone as text, whatever shape the answer gave it
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
        """One request, its answer read up to ``MAX_ANSWER_BYTES``: a 2xx answer, or the dialer
        error it means. A request that cannot even be built was not sent (``NotSent``)."""
        headers, content = self._headers, None
        if json is not None:
            headers, content = self._json_headers, _json_bytes(json)
        try:
            if method == "POST" and path == "/call" and content is not None:
                request = self._post(content)
            else:
                request = httpx.Request(
                    method,
                    self.base_url + path,
                    params=dict(params) if params else None,
                    headers=headers,
                    content=content,
                    extensions=self._extensions,
                )
        except (ValueError, TypeError) as exc:  # a header or URL httpx cannot send: unsent
            raise NotSent(
                f"request not built ({type(exc).__name__}): nothing was sent", code="not_sent"
            ) from None
        try:
            response = await self._transport.handle_async_request(request)
            try:
                body, whole = await _read_capped(response)
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise self._map_transport_error(exc) from exc
        answer = _answered(response, body, request)
        if not whole and 200 <= response.status_code < 300:
            raise OutcomeUnknown(
                f"HTTP {response.status_code} answer longer than {MAX_ANSWER_BYTES // 2**20} MiB "
                "(unpacked): not read; the call may have been created",
                status=response.status_code,
                code="too_large",
            )
        _map_response(answer, self._redact)
        return answer

    def _post(self, content: bytes) -> httpx.Request:
        """The ``POST /call`` request carrying ``content``, as ``httpx.Request(content=...)``
        builds it (the same headers, in the same order, the body read), without encoding the
        body and normalising every header again for each call: the URL and headers are
        built once (``__init__``)."""
        request = httpx.Request(
            "POST",
            self._call_url,
            headers=self._post_headers,  # copied
            stream=httpx.ByteStream(content),
            extensions=self._extensions,
        )
        request.headers["Content-Length"] = str(len(content))
        request.read()  # its content, as the transport reads it
        return request

    def _redact(self, text: str) -> str:
        return redact(text, self._token)

    def _map_transport_error(self, exc: httpx.HTTPError) -> NotSent | OutcomeUnknown:
        """The one place httpx exceptions become dialer errors, by whether the request left."""
        detail = self._redact(_transport_detail(exc))
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
    most = max_connections
    limits = httpx.Limits(max_connections=most, max_keepalive_connections=most)
    proxy = proxy_for(base_url)
    if proxy is not None:
        try:
            return httpx.AsyncHTTPTransport(proxy=proxy, limits=limits)
        except (ImportError, ValueError, TypeError, httpx.HTTPError):
            raise ConfigError(_PROXY_UNUSABLE) from None
    from httpx_aiohttp import AiohttpTransport  # imported here: a dry run never needs it

    # aiohttp's session does not read the proxy variables (trust_env is off): direct.
    return _PhasedTransport(AiohttpTransport(limits=limits))


_PROXY_UNUSABLE = (
    "the proxy set in HTTPS_PROXY/ALL_PROXY cannot be used (not an http(s) proxy URL): "
    "fix it, or name the API's host in NO_PROXY (nothing was sent)"
)


def proxy_for(base_url: str) -> str | None:
    """The proxy the environment routes ``base_url`` through (``HTTPS_PROXY``, ``ALL_PROXY``...
    unless ``NO_PROXY`` names the host), or None: direct. A loopback host is never proxied,
    whatever the environment says (the token and the lead data stay on this machine). Raises
    ``ConfigError`` when a proxy would carry a plain ``http://`` request (the token in clear)."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if _is_loopback(host):
        return None
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass_environment(host, proxies):
        return None
    if parts.scheme != "https":
        raise ConfigError(
            f"plain http:// to {host} would go through the proxy set in the environment, the "
            "token in clear: use https:// (nothing was sent)"
        )
    return proxy


def preflight(api_url: str, token: str, transport: httpx.AsyncBaseTransport | None) -> None:
    """What a run or a sync checks once, before it touches the results or sends anything:
    the token (``check_token``) and, on the real network (no ``transport`` given), the URL
    (``check_api_url``) and the route to it (``proxy_for``). Raises ``ConfigError``."""
    check_token(token)
    if transport is None:
        proxy_for(check_api_url(api_url))


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
    """The answer's JSON, or None for any body that does not parse: not JSON, not UTF-8,
    too deeply nested (``RecursionError``), a number too long to read."""
    try:
        return response.json()
    except (ValueError, RecursionError):
        return None


def _text(value: Any) -> str:
    """A scalar JSON value as text; "" for anything else (a list, an object, null)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def _id_text(value: Any) -> str:
    """A call id (a string or an integer in the answer) as text; "" for anything else."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ""


def valid_call_id(call_id: str) -> bool:
    """True for a call id that may go into a URL path and a ``history`` cell (``CALL_ID``)."""
    return CALL_ID.fullmatch(call_id) is not None


_HEADERISH = re.compile(r"header|bearer|authori[sz]ation|token|cookie", re.IGNORECASE)


def _transport_detail(exc: Exception) -> str:
    """What a transport error says, for a message that is stored in the results and the
    journal: its type, and its text unless that text may echo a request header (then the
    type alone), folded to one line and cut short."""
    name = type(exc).__name__
    text = " ".join(str(exc).split())
    if not text or _HEADERISH.search(text) or "\\x" in text or "%0" in text.lower():
        return name
    return f"{name}: {text[:200]}"


async def _read_capped(response: httpx.Response) -> tuple[bytes, bool]:
    """The answer's body, decompressed (gzip, deflate), and whether it is whole: reading
    stops once it passes ``MAX_ANSWER_BYTES``, packed or unpacked, so memory stays small
    whatever the server sends. An encoding other than gzip/deflate is kept as sent (it reads
    as "not JSON"); a corrupt one reads as an empty body."""
    limit = MAX_ANSWER_BYTES
    try:
        content = response.content  # a response built already read (tests' MockTransport)
    except httpx.ResponseNotRead:
        pass
    else:
        return (content, True) if len(content) <= limit else (b"", False)
    codings = [c.strip().lower() for c in response.headers.get("content-encoding", "").split(",")]
    codings = [c for c in codings if c not in ("", "identity")]
    inflate = None
    if len(codings) == 1 and codings[0] in ("gzip", "x-gzip", "deflate"):
        inflate = zlib.decompressobj(zlib.MAX_WBITS | 32)  # zlib or gzip header, detected
    out, raw, first = bytearray(), 0, True
    async for chunk in response.aiter_raw():
        raw += len(chunk)
        if raw > limit:
            return b"", False
        if inflate is None:
            out += chunk
            continue
        try:
            if first and codings[0] == "deflate" and chunk[:1] not in (b"x", b"X", b"h", b"H"):
                inflate = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, no header
            first = False
            data = chunk
            while data:
                out += inflate.decompress(data, limit + 1 - len(out))
                if len(out) > limit:
                    return b"", False
                data = inflate.unconsumed_tail
        except zlib.error:
            return b"", True
    if inflate is not None:
        try:
            out += inflate.flush()
        except zlib.error:
            return b"", True
    return (bytes(out), True) if len(out) <= limit else (b"", False)


def _answered(response: httpx.Response, body: bytes, request: httpx.Request) -> httpx.Response:
    """The answer as a response already read: its status and headers, ``body`` as its content
    (already decompressed, so without the encoding headers)."""
    skip = {b"content-encoding", b"content-length", b"transfer-encoding"}
    headers = [(k, v) for k, v in response.headers.raw if k.lower() not in skip]
    return httpx.Response(response.status_code, headers=headers, content=body, request=request)


def _error_detail(response: httpx.Response) -> tuple[str, str]:
    """``(code, message)`` from any error body shape; ``("", "")`` when it has none."""
    data = _json(response)
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            return _text(err.get("code")), _text(err.get("message"))
        if isinstance(err, str):
            return "", err
        if isinstance(data.get("message"), str):
            return "", data["message"]
    return "", "body is not JSON" if response.content and data is None else ""


def _call_id(response: httpx.Response) -> str:
    """The call id from either success shape; anything else means we cannot know."""
    data = _json(response)
    call_id = ""
    if isinstance(data, dict) and data.get("success") is not False:
        call_id = _id_text(data.get("id"))
        inner = data.get("data")
        if not call_id and isinstance(inner, dict):
            call_id = _id_text(inner.get("call_id")) or _id_text(inner.get("id"))
        if valid_call_id(call_id):
            return call_id
    if call_id:  # an id no URL or history cell can hold: the call may exist all the same
        raise OutcomeUnknown(
            f"HTTP {response.status_code} answer with an unusable call id: "
            "the call may have been created",
            status=response.status_code,
            code="bad_answer",
        )
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
