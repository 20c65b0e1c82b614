"""Text from the API or a lead file made visible, not obeyed, before it reaches a terminal.

Owns ``visible``: every character a terminal would act on instead of showing (C0 controls
such as ESC, BEL, CR, backspace; DEL; C1 controls; the bidirectional overrides and isolates
that reorder what is shown; line and paragraph separators) is written as an escape
(``\\x1b``, ``\\u202e``), so an error message, a lead cell or a column name can neither set the
window title, clear the screen, move the cursor nor disguise itself. Everything else, accents
and other scripts included, is left as it is. Also ``plural``, the one word-count helper of
every line the dialer prints. Imports nothing of the dialer.
"""

from __future__ import annotations

import re

# C0 controls (tab included: a cell's tab would misalign the columns printed), DEL, C1
# controls, the Arabic letter mark, the bidi marks, embeddings, overrides and isolates, the
# line and paragraph separators, the BOM / zero-width no-break space.
_HIDDEN = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` with every control or reordering character written as an escape."""
    return _HIDDEN.sub(_escape, text)


def visible_lines(lines: list[str]) -> list[str]:
    """Each line ``visible``: for the lists of lines the CLI prints."""
    return [visible(line) for line in lines]


def plural(count: int, noun: str) -> str:
    """``"1 lead"``, ``"2 leads"``, ``"1,000 leads"``."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"
