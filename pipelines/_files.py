"""Files the handlers write for the CRM to read: exports, imported contacts.

A file is written to a temporary file in its directory (created 0600: these
files hold personal data) and moved into place with ``os.replace``, so a
reader sees the previous file or the whole new one, never half of one, and a
retry simply overwrites. A write that fails leaves the previous file as it was
and no temporary file behind. The directory must be private (:func:`private_dir`):
one that already exists but belongs to another user, or that its group or others
may read or write, is refused rather than trusted::

    from pipelines._files import output_dir, write_atomically

    directory = output_dir("HUEYARD_EXPORT_DIR", "hueyard-exports")
    size = write_atomically(directory, "contacts-exp-1.json", lambda file: file.write("[]"),
                            variable="HUEYARD_EXPORT_DIR")
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TypeVar

from huey.exceptions import CancelExecution

from framework.errors import ConfigError

__all__ = ["UnsafeDirectoryError", "check_private", "output_dir", "private_dir", "write_atomically"]

T = TypeVar("T")


def output_dir(variable: str, default_name: str, env: Mapping[str, str] | None = None) -> Path:
    """``$<variable>`` when set and not blank, else ``<system temp dir>/<default_name>``."""
    env = os.environ if env is None else env
    configured = env.get(variable, "").strip()
    return Path(configured) if configured else Path(tempfile.gettempdir()) / default_name


class UnsafeDirectoryError(ConfigError, CancelExecution):  # type: ignore[misc]
    """A data directory that someone else owns or may enter: a misconfiguration, which
    retrying can not mend, so the job fails at once, naming the path and the fix."""

    def __init__(self, message: str) -> None:
        CancelExecution.__init__(self, message, retry=False)


def check_private(directory: Path, variable: str) -> None:
    """Refuse ``directory`` (:class:`UnsafeDirectoryError`) unless it is owned by this
    process's effective user and closed to group and others (``mode & 0o077 == 0``).

    A directory under the shared temp dir that someone else created first (or opened
    up) could be read, swapped or filled by them: personal data goes in and out of it.
    A directory that does not exist passes (:func:`private_dir` creates it 0700).
    """
    try:
        found = os.stat(directory)
    except FileNotFoundError:
        return
    fix = f"or set ${variable} to a directory of this user's that only it can enter"
    if not stat.S_ISDIR(found.st_mode):
        raise UnsafeDirectoryError(f"{directory} (${variable}) is not a directory; remove it {fix}")
    if found.st_uid != os.geteuid():
        raise UnsafeDirectoryError(
            f"{directory} (${variable}) belongs to uid {found.st_uid}, not to this process's "
            f"user (uid {os.geteuid()}): someone else could read or replace its files. "
            f"chown {os.geteuid()} {directory} and chmod 700 it, {fix}"
        )
    if found.st_mode & 0o077:
        raise UnsafeDirectoryError(
            f"{directory} (${variable}) has mode {stat.S_IMODE(found.st_mode):o}: its group "
            f"or others may enter it and read or replace its files. chmod 700 {directory}, "
            f"{fix}"
        )


def private_dir(directory: Path, variable: str) -> Path:
    """``directory``, created (mode 0700) if missing, after :func:`check_private`."""
    check_private(directory, variable)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_private(directory, variable)  # created just now by someone else, or by the umask
    return directory


def write_atomically(
    directory: Path, name: str, write: Callable[[IO[str]], T], *, variable: str
) -> T:
    """Create ``directory`` (mode 0700) if needed (:func:`private_dir`: an existing one must
    be this user's and closed to others; ``variable`` names its setting), call ``write``
    with a text file open in it (UTF-8, no newline translation, mode 0600), then move the
    file to ``directory/name``.

    Returns what ``write`` returned. ``name`` must be a plain file name: one that leads
    out of ``directory`` raises ``ValueError`` before anything is written.
    """
    private_dir(directory, variable)
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
