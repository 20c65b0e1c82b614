"""Tests for dialer.campaign: defaults, the campaign file, flags over the file, error messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dialer import campaign
from dialer.campaign import (
    Settings,
    build_settings,
    default_output,
    parse_param_flags,
    read_campaign_file,
)
from dialer.errors import ConfigError


def write_toml(tmp_path: Path, text: str, name: str = "campaign.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(leads: str | Path, flags: dict[str, Any], file: Path | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        build_settings(leads, flags, file)
    assert info.value.exit_code == 2
    return str(info.value)


# --- defaults -----------------------------------------------------------------------------------


def test_defaults() -> None:
    settings = build_settings("leads.csv", {"playbook": "pb-1"})
    assert settings == Settings(
        leads=Path("leads.csv"), playbook="pb-1", output=Path("leads.results.csv")
    )
    assert settings.version_id is None
    assert settings.voice_id is None
    assert settings.voice_model is None
    assert settings.language is None
    assert settings.interrupt is None
    assert settings.phone_column is None
    assert settings.default_region == "ES"
    assert settings.params == {}
    assert settings.exclude == ()
    assert (settings.max_per_second, settings.max_per_minute) == (10, 100)
    assert settings.concurrency == 10
    assert settings.timeout == 30.0


def test_flags_given_as_none_keep_defaults() -> None:
    flags = {
        "playbook": "pb-1",
        "voice_id": None,
        "max_per_minute": None,
        "params": {},
        "exclude": (),
    }
    settings = build_settings("leads.csv", flags)
    assert settings.voice_id is None
    assert settings.max_per_minute == 100
    assert settings.params == {}
    assert settings.exclude == ()


@pytest.mark.parametrize(
    ("leads", "expected"),
    [
        ("leads.csv", "leads.results.csv"),
        ("data/leads.csv", "data/leads.results.csv"),
        ("/srv/batch/2024-05 leads.CSV", "/srv/batch/2024-05 leads.results.csv"),
        ("data/leads", "data/leads.results.csv"),
        ("data/leads.tsv", "data/leads.results.csv"),
    ],
)
def test_output_defaults_beside_the_leads(leads: str, expected: str) -> None:
    assert build_settings(leads, {"playbook": "pb-1"}).output == Path(expected)
    assert default_output(Path(leads)) == Path(expected)


def test_output_flag() -> None:
    settings = build_settings("data/leads.csv", {"playbook": "pb-1", "output": "out.csv"})
    assert settings.output == Path("out.csv")


def test_every_flag() -> None:
    flags = {
        "playbook": " pb-1 ",
        "version_id": "v9",
        "voice_id": 3,
        "voice_model": "fast",
        "language": " fr ",
        "interrupt": False,
        "phone_column": "Mobile",
        "default_region": "pt",
        "params": {"Nombre": "firstname"},
        "exclude": ["Notes"],
        "max_per_second": 5,
        "max_per_minute": 50,
        "concurrency": 4,
        "timeout": 12,
    }
    s = build_settings("leads.csv", flags)
    assert (s.playbook, s.version_id, s.voice_id, s.voice_model) == ("pb-1", "v9", "3", "fast")
    assert (s.language, s.interrupt, s.phone_column, s.default_region) == (
        "FR",
        False,
        "Mobile",
        "PT",
    )
    assert s.params == {"Nombre": "firstname"}
    assert s.exclude == ("Notes",)
    assert (s.max_per_second, s.max_per_minute, s.concurrency) == (5, 50, 4)
    assert s.timeout == 12.0 and isinstance(s.timeout, float)


def test_unknown_flag() -> None:
    assert config_error("leads.csv", {"playbook": "pb", "speed": 3}) == "unknown setting 'speed'"


# --- the campaign file --------------------------------------------------------------------------


CAMPAIGN = """\
playbook = "pb-file"
version_id = "v1"
voice_id = 2
voice_model = "human"
language = "es"
interrupt = true
phone_column = "Teléfono"
max_per_minute = 60
concurrency = 3
timeout = 15.5
exclude = ["Notas"]

