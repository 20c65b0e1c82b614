"""The HTML campaign report: one self-contained page to open offline or send as an attachment.

Owns the page (inline CSS, the key numbers, the status and attempts tables) and its three
charts: outcomes, calls over time, answer rate by the lead's local hour; with ``report --by``,
a fourth: each group's success and answer rates with their 95% interval bars, its table and the
comparison's plain sentence (``dialer.reports.compare``). The page holds only
aggregates: no phone, name, CRM id or call summary, so it can be passed around freely.

Charts are drawn with matplotlib as SVG and inlined into the page. Why: the page then needs no
JavaScript, no web font and no network: nothing to load, nothing a strict browser or a mail
client's attachment viewer blocks, no JavaScript bundle to inline (plotly's is 3.5 MB);
SVG stays crisp when zoomed or printed, its labels are real text (matplotlib escapes them), and
matplotlib is the mature, widely packaged plotting library, with the control needed for a
clean, readable figure. The SVG is trimmed for inlining: no XML prolog, metadata, comments or
namespace URLs, so the page references no URL at all; its ids are prefixed by the chart's id.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import matplotlib
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, PercentFormatter

from dialer.errors import ConfigError
from dialer.files import output_file
from dialer.reports.compare import Comparison
from dialer.reports.report import RATES_NOTE, rate_text, shown_groups, tests_phrase, verdict
from dialer.reports.stats import NO_OUTCOME, CampaignStats, format_duration
from dialer.terminal import visible

CHART_IDS = ("chart-outcomes", "chart-calls-over-time", "chart-answer-by-hour")
COMPARE_ID = "chart-compare"  # with ``--by``: the groups' rates and their intervals
COLOURS = {"closed": "#2e7d32", "no-answer": "#f2a516", "voicemail": "#7e57c2", "busy": "#ef6c3a",
           "recall-scheduled": "#1e88e5", "failed": "#c62828", "wrong-phone-format": "#8d6e63",
           NO_OUTCOME: "#b0bec5"}  # fmt: skip
LABELS = {"closed": "closed (answered)", "recall-scheduled": "recall-scheduled (answered)"}
OTHER, INK, MUTED, GRID = "#607d8b", "#263238", "#607d8b", "#e3e8eb"
FEW_CALLS = 10  # an hour with fewer calls than this is drawn pale: its rate is a rough figure
WIDTH = 10.4  # inches at 100 dpi: the page's content width, 1040 px
_RC = {"svg.fonttype": "none", "text.parse_math": False, "font.size": 10,
       "font.family": "sans-serif",
       "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial", "Helvetica"],
       "text.color": INK, "axes.labelcolor": INK, "axes.edgecolor": "#b0bec5",
       "xtick.color": MUTED, "ytick.color": MUTED, "axes.spines.top": False,
       "axes.spines.right": False}  # fmt: skip
_CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f4f6f8;color:#263238;
 font:15px/1.45 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Liberation Sans",sans-serif}
main{max-width:1100px;margin:0 auto;padding:28px 30px 40px}
header{border-bottom:3px solid #1e88e5;margin-bottom:22px;padding-bottom:10px}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:17px;margin:0 0 10px}
.sub{color:#607d8b;margin:0}
.kpis{display:grid;grid-template-columns:repeat(6,1fr);gap:12px;margin-bottom:18px}
.kpi{background:#fff;border-radius:8px;padding:12px 14px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
.kpi b{display:block;font-size:24px;line-height:1.2}
.kpi span{color:#607d8b;font-size:13px}
.tables{display:grid;grid-template-columns:1fr 1fr;gap:12px;margin-bottom:18px}
section{background:#fff;border-radius:8px;padding:16px 18px;margin-bottom:18px;
 box-shadow:0 1px 2px rgba(0,0,0,.08);break-inside:avoid}
table{border-collapse:collapse;width:100%;font-size:14px}
td{padding:3px 0;border-bottom:1px solid #eceff1}
td.n{text-align:right;font-variant-numeric:tabular-nums}
svg{display:block;width:100%;height:auto}
.empty{color:#607d8b;font-style:italic;margin:10px 0}
.note{color:#607d8b;font-size:13px;margin:6px 0 0}
.verdict{font-weight:600;margin:0 0 8px}
th{text-align:right;font-weight:600;color:#607d8b;padding:3px 0 3px 12px}
th:first-child{text-align:left;padding-left:0}
footer{color:#90a4ae;font-size:12px;text-align:center}
@media (max-width:760px){.kpis{grid-template-columns:repeat(2,1fr)}.tables{display:block}}
@media print{body{background:#fff}section,.kpi{box-shadow:none;border:1px solid #ddd}}
"""


