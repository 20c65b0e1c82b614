"""Campaign settings: from a TOML campaign file and command-line flags, validated once.

A flag overrides the file; the file overrides the defaults. Every setting has one name, the
same in the file as the flag's long name with ``_`` for ``-`` (``--max-per-minute`` is
``max_per_minute``), but for ``--params COL,...`` (the columns sent), ``params_only``:
``params`` is the table of ``--param COL=NAME`` renames. An unknown key or a bad value is a
``ConfigError`` naming the file and the key. Relative paths in a campaign file are read from
the file's own folder.
"""

from __future__ import annotations

import codecs
import hashlib
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dialer.errors import ConfigError


@dataclass(frozen=True)
class Settings:
    """Everything one run needs, validated. Build it with ``build_settings``."""

    leads: Path
    playbook: str
    output: Path
    # call settings: None = not sent, the API's default applies
    version_id: str | None = None
    voice_id: str | None = None
    voice_model: str | None = None
    language: str | None = None  # with ``language_auto``: the fallback (None: the API's)
    interrupt: bool | None = None
    # --language auto: each lead's language from its number's country (``language`` else)
    language_auto: bool = False
    # --versions A=50,B=50: an A/B split, (version id, weight) each; () none
    versions: tuple[tuple[str, float], ...] = ()
    # how leads not called yet get a version: "split" (the weights) or "adaptive" (Thompson
    # sampling on the outcomes so far, each version keeping a floor share)
    allocate: str = "split"
    # --setting-column SETTING=COL: the column holding each lead's own value of a call setting
    # (a column named after the setting is taken without it)
    setting_columns: dict[str, str] = field(default_factory=dict)
    # column mapping
    phone_column: str | None = None
    encoding: str | None = None  # None: detected
    delimiter: str | None = None  # None: sniffed
    sheet: str | None = None  # an .xlsx sheet; None: the first
    header_row: int | None = None  # the header's row (1-based, the spreadsheet's); None: found
    id_column: str | None = None  # the CRM id, carried into the results
    country_column: str | None = None  # each row's country; None: detected by name
    require: tuple[str, ...] = ()  # params that must not be empty (else missing_param)
    dnc: str | None = None  # a do-not-call list file
    allow_possible: bool = False  # dial numbers phonenumbers calls possible, not only valid
    default_region: str = "ES"
    params: dict[str, str] = field(default_factory=dict)  # column -> custom param name
    exclude: tuple[str, ...] = ()
    params_only: tuple[str, ...] | None = None  # --params: only these columns are sent; None: all
    # pacing
    max_per_second: int = 10
    max_per_minute: int = 100
    concurrency: int = 10
    timeout: float = 30.0
    # batches
    max_calls: int | None = None  # leads to dial in this run at most (a batch)
    until: str | None = None  # "HH:MM": start no call after it (campaign time zone)
    timezone: str | None = None  # IANA name; None: this machine's local time zone
    calling_hours: str | None = None  # "HH:MM-HH:MM" in each lead's own time zone
    calling_days: str | None = None  # "mon-fri"; None: every day (when hours are set)
    timezone_column: str | None = None  # a column holding each lead's IANA time zone
    # in-doubt leads
    # seconds after the dialer gave up on an answer before "not listed" means absent: generous,
    # since an API may create a call long after the request (a phone ringing twice is worse
    # than a lead called a little later)
    in_doubt_grace: float = 300.0
    settle: bool = True  # when only leads in doubt are left, wait out their grace and look again
    redial_in_doubt: bool = False  # a person checked: dial the undecidable ones again
    # after the call
    sync: bool = False  # look up the outcomes of earlier calls (GET /call/{id}) before dialing
    retry_outcomes: tuple[str, ...] = ()  # outcomes that make a lead worth another call
    max_attempts: int = 3  # calls per lead at most, the first one included
    retry_after: str = "4h"  # cool-down after a retryable outcome before the next call
    # the account's budget, shared with the other campaigns running on this machine
    share: float = 1.0  # this campaign's weight against theirs (each waiting one: its share)

    @property
    def retry_after_seconds(self) -> float:
        return parse_duration(self.retry_after)


