"""The ``exports`` queue: write data exports to files, 2 attempts, 5 minutes at most.

The file is ``$HUEYARD_EXPORT_DIR/<kind>-<exportId>.<format>`` (default
directory: ``<system temp dir>/hueyard-exports``, created with mode 0700; files
are 0600). It is written to a temporary file in the same directory and moved
into place with ``os.replace``, so a reader sees the old file or the whole new
one, never half of it, and a retry simply overwrites.

CSV columns are the union of the rows' keys in order of first appearance;
missing values are empty, nested values are JSON. A header or a cell that a
spreadsheet would run as a formula gets a ``'`` in front: one starting (after
any spaces) with ``=``, ``@``, a tab, a CR, their fullwidth forms, or
``+``/``-`` not followed by a plain number; and so does every line of a cell
that holds a line break, as a reader that splits rows at any CR or LF would
start a row there. A field with a CR or LF is always quoted. JSON is an array
with one row per line.

::

    from pipelines.exports import export_data

    export_data.enqueue({"exportId": "exp-2025-11-05", "kind": "contacts", "format": "csv",
                         "rows": [{"name": "Ada", "phone": "+442079460958"}]})
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from framework import handler
from pipelines._files import output_dir, write_atomically

__all__ = ["EXPORT_DIR_ENV", "ExportRequest", "export_data", "export_dir"]

EXPORT_DIR_ENV = "HUEYARD_EXPORT_DIR"
MAX_ROWS = 100_000

EXPORT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
"""Use with ``fullmatch`` (a ``$`` alone would let a final newline through)."""
_FORMULA = re.compile(r"[ ]*(?:[=@\t\r\uff1d\uff20\uff0b\uff0d]|[+-](?![0-9.]+\Z))")
"""The start of a line a spreadsheet would run as a formula (a number like -12.5 is not)."""
_LINE_BREAK = re.compile(r"(\r\n|\r|\n)")


def _export_id(value: str) -> str:
    if not EXPORT_ID.fullmatch(value):
        raise ValueError(
            "must be 1 to 128 letters, digits, '_' or '-', starting with a letter or "
            "digit (it becomes part of a file name)"
        )
    return value


class ExportRequest(BaseModel):
    """Rows of one kind of CRM data to write as one CSV or JSON file."""

    model_config = ConfigDict(extra="forbid")

    exportId: Annotated[str, AfterValidator(_export_id)]
    kind: Literal["contacts", "messages", "campaigns"]
    format: Literal["csv", "json"]
    rows: Annotated[list[dict[str, Any]], Field(max_length=MAX_ROWS)]


def export_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where exports go: ``$HUEYARD_EXPORT_DIR`` or ``<temp dir>/hueyard-exports``."""
    return output_dir(EXPORT_DIR_ENV, "hueyard-exports", env)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    if isinstance(value, int | float):
        return str(value)
    return _inert(str(value))


def _inert(text: str) -> str:
    """``text`` with a ``'`` before the start of each line a spreadsheet would run as a
    formula. Every line: a reader that splits rows at a CR inside a field starts one there."""
    parts = _LINE_BREAK.split(text)  # lines at even positions, the breaks between them odd
    if _FORMULA.match(text):  # a cell that starts with a CR or a tab, too
        parts[0] = "'" + parts[0]
    for index in range(2, len(parts), 2):
        if _FORMULA.match(parts[index]):
            parts[index] = "'" + parts[index]
    return "".join(parts)


def _write_csv(file: IO[str], rows: list[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    # QUOTE_MINIMAL quotes a field holding a character of the line terminator: with
    # "\r\n" (RFC 4180) that is every field with a CR or a LF, not only those with a LF.
    writer = csv.writer(file, lineterminator="\r\n")
    writer.writerow([_inert(column) for column in columns])
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in columns])


def _write_json(file: IO[str], rows: list[dict[str, Any]]) -> None:
    file.write("[")
    for index, row in enumerate(rows):
        file.write(",\n" if index else "\n")
        file.write(json.dumps(row, ensure_ascii=False, allow_nan=False))
    file.write("\n]\n")


@handler("exports")
def export_data(payload: ExportRequest) -> dict[str, Any]:
    """Write the file atomically; return ``{"exportId", "path", "rows", "bytes"}``."""
    directory = export_dir()
    name = f"{payload.kind}-{payload.exportId}.{payload.format}"
    write = _write_csv if payload.format == "csv" else _write_json
    write_atomically(
        directory, name, lambda file: write(file, payload.rows), variable=EXPORT_DIR_ENV
    )
    target = directory / name
    return {
        "exportId": payload.exportId,
        "path": str(target),
        "rows": len(payload.rows),
        "bytes": target.stat().st_size,
    }
