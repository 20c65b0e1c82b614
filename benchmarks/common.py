"""Shared pieces of the benchmarks: the sandbox subprocess, lead files, measured children, tables.

Not a benchmark itself. Everything here uses the standard library only (psutil, when installed,
adds the simulator's own CPU time), so a fresh clone needs nothing beyond ``pip install -e .``
to import it.
"""

from __future__ import annotations

import argparse
import compileall
import csv
import functools
import importlib.util
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SANDBOX_TOKEN = "sandbox-token"  # the token ``dialer sandbox`` accepts
PLAYBOOK = "pb-bench"


def standard_parser(doc: str, what: str = "leads") -> argparse.ArgumentParser:
    """The options every load benchmark shares: size, latency, concurrency levels, repeats."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--leads", type=int, default=2000, help=f"{what} per run (default 2000)")
    parser.add_argument("--latency", type=float, default=0.05, help="simulated s per answer")
    parser.add_argument("--concurrency", default="10,100", help="comma-separated (default 10,100)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each case (default 3)")
    return parser


@functools.cache
def dialer_exe() -> str:
    """The installed ``dialer`` CLI, or a clear exit if it is not installed; its bytecode
    written first (``byte_compile``)."""
    exe = shutil.which("dialer")
    if exe is None:
        raise SystemExit(
            "error: the dialer CLI is not installed (or not on PATH): run "
            "pip install -e '.[test]' from the repository root, then run this again"
        )
    byte_compile()
    return exe


def byte_compile() -> None:
    """Write the dialer package's bytecode (``__pycache__``), as a regular pip install does.

    An editable install (``pip install -e``) writes it at the first import, unless
    ``PYTHONDONTWRITEBYTECODE`` is set, as some CI images and sandboxes do: then every run
    would compile every module again, about 0.1 s of CPU that no installed dialer pays."""
    spec = importlib.util.find_spec("dialer")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        compileall.compile_dir(folder, quiet=1)


def require(module: str, why: str) -> None:
    """Exit with a clear message when an optional benchmark-only library is missing."""
    try:
        __import__(module)
    except ImportError:
        raise SystemExit(
            f"error: {why} needs the {module!r} package: pip install {module}"
        ) from None


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def machine() -> str:
    """One line naming the machine: CPU model, cores, Python, load average now."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}, load {load:.2f} at start"
    )


# --- lead files -------------------------------------------------------------------------------


def phones(n: int, start: int = 0) -> list[str]:
    """``n`` distinct valid Spanish mobile numbers in E.164."""
    return [f"+3461{i:07d}" for i in range(start, start + n)]


def make_leads(path: Path, n: int, start: int = 0) -> Path:
    """A leads CSV of ``n`` valid, distinct leads with two custom params."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["first_name", "phone", "program"])
        for i, phone in enumerate(phones(n, start), start=start):
            writer.writerow([f"Lead {i}", phone, "MBA"])
    return path


@contextmanager
def scratch_dir(prefix: str, where: str | None = None) -> Iterator[Path]:
    """A temporary folder (under ``where`` if given), always removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=where))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- the simulator as a subprocess ------------------------------------------------------------


class Sandbox:
    """``dialer sandbox`` on a random free loopback port, in its own process."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        per_second: int = 0,
        per_minute: int = 0,
        faults: Sequence[str] = (),
    ) -> None:
        self.args = [
            "sandbox",
            "--latency",
            str(latency),
            "--per-second",
            str(per_second),
            "--per-minute",
            str(per_minute),
        ]
        for fault in faults:
            self.args += ["--fault", fault]
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self._ps = None

    def start(self) -> Sandbox:
        exe = dialer_exe()
        for _ in range(5):  # a port taken between the probe and the bind: try another
            port = free_port()
            # A file, not a pipe (a full pipe would block the server); stop() closes it.
            self._log = tempfile.TemporaryFile()  # noqa: SIM115
            self.process = subprocess.Popen(
                [exe, *self.args, "--port", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._log,
            )
            self.url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 20.0
            while self.process.poll() is None and time.monotonic() < deadline:
                try:
                    self.get("/_sim/calls", timeout=1.0)
                    try:
                        import psutil

                        self._ps = psutil.Process(self.process.pid)
                    except ImportError:
                        self._ps = None
                    return self
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    time.sleep(0.05)
            self._log.seek(0)
            said = self._log.read().decode(errors="replace").strip()[-500:]
            self.stop()
        raise SystemExit(f"error: the simulator (dialer sandbox) did not start: {said}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def get(self, path: str, timeout: float = 30.0) -> dict:
        auth = {"Authorization": f"Bearer {SANDBOX_TOKEN}"}  # /_sim/* need the token
        ask = urllib.request.Request(self.url + path, headers=auth)
        with urllib.request.urlopen(ask, timeout=timeout) as answer:
            return json.loads(answer.read())

    def calls(self) -> list[dict]:
        """Every call the simulator created, oldest first."""
        return self.get("/_sim/calls")["calls"]

    def requests(self) -> list[dict]:
        """Every API request it answered, with ``at`` (monotonic s), ``status`` and ``path``."""
        return self.get("/_sim/requests")["requests"]

    def cpu(self) -> float | None:
        """The simulator's CPU seconds so far (user + system), if psutil is installed."""
        if self._ps is None:
            return None
        times = self._ps.cpu_times()
        return times.user + times.system


