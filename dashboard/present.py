"""How job data is shown: large values cut, times readable.

- Secrets are hidden before job data gets here: the dashboard's
  :class:`~framework.jobs.Jobs` masks every job it returns
  (:mod:`framework.masking`, the one home of masking).
- Cutting is :mod:`framework.cut`'s, shared with the JSON views and the
  ``hueyard`` command: :func:`preview` pretty-prints at most ``limit``
  characters and stops there (a 5 MB payload costs the page what a 64 KB one
  does), and a value the read API took only the start of (a
  :class:`~framework.cut.Cut`) shows as that start, with its marker.
- Jinja's autoescape does the escaping; nothing here returns markup.
"""

from __future__ import annotations

import datetime
from typing import Any

from flask import Flask

from framework.cut import Rendered, render, shorten

__all__ = [
    "ago",
    "preview",
    "register_filters",
    "snippet",
]


def preview(value: Any, limit: int) -> Rendered:
    """At most ``limit`` characters of ``value`` as indented JSON, with the marker if cut."""
    return render(value, limit, indent=2)


def snippet(value: Any, limit: int = 100, text: bool = False) -> str:
    """One line of compact JSON of ``value`` (with ``text``, a string as it is) of at most
    ``limit`` characters; a value read only in part keeps its marker."""
    return shorten(value, limit, text=text)


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


def job_ref(value: str | None) -> tuple[str, str] | None:
    """``(queue, id)`` of a ``<queue>:<id>`` link between jobs (a parent, an origin), or None."""
    if not value:
        return None
    queue, _, job_id = value.partition(":")
    return (queue, job_id) if queue and job_id else None


def register_filters(app: Flask) -> None:
    app.jinja_env.filters.update(
        ago=ago, utc=utc, ms=ms, number=number, snippet=snippet, job_ref=job_ref
    )