def render_html(
    stats: CampaignStats,
    *,
    title: str,
    generated: datetime | None = None,
    comparison: Comparison | None = None,
) -> str:
    """The report as one HTML page: no script, no external reference, every data text escaped;
    with ``comparison`` (``report --by``), its chart, table and sentence too."""
    generated = generated or datetime.now(UTC)
    e = html.escape
    period = _period(stats)
    kpis = [
        ("Leads", f"{stats.leads:,}"),
        ("Calls made", f"{stats.calls:,}"),
        ("Answered", f"{stats.answered:,}"),
        ("Answer rate", "-" if stats.answer_rate is None else f"{stats.answer_rate:.1%}"),
        ("Avg talk time", format_duration(stats.avg_duration)),
        ("Awaiting outcome", f"{stats.no_outcome:,}"),
    ]
    attempts = {f"{n} call{'s' if n > 1 else ''}": count for n, count in stats.attempts.items()}
    parts = [
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>",
        f'<header><h1>{e(title)}</h1><p class="sub">{e(period)}</p></header>',
        '<div class="kpis">',
        *(f'<div class="kpi"><b>{e(v)}</b><span>{e(k)}</span></div>' for k, v in kpis),
        '</div>\n<div class="tables">',
        _table("Leads by status", stats.statuses, "No leads yet."),
        _table("Calls per lead", attempts, "No lead has been called yet."),
        "</div>",
        _chart_section(
            "chart-outcomes",
            "Call outcomes",
            _outcomes_svg(stats),
            "No calls yet.",
            _outcomes_note(stats),
        ),
        _chart_section(
            "chart-calls-over-time",
            f"Calls per {stats.unit} ({stats.zone})",
            _over_time_svg(stats),
            "No calls yet." if not stats.calls else "No call has a recorded time yet.",
            f"{stats.untimed:,} calls without a recorded time are not shown."
            if stats.untimed
            else "",
        ),
        _chart_section(
            "chart-answer-by-hour",
            "Answer rate by hour of the lead's local day",
            _by_hour_svg(stats),
            "No call has an outcome yet: run `dialer sync`.",
            "Answered calls over calls with an outcome, by when the call ended in the lead's own "
            "time zone; the figure above each bar is the number of calls.",
        ),
        *([_compare_section(comparison)] if comparison is not None else []),
        f"<footer>Generated by dialer on {generated:%Y-%m-%d %H:%M} UTC</footer>",
        "</main>\n</body>\n</html>\n",
    ]
    return "\n".join(parts)


def write_html(
    stats: CampaignStats,
    path: str | Path,
    *,
    title: str,
    generated: datetime | None = None,
    comparison: Comparison | None = None,
) -> None:
    """Write the report to ``path``: a temp file beside it, then an atomic rename (private to
    its owner, or the mode of the file it replaces)."""
    path = Path(path)
    page = render_html(stats, title=title, generated=generated, comparison=comparison)
    try:
        with output_file(path, encoding="utf-8") as handle:
            handle.write(page)
    except OSError as exc:
        raise ConfigError(f"cannot write --html {path}: {exc.strerror or exc}") from exc


# --- page pieces ------------------------------------------------------------------------------


