"""How job data is shown: large values cut, times readable.

- Secrets are hidden before job data gets here: the dashboard's
  :class:`~framework.jobs.Jobs` masks every job it returns
  (:mod:`framework.masking`, the one home of masking).
- :func:`preview` pretty-prints at most ``limit`` characters and stops there:
  a 5 MB payload costs the page what a 64 KB one does.
- Jinja's autoescape does the escaping; nothing here returns markup.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flask import Flask

__all__ = [
    "Preview",
    "ago",
    "preview",
    "register_filters",
    "snippet",
]


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
    """At most ``limit`` characters of ``value`` as indented JSON."""
    text, truncated = _cut(value, limit, indent=2)
    return Preview(text=text, truncated=truncated, lines=text.count("\n") + 1)


def snippet(value: Any, limit: int = 100) -> str:
    """One line of compact JSON of ``value``, cut at ``limit`` characters."""
    text, truncated = _cut(value, limit, indent=None)
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
    """``2025-11-05 10:00:54 UTC`` (a time in another zone, such as a schedule's, converted)."""
    if when is None:
        return "-"
    return when.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} ms" if value < 10_000 else f"{value / 1000:.1f} s"


def number(value: int | float) -> str:
    return f"{value:,}"


def register_filters(app: Flask) -> None:
    app.jinja_env.filters.update(ago=ago, utc=utc, ms=ms, number=number, snippet=snippet)
