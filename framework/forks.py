"""This process's id and a cheap unique token, kept right across ``fork()``.

Reading ``os.getpid()`` is a system call; the hot paths (every claim and
release) ask for the pid to notice they run in a forked child (``-k
process`` workers), so it is read once here and refreshed in the child.
"""

from __future__ import annotations

import itertools
import os
import secrets

__all__ = ["new_token", "pid"]

_pid = os.getpid()
_prefix = secrets.token_hex(4)
_counter = itertools.count(1)


def pid() -> int:
    """The id of this process (of the child, after a fork)."""
    return _pid


def new_token() -> str:
    """A token no other claim of any process will hold: random per process start,
    the pid, and a counter (``next()`` of :func:`itertools.count` is atomic)."""
    return f"{_prefix}{_pid:x}.{next(_counter):x}"


def _after_fork_in_child() -> None:
    global _pid  # noqa: PLW0603 - the one copy of the pid, refreshed where it changes
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork_in_child)
