"""How job data is shown: secrets masked, large values cut, times readable.

- :func:`mask` replaces the value of every key named like a secret
  (``secret``, ``password``, ``token``, ``api_key``, ...) at any depth, so the
  webhooks queue's signing secret never reaches a page or the raw endpoint.
- :func:`preview` pretty-prints at most ``limit`` characters and stops there:
  a 5 MB payload costs the page what a 64 KB one does.
- Jinja's autoescape does the escaping; nothing here returns markup.
"""

from __future__ import annotations

import datetime
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flask import Flask

__all__ = [
    "MASK",
    "Preview",
    "ago",
    "is_secret_key",
    "mask",
    "preview",
    "register_filters",
    "snippet",
]

MASK = "********"

_SECRET_WORDS = frozenset(
    {
        "secret", "password", "passwd", "pwd", "passphrase", "token", "apikey",
        "authorization", "auth", "credential", "credentials", "signature", "cookie",
    }
)  # fmt: skip
_SECRET_PAIRS = frozenset(
    {("api", "key"), ("private", "key"), ("access", "key"), ("secret", "key"), ("session", "id")}
)


def is_secret_key(key: str) -> bool:
    """Whether a payload key names a secret: a word of it (snake, kebab or camel case) does.

    >>> [is_secret_key(k) for k in ("secret", "webhookSecret", "X-Api-Key", "max_tokens")]
    [True, True, True, False]
    """
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower()
    parts = [part for part in re.split(r"[^a-z0-9]+", words) if part]
    return any(part in _SECRET_WORDS for part in parts) or any(
        pair in _SECRET_PAIRS for pair in itertools.pairwise(parts)
    )


def mask(value: Any) -> Any:
    """``value`` with the value of every secret-named key replaced by :data:`MASK`.

    >>> mask({"url": "https://x", "secret": "whsec_1", "headers": [{"X-Api-Key": "k"}]})
    {'url': 'https://x', 'secret': '********', 'headers': [{'X-Api-Key': '********'}]}
    """
    if isinstance(value, dict):
        return {
            key: MASK if isinstance(key, str) and is_secret_key(key) else mask(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask(item) for item in value]
    return value


@dataclass(frozen=True)
class Preview:
    """Pretty JSON, cut at ``limit`` characters when ``truncated``."""

    text: str
    truncated: bool
    lines: int

    @property
    def large(self) -> bool:
        """Worth folding away by default."""
        return self.truncated or self.lines > 40


def _chunks(value: Any, indent: int | None) -> Iterator[str]:
    # iterencode is lazy (the pure-Python encoder), so cutting early saves the rest.
    encoder = json.JSONEncoder(indent=indent, ensure_ascii=False, default=str, sort_keys=False)
    return encoder.iterencode(value)


def _cut(value: Any, limit: int, indent: int | None) -> tuple[str, bool]:
    parts: list[str] = []
    size = 0
    for chunk in _chunks(value, indent):
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            return "".join(parts)[:limit], True
    return "".join(parts), False


def preview(value: Any, limit: int) -> Preview:
    """At most ``limit`` characters of ``value`` (masked) as indented JSON."""
    text, truncated = _cut(mask(value), limit, indent=2)
    return Preview(text=text, truncated=truncated, lines=text.count("\n") + 1)


def snippet(value: Any, limit: int = 100) -> str:
    """One line of compact JSON of ``value`` (masked), cut at ``limit`` characters."""
    text, truncated = _cut(mask(value), limit, indent=None)
    return text + "..." if truncated else text


def ago(when: datetime.datetime | None, now: datetime.datetime | None = None) -> str:
    """``"3 min ago"``, ``"in 20 s"``, or ``"-"``."""
    if when is None:
        return "-"
    now = now or datetime.datetime.now(datetime.UTC)
    seconds = (now - when).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    if seconds < 60:
        text = f"{seconds:.0f} s"
    elif seconds < 3600:
        text = f"{seconds / 60:.0f} min"
    elif seconds < 86400:
        text = f"{seconds / 3600:.1f} h"
    else:
        text = f"{seconds / 86400:.1f} d"
    return f"in {text}" if future else f"{text} ago"


def utc(when: datetime.datetime | None) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S UTC") if when else "-"


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} ms" if value < 10_000 else f"{value / 1000:.1f} s"


def number(value: int | float) -> str:
    return f"{value:,}"


def register_filters(app: Flask) -> None:
    app.jinja_env.filters.update(ago=ago, utc=utc, ms=ms, number=number, snippet=snippet)