[params]
Nombre = "firstname"
Correo = "email"
"""


def test_file_sets_values(tmp_path: Path) -> None:
    path = write_toml(tmp_path, CAMPAIGN)
    s = build_settings(tmp_path / "leads.csv", {}, path)
    assert s.playbook == "pb-file"
    assert s.version_id == "v1"
    assert s.voice_id == "2"
    assert s.voice_model == "human"
    assert s.language == "ES"
    assert s.interrupt is True
    assert s.phone_column == "Teléfono"
    assert s.max_per_minute == 60
    assert s.max_per_second == 10  # not in the file: default
    assert s.concurrency == 3
    assert s.timeout == 15.5
    assert s.exclude == ("Notas",)
    assert s.params == {"Nombre": "firstname", "Correo": "email"}
    assert s.output == tmp_path / "leads.results.csv"


def test_flag_overrides_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, CAMPAIGN)
    flags = {"playbook": "pb-flag", "voice_id": "5", "interrupt": False, "max_per_minute": 30}
    s = build_settings("leads.csv", flags, path)
    assert s.playbook == "pb-flag"
    assert s.voice_id == "5"
    assert s.interrupt is False  # a false flag still overrides a true in the file
    assert s.max_per_minute == 30
    assert s.concurrency == 3  # untouched file values stay


def test_param_flags_merge_with_file_params(tmp_path: Path) -> None:
    path = write_toml(tmp_path, CAMPAIGN)
    flags = {"params": parse_param_flags(["Programa=program", "Correo=mail"])}
    s = build_settings("leads.csv", flags, path)
    assert s.params == {"Nombre": "firstname", "Correo": "mail", "Programa": "program"}


def test_exclude_flags_add_to_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, CAMPAIGN)
    s = build_settings("leads.csv", {"exclude": ["Fecha"]}, path)
    assert s.exclude == ("Notas", "Fecha")


def test_read_campaign_file_returns_only_what_is_set(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'playbook = "pb"\nmax_per_second = 4\n')
    assert read_campaign_file(path) == {"playbook": "pb", "max_per_second": 4}


def test_empty_file_is_fine_but_needs_a_playbook(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "")
    assert read_campaign_file(path) == {}
    assert config_error("leads.csv", {}, path) == (
        f"no playbook: pass --playbook ID or set 'playbook' in {path}"
    )
    assert build_settings("leads.csv", {"playbook": "pb"}, path).playbook == "pb"


def test_unknown_key(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'playbook = "pb"\nmax_per_hour = 1000\n')
    with pytest.raises(ConfigError) as info:
        read_campaign_file(path)
    known = ", ".join(sorted(campaign._FILE_KEYS))
    assert str(info.value) == f"{path}: unknown key 'max_per_hour' (known keys: {known})"
    for key in ("playbook", "max_per_minute", "params", "voice_id", "output"):
        assert key in known


def test_unknown_key_through_build_settings(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'playbook = "pb"\nspeed = 3\n')
    message = config_error("leads.csv", {"playbook": "other"}, path)
    assert message.startswith(f"{path}: unknown key 'speed' (known keys: ")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('max_per_minute = "fast"', "'max_per_minute' must be a whole number, not 'fast'"),
        ("max_per_second = 2.5", "'max_per_second' must be a whole number, not 2.5"),
        ("concurrency = true", "'concurrency' must be a whole number, not True"),
        ("playbook = 42", "'playbook' must be a string, not 42"),
        ('interrupt = "yes"', "'interrupt' must be true or false, not 'yes'"),
        ('timeout = "30"', "'timeout' must be a number, not '30'"),
        ("timeout = false", "'timeout' must be a number, not False"),
        ("voice_id = 2.0", "'voice_id' must be 1 to 7, not 2.0"),
        ("voice_id = true", "'voice_id' must be 1 to 7, not True"),
        ('params = "Nombre"', "'params' must be a table, not 'Nombre'"),
        ('exclude = "Notas"', "'exclude' must be a list of strings, not 'Notas'"),
    ],
)
def test_wrong_type(tmp_path: Path, text: str, message: str) -> None:
    path = write_toml(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as info:
        read_campaign_file(path)
    assert str(info.value) == f"{path}: {message}"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("exclude = [1, 2]", "exclude"),
        ("[params]\nNombre = 1", "params"),
        ("params = {a = {}}", "params"),
    ],
)
def test_non_string_entries(tmp_path: Path, text: str, key: str) -> None:
    path = write_toml(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as info:
        read_campaign_file(path)
    assert str(info.value) == f"{path}: every entry of '{key}' must be a string"


def test_invalid_toml(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'playbook = "pb\nvoice_id = \n')
    with pytest.raises(ConfigError) as info:
        read_campaign_file(path)
    assert str(info.value).startswith(f"{path}: not valid TOML (")


def test_missing_campaign_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        read_campaign_file(path)
    assert str(info.value) == f"{path}: campaign file not found"


def test_undecodable_campaign_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('playbook = "años"\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        read_campaign_file(path)
    assert str(info.value).startswith(f"{path}: cannot read the campaign file (")


def test_relative_output_resolves_against_the_file(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "campaigns"
    folder.mkdir()
    path = write_toml(folder, 'playbook = "pb"\noutput = "../results/out.csv"\n')
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    s = build_settings("leads.csv", {}, Path("../campaigns/campaign.toml"))
    assert s.output == (tmp_path / "results" / "out.csv").resolve()
    assert s.output.is_absolute()
    assert read_campaign_file(path)["output"] == str((tmp_path / "results/out.csv").resolve())


def test_absolute_output_in_the_file(tmp_path: Path) -> None:
    target = tmp_path / "abs" / "out.csv"
    path = write_toml(tmp_path, f'playbook = "pb"\noutput = "{target.as_posix()}"\n')
    assert build_settings("leads.csv", {}, path).output == target.resolve()


def test_output_flag_overrides_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'playbook = "pb"\noutput = "file.csv"\n')
    assert build_settings("leads.csv", {"output": "flag.csv"}, path).output == Path("flag.csv")


# --- values -------------------------------------------------------------------------------------


@pytest.mark.parametrize("voice_id", [8, "8", 0, "0", "x", ""])
def test_voice_id_flag_out_of_range(voice_id: Any) -> None:
    message = config_error("leads.csv", {"playbook": "pb", "voice_id": voice_id})
    assert message == f"--voice-id must be 1 to 7, not {str(voice_id)!r}"


def test_voice_id_8_from_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'playbook = "pb"\nvoice_id = 8\n')
    assert config_error("leads.csv", {}, path) == f"{path}: 'voice_id' must be 1 to 7, not '8'"


def test_voice_id_from_file_overridden_by_a_good_flag(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'playbook = "pb"\nvoice_id = 8\n')
    assert build_settings("leads.csv", {"voice_id": "7"}, path).voice_id == "7"


@pytest.mark.parametrize("voice_id", [1, "1", " 7 ", 4])
def test_voice_id_ok(voice_id: Any) -> None:
    s = build_settings("leads.csv", {"playbook": "pb", "voice_id": voice_id})
    assert s.voice_id == str(voice_id).strip()


def test_voice_model_slow() -> None:
    message = config_error("leads.csv", {"playbook": "pb", "voice_model": "slow"})
    assert message == "--voice-model must be 'fast' or 'human', not 'slow'"


def test_voice_model_slow_from_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'playbook = "pb"\nvoice_model = "slow"\n')
    assert config_error("leads.csv", {}, path) == (
        f"{path}: 'voice_model' must be 'fast' or 'human', not 'slow'"
    )


@pytest.mark.parametrize("language", ["en", "EN", " En ", "por"])
def test_language_upper_cased(language: str) -> None:
    s = build_settings("leads.csv", {"playbook": "pb", "language": language})
    assert s.language == language.strip().upper()


@pytest.mark.parametrize("language", ["english", "e", "e1", "en-US"])
def test_language_bad(language: str) -> None:
    message = config_error("leads.csv", {"playbook": "pb", "language": language})
    assert message.startswith("--language must be a language code such as ES or EN, not ")


@pytest.mark.parametrize("key", ["concurrency", "max_per_second", "max_per_minute"])
@pytest.mark.parametrize("value", [0, -1])
def test_counts_below_one(key: str, value: int) -> None:
    message = config_error("leads.csv", {"playbook": "pb", key: value})
    flag = "--" + key.replace("_", "-")
    assert message == f"{flag} must be a whole number of at least 1, not {value}"


def test_concurrency_0_from_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'playbook = "pb"\nconcurrency = 0\n')
    assert config_error("leads.csv", {}, path) == (
        f"{path}: 'concurrency' must be a whole number of at least 1, not 0"
    )


@pytest.mark.parametrize("timeout", [0, 0.0, -1, 601])
def test_timeout_out_of_range(timeout: float) -> None:
    message = config_error("leads.csv", {"playbook": "pb", "timeout": timeout})
    assert message == f"--timeout must be between 0 and 600 seconds, not {timeout!r}"


@pytest.mark.parametrize("text", ["timeout = nan", "timeout = inf", "timeout = 0"])
def test_timeout_out_of_range_from_file(tmp_path: Path, text: str) -> None:
    path = write_toml(tmp_path, f'playbook = "pb"\n{text}\n')
    message = config_error("leads.csv", {}, path)
    assert message.startswith(f"{path}: 'timeout' must be between 0 and 600 seconds, not ")


@pytest.mark.parametrize("timeout", [0.5, 600])
def test_timeout_edges_ok(timeout: float) -> None:
    assert build_settings("leads.csv", {"playbook": "pb", "timeout": timeout}).timeout == timeout


def test_missing_playbook() -> None:
    assert config_error("leads.csv", {}) == "no playbook: pass --playbook ID"
    assert config_error("leads.csv", {"playbook": None}) == "no playbook: pass --playbook ID"
    assert config_error("leads.csv", {"playbook": ""}) == "no playbook: pass --playbook ID"


def test_blank_playbook() -> None:
    assert config_error("leads.csv", {"playbook": "   "}) == "--playbook is empty"


def test_blank_playbook_in_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'playbook = "  "\n')
    assert config_error("leads.csv", {}, path) == f"{path}: 'playbook' is empty"


# --- --param ------------------------------------------------------------------------------------


def test_parse_param_flags() -> None:
    assert parse_param_flags([]) == {}
    assert parse_param_flags(["Nombre=firstname", " Correo = email "]) == {
        "Nombre": "firstname",
        "Correo": "email",
    }
    # only the first '=' splits: a column name cannot hold one, a param name can
    assert parse_param_flags(["A=b=c"]) == {"A": "b=c"}
    # a later flag for the same column wins
    assert parse_param_flags(["A=x", "A=y"]) == {"A": "y"}


@pytest.mark.parametrize("item", ["COL", "=x", "COL=", " = ", ""])
def test_parse_param_flags_rejects(item: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_param_flags(["Nombre=firstname", item])
    assert str(info.value) == f"--param takes COLUMN=NAME, not {item!r}"


def test_the_example_campaign_file_is_valid():
    example = Path(__file__).resolve().parent.parent / "campaigns" / "admissions.toml"
    settings = build_settings("leads.csv", {}, example)
    assert settings.playbook == "pb_admissions_2027"
    assert settings.params == {"first_name": "firstname"}
    assert settings.exclude == ("email",)


def test_sandbox_runs_default_to_their_own_results_file():
    assert build_settings("d/leads.csv", {"playbook": "p"}, sandbox=True).output == Path(
        "d/leads.sandbox.results.csv"
    )
    explicit = build_settings("d/leads.csv", {"playbook": "p", "output": "o.csv"}, sandbox=True)
    assert explicit.output == Path("o.csv")


# --- after the call: sync and recycling ---------------------------------------------------------


def test_recycling_is_off_by_default_with_vicidial_like_defaults() -> None:
    s = build_settings("leads.csv", {"playbook": "pb"})
    assert (s.sync, s.retry_outcomes, s.max_attempts, s.retry_after) == (False, (), 3, "4h")
    assert s.retry_after_seconds == 4 * 3600


def test_recycling_from_the_file_and_flags(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'playbook = "pb"\nsync = true\n'
                      'retry_outcomes = ["no-answer", "Busy", "no-answer"]\n'
                      'max_attempts = 5\nretry_after = "1h30m"\n')  # fmt: skip
    s = build_settings("leads.csv", {}, path)
    assert (s.sync, s.retry_outcomes, s.max_attempts) == (True, ("no-answer", "busy"), 5)
    assert s.retry_after_seconds == 5400
    s = build_settings("leads.csv", {"retry_outcomes": "voicemail, failed", "retry_after": "1d"},
                       path)  # fmt: skip
    assert s.retry_outcomes == ("voicemail", "failed") and s.retry_after_seconds == 86400


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"retry_outcomes": "no-answer,closed"}, "--retry-outcomes cannot hold 'closed': the lead "
         "answered: an answered lead is never called again"),
        ({"retry_outcomes": "recall-scheduled"}, "--retry-outcomes cannot hold "
         "'recall-scheduled': the API already calls that lead back itself"),
        ({"retry_outcomes": "nope"}, "--retry-outcomes cannot hold 'nope': retryable outcomes "
         "are no-answer, busy, voicemail, failed"),
        ({"max_attempts": 0}, "--max-attempts must be a whole number from 1 to 20, not 0"),
        ({"max_attempts": 21}, "--max-attempts must be a whole number from 1 to 20, not 21"),
        ({"retry_after": "4 hours"}, "--retry-after must be a duration: '4 hours' is not a "
         "duration such as 4h, 30m, 1d or 1h30m"),
        ({"retry_after": ""}, "--retry-after must be a duration: '' is not a duration"),
    ],
)  # fmt: skip
def test_bad_recycling_settings_are_one_clear_line(flags: dict[str, Any], message: str) -> None:
    assert config_error("leads.csv", {"playbook": "pb", **flags}).startswith(message)


def test_bad_recycling_settings_in_a_file_name_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'playbook = "pb"\nretry_outcomes = ["closed"]\n')
    assert config_error("leads.csv", {}, path).startswith(
        f"{path}: 'retry_outcomes' cannot hold 'closed'"
    )
    path = write_toml(tmp_path, 'playbook = "pb"\nretry_outcomes = "busy"\n', "b.toml")
    assert "'retry_outcomes' must be a list of strings" in config_error("leads.csv", {}, path)


def test_check_pacing_names_the_flag_as_dialer_run_does() -> None:
    from dialer.campaign import check_pacing

    check_pacing(max_per_second=10, max_per_minute=100, concurrency=5, timeout=30.0)
    with pytest.raises(ConfigError, match=r"^--max-per-minute must be a whole number of at least "
                       r"1, not 0$"):  # fmt: skip
        check_pacing(max_per_minute=0)
    with pytest.raises(ConfigError, match=r"^--timeout must be between 0 and 600 seconds"):
        check_pacing(timeout=0.0)
    assert config_error("l.csv", {"playbook": "pb", "timeout": 0.0}) == (
        "--timeout must be between 0 and 600 seconds, not 0.0"
    )
