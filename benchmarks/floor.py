"""The comparison clients: minimal scripts that do only the ``POST /call`` requests.

Not a benchmark by itself: ``bench_overhead.py`` and ``bench_transport.py`` run it as a child
process (one library per process, so each pays only its own imports) and measure it. Each
client reads the leads CSV, sends one ``POST /call`` per row with the same JSON body the dialer
sends, ``--concurrency`` at a time (a fixed pool of workers), counts the answers that are not a
200 with a call id (and the requests that raised), prints ``N created, F failed`` and exits 1
if any failed.

    python benchmarks/floor.py --lib aiohttp --url http://127.0.0.1:8765 --leads leads.csv \\
        --concurrency 100

``--lib``:
  aiohttp        bare aiohttp ``ClientSession`` (TCPConnector(limit=concurrency))
  httpx          plain ``httpx.AsyncClient`` (its default transport, httpcore over anyio)
  httpx-aiohttp  ``httpx.AsyncClient`` with ``httpx_aiohttp.AiohttpTransport``
  client         the dialer's own ``MeetzyClient.create_call``, as shipped
  client-httpx   ``MeetzyClient`` forced onto httpx's default transport
  requests       a sequential loop of ``requests.post`` (what people write first)
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
from collections.abc import Awaitable, Callable, Iterator

TOKEN = "sandbox-token"
PLAYBOOK = "pb-bench"


def bodies(path: str) -> list[dict[str, str]]:
    """The JSON bodies the dialer would send for this leads file (params, then fixed keys)."""
    with open(path, encoding="utf-8", newline="") as handle:
        return [
            {"first_name": row["first_name"], "program": row["program"], "phone": row["phone"]}
            | {"playbook_id": PLAYBOOK}
            for row in csv.DictReader(handle)
        ]


async def pool(jobs: list[dict[str, str]], concurrency: int, post: Callable) -> int:
    """Run ``post(body)`` over ``jobs``, ``concurrency`` at a time; the number that failed."""
    todo: Iterator[dict[str, str]] = iter(jobs)
    failed = 0

    async def worker() -> None:
        nonlocal failed
        for body in todo:
            try:
                ok = await post(body)
            except Exception as exc:  # counted and shown, not fatal: the others go on
                print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
                ok = False
            failed += not ok

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failed


def headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}


async def with_aiohttp(url: str, jobs: list[dict[str, str]], concurrency: int) -> int:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers()) as session:

        async def post(body: dict[str, str]) -> bool:
            async with session.post(f"{url}/call", json=body) as answer:
                data = await answer.json()
                return answer.status == 200 and bool(data.get("id"))

        return await pool(jobs, concurrency, post)


async def with_httpx(
    url: str, jobs: list[dict[str, str]], concurrency: int, transport: object = None
) -> int:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, headers=headers(), limits=limits, transport=transport
    ) as http:

        async def post(body: dict[str, str]) -> bool:
            answer = await http.post("/call", json=body)
            return answer.status_code == 200 and bool(answer.json().get("id"))

        return await pool(jobs, concurrency, post)


async def with_httpx_aiohttp(url: str, jobs: list[dict[str, str]], concurrency: int) -> int:
    import httpx
    from httpx_aiohttp import AiohttpTransport

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return await with_httpx(url, jobs, concurrency, AiohttpTransport(limits=limits))


async def with_client(
    url: str, jobs: list[dict[str, str]], concurrency: int, default_transport: bool = False
) -> int:
    import httpx

    from dialer.api.client import MeetzyClient

    transport = None
    if default_transport:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        transport = httpx.AsyncHTTPTransport(limits=limits)
    async with MeetzyClient(url, TOKEN, max_connections=concurrency, transport=transport) as api:

        async def post(body: dict[str, str]) -> bool:
            created = await api.create_call(body)
            return bool(created.call_id)

        return await pool(jobs, concurrency, post)


def with_requests(url: str, jobs: list[dict[str, str]]) -> int:
    import requests

    failed = 0
    for body in jobs:
        try:
            answer = requests.post(f"{url}/call", json=body, headers=headers(), timeout=30)
            failed += not (answer.status_code == 200 and answer.json().get("id"))
        except Exception as exc:
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
            failed += 1
    return failed


ASYNC: dict[str, Callable[..., Awaitable[int]]] = {
    "aiohttp": with_aiohttp,
    "httpx": with_httpx,
    "httpx-aiohttp": with_httpx_aiohttp,
    "client": with_client,
    "client-httpx": lambda url, jobs, c: with_client(url, jobs, c, default_transport=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lib", required=True, choices=[*ASYNC, "requests"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--leads", required=True)
    parser.add_argument("--concurrency", type=int, default=10)
    opts = parser.parse_args()
    jobs = bodies(opts.leads)
    if opts.lib == "requests":
        failed = with_requests(opts.url, jobs)
    else:
        failed = asyncio.run(ASYNC[opts.lib](opts.url, jobs, opts.concurrency))
    print(f"{len(jobs) - failed} created, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