def _period(stats: CampaignStats) -> str:
    if not stats.over_time:
        return "No calls yet"
    first, last = stats.over_time[0].start, stats.over_time[-1].start
    if first.date() == last.date():
        return f"Calls on {first:%a %d %b %Y} ({stats.zone})"
    return f"Calls from {first:%a %d %b} to {last:%a %d %b %Y} ({stats.zone})"


def _table(title: str, counts: Mapping[str, int], empty: str) -> str:
    rows = "".join(
        f'<tr><td>{html.escape(k)}</td><td class="n">{n:,}</td></tr>' for k, n in counts.items()
    )
    body = f"<table>{rows}</table>" if rows else f'<p class="empty">{html.escape(empty)}</p>'
    return f"<section><h2>{html.escape(title)}</h2>{body}</section>"


def _chart_section(chart_id: str, title: str, svg: str | None, empty: str, note: str) -> str:
    e = html.escape
    body = svg if svg is not None else f'<p class="empty">{e(empty)}</p>'
    note_html = f'<p class="note">{e(note)}</p>' if note and svg is not None else ""
    return f'<section id="{chart_id}" class="chart"><h2>{e(title)}</h2>{body}{note_html}</section>'


def _outcomes_note(stats: CampaignStats) -> str:
    if not stats.no_outcome:
        return ""
    return f"{stats.no_outcome:,} calls have no outcome yet: run `dialer sync` to fetch them."


# --- charts -----------------------------------------------------------------------------------


@contextmanager
def _figure(chart_id: str, height: float) -> Iterator[tuple[Figure, Axes]]:
    with matplotlib.rc_context({**_RC, "svg.hashsalt": chart_id}):
        fig = Figure(figsize=(WIDTH, height), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        ax.grid(axis="y", color=GRID, linewidth=0.8)
        ax.set_axisbelow(True)
        yield fig, ax


def _legend(ax: Axes, handles: list) -> None:
    """A legend in one row above the plot, where it can never hide a bar."""
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1.0), ncols=len(handles),
              frameon=False, fontsize=9.5, borderaxespad=0.2)  # fmt: skip


def _svg(fig: Figure, chart_id: str, label: str) -> str:
    """The figure as an ``<svg>`` element ready to inline in HTML."""
    with matplotlib.rc_context({**_RC, "svg.hashsalt": chart_id}):
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>\s*|<!--.*?-->", "", svg, flags=re.S)
    svg = re.sub(r"<[^>]+>", lambda tag: _scoped(tag.group(), chart_id), svg)
    root_end = svg.index(">")
    root = re.sub(r'\s(?:xmlns(?::\w+)?|version|width|height)="[^"]*"', "", svg[:root_end])
    return f'{root} role="img" aria-label="{html.escape(label)}"{svg[root_end:]}'.strip()


def _scoped(tag: str, prefix: str) -> str:
    """One SVG tag with its ids (and references to them) prefixed: each figure numbers its
    groups from 1 (``axes_1``...), and ids must be unique in the page."""
    tag = tag.replace("xlink:href=", "href=")
    tag = re.sub(r'(\sid="|url\(#|href="#)(?!' + prefix + r"-)", rf"\g<1>{prefix}-", tag)
    return tag


def _outcomes_svg(stats: CampaignStats) -> str | None:
    if not stats.calls:
        return None
    names = list(stats.outcomes)[::-1]  # barh draws bottom up: the first outcome on top
    counts = [stats.outcomes[n] for n in names]
    with _figure("chart-outcomes", 0.9 + 0.42 * len(names)) as (fig, ax):
        ax.grid(axis="y", visible=False)
        ax.grid(axis="x", color=GRID, linewidth=0.8)
        labels = [LABELS.get(n, n) for n in names]
        thick = 0.62 if len(names) > 2 else 0.4
        bars = ax.barh(labels, counts, height=thick, color=[COLOURS.get(n, OTHER) for n in names])
        for i, (bar, n) in enumerate(zip(bars, counts, strict=True)):
            bar.set_gid(f"chart-outcomes-bar-{i}")
            end = (bar.get_width(), bar.get_y() + thick / 2)
            ax.annotate(f"{n:,} ({n / stats.calls:.0%})", end, xytext=(5, 0), va="center",
                        textcoords="offset points", fontsize=9.5, color=INK)  # fmt: skip
        ax.set_xlim(0, max(counts) * 1.16)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("calls")
        ax.tick_params(axis="y", length=0, labelsize=10.5, labelcolor=INK)
        ax.spines["left"].set_visible(False)
        return _svg(fig, "chart-outcomes", "Bar chart of calls per outcome")


