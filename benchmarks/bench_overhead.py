"""Overhead vs the floor: ``dialer run`` against minimal scripts that only do the POSTs.

Against the simulator (``dialer sandbox``, limits off, ``--latency`` per answer) on 127.0.0.1,
side by side in the same run, interleaved, each as its own process:

* ``dialer run`` of ``--leads`` leads with the rate limits lifted, at each ``--concurrency``
  (the whole command: start-up, loading, the durable journal, the results CSV);
* the floors (``benchmarks/floor.py``): minimal async scripts doing only the POSTs at the same
  concurrency, over bare aiohttp and over httpx + httpx-aiohttp (``--floors`` adds ``httpx``);
* a sequential ``requests.post`` loop, what people write first (``--no-sequential`` skips it);
* for scale, ``dialer run --dry-run`` of the same file: the fixed cost of start-up and loading.

Reports wall and CPU time (user + system, ``os.wait4``) and peak RSS of each process, median and
spread (max - min) over ``--repeat`` runs, and each dialer run's ratio to the fastest floor at
its concurrency. Targets: within 1.1x of the fastest floor's wall time and 1.5x its CPU.

    python benchmarks/bench_overhead.py                          # 2,000 leads, 3 runs: ~9 min
    python benchmarks/bench_overhead.py --leads 200 --repeat 1   # smoke run: ~30 s

Most of the full run is the sequential loop (2,000 x 50 ms, about 2 minutes a run).
"""

from __future__ import annotations

import shutil
from collections import defaultdict

