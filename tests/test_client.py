"""Tests for dialer.api.client: request bodies, answers in every shape, error mapping, secrets."""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.api.client import (
    RESERVED_KEYS,
    CallSettings,
    Created,
    MeetzyClient,
    check_api_url,
    token_from_env,
)
from dialer.errors import (
    AuthError,
    ConfigError,
    DialerError,
    NotSent,
    OutcomeUnknown,
    RateLimited,
    Rejected,
    SendError,
)

TOKEN = "mz_live_S3cr3tT0k3n_9f8e7d"
BASE = "https://api.meetzy.test"
BODY = {"phone": "+34600000000", "playbook_id": "pb-1", "firstname": "Ana"}

Handler = Callable[[httpx.Request], httpx.Response]


# --- helpers ------------------------------------------------------------------------------------


def client_for(handler: Handler, token: str = TOKEN) -> MeetzyClient:
    return MeetzyClient(BASE, token, transport=httpx.MockTransport(handler))


def create(handler: Handler, body: dict[str, Any] | None = None) -> Created:
    async def go() -> Created:
        async with client_for(handler) as client:
            return await client.create_call(BODY if body is None else body)

    return asyncio.run(go())


def create_error(handler: Handler) -> SendError:
    with pytest.raises(SendError) as info:
        create(handler)
    return info.value


