"""Rate fidelity: ``dialer run`` with the default limits against a strictly limiting simulator.

Each run starts a fresh simulator (``dialer sandbox``) enforcing the documented limits strictly
as sliding windows (10 requests in any 1 s, 100 in any 60 s; a request over either gets a 429),
gives ``dialer run`` more leads than fit in ``--seconds`` at its default limits and concurrency,
stops it with SIGINT (as Ctrl-C or cron's timeout would) ``--seconds`` after its first request,
and reads the simulator's own record of every ``POST /call`` with its arrival time:

* achieved calls/min: calls created in the whole minutes from the first request, per minute;
* sustained calls/min: 60 x 100 / the median time from a request to the 100th after it, which
  is exactly what the 100-per-minute window allows when the limiter wastes nothing (100);
* the largest number of requests in any 1 s and in any 60 s window (429s included);
* the fewest in any 60 s window starting at a request and ending inside the run (for
  information: the requests come in bursts of 10, so this shows how much of a minute a limiter
  that waits longer than it must leaves unused);
* the 429 answers.

Targets: at least 99 calls/min, never more than 10 in a second or 100 in a minute, zero 429s.
Medians and spread (max - min) over ``--repeat`` runs.

    python benchmarks/bench_rate.py                              # 180 s runs, 3 of them: ~10 min
    python benchmarks/bench_rate.py --seconds 15 --repeat 1      # smoke run: ~25 s

A run shorter than 60 s cannot show a per-minute rate: the smoke run checks the windows only.
The sustained rate and the fewest-in-60-s figure need a run of more than 60 s.
"""

from __future__ import annotations

import argparse
import math
import signal
import subprocess
import time

from common import (
    Sandbox,
    dialer_env,
    dialer_run,
    machine,
    make_leads,
    median_spread,
    print_table,
    progress,
    scratch_dir,
)

PER_SECOND, PER_MINUTE = 10, 100  # the documented limits, the dialer's defaults
STOPPED = 130  # dialer run's exit code when a signal stopped it


def most_in_window(times: list[float], span: float) -> int:
    """The largest number of ``times`` (sorted) inside any window ``[t, t + span)``."""
    most, j = 0, 0
    for i, start in enumerate(times):
        j = max(j, i)
        while j < len(times) and times[j] < start + span:
            j += 1
        most = max(most, j - i)
    return most


def fewest_in_full_windows(times: list[float], span: float, end: float) -> int | None:
    """The smallest count in windows ``[t_i, t_i + span)`` starting at a time and ending by
    ``end``; None if no such window fits."""
    fewest, j = None, 0
    for i, start in enumerate(times):
        if start + span > end:
            break
        j = max(j, i)
        while j < len(times) and times[j] < start + span:
            j += 1
        fewest = j - i if fewest is None else min(fewest, j - i)
    return fewest


def one_run(seconds: float, latency: float, folder, run: int) -> dict[str, float | int | None]:
    leads = make_leads(folder / f"leads-{run}.csv", int(math.ceil(seconds / 60 + 1) * 100) + 50)
    with Sandbox(latency=latency, per_second=PER_SECOND, per_minute=PER_MINUTE) as sandbox:
        args = dialer_run(leads, folder / f"run-{run}.results.csv")  # the default limits
        child = subprocess.Popen(
            args,
            env=dialer_env(sandbox.url),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            first = None
            deadline = time.monotonic() + 60.0
            while first is None:
                posts = [r for r in sandbox.requests() if r["path"] == "/call"]
                if posts:
                    first = min(r["at"] for r in posts)
                elif child.poll() is not None or time.monotonic() > deadline:
                    _, err = child.communicate()
                    raise SystemExit(f"error: dialer run sent nothing: {err.decode()[-800:]}")
                else:
                    time.sleep(0.1)
            time.sleep(max(0.0, first + seconds - time.monotonic()))  # same clock, both sides
            child.send_signal(signal.SIGINT)
            _, err = child.communicate(timeout=120)
            if child.returncode not in (0, STOPPED):
                raise SystemExit(f"error: dialer run exited {child.returncode}: {err.decode()}")
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        posts = sorted(
            (r for r in sandbox.requests() if r["path"] == "/call" and r["method"] == "POST"),
            key=lambda r: r["at"],
        )
    times = [r["at"] for r in posts]
    end = first + seconds
    inside = [r for r in posts if r["at"] < end]
    minutes = int(seconds // 60)
    per_minute = (
        sum(r["status"] == 200 for r in posts if r["at"] < first + 60 * minutes) / minutes
        if minutes
        else None
    )
    ok = [r["at"] for r in posts if r["status"] == 200]
    gaps = sorted(b - a for a, b in zip(ok, ok[PER_MINUTE:], strict=False))
    return {
        "calls": sum(r["status"] == 200 for r in inside),
        "per_minute": per_minute,
        "sustained": round(60 * PER_MINUTE / gaps[len(gaps) // 2], 2) if gaps else None,
        "max_1s": most_in_window(times, 1.0),
        "max_60s": most_in_window(times, 60.0),
        "min_60s": fewest_in_full_windows([r["at"] for r in inside], 60.0, end),
        "429s": sum(r["status"] == 429 for r in posts),
        "other": sum(r["status"] not in (200, 429) for r in posts),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0,
                        help="length of each run from its first request (default 180)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3, help="runs (default 3)")
    parser.add_argument("--latency", type=float, default=0.05, help="simulated s per answer")
    opts = parser.parse_args()
    runs = []
    print(machine())
    with scratch_dir("bench-rate-") as folder:
        for run in range(opts.repeat):
            progress(f"run {run + 1}/{opts.repeat}: {opts.seconds:.0f} s at the default limits")
            runs.append(one_run(opts.seconds, opts.latency, folder, run))

    print(
        f"dialer run at its default limits ({PER_SECOND}/s, {PER_MINUTE}/min, concurrency 10) "
        f"for {opts.seconds:.0f} s against a simulator enforcing them strictly, "
        f"{opts.latency * 1000:.0f} ms latency; {opts.repeat} runs: median and spread (max - min)"
    )
    labels = {
        "calls": ("calls created", ""),
        "per_minute": ("achieved calls/min", ">= 99"),
        "sustained": ("sustained calls/min", ">= 99"),
        "max_1s": ("most in any 1 s", f"<= {PER_SECOND}"),
        "max_60s": ("most in any 60 s", f"<= {PER_MINUTE}"),
        "min_60s": ("fewest in a full 60 s window", ""),
        "429s": ("429 answers", "0"),
        "other": ("other errors", "0"),
    }
    rows = []
    for key, (label, target) in labels.items():
        values = [r[key] for r in runs if r[key] is not None]
        if not values:
            rows.append([label, "n/a (run too short)", "", target])
            continue
        mid, spread = median_spread(values)
        rows.append([label, f"{mid:g}", f"{spread:g}", target])
    print_table(["measure", "median", "spread", "target"], rows)


if __name__ == "__main__":
    main()
