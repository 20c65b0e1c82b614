"""The CLI's edge: help for every command, one-line errors with documented exit codes."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from dialer import __version__
from dialer.cli import cli, main


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_has_help(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0
    assert cli.commands[command].help, f"{command} has no docstring"
    assert result.output.startswith(f"Usage: cli {command} [OPTIONS]")
    for param in cli.commands[command].params:
        if param.param_type_name == "option" and param.name != "help":
            assert param.help, f"{command} {param.opts[0]} has no help text"


def test_version(capsys):
    code, out, _ = run_main(capsys, "--version")
    assert (code, out) == (0, f"dialer, version {__version__}\n")


def test_group_help_lists_the_exit_codes(capsys):
    code, out, _ = run_main(capsys, "--help")
    assert code == 0
    text = " ".join(out.split())
    assert "5 another run holds the campaign" in text and "130 stopped by a signal" in text
    assert "7 the API could not be reached" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "x.csv", "--playbook", "p", "--max-per-second", "abc"],
         "error: Invalid value for '--max-per-second': 'abc' is not a valid integer. "
         "(see 'dialer run --help')\n"),
        (["run", "x.csv"], "error: no playbook: pass --playbook ID\n"),
        (["run", "x.csv", "--playbook", "p", "--voice-id", "9"],
         "error: --voice-id must be 1 to 7, not '9'\n"),
        (["run", "x.csv", "--playbook", "p", "--param", "nope"],
         "error: --param takes COLUMN=NAME, not 'nope'\n"),
        (["run", "missing.csv", "--playbook", "p", "--dry-run"],
         "error: missing.csv: file not found\n"),
        (["run", "x.csv", "--playbook", "p", "--encoding", "klingon"],
         "error: --encoding is not an encoding Python knows: 'klingon'\n"),
        (["frobnicate"], "error: No such command 'frobnicate'. (see 'dialer --help')\n"),
    ],
)  # fmt: skip
def test_usage_and_input_errors_are_one_line_exit_2(capsys, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(capsys, *args)
    assert (code, out, err) == (2, "", message)


def test_a_campaign_file_error_names_the_file_and_key(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.toml").write_text('playbook = "p"\nvoice_modle = "fast"\n', encoding="utf-8")
    code, _, err = run_main(capsys, "run", "x.csv", "--campaign", "c.toml")
    assert code == 2
    assert err.startswith(
        "error: c.toml: unknown key 'voice_modle' (known keys: allocate, allow_possible, "
    )
    assert "voice_model)" in err and err.count("\n") == 1


def test_an_unexpected_bug_is_one_line_exit_1(capsys, monkeypatch):
    import dialer.cli

    def boom(*args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(dialer.cli, "build_settings", boom)
    monkeypatch.delenv("DIALER_DEBUG", raising=False)
    code, _, err = run_main(capsys, "run", "x.csv", "--playbook", "p")
    assert code == 1
    assert err == (
        "error: internal error: RuntimeError: kaboom (set DIALER_DEBUG=1 to see the traceback)\n"
    )


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_readme_shows_the_real_help_of_each_command(command):
    import subprocess
    from pathlib import Path

    from tests.conftest import dialer_exe

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    shown = subprocess.run([dialer_exe(), command, "--help"], capture_output=True, text=True)
    assert shown.returncode == 0
    assert shown.stdout in readme, f"README's 'dialer {command} --help' is out of date"
