"""JSON for everything hueyard and Huey put in Redis. Never pickle.

Payloads and results are plain JSON. The few Python types JSON lacks that a
payload without a model may still carry (tuples, datetimes, timedeltas) are
written as tagged objects ``{"__hy": tag, "v": ...}``; user dicts that happen
to hold the key ``"__hy"`` are escaped, so no payload can forge a tag.
Anything else is refused when written (NaN and infinity included, and text
that is not valid Unicode), and anything that is not such JSON is refused
when read: a value planted in Redis can never run code in a worker.

How deep a value nests is measured without recursion (:func:`too_deep`,
:func:`nesting`), so a value nested 100,000 levels deep is an error, never a
``RecursionError``; :func:`loads` refuses tagged JSON deeper than hueyard
writes, and takes a tighter ``max_depth`` from readers that show values.

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

__all__ = ["MAX_DEPTH", "TAG", "decode", "dumps", "dumps_text", "loads", "nesting", "too_deep"]

TAG = "__hy"
_TAG_BYTES = b'"__hy"'

MAX_DEPTH = 255
"""Levels of nesting orjson writes at most: nothing :func:`dumps` wrote nests deeper."""

_NESTS = (dict, list, tuple)
_STAMPS = (datetime.datetime, datetime.timedelta)

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


def _level(node: Any, stored: bool) -> int:
    """Levels ``node`` (a dict, list or tuple) adds: as hueyard stores it, a tuple is a
    tagged object holding a list, and a dict holding the tag key is wrapped in one."""
    if stored and (type(node) is tuple or (isinstance(node, dict) and TAG in node)):
        return 2
    return 1


def too_deep(value: Any, limit: int, *, stored: bool = False) -> bool:
    """Whether ``value`` nests more than ``limit`` levels of dicts and lists (and tuples).

    ``{"a": [1]}`` nests two levels, a scalar none. With ``stored=True`` levels count
    as the JSON :func:`dumps` writes has them (tuples and datetimes are tagged
    objects). Iterative, and it stops at the first level past ``limit``, so a
    value that contains itself is too deep rather than endless.
    """
    if not isinstance(value, _NESTS):
        return stored and isinstance(value, _STAMPS) and limit < 1
    stack: list[tuple[Any, int]] = [(value, _level(value, stored))]
    while stack:
        node, level = stack.pop()
        if level > limit:
            return True
        for item in node.values() if isinstance(node, dict) else node:
            if isinstance(item, _NESTS):
                stack.append((item, level + _level(item, stored)))
            elif stored and level >= limit and isinstance(item, _STAMPS):
                return True
    return False


def nesting(value: Any, *, stored: bool = False, budget: int = 1_000_000) -> str:
    """How deep ``value`` nests (counted as by :func:`too_deep`), for a message:
    ``"100,001 levels deep"``, ``"at least N levels deep"`` past ``budget`` dicts and
    lists, or ``"without end"`` for a value that holds itself."""
    if not isinstance(value, _NESTS):
        return "0 levels deep"
    deepest = 0
    on_path: set[int] = set()
    stack: list[tuple[Any, int, bool]] = [(value, _level(value, stored), False)]
    while stack:
        node, level, leaving = stack.pop()
        if leaving:
            on_path.discard(id(node))
            continue
        if id(node) in on_path:
            return "without end (a list or dict inside itself)"
        if budget <= 0:
            return f"at least {deepest:,} levels deep"
        budget -= 1
        deepest = max(deepest, level)
        on_path.add(id(node))
        stack.append((node, level, True))
        for item in node.values() if isinstance(node, dict) else node:
            if isinstance(item, _NESTS):
                stack.append((item, level + _level(item, stored), False))
            elif stored and isinstance(item, _STAMPS):
                deepest = max(deepest, level + 1)
    return f"{deepest:,} levels deep"


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


def loads(data: bytes | str, *, max_depth: int | None = None) -> Any:
    """Decode what :func:`dumps` wrote; anything else raises :class:`SerializationError`.

    ``max_depth``: refuse JSON that nests deeper (what a reader that walks the
    value, like the masking of the dashboard, can take). Tagged JSON deeper than
    :data:`MAX_DEPTH` is refused anyway: :func:`dumps` never wrote it.
    """
    try:
        raw = orjson.loads(data)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise _not_ours(data, exc) from None
    raw_bytes = data if isinstance(data, bytes) else data.encode(errors="surrogatepass")
    tagged = _TAG_BYTES in raw_bytes
    limit = MAX_DEPTH if max_depth is None else min(max_depth, MAX_DEPTH)
    if (tagged or max_depth is not None) and too_deep(raw, limit):
        raise SerializationError(
            f"stored JSON nests {nesting(raw)}, more than the {limit} levels this reader "
            "takes; refusing to load it"
        )
    if not tagged:
        return raw  # nothing tagged: orjson's value is the value
    return _decode(raw)


def _not_ours(data: Any, exc: Exception) -> SerializationError:
    head = data[:16] if isinstance(data, bytes | str) else type(data).__name__
    return SerializationError(
        f"stored data is not JSON written by hueyard (starts with {head!r}): {exc}; "
        "refusing to load it"
    )
