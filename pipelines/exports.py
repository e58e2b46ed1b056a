"""The ``exports`` queue: write data exports to files, 2 attempts, 5 minutes at most.

The file is ``$HUEYARD_EXPORT_DIR/<kind>-<exportId>.<format>`` (default
directory: ``<system temp dir>/hueyard-exports``, created with mode 0700; files
are 0600). It is written to a temporary file in the same directory and moved
into place with ``os.replace``, so a reader sees the old file or the whole new
one, never half of it, and a retry simply overwrites.

CSV columns are the union of the rows' keys in order of first appearance;
missing values are empty, nested values are JSON, and text that a spreadsheet
would run as a formula (``=``, ``@``, ``+``/``-`` not followed by a number)
is prefixed with ``'``. JSON is an array with one row per line.

::

    from pipelines.exports import export_data

    export_data.enqueue({"exportId": "exp-2025-11-05", "kind": "contacts", "format": "csv",
                         "rows": [{"name": "Ada", "phone": "+442079460958"}]})
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from framework import handler

__all__ = ["EXPORT_DIR_ENV", "ExportRequest", "export_data", "export_dir"]

EXPORT_DIR_ENV = "HUEYARD_EXPORT_DIR"
MAX_ROWS = 100_000

EXPORT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_FORMULA = re.compile(r"^[=@\t\r]|^[+-](?![\d.]+$)")


def _export_id(value: str) -> str:
    if not EXPORT_ID.match(value):
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
    env = os.environ if env is None else env
    configured = env.get(EXPORT_DIR_ENV, "").strip()
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "hueyard-exports"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    text = str(value)
    return "'" + text if isinstance(value, str) and _FORMULA.match(text) else text


def _write_csv(file: IO[str], rows: list[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    writer = csv.writer(file, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in columns])


def _write_json(file: IO[str], rows: Iterable[dict[str, Any]]) -> None:
    file.write("[")
    for index, row in enumerate(rows):
        file.write(",\n" if index else "\n")
        file.write(json.dumps(row, ensure_ascii=False, allow_nan=False))
    file.write("\n]\n")


@handler("exports")
def export_data(payload: ExportRequest) -> dict[str, Any]:
    """Write the file atomically; return ``{"exportId", "path", "rows", "bytes"}``."""
    directory = export_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = directory / f"{payload.kind}-{payload.exportId}.{payload.format}"
    if target.resolve().parent != directory.resolve():  # the id check already forbids this
        raise ValueError(f"export path {target} escapes {directory}")
    # NamedTemporaryFile creates the file 0600: exports hold personal data.
    with tempfile.NamedTemporaryFile(
        "w",
        encoding="utf-8",
        newline="",
        dir=directory,
        prefix=f".{target.name}.",
        suffix=".tmp",
        delete=False,
    ) as file:
        temporary = Path(file.name)
        try:
            if payload.format == "csv":
                _write_csv(file, payload.rows)
            else:
                _write_json(file, payload.rows)
            file.flush()
            os.fsync(file.fileno())
        except BaseException:
            file.close()
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            raise
    os.replace(temporary, target)
    return {
        "exportId": payload.exportId,
        "path": str(target),
        "rows": len(payload.rows),
        "bytes": target.stat().st_size,
    }