# The keys a campaign file may hold, and the type each must have there.
_FILE_KEYS: dict[str, type | tuple[type, ...]] = {
    "playbook": str,
    "output": str,
    "version_id": str,
    "voice_id": (str, int),
    "voice_model": str,
    "language": str,
    "interrupt": bool,
    "versions": (str, dict),
    "allocate": str,
    "setting_columns": dict,
    "phone_column": str,
    "encoding": str,
    "delimiter": str,
    "sheet": str,
    "header_row": int,
    "id_column": str,
    "country_column": str,
    "require": list,
    "dnc": str,
    "allow_possible": bool,
    "default_region": str,
    "params": dict,
    "exclude": list,
    "params_only": list,
    "max_per_second": int,
    "max_per_minute": int,
    "concurrency": int,
    "timeout": (int, float),
    "in_doubt_grace": (int, float),
    "settle": bool,
    "max_calls": int,
    "until": str,
    "timezone": str,
    "calling_hours": str,
    "calling_days": str,
    "timezone_column": str,
    "sync": bool,
    "retry_outcomes": list,
    "max_attempts": int,
    "retry_after": str,
    # the account's shared budget
    "share": (int, float),
}
# Outcomes a lead may be called again after. Never "closed" (the lead answered) nor
# "recall-scheduled" (the API calls back itself), nor "wrong-phone-format" (it cannot work).
RETRYABLE = ("no-answer", "busy", "voicemail", "failed")
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_NAMES = {f.name for f in fields(Settings)}
_KIND_NAMES = {
    key: {
        str: "a string",
        bool: "true or false",
        int: "a whole number",
        dict: "a table",
        list: "a list of strings",
    }.get(
        kind,
        {
            (int, float): "a number",
            (str, dict): "a string such as 'A=50,B=50' or a table such as {A = 50, B = 50}",
        }.get(kind, "1 to 7"),
    )  # type: ignore[call-overload]
    for key, kind in _FILE_KEYS.items()
}
# The call settings a leads column may set for its own lead. Not ``playbook_id``: a leads file
# must not redirect calls to another playbook.
LEAD_SETTINGS = ("version_id", "voice_id", "voice_model", "language", "interrupt")
_TRUE, _FALSE = frozenset({"true", "yes", "1"}), frozenset({"false", "no", "0"})


def check_call_setting(key: str, value: object) -> str:
    """A call setting's value as sent (``"ES"``, ``"3"``, ``"fast"``, ``"true"``), else
    ``ValueError`` saying why (``"must be 1 to 7, not '9'"``). The one set of rules for a
    campaign's setting and a lead's own cell (``dialer.leads``)."""
    text = str(value).strip() if not isinstance(value, bool) else str(value).lower()
    if key == "voice_id":
        if text not in {str(i) for i in range(1, 8)}:
            raise ValueError(f"must be 1 to 7, not {text!r}")
    elif key == "voice_model":
        text = text.lower()
        if text not in ("fast", "human"):
            raise ValueError(f"must be 'fast' or 'human', not {text!r}")
    elif key == "language":
        text = text.upper()
        if not re.fullmatch(r"[A-Z]{2,3}", text):
            raise ValueError(f"must be a language code such as ES or EN, not {text!r}")
    elif key == "interrupt":
        folded = text.lower()
        if folded not in _TRUE | _FALSE:
            raise ValueError(f"must be true or false, not {text!r}")
        text = "true" if folded in _TRUE else "false"
    elif key == "version_id":
        if not text:
            raise ValueError("is empty")
    else:
        raise ValueError(f"is not a call setting a lead may set ({', '.join(LEAD_SETTINGS)})")
    return text


