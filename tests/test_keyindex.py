"""The ledger table's key index (``dialer.store.keyindex``) answers as a list and a dict of the
same keys would: through merges, copies, and a dump restored."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.store.keyindex import KeyIndex, key_code

phones = st.integers(min_value=0, max_value=10**15).map(lambda n: f"+{n}")
others = st.sampled_from(["row:1", "row:22", "+034600", "+1_2", "+ 12", "+-5", "+\u0663", "x", ""])
keys = st.lists(st.one_of(phones, others), unique=True, max_size=60)


def test_a_phone_key_is_its_number_and_anything_else_is_not() -> None:
    assert key_code("+34600111222") == 34600111222
    for key in ("row:3", "+034600", "+1_2", "+ 12", "+-5", "+\u0663", "34600", "+", ""):
        assert key_code(key) == -1, key
    assert key_code("+" + "9" * 19) == -1  # past int64: kept as text


@settings(deadline=None)
@given(keys, keys)
def test_the_index_finds_each_key_as_a_dict_would(first: list[str], more: list[str]) -> None:
    more = [key for key in more if key not in first]
    index = KeyIndex.of(first)
    for key in more:
        index.append(key)
    every = first + more
    assert list(index) == every
    assert [index[i] for i in range(len(every))] == every
    assert all(index.get(key) == i for i, key in enumerate(every))
    assert index.get("+999999999999999999") is None and "row:0" not in index
    again = KeyIndex.restore(*index.dump())
    assert list(again) == every and all(again.get(k) == i for i, k in enumerate(every))
    copied = index.copy()
    copied.append("+777777777777777777")
    assert "+777777777777777777" not in index and copied.get("+777777777777777777") == len(every)


def test_a_big_index_merges_its_recent_keys_and_restores_with_numpy() -> None:
    index = KeyIndex()
    every = [f"+{34_600_000_000 + (i * 7919) % 100_003}" for i in range(100_003)]
    for key in every:
        index.append(key)  # several merges on the way (more keys than the small path takes)
    index.append("row:5")
    assert len(index.recent) < 16384 and index.get("row:5") == 100_003
    assert all(index.get(every[i]) == i for i in range(0, len(every), 997))
    again = KeyIndex.restore(*index.dump())
    assert again.get(every[-1]) == 100_002 and again.get("row:5") == 100_003
    assert list(again) == [*every, "row:5"]


def test_a_dump_naming_a_key_twice_is_refused() -> None:
    index = KeyIndex.of(["+1", "+2"])
    codes, other = index.dump()
    twice = bytes(codes[:8]) * 2
    with pytest.raises(ValueError):
        KeyIndex.restore(twice, other)
    with pytest.raises(ValueError):
        KeyIndex.restore(bytes(codes), ["row:1"])  # a text key no entry names
