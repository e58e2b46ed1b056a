"""Plain-text output of the ``hueyard`` commands: aligned tables, UTC times, durations
and sizes."""

from __future__ import annotations

import datetime
from collections.abc import Iterable

__all__ = ["duration", "grid", "moment", "size", "utc"]


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
