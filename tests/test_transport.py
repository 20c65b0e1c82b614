"""The client's transport over real sockets on 127.0.0.1: errors by phase, limits, choice.

``MeetzyClient`` sends over aiohttp (``httpx-aiohttp``) unless given a transport. Whatever the
transport, a request that never left must be ``NotSent`` (safe to retry) and one that may have
reached the server must be ``OutcomeUnknown`` (never retried blindly). Each case runs against a
small raw asyncio server that misbehaves on purpose, with the shipped transport and with httpx's
own, and checks from the server's side whether the request arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import httpcore
import httpx
import pytest

from dialer.api.client import MeetzyClient, _default_transport, _PhasedTransport, proxy_for
from dialer.errors import ConfigError, NotSent, OutcomeUnknown, SendError
from tests.conftest import free_port, mobiles

TOKEN = "tok-transport-S3CRET-77aa"
BODY = {"phone": "+34612340000", "playbook_id": "pb", "firstname": "Ana"}
OK = b'{"success": true, "id": "call-1", "message": "Call processing started"}'


def client(url: str, kind: str, *, timeout: float = 2.0, max_connections: int = 10) -> MeetzyClient:
    """The shipped transport (``aiohttp``), or httpx's own passed explicitly (``httpx``)."""
    transport = None
    if kind == "httpx":
        limits = httpx.Limits(max_connections=max_connections)
        transport = httpx.AsyncHTTPTransport(limits=limits)
    return MeetzyClient(
        url, TOKEN, timeout=timeout, max_connections=max_connections, transport=transport
    )


