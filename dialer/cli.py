"""The ``dialer`` command line: flags in, one library call, text and an exit code out.

Each command builds settings from its flags, calls one function of ``dialer.engine.run`` (or the
simulator), and prints what ``dialer.reports.report`` formats. Every ``DialerError`` (and
every usage error) becomes ONE line on stderr, ``error: ...``, and its documented exit code;
nothing else here decides behaviour. Nothing imports this module.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from dialer import __version__
from dialer.api.client import (
    DEFAULT_API_URL,
    TOKEN_ENV,
    URL_ENV,
    check_api_url,
    redact,
    token_from_env,
)
from dialer.campaign import build_settings, parse_param_flags
from dialer.engine.budget import Running, running_campaigns, state_folder
from dialer.engine.run import (
    Plan,
    RunSummary,
    open_sandbox_store,
    plan,
    run_campaign,
    sandbox,
    sync_campaign,
)
from dialer.engine.stop import stop_campaign
from dialer.errors import (
    EXIT_IN_DOUBT,
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_STOPPED,
    ConfigError,
    DialerError,
)
from dialer.files import refuse_overwriting_inputs
from dialer.model import Outcome, per_minute
from dialer.reports.report import (
    comparison_lines,
    counts_phrase,
    plan_lines,
    start_lines,
    status_lines,
    stop_lines,
    summary_lines,
    sync_lines,
    wait_line,
    write_rejects,
)
from dialer.reports.stats import load_stats, report_lines
from dialer.schedule import check_timezone
from dialer.store.journal import journal_path
from dialer.store.ledger import append_whole
from dialer.terminal import visible


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dialer")
def cli() -> None:
    """Run outbound AI calling campaigns from a CSV on the Meetzy voice-call API.

    Exit codes: 0 done, 1 internal error, 2 usage/config/input error, 3 auth failure,
    4 results or journal unusable, 5 another run holds the campaign, 6 leads left in doubt,
    7 the API could not be reached, 130 stopped by a signal.
    """


@cli.command()
@click.argument("leads", type=click.Path(dir_okay=False))
@click.option("--playbook", help="Playbook id that runs the calls (required).")
@click.option(
    "--output",
    type=click.Path(dir_okay=False),
    help="Results CSV. Default: <leads stem>.results.csv beside the leads file.",
)
@click.option(
    "--campaign",
    "campaign_file",
    type=click.Path(dir_okay=False),
    help="TOML campaign file with any of these settings; flags override it.",
)
@click.option("--version-id", help="Playbook version (default: its production version).")
@click.option("--voice-id", help="Voice 1 to 7 (API default 6).")
@click.option("--voice-model", help="fast or human (API default human).")
@click.option(
    "--language",
    help="Call language: ES, EN, FR, DE, IT, PT... (API default ES); 'auto': each lead's from "
    "its number's country, 'auto:EN': else EN.",
)
@click.option(
    "--versions",
    metavar="V=W,...",
    help="A/B split between playbook versions, e.g. A=50,B=50 (weights): each lead gets one "
    "from its phone, and keeps it on every later call.",
)
@click.option(
    "--allocate",
    type=click.Choice(["split", "adaptive"]),
    help="How leads not called yet get a version of --versions: split (the weights) or "
    "adaptive (more to the one doing better so far, after --sync; each keeps 10%).",
)
@click.option(
    "--setting-column",
    "setting_columns",
    multiple=True,
    metavar="SETTING=COL",
    help="Column COL gives each lead's own language, voice_id, voice_model, version_id or "
    "interrupt (a column so named does without); blank: the campaign's. Repeatable.",
)
@click.option(
    "--interrupt/--no-interrupt",
    default=None,
    help="May the callee interrupt the AI (API default: no).",
)
@click.option(
    "--phone-column",
    metavar="COL,...",
    help="Column with the phone (default: detected by name); several, comma-separated, "
    "are tried in order in each row (the next where one is empty or invalid).",
)
@click.option("--sheet", help="Sheet of an .xlsx LEADS file (default: the first).")
@click.option("--delimiter", help="Force the CSV delimiter: , ; or tab (default: sniffed).")
@click.option(
    "--header-row",
    type=int,
    metavar="N",
    help="Row holding the column names, as numbered in a spreadsheet (default: found, "
    "skipping title and blank lines above it).",
)
@click.option("--id-column", metavar="COL", help="Column with the CRM id, copied to the results.")
@click.option(
    "--country-column",
    metavar="COL",
    help="Column with each row's country, which decides how its number is read "
    "(default: detected by name, e.g. Country, MailingCountry, País).",
)
@click.option(
    "--require",
    "require",
    multiple=True,
    metavar="COL,...",
    help="Params that must not be empty; a row missing one is not dialed "
    "(missing_param). Repeatable.",
)
@click.option(
    "--dnc",
    metavar="FILE",
    help="Do-not-call list (CSV, xlsx or one number per line): never dialed.",
)
@click.option(
    "--allow-possible",
    is_flag=True,
    default=None,
    help="Also dial numbers phonenumbers calls possible but not valid.",
)
@click.option(
    "--rejects",
    metavar="FILE",
    help="With --dry-run (or a run): write every rejected row, with its reason, "
    "as a CSV to fix and re-import.",
)
@click.option("--encoding", help="Text encoding of LEADS, e.g. cp1252 (default: detected).")
@click.option("--default-region", help="Country for numbers without a prefix (default ES).")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="COL=NAME",
    help="Send column COL as custom param NAME. Repeatable.",
)
@click.option(
    "--params",
    "params_only",
    multiple=True,
    metavar="COL,...",
    help="Send only these columns as custom params (with their --param names); "
    "--exclude still leaves out. Repeatable.",
)
@click.option("--exclude", multiple=True, metavar="COL", help="Do not send column COL. Repeatable.")
@click.option("--max-per-second", type=int, help="Sends in any 1 s window (default 10).")
@click.option("--max-per-minute", type=int, help="Sends in any 60 s window (default 100).")
@click.option("--concurrency", type=int, help="Requests in flight at once (default 10).")
@click.option("--timeout", type=float, help="Seconds to wait for an answer (default 30).")
@click.option(
    "--max-calls",
    type=int,
    help="Dial at most N leads in this run (a batch); the rest wait for the next.",
)
@click.option(
    "--until",
    metavar="HH:MM",
    help="Start no call after this time (in --timezone); later leads wait.",
)
@click.option(
    "--calling-hours",
    metavar="HH:MM-HH:MM",
    help="Dial a lead only between these hours in ITS time zone (from "
    "--timezone-column, else its number, else --timezone).",
)
@click.option(
    "--calling-days",
    metavar="DAYS",
    help="Days the calling hours apply, e.g. mon-fri (default: every day).",
)
@click.option("--timezone-column", metavar="COL", help="Column with each lead's IANA time zone.")
@click.option(
    "--timezone",
    help="IANA time zone for --until and for leads whose number has none "
    "(default: this machine's).",
)
@click.option(
    "--in-doubt-grace",
    type=float,
    help="Seconds after the dialer gave up on an answer before a call missing from "
    "GET /calls counts as not placed and the lead may be dialed again (default 300).",
)
@click.option(
    "--settle/--no-settle",
    default=None,
    help="When only leads in doubt are left, wait out their grace and look them up before "
    "ending (default: yes, never past --until; Ctrl-C leaves them for the next run).",
)
@click.option(
    "--redial-in-doubt",
    is_flag=True,
    default=None,
    help="Dial again the leads still in doubt after the look-up (only once a person "
    "has checked that their calls were not placed).",
)
@click.option(
    "--sync",
    is_flag=True,
    default=None,
    help="First record the outcomes of earlier calls (as 'dialer sync' does).",
)
@click.option(
    "--retry-outcomes",
    metavar="LIST",
    help="Call a lead again after these outcomes: no-answer, busy, voicemail, failed "
    "(comma-separated; default: never).",
)
@click.option(
    "--max-attempts", type=int, help="Calls per lead at most, the first included (default 3)."
)
@click.option(
    "--retry-after",
    metavar="DURATION",
    help="Cool-down before calling a lead again, e.g. 4h, 30m, 1d (default 4h).",
)
@click.option(
    "--share",
    type=float,
    help="This campaign's weight in the account's rate budget against the other campaigns "
    "running on this machine (default 1: an even split).",
)
@click.option("--dry-run", is_flag=True, help="Validate and preview; dial nobody, need no token.")
@click.option(
    "--sandbox",
    "use_sandbox",
    is_flag=True,
    help="Run against the built-in simulator on 127.0.0.1: no token, no network. "
    "Default output: <leads stem>.sandbox.results.csv.",
)
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: print the run's audit record (one JSON line) instead of the summary.",
)
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False),
    help="Also append the summary (or JSON record) to this file.",
)
@click.option(
    "--progress-every",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds between progress lines on stderr when it is not a terminal.",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    help=f"Read the API token from this file instead of ${TOKEN_ENV}.",
)
def run(leads: str, campaign_file: str | None, dry_run: bool, use_sandbox: bool,
        token_file: str | None, params: tuple[str, ...], exclude: tuple[str, ...],
        quiet: bool, log_format: str, log_file: str | None, progress_every: float,
        rejects: str | None, require: tuple[str, ...], **flags: Any) -> int:  # fmt: skip
    """Place one AI call per lead of LEADS (CSV) that has no final result yet.

    A rerun of the same command dials only the leads without a final result. The API token
    comes from $MEETZY_API_TOKEN (never from a flag); the API address from $MEETZY_API_URL
    (default https://api.meetzy.io).

    COL is a column's header as the dry run shows it (a repeated header's copies are
    'Name', 'Name (2)', ...), its spreadsheet letter (C, AB) or its position (#3); a header
    that matches exactly, or in any case, always wins.
    """
    flags["params"] = parse_param_flags(params)
    flags["setting_columns"] = parse_param_flags(
        flags.get("setting_columns") or (), "--setting-column", "SETTING=COLUMN"
    )
    flags["exclude"] = list(exclude)
    flags["require"] = list(require)
    settings = build_settings(leads, flags, campaign_file, sandbox=use_sandbox)
    inputs = {"leads file": settings.leads, "--dnc file": settings.dnc,
              "campaign file": campaign_file}  # fmt: skip
    refuse_overwriting_inputs({"--output": settings.output}, inputs)
    refuse_overwriting_inputs(
        {"--rejects": rejects, "--log-file": log_file},
        {**inputs, "results file": settings.output, "journal": journal_path(settings.output)},
    )
    if dry_run:
        preview = plan(settings, sandbox=use_sandbox)
        for line in plan_lines(preview, output=str(settings.output)):
            click.echo(line)
        if rejects:
            count = write_rejects(rejects, preview.load)
            click.echo(
                f"Rejected rows written to {rejects}: {count:,} (a worklist: fix the rows in "
                "the leads file, then rerun it)"
            )
        return EXIT_OK
    out = _Output(quiet=quiet or log_format == "json", every=progress_every, rejects=rejects)
    if use_sandbox:
        with sandbox(store=str(open_sandbox_store(settings.output))) as (url, token):
            out.say(f"Sandbox: a simulated Meetzy API on {url}; no real phone rings.")
            summary = _dial(settings, url, token, out, sandbox=True)
    else:
        token = token_from_env(token_file=token_file)
        url = check_api_url(os.environ.get(URL_ENV) or DEFAULT_API_URL)
        summary = _dial(settings, url, token, out)
    if log_format == "json":
        lines = [json.dumps(summary.record, ensure_ascii=False, default=str)]
        if not quiet:
            click.echo(lines[0])
    else:
        lines = summary_lines(summary)
        for line in lines:
            out.say(line)
    if log_file:
        _append_log(log_file, lines)
    if summary.stopped:
        return EXIT_STOPPED
    return EXIT_IN_DOUBT if summary.in_doubt else EXIT_OK


class _Output:
    """Where a run's words go: stdout unless quiet; a progress bar on a terminal, else a
    progress line on stderr every ``every`` seconds (cron mails stay short and plain)."""

    def __init__(self, *, quiet: bool, every: float, rejects: str | None = None) -> None:
        self.quiet, self.every, self.rejects = quiet, every, rejects
        self.bar: Any = None  # a tqdm bar, on a terminal
        self.total = self.done = 0
        self.counts: dict[str, int] = {}
        self.started = self.last = time.monotonic()

    def say(self, line: str) -> None:
        if not self.quiet:
            click.echo(line)

    def start(self, plan: Plan) -> None:
        for line in start_lines(plan):
            self.say(line)
        if self.rejects:  # from the rows this run loaded: the file is not read twice
            write_rejects(self.rejects, plan.load)
        self.total = len(plan.to_dial)
        if sys.stderr.isatty() and self.total and not self.quiet:
            from tqdm import tqdm  # here: cron and pipes never draw a bar

            self.bar = tqdm(total=self.total, unit="lead", file=sys.stderr)

    def outcome(self, outcome: Outcome) -> None:
        self.done += 1
        self.counts[outcome.status.value] = self.counts.get(outcome.status.value, 0) + 1
        if self.bar is not None:
            self.bar.update(1)
        elif not self.quiet and time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            rate = per_minute(self.counts.get("called", 0), self.last - self.started)
            click.echo(
                f"progress: {self.done:,}/{self.total:,} leads "
                f"({counts_phrase(self.counts)}), {rate:.1f} calls/min",
                err=True,
            )

    def wait(self, leads: int, seconds: float) -> None:
        if self.bar is not None:
            self.bar.clear()
        self.say(wait_line(leads, seconds))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _dial(
    settings: Any, url: str, token: str, out: _Output, *, sandbox: bool = False
) -> RunSummary:
    try:
        return run_campaign(settings, api_url=url, token=token, on_start=out.start,
                            on_outcome=out.outcome, on_wait=out.wait, handle_signals=True,
                            sandbox=sandbox,
                            # a sandbox is this process's own account: nobody to share with
                            budget_folder=None if sandbox else state_folder())  # fmt: skip
    finally:
        out.close()


def _append_log(path: str, lines: list[str]) -> None:
    """Append the summary whole, or not at all (a full disk leaves no half of it)."""
    try:
        append_whole(Path(path), "".join(line + "\n" for line in lines).encode(), follow=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot write --log-file {path}: {exc.strerror or exc}: the run itself ended "
            "and its results are saved; free some space or choose another file"
        ) from exc


@cli.command()
@click.argument("results", type=click.Path(dir_okay=False))
def status(results: str) -> int:
    """Show where a campaign stands: counts per status, the last run, leads in doubt.

    RESULTS is a results CSV written by 'dialer run' (its --output). Safe while a run is going
    on: it reads and never locks or writes. With $MEETZY_API_TOKEN set, it also shows the other
    campaigns running on the same account on this machine and their shares of its rate budget.
    """
    for line in status_lines(results, _running_on_account()):
        click.echo(line)
    return EXIT_OK


def _running_on_account() -> list[Running] | None:
    """The campaigns running on the account of $MEETZY_API_URL and $MEETZY_API_TOKEN on this
    machine; None (nothing shown) when the token is not in the environment."""
    if not os.environ.get(TOKEN_ENV, "").strip():
        return None
    try:
        token = token_from_env()
        url = check_api_url(os.environ.get(URL_ENV) or DEFAULT_API_URL)
    except ConfigError:
        return None  # the run itself would refuse them: nothing of an account to show
    return running_campaigns(state_folder(), url, token)


@cli.command(name="stop")
@click.argument("results", type=click.Path(dir_okay=False))
@click.option("--wait", type=float, default=300.0, show_default=True,
              help="Seconds to wait for the run to end.")  # fmt: skip
def stop(results: str, wait: float) -> int:
    """Stop the run (or sync) that is using a campaign, as Ctrl-C would, and wait for it.

    RESULTS is the campaign's results CSV. The run starts no new call, lets the calls in flight
    finish and writes everything; this command waits for that and says how the run ended.
    Nothing running: says so (exit 0). Still running after --wait: exit 5 (it keeps
    finishing its calls in flight; run 'dialer stop' again to wait more). For cron: stop a
    campaign now without knowing its process.
    """
    if wait < 0:
        raise ConfigError(f"--wait {wait:g}: must be 0 or more seconds")
    result = stop_campaign(results, wait=wait)
    for line in stop_lines(result):
        click.echo(line)
    return EXIT_LOCKED if result.running and not result.ended else EXIT_OK


@cli.command(name="sync")
@click.argument("results", type=click.Path(dir_okay=False))
@click.option(
    "--sandbox",
    "use_sandbox",
    is_flag=True,
    help="Ask the built-in simulator (the calls of 'dialer run --sandbox').",
)
@click.option("--max-per-second", type=int, default=10, show_default=True,
              help="Requests in any 1 s window.")  # fmt: skip
@click.option("--max-per-minute", type=int, default=100, show_default=True,
              help="Requests in any 60 s window.")  # fmt: skip
@click.option("--concurrency", type=int, default=5, show_default=True,
              help="Look-ups in flight at once.")  # fmt: skip
@click.option("--timeout", type=float, default=30.0, show_default=True,
              help="Seconds to wait for an answer.")  # fmt: skip
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    help=f"Read the API token from this file instead of ${TOKEN_ENV}.",
)
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def sync_cmd(results: str, use_sandbox: bool, max_per_second: int, max_per_minute: int,
             concurrency: int, timeout: float, token_file: str | None,
             quiet: bool) -> int:  # fmt: skip
    """Record what became of each call: outcome, duration, summary (GET /call/{id}).

    RESULTS is a results CSV written by 'dialer run'. Calls still in progress wait for the
    next sync. Shares the API's rate limits with dialing; takes the campaign's lock.
    """
    args = dict(max_per_second=max_per_second, max_per_minute=max_per_minute,
                concurrency=concurrency, timeout=timeout, handle_signals=True,
                budget_folder=None if use_sandbox else state_folder())  # fmt: skip
    if use_sandbox:
        with sandbox(store=str(open_sandbox_store(results))) as (url, token):
            summary = sync_campaign(results, api_url=url, token=token, sandbox=True, **args)
    else:
        token = token_from_env(token_file=token_file)
        url = check_api_url(os.environ.get(URL_ENV) or DEFAULT_API_URL)
        summary = sync_campaign(results, api_url=url, token=token, **args)
    if not quiet:
        for line in sync_lines(summary):
            click.echo(line)
    return EXIT_STOPPED if summary.stopped else EXIT_OK


@cli.command(name="report")
@click.argument("results", type=click.Path(dir_okay=False))
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False),
    help="Also write one self-contained HTML page with charts (opens offline).",
)
@click.option("--title", help="The HTML page's title (default: from the results file's name).")
@click.option(
    "--timezone",
    help="IANA time zone for calls over time, and for numbers without one (default UTC).",
)
@click.option(
    "--by",
    "by_column",
    metavar="COLUMN",
    help="Compare groups of leads by this column of the results (version_id, language, "
    "status...) or of the leads file (program_of_interest...): answer and success rates with "
    "95% intervals, and whether the data can tell which group is better.",
)
def report_cmd(results: str, html_path: str | None, title: str | None,
               timezone: str | None, by_column: str | None) -> int:  # fmt: skip
    """Summarise a campaign: statuses, outcomes, answer rate, durations, attempts.

    RESULTS is a results CSV written by 'dialer run'; run 'dialer sync' first for outcomes.
    Safe while a run is going on: it reads and never locks or writes the results.
    """
    refuse_overwriting_inputs(
        {"--html": html_path}, {"results file": results, "journal": journal_path(Path(results))}
    )
    zone = check_timezone(timezone) if timezone else None
    comparison = None
    if by_column is not None:  # first: a wrong column is one line, before anything is printed
        from dialer.reports.grouping import load_comparison  # statsmodels: only when asked

        comparison = load_comparison(results, by_column)
    stats = load_stats(results, zone=zone)
    for line in report_lines(stats):
        click.echo(line)
    if comparison is not None:
        click.echo("")
        for line in comparison_lines(comparison):
            click.echo(line)
    if html_path:
        from dialer.reports.htmlreport import write_html  # matplotlib: loaded only when needed

        write_html(stats, html_path, title=title or f"Campaign report: {Path(results).stem}",
                   comparison=comparison)  # fmt: skip
        click.echo(f"HTML report: {html_path}")
    return EXIT_OK


@cli.command(name="sandbox")
@click.option("--port", type=int, default=8765, show_default=True, help="Port on 127.0.0.1.")
@click.option(
    "--latency", type=float, default=0.0, show_default=True, help="Seconds added to every answer."
)
@click.option(
    "--per-second",
    type=int,
    default=10,
    show_default=True,
    help="Strict 1 s window limit (0: none).",
)
@click.option(
    "--per-minute",
    type=int,
    default=100,
    show_default=True,
    help="Strict 60 s window limit (0: none).",
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="NAME=RATE",
    help="Inject a fault on a share of POST /call: 503_before, 500_before, 500_after, drop_after, "
    "slow, garbage_200, 429, create_late. Repeatable.",
)
@click.option(
    "--late-seconds",
    type=float,
    default=40.0,
    show_default=True,
    help="create_late: seconds after the POST arrives before its call is created.",
)
@click.option("--old-shape", is_flag=True, help="Answer in the API's older response shape.")
@click.option(
    "--list-status",
    type=int,
    help="Answer GET /calls with this error status (e.g. 404), to see what the "
    "dialer does when it cannot look calls up.",
)
def sandbox_cmd(port: int, latency: float, per_second: int, per_minute: int,
                faults: tuple[str, ...], late_seconds: float, old_shape: bool,
                list_status: int | None) -> int:  # fmt: skip
    """Serve the built-in Meetzy API simulator on 127.0.0.1 until Ctrl-C.

    Its token is 'sandbox-token'. GET /_sim/calls, with that token, lists every call it created.
    """
    from dialer.api.simulator import SimConfig, Simulator, serve_forever

    rates = {}
    for item in faults:
        name, _, rate = item.partition("=")
        try:
            rates[name.strip()] = float(rate)
        except ValueError:
            raise click.UsageError(f"--fault takes NAME=RATE, not {item!r}") from None
    try:
        config = SimConfig(latency=latency, per_second=per_second or None,
                           per_minute=per_minute or None, fault_rates=rates,
                           late_seconds=late_seconds,
                           response_shape="old" if old_shape else "new",
                           list_status=list_status)  # fmt: skip
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(
        f"Meetzy simulator on http://127.0.0.1:{port} (token: {config.token}); Ctrl-C stops."
    )
    try:
        serve_forever(Simulator(config), port=port)
    except OSError as exc:
        raise click.ClickException(f"cannot serve on 127.0.0.1:{port}: {exc.strerror}") from exc
    return EXIT_OK


def _one_line(message: str) -> str:
    """One line, the token hidden, control characters shown escaped (never obeyed)."""
    message = redact(message, os.environ.get(TOKEN_ENV, "").strip())
    return visible(" ".join(message.split()))


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turn every error into one line and an exit code."""
    try:
        code = cli.main(args=argv, prog_name="dialer", standalone_mode=False)
    except DialerError as exc:
        click.echo(f"error: {_one_line(str(exc))}", err=True)
        code = exc.exit_code
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.Abort:
        click.echo("error: aborted", err=True)
        code = EXIT_STOPPED
    except click.ClickException as exc:
        hint = ""
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            hint = f" (see '{exc.ctx.command_path} --help')"
        click.echo(f"error: {_one_line(exc.format_message())}{hint}", err=True)
        code = EXIT_INPUT if isinstance(exc, click.UsageError) else exc.exit_code
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        code = EXIT_STOPPED
    except Exception as exc:  # a bug: still one line, the traceback on request
        if os.environ.get("DIALER_DEBUG"):
            raise
        click.echo(
            f"error: internal error: {type(exc).__name__}: {_one_line(str(exc))} "
            "(set DIALER_DEBUG=1 to see the traceback)",
            err=True,
        )
        code = EXIT_INTERNAL
    sys.exit(code if isinstance(code, int) else EXIT_OK)
