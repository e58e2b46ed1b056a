"""JSON for everything hueyard and Huey put in Redis. Never pickle.

Payloads and results are plain JSON. The few Python types JSON lacks that a
payload without a model may still carry (tuples, datetimes, timedeltas) are
written as tagged objects ``{"__hy": tag, "v": ...}``; user dicts that happen
to hold the key ``"__hy"`` are escaped, so no payload can forge a tag.
Anything else is refused when written, and anything that is not such JSON is
refused when read: a value planted in Redis can never run code in a worker.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from framework.errors import SerializationError

__all__ = ["TAG", "decode", "dumps", "dumps_text", "loads"]

TAG = "__hy"

_json_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _is_native(value: Any) -> bool:
    """True when ``value`` is plain JSON that needs no tag: the C encoder takes it as is.

    Exact types only (a tuple or a ``str`` subclass is not native), dict keys
    must be strings, and no dict may hold the tag key. This check copies
    nothing, so a payload of plain JSON (the usual case) is encoded by
    ``json.dumps`` alone instead of being rebuilt value by value.
    """
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind is dict:
        if TAG in value:
            return False
        for key, item in value.items():
            if type(key) is not str or (type(item) not in _SCALARS and not _is_native(item)):
                return False
        return True
    if kind is list:
        return all(type(item) in _SCALARS or _is_native(item) for item in value)
    return False


def _encode(value: Any) -> Any:
    if _is_native(value):
        return value
    return _tagged(value)


def _tagged(value: Any) -> Any:
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, tuple):
        return {TAG: "tuple", "v": [_encode(item) for item in value]}
    if isinstance(value, list):
        return [_encode(item) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise SerializationError(
                f"cannot store a dict with non-string keys as JSON: {list(value)[:5]!r}"
            )
        encoded = {key: _encode(item) for key, item in value.items()}
        return {TAG: "dict", "v": encoded} if TAG in value else encoded
    if isinstance(value, datetime.datetime):
        return {TAG: "dt", "v": value.isoformat()}
    if isinstance(value, datetime.timedelta):
        return {TAG: "td", "v": value.total_seconds()}
    raise SerializationError(
        f"cannot store a value of type {type(value).__name__} as JSON; "
        "return or pass only dicts, lists, strings, numbers, booleans and None "
        "(or a pydantic model, which hueyard dumps for you)"
    )


def decode(value: Any) -> Any:
    """A value parsed from hueyard's JSON, with its tagged values turned back into Python's."""
    return _decode(value)


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(item) for item in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(TAG)
    if tag is None:
        return {key: _decode(item) for key, item in value.items()}
    body = value.get("v")
    if tag == "dict" and isinstance(body, dict):
        return {key: _decode(item) for key, item in body.items()}
    if tag == "tuple" and isinstance(body, list):
        return tuple(_decode(item) for item in body)
    if tag == "dt" and isinstance(body, str):
        try:
            return datetime.datetime.fromisoformat(body)
        except ValueError:
            pass
    if tag == "td" and isinstance(body, int | float):
        return datetime.timedelta(seconds=body)
    raise SerializationError(f"unknown or malformed tagged value in stored JSON: {value!r:.200}")


def dumps(value: Any) -> bytes:
    """Encode ``value`` as compact UTF-8 JSON (tagging tuples, datetimes and timedeltas)."""
    return dumps_text(value).encode()


def dumps_text(value: Any) -> str:
    """:func:`dumps` as text (ASCII: other characters are escaped)."""
    try:
        return _json_encode(_encode(value))
    except ValueError as exc:  # NaN / infinity
        raise SerializationError(f"cannot store {exc}; use null or a finite number") from None


def loads(data: bytes | str) -> Any:
    """Decode what :func:`dumps` wrote; anything else raises :class:`SerializationError`."""
    try:
        raw = json.loads(data)
    except (ValueError, TypeError) as exc:
        head = data[:16] if isinstance(data, bytes | str) else type(data).__name__
        raise SerializationError(
            f"stored data is not JSON written by hueyard (starts with {head!r}): {exc}; "
            "refusing to load it"
        ) from None
    return _decode(raw)
