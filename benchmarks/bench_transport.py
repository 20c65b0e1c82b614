"""The client's transport: the same POSTs over plain httpx, httpx + httpx-aiohttp, bare aiohttp.

Runs each client as its own process (``benchmarks/floor.py``) against the simulator
(``dialer sandbox``, limits off, ``--latency`` per answer) on 127.0.0.1: ``--leads`` POST /call
requests, ``--concurrency`` at a time, and reports each process's wall and CPU time (user +
system, from ``os.wait4``) and peak RSS, median and spread (max - min) over ``--repeat`` runs,
interleaved so that noise spreads evenly. Also measured: the simulator's own CPU per run.

Clients (``--libs``): ``httpx`` (its default transport), ``httpx-aiohttp`` (httpx's API over
``httpx_aiohttp.AiohttpTransport``), ``aiohttp`` (bare), ``client`` (the dialer's own
``MeetzyClient`` as shipped) and, on request, ``client-httpx`` (``MeetzyClient`` forced back
onto httpx's default transport).

    python benchmarks/bench_transport.py                         # 2,000 POSTs, c=10/100, 3 runs
    python benchmarks/bench_transport.py --leads 200 --repeat 1  # smoke run (~15 s)

The full run takes about 8 minutes on 2 cores, most of it plain httpx at concurrency 100.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from common import (
    Sandbox,
    dialer_exe,
    floor_failed,
    floor_run,
    machine,
    make_leads,
    median_spread,
    print_table,
    progress,
    require,
    run_measured,
    scratch_dir,
    standard_parser,
)

LIBS = ["httpx", "httpx-aiohttp", "aiohttp", "client"]
ALL_LIBS = [*LIBS, "client-httpx"]
HEADERS = ["client", "conc", "wall s", "spread", "CPU s", "spread", "sim CPU s", "peak MB",
           "wall vs best", "failed"]  # fmt: skip


def main() -> None:
    parser = standard_parser(__doc__, "POSTs")
    parser.add_argument("--libs", default=",".join(LIBS), help=f"any of {','.join(ALL_LIBS)}")
    opts = parser.parse_args()
    libs = [lib.strip() for lib in opts.libs.split(",") if lib.strip()]
    if unknown := set(libs) - set(ALL_LIBS):
        parser.error(f"unknown --libs {sorted(unknown)}; known: {ALL_LIBS}")
    levels = [int(c) for c in opts.concurrency.split(",")]
    dialer_exe()
    for module in ("aiohttp", "httpx_aiohttp"):
        require(module, "bench_transport.py")

    walls: dict[tuple[int, str], list[float]] = defaultdict(list)
    cpus: dict[tuple[int, str], list[float]] = defaultdict(list)
    servers: dict[tuple[int, str], list[float]] = defaultdict(list)
    peaks: dict[tuple[int, str], list[float]] = defaultdict(list)
    failed: dict[tuple[int, str], int] = defaultdict(int)
    print(machine())
    with scratch_dir("bench-transport-") as folder, Sandbox(latency=opts.latency) as sandbox:
        leads = make_leads(Path(folder) / "leads.csv", opts.leads)
        for run in range(opts.repeat):
            for level in levels:
                for lib in libs:
                    progress(f"run {run + 1}/{opts.repeat}: {lib} at concurrency {level}")
                    before = sandbox.cpu()
                    took = run_measured(floor_run(lib, sandbox.url, leads, level))
                    failed[level, lib] += floor_failed(took, f"the {lib} client")
                    after = sandbox.cpu()
                    key = (level, lib)
                    walls[key].append(took.wall)
                    cpus[key].append(took.cpu)
                    peaks[key].append(took.peak_mb)
                    if before is not None and after is not None:
                        servers[key].append(after - before)

    print(
        f"{opts.leads:,} POST /call per run, {opts.latency * 1000:.0f} ms simulated latency, "
        f"limits off, {opts.repeat} runs each; median and spread (max - min)"
    )
    rows = []
    for level in levels:
        best = min(libs, key=lambda lib: median_spread(walls[level, lib])[0])
        for lib in libs:
            key = (level, lib)
            wall, wall_spread = median_spread(walls[key])
            cpu, cpu_spread = median_spread(cpus[key])
            server = f"{median_spread(servers[key])[0]:.2f}" if servers[key] else "-"
            ratio = wall / median_spread(walls[level, best])[0]
            rows.append([lib, level, f"{wall:.2f}", f"{wall_spread:.2f}", f"{cpu:.2f}",
                         f"{cpu_spread:.2f}", server, f"{max(peaks[key]):.0f}",
                         f"{ratio:.2f}x", failed[key]])  # fmt: skip
    print_table(HEADERS, rows)


if __name__ == "__main__":
    main()
