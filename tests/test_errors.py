"""Tests for dialer.errors: the class tree, exit codes, and the tree drawn in the docstring."""

from __future__ import annotations

import inspect
import re

import pytest

import dialer.errors as errors_module
from dialer.errors import (
    EXIT_AUTH,
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_LEDGER,
    EXIT_LOCKED,
    EXIT_STOPPED,
    AuthError,
    ColumnError,
    ConfigError,
    DialerError,
    InputError,
    LeadsFileError,
    LedgerError,
    LedgerLocked,
    NotSent,
    OutcomeUnknown,
    RateLimited,
    Rejected,
    SendError,
    Stopped,
)


def defined_classes() -> dict[str, type]:
    """Every class defined in dialer.errors itself (not imported into it)."""
    return {
        name: obj
        for name, obj in vars(errors_module).items()
        if inspect.isclass(obj) and obj.__module__ == errors_module.__name__
    }


def docstring_tree() -> list[tuple[int, str, str]]:
    """``(depth, class name, rest of line)`` for each line of the tree in the module docstring."""
    doc = errors_module.__doc__ or ""
    block = doc.split("::", 1)[1]
    rows = []
    for line in block.splitlines():
        match = re.match(r"^(\s*(?:[│ ]   )*(?:[├└]── )?)([A-Z][A-Za-z]+)\b(.*)$", line)
        if not match or not line.strip():
            if rows and not line.strip():
                break  # the blank line after the tree ends it
            continue
        prefix, name, rest = match.groups()
        rows.append((len(prefix), name, rest))
    return rows


def docstring_parents() -> dict[str, str | None]:
    """The parent of each class as the docstring draws it."""
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for column, name, _ in docstring_tree():
        while stack and stack[-1][0] >= column:
            stack.pop()
        parents[name] = stack[-1][1] if stack else None
        stack.append((column, name))
    return parents


def test_every_class_is_a_dialer_error() -> None:
    classes = defined_classes()
    assert len(classes) >= 14
    for cls in classes.values():
        assert issubclass(cls, DialerError)
        assert issubclass(cls, Exception)


@pytest.mark.parametrize("cls", [InputError, ConfigError, LeadsFileError, ColumnError])
def test_input_errors_exit_2(cls: type[DialerError]) -> None:
    assert issubclass(cls, InputError)
    assert cls.exit_code == EXIT_INPUT == 2
    assert cls("x").exit_code == 2


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (DialerError, 1),
        (AuthError, 3),
        (LedgerError, 4),
        (LedgerLocked, 5),
        (Stopped, 130),
    ],
)
def test_exit_codes(cls: type[DialerError], code: int) -> None:
    assert cls.exit_code == code


def test_exit_code_constants_match() -> None:
    assert (EXIT_INTERNAL, EXIT_AUTH, EXIT_LEDGER, EXIT_LOCKED, EXIT_STOPPED) == (1, 3, 4, 5, 130)


def test_subclass_relations() -> None:
    assert issubclass(RateLimited, NotSent)
    assert issubclass(AuthError, Rejected)
    assert issubclass(LedgerLocked, LedgerError)
    for cls in (NotSent, Rejected, OutcomeUnknown):
        assert issubclass(cls, SendError)
    # the three send phases are disjoint: an error is in exactly one of them
    for a in (NotSent, Rejected, OutcomeUnknown):
        for b in (NotSent, Rejected, OutcomeUnknown):
            assert issubclass(a, b) == (a is b)


def test_send_error_fields() -> None:
    err = Rejected("HTTP 400 invalid_phone: bad", status=400, code="invalid_phone")
    assert (err.status, err.code, str(err), err.message) == (
        400,
        "invalid_phone",
        "HTTP 400 invalid_phone: bad",
        "HTTP 400 invalid_phone: bad",
    )
    limited = RateLimited("slow down", retry_after=7.0)
    assert (limited.status, limited.code, limited.retry_after) == (429, "rate_limited", 7.0)
    assert RateLimited("slow down").retry_after is None


def test_str_is_the_message() -> None:
    assert str(ConfigError("bad flag")) == "bad flag"
    assert ConfigError("bad flag").args == ("bad flag",)


def test_docstring_draws_every_class() -> None:
    drawn = [name for _, name, _ in docstring_tree()]
    assert sorted(drawn) == sorted(defined_classes())
    assert len(drawn) == len(set(drawn))


def test_docstring_tree_matches_the_real_hierarchy() -> None:
    classes = defined_classes()
    for name, parent in docstring_parents().items():
        base = classes[name].__bases__[0]
        if parent is None:
            assert classes[name] is DialerError
        else:
            assert base.__name__ == parent, f"{name}: docstring says {parent}, code says {base}"


def test_docstring_exit_codes_match() -> None:
    classes = defined_classes()
    checked = 0
    for _, name, rest in docstring_tree():
        match = re.search(r"exit (\d+)", rest)
        if match:
            assert classes[name].exit_code == int(match.group(1)), name
            checked += 1
    assert checked == 7


def test_documented_exit_codes_are_distinct() -> None:
    constants = {
        name: value for name, value in vars(errors_module).items() if name.startswith("EXIT_")
    }
    assert len(constants) >= 8
    assert all(isinstance(v, int) and 0 <= v <= 255 for v in constants.values())
    assert len(set(constants.values())) == len(constants)
    assert constants["EXIT_OK"] == 0


def test_every_class_exit_code_is_documented() -> None:
    documented = {v for k, v in vars(errors_module).items() if k.startswith("EXIT_")}
    for cls in defined_classes().values():
        assert cls.exit_code in documented


def test_a_message_is_always_one_line():
    from dialer.errors import ColumnError

    err = ColumnError("leads.csv: no column 'phone' (columns: \"0\n0\",\r\n  x)")
    assert str(err) == "leads.csv: no column 'phone' (columns: \"0 0\", x)"