def list_calls(handler: Handler, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        async with client_for(handler) as client:
            return await client.list_calls(params or {})

    return asyncio.run(go())


def answer(
    status: int,
    body: Any = None,
    *,
    text: str | None = None,
    headers: dict[str, str] | None = None,
) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if text is not None:
            return httpx.Response(status, text=text, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return handler


def raising(exc_type: type[httpx.HTTPError], message: str = "boom") -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise make_exception(exc_type, message, request)

    return handler


def make_exception(
    exc_type: type[httpx.HTTPError], message: str, request: httpx.Request
) -> httpx.HTTPError:
    if issubclass(exc_type, httpx.HTTPStatusError):
        return exc_type(message, request=request, response=httpx.Response(500, request=request))
    if issubclass(exc_type, httpx.RequestError):
        return exc_type(message, request=request)
    return exc_type(message)


def all_http_errors() -> list[type[httpx.HTTPError]]:
    """``httpx.HTTPError`` and every subclass of it, recursively."""
    seen: list[type[httpx.HTTPError]] = []

    def walk(cls: type[httpx.HTTPError]) -> Iterator[type[httpx.HTTPError]]:
        yield cls
        for sub in cls.__subclasses__():
            yield from walk(sub)

    for cls in walk(httpx.HTTPError):
        if cls not in seen and cls.__module__.startswith("httpx"):
            seen.append(cls)
    return seen


HTML = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


# --- CallSettings.body --------------------------------------------------------------------------


def test_body_sends_only_set_settings() -> None:
    body = CallSettings("pb-1").body("+34600000000", {})
    assert body == {"phone": "+34600000000", "playbook_id": "pb-1"}


def test_body_with_every_setting() -> None:
    settings = CallSettings(
        "pb-1", version_id="v2", voice_id="3", voice_model="fast", language="EN", interrupt=True
    )
    body = settings.body("+34600000000", {"firstname": "Ana", "email": "ana@example.com"})
    assert body == {
        "firstname": "Ana",
        "email": "ana@example.com",
        "phone": "+34600000000",
        "playbook_id": "pb-1",
        "version_id": "v2",
        "voice_id": "3",
        "voice_model": "fast",
        "language": "EN",
        "interrupt": True,
    }
    assert json.loads(json.dumps(body))["interrupt"] is True


@pytest.mark.parametrize("value", [True, False])
def test_interrupt_stays_a_bool(value: bool) -> None:
    body = CallSettings("pb-1", interrupt=value).body("+34600000000", {})
    assert type(body["interrupt"]) is bool
    assert body["interrupt"] is value
    assert json.dumps(body["interrupt"]) == ("true" if value else "false")


def test_params_never_overwrite_phone_playbook_or_settings() -> None:
    hostile = {key: "EVIL" for key in RESERVED_KEYS} | {"interrupt": "yes", "firstname": "Ana"}
    settings = CallSettings("pb-1", voice_id="3", interrupt=False)
    body = settings.body("+34600000000", hostile)
    assert body == {
        "firstname": "Ana",
        "phone": "+34600000000",
        "playbook_id": "pb-1",
        "voice_id": "3",
        "interrupt": False,
    }
    # settings left unset are not filled in from the params either
    for key in ("version_id", "voice_model", "language"):
        assert key not in body


def test_reserved_keys_cover_every_field() -> None:
    assert {"phone", "playbook_id", "version_id", "voice_id", "voice_model", "language"} | {
        "interrupt"
    } == set(RESERVED_KEYS)


@given(
    params=st.dictionaries(
        st.one_of(st.sampled_from(sorted(RESERVED_KEYS)), st.text(max_size=12)),
        st.text(max_size=12),
        max_size=12,
    ),
    voice_id=st.one_of(st.none(), st.sampled_from(["1", "7"])),
    interrupt=st.one_of(st.none(), st.booleans()),
)
def test_body_property(
    params: dict[str, str], voice_id: str | None, interrupt: bool | None
) -> None:
    settings = CallSettings("pb-1", voice_id=voice_id, interrupt=interrupt)
    before = dict(params)
    body = settings.body("+34600000000", params)
    assert params == before  # not mutated
    assert body["phone"] == "+34600000000"
    assert body["playbook_id"] == "pb-1"
    assert body.get("voice_id") == voice_id
    assert body.get("interrupt") is interrupt
    for key in ("version_id", "voice_model", "language"):
        assert key not in body
    for key, value in params.items():
        if key not in RESERVED_KEYS:
            assert body[key] == value
    assert set(body) == {k for k in params if k not in RESERVED_KEYS} | {
        "phone",
        "playbook_id",
    } | ({"voice_id"} if voice_id else set()) | ({"interrupt"} if interrupt is not None else set())


# --- create_call: success -----------------------------------------------------------------------


def test_create_call_current_shape_and_request() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200, json={"success": True, "id": "c-123", "message": "Call processing started"}
        )

    assert create(handler) == Created("c-123")
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/call"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == BODY


def test_a_post_call_is_the_request_httpx_itself_would_build() -> None:
    """The client builds POST /call from headers made once (``_post``): the request must be
    byte for byte the one ``httpx.Request(content=...)`` makes, header order included."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"success": True, "id": f"c-{len(seen)}"})

    async def main() -> None:
        async with MeetzyClient(BASE, TOKEN, transport=httpx.MockTransport(handler)) as api:
            for body in (BODY, {**BODY, "firstname": "Zoë ✓", "note": 'a "quoted" line'}):
                await api.create_call(body)

    asyncio.run(main())
    for request in seen:
        content = request.content
        headers = {
            "Authorization": f"Bearer {TOKEN}",
            "Accept": "application/json",
            "Accept-Encoding": "gzip, deflate",
            "User-Agent": request.headers["User-Agent"],
            "Content-Type": "application/json",
        }
        expected = httpx.Request("POST", f"{BASE}/call", headers=headers, content=content)
        assert request.headers.raw == expected.headers.raw
        assert request.url == expected.url and request.method == "POST"
        assert request.headers["Content-Length"] == str(len(content))
    assert json.loads(seen[1].content)["firstname"] == "Zoë ✓"


def test_create_call_older_envelope() -> None:
    handler = answer(200, {"success": True, "data": {"call_id": "c-456", "status": "initiated"}})
    assert create(handler) == Created("c-456")


def test_create_call_id_is_stripped_and_numeric_ids_accepted() -> None:
    assert create(answer(200, {"success": True, "id": "  c-1 "})).call_id == "c-1"
    assert create(answer(200, {"success": True, "id": 98765})).call_id == "98765"


def test_base_url_trailing_slash() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"success": True, "id": "x"})

    async def go() -> None:
        async with MeetzyClient(BASE + "/", TOKEN, transport=httpx.MockTransport(handler)) as c:
            await c.create_call(BODY)

    asyncio.run(go())
    assert seen == [f"{BASE}/call"]


# --- create_call: status mapping ----------------------------------------------------------------


def test_400_with_error_object_is_rejected_with_code() -> None:
    body = {"success": False, "error": {"code": "invalid_phone", "message": "phone is not E.164"}}
    err = create_error(answer(400, body))
    assert type(err) is Rejected
    assert (err.status, err.code) == (400, "invalid_phone")
    assert str(err) == "HTTP 400 invalid_phone: phone is not E.164"


def test_400_with_message_only() -> None:
    err = create_error(answer(400, {"success": False, "message": "playbook_id is required"}))
    assert type(err) is Rejected
    assert (err.status, err.code) == (400, "")
    assert str(err) == "HTTP 400: playbook_id is required"


def test_400_with_error_string() -> None:
    err = create_error(answer(400, {"success": False, "error": "bad phone"}))
    assert type(err) is Rejected
    assert str(err) == "HTTP 400: bad phone"


def test_404_is_rejected() -> None:
    body = {"success": False, "error": {"code": "not_found", "message": "no such playbook"}}
    err = create_error(answer(404, body))
    assert type(err) is Rejected
    assert (err.status, err.code) == (404, "not_found")
    assert "no such playbook" in str(err)


def test_400_with_html_body_is_rejected() -> None:
    err = create_error(answer(400, text=HTML))
    assert type(err) is Rejected
    assert err.status == 400
    assert "not JSON" in str(err)


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors(status: int) -> None:
    body = {"success": False, "error": {"code": "unauthorized", "message": "bad token"}}
    err = create_error(answer(status, body))
    assert isinstance(err, AuthError)
    assert isinstance(err, Rejected)
    assert err.exit_code == 3
    assert (err.status, err.code) == (status, "unauthorized")
    assert "MEETZY_API_TOKEN" in str(err)


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_without_a_body(status: int) -> None:
    err = create_error(answer(status, text=""))
    assert isinstance(err, AuthError)
    assert err.status == status


def test_429_with_retry_after_seconds() -> None:
    err = create_error(answer(429, {"success": False}, headers={"Retry-After": "7"}))
    assert isinstance(err, RateLimited)
    assert isinstance(err, NotSent)
    assert err.retry_after == 7.0
    assert err.status == 429


def test_429_with_retry_after_http_date() -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    err = create_error(answer(429, text="", headers={"Retry-After": when}))
    assert isinstance(err, RateLimited)
    assert err.retry_after is not None
    assert 27.0 <= err.retry_after <= 31.0


def test_429_with_retry_after_in_the_past_is_zero() -> None:
    when = email.utils.formatdate(time.time() - 3600, usegmt=True)
    err = create_error(answer(429, text="", headers={"Retry-After": when}))
    assert isinstance(err, RateLimited)
    assert err.retry_after == 0.0


@pytest.mark.parametrize("header", [None, "", "soon", "-5"])
def test_429_without_a_usable_retry_after(header: str | None) -> None:
    headers = None if header is None else {"Retry-After": header}
    err = create_error(answer(429, text="slow down", headers=headers))
    assert isinstance(err, RateLimited)
    assert err.retry_after in (None, 0.0)
    if header in (None, "", "soon"):
        assert err.retry_after is None


@pytest.mark.parametrize("header", ["inf", "Infinity", "1e400"])
def test_429_with_non_finite_retry_after_does_not_pause_forever(header: str) -> None:
    err = create_error(answer(429, text="", headers={"Retry-After": header}))
    assert isinstance(err, RateLimited)
    assert err.retry_after is None or err.retry_after <= 300.0


def test_429_with_a_huge_retry_after_is_capped() -> None:
    err = create_error(answer(429, text="", headers={"Retry-After": "86400000"}))
    assert isinstance(err, RateLimited)
    assert err.retry_after == 300.0


def test_503_with_documented_error_body_is_not_sent() -> None:
    body = {"success": False, "error": {"code": "maintenance", "message": "back soon"}}
    err = create_error(answer(503, body))
    assert type(err) is NotSent
    assert (err.status, err.code) == (503, "maintenance")


@pytest.mark.parametrize(
    "handler",
    [answer(503, text=HTML), answer(503, text=""), answer(503, {"success": False, "message": "x"})],
    ids=["html", "empty", "message-only"],
)
def test_503_without_an_error_code_is_outcome_unknown(handler: Handler) -> None:
    err = create_error(handler)
    assert type(err) is OutcomeUnknown
    assert err.status == 503


@pytest.mark.parametrize("status", [500, 502, 504])
@pytest.mark.parametrize("json_body", [True, False], ids=["json", "html"])
def test_5xx_is_outcome_unknown(status: int, json_body: bool) -> None:
    body = {"success": False, "error": {"code": "server_error", "message": "oops"}}
    err = create_error(answer(status, body) if json_body else answer(status, text=HTML))
    assert type(err) is OutcomeUnknown
    assert err.status == status


def test_redirect_is_not_followed_and_outcome_unknown() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(302, headers={"Location": f"{BASE}/elsewhere"})

    err = create_error(handler)
    assert type(err) is OutcomeUnknown
    assert calls == [f"{BASE}/call"]


@pytest.mark.parametrize(
    "handler",
    [
        answer(200, text=HTML),
        answer(200, text=""),
        answer(200, {"success": True, "message": "Call processing started"}),
        answer(200, {"success": True, "id": ""}),
        answer(200, {"success": True, "id": None}),
        answer(200, {"success": True, "data": {"status": "initiated"}}),
        answer(200, {"success": False, "id": "c-1"}),
        answer(200, {"success": False, "message": "could not start"}),
        answer(200, ["c-1"]),
    ],
    ids=[
        "html",
        "empty",
        "no-id",
        "empty-id",
        "null-id",
        "envelope-no-id",
        "success-false-with-id",
        "success-false",
        "array",
    ],
)
def test_2xx_without_a_call_id_is_outcome_unknown(handler: Handler) -> None:
    err = create_error(handler)
    assert type(err) is OutcomeUnknown
    assert (err.status, err.code) == (200, "bad_answer")


def test_boolean_id_is_not_a_call_id() -> None:
    err = create_error(answer(200, {"success": True, "id": True}))
    assert type(err) is OutcomeUnknown


# --- transport exceptions -----------------------------------------------------------------------

EXPECTED_TRANSPORT_MAPPING: dict[str, type[SendError]] = {
    # nothing reached the server
    "ConnectError": NotSent,
    "ConnectTimeout": NotSent,
    "PoolTimeout": NotSent,
    "ProxyError": NotSent,
    "UnsupportedProtocol": NotSent,
    "LocalProtocolError": NotSent,
    # the request may have reached it
    "ReadTimeout": OutcomeUnknown,
    "WriteTimeout": OutcomeUnknown,
    "ReadError": OutcomeUnknown,
    "WriteError": OutcomeUnknown,
    "CloseError": OutcomeUnknown,
    "RemoteProtocolError": OutcomeUnknown,
    "ProtocolError": OutcomeUnknown,
    "NetworkError": OutcomeUnknown,
    "TimeoutException": OutcomeUnknown,
    "TransportError": OutcomeUnknown,
    "RequestError": OutcomeUnknown,
    "DecodingError": OutcomeUnknown,
    "TooManyRedirects": OutcomeUnknown,
    "HTTPStatusError": OutcomeUnknown,
    "HTTPError": OutcomeUnknown,
}


def test_every_httpx_error_has_an_expected_mapping() -> None:
    """A new httpx exception class must be placed on purpose (like httpx's own mapping test)."""
    names = {cls.__name__ for cls in all_http_errors()}
    assert "ConnectError" in names and "ReadTimeout" in names
    assert names == set(EXPECTED_TRANSPORT_MAPPING), names ^ set(EXPECTED_TRANSPORT_MAPPING)


@pytest.mark.parametrize("exc_type", all_http_errors(), ids=lambda c: c.__name__)
def test_every_httpx_error_maps_to_exactly_one_phase(exc_type: type[httpx.HTTPError]) -> None:
    err = create_error(raising(exc_type, "something broke"))
    assert isinstance(err, NotSent) != isinstance(err, OutcomeUnknown)
    assert not isinstance(err, Rejected)
    assert type(err) is EXPECTED_TRANSPORT_MAPPING[exc_type.__name__]
    assert err.status is None
    assert exc_type.__name__ in str(err)
    assert "api.meetzy.test" in str(err)
    assert isinstance(err.__cause__, exc_type)


@pytest.mark.parametrize("exc_type", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
def test_connect_phase_errors_are_not_sent(exc_type: type[httpx.HTTPError]) -> None:
    err = create_error(raising(exc_type))
    assert type(err) is NotSent
    assert err.code == "not_sent"


@pytest.mark.parametrize(
    ("exc_type", "code"),
    [
        (httpx.ReadTimeout, "timeout"),
        (httpx.WriteTimeout, "timeout"),
        (httpx.RemoteProtocolError, "answer_lost"),
        (httpx.ReadError, "answer_lost"),
    ],
)
def test_answer_phase_errors_are_outcome_unknown(
    exc_type: type[httpx.HTTPError], code: str
) -> None:
    err = create_error(raising(exc_type))
    assert type(err) is OutcomeUnknown
    assert err.code == code


def test_transport_error_with_empty_message() -> None:
    err = create_error(raising(httpx.ConnectError, ""))
    assert type(err) is NotSent
    assert "(ConnectError)" in str(err)


def test_list_calls_maps_transport_errors_too() -> None:
    with pytest.raises(NotSent):
        list_calls(raising(httpx.ConnectError))
    with pytest.raises(OutcomeUnknown):
        list_calls(raising(httpx.ReadTimeout))


# --- the token stays secret ---------------------------------------------------------------------


def test_token_not_in_repr() -> None:
    async def go() -> None:
        client = client_for(answer(200, {"success": True, "id": "x"}))
        try:
            assert TOKEN not in repr(client)
            assert TOKEN not in str(client)
            assert "hidden" in repr(client)
            assert BASE in repr(client)
        finally:
            await client.aclose()

    asyncio.run(go())


def assert_no_token(err: DialerError) -> None:
    for text in (str(err), err.message, repr(err), *map(str, err.args)):
        assert TOKEN not in text


ECHOES = [
    {"success": False, "error": {"code": "unauthorized", "message": f"bad token {TOKEN}"}},
    {"success": False, "error": {"code": f"tok_{TOKEN}", "message": "x"}},
    {"success": False, "message": f"Authorization: Bearer {TOKEN} is not valid"},
    {"success": False, "error": f"token={TOKEN}"},
]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500, 503])
@pytest.mark.parametrize("body", ECHOES, ids=["error.message", "error.code", "message", "error"])
def test_token_echoed_in_error_body_is_redacted(status: int, body: dict[str, Any]) -> None:
    err = create_error(answer(status, body))
    assert_no_token(err)
    assert "<token>" in str(err)


def test_token_echoed_in_a_transport_error_is_redacted() -> None:
    # A transport's text that may echo a header is not kept at all: only the error's type.
    for exc_type in (httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError):
        err = create_error(raising(exc_type, f"proxy said: Bearer {TOKEN}"))
        assert_no_token(err)
        assert f"({exc_type.__name__})" in str(err) and "Bearer" not in str(err)


def test_token_echoed_on_a_2xx_is_not_repeated() -> None:
    err = create_error(answer(200, {"success": False, "message": f"token {TOKEN}"}))
    assert_no_token(err)


def test_auth_error_message_has_no_token() -> None:
    err = create_error(answer(401, text=f"<html>Bearer {TOKEN} rejected</html>"))
    assert isinstance(err, AuthError)
    assert_no_token(err)


# --- token_from_env -----------------------------------------------------------------------------


def test_token_missing() -> None:
    with pytest.raises(ConfigError) as info:
        token_from_env({})
    assert "MEETZY_API_TOKEN" in str(info.value)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("value", ["", "   ", "\t\n "])
def test_token_whitespace_only(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        token_from_env({"MEETZY_API_TOKEN": value})
    assert "MEETZY_API_TOKEN" in str(info.value)


def test_token_from_env_is_stripped() -> None:
    assert token_from_env({"MEETZY_API_TOKEN": f"  {TOKEN}\n"}) == TOKEN


def test_token_from_file_argument(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"{TOKEN}\n", encoding="utf-8")
    assert token_from_env({}, token_file=str(path)) == TOKEN
    # the file wins over the variable
    assert token_from_env({"MEETZY_API_TOKEN": "other"}, token_file=str(path)) == TOKEN


def test_token_from_file_env(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}  \n", encoding="utf-8")
    env = {"MEETZY_API_TOKEN_FILE": str(path), "MEETZY_API_TOKEN": "other"}
    assert token_from_env(env) == TOKEN


def test_token_file_missing(tmp_path: Path) -> None:
    path = tmp_path / "nope"
    with pytest.raises(ConfigError) as info:
        token_from_env({"MEETZY_API_TOKEN": TOKEN}, token_file=str(path))
    assert str(path) in str(info.value)
    assert TOKEN not in str(info.value)


def test_token_file_empty(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(" \n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        token_from_env({"MEETZY_API_TOKEN_FILE": str(path)})
    assert str(info.value) == f"the token file {path} is empty"


# --- check_api_url ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.meetzy.io", "https://api.meetzy.io"),
        ("https://api.meetzy.io/", "https://api.meetzy.io"),
        ("  https://api.meetzy.io/v1/ ", "https://api.meetzy.io/v1"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000"),
        ("http://localhost", "http://localhost"),
        ("http://[::1]:9", "http://[::1]:9"),
    ],
)
def test_check_api_url_accepts(url: str, expected: str) -> None:
    assert check_api_url(url) == expected


@pytest.mark.parametrize("url", ["http://example.com", "http://api.meetzy.io"])
def test_check_api_url_refuses_clear_text(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_api_url(url)
    message = str(info.value)
    assert "in clear" in message
    assert "https://" in message


@pytest.mark.parametrize("url", ["ftp://api.meetzy.io", "api.meetzy.io", "https://", ""])
def test_check_api_url_refuses_non_http(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_api_url(url)
    assert "MEETZY_API_URL must be an http(s) URL" in str(info.value)


# --- list_calls ---------------------------------------------------------------------------------


def test_list_calls_current_shape() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "calls": [
                    {"id": "c-2", "to": "+34600000002", "status": "queued"},
                    {"id": "c-1", "to": "+34600000001", "status": "closed"},
                ]
            },
        )

    calls = list_calls(handler, {"daysFromNow": "1", "playbook_id": "pb-1"})
    assert calls == [
        {"id": "c-2", "to": "+34600000002", "status": "queued"},
        {"id": "c-1", "to": "+34600000001", "status": "closed"},
    ]
    (request,) = seen
    assert request.method == "GET"
    assert request.url.path == "/calls"
    assert dict(request.url.params) == {"daysFromNow": "1", "playbook_id": "pb-1"}
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_list_calls_bare_array_with_phone() -> None:
    calls = list_calls(answer(200, [{"id": "c-1", "phone": "+34600000001"}, "junk"]))
    assert calls == [{"id": "c-1", "phone": "+34600000001", "to": "+34600000001"}]


def test_list_calls_always_has_to() -> None:
    calls = list_calls(answer(200, {"calls": [{"id": "c-1"}]}))
    assert calls == [{"id": "c-1", "to": ""}]


@pytest.mark.parametrize("body", [{"data": []}, {"calls": "none"}, "text"])
def test_list_calls_unexpected_body(body: Any) -> None:
    with pytest.raises(OutcomeUnknown):
        list_calls(answer(200, body))


def test_list_calls_error_status() -> None:
    with pytest.raises(AuthError):
        list_calls(answer(401, {"success": False}))
