"""Keyset cursors round-trip, and only a cursor the server issued is accepted.

CONTRACT.md section 4: "a cursor that was not issued by the server → 400", that
is ``ValidationFailed`` on the field ``cursor``.
"""

from __future__ import annotations

import string
from datetime import UTC, datetime

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from engage_core.errors import ValidationFailed
from engage_core.queries import CursorCodec, Position

KEY = b"k" * 32
URL_SAFE = string.ascii_letters + string.digits + "-_"

keys = st.binary(min_size=32, max_size=32)
scopes = st.text()
positions = st.builds(
    Position,
    recorded_at=st.datetimes(
        min_value=datetime(1970, 1, 1),
        max_value=datetime(9999, 12, 31, 23, 59, 59, 999999),
        timezones=st.just(UTC),
    ),
    id=st.integers(min_value=1, max_value=2**63 - 1),
)
# Characters a client might plausibly put into a cursor, then anything at all.
characters = st.one_of(st.sampled_from(URL_SAFE + "+/=.~!% \n\t"), st.characters())


def assert_refused(codec: CursorCodec, cursor: str, scope: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        codec.decode(cursor, scope=scope)
    assert [error.field for error in caught.value.errors] == ["cursor"]


@given(keys, scopes, positions)
@example(KEY, "", Position(datetime(1970, 1, 1, tzinfo=UTC), 1))
@example(KEY, "user", Position(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), 2**63 - 1))
def test_cursor_round_trips_any_position(key: bytes, scope: str, position: Position) -> None:
    codec = CursorCodec(key)
    assert codec.decode(codec.encode(position, scope=scope), scope=scope) == position


@given(keys, scopes, positions)
def test_cursor_is_url_safe_text(key: bytes, scope: str, position: Position) -> None:
    cursor = CursorCodec(key).encode(position, scope=scope)
    assert cursor
    assert set(cursor) <= set(URL_SAFE)


@given(keys, scopes, scopes, positions)
def test_cursor_issued_for_another_scope_is_refused(
    key: bytes, scope: str, other_scope: str, position: Position
) -> None:
    assume(scope != other_scope)
    codec = CursorCodec(key)
    assert_refused(codec, codec.encode(position, scope=scope), other_scope)


@given(keys, keys, scopes, positions)
def test_cursor_issued_under_another_key_is_refused(
    key: bytes, other_key: bytes, scope: str, position: Position
) -> None:
    assume(key != other_key)
    cursor = CursorCodec(key).encode(position, scope=scope)
    assert_refused(CursorCodec(other_key), cursor, scope)


@given(keys, scopes, positions, st.integers(min_value=0), characters)
@example(KEY, "user-1", Position(datetime(2024, 1, 1, tzinfo=UTC), 5), 26, "+")
def test_cursor_with_any_character_replaced_is_refused(
    key: bytes, scope: str, position: Position, index: int, replacement: str
) -> None:
    codec = CursorCodec(key)
    cursor = codec.encode(position, scope=scope)
    index %= len(cursor)
    assume(cursor[index] != replacement)
    assert_refused(codec, cursor[:index] + replacement + cursor[index + 1 :], scope)


@given(keys, scopes, positions, st.integers(min_value=0))
def test_cursor_with_any_character_removed_is_refused(
    key: bytes, scope: str, position: Position, index: int
) -> None:
    codec = CursorCodec(key)
    cursor = codec.encode(position, scope=scope)
    index %= len(cursor)
    assert_refused(codec, cursor[:index] + cursor[index + 1 :], scope)


@given(keys, scopes, positions, st.integers(min_value=0), characters)
@example(KEY, "user", Position(datetime(2024, 1, 1, tzinfo=UTC), 12345), 10, "!")
def test_cursor_with_any_character_inserted_is_refused(
    key: bytes, scope: str, position: Position, index: int, inserted: str
) -> None:
    codec = CursorCodec(key)
    cursor = codec.encode(position, scope=scope)
    index %= len(cursor) + 1
    assert_refused(codec, cursor[:index] + inserted + cursor[index:], scope)


@given(keys, scopes, positions, st.integers(min_value=1))
def test_truncated_cursor_is_refused(
    key: bytes, scope: str, position: Position, dropped: int
) -> None:
    codec = CursorCodec(key)
    cursor = codec.encode(position, scope=scope)
    assert_refused(codec, cursor[: -min(dropped, len(cursor))], scope)


@given(keys, scopes, positions, st.lists(characters, min_size=1, max_size=8).map("".join))
@example(KEY, "user", Position(datetime(2024, 1, 1, tzinfo=UTC), 12345), "=")
@example(KEY, "user", Position(datetime(2024, 1, 1, tzinfo=UTC), 12345), "\n")
def test_extended_cursor_is_refused(
    key: bytes, scope: str, position: Position, extension: str
) -> None:
    codec = CursorCodec(key)
    cursor = codec.encode(position, scope=scope)
    assert_refused(codec, cursor + extension, scope)


@given(
    scopes,
    st.one_of(
        st.text(),
        st.text(alphabet=URL_SAFE, min_size=40, max_size=48),
        st.text(alphabet=URL_SAFE + "+/=", max_size=64),
    ),
)
@example("user", "")
@example("user", "=")
@example("user", "A" * 44)
@example("user", "A" * 65)
@example("user", "é" * 44)
def test_arbitrary_text_is_refused_as_a_cursor(scope: str, text: str) -> None:
    assert_refused(CursorCodec(KEY), text, scope)


@pytest.mark.parametrize("position_id", [1, 2**31, 2**63 - 1])
def test_cursor_round_trips_microseconds(position_id: int) -> None:
    codec = CursorCodec(KEY)
    position = Position(datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC), position_id)
    decoded = codec.decode(codec.encode(position, scope="s"), scope="s")
    assert decoded.recorded_at.microsecond == 999999
    assert decoded == position
