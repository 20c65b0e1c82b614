#!/usr/bin/env python3
"""Render the HTML campaign report in headless Chromium and check its charts are really drawn.

    python scripts/check_report.py [RESULTS.csv] [--screenshot report.png] [--save-html page.html]
    python scripts/check_report.py --page report.html      # check a page already written

Without RESULTS.csv the report of a built-in demo campaign is checked (``--screenshot
docs/report.png`` remakes the README's picture). Chromium (Debian's ``chromium`` package) loads
the page from a file, offline (every host name resolves to nothing), twice: ``--dump-dom`` on a
copy with a small script injected that records, for each chart, its rendered box and how many
bars have a non-empty box; then ``--screenshot`` of the whole page, whose pixels in each chart's
box must show coloured marks (Pillow, which matplotlib already requires). Exit 0 when every
chart is there, sized and drawn; 1 with a line per problem when not; 2 when it cannot check.
"""

from __future__ import annotations

import argparse
import html
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
from PIL import Image

from dialer.errors import DialerError
from dialer.model import Status
from dialer.reports.htmlreport import CHART_IDS, COMPARE_ID, write_html
from dialer.reports.stats import campaign_stats, load_stats
from dialer.schedule import check_timezone
from dialer.store.results import Entry

CHROMIUM = "/usr/bin/chromium"
WIDTH = 1200
MIN_SIZE = 100  # px: a chart narrower or lower than this is broken
PAINTED = 24  # mean distance from white (0-255) inside a bar's box: the bar is painted
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--force-device-scale-factor=1", "--virtual-time-budget=5000",
         "--host-resolver-rules=MAP * ~NOTFOUND"]  # fmt: skip
_PROBE = """<script>(function () {
  var root = document.documentElement, out = {height: root.scrollHeight, charts: {}};
  function page(b) {
    return {x: b.left + window.scrollX, y: b.top + window.scrollY, width: b.width,
            height: b.height};
  }
  IDS.forEach(function (id) {
    var el = document.getElementById(id);
    if (!el) { out.charts[id] = null; return; }
    var svg = el.querySelector("svg"), note = el.querySelector(".empty"), bars = [];
    el.querySelectorAll('g[id^="' + id + '-bar-"] path').forEach(function (p) {
      var b = p.getBoundingClientRect();
      if (b.width > 0 && b.height > 0) bars.push(page(b));
    });
    out.charts[id] = Object.assign(page((svg || el).getBoundingClientRect()),
      {svg: !!svg, note: note ? note.textContent : "", bars: bars});
  });
  var pre = document.createElement("pre");
  pre.id = "render-check"; pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
})();</script>"""


def check_page(
    page: Path, screenshot: Path, *, chromium: str = CHROMIUM, allow_notes: bool = False
) -> list[str]:
    """Render ``page`` in Chromium, save a screenshot of it, return the problems (none: OK)."""
    with tempfile.TemporaryDirectory(prefix="check-report-") as tmp:
        probe = Path(tmp) / "probe.html"
        text = page.read_text(encoding="utf-8")
        charts = [*CHART_IDS, *([COMPARE_ID] if f'id="{COMPARE_ID}"' in text else [])]
        script = _PROBE.replace("IDS", json.dumps(charts))
        probe.write_text(text.replace("</body>", script + "</body>", 1), encoding="utf-8")
        dom = _chromium(chromium, Path(tmp), f"--window-size={WIDTH},1000", "--dump-dom", probe)
        found = re.search(r'<pre id="render-check">(.*?)</pre>', dom, re.S)
        if not found:
            return ["the probe script did not run: no measurements in the dumped DOM"]
        measured = json.loads(html.unescape(found.group(1)))
        height = min(int(measured["height"]) + 20, 16_000)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        _chromium(chromium, Path(tmp), f"--window-size={WIDTH},{height}",
                  f"--screenshot={screenshot.resolve()}", page)  # fmt: skip
    if not screenshot.is_file():
        return [f"Chromium wrote no screenshot at {screenshot}"]
    problems = []
    with Image.open(screenshot) as image:
        rgb = image.convert("RGB")
        for chart_id in charts:
            problem = _judge(chart_id, measured["charts"].get(chart_id), rgb, allow_notes)
            if problem:
                problems.append(f"{chart_id}: {problem}")
    return problems


