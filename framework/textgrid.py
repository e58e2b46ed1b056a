"""Plain-text output of the ``hueyard`` commands: aligned tables and UTC times."""

from __future__ import annotations

import datetime
from collections.abc import Iterable

__all__ = ["grid", "moment", "utc"]


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
