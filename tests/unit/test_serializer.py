"""JSON in, JSON out: the few tagged types survive, nothing else gets in."""

from __future__ import annotations

import datetime
import pickle

import pytest

from framework.errors import SerializationError
from framework.execution import JSONSerializer
from framework.serializer import dumps, loads


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        3,
        2.5,
        "héllo ✓",
        [1, "two", None],
        {"to": "+1234567890", "nested": {"list": [1, 2]}},
        (1, (2, 3)),
        datetime.datetime(2025, 11, 6, 10, 0, 0),
        datetime.timedelta(seconds=90),
        {"__hy": "dt", "v": "a user dict that looks like a tag"},
    ],
)
def test_values_round_trip(value: object) -> None:
    assert loads(dumps(value)) == value


def test_output_is_plain_json() -> None:
    assert dumps({"a": [1, 2]}) == b'{"a":[1,2]}'


def _nested(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({1, 2}, "type set"),
        (object(), "type object"),
        ({1: "a"}, "non-string keys"),
        (float("nan"), "finite number"),
        ({"deep": [1, {"x": float("-inf")}]}, "finite number"),
        ((1, float("inf")), "finite number"),
        (b"bytes", "type bytes"),
        ({"big": 2**64}, "64-bit range; send it as a string"),
        ({"text": "half a pair \ud800"}, "not valid UTF-8"),
        (_nested(100_000), "nested this deep"),
    ],
)
def test_values_json_cannot_hold_are_refused_when_written(value: object, fragment: str) -> None:
    with pytest.raises(SerializationError, match=fragment):
        dumps(value)


@pytest.mark.parametrize(
    "data",
    [
        pickle.dumps({"a": 1}),
        b"\x00\x01garbage",
        b"{not json",
        b'{"__hy": "exec", "v": "os.system"}',
        b'{"__hy": "dt", "v": "not a date"}',
        b'{"__hy": "msg", "v": ["id", "a.b", null]}',  # Huey messages are no longer stored
    ],
)
def test_anything_but_our_json_is_refused_when_read(data: bytes) -> None:
    with pytest.raises(SerializationError):
        loads(data)


def test_the_huey_serializer_uses_json() -> None:
    serializer = JSONSerializer()
    assert serializer.serialize({"a": 1}) == b'{"a":1}'
    assert serializer.deserialize(b'{"a":1}') == {"a": 1}
    with pytest.raises(SerializationError):
        serializer.deserialize(pickle.dumps("x"))