class Server:
    """A raw HTTP/1.1 server on 127.0.0.1 that answers with ``behave(reader, writer)``."""

    def __init__(self, behave: Callable[[Server, asyncio.StreamWriter], Awaitable[None]]):
        self.behave = behave
        self.requests = 0  # complete requests read
        self.heads: list[bytes] = []  # each request's line and headers, as read
        self.open = self.most_open = 0  # connections open now / at most

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc_info: object) -> None:
        self.server.close()
        await asyncio.sleep(0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.requests += 1
                await self.behave(self, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()


async def answer_ok(server: Server, writer: asyncio.StreamWriter, delay: float = 0.0) -> None:
    await asyncio.sleep(delay)
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(OK)}\r\n\r\n"
    writer.write(head.encode() + OK)
    await writer.drain()


async def never_answer(server: Server, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(30)


async def close_without_answer(server: Server, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def reset(server: Server, writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()  # an RST, not a FIN


async def half_body(server: Server, writer: asyncio.StreamWriter) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n"
    writer.write(head + OK[:20])
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.close()


async def trickle(server: Server, writer: asyncio.StreamWriter) -> None:
    """Keeps the connection busy for a while: headers, then one byte every 0.1 s."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n"
    writer.write(head)
    for _ in range(15):
        writer.write(b" ")
        await writer.drain()
        await asyncio.sleep(0.1)
    writer.close()


async def send(api: MeetzyClient) -> Any:
    async with api:
        return await api.create_call(BODY)


def error_of(coro: Awaitable[Any]) -> SendError:
    async def go() -> SendError:
        with pytest.raises(SendError) as info:
            await coro
        return info.value

    return asyncio.run(go())  # type: ignore[arg-type]


KINDS = ["aiohttp", "httpx"]


# --- never sent: NotSent ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_connection_refused_is_not_sent(kind: str) -> None:
    err = error_of(send(client(f"http://127.0.0.1:{free_port()}", kind)))
    assert type(err) is NotSent and err.code == "not_sent"
    assert isinstance(err.__cause__, httpx.ConnectError)


@pytest.mark.parametrize("kind", KINDS)
def test_connect_timeout_is_not_sent(kind: str) -> None:
    # A listener whose accept queue is full: the kernel drops the SYN, so connect hangs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            fillers.append(filler)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
        err = error_of(send(client(f"http://127.0.0.1:{port}", kind, timeout=0.3)))
    finally:
        for sock in [*fillers, listener]:
            sock.close()
    assert type(err) is NotSent
    assert isinstance(err.__cause__, httpx.ConnectTimeout)


@pytest.mark.parametrize("kind", KINDS)
def test_waiting_too_long_for_a_pooled_connection_is_not_sent(kind: str) -> None:
    async def go() -> tuple[BaseException | None, int]:
        server = Server(trickle)
        async with server as url:
            api = client(url, kind, timeout=0.5, max_connections=1)
            async with api:
                first = asyncio.ensure_future(api.create_call(BODY))  # holds the one connection
                await asyncio.sleep(0.1)
                with pytest.raises(SendError) as info:
                    await api.create_call(BODY)
                arrived = server.requests
                first.cancel()
                await asyncio.gather(first, return_exceptions=True)
        return info.value, arrived

    err, arrived = asyncio.run(go())
    assert type(err) is NotSent
    assert isinstance(err.__cause__, httpx.ConnectTimeout | httpx.PoolTimeout)
    assert arrived == 1  # only the first request reached the server


# --- sent, answer lost: OutcomeUnknown --------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("behave", "code"),
    [
        (never_answer, "timeout"),
        (close_without_answer, "answer_lost"),
        (reset, "answer_lost"),
        (half_body, "answer_lost"),
    ],
    ids=["read-timeout", "closed-before-answer", "reset-before-answer", "closed-mid-body"],
)
def test_a_request_that_reached_the_server_is_outcome_unknown(
    kind: str, behave: Callable[..., Awaitable[None]], code: str
) -> None:
    async def go() -> tuple[SendError, int]:
        server = Server(behave)
        async with server as url:
            with pytest.raises(SendError) as info:
                await send(client(url, kind, timeout=0.5))
        return info.value, server.requests

    err, arrived = asyncio.run(go())
    assert arrived == 1
    assert type(err) is OutcomeUnknown, err
    assert err.code == code
    assert TOKEN not in str(err)


@pytest.mark.parametrize("kind", KINDS)
def test_the_simulators_dropped_connection_is_outcome_unknown(sim: Any, kind: str) -> None:
    phone = mobiles(1)[0]
    sim.config.token = TOKEN
    sim.config.faults[phone] = ["drop_after"]
    api = client(sim.url, kind)

    async def go() -> SendError:
        with pytest.raises(SendError) as info:
            async with api:
                await api.create_call({"phone": phone, "playbook_id": "pb"})
        return info.value

    err = asyncio.run(go())
    assert type(err) is OutcomeUnknown and err.code == "answer_lost"
    assert len(sim.calls_for(phone)) == 1  # it rang: retrying would ring it twice


# --- limits and choice ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_max_connections_holds(kind: str) -> None:
    async def slow_ok(server: Server, writer: asyncio.StreamWriter) -> None:
        await answer_ok(server, writer, delay=0.05)

    async def go() -> tuple[list[Any], int]:
        server = Server(slow_ok)
        async with server as url:
            api = client(url, kind, max_connections=3)
            async with api:
                created = await asyncio.gather(*(api.create_call(BODY) for _ in range(20)))
        return created, server.most_open

    created, most_open = asyncio.run(go())
    assert [c.call_id for c in created] == ["call-1"] * 20
    assert most_open <= 3


def test_the_default_transport_is_aiohttp_with_errors_by_phase() -> None:
    async def go() -> None:
        api = MeetzyClient("http://127.0.0.1:1", TOKEN)
        assert isinstance(api._transport, _PhasedTransport)
        await api.aclose()

    asyncio.run(go())


def test_a_given_transport_is_used_as_given() -> None:
    given = httpx.MockTransport(lambda request: httpx.Response(200, json={"id": "x"}))
    api = MeetzyClient("https://api.meetzy.test", TOKEN, transport=given)
    assert api._transport is given
    assert asyncio.run(send(api)).call_id == "x"


def test_a_proxy_in_the_environment_goes_through_httpx_own_transport(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    assert isinstance(_default_transport("https://api.meetzy.io", 10), _PhasedTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    proxied = _default_transport("https://api.meetzy.io", 10)
    assert isinstance(proxied, httpx.AsyncHTTPTransport)  # httpx's own transport, proxied
    pool = proxied._pool
    assert isinstance(pool, httpcore.AsyncHTTPProxy)
    assert pool._proxy_url.host == b"proxy.example" and pool._proxy_url.port == 3128
    assert isinstance(_default_transport("http://127.0.0.1:8765", 10), _PhasedTransport)
    monkeypatch.setenv("NO_PROXY", "api.meetzy.io")
    assert isinstance(_default_transport("https://api.meetzy.io", 10), _PhasedTransport)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_proxy_never_carries_a_loopback_request(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    """Issue 15, finding 2: with every proxy variable set, a request to a loopback API goes
    direct; the proxy never sees the token or the lead's data."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)

    async def go() -> tuple[str, list[bytes], list[bytes]]:
        proxy, api_server = Server(answer_ok), Server(answer_ok)
        async with proxy as proxy_url, api_server as api_url:
            for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
                monkeypatch.setenv(name, proxy_url)
            target = api_url.replace("127.0.0.1", host)
            async with MeetzyClient(target, TOKEN) as api:
                created = await api.create_call(BODY)
        return created.call_id, proxy.heads, api_server.heads

    call_id, proxied, direct = asyncio.run(go())
    assert call_id == "call-1"
    assert proxied == []  # the proxy saw nothing
    assert len(direct) == 1 and direct[0].startswith(b"POST /call HTTP/1.1")


def test_plain_http_is_refused_where_a_proxy_would_carry_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    assert proxy_for("http://127.0.0.1:8765") is None
    assert proxy_for("http://[::1]:8765") is None
    with pytest.raises(ConfigError, match="in clear"):
        proxy_for("http://api.example")
    with pytest.raises(ConfigError, match="in clear"):
        MeetzyClient("http://api.example", TOKEN)
