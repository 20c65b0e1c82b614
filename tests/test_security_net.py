"""Issue 15, the network and terminal part: proxies, the token and URL, bounded answers, deep
JSON, escape sequences, call ids. Each test names the finding it proves; those about the CLI
run the installed ``dialer`` against servers on 127.0.0.1, and assert from the simulator's own
record that nobody was dialed twice (or at all, when nothing may be sent)."""

from __future__ import annotations

import asyncio
import functools
import gzip
import http.server
import json
import os
import subprocess
import threading
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from dialer.api.client import MAX_ANSWER_BYTES, MeetzyClient, _transport_detail, redact
from dialer.campaign import Settings
from dialer.engine.run import SyncSummary, run_campaign
from dialer.errors import ConfigError, OutcomeUnknown, Rejected
from dialer.model import Status
from dialer.reports.report import sync_lines
from dialer.terminal import visible
from tests.conftest import STATE_HOME, TOKEN, dialer_exe, free_port, mobiles, read_rows, write_leads

BODY = {"phone": "+34612340000", "playbook_id": "pb"}
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b[31mall leads called OK\x1b[0m\r\u202eevil"


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed CLI with a clean environment (no MEETZY_*, no proxy) plus ``env``."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("MEETZY_") and "proxy" not in k.lower()}  # fmt: skip
    base["XDG_STATE_HOME"] = STATE_HOME
    return subprocess.run([dialer_exe(), *args], env=base | env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


class Recorder(http.server.ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 that records each request and answers ``reply(path)``."""

    def __init__(self, reply: Callable[[str, str], tuple[int, bytes]]) -> None:
        self.seen: list[str] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                recorder.seen.append(f"{self.command} {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                status, body = reply(self.command, self.path)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_CONNECT = _any

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> Recorder:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
        self.server_close()


def proxy_env(proxy: str) -> dict[str, str]:
    names = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
    return {name: proxy for name in names}


# --- finding 2: no proxy for loopback ------------------------------------------------------


def test_finding2_a_proxy_never_carries_a_loopback_or_sandbox_run(sim, tmp_path: Path) -> None:
    leads = write_leads(tmp_path / "leads.csv", mobiles(3))
    with Recorder(lambda method, path: (502, b"{}")) as proxy:
        real = cli("run", str(leads), "--playbook", "pb", MEETZY_API_URL=sim.url,
                   MEETZY_API_TOKEN=TOKEN, **proxy_env(proxy.url))  # fmt: skip
        sandboxed = cli("run", str(leads), "--playbook", "pb", "--sandbox", **proxy_env(proxy.url))
    assert real.returncode == 0, real.stderr
    assert sandboxed.returncode == 0, sandboxed.stderr
    assert proxy.seen == []  # neither the token nor a lead went through the proxy
    assert sorted(c.phone for c in sim.calls) == mobiles(3)  # each dialed once, directly
    # A dead proxy in the environment does not break a sandbox run either.
    dead = proxy_env(f"http://127.0.0.1:{free_port()}")
    again = cli("run", str(leads), "--playbook", "pb", "--sandbox",
                "--output", str(tmp_path / "other.csv"), **dead)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert [r["status"] for r in read_rows(tmp_path / "other.csv")] == ["called"] * 3


# --- finding 3: the token and the URL checked at start ---------------------------------------


@pytest.mark.parametrize(
    "token", [f"{TOKEN}\r\nX-Evil: 1", f"{TOKEN[:8]} {TOKEN[8:]}", f"{TOKEN}é", f"{TOKEN}\x1b"]
)
def test_finding3_a_malformed_token_is_refused_before_anything(
    sim, tmp_path: Path, token: str
) -> None:
    leads = write_leads(tmp_path / "leads.csv", mobiles(2))
    token_file = tmp_path / "token"
    token_file.write_text(f"  {token}\n", encoding="utf-8")
    proc = cli("run", str(leads), "--playbook", "pb", "--token-file", str(token_file),
               MEETZY_API_URL=sim.url)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the token file")
    assert "internal error" not in proc.stderr and "Evil" not in proc.stderr
    assert TOKEN[8:] not in proc.stderr
    assert sim.requests == [] and sim.calls == []  # nothing was sent
    assert not (tmp_path / "leads.results.csv").exists()  # and no lead left dialing


def test_finding3_a_token_file_s_surrounding_white_space_is_stripped(sim, tmp_path: Path) -> None:
    leads = write_leads(tmp_path / "leads.csv", mobiles(1))
    token_file = tmp_path / "token"
    token_file.write_text(f"\n {TOKEN}\r\n", encoding="utf-8")
    proc = cli("run", str(leads), "--playbook", "pb", "--token-file", str(token_file),
               MEETZY_API_URL=sim.url)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert [c.phone for c in sim.calls] == mobiles(1)


def test_finding3_a_url_with_credentials_is_refused(sim, tmp_path: Path) -> None:
    leads = write_leads(tmp_path / "leads.csv", mobiles(1))
    url = sim.url.replace("http://", "http://admin:hunter2-secret@")
    proc = cli("run", str(leads), "--playbook", "pb", MEETZY_API_URL=url, MEETZY_API_TOKEN=TOKEN)
    assert proc.returncode == 2, proc.stderr
    assert "credentials" in proc.stderr and "hunter2" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1
    assert sim.requests == [] and not (tmp_path / "leads.results.csv").exists()


def test_finding3_the_library_refuses_a_malformed_token_before_the_results(
    sim, tmp_path: Path
) -> None:
    settings = Settings(leads=write_leads(tmp_path / "l.csv", mobiles(1)), playbook="pb",
                        output=tmp_path / "l.results.csv")  # fmt: skip
    with pytest.raises(ConfigError, match=r"white space|control"):
        run_campaign(settings, api_url=sim.url, token=f"{TOKEN}\nX")
    assert sim.requests == [] and not settings.output.exists()


def test_finding3_redaction_covers_every_form_a_header_is_echoed_in() -> None:
    import base64
    from urllib.parse import quote

    header = f"Authorization: Bearer {TOKEN}"
    forms = [header, repr(header.encode()), quote(header), quote(header, safe=""),
             base64.b64encode(header.encode()).decode(),
             base64.b64encode(f"x{header}\r\n".encode()).decode(),
             base64.urlsafe_b64encode(f"xy{header}".encode()).decode(),
             header.encode("unicode_escape").decode()]  # fmt: skip
    for form in forms:
        hidden = redact(f"echo: {form}", TOKEN)
        assert TOKEN not in hidden and TOKEN[4:-4] not in hidden, form
        assert base64.b64encode(TOKEN.encode()).decode()[4:-4] not in hidden, form
    # A transport's text that may echo a header is not kept at all.
    echoed = httpx.LocalProtocolError(f"Illegal header value b'Bearer {TOKEN}\\r\\nX'")
    assert _transport_detail(echoed) == "LocalProtocolError"
    assert _transport_detail(httpx.ConnectError("connection refused")).endswith("refused")


# --- findings 4 and 5: bounded answers, deep JSON -------------------------------------------


class Lazy(httpx.AsyncByteStream):
    """A body produced as it is read: ``chunks`` pieces of ``chunk`` bytes (never held whole)."""

    def __init__(self, chunk: bytes, chunks: int) -> None:
        self.chunk, self.chunks, self.sent = chunk, chunks, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.sent += 1
            yield self.chunk


@functools.cache
def gzip_bomb(unpacked_mib: int, wbits: int = 31) -> bytes:
    """A gzip (``wbits`` 31) or zlib (15) body of ``unpacked_mib`` MiB of zeros (about 1 KiB
    packed per MiB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = bytes(1 << 20)
    return b"".join([*(packer.compress(block) for _ in range(unpacked_mib)), packer.flush()])


def client_answering(respond: Callable[[httpx.Request], httpx.Response]) -> MeetzyClient:
    return MeetzyClient("https://api.meetzy.test", TOKEN, transport=httpx.MockTransport(respond))


def peak_mib(action: Callable[[], Any]) -> tuple[Any, float]:
    tracemalloc.start()
    try:
        try:
            result: Any = action()
        except Exception as exc:
            result = exc
        return result, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_finding4_a_600_mb_answer_is_not_read_and_is_in_doubt() -> None:
    body = Lazy(b" " * (1 << 20), 600)  # 600 MiB, made as it is read

    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=body)

    error, peak = peak_mib(lambda: asyncio.run(client_answering(respond).create_call(BODY)))
    assert isinstance(error, OutcomeUnknown) and error.code == "too_large"  # POST: in doubt
    assert body.sent <= MAX_ANSWER_BYTES // (1 << 20) + 1  # reading stopped at the cap
    assert peak < 64, f"{peak:.0f} MiB"


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_finding4_a_gzip_bomb_is_unpacked_only_up_to_the_cap(coding: str) -> None:
    bomb = gzip_bomb(800, 31 if coding == "gzip" else 15)  # ~800 KB unpacking to 800 MiB
    assert len(bomb) < 1 << 20

    def respond(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Encoding": coding, "Content-Type": "application/json"}
        return httpx.Response(200, headers=headers, stream=Lazy(bomb, 1))

    for call in ("create", "get"):
        api = client_answering(respond)
        work = api.create_call(BODY) if call == "create" else api.get_call("call-1")
        error, peak = peak_mib(lambda work=work: asyncio.run(work))
        assert isinstance(error, OutcomeUnknown) and error.code == "too_large", error
        assert peak < 64, f"{peak:.0f} MiB"


def test_finding4_a_small_gzip_answer_still_reads() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        packed = gzip.compress(json.dumps({"success": True, "id": "call-9"}).encode())
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=Lazy(packed, 1))

    assert asyncio.run(client_answering(respond).create_call(BODY)).call_id == "call-9"


def test_finding5_json_nested_200000_deep_is_a_bad_answer_never_a_crash() -> None:
    deep = b"[" * 200_000 + b"]" * 200_000

    def respond(request: httpx.Request) -> httpx.Response:
        status = 400 if request.url.path == "/call/call-1" else 200
        return httpx.Response(status, stream=Lazy(deep, 1))

    with pytest.raises(OutcomeUnknown, match="not JSON"):
        asyncio.run(client_answering(respond).create_call(BODY))
    with pytest.raises(Rejected, match="not JSON"):
        asyncio.run(client_answering(respond).get_call("call-1"))
    with pytest.raises(OutcomeUnknown):
        asyncio.run(client_answering(respond).list_calls({}))


@pytest.mark.parametrize("answer", ["deep", "huge", "bomb"])
def test_findings4_5_a_run_leaves_the_lead_in_doubt_not_dialing(
    tmp_path: Path, answer: str
) -> None:
    """Through ``run_campaign``: the POST's hostile answer leaves the lead in doubt (the call
    may exist), the look-up's hostile answer leaves it undecided; the run ends normally."""
    bodies = {"deep": (b"[" * 200_000, 1), "huge": (b" " * (1 << 20), 600),
              "bomb": (gzip_bomb(800), 1)}  # fmt: skip
    chunk, chunks = bodies[answer]
    seen: list[str] = []

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        headers = {"Content-Encoding": "gzip"} if answer == "bomb" else {}
        return httpx.Response(200, headers=headers, stream=Lazy(chunk, chunks))

    settings = Settings(leads=write_leads(tmp_path / "l.csv", mobiles(1)), playbook="pb",
                        output=tmp_path / "l.results.csv", in_doubt_grace=0.0,
                        settle=False)  # fmt: skip
    summary = run_campaign(settings, api_url="https://api.meetzy.test", token=TOKEN,
                           transport=httpx.MockTransport(respond))  # fmt: skip
    assert seen.count("POST /call") == 1  # sent once, never again blindly
    assert summary.in_doubt == 1
    assert [r["status"] for r in read_rows(settings.output)] == [Status.IN_DOUBT.value]


# --- finding 6: text made visible, not obeyed -----------------------------------------------


def test_finding6_visible_escapes_every_control_and_bidi_character() -> None:
    shown = visible(HOSTILE + "\x9b\u2066\ufeffé ñ 中")
    assert shown.isprintable() and "é ñ 中" in shown
    assert "\\x1b]0;pwned\\x07" in shown and "\\u202e" in shown and "\\x9b" in shown


def no_controls(text: str) -> bool:
    return all(ch.isprintable() or ch == "\n" for ch in text)


def test_finding6_escape_sequences_from_the_api_are_shown_not_obeyed(
    tmp_path: Path,
) -> None:
    error = json.dumps({"success": False, "error": {"code": "boom", "message": HOSTILE}}).encode()
    mode = {"post": 500}

    def reply(method: str, path: str) -> tuple[int, bytes]:
        return (mode["post"], error) if method == "POST" else (503, error)

    leads = write_leads(tmp_path / "leads.csv", mobiles(1))
    with Recorder(reply) as api:
        env = {"MEETZY_API_URL": api.url, "MEETZY_API_TOKEN": TOKEN}
        first = cli("run", str(leads), "--playbook", "pb", "--in-doubt-grace", "0",
                    "--no-settle", **env)  # fmt: skip
        status = cli("status", str(tmp_path / "leads.results.csv"))
        mode["post"] = 401
        other = write_leads(tmp_path / "other.csv", mobiles(1, start=5))
        refused = cli("run", str(other), "--playbook", "pb", **env)
    assert first.returncode == 6, first.stderr  # in doubt: the 500 came after the request
    assert api.seen.count("POST /call") == 2  # one lead each run, never redialed
    assert status.returncode == 0 and refused.returncode == 3
    for proc in (first, status, refused):
        assert no_controls(proc.stdout) and no_controls(proc.stderr)
    assert "\\x1b[31mall leads called OK" in status.stdout  # visible, escaped
    assert "\\x1b]0;pwned\\x07" in refused.stderr and len(refused.stderr.splitlines()) == 1


def test_finding6_the_dry_run_shows_cells_and_column_names_escaped(tmp_path: Path) -> None:
    leads = tmp_path / "leads.csv"
    leads.write_text(
        "phone,first_name,\x1b[2Jcolumn\u202e\n"
        f"{mobiles(1)[0]},Ana\x1b]0;title\x07,x\n"
        "\x1b[31m12,Bob,y\n",
        encoding="utf-8",
    )
    proc = cli("run", str(leads), "--playbook", "pb", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert no_controls(proc.stdout) and no_controls(proc.stderr)
    assert "\\x1b[2Jcolumn\\u202e" in proc.stdout  # the column name, made visible


def test_finding6_a_newline_in_a_call_id_does_not_split_a_sync_line(tmp_path: Path) -> None:
    summary = SyncSummary(tmp_path / "r.csv", 1, 0, 0, 1, {}, "call ab\nSynced: all 100 OK",
                          0.1)  # fmt: skip
    lines = sync_lines(summary)
    assert all(no_controls(line) and "\n" not in line for line in lines)
    assert any("ab\\x0aSynced" in line for line in lines)


# --- finding 12 (ids): validated before a URL or a history cell ----------------------------


@pytest.mark.parametrize("bad", ["..", ".", "a/b", "a b", "x;y", "a\nb", "%2e%2e", "", "-x"])
def test_finding12_a_call_id_the_api_gives_is_validated(bad: str) -> None:
    requests: list[str] = []

    def respond(request: httpx.Request) -> httpx.Response:
        requests.append(request.url.raw_path.decode())
        if request.method == "POST":
            return httpx.Response(200, json={"success": True, "id": bad})
        return httpx.Response(200, json={"calls": [{"id": bad, "to": BODY["phone"]}]})

    api = client_answering(respond)
    with pytest.raises(OutcomeUnknown):  # the call may exist: in doubt, never "called .."
        asyncio.run(api.create_call(BODY))
    if bad:
        with pytest.raises(OutcomeUnknown):  # skipping it could "prove" a placed call absent
            asyncio.run(api.list_calls({}))
        with pytest.raises(Rejected):  # never GET / or GET /call/a/b
            asyncio.run(api.get_call(bad))
    assert not any(path.startswith("/call/") or path == "/" for path in requests)