from common import (
    LIFTED,
    Measure,
    Sandbox,
    checked,
    count_called,
    dialer_env,
    dialer_run,
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

HEADERS = ["case", "conc", "wall s", "spread", "CPU s", "spread", "peak MB", "wall/floor",
           "CPU/floor", "failed"]  # fmt: skip
WALL_TARGET, CPU_TARGET = 1.1, 1.5


def main() -> None:
    parser = standard_parser(__doc__, "leads")
    parser.add_argument("--floors", default="aiohttp,httpx-aiohttp",
                        help="floor clients (any of aiohttp, httpx-aiohttp, httpx)")  # fmt: skip
    parser.add_argument("--no-sequential", action="store_true", help="skip the requests loop")
    parser.add_argument("--dir", help="folder for the temporary files (default: the system's)")
    opts = parser.parse_args()
    levels = [int(c) for c in opts.concurrency.split(",")]
    floors = [f.strip() for f in opts.floors.split(",") if f.strip()]
    for module in ("aiohttp", "httpx_aiohttp", *(() if opts.no_sequential else ("requests",))):
        require(module, "bench_overhead.py")

    results: dict[tuple[str, int], list[Measure]] = defaultdict(list)
    failed: dict[tuple[str, int], int] = defaultdict(int)
    print(machine())
    with (
        scratch_dir("bench-overhead-", opts.dir) as folder,
        Sandbox(latency=opts.latency) as sandbox,
    ):
        leads = make_leads(folder / "leads.csv", opts.leads)
        empty = make_leads(folder / "empty.csv", 0)
        env = dialer_env(sandbox.url)
        for run in range(opts.repeat):
            dry = run_measured(dialer_run(leads, folder / "dry.csv", "--dry-run"), env)
            results["dialer --dry-run (no POSTs)", 0].append(checked(dry, "dialer --dry-run"))
            for lib in floors:  # what a floor costs before its first POST
                took = run_measured(floor_run(lib, sandbox.url, empty, 1))
                results[f"floor: {lib}, no leads", 0].append(checked(took, f"the {lib} floor"))
            for level in levels:
                progress(f"run {run + 1}/{opts.repeat}: dialer run at concurrency {level}")
                output = folder / f"run-{run}-{level}.results.csv"
                args = dialer_run(leads, output, "--concurrency", str(level), *LIFTED)
                took = checked(run_measured(args, env), "dialer run")
                if (called := count_called(output)) != opts.leads:
                    raise SystemExit(f"error: dialer run called {called} of {opts.leads} leads")
                results["dialer run", level].append(took)
                for path in folder.glob(f"run-{run}-{level}.*"):
                    shutil.rmtree(path) if path.is_dir() else path.unlink()  # the state folder
                for lib in floors:
                    progress(f"run {run + 1}/{opts.repeat}: floor {lib} at concurrency {level}")
                    took = run_measured(floor_run(lib, sandbox.url, leads, level))
                    failed[f"floor: {lib}", level] += floor_failed(took, f"the {lib} floor")
                    results[f"floor: {lib}", level].append(took)
            if not opts.no_sequential:
                progress(f"run {run + 1}/{opts.repeat}: sequential requests loop")
                took = run_measured(floor_run("requests", sandbox.url, leads, 1))
                failed["requests loop (sequential)", 1] += floor_failed(took, "the requests loop")
                results["requests loop (sequential)", 1].append(took)

    print(
        f"{opts.leads:,} leads, {opts.latency * 1000:.0f} ms simulated latency, limits off, "
        f"{opts.repeat} runs each; median and spread (max - min); ratios to the fastest floor"
    )
    rows, verdicts = [], []
    for (case, level), runs in results.items():
        wall, wall_spread = median_spread([m.wall for m in runs])
        cpu, cpu_spread = median_spread([m.cpu for m in runs])
        ratios = ["", ""]
        if case == "dialer run":
            best = min((median(results[f"floor: {lib}", level], "wall"), lib) for lib in floors)[1]
            floor = results[f"floor: {best}", level]
            wall_ratio = wall / median(floor, "wall")
            cpu_ratio = cpu / median(floor, "cpu")
            ratios = [f"{wall_ratio:.2f}x", f"{cpu_ratio:.2f}x"]
            met = wall_ratio <= WALL_TARGET and cpu_ratio <= CPU_TARGET
            verdicts.append(
                f"concurrency {level}: {wall_ratio:.2f}x the fastest floor's ({best}) wall "
                f"(target {WALL_TARGET}x), {cpu_ratio:.2f}x its CPU (target {CPU_TARGET}x): "
                + ("met" if met else "NOT met")
            )
            for lib in floors:
                if lib != best:
                    other = results[f"floor: {lib}", level]
                    verdicts.append(
                        f"  (against the {lib} floor: "
                        f"{wall / median(other, 'wall'):.2f}x its wall, "
                        f"{cpu / median(other, 'cpu'):.2f}x its CPU)"
                    )
        peak = max(m.peak_mb for m in runs)
        rows.append([case, level or "-", f"{wall:.2f}", f"{wall_spread:.2f}", f"{cpu:.2f}",
                     f"{cpu_spread:.2f}", f"{peak:.0f}", *ratios, failed[case, level]])  # fmt: skip
    print_table(HEADERS, rows)
    for line in verdicts:
        print(line)
    print(per_call(results, floors, levels, opts.leads))


def median(runs: list[Measure], what: str) -> float:
    """The median of one measure (``"wall"`` or ``"cpu"``) over ``runs``."""
    return median_spread([getattr(m, what) for m in runs])[0]


def per_call(
    results: dict[tuple[str, int], list[Measure]], floors: list[str], levels: list[int], n: int
) -> str:
    """CPU per POST beyond each process's fixed cost: the dialer's run less its dry run (start,
    imports, loading), a floor's run less its run with no leads (start, imports)."""

    def cpu(case: str, level: int) -> float:
        return median(results[case, level], "cpu")

    lines = ["CPU per call beyond the fixed cost (run - dry run; floor - floor with no leads):"]
    for level in levels:
        mine = (cpu("dialer run", level) - cpu("dialer --dry-run (no POSTs)", 0)) / n
        parts = [f"dialer {mine * 1e6:.0f} us"]
        for lib in floors:
            theirs = (cpu(f"floor: {lib}", level) - cpu(f"floor: {lib}, no leads", 0)) / n
            ratio = f"{mine / theirs:.2f}x" if theirs > 0 else "n/a: too few leads to tell"
            parts.append(f"{lib} {theirs * 1e6:.0f} us ({ratio})")
        lines.append(f"  concurrency {level}: " + ", ".join(parts))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
