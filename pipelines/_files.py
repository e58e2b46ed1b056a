"""Files the handlers write for the CRM to read: exports, imported contacts.

A file is written to a temporary file in its directory (created 0600: these
files hold personal data) and moved into place with ``os.replace``, so a
reader sees the previous file or the whole new one, never half of one, and a
retry simply overwrites. A write that fails leaves the previous file as it was
and no temporary file behind::

    from pipelines._files import output_dir, write_atomically

    directory = output_dir("HUEYARD_EXPORT_DIR", "hueyard-exports")
    size = write_atomically(directory, "contacts-exp-1.json", lambda file: file.write("[]"))
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TypeVar

__all__ = ["output_dir", "write_atomically"]

T = TypeVar("T")


def output_dir(variable: str, default_name: str, env: Mapping[str, str] | None = None) -> Path:
    """``$<variable>`` when set and not blank, else ``<system temp dir>/<default_name>``."""
    env = os.environ if env is None else env
    configured = env.get(variable, "").strip()
    return Path(configured) if configured else Path(tempfile.gettempdir()) / default_name


def write_atomically(directory: Path, name: str, write: Callable[[IO[str]], T]) -> T:
    """Create ``directory`` (mode 0700) if needed, call ``write`` with a text file open in it
    (UTF-8, no newline translation, mode 0600), then move the file to ``directory/name``.

    Returns what ``write`` returned. ``name`` must be a plain file name: one that leads
    out of ``directory`` raises ``ValueError`` before anything is written.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = directory / name
    if target.resolve().parent != directory.resolve():  # callers' name checks forbid this
        raise ValueError(f"{target} escapes {directory}")
    # NamedTemporaryFile creates the file 0600
    with tempfile.NamedTemporaryFile(
        "w",
        encoding="utf-8",
        newline="",
        dir=directory,
        prefix=f".{name}.",
        suffix=".tmp",
        delete=False,
    ) as file:
        temporary = Path(file.name)
        try:
            result = write(file)
            file.flush()
            os.fsync(file.fileno())
        except BaseException:
            file.close()
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            raise
    os.replace(temporary, target)
    return result
