"""How a value too large to show whole is shown: its start, then a marker saying so.

The one home of cutting. The read API cuts what it takes from Redis
(:mod:`framework.peek`, :mod:`framework.records`), and the dashboard's pages, its
JSON and the ``hueyard`` command render job data with :func:`render`, so a cut
value reads the same everywhere::

    {"rows":[[1,2],[3,4],[5,… [cut: 52,428,800 bytes, showing 65,536]

- :class:`Cut`: the start of a stored value that was not read whole (it is no
  longer JSON), with its whole size. It renders as its text and the marker.
- :func:`text_of`: a text field (an error, a traceback, a log line) read from
  Redis, the marker appended when it was cut.
- :func:`render`: any job value as JSON text of at most ``limit`` characters,
  cut lazily (a 5 MB value costs what ``limit`` characters do).
- :func:`shorten`: one line of a value for a list, keeping the marker of a
  value that was read only in part.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["Cut", "Rendered", "marker", "plain", "render", "shorten", "text_of"]


def marker(size: int, shown: int, unit: str = "bytes", which: str = "") -> str:
    """``… [cut: 52,428,800 bytes, showing 65,536]``: what ends a value shown in part
    (``which``: ``"the newest "`` of ``"lines"``...)."""
    return f"… [cut: {size:,} {unit}, showing {which}{shown:,}]"


def _decode(data: bytes) -> str:
    # A cut can fall inside a UTF-8 sequence: not final, the decoder keeps the partial
    # character back instead of showing a replacement character for it.
    return codecs.getincrementaldecoder("utf-8")("replace").decode(data, final=False)


@dataclass(frozen=True, slots=True)
class Cut:
    """The start of a stored value too large to read whole: ``text`` holds its first
    ``shown`` bytes, decoded; ``size`` is its whole length in bytes."""

    text: str
    size: int
    shown: int

    @classmethod
    def of(cls, data: bytes, size: int) -> Cut:
        """The cut of a value of ``size`` bytes of which ``data`` was read."""
        return cls(_decode(data), size, len(data))

    @property
    def marker(self) -> str:
        return marker(self.size, self.shown)

    def __str__(self) -> str:
        return self.text + self.marker


def text_of(data: bytes, size: int) -> str:
    """A text field read from Redis: ``data`` decoded, and the marker when it is only
    the start of ``size`` bytes."""
    if size <= len(data):
        return data.decode("utf-8", errors="replace")
    return str(Cut.of(data, size))


_MARKER = re.compile(r"… \[cut: [0-9,]+ [a-z]+, showing [a-z ]*[0-9,]+[a-z ]*\]$")


def shorten(value: Any, limit: int, *, text: bool = False) -> str:
    """One line of at most ``limit`` characters of ``value`` (as JSON; with ``text``, a
    string as it is), ending in ``…`` when shortened; the marker of a value that was read
    only in part is kept, after the line, so a list still says what was cut."""
    if isinstance(value, Cut):
        body, kept = value.text, value.marker
    elif text and isinstance(value, str):
        found = _MARKER.search(value)
        body, kept = (value[: found.start()], found.group()) if found else (value, "")
    else:
        rendered = render(value, limit + 1)
        body, kept = rendered.text, ""
    line = " ".join(body[: 4 * limit].split())
    if len(line) > limit:
        line = line[:limit] if kept else line[: limit - 1] + "…"  # the marker starts with one
    return line + kept


def plain(value: Any) -> Any:
    """``value`` ready for JSON: a :class:`Cut` becomes its text with the marker."""
    return str(value) if isinstance(value, Cut) else value


@dataclass(frozen=True, slots=True)
class Rendered:
    """A value as text: ``text``, and ``marker`` when that is only its start."""

    text: str
    marker: str = ""

    @property
    def cut(self) -> bool:
        return bool(self.marker)

    @property
    def lines(self) -> int:
        return self.text.count("\n") + 1

    def __str__(self) -> str:
        return self.text + self.marker


def _chunks(value: Any, indent: int | None) -> Iterator[str]:
    # iterencode is lazy (the pure-Python encoder), so cutting early saves the rest.
    encoder = json.JSONEncoder(indent=indent, ensure_ascii=False, default=str)
    return encoder.iterencode(value)


def render(value: Any, limit: int | None = None, *, indent: int | None = None) -> Rendered:
    """``value`` as JSON text (indented by ``indent``), at most ``limit`` characters
    (None: no limit), with a marker when cut. A :class:`Cut` is shown as its text:
    the start of what is stored, which is no longer JSON."""
    if isinstance(value, Cut):
        # Compared with the bytes read, not the text: masking may have made it longer.
        if limit is not None and value.shown > limit:
            shown = f"… [cut: {value.size:,} bytes, showing the first {limit:,} characters]"
            return Rendered(value.text[:limit], shown)
        return Rendered(value.text, value.marker)
    parts: list[str] = []
    size = 0
    for chunk in _chunks(value, indent):
        parts.append(chunk)
        size += len(chunk)
        if limit is not None and size > limit:
            shown = f"… [cut: showing the first {limit:,} characters]"
            return Rendered("".join(parts)[:limit], shown)
    return Rendered("".join(parts))
