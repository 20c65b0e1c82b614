"""The Meetzy API simulator: validation, shapes, auth, faults, rate windows, call progression,
GET /calls, control endpoints, and a real loopback server (dropped and slow answers)."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from dialer.api.simulator import (
    CallRecord,
    SimConfig,
    SimServer,
    Simulator,
    _final_status,
    serve_forever,
)
from tests.conftest import free_port, wait_for_simulator

AUTH = {"Authorization": "Bearer sandbox-token"}
PHONE = "+34600000000"
LEAD = {"phone": PHONE, "playbook_id": "pb-1"}
DETAIL_KEYS = {
    "id",
    "playbook_id",
    "playbook_name",
    "version_id",
    "from",
    "to",
    "status",
    "duration",
    "transcript",
    "summary",
    "data",
    "success",
    "recording",
    "created_time",
}
LIST_KEYS = {
    "id",
    "created_time",
    "timestamp",
    "assistant_id",
    "from",
    "to",
    "status",
    "duration",
    "recording",
    "transcript",
    "success",
    "summary",
    "output",
    "data",
}
FINAL = {"closed", "no-answer", "voicemail", "busy", "failed", "recall-scheduled"}


def make(**config) -> Simulator:
    """A simulator without rate limits unless the test asks for them."""
    config.setdefault("per_second", None)
    config.setdefault("per_minute", None)
    return Simulator(SimConfig(**config))


def api(sim: Simulator, method: str, path: str, headers=None, **kwargs) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=sim.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
            return await client.request(
                method, path, headers=AUTH if headers is None else headers, **kwargs
            )

    return asyncio.run(go())


def post(sim: Simulator, body=None, **kwargs) -> httpx.Response:
    return api(sim, "POST", "/call", json=LEAD if body is None else body, **kwargs)


def code(response: httpx.Response) -> str:
    body = response.json()
    assert body["success"] is False and isinstance(body["error"]["message"], str)
    return body["error"]["code"]


# --- POST /call: shapes, auth, validation ---------------------------------------------------


def test_post_creates_a_call_and_answers_the_new_shape():
    sim = make()
    sent = {**LEAD, "firstname": "Ana", "interrupt": True, "voice_id": "3", "language": "EN"}
    response = post(sim, sent)
    assert response.status_code == 200
    answer = response.json()
    assert answer == {"success": True, "id": answer["id"], "message": "Call processing started"}
    [call] = sim.calls
    assert call.id == answer["id"] and uuid.UUID(call.id).version == 4
    assert (call.phone, call.playbook_id, call.body) == (PHONE, "pb-1", sent)
    assert abs(call.created_at - time.time()) < 5
    assert datetime.fromisoformat(call.created_time).timestamp() == pytest.approx(
        call.created_at, abs=0.001
    )
    assert sim.calls_for(PHONE) == [call] and sim.calls_for("+34600000009") == []
    [request] = sim.requests
    assert (request.method, request.path, request.phone, request.status, request.fault) == (
        "POST",
        "/call",
        PHONE,
        200,
        None,
    )


def test_old_shape_wraps_the_id_in_data():
    sim = make(response_shape="old")
    answer = post(sim).json()
    assert answer == {"success": True, "data": {"call_id": sim.calls[0].id, "status": "initiated"}}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "sandbox-token"},
        {"Authorization": "Basic sandbox-token"},
        {"Authorization": "Bearer "},
    ],
)
def test_a_missing_or_wrong_token_is_401_everywhere_and_creates_nothing(headers):
    sim = make()
    for response in (
        post(sim, headers=headers),
        api(sim, "GET", "/calls", headers=headers),
        api(sim, "GET", "/call/x", headers=headers),
    ):
        assert response.status_code == 401 and code(response) == "unauthorized"
        assert "sandbox-token" not in response.text
    assert sim.calls == []
    assert [r.status for r in sim.requests] == [401, 401, 401]
    assert sim.requests[0].phone == PHONE


def test_the_bearer_scheme_is_case_insensitive():
    assert post(make(), headers={"Authorization": "bearer sandbox-token"}).status_code == 200


@pytest.mark.parametrize(
    ("kwargs", "status", "error"),
    [
        (
            {"content": b"not json", "headers": {**AUTH, "Content-Type": "application/json"}},
            400,
            "invalid_body",
        ),
        ({"json": [LEAD]}, 400, "invalid_body"),
        ({"json": "text"}, 400, "invalid_body"),
        (
            {
                "content": b'{"phone": "+34600000000", "playbook_id": "pb"}',
                "headers": {**AUTH, "Content-Type": "text/plain"},
            },
            400,
            "invalid_body",
        ),
        ({"json": {"phone": PHONE}}, 400, "missing_playbook"),
        ({"json": {"phone": "bad"}}, 400, "missing_playbook"),  # the playbook is checked first
        ({"json": {**LEAD, "playbook_id": ""}}, 400, "missing_playbook"),
        ({"json": {**LEAD, "playbook_id": "  "}}, 400, "missing_playbook"),
        ({"json": {**LEAD, "playbook_id": 7}}, 400, "missing_playbook"),
        ({"json": {"playbook_id": "pb"}}, 400, "invalid_phone"),
        ({"json": {**LEAD, "phone": "600000000"}}, 400, "invalid_phone"),
        ({"json": {**LEAD, "phone": "+0600000000"}}, 400, "invalid_phone"),
        ({"json": {**LEAD, "phone": "+123456"}}, 400, "invalid_phone"),  # 6 digits: too short
        ({"json": {**LEAD, "phone": "+1234567890123456"}}, 400, "invalid_phone"),  # 16: too long
        ({"json": {**LEAD, "phone": PHONE + "\n"}}, 400, "invalid_phone"),
        ({"json": {**LEAD, "phone": 34600000000}}, 400, "invalid_phone"),
        ({"json": {**LEAD, "phone": "bad", "voice_id": "9"}}, 400, "invalid_phone"),
        ({"json": {**LEAD, "voice_id": "8"}}, 400, "invalid_voice_id"),
        ({"json": {**LEAD, "voice_id": "0"}}, 400, "invalid_voice_id"),
        ({"json": {**LEAD, "voice_id": 6}}, 400, "invalid_voice_id"),
        ({"json": {**LEAD, "voice_id": "9", "voice_model": "x"}}, 400, "invalid_voice_id"),
        ({"json": {**LEAD, "voice_model": "slow"}}, 400, "invalid_voice_model"),
        ({"json": {**LEAD, "voice_model": "x", "interrupt": 1}}, 400, "invalid_voice_model"),
        ({"json": {**LEAD, "interrupt": "true"}}, 400, "invalid_interrupt"),
        ({"json": {**LEAD, "interrupt": None}}, 400, "invalid_interrupt"),
        ({"json": {**LEAD, "interrupt": 0, "age": 3}}, 400, "invalid_interrupt"),
        ({"json": {**LEAD, "age": 42}}, 400, "invalid_param"),
        ({"json": {**LEAD, "email": None}}, 400, "invalid_param"),
        ({"json": {**LEAD, "version_id": 3}}, 400, "invalid_param"),
        ({"json": {**LEAD, "language": ["ES"]}}, 400, "invalid_param"),
    ],
)
def test_validation_refuses_in_the_documented_order_and_creates_nothing(kwargs, status, error):
    sim = make()
    response = api(sim, "POST", "/call", **kwargs)
    assert response.status_code == status and code(response) == error
    assert sim.calls == [] and [r.status for r in sim.requests] == [status]


def test_invalid_param_names_the_key():
    response = post(make(), {**LEAD, "program_of_interest": 12})
    assert code(response) == "invalid_param"
    assert "program_of_interest" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "extra",
    [
        {"voice_id": "1"},
        {"voice_id": "7"},
        {"voice_model": "fast"},
        {"voice_model": "human"},
        {"interrupt": False},
        {"version_id": "v2", "language": "FR"},
        {"note": ""},
        {"phone": "+1234567"},
        {"phone": "+123456789012345"},
    ],
)
def test_valid_edge_values_are_accepted(extra):
    sim = make()
    assert post(sim, {**LEAD, **extra}).status_code == 200 and len(sim.calls) == 1


def test_known_playbooks_only_when_configured():
    sim = make(playbooks={"pb-1"})
    unknown = post(sim, {**LEAD, "playbook_id": "pb-2"})
    assert unknown.status_code == 404 and code(unknown) == "playbook_not_found"
    before_phone = post(sim, {"playbook_id": "pb-2", "phone": "bad"})
    assert before_phone.status_code == 404
    assert post(sim).status_code == 200 and [c.playbook_id for c in sim.calls] == ["pb-1"]
    assert post(make(), {**LEAD, "playbook_id": "anything"}).status_code == 200


def test_bad_config_is_refused_at_construction():
    with pytest.raises(ValueError, match="unknown faults"):
        SimConfig(faults={PHONE: ["explode"]})
    with pytest.raises(ValueError, match="unknown faults"):
        SimConfig(fault_rates={"timeout": 0.1})
    with pytest.raises(ValueError, match="response_shape"):
        SimConfig(response_shape="v3")


def test_latency_delays_every_answer():
    sim = make(latency=0.15)
    for headers in (AUTH, {}):
        started = time.monotonic()
        post(sim, headers=headers)
        assert time.monotonic() - started >= 0.15
    assert [r.status for r in sim.requests] == [200, 401]


# --- faults -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "error", "created"),
    [
        ("503_before", 503, "service_unavailable", False),
        ("500_after", 500, "server_error", True),
        ("429", 429, "rate_limited", False),
    ],
)
def test_error_faults(fault, status, error, created):
    sim = make(faults={PHONE: [fault]})
    response = post(sim)
    assert response.status_code == status and code(response) == error
    assert len(sim.calls_for(PHONE)) == int(created)
    assert (sim.requests[0].status, sim.requests[0].fault) == (status, fault)
    if fault == "429":
        assert response.headers["Retry-After"] == "1"


def test_garbage_200_is_html_after_creating_the_call():
    sim = make(faults={PHONE: ["garbage_200"]})
    response = post(sim)
    assert response.status_code == 200 and response.text == "<html>proxy</html>"
    assert response.headers["content-type"].startswith("text/html")
    assert len(sim.calls) == 1 and sim.requests[0].fault == "garbage_200"


def test_slow_answers_late_but_the_call_exists_at_once():
    sim = make(faults={PHONE: ["slow"]}, slow_seconds=0.2)
    started = time.monotonic()
    response = post(sim)
    assert time.monotonic() - started >= 0.2
    assert response.status_code == 200 and response.json()["id"] == sim.calls[0].id


def test_a_phone_queue_is_consumed_one_fault_per_post_and_only_for_that_phone():
    other = "+34600000001"
    sim = make(faults={PHONE: ["503_before", "500_after"]})
    assert post(sim, {**LEAD, "phone": other}).status_code == 200
    assert post(sim, {**LEAD, "phone": "bad"}).status_code == 400  # invalid: no fault consumed
    assert [post(sim).status_code for _ in range(3)] == [503, 500, 200]
    assert sim.config.faults[PHONE] == []
    assert [r.fault for r in sim.requests] == [None, None, "503_before", "500_after", None]


def test_fault_rates_are_random_but_seeded():
    def statuses(seed: int) -> list[int]:
        sim = make(fault_rates={"503_before": 0.3, "500_after": 0.2}, seed=seed)
        return [post(sim, {**LEAD, "phone": f"+3460000{n:04d}"}).status_code for n in range(60)]

    first = statuses(7)
    counts = Counter(first)
    assert set(counts) == {200, 500, 503} and 6 <= counts[503] <= 32 and 3 <= counts[500] <= 24
    assert statuses(7) == first
    assert statuses(8) != first


def test_a_queued_fault_wins_over_fault_rates():
    sim = make(faults={PHONE: ["garbage_200"]}, fault_rates={"503_before": 1.0})
    assert [post(sim).status_code for _ in range(3)] == [200, 503, 503]
    assert [r.fault for r in sim.requests] == ["garbage_200", "503_before", "503_before"]


def test_faults_can_be_set_while_running():
    sim = make()
    assert post(sim).status_code == 200
    sim.config.faults[PHONE] = ["503_before"]
    assert post(sim).status_code == 503


# --- rate limits --------------------------------------------------------------------------


def test_sliding_windows_with_a_fake_clock():
    sim = Simulator(SimConfig(per_second=3, per_minute=5))
    now = [100.0]
    sim.clock = lambda: now[0]

    def attempt(at: float) -> httpx.Response:
        now[0] = at
        return post(sim)

    assert [attempt(100.0).status_code for _ in range(3)] == [200, 200, 200]
    refused = attempt(100.0)
    assert refused.status_code == 429 and code(refused) == "rate_limited"
    assert refused.headers["Retry-After"] == "1"
    assert attempt(100.5).headers["Retry-After"] == "1"
    assert attempt(100.999).status_code == 429
    assert attempt(101.0).status_code == 200  # the first three are exactly 1.0 s old: out
    assert attempt(101.0).status_code == 200  # 5 admitted in the minute
    per_minute = attempt(101.0)
    assert per_minute.status_code == 429 and per_minute.headers["Retry-After"] == "59"
    assert attempt(159.999).headers["Retry-After"] == "1"
    assert attempt(160.0).status_code == 200
    assert len(sim.calls) == 6
    admitted = [r.at for r in sim.requests if r.status != 429]
    assert all(sum(0 <= t - a < 1.0 for a in admitted) <= 3 for t in admitted)
    assert all(sum(0 <= t - a < 60.0 for a in admitted) <= 5 for t in admitted)


def test_all_endpoints_share_one_budget_and_refusals_do_not_spend_it():
    sim = Simulator(SimConfig(per_second=3, per_minute=None))
    sim.clock = lambda: 50.0
    assert [post(sim, headers={}).status_code for _ in range(4)] == [401] * 4
    assert post(sim).status_code == 200
    assert api(sim, "GET", "/calls").status_code == 200
    assert api(sim, "GET", f"/call/{sim.calls[0].id}").status_code == 200
    for response in (post(sim), api(sim, "GET", "/calls"), post(sim, headers={})):
        assert response.status_code in (429, 401)
    assert [r.status for r in sim.requests][-3:] == [429, 429, 401]
    assert len(sim.calls) == 1


def test_429_fault_requests_count_as_admitted():
    sim = Simulator(SimConfig(per_second=2, per_minute=None, faults={PHONE: ["429"]}))
    sim.clock = lambda: 10.0
    assert [post(sim).status_code for _ in range(3)] == [429, 200, 429]
    assert [r.fault for r in sim.requests] == ["429", None, None]


def test_limits_off_and_real_clock():
    unlimited = Simulator(SimConfig(per_second=None, per_minute=None))
    unlimited.clock = lambda: 1.0
    assert {post(unlimited).status_code for _ in range(30)} == {200}
    limited = Simulator(SimConfig(per_second=3, per_minute=5))
    statuses = [post(limited).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


# --- GET /call/{id} -----------------------------------------------------------------------


def test_status_progresses_with_the_age_of_the_call():
    sim = make(ring_seconds=2.0, talk_seconds=5.0)
    sent = {**LEAD, "firstname": "Ana", "version_id": "v3", "voice_id": "2"}
    call_id = post(sim, sent).json()["id"]
    [call] = sim.calls

    def seen(age: float) -> dict:
        call.created_at = time.time() - age
        response = api(sim, "GET", f"/call/{call_id}")
        assert response.status_code == 200
        return response.json()

    detail = seen(0.0)
    assert set(detail) == DETAIL_KEYS
    assert (detail["status"], detail["duration"], detail["to"], detail["id"]) == (
        "queued",
        0,
        PHONE,
        call_id,
    )
    assert detail["data"] == {"firstname": "Ana"} and detail["version_id"] == "v3"
    assert detail["playbook_id"] == "pb-1" and detail["from"].startswith("+")
    assert seen(1.0)["status"] == "ringing"
    assert (seen(4.0)["status"], seen(4.0)["duration"]) == ("open", 2)
    final = seen(10.0)
    assert final["status"] == _final_status(call_id) and final["status"] in FINAL
    assert final["success"] is (final["status"] == "closed")


def test_final_details_match_the_status():
    sim = make(ring_seconds=0.0, talk_seconds=0.0)
    seen: dict[str, dict] = {}
    for n in range(800):  # recall-scheduled is 2%: all six appear but for odds of 1e-7
        call_id = post(sim, {**LEAD, "phone": f"+3460000{n:04d}"}).json()["id"]
        if len(seen) == len(FINAL):
            break
        detail = api(sim, "GET", f"/call/{call_id}").json()
        seen.setdefault(detail["status"], detail)
    assert set(seen) == FINAL
    closed = seen["closed"]
    assert closed["duration"] > 0 and closed["recording"].endswith(".mp3")
    assert "Agent:" in closed["transcript"] and closed["summary"]
    for status in ("no-answer", "busy", "failed"):
        assert seen[status]["duration"] == 0 and seen[status]["transcript"] is None


def test_tiny_ring_and_talk_times_reach_a_final_status_quickly():
    sim = make(ring_seconds=0.1, talk_seconds=0.1)
    call_id = post(sim).json()["id"]
    assert api(sim, "GET", f"/call/{call_id}").json()["status"] in ("queued", "ringing")
    time.sleep(0.25)
    assert api(sim, "GET", f"/call/{call_id}").json()["status"] in FINAL


def test_final_statuses_follow_the_documented_mix():
    finals = Counter(_final_status(str(uuid.UUID(int=n * 7919))) for n in range(20000))
    expected = {
        "closed": 55,
        "no-answer": 20,
        "voicemail": 10,
        "busy": 8,
        "failed": 5,
        "recall-scheduled": 2,
    }
    for status, percent in expected.items():
        assert abs(finals[status] / 200 - percent) < 1.5, (status, finals[status])
    assert _final_status("abc") == _final_status("abc")


def test_an_unknown_call_is_404():
    sim = make()
    response = api(sim, "GET", f"/call/{uuid.uuid4()}")
    assert response.status_code == 404 and code(response) == "not_found"
    assert sim.requests[0].status == 404


# --- GET /calls ---------------------------------------------------------------------------


def seeded_calls(sim: Simulator) -> list[str]:
    """Three calls: 2024-01-10 12:00:00 UTC on pb-a, two days ago on pb-b, now on pb-a."""
    ids = []
    for n, (playbook, created) in enumerate(
        [
            ("pb-a", datetime(2024, 1, 10, 12, tzinfo=UTC).timestamp()),
            ("pb-b", time.time() - 2 * 86400),
            ("pb-a", time.time()),
        ]
    ):
        post(sim, {"phone": f"+3460000000{n}", "playbook_id": playbook, "name": f"lead {n}"})
        sim.calls[-1].created_at = created
        ids.append(sim.calls[-1].id)
    return ids


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, [2, 1]),
        ({"daysFromNow": "1"}, [2]),
        ({"daysFromNow": "90"}, [2, 1]),
        ({"playbook_id": "pb-a", "daysFromNow": "3"}, [2]),
        ({"playbook_id": "pb-b"}, [1]),
        ({"status": "queued"}, [2]),
        ({"status": "wmat"}, []),  # a valid status no simulated call reaches
        ({"startDate": "2024-01-10", "endDate": "2024-01-10"}, [0]),
        ({"startDate": "2024-01-10 12:00:00", "endDate": "2024-01-10 12:00:00"}, [0]),
        ({"startDate": "2024-01-10 12:00:01"}, [2, 1]),
        ({"endDate": "2024-01-09"}, []),
        ({"startDate": "2024-01-01", "playbook_id": "pb-a"}, [2, 0]),
    ],
)
def test_list_filters_newest_first(query, expected):
    sim = make()
    ids = seeded_calls(sim)
    response = api(sim, "GET", "/calls", params=query)
    assert response.status_code == 200
    items = response.json()["calls"]
    assert [item["id"] for item in items] == [ids[n] for n in expected]
    for item in items:
        assert set(item) == LIST_KEYS and item["data"] == {"name": item["data"]["name"]}
        call = next(c for c in sim.calls if c.id == item["id"])
        assert (item["to"], item["assistant_id"]) == (call.phone, call.playbook_id)


def test_old_shape_lists_a_bare_array_with_phone():
    sim = make(response_shape="old")
    ids = seeded_calls(sim)
    items = api(sim, "GET", "/calls").json()
    assert isinstance(items, list) and [item["id"] for item in items] == [ids[2], ids[1]]
    assert items[0]["phone"] == "+34600000002" and "to" not in items[0]


@pytest.mark.parametrize(
    "query",
    [
        {"daysFromNow": "0"},
        {"daysFromNow": "91"},
        {"daysFromNow": "two"},
        {"daysFromNow": "-1"},
        {"startDate": "10/01/2024"},
        {"endDate": "2024-01-10T12:00:00"},
        {"startDate": ""},
        {"startDate": "2024-02-01", "endDate": "2024-01-01"},
        {"startDate": "2024-01-01", "daysFromNow": "5"},
        {"status": "done"},
    ],
)
def test_bad_list_queries_are_400(query):
    sim = make()
    response = api(sim, "GET", "/calls", params=query)
    assert response.status_code == 400 and code(response) == "invalid_query"
    assert sim.requests[-1].status == 400


# --- routes and control endpoints ---------------------------------------------------------


def test_unknown_routes_and_methods_use_the_error_body():
    sim = make()
    missing = api(sim, "GET", "/v2/call")
    assert missing.status_code == 404 and code(missing) == "not_found"
    wrong = api(sim, "DELETE", "/call")
    assert wrong.status_code == 405 and code(wrong) == "method_not_allowed"
    assert sim.requests == []


def test_control_endpoints_need_the_token_spend_no_budget_and_are_not_recorded():
    """Issue 15, finding 12: the inspection endpoints serve lead bodies, so only to the token."""
    sim = Simulator(SimConfig(per_second=1, per_minute=1))
    assert post(sim).status_code == 200
    for path in ("/_sim/calls", "/_sim/requests"):
        for headers in ({}, {"Authorization": "Bearer wrong-token"}):
            refused = api(sim, "GET", path, headers=headers)
            assert refused.status_code == 401 and "calls" not in refused.json()
    for _ in range(3):
        calls = api(sim, "GET", "/_sim/calls")
        recorded = api(sim, "GET", "/_sim/requests")
    assert calls.json() == {"calls": [asdict(c) for c in sim.calls]}
    assert recorded.json() == {"requests": [asdict(r) for r in sim.requests]}
    assert len(sim.requests) == 1
    assert CallRecord(**calls.json()["calls"][0]) == sim.calls[0]


# --- a real server on 127.0.0.1 -----------------------------------------------------------


def test_server_round_trip_and_stop():
    sim = Simulator()
    with SimServer(sim) as server:
        assert server.url.startswith("http://127.0.0.1:") and server.port > 0
        with httpx.Client(base_url=server.url, headers=AUTH) as client:
            call_id = client.post("/call", json=LEAD).json()["id"]
            assert client.get(f"/call/{call_id}").json()["to"] == PHONE
            assert client.get("/_sim/calls").json()["calls"][0]["id"] == call_id
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/_sim/calls", timeout=1.0)


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_drop_after_breaks_the_connection_but_the_call_exists():
    sim = Simulator(SimConfig(faults={PHONE: ["drop_after"]}))
    errors = Collect()
    with SimServer(sim) as server, httpx.Client(base_url=server.url, headers=AUTH) as client:
        logging.getLogger("uvicorn.error").addHandler(errors)  # after Config() configured it
        try:
            with pytest.raises(httpx.RemoteProtocolError, match="peer closed connection"):
                client.post("/call", json=LEAD)
        finally:
            logging.getLogger("uvicorn.error").removeHandler(errors)
        assert errors.records == []  # the simulated drop logs no traceback
        assert len(sim.calls_for(PHONE)) == 1
        assert (sim.requests[0].status, sim.requests[0].fault) == (200, "drop_after")
        again = client.post("/call", json=LEAD)  # the fault was consumed; a new connection works
        assert again.status_code == 200 and len(sim.calls_for(PHONE)) == 2


def test_slow_times_the_client_out_and_stop_does_not_wait_for_it():
    sim = Simulator(SimConfig(faults={PHONE: ["slow"]}, slow_seconds=1.0))
    server = SimServer(sim)
    client = httpx.Client(base_url=server.start(), headers=AUTH, timeout=0.2)
    with client, pytest.raises(httpx.ReadTimeout):
        client.post("/call", json=LEAD)
    assert len(sim.calls_for(PHONE)) == 1 and sim.requests[0].fault == "slow"
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 0.6


def test_stopping_during_a_slow_answer_loses_it_rather_than_answering_200():
    sim = Simulator(SimConfig(faults={PHONE: ["slow"]}, slow_seconds=5.0))
    server = SimServer(sim)
    url = server.start()
    outcome: list[object] = []

    def waiting_client() -> None:
        try:
            outcome.append(httpx.post(f"{url}/call", json=LEAD, headers=AUTH, timeout=10))
        except httpx.TransportError as exc:
            outcome.append(exc)

    client = threading.Thread(target=waiting_client)
    client.start()
    deadline = time.monotonic() + 5
    while not sim.calls and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    server.stop()
    client.join(5)
    assert time.monotonic() - started < 1.0
    assert len(outcome) == 1 and isinstance(outcome[0], httpx.RemoteProtocolError)
    assert len(sim.calls_for(PHONE)) == 1


def test_only_loopback_hosts_are_served():
    for host in ("0.0.0.0", "192.168.1.10", "example.com", "::"):
        with pytest.raises(ValueError, match="loopback"):
            SimServer(Simulator(), host=host)
    with pytest.raises(ValueError, match="loopback"):
        serve_forever(Simulator(), host="0.0.0.0", port=free_port())
    assert SimServer(Simulator(), host="localhost").host == "127.0.0.1"


def test_a_fixed_port_can_be_reused_right_after_stop():
    port = free_port()
    sim = Simulator()
    server = SimServer(sim, port=port)
    assert server.start() == f"http://127.0.0.1:{port}"
    with pytest.raises(RuntimeError, match="already started"):
        server.start()
    server.stop()
    with SimServer(sim, port=port) as again:
        assert httpx.post(f"{again.url}/call", json=LEAD, headers=AUTH).status_code == 200
    assert len(sim.calls) == 1


def test_serve_forever_in_another_process_prints_nothing_and_exposes_its_record():
    port = free_port()
    script = f"from dialer.api.simulator import *; serve_forever(Simulator(), port={port})"
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=Path(__file__).parents[1],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_simulator(base, process)
        call_id = httpx.post(f"{base}/call", json=LEAD, headers=AUTH).json()["id"]
        listed = httpx.get(f"{base}/_sim/calls", headers=AUTH).json()["calls"]
        assert [c["id"] for c in listed] == [call_id]
        recorded = httpx.get(f"{base}/_sim/requests", headers=AUTH).json()["requests"]
        assert recorded[0]["status"] == 200
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    assert (out, err) == (b"", b"")
    assert process.returncode == -signal.SIGTERM


# --- outcomes set per phone, and calls kept across restarts -------------------------------------


def test_queued_outcomes_decide_each_call_of_that_phone_in_order():
    sim = make(ring_seconds=0.0, talk_seconds=0.0, outcomes={PHONE: ["busy", "closed"]})
    ids = [post(sim, LEAD).json()["id"] for _ in range(3)]
    other = post(sim, {**LEAD, "phone": "+34600000001"}).json()["id"]
    time.sleep(0.01)
    got = [api(sim, "GET", f"/call/{i}").json()["status"] for i in ids]
    assert got[:2] == ["busy", "closed"]
    assert got[2] == _final_status(ids[2])  # the queue ran out: the mix decides again
    assert api(sim, "GET", f"/call/{other}").json()["status"] == _final_status(other)
    assert sim.config.outcomes == {PHONE: []}  # consumed in place


def test_unknown_outcomes_are_refused_at_construction():
    with pytest.raises(ValueError, match=r"unknown outcomes \['answered'\]"):
        SimConfig(outcomes={PHONE: ["answered"]})


def test_a_store_keeps_created_calls_for_the_next_simulator(tmp_path):
    store = tmp_path / "calls.jsonl"
    first = make(store=str(store), ring_seconds=0.0, talk_seconds=0.0)
    call_id = post(first, LEAD).json()["id"]
    with open(store, "a", encoding="utf-8") as handle:
        handle.write('{"id": "torn')  # a line a crash cut short is skipped
    second = make(store=str(store), ring_seconds=0.0, talk_seconds=0.0)
    assert [c.id for c in second.calls] == [call_id]
    detail = api(second, "GET", f"/call/{call_id}").json()
    assert detail["to"] == PHONE and detail["status"] == _final_status(call_id)
    assert make(store=str(tmp_path / "none.jsonl")).calls == []  # a missing store: no calls


# --- each version its own outcome mix ---------------------------------------------------------


def test_each_version_ends_its_calls_in_its_own_mix_the_same_every_time():
    """``version_outcomes``: version B's calls are closed far more often than A's; a version it
    does not name (and no version) keeps FINAL_MIX; any 100 calls of a version follow its mix
    exactly; the same seed gives the same outcomes; a bad mix is refused."""
    mixes = {"A": (("closed", 20), ("no-answer", 80)), "B": (("closed", 80), ("busy", 20))}

    def finals(seed: int) -> dict[str, list[str]]:
        sim = make(version_outcomes=mixes, seed=seed)
        for version in ("A", "B"):
            for i in range(200):
                body = {**LEAD, "phone": f"+3461234{i:04d}", "version_id": version}
                assert post(sim, body).status_code == 200
        return {v: [c.final for c in sim.calls if c.body["version_id"] == v] for v in "AB"}

    found = finals(7)
    assert set(found["A"]) == {"closed", "no-answer"} and set(found["B"]) == {"closed", "busy"}
    assert found["A"].count("closed") == 40 and found["B"].count("closed") == 160  # exactly
    assert 5 <= found["A"][:30].count("closed") <= 7  # and close to it in fewer calls
    assert finals(7) == found and finals(8) != found
    other = make(version_outcomes=mixes)
    post(other, {**LEAD, "version_id": "C"})
    post(other, LEAD)
    assert [c.final for c in other.calls] == ["", ""]  # fixed by their ids, as FINAL_MIX says
    with pytest.raises(ValueError, match="must add up to 100"):
        SimConfig(version_outcomes={"A": (("closed", 50),)})
    with pytest.raises(ValueError, match="unknown outcomes"):
        SimConfig(version_outcomes={"A": (("won", 100),)})
