"""What a payload may be: at most so many bytes of JSON, so many levels deep, and text
that UTF-8 can hold. Checked once, where a payload is encoded
(:meth:`framework.handlers.HandlerSpec.payload_json`), so every enqueue path
(``handler.enqueue``, ``framework.enqueue``, ``Hueyard.enqueue``, their
``enqueue_many`` and ``hueyard enqueue``) refuses the same payloads with the same
:class:`~framework.errors.PayloadError`, and nothing is stored::

    check_depth([[[]]], "imports.load", limit=2)
    # PayloadError: payload for imports.load nests 3 levels deep; the limit is 2 levels ...

- **Size**: the JSON as stored, in bytes, against the queue's ``max_payload_bytes``
  (``[defaults]`` or ``[queues.<name>]``, 1 MiB unless set).
- **Depth**: :data:`~framework.defaults.MAX_PAYLOAD_DEPTH` levels of objects and
  arrays, counted without recursion, before the payload meets pydantic or the
  encoder (so a list nested 100,000 levels deep is a PayloadError, not a
  ``RecursionError``).
- **Text**: a ``str`` with a lone surrogate (``"\\ud800"``, from a bad decode) can not be
  UTF-8; the error names the field that holds it (``payload.items[3].name``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from framework import defaults
from framework.errors import PayloadError
from framework.serializer import nesting, too_deep

__all__ = [
    "check_depth",
    "check_finite",
    "check_size",
    "check_text",
    "field_path",
    "result_too_large",
]

_REFERENCE = "store the data elsewhere (object storage, a table) and pass a reference"


def check_size(encoded: bytes, name: str, *, limit: int, queue: str) -> None:
    """Refuse ``encoded`` (a payload's JSON) when it is longer than ``limit`` bytes."""
    size = len(encoded)
    if size > limit:
        raise PayloadError(
            f"payload for {name} is {size:,} bytes as JSON, over the limit of {limit:,} "
            f"bytes: raise max_payload_bytes (now {limit}, in [queues.{queue}] or [defaults]) "
            f"to at least {size}, or {_REFERENCE} (its id or URL); nothing was enqueued"
        )


def result_too_large(size: int, *, limit: int, queue: str) -> str | None:
    """Why a result of ``size`` bytes of JSON is not stored, or None when it fits: a
    result is kept like a payload, under the queue's ``max_payload_bytes``."""
    if size <= limit:
        return None
    return (
        f"the result is {size:,} bytes as JSON, over the limit of {limit:,} bytes: return "
        f"less, or {_REFERENCE}; or raise max_payload_bytes (now {limit}, in "
        f"[queues.{queue}] or [defaults])"
    )


def check_depth(
    value: Any, name: str, *, limit: int = defaults.MAX_PAYLOAD_DEPTH, stored: bool = False
) -> None:
    """Refuse ``value`` when it nests more than ``limit`` levels of objects and arrays."""
    if not too_deep(value, limit, stored=stored):
        return
    raise PayloadError(
        f"payload for {name} nests {nesting(value, stored=stored)}; the limit is {limit} levels "
        f"(MAX_PAYLOAD_DEPTH): flatten it, or {_REFERENCE}; nothing was enqueued"
    )


def check_text(value: Any, name: str) -> None:
    """Refuse ``value`` when a string in it (a key or a value) is not valid Unicode text:
    a lone surrogate, which UTF-8 can not hold. The error names the field."""
    for path, text, is_key in _strings(value):
        index = _surrogate_at(text)
        if index is None:
            continue
        what = f"a key of {path}" if is_key else path
        raise PayloadError(
            f"payload for {name}: {what} is not valid UTF-8 text (a lone surrogate "
            f"{text[index]!r} at character {index}, in {text[max(index - 20, 0) : index + 20]!r}); "
            "decode the input with the right encoding, or drop the bad characters "
            "(text.encode('utf-8', 'replace').decode()); nothing was enqueued"
        )


def check_finite(value: Any, name: str) -> None:
    """Refuse ``value`` when a number in it is NaN or infinite, naming the field: JSON has
    no such numbers, and a model's JSON dump writes those of its untyped (``Any``) fields
    as null, silently. Run on a payload before its model validates it (the checks of
    the stored JSON refuse them in a payload without a model)."""
    if not _non_finite(value):
        return
    for parts, number in _numbers(value):
        if not math.isfinite(number):
            raise PayloadError(
                f"payload for {name}: {field_path(parts)} is {number!r}, a number JSON can "
                "not hold; send null, or the value as text; nothing was enqueued"
            )


def _non_finite(value: Any) -> bool:
    """Whether a float of ``value`` is NaN or infinite (no paths: the common case's walk)."""
    stack = [value]
    while stack:
        node = stack.pop()
        if type(node) is float:
            if not math.isfinite(node):
                return True
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)
        elif isinstance(node, float) and not math.isfinite(node):
            return True
    return False


def _numbers(value: Any) -> Iterator[tuple[tuple[str | int, ...], float]]:
    """Every float of ``value`` with its path, in order (for a message)."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        node, parts = stack.pop()
        if isinstance(node, float):
            yield parts, node
        elif isinstance(node, dict):
            stack.extend((item, (*parts, str(key))) for key, item in reversed(node.items()))
        elif isinstance(node, list | tuple):
            stack.extend((item, (*parts, index)) for index, item in reversed(list(enumerate(node))))


def field_path(parts: tuple[str | int, ...], root: str = "payload") -> str:
    """``payload.items[3].name`` for ``("items", 3, "name")``."""
    out = [root]
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif part.isidentifier():
            out.append(f".{part}")
        else:
            out.append(f"[{part[:40]!r}]")
    return "".join(out)


def _strings(value: Any) -> Iterator[tuple[str, str, bool]]:
    """Every string of ``value`` with the path of the field that holds it, in order;
    ``is_key`` for a dict's key. Iterative, and it goes no deeper than a payload may."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        node, parts = stack.pop()
        if isinstance(node, str):
            yield field_path(parts), node, False
        elif isinstance(node, dict):
            children = []
            for key, item in node.items():
                if isinstance(key, str):
                    if _surrogate_at(key) is not None:
                        yield field_path(parts), key, True
                    children.append((item, (*parts, key)))
            if len(parts) < defaults.MAX_PAYLOAD_DEPTH:
                stack.extend(reversed(children))
        elif isinstance(node, list | tuple) and len(parts) < defaults.MAX_PAYLOAD_DEPTH:
            stack.extend((item, (*parts, index)) for index, item in reversed(list(enumerate(node))))


def _surrogate_at(text: str) -> int | None:
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None
