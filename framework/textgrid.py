"""Plain-text output of the ``hueyard`` commands: aligned tables, UTC times, durations
and sizes, and text made safe for a terminal."""

from __future__ import annotations

import contextlib
import datetime
import io
import re
import sys
from collections.abc import Iterable, Iterator
from typing import TextIO

__all__ = [
    "duration",
    "first_unsafe",
    "grid",
    "moment",
    "one_line",
    "printable",
    "printable_output",
    "size",
    "utc",
]

_UNPRINTABLE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
"""What a terminal would act on instead of showing: every control character but the
newline and the tab (an escape sequence, a bell, a carriage return that writes over
the line), and the marks that reverse the direction of the text around them."""


_LINE_BREAKS = re.compile("[\n\t\u2028\u2029]")


def printable(text: str) -> str:
    """``text`` with what a terminal would act on shown as Python escapes (``\\x1b``,
    ``\\r``, ``\\u202e``): an error, a log line or a payload is someone else's text,
    and printing an escape sequence of it could rewrite the operator's screen, title
    or clipboard, or hide what is printed next."""
    return _UNPRINTABLE.sub(_escaped, text)


def one_line(text: str) -> str:
    """:func:`printable`, with newlines and tabs escaped too: someone else's text in a
    log line, where a newline would start a line that looks like another record."""
    return _LINE_BREAKS.sub(_escaped, printable(text))


def first_unsafe(text: str) -> int | None:
    """The position of the first character :func:`one_line` would escape (a control
    character, a line break, a tab, a direction mark), or None: for names and keys that
    must stay one plain line wherever they are shown."""
    found = _UNPRINTABLE.search(text) or _LINE_BREAKS.search(text)
    if found is None:
        return None
    other = _LINE_BREAKS.search(text, 0, found.start())
    return (other or found).start()


def _escaped(found: re.Match[str]) -> str:
    return repr(found.group())[1:-1]


class _Printable(io.TextIOBase):
    """A text stream that writes what :func:`printable` makes of the text to ``stream``."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream

    def write(self, text: str) -> int:
        shown = printable(text)
        try:
            self._stream.write(shown)
        except UnicodeEncodeError:  # an output encoding short of the text (ascii, latin-1)
            encoding = self.encoding
            self._stream.write(shown.encode(encoding, "backslashreplace").decode(encoding))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", None) or "utf-8"


@contextlib.contextmanager
def printable_output() -> Iterator[None]:
    """Within the block, everything written to stdout and stderr goes through
    :func:`printable` (a command's every line, whatever prints it)."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Printable(saved[0]), _Printable(saved[1])
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def moment(value: datetime.datetime | None) -> str:
    """``2025-11-05 10:00:54`` (in the value's zone), or ``-``."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def utc(value: datetime.datetime | None) -> str | None:
    """``2025-11-05 10:00:54 UTC``, or None."""
    return f"{moment(value.astimezone(datetime.UTC))} UTC" if value else None


def grid(headers: list[str], body: list[list[str]], numeric: Iterable[int] = ()) -> str:
    """Columns aligned, a rule under the headers; ``numeric`` columns right-aligned."""
    right = set(numeric)
    widths = [max(len(line[i]) for line in [headers, *body]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, body)])


def duration(seconds: float) -> str:
    """``42 s``, ``12 min``, ``3.5 h``, ``2.0 days`` (a negative one is ``0 s``)."""
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def size(count: int | None) -> str:
    """``512 B``, ``3.2 MiB``; ``?`` for None."""
    if count is None:
        return "?"
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    scaled, index = float(count), 0
    while scaled >= 1024 and index < len(units) - 1:
        scaled, index = scaled / 1024, index + 1
    return f"{count} B" if index == 0 else f"{scaled:.1f} {units[index]}"