def parse_versions(spec: str | Mapping[str, Any]) -> tuple[tuple[str, float], ...]:
    """``"A=50,B=50"`` (or a table ``{A = 50, B = 50}``) as ``(("A", 50.0), ("B", 50.0))``;
    ``ValueError`` saying why for an empty spec, a bad weight, a repeated version or no weight
    above zero."""
    if isinstance(spec, Mapping):
        items = [(str(name), weight) for name, weight in spec.items()]
    else:
        items = []
        for part in str(spec).split(","):
            if not part.strip():
                continue
            name, sep, weight = part.partition("=")
            if not sep:
                raise ValueError(f"takes VERSION=WEIGHT items such as A=50,B=50, not {part!r}")
            items.append((name, weight.strip()))
    if not items:
        raise ValueError("names no version: give VERSION=WEIGHT items such as A=50,B=50")
    out: list[tuple[str, float]] = []
    for name, weight in items:
        name = name.strip()
        if not name:
            raise ValueError("has a weight with no version id before its '='")
        try:
            number = float(weight) if not isinstance(weight, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not (math.isfinite(number) and number >= 0):
            raise ValueError(f"weight of {name!r} must be a number of at least 0, not {weight!r}")
        if any(name == seen for seen, _ in out):
            raise ValueError(f"names version {name!r} twice")
        out.append((name, number))
    if not any(weight > 0 for _, weight in out):
        raise ValueError("needs a weight above 0")
    return tuple(out)


def split_point(key: str) -> float:
    """Where a lead's ledger key falls in [0, 1): the first 8 bytes of its SHA-256. The same
    on every machine and every run (unlike ``hash()``), so a lead keeps its version."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2.0**64


def assign_version(key: str, versions: tuple[tuple[str, float], ...]) -> str:
    """The version of ``versions`` a lead with ledger key ``key`` gets: its ``split_point``
    against the cumulative weights (a weight of 0 never gets a lead)."""
    point = split_point(key) * sum(weight for _, weight in versions)
    total = 0.0
    for name, weight in versions:
        total += weight
        if point < total:
            return name
    return next(name for name, weight in reversed(versions) if weight > 0)


def read_campaign_file(path: str | Path) -> dict[str, Any]:
    """The settings in a campaign TOML file, type-checked, paths made absolute."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: campaign file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the campaign file ({exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    values: dict[str, Any] = {}
    for key, value in data.items():
        kind = _FILE_KEYS.get(key)
        if kind is None:
            known = ", ".join(sorted(_FILE_KEYS))
            raise ConfigError(f"{path}: unknown key '{key}' (known keys: {known})")
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            raise ConfigError(f"{path}: '{key}' must be {_KIND_NAMES[key]}, not {value!r}")
        if key in ("output", "dnc"):
            value = str((path.parent / value).resolve())
        values[key] = value
    for key in ("params", "exclude", "require", "retry_outcomes", "params_only",
                "setting_columns"):  # fmt: skip
        items = values.get(key, {})
        pairs = items.items() if isinstance(items, dict) else [(v, v) for v in items]
        if any(not isinstance(k, str) or not isinstance(v, str) for k, v in pairs):
            raise ConfigError(f"{path}: every entry of '{key}' must be a string")
    return values


def parse_param_flags(
    items: tuple[str, ...] | list[str], flag: str = "--param", form: str = "COLUMN=NAME"
) -> dict[str, str]:
    """``--param COL=NAME`` values as a mapping (``--setting-column SETTING=COL`` too)."""
    out: dict[str, str] = {}
    for item in items:
        column, sep, name = item.partition("=")
        if not sep or not column.strip() or not name.strip():
            raise ConfigError(f"{flag} takes {form}, not {item!r}")
        out[column.strip()] = name.strip()
    return out


def build_settings(
    leads: str | Path,
    flags: Mapping[str, Any],
    campaign_file: str | Path | None = None,
    *,
    sandbox: bool = False,
) -> Settings:
    """Merge defaults, the campaign file and the flags (flags win; ``None`` = not given).

    With ``sandbox`` the default output is ``<stem>.sandbox.results.csv``, so that simulated
    calls never mark real leads as done.
    """
    merged: dict[str, Any] = read_campaign_file(campaign_file) if campaign_file else {}
    origin = {key: f"{campaign_file}: '{key}'" for key in merged}
    for key, value in flags.items():
        if key not in _NAMES:
            raise ConfigError(f"unknown setting '{key}'")
        if value is None or (
            key in ("params", "exclude", "require", "params_only", "setting_columns") and not value
        ):
            continue
        if key in ("params", "setting_columns"):
            value = {**merged.get(key, {}), **value}
        elif key == "exclude":
            value = [*merged.get("exclude", []), *value]
        merged[key] = value
        origin[key] = "--" + key.replace("_", "-").removesuffix("s" * (key == "setting_columns"))
    leads_path = Path(leads)
    if sandbox and "output" not in flags_given(flags):
        merged["output"] = str(default_output(leads_path, sandbox=True))
    merged.setdefault("output", str(default_output(leads_path)))
    if not merged.get("playbook"):
        raise ConfigError(
            "no playbook: pass --playbook ID"
            + (f" or set 'playbook' in {campaign_file}" if campaign_file else "")
        )
    return _validated(leads_path, merged, origin)


def default_output(leads: Path, *, sandbox: bool = False) -> Path:
    """``<leads stem>.results.csv`` beside the leads file (``.sandbox.results.csv``)."""
    return leads.with_name(f"{leads.stem}{'.sandbox' if sandbox else ''}.results.csv")


def parse_duration(text: str) -> float:
    """Seconds in ``"4h"``, ``"30m"``, ``"1d"``, ``"1h30m"``, ``"90s"``; ``ConfigError`` else."""
    cleaned = text.strip().lower().replace(" ", "")
    match = _DURATION.fullmatch(cleaned)
    if not cleaned or match is None:
        raise ConfigError(f"{text!r} is not a duration such as 4h, 30m, 1d or 1h30m")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def check_pacing(**values: Any) -> None:
    """Pacing given as flags to a command that reads no campaign file (``dialer sync``):
    ``ConfigError`` naming the flag, as for ``dialer run``."""
    for key, value in values.items():
        if why := _pacing_problem(key, value):
            raise ConfigError(f"--{key.replace('_', '-')} {why}")


def _pacing_problem(key: str, value: Any) -> str | None:
    """What is wrong with a pacing value (a rate, the concurrency, the timeout), or None."""
    if key == "timeout":
        ok = 0 < float(value) <= 600
        return None if ok else f"must be between 0 and 600 seconds, not {value!r}"
    if not isinstance(value, int) or value < 1:
        return f"must be a whole number of at least 1, not {value!r}"
    return None


def flags_given(flags: Mapping[str, Any]) -> set[str]:
    return {key for key, value in flags.items() if value is not None}


def _validated(leads: Path, v: dict[str, Any], origin: dict[str, str]) -> Settings:
    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"{origin.get(key, key)} {why}")

    language = v.get("language")
    if language is not None and str(language).strip().lower().partition(":")[0] == "auto":
        # --language auto[:FALLBACK]: each number's country, else the fallback (or the API's)
        v["language_auto"] = True
        v["language"] = str(language).strip().partition(":")[2].strip() or None
    for key in ("voice_id", "voice_model", "language", "interrupt"):
        if v.get(key) is not None:
            try:
                v[key] = check_call_setting(key, v[key])
            except ValueError as exc:
                raise bad(key, str(exc)) from None
    if v.get("interrupt") is not None:
        v["interrupt"] = v["interrupt"] == "true"
    if v.get("versions") is not None:
        try:
            v["versions"] = parse_versions(v["versions"])
        except ValueError as exc:
            raise bad("versions", str(exc)) from None
        if v.get("version_id") is not None:
            raise bad("versions", "and a version id cannot both be given: with a split, each "
                      "lead's version comes from it (drop --version-id)")  # fmt: skip
    if v.get("allocate") is not None:
        v["allocate"] = str(v["allocate"]).strip().lower()
        if v["allocate"] not in ("split", "adaptive"):
            raise bad("allocate", f"must be 'split' or 'adaptive', not {v['allocate']!r}")
        if v["allocate"] == "adaptive" and not v.get("versions"):
            raise bad("allocate", "adaptive needs the versions to choose between (--versions)")
    if v.get("setting_columns"):
        columns: dict[str, str] = {}
        for setting, column in dict(v["setting_columns"]).items():
            setting, column = str(setting).strip().lower(), str(column).strip()
            if setting == "playbook_id":
                raise bad(
                    "setting_columns",
                    "cannot take playbook_id: it stays a campaign "
                    "setting (a leads file must not redirect calls to another playbook)",
                )
            if setting not in LEAD_SETTINGS or not column:
                raise bad("setting_columns", f"takes SETTING=COLUMN with a setting among "
                          f"{', '.join(LEAD_SETTINGS)}, not {setting}={column}")  # fmt: skip
            columns[setting] = column
        v["setting_columns"] = columns
    for key in ("max_per_second", "max_per_minute", "concurrency", "timeout"):
        if key in v and (why := _pacing_problem(key, v[key])):
            raise bad(key, why)
    if "in_doubt_grace" in v and not (0 <= float(v["in_doubt_grace"]) <= 86400):
        raise bad(
            "in_doubt_grace", f"must be between 0 and 86400 seconds, not {v['in_doubt_grace']!r}"
        )
    if v.get("max_calls") is not None and (
        not isinstance(v["max_calls"], int) or v["max_calls"] < 0
    ):
        raise bad("max_calls", f"must be a whole number of at least 0, not {v['max_calls']!r}")
    if v.get("header_row") is not None and (
        isinstance(v["header_row"], bool)
        or not isinstance(v["header_row"], int)
        or v["header_row"] < 1
    ):
        raise bad(
            "header_row",
            f"must be a row number of at least 1 (rows are numbered as in a spreadsheet), "
            f"not {v['header_row']!r}",
        )
    if v.get("until") is not None:
        match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", str(v["until"]).strip())
        if not match:
            raise bad("until", f"must be a time such as 18:30, not {v['until']!r}")
        v["until"] = f"{int(match[1]):02d}:{match[2]}"
    if v.get("timezone") is not None:
        try:
            ZoneInfo(str(v["timezone"]).strip())
        except (ValueError, ZoneInfoNotFoundError):
            raise bad(
                "timezone", f"is not a time zone: {v['timezone']!r} (use e.g. Europe/Madrid)"
            ) from None
        v["timezone"] = str(v["timezone"]).strip()
    if v.get("calling_hours") is not None or v.get("calling_days") is not None:
        from dialer.schedule import CallingWindow

        try:
            CallingWindow.parse(v.get("calling_hours") or "00:00-23:59",
                                v.get("calling_days") or "mon-sun")  # fmt: skip
        except ConfigError as exc:
            key = "calling_hours" if "hours" in str(exc) else "calling_days"
            if origin.get(key, "").startswith("--"):
                raise
            raise ConfigError(f"{origin.get(key, key)}: {exc}") from None
    if v.get("retry_outcomes") is not None:
        items = v["retry_outcomes"]
        items = items.split(",") if isinstance(items, str) else items
        v["retry_outcomes"] = tuple(dict.fromkeys(o.strip().lower() for o in items if o.strip()))
        for outcome in v["retry_outcomes"]:
            if outcome not in RETRYABLE:
                why = {"closed": "the lead answered: an answered lead is never called again",
                       "recall-scheduled": "the API already calls that lead back itself"}.get(
                    outcome, f"retryable outcomes are {', '.join(RETRYABLE)}")  # fmt: skip
                raise bad("retry_outcomes", f"cannot hold {outcome!r}: {why}")
    if "max_attempts" in v and (
        isinstance(v["max_attempts"], bool)
        or not isinstance(v["max_attempts"], int)
        or not 1 <= v["max_attempts"] <= 20
    ):
        raise bad("max_attempts", f"must be a whole number from 1 to 20, not {v['max_attempts']!r}")
    if v.get("retry_after") is not None:
        try:
            parse_duration(str(v["retry_after"]))
        except ConfigError as exc:
            raise bad("retry_after", f"must be a duration: {exc}") from None
    if v.get("default_region") is not None:
        v["default_region"] = str(v["default_region"]).strip().upper()
    if v.get("encoding") is not None:
        try:
            v["encoding"] = codecs.lookup(str(v["encoding"]).strip()).name
        except LookupError:
            raise bad("encoding", f"is not an encoding Python knows: {v['encoding']!r}") from None
    for key in ("playbook", "version_id", "phone_column", "country_column"):
        if v.get(key) is not None:
            v[key] = str(v[key]).strip()
            if not v[key]:
                raise bad(key, "is empty")
    v["params"] = dict(v.get("params") or {})
    v["exclude"] = tuple(v.get("exclude") or ())
    if v.get("params_only") is not None:  # split on commas by the loader (a header may hold one)
        v["params_only"] = tuple(item.strip() for item in v["params_only"] if item.strip())
    v["require"] = tuple(
        name.strip() for item in v.get("require") or () for name in item.split(",") if name.strip()
    )
    if "share" in v:
        share = v["share"]
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1000:
            raise bad("share", f"must be a positive number up to 1000, not {share!r}")
    for key in ("timeout", "in_doubt_grace", "share"):
        if key in v:
            v[key] = float(v[key])
    given = {k: v[k] for k in _NAMES - {"leads", "playbook", "output"} if v.get(k) is not None}
    return Settings(leads=leads, playbook=v["playbook"], output=Path(v["output"]), **given)
