"""The journal's line format: what a line holds, and that nothing but the exact bytes decode."""

from __future__ import annotations

import pytest

from dialer.errors import LedgerError
from dialer.model import Status
from dialer.store.journal import decode_line, encode_line, from_record, read_journal, to_record
from dialer.store.results import Entry

FULL = Entry(
    "+34612345678", 2, "+34612345678", Status.CALLED, "c-2", 3, "", "2026-11-25T10:00:00Z",
    1764064800.5, "CRM-1", outcome="no-answer", duration="0", summary="Nadie — contestó",
    outcome_at="2026-11-25T10:01:00Z", history="c-1 busy 2026-11-24T10:00:00Z",
)  # fmt: skip
BARE = Entry("+34612345679", 3, "+34612345679", Status.DIALING, sent_at=1764064800.0)


@pytest.mark.parametrize("entry", [FULL, BARE])
def test_a_line_round_trips_every_field(entry):
    line = encode_line(entry)
    assert line.endswith("\n") and line.count("\n") == 1
    assert decode_line(line.rstrip("\n").encode()) == entry
    assert from_record(to_record(entry)) == entry


def test_outcome_fields_are_written_only_when_set():
    assert set(to_record(BARE)) == {"k", "row", "phone", "status", "call_id", "attempts", "error",
                                    "at", "sent", "crm"}  # fmt: skip
    assert {"o", "d", "s", "oa", "h"} <= set(to_record(FULL))


def test_any_changed_byte_or_a_lenient_spelling_is_refused():
    raw = encode_line(FULL).rstrip("\n").encode()
    for i in range(len(raw)):
        changed = raw[:i] + bytes([raw[i] ^ 0x01]) + raw[i + 1 :]
        assert decode_line(changed) is None, i
    crc, _, payload = raw.partition(b" ")
    assert decode_line(crc.upper() + b" " + payload) is None or crc == crc.upper()
    assert decode_line(b"") is None and decode_line(b"garbage") is None


def test_reading_from_an_offset_counts_bytes_from_the_start(tmp_path):
    journal = tmp_path / "j"
    first, second = encode_line(FULL).encode(), encode_line(BARE).encode()
    journal.write_bytes(first + second + b"0000")  # a torn last line
    records, good, size = read_journal(journal, start=len(first))
    assert records == [BARE] and good == len(first + second) and size == good + 4
    journal.write_bytes(first + b"nonsense\n" + second)
    with pytest.raises(LedgerError, match=r"damaged at line 2: the run stops"):
        read_journal(journal)
    assert read_journal(tmp_path / "missing") == ([], 0, 0)