def _over_time_svg(stats: CampaignStats) -> str | None:
    buckets = stats.over_time
    if not buckets:
        return None
    x = list(range(len(buckets)))
    answered = [b.answered for b in buckets]
    other = [b.calls - b.answered for b in buckets]
    with _figure("chart-calls-over-time", 3.3) as (fig, ax):
        low = ax.bar(x, answered, width=0.8, color=COLOURS["closed"], label="answered")
        high = ax.bar(x, other, width=0.8, bottom=answered, color="#90a4ae",
                      label="not answered or no outcome yet")  # fmt: skip
        for i, bar in enumerate([*low, *high]):
            bar.set_gid(f"chart-calls-over-time-bar-{i}")
        fmt = "%a %d %b" if stats.unit == "day" else "%d %b %H:00"
        step = max(1, -(-len(buckets) // (12 if stats.unit == "day" else 10)))
        ax.set_xticks(x[::step], [f"{b.start:{fmt}}" for b in buckets[::step]])
        pad = max(0, 8 - len(buckets)) / 2  # a lone bar is not drawn across the whole chart
        ax.set_xlim(-0.6 - pad, len(buckets) - 0.4 + pad)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("calls")
        _legend(ax, [low, high])
        ax.set_ylim(0, max(b.calls for b in buckets) * 1.18 or 1)
        return _svg(fig, "chart-calls-over-time", f"Bar chart of calls per {stats.unit}")


def _by_hour_svg(stats: CampaignStats) -> str | None:
    hours = stats.by_local_hour
    if not any(h.calls for h in hours):
        return None
    rated = [h for h in hours if h.calls]
    with _figure("chart-answer-by-hour", 3.3) as (fig, ax):
        colours = ["#1e88e5" if h.calls >= FEW_CALLS else "#a9cdf3" for h in rated]
        bars = ax.bar([h.hour for h in rated], [h.rate or 0 for h in rated], width=0.75,
                      color=colours)  # fmt: skip
        for i, (bar, h) in enumerate(zip(bars, rated, strict=True)):
            bar.set_gid(f"chart-answer-by-hour-bar-{i}")
            ax.annotate(f"{h.calls:,}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        xytext=(0, 3), textcoords="offset points", ha="center", fontsize=8,
                        color=MUTED, bbox={"boxstyle": "square,pad=0.15", "fc": "white",
                                           "ec": "none"})  # fmt: skip
        handles: list[Artist] = [Patch(color="#1e88e5", label="answer rate")]
        if any(h.calls < FEW_CALLS for h in rated):
            handles.append(Patch(color="#a9cdf3", label=f"under {FEW_CALLS} calls: a rough rate"))
        if stats.answer_rate is not None:
            label = f"campaign average {stats.answer_rate:.0%}"
            line = ax.axhline(
                stats.answer_rate, color=COLOURS["closed"], linestyle="--", label=label
            )
            handles.append(line)
        _legend(ax, handles)
        ax.set_xticks(range(24), [f"{h:02d}" for h in range(24)])
        ax.set_xlim(-0.6, 23.6)
        top = min(1.0, max(h.rate or 0 for h in rated) + 0.1)
        ax.set_ylim(0, top * 1.12)  # room for the counts above a full bar
        ax.set_yticks([t / 10 for t in range(11) if t / 10 <= top + 1e-9])
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_xlabel("hour of the lead's local day")
        ax.set_ylabel("answered")
        return _svg(fig, "chart-answer-by-hour", "Bar chart of answer rate per local hour")


# --- report --by: the groups compared ---------------------------------------------------------


def _compare_section(comparison: Comparison) -> str:
    """The comparison's sentence, the groups' rates with their 95% intervals as a chart, a
    table of the groups, and the tests; every text escaped (control characters shown as
    ``\\x1b``, never written raw into the page)."""

    def e(text: str) -> str:
        return html.escape(visible(text))

    groups = comparison.groups
    title = (f"By {comparison.column} (from {comparison.source}): {len(groups):,} groups, "
             f"{sum(g.leads for g in groups):,} leads with a call")  # fmt: skip
    head = "".join(f"<th>{e(h)}</th>" for h in ("group", "leads", "answered", "success",
                                                "avg duration", "awaiting outcome"))  # fmt: skip
    rows = "".join(
        f'<tr><td>{e(g.name)}</td><td class="n">{g.leads:,}</td>'
        f'<td class="n">{e(rate_text(g.answered))}</td>'
        f'<td class="n">{e(rate_text(g.success))}</td>'
        f'<td class="n">{e(format_duration(g.avg_duration))}</td>'
        f'<td class="n">{g.awaiting:,}</td></tr>'
        for g in shown_groups(groups)
    )
    svg = _compare_svg(comparison)
    hidden = len(groups) - len(shown_groups(groups))
    more = f"{hidden:,} more groups, with fewer leads, are not shown." if hidden else ""
    notes = [*comparison.notes, more, tests_phrase(comparison), RATES_NOTE]
    return "".join([
        f'<section id="{COMPARE_ID}" class="chart"><h2>{e(title)}</h2>',
        f'<p class="verdict">{e(verdict(comparison.success, groups))}</p>',
        svg if svg is not None else '<p class="empty">No call has an outcome yet.</p>',
        f"<table><tr>{head}</tr>{rows}</table>" if groups else "",
        *(f'<p class="note">{e(note)}</p>' for note in notes if note),
        "</section>",
    ])  # fmt: skip


def _compare_svg(comparison: Comparison) -> str | None:
    groups = shown_groups([g for g in comparison.groups if g.decided])
    if not groups:
        return None
    x = list(range(len(groups)))
    width = 0.36
    with _figure(COMPARE_ID, 3.4) as (fig, ax):
        handles = []
        for shift, metric, colour in ((-width / 2, "success", COLOURS["closed"]),
                                      (width / 2, "answered", "#1e88e5")):  # fmt: skip
            rates = [g.success if metric == "success" else g.answered for g in groups]
            values = [r.value or 0.0 for r in rates]
            below = [v - (r.low or 0.0) for v, r in zip(values, rates, strict=True)]
            above = [(r.high or 0.0) - v for v, r in zip(values, rates, strict=True)]
            label = "success rate" if metric == "success" else "answer rate"
            bars = ax.bar([i + shift for i in x], values, width=width * 0.92, color=colour,
                          label=label, yerr=[below, above], capsize=4,
                          error_kw={"ecolor": INK, "elinewidth": 1.1})  # fmt: skip
            for i, bar in enumerate(bars):
                bar.set_gid(f"{COMPARE_ID}-bar-{metric}-{i}")
            handles.append(bars)
        ax.set_xticks(x, [f"{visible(g.name)} ({g.decided:,})" for g in groups])
        pad = max(0, 5 - len(groups)) / 2
        ax.set_xlim(-0.6 - pad, len(groups) - 0.4 + pad)
        ax.set_ylim(0, 1.0)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        ax.set_xlabel(f"{comparison.column} (leads with an outcome); bars: 95% intervals")
        _legend(ax, handles)
        return _svg(
            fig, COMPARE_ID, f"Bar chart of success and answer rates by {comparison.column}"
        )
