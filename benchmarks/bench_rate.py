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

    python benchmarks/bench_rate.py                              # 180 s runs, 3 of each: ~20 min
    python benchmarks/bench_rate.py --seconds 15 --repeat 1      # smoke run: ~50 s

Two cases by default (``--campaigns 1,2``): one campaign, and two campaigns started together
on the same account (two processes sharing the account's budget through the per-user state
folder, a temporary one here); the figures of the second case are the pair's combined.

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


def one_run(
    seconds: float, latency: float, folder, run: int, campaigns: int = 1
) -> dict[str, float | int | None]:
    """``campaigns`` campaigns on one account (``dialer run`` processes started together, each
    with its own leads, sharing the per-user state folder of this run), stopped together."""
    each = int(math.ceil(seconds / 60 + 1) * 100) + 50
    state = folder / f"state-{run}-{campaigns}"  # the account's shared record, this run's own
    with Sandbox(latency=latency, per_second=PER_SECOND, per_minute=PER_MINUTE) as sandbox:
        children = []
        for c in range(campaigns):
            leads = make_leads(folder / f"leads-{run}-{campaigns}-{c}.csv", each, start=c * each)
            args = dialer_run(leads, folder / f"run-{run}-{campaigns}-{c}.results.csv")
            children.append(
                subprocess.Popen(
                    args,  # the default limits
                    env=dialer_env(sandbox.url, XDG_STATE_HOME=str(state)),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            )
        try:
            first = None
            deadline = time.monotonic() + 60.0
            while first is None:
                posts = [r for r in sandbox.requests() if r["path"] == "/call"]
                if posts:
                    first = min(r["at"] for r in posts)
                elif any(c.poll() is not None for c in children) or time.monotonic() > deadline:
                    errors = [c.communicate()[1].decode()[-800:] for c in children]
                    raise SystemExit(f"error: dialer run sent nothing: {errors}")
                else:
                    time.sleep(0.1)
            time.sleep(max(0.0, first + seconds - time.monotonic()))  # same clock, both sides
            for child in children:
                child.send_signal(signal.SIGINT)
            for child in children:
                _, err = child.communicate(timeout=120)
                if child.returncode not in (0, STOPPED):
                    raise SystemExit(f"error: dialer run exited {child.returncode}: {err.decode()}")
        finally:
            for child in children:
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
    parser.add_argument("--campaigns", default="1,2",
                        help="cases: campaigns on the account at once (default 1,2)")  # fmt: skip
    opts = parser.parse_args()
    cases = [int(n) for n in opts.campaigns.split(",")]
    results: dict[int, list[dict[str, float | int | None]]] = {n: [] for n in cases}
    print(machine())
    with scratch_dir("bench-rate-") as folder:
        for run in range(opts.repeat):  # the cases interleaved, so that noise spreads evenly
            for n in cases:
                progress(f"run {run + 1}/{opts.repeat}, {n} campaign(s): {opts.seconds:.0f} s")
                results[n].append(one_run(opts.seconds, opts.latency, folder, run, n))
    for n in cases:
        print_case(opts, n, results[n])


def print_case(opts: argparse.Namespace, campaigns: int, runs: list[dict]) -> None:
    who = (
        "dialer run"
        if campaigns == 1
        else f"{campaigns} dialer runs on one account (combined figures)"
    )
    print(
        f"{who} at the default limits ({PER_SECOND}/s, {PER_MINUTE}/min, concurrency 10) "
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