# --- measuring one child ----------------------------------------------------------------------


@dataclass(frozen=True)
class Measure:
    wall: float  # seconds from spawn to exit
    cpu: float  # the child's user + system seconds (its own children included if waited)
    peak_mb: float  # the child's peak RSS
    returncode: int
    stdout: str
    stderr: str


def run_measured(
    args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 900.0
) -> Measure:
    """Run ``args`` to its end; wall time, CPU and peak RSS of that one child (``os.wait4``)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        late = threading.Timer(timeout, child.kill)  # a hung child is killed, not waited for
        late.start()
        try:
            _, status, usage = os.wait4(child.pid, 0)
        except BaseException:  # Ctrl-C: never leave the child running
            child.kill()
            child.wait()
            raise
        finally:
            late.cancel()
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        if wall >= timeout:
            raise SystemExit(f"error: {' '.join(args)} took more than {timeout:.0f} s")
        out.seek(0)
        err.seek(0)
        return Measure(
            wall,
            usage.ru_utime + usage.ru_stime,
            usage.ru_maxrss / 1024,
            child.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


def dialer_env(url: str, **extra: str) -> dict[str, str]:
    """The environment for ``dialer run`` against the sandbox at ``url``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEETZY_", "DIALER_"))}
    env.update(MEETZY_API_URL=url, MEETZY_API_TOKEN=SANDBOX_TOKEN, **extra)
    return env


def python_exe() -> str:
    return sys.executable


LIFTED = ["--max-per-second", "1000000", "--max-per-minute", "100000000"]  # limits out of the way


def dialer_run(leads: Path, output: Path, *flags: str) -> list[str]:
    """The argv of a quiet ``dialer run`` of ``leads`` into ``output``."""
    return [dialer_exe(), "run", str(leads), "--playbook", PLAYBOOK, "--output", str(output),
            "--quiet", *flags]  # fmt: skip


def count_called(results: Path) -> int:
    """Rows of a results CSV whose status is ``called``."""
    with open(results, encoding="utf-8-sig", newline="") as handle:
        return sum(row["status"] == "called" for row in csv.DictReader(handle))


def floor_run(lib: str, url: str, leads: Path, concurrency: int) -> list[str]:
    """The argv of one comparison client (``benchmarks/floor.py``)."""
    return [python_exe(), str(HERE / "floor.py"), "--lib", lib, "--url", url,
            "--leads", str(leads), "--concurrency", str(concurrency)]  # fmt: skip


def filesystem(path: Path) -> str:
    """The filesystem type ``path`` lives on (from /proc/mounts), or ``?``."""
    best, kind = "", "?"
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                parts = line.split()
                point, where = parts[1], str(path.resolve())
                inside = where == point or where.startswith(point.rstrip("/") + "/")
                if inside and len(point) > len(best):
                    best, kind = point, parts[2]
    except OSError:
        pass
    return kind


def checked(measure: Measure, what: str) -> Measure:
    """``measure`` if its child succeeded, else a clear exit with the end of its stderr."""
    if measure.returncode != 0:
        tail = (measure.stderr.strip() or measure.stdout.strip())[-800:]
        raise SystemExit(f"error: {what} exited with code {measure.returncode}:\n{tail}")
    return measure


def floor_failed(measure: Measure, what: str) -> int:
    """How many POSTs a ``floor.py`` client counted as failed; exits if it broke otherwise."""
    match = re.search(r"(\d+) created, (\d+) failed", measure.stdout)
    if measure.returncode not in (0, 1) or match is None:
        checked(measure, what)
        raise SystemExit(f"error: {what} printed no count: {measure.stdout[-300:]!r}")
    return int(match.group(2))


def progress(text: str) -> None:
    """A progress note on stderr (the table goes to stdout)."""
    print(text, file=sys.stderr, flush=True)


# --- tables -----------------------------------------------------------------------------------


def median_spread(values: Sequence[float]) -> tuple[float, float]:
    """The median and the spread (max - min) of ``values``."""
    return statistics.median(values), max(values) - min(values)


def fmt_ms(values: Sequence[float], digits: int = 2) -> str:
    """``median ±spread/2`` as text, e.g. ``2.31 ±0.05``."""
    mid, spread = median_spread(values)
    return f"{mid:.{digits}f} ±{spread / 2:.{digits}f}"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain, aligned text table (first column left-aligned, the rest right-aligned)."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        line = "  ".join(
            c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)
        )
        print(line.rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