def _judge(chart_id: str, box: dict | None, image: Image.Image, allow_notes: bool) -> str:
    """What is wrong with one chart ("" when nothing): its DOM measures, then its pixels."""
    if box is None:
        return "missing from the page"
    if not box["svg"]:
        if box["note"] and allow_notes:
            print(f"{chart_id}: no chart, the page says: {box['note']}")
            return ""
        return f"no <svg> chart in it (the page says: {box['note'] or 'nothing'})"
    if box["width"] < MIN_SIZE or box["height"] < MIN_SIZE:
        return f"drawn at {box['width']:.0f}x{box['height']:.0f} px, too small or hidden"
    if not box["bars"]:
        return "no bar with a visible size"
    if box["x"] + box["width"] > image.width or box["y"] + box["height"] > image.height:
        return f"outside the {image.width}x{image.height} screenshot"
    pixels = np.asarray(image, dtype=np.int16)
    visible = [b for b in box["bars"] if b["width"] >= 3 and b["height"] >= 3]
    painted = sum(_painted(pixels, bar) for bar in visible)
    if not visible or painted < len(visible):
        return f"blank in the screenshot: {painted} of {len(visible)} bars painted"
    print(f"{chart_id}: {box['width']:.0f}x{box['height']:.0f} px, {len(box['bars'])} bars, "
          f"{painted} seen painted in the screenshot")  # fmt: skip
    return ""


def _painted(pixels: np.ndarray, bar: dict) -> bool:
    """Whether the middle of a bar's box, in the screenshot, is painted (not the white page)."""
    left, top = round(bar["x"]) + 1, round(bar["y"]) + 1
    right, bottom = round(bar["x"] + bar["width"]) - 1, round(bar["y"] + bar["height"]) - 1
    inside = pixels[top:bottom, left:right].reshape(-1, 3)
    return inside.size > 0 and float(np.mean(255 - inside)) > PAINTED


def _chromium(exe: str, tmp: Path, *args: str | Path) -> str:
    profile = tempfile.mkdtemp(prefix="profile-", dir=tmp)
    argv = [exe, *FLAGS, f"--user-data-dir={profile}"]
    argv += [a.resolve().as_uri() if isinstance(a, Path) else a for a in args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"chromium exited with {done.returncode}: {tail}")
    return done.stdout


# --- the demo campaign ------------------------------------------------------------------------

# Leads' countries: (number prefix, digits after it, share of leads). The US and UK numbers are
# in ranges reserved for fiction (555-01xx, Ofcom's 020 7946 0xxx).
_COUNTRIES = [("+346", 8, 0.55), ("+5255", 8, 0.17), ("+12125550", 3, 0.08),
              ("+13105550", 3, 0.06), ("+44207946", 4, 0.14)]  # fmt: skip
_ZONES = {"+346": "Europe/Madrid", "+5255": "America/Mexico_City",
          "+12125550": "America/New_York", "+13105550": "America/Los_Angeles",
          "+44207946": "Europe/London"}  # fmt: skip
DEMO_GENERATED = datetime(2025, 5, 17, 18, 0, tzinfo=UTC)
_MISSED = {"no-answer": 0.55, "voicemail": 0.24, "busy": 0.12, "recall-scheduled": 0.05,
           "failed": 0.03, "wrong-phone-format": 0.01}  # fmt: skip


