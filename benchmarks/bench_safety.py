"""What safety costs: a run with its durable journal, against the same run without fsync.

The dialer fsyncs its journal before every ``POST /call`` (concurrent intents share one fsync)
and replaces the results CSV atomically. The library's ``run_campaign(..., durable=False)``
skips every fsync (no environment variable can: the product has no such switch). Each run is a
child process (``--one-run``) that calls ``run_campaign`` as ``dialer run`` would, with
``durable`` on or off, so both variants pay the same start-up. Against the simulator
(``dialer sandbox``, limits off, ``--latency`` per answer) on 127.0.0.1, with the rate limits
lifted, both variants run ``--leads`` leads, interleaved, ``--repeat`` times at each
``--concurrency``. Reported: wall and CPU time of the whole command, throughput over the
whole run (leads / wall) and while dialing (from the simulator's record: requests / (last
arrival - first arrival)), medians and spread (max - min). Target: the durable run's
throughput within 10% of the run without fsyncs.

fsync costs what the disk makes it cost: the files go to ``--dir`` (default: the system's temp
folder), whose filesystem type is printed; on tmpfs an fsync is free and this shows nothing.

    python benchmarks/bench_safety.py                            # 2,000 leads, 3 runs: ~2 min
    python benchmarks/bench_safety.py --leads 200 --repeat 1     # smoke run: ~15 s
"""

from __future__ import annotations

import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

from common import (
    LIFTED,
    PLAYBOOK,
    SANDBOX_TOKEN,
    Sandbox,
    checked,
    count_called,
    filesystem,
    machine,
    make_leads,
    median_spread,
    print_table,
    progress,
    python_exe,
    run_measured,
    scratch_dir,
    standard_parser,
)

VARIANTS = {"journal fsynced": "durable", "no fsync": "no-fsync"}
HEADERS = ["variant", "conc", "wall s", "spread", "CPU s", "spread", "leads/s", "spread",
           "dialing calls/s", "spread"]  # fmt: skip
TARGET = 0.10


def main() -> None:
    parser = standard_parser(__doc__, "leads")
    parser.add_argument("--dir", help="folder for the results and journal (default: temp)")
    opts = parser.parse_args()
    levels = [int(c) for c in opts.concurrency.split(",")]

    walls, cpus, rates, dialing = (defaultdict(list) for _ in range(4))
    print(machine())
    with scratch_dir("bench-safety-", opts.dir) as folder, Sandbox(latency=opts.latency) as sandbox:
        print(f"results and journal in {folder} ({filesystem(folder)})")
        leads = make_leads(folder / "leads.csv", opts.leads)
        for run in range(opts.repeat):
            for level in levels:
                for variant, how in VARIANTS.items():
                    progress(f"run {run + 1}/{opts.repeat}: {variant} at concurrency {level}")
                    output = folder / f"run-{run}-{level}.results.csv"
                    args = [python_exe(), __file__, "--one-run", str(leads), str(output),
                            sandbox.url, str(level), how]  # fmt: skip
                    since = time.monotonic()  # the simulator stamps requests on this clock too
                    took = checked(run_measured(args), variant)
                    if (called := count_called(output)) != opts.leads:
                        raise SystemExit(f"error: {variant} called {called} of {opts.leads}")
                    for path in folder.glob(f"run-{run}-{level}.*"):
                        shutil.rmtree(path) if path.is_dir() else path.unlink()  # the state folder
                    arrivals = sorted(
                        r["at"]
                        for r in sandbox.requests()
                        if r["path"] == "/call" and r["at"] >= since
                    )
                    key = (variant, level)
                    walls[key].append(took.wall)
                    cpus[key].append(took.cpu)
                    rates[key].append(opts.leads / took.wall)
                    if len(arrivals) > 1:
                        dialing[key].append((len(arrivals) - 1) / (arrivals[-1] - arrivals[0]))

    print(
        f"{opts.leads:,} leads, {opts.latency * 1000:.0f} ms simulated latency, limits off, "
        f"{opts.repeat} runs each; median and spread (max - min)"
    )
    rows, verdicts = [], []
    for level in levels:
        for variant in VARIANTS:
            key = (variant, level)
            cells = [variant, level]
            for values, digits in ((walls, 2), (cpus, 2), (rates, 0), (dialing, 0)):
                mid, spread = median_spread(values[key] or [float("nan")])
                cells += [f"{mid:.{digits}f}", f"{spread:.{digits}f}"]
            rows.append(cells)
        on = median_spread(rates["journal fsynced", level])[0]
        off = median_spread(rates["no fsync", level])[0]
        cost = 1 - on / off
        verdicts.append(
            f"concurrency {level}: the durable journal costs {cost:.1%} of the throughput "
            f"(target at most {TARGET:.0%}): " + ("met" if cost <= TARGET else "NOT met")
        )
    print_table(HEADERS, rows)
    for line in verdicts:
        print(line)


def one_run(leads: str, output: str, url: str, concurrency: str, how: str) -> None:
    """One quiet run of ``leads`` into ``output`` against the sandbox at ``url``: what ``dialer
    run --quiet`` does, with the journal's fsyncs on (``durable``) or off (``no-fsync``)."""
    from dialer.campaign import build_settings
    from dialer.engine.run import run_campaign

    limits = dict(zip(LIFTED[::2], LIFTED[1::2], strict=True))
    flags = {key.lstrip("-").replace("-", "_"): int(value) for key, value in limits.items()}
    settings = build_settings(Path(leads), {"playbook": PLAYBOOK, "output": output,
                                            "concurrency": int(concurrency), **flags})  # fmt: skip
    run_campaign(settings, api_url=url, token=SANDBOX_TOKEN, durable=how == "durable")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one-run"]:
        one_run(*sys.argv[2:7])
    else:
        main()
