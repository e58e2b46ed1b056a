"""JSON for everything hueyard and Huey put in Redis. Never pickle.

Payloads and results are plain JSON. The few Python types JSON lacks that a
payload without a model may still carry (tuples, datetimes, timedeltas) are
written as tagged objects ``{"__hy": tag, "v": ...}``; user dicts that happen
to hold the key ``"__hy"`` are escaped, so no payload can forge a tag.
Anything else is refused when written (NaN and infinity included, and text
that is not valid Unicode), and anything that is not such JSON is refused
when read: a value planted in Redis can never run code in a worker.

The encoding and decoding is orjson's (about fifteen times faster than the
standard library's for a typical payload). Integers must fit in 64 bits
(send larger ones as strings: JavaScript, the CRM's other half, could not
read them exactly anyway).
"""

from __future__ import annotations

import datetime
import math
from typing import Any

import orjson

from framework.errors import SerializationError

__all__ = ["TAG", "decode", "dumps", "dumps_text", "loads"]

TAG = "__hy"
_TAG_BYTES = b'"__hy"'

_PLAIN = frozenset({str, int, bool, type(None)})
"""Scalar types that are JSON as they are (a float must also be finite)."""


def _is_native(value: Any) -> bool:
    """True when ``value`` is plain JSON that needs no tag: orjson takes it as is.

    Exact types only (a tuple or a ``str`` subclass is not native), dict keys
    must be strings, floats finite, and no dict may hold the tag key. This
    check copies nothing, so a payload of plain JSON (the usual case) is
    encoded in one call instead of being rebuilt value by value.
    """
    kind = type(value)
    if kind in _PLAIN:
        return True
    if kind is float:
        return math.isfinite(value)
    if kind is dict:
        if TAG in value:
            return False
        for key, item in value.items():
            if type(key) is not str or (type(item) not in _PLAIN and not _is_native(item)):
                return False
        return True
    if kind is list:
        return all(type(item) in _PLAIN or _is_native(item) for item in value)
    return False


def _encode(value: Any) -> Any:
    if _is_native(value):
        return value
    return _tagged(value)


def _tagged(value: Any) -> Any:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SerializationError(f"cannot store {value!r}; use null or a finite number")
        return value
    if isinstance(value, str | bool | int):
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
    """Encode ``value`` as compact UTF-8 JSON (tagging tuples, datetimes and timedeltas).

    Raises :class:`SerializationError` for what JSON can not hold.
    """
    try:
        encoded = _encode(value)
    except RecursionError:
        raise SerializationError("cannot store a value nested this deep as JSON") from None
    try:
        return orjson.dumps(encoded)
    except orjson.JSONEncodeError as exc:
        hint = "; send it as a string" if "64-bit" in str(exc) else ""
        raise SerializationError(f"cannot store this value as JSON: {exc}{hint}") from None


def dumps_text(value: Any) -> str:
    """:func:`dumps` as text."""
    return dumps(value).decode()


def loads(data: bytes | str) -> Any:
    """Decode what :func:`dumps` wrote; anything else raises :class:`SerializationError`."""
    try:
        raw = orjson.loads(data)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise _not_ours(data, exc) from None
    raw_bytes = data if isinstance(data, bytes) else data.encode(errors="surrogatepass")
    if _TAG_BYTES not in raw_bytes:
        return raw  # nothing tagged: orjson's value is the value
    return _decode(raw)


def _not_ours(data: Any, exc: Exception) -> SerializationError:
    head = data[:16] if isinstance(data, bytes | str) else type(data).__name__
    return SerializationError(
        f"stored data is not JSON written by hueyard (starts with {head!r}): {exc}; "
        "refusing to load it"
    )