def demo_entries(leads: int = 900, *, seed: int = 7) -> list[Entry]:
    """A realistic finished campaign over four days: every status, recycled leads, a few calls
    without an outcome yet, and answer rates that vary with the lead's local hour."""
    rng = random.Random(seed)
    day0 = date(2025, 5, 12)  # a Monday
    entries = []
    for row in range(2, leads + 2):
        status_pick = rng.random()
        crm = f"CRM-{10_000 + row}"
        if status_pick < 0.045:
            load = [Status.INVALID, Status.DUPLICATE, Status.DNC, Status.MISSING_PARAM]
            status = rng.choice(load)
            entries.append(Entry(f"row:{row}", row, "612 34", status, crm_id=crm))
            continue
        prefix, digits, _ = rng.choices(_COUNTRIES, [c[2] for c in _COUNTRIES])[0]
        phone = f"{prefix}{rng.randrange(10**digits):0{digits}d}"
        zone = ZoneInfo(_ZONES[prefix])
        if status_pick < 0.07:
            status = rng.choice([Status.PENDING, Status.DEFERRED, Status.FAILED, Status.IN_DOUBT])
            entries.append(Entry(phone, row, phone, status, crm_id=crm, error="demo"))
            continue
        start = datetime.combine(day0 + timedelta(days=rng.randrange(3)), time(9), tzinfo=zone)
        history, when = [], _slot(rng, start + timedelta(hours=rng.uniform(0, 11)), zone)
        for attempt in range(1, 4):
            hour = when.astimezone(zone).hour
            answer = 0.18 + 0.16 * (10 <= hour < 13) + 0.2 * (17 <= hour < 20) - 0.08 * (hour < 10)
            outcome = (
                "closed"
                if rng.random() < answer
                else rng.choices(list(_MISSED), list(_MISSED.values()))[0]
            )
            seconds = rng.lognormvariate(4.9, 0.5) if outcome == "closed" else rng.uniform(20, 45)
            ended = when + timedelta(seconds=seconds)
            call_id = f"call_{row:05d}_{attempt}"
            later = _slot(rng, when + timedelta(hours=rng.uniform(4, 26)), zone)
            retry = outcome in ("no-answer", "busy", "voicemail") and attempt < 3
            if retry and rng.random() < 0.88 and later.astimezone(zone).weekday() < 5:
                history.append(f"{call_id} {outcome} {_iso(ended)}")
                when = later  # recycled: called again on a later weekday
                continue
            unsynced = rng.random() < 0.03
            entries.append(Entry(
                phone, row, phone, Status.CALLED, call_id, attempt, "", _iso(ended),
                when.timestamp(), crm, "" if unsynced else outcome,
                "" if unsynced else f"{seconds:.0f}", "", "" if unsynced else _iso(ended),
                "; ".join(history)))  # fmt: skip
            break
    return entries


def _slot(rng: random.Random, after: datetime, zone: ZoneInfo) -> datetime:
    """A time in calling hours (09:00-20:00, the lead's local time) at or after ``after``."""
    local = after.astimezone(zone)
    if not 9 <= local.hour < 20:
        day = local.date() + timedelta(days=local.hour >= 20)
        local = datetime(day.year, day.month, day.day, 9, tzinfo=zone)
        local += timedelta(hours=rng.uniform(0, 4))
    return local.astimezone(UTC)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- command line -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", help="results CSV (default: a demo campaign)")
    parser.add_argument("--page", type=Path, help="check this HTML page as it is")
    parser.add_argument("--screenshot", type=Path, help="where to save the PNG (default: temp)")
    parser.add_argument("--save-html", type=Path, help="also keep the rendered page here")
    parser.add_argument("--title", help="the page's title (default: from the file's name)")
    parser.add_argument("--timezone", help="the campaign's time zone (default: UTC; the demo's "
                        "is Europe/Madrid)")  # fmt: skip
    parser.add_argument("--chromium", default=CHROMIUM)
    parser.add_argument(
        "--allow-notes",
        action="store_true",
        help="accept a chart replaced by a note (e.g. no outcome synced yet)",
    )
    args = parser.parse_args(argv)
    if not Path(args.chromium).exists() and not shutil.which(args.chromium):
        print(f"cannot check: no Chromium at {args.chromium} (apt-get install chromium)")
        return 2
    with tempfile.TemporaryDirectory(prefix="report-") as tmp:
        page = args.page or args.save_html or Path(tmp) / "report.html"
        if not args.page:
            try:
                zone = check_timezone(args.timezone or ("UTC" if args.results else "Europe/Madrid"))
                if args.results:
                    stats = load_stats(args.results, zone=zone)
                    title = args.title or f"Campaign report: {Path(args.results).name}"
                else:
                    stats = campaign_stats(demo_entries(), zone=zone)
                    title = args.title or "Admissions campaign, May 2025"
                generated = None if args.results else DEMO_GENERATED  # the same picture each time
                write_html(stats, page, title=title, generated=generated)
            except DialerError as exc:
                print(f"cannot check: {exc}")
                return 2
        screenshot = args.screenshot or Path(tmp) / "report.png"
        try:
            problems = check_page(page, screenshot, chromium=args.chromium,
                                  allow_notes=args.allow_notes)  # fmt: skip
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
            print(f"cannot check: {exc}")
            return 2
        for problem in problems:
            print(f"FAIL {problem}")
        if problems:
            return 1
        kept = f": screenshot {screenshot}" if args.screenshot else ""
        print(f"OK: every chart drawn{kept}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
