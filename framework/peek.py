"""Bounded reads of a job's record and log lines: never more than the caps, whatever
Redis holds.

A job's record is a hash, and Redis has no ``HGETRANGE``: ``HGETALL`` of a record
with a 50 MB payload sends 50 MB to show 64 KB. So the read API reads records
with two read-only scripts (``framework/lua/peek.lua``, ``peek_lines.lua``):

- ``peek`` reads the fields the read API shows, and only those (a planted hash of
  a million fields costs what a record does), each cut on the server to its cap:
  :attr:`Limits.field_bytes` for what a job carries (payload, result, progress,
  error, traceback: :data:`~framework.record.LONG_FIELDS`),
  :data:`~framework.defaults.SHORT_FIELD_BYTES` for names, numbers and times. Each
  value comes back with its whole length, so the reader knows what it did not get.
- ``peek_lines`` reads the newest :attr:`Limits.log_lines` log lines, each cut to
  :attr:`Limits.log_bytes`, and the list's length.

What crosses the network, and what this process holds for one job, is then
bounded by the caps. The server still reads a large value whole in order to cut
it, as any read of it would. The scripts run in the caller's pipeline
(``MULTI``), so a page's records are read together with their membership, and
are called by SHA alone (:func:`read` loads them when Redis answers
``NOSCRIPT``), so a read stays one round trip.
:mod:`framework.records` turns a :class:`Peeked` into a ``JobInfo``, marking what
was cut (:mod:`framework.cut`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.client import Pipeline
from redis.exceptions import NoScriptError, OutOfMemoryError

from framework import defaults
from framework.clients import pipeline
from framework.record import LONG_FIELDS, SHORT_FIELDS
from framework.scripts import Scripts

__all__ = [
    "Lines",
    "Limits",
    "Peeked",
    "lines_of",
    "peek_field",
    "peek_lines",
    "peek_record",
    "read",
    "record_of",
]


@dataclass(frozen=True, slots=True)
class Limits:
    """What one read of a job takes from Redis at most."""

    field_bytes: int = defaults.LIST_FIELD_BYTES
    """Bytes of each of payload, result, progress, error and traceback."""
    log_lines: int = 0
    """The newest log lines read (0: none)."""
    log_bytes: int = defaults.LOG_LINE_BYTES
    """Bytes of each log line."""
    short_bytes: int = defaults.SHORT_FIELD_BYTES
    """Bytes of every other field: names, numbers, times."""

    def rows(self) -> list[tuple[str, int]]:
        """``(field, cap)`` of every field a read takes, for the ``peek`` script."""
        return [(name, self.field_bytes) for name in LONG_FIELDS] + [
            (name, self.short_bytes) for name in SHORT_FIELDS
        ]


@dataclass(frozen=True, slots=True)
class Peeked:
    """A record as ``peek`` read it: the start of each field, and each field's length."""

    kind: str
    """The key's type: ``hash`` (a record), ``none`` (no key), or another type."""
    values: dict[str, bytes] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)

    def cut(self, name: str) -> bool:
        """Whether only the start of field ``name`` was read."""
        return self.sizes.get(name, 0) > len(self.values.get(name, b""))


@dataclass(frozen=True, slots=True)
class Lines:
    """The newest lines of a list as ``peek_lines`` read them: ``(start, length)`` each."""

    kind: str
    total: int
    lines: tuple[tuple[bytes, int], ...] = ()


def read(
    conn: redis.Redis, scripts: Scripts, build: Callable[[Pipeline], None], *, transaction: bool
) -> list[Any]:
    """Run the pipeline ``build`` fills (with :func:`peek_record` and the like) and return
    its replies, errors included. One round trip; two more, once, when Redis no longer
    knows the scripts (after a restart or ``SCRIPT FLUSH``): they are loaded and the
    pipeline runs again. A Redis at ``maxmemory`` with ``noeviction`` refuses every
    ``MULTI``: then the reads run as a plain pipeline (see
    :func:`framework.metrics.snapshot`). On a Cluster the commands of each slot
    go to its node (:class:`~framework.clients.SlotPipeline`), a transaction
    per slot."""
    for attempt in range(2):
        try:
            with pipeline(conn, transaction=transaction) as pipe:
                build(pipe)
                replies: list[Any] = pipe.execute(raise_on_error=False)
        except OutOfMemoryError:  # a full noeviction Redis refuses MULTI, even of reads
            with pipeline(conn, transaction=False) as pipe:
                build(pipe)
                replies = pipe.execute(raise_on_error=False)
        if attempt or not any(isinstance(reply, NoScriptError) for reply in replies):
            break
        scripts.load("peek", "peek_lines")
    return replies


def peek_record(scripts: Scripts, pipe: Pipeline, key: str, limits: Limits) -> None:
    """Queue the read of record ``key`` on ``pipe``; :func:`record_of` reads the reply."""
    scripts.queue("peek", pipe, keys={"hash": key}, rows=limits.rows())


def peek_field(scripts: Scripts, pipe: Pipeline, key: str, name: str, cap: int) -> None:
    """Queue the read of one field (at most ``cap`` bytes) of hash ``key`` on ``pipe``."""
    scripts.queue("peek", pipe, keys={"hash": key}, rows=[(name, cap)])


def record_of(reply: Any) -> Peeked:
    """The :class:`Peeked` of a ``peek`` reply (an error reply: an unknown type)."""
    if isinstance(reply, Exception) or not isinstance(reply, list) or not reply:
        return Peeked(kind=f"unreadable ({reply})")
    kind = _text(reply[0])
    values: dict[str, bytes] = {}
    sizes: dict[str, int] = {}
    for index in range(1, len(reply) - 2, 3):
        name = _text(reply[index])
        sizes[name] = int(reply[index + 1])
        values[name] = reply[index + 2]
    return Peeked(kind, values, sizes)


def peek_lines(scripts: Scripts, pipe: Pipeline, key: str, limits: Limits) -> None:
    """Queue the read of the newest lines of list ``key`` on ``pipe``; see :func:`lines_of`."""
    args = {"count": limits.log_lines, "cap": limits.log_bytes}
    scripts.queue("peek_lines", pipe, keys={"list": key}, args=args)


def lines_of(reply: Any) -> Lines:
    """The :class:`Lines` of a ``peek_lines`` reply."""
    if isinstance(reply, Exception) or not isinstance(reply, list) or len(reply) < 2:
        return Lines(kind=f"unreadable ({reply})", total=0)
    lines = tuple((reply[index + 1], int(reply[index])) for index in range(2, len(reply) - 1, 2))
    return Lines(_text(reply[0]), int(reply[1]), lines)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
