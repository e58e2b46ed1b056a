"""What the read/act API returns: small frozen dataclasses, and how a job record
(a Redis hash, :mod:`framework.record`, read within bounds by :mod:`framework.peek`)
is read into one without ever raising on bad data.

A payload, result or progress read only in part is a :class:`~framework.cut.Cut`
(its start and its size); a text field read in part ends with the marker.
Stored JSON nested deeper than :data:`~framework.defaults.MAX_PAYLOAD_DEPTH` is
not loaded (the problem says so), so nothing that shows a job walks it.

The dashboard and the CLI see only these types; they never touch Redis.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, fields, replace
from typing import Any, Generic, TypeVar

from framework import defaults
from framework.cut import Cut, marker, plain, text_of
from framework.errors import SerializationError
from framework.ids import created_ms
from framework.masking import Masker
from framework.peek import Lines, Peeked
from framework.policy import JobPolicy
from framework.record import legacy_message
from framework.serializer import loads
from framework.settings import QueuePolicy

__all__ = [
    "ChildLink",
    "Cursor",
    "JobInfo",
    "JobLocation",
    "Page",
    "QueueCounts",
    "Record",
    "Scan",
    "job_info",
    "log_lines",
]

T = TypeVar("T")


# -- what the API returns --------------------------------------------------------------------


@dataclass(frozen=True)
class QueueCounts:
    """Jobs of one queue per state. A paused queue's waiting jobs count as ``paused``;
    ``waiting_children`` counts the parents whose handler returned and whose children have
    not all finished (:mod:`framework.fanin`)."""

    queue: str
    waiting: int
    active: int
    delayed: int
    completed: int
    failed: int
    paused: int
    is_paused: bool
    waiting_children: int = 0
    unreadable: tuple[str, ...] = ()
    """Its keys of another type than hueyard keeps there (planted by something else): a
    state set among them counts as empty, and the queue's scripts refuse to move its
    jobs until the key is fixed."""

    not_counts: tuple[str, ...] = ()
    """Its counters (the enqueue sequence) that hold a string that is no whole number
    (``abc``, ``-5``): every enqueue of the queue is refused until the key is fixed."""

    def unreadable_reasons(self) -> list[str]:
        """One line per key of :attr:`unreadable` and :attr:`not_counts`: what ``hueyard
        status`` and ``/health`` say of it."""
        return [
            f"queue {self.queue}: key {key} is not of the type hueyard keeps there, so the "
            f"queue's jobs can not move (hueyard doctor {self.queue} says what to do)"
            for key in self.unreadable
        ] + [
            f"queue {self.queue}: key {key} holds no whole number where hueyard counts "
            f"enqueues, so no job can be enqueued (hueyard doctor {self.queue} says what to do)"
            for key in self.not_counts
        ]

    def to_json(self) -> dict[str, int | bool]:
        """The spec's shape (``isPaused`` in camelCase), and BullMQ's ``waiting-children``:
        what ``hueyard status --json`` prints."""
        return {
            "waiting": self.waiting,
            "active": self.active,
            "delayed": self.delayed,
            "completed": self.completed,
            "failed": self.failed,
            "paused": self.paused,
            "waiting-children": self.waiting_children,
            "isPaused": self.is_paused,
        }


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list. ``page`` counts from 1; a page past the end has no items."""

    items: tuple[T, ...]
    total: int
    page: int
    page_size: int
    unreadable: str | None = None
    """The key of the list's set when Redis refused to read it (another type planted
    there): the page is then empty, whatever the set should hold."""

    @property
    def pages(self) -> int:
        """Number of pages, at least 1 (an empty list has one empty page)."""
        return max(math.ceil(self.total / self.page_size), 1)

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    @property
    def has_previous(self) -> bool:
        return self.page > 1


@dataclass(frozen=True)
class Cursor:
    """Where a scan of a state's sorted set stopped (:meth:`framework.jobs.Jobs.scan`):
    the last job read, by its score and its member (Redis orders the jobs of one score
    by id), and how many jobs of that score were read up to it (the next read fetches
    that many more). Jobs that join or leave the set elsewhere do not move it, as
    they move a page number."""

    score: float
    member: bytes
    ties: int


@dataclass(frozen=True)
class Scan(Generic[T]):
    """One stretch of a scan: its jobs, the state's size, and where the next one starts."""

    items: tuple[T, ...]
    total: int
    next: Cursor | None
    """The cursor to pass for the next stretch; None once the end of the set is read."""
    unreadable: str | None = None
    """As :attr:`Page.unreadable`."""


@dataclass(frozen=True)
class ChildLink:
    """One child of a parent (:mod:`framework.fanin`): its queue, its id, and its state as
    its parent knows it: ``pending``, ``completed`` or ``failed`` (its first outcome)."""

    queue: str | None
    id: str
    state: str

    @classmethod
    def of(cls, member: bytes, score: float) -> ChildLink:
        """A member of a parent's children set (``<queue>:<id>``) and its score."""
        queue, _, job_id = member.decode(errors="replace").rpartition(":")
        band = int(score // defaults.CHILD_BAND)
        state = ("pending", "completed", "failed")[band] if 0 <= band <= 2 else "?"
        return cls(queue or None, job_id, state)

    def to_json(self) -> dict[str, str | None]:
        return {"queue": self.queue, "id": self.id, "state": self.state}


@dataclass(frozen=True)
class JobLocation:
    """Where a job is: its queue and its state."""

    queue: str
    state: str


@dataclass(frozen=True)
class JobInfo:
    """One job as read from Redis. Times are aware UTC datetimes.

    ``priority`` and ``max_attempts`` are what the job follows: its own
    options, else its queue's config. ``finished`` and ``due`` come from the
    job's place in its queue (the score of its sorted set).

    ``problem`` is None for a job hueyard wrote; otherwise it says what is
    wrong with the record (no record, not a hash, data that is not JSON, ...)
    and the fields that could not be read are None. ``logs`` is filled by
    :meth:`Jobs.get` only; pages leave it empty.
    """

    id: str
    queue: str | None
    state: str | None
    name: str | None = None  # the stable "<queue>.<handler>"
    payload: Any = None
    priority: int | None = None
    attempts: int = 0  # runs started
    max_attempts: int | None = None
    stalls: int = 0
    keep_completed: int | None = None  # None: the queue's keep_completed
    keep_failed: int | None = None
    timeout: float | None = None  # its own timeout= option; None: the queue's
    key: str | None = None  # enqueue(key=...): duplicates are refused while it holds it
    key_ttl: float | None = None  # seconds the key stays taken after it finished
    created: datetime.datetime | None = None
    started: datetime.datetime | None = None
    finished: datetime.datetime | None = None
    due: datetime.datetime | None = None
    result: Any = None
    error: str | None = None
    traceback: str | None = None
    progress: Any = None
    consumer: str | None = None  # the consumer that holds it (active) or ran it last
    parent: str | None = None  # "<queue>:<id>" of the job that spawned it and waits for it
    children: int = 0  # the children it spawned (framework/fanin.py), as linked or reported
    children_completed: int = 0  # of which completed
    children_failed: int = 0  # and failed (each child counts once, with its first outcome)
    follows: str | None = None  # "<queue>:<id>" of the job whose result started it
    then: tuple[str, ...] = ()  # the handlers of the follow-ups its result starts, in order
    logs: tuple[str, ...] = ()
    problem: str | None = None

    def masked(self, masker: Masker) -> JobInfo:
        """This job with its secrets hidden: payload, result and progress by key and in
        their strings; error, traceback, log lines and problem as text."""

        def text(value: str | None) -> str | None:
            return None if value is None else masker.text(value)

        def value(found: Any) -> Any:
            if isinstance(found, Cut):  # no longer JSON: masked as the text it is
                return replace(found, text=masker.text(found.text))
            return masker.value(found)

        return replace(
            self,
            payload=value(self.payload),
            result=value(self.result),
            progress=value(self.progress),
            error=text(self.error),
            traceback=text(self.traceback),
            logs=tuple(masker.text(line) for line in self.logs),
            problem=text(self.problem),
        )

    @property
    def handler(self) -> str | None:
        """The handler's short name (``send_message``)."""
        return self.name.partition(".")[2] or None if self.name else None

    @property
    def children_pending(self) -> int:
        """Children that have not finished (or whose outcome has not reached it yet)."""
        return max(self.children - self.children_completed - self.children_failed, 0)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values: times as ISO 8601 strings, logs as a list, a value read only
        in part as its text with the marker (``… [cut: 52,428,800 bytes, showing 65,536]``)."""
        out: dict[str, Any] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, datetime.datetime):
                value = value.isoformat(timespec="milliseconds")
            elif isinstance(value, tuple):
                value = list(value)
            out[item.name] = plain(value)
        return out


class Record:
    """Typed reads of a job record (as :mod:`framework.peek` read it) that note what is
    wrong instead of raising. A field read only in part is marked (:mod:`framework.cut`)."""

    def __init__(self, peeked: Peeked) -> None:
        self.raw = peeked.values
        self.peeked = peeked
        self.problems: list[str] = []

    def _too_long(self, name: str, what: str) -> bool:
        if not self.peeked.cut(name):
            return False
        size = self.peeked.sizes[name]
        self.problems.append(f"{name} is not {what}: a value of {size:,} bytes")
        return True

    def text(self, name: str) -> str | None:
        value = self.raw.get(name)
        return text_of(value, self.peeked.sizes[name]) if value else None

    def number(self, name: str) -> int | None:
        value = self.raw.get(name)
        if not value or self._too_long(name, "a whole number"):
            return None
        try:
            return int(value)
        except ValueError:
            self.problems.append(f"{name} is not a whole number: {value[:40]!r}")
            return None

    def time(self, name: str) -> datetime.datetime | None:
        ms = self.number(name)
        if ms is None:
            return None
        try:
            return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
        except (OverflowError, OSError, ValueError):
            self.problems.append(f"{name} is not a time in epoch ms: {ms}")
            return None

    def created(self, job_id: str) -> datetime.datetime | None:
        """When the job was enqueued: from its id (:mod:`framework.ids`), or, for an
        id that does not say (an older hueyard's random id), its ``created`` field."""
        ms = created_ms(job_id)
        if ms is None:
            return self.time("created")
        return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)

    def attempts(self) -> int:
        """Runs started: ``attempts``; a record that ran (it has ``started``) and has
        no ``attempts`` completed at its first run, which keeps no count (release.lua)."""
        count = self.number("attempts")
        if count is not None:
            return count
        return 1 if self.raw.get("started") and "attempts" not in self.raw else 0

    def seconds(self, name: str) -> float | None:
        value = self.raw.get(name)
        if not value or self._too_long(name, "a number of seconds"):
            return None
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds) or seconds < 0:
            self.problems.append(f"{name} is not a number of seconds: {value[:40]!r}")
            return None
        return seconds

    def keep(self, name: str) -> int | None:
        keep = self.number(name)
        return None if keep is None or keep < 0 else keep

    def json(self, name: str) -> Any:
        """The JSON value of ``name``; its text when it is not JSON hueyard can show (the
        problem says why), a :class:`Cut` when it was read only in part."""
        value = self.raw.get(name)
        if not value:
            return None
        if self.peeked.cut(name):
            return Cut.of(value, self.peeked.sizes[name])
        try:
            return loads(value, max_depth=defaults.MAX_PAYLOAD_DEPTH)
        except SerializationError as exc:
            self.problems.append(f"{name}: {exc}")
            return value.decode(errors="replace")

    def handler(self) -> str | None:
        return self.text("handler") or self.text("name")  # name: a hueyard 0.1.0 record

    def chain(self) -> tuple[str, ...]:
        """The handlers of the follow-ups in ``then`` (framework/chains.py), in order."""
        steps = self.json("then")
        if steps is None or isinstance(steps, Cut | str):
            return ("(not shown: too large)",) if isinstance(steps, Cut) else ()
        if not isinstance(steps, list):
            self.problems.append("then: not a list of follow-ups")
            return ()
        return tuple(
            str(step.get("handler", "?")) if isinstance(step, dict) else "?" for step in steps
        )

    def payload(self) -> Any:
        """The payload; None when it can not be read (the problem says why)."""
        name = "payload" if "payload" in self.raw else "data"  # data: a hueyard 0.1.0 record
        value = self.raw.get(name)
        if value is None:
            self.problems.append("the record has no payload (nothing to run)")
            return None
        if self.peeked.cut(name):
            return Cut.of(value, self.peeked.sizes[name])
        try:
            if name == "payload":
                return loads(value, max_depth=defaults.MAX_PAYLOAD_DEPTH)
            return legacy_message(value)[1]
        except SerializationError as exc:
            self.problems.append(f"{name}: {exc}")
            return None


def job_info(
    job_id: str,
    record: Peeked,
    *,
    queue: str | None,
    state: str | None,
    score: float | None = None,
    policy: QueuePolicy | None = None,
    logs: tuple[str, ...] = (),
    problems: list[str] | None = None,
) -> JobInfo:
    """Read ``record`` (as :func:`framework.peek.record_of` gives it) into a :class:`JobInfo`.

    ``score`` is the job's score in the sorted set of ``state``; ``policy``
    its queue's, for the options the job did not set.
    """
    problems = list(problems or [])
    if record.kind == "none":
        problems.insert(0, f"no job record: the id is listed as {state}, but its record is gone")
        return JobInfo(id=job_id, queue=queue, state=state, problem="; ".join(problems))
    if record.kind != "hash":
        problems.insert(0, f"its key is not a job record (not a hash): it is a {record.kind}")
        return JobInfo(id=job_id, queue=queue, state=state, problem="; ".join(problems))
    job = Record(record)
    priority, max_attempts = job.number("priority"), job.number("max_attempts")
    if policy is not None:
        effective = JobPolicy.of(policy, priority=priority, attempts=max_attempts)
        priority, max_attempts = effective.priority, effective.attempts
    when = _time_of(score)
    info = JobInfo(
        id=job_id,
        queue=queue,
        state=state,
        name=job.handler(),
        payload=job.payload(),
        priority=priority,
        attempts=job.attempts(),
        max_attempts=max_attempts,
        stalls=job.number("stalls") or 0,
        keep_completed=job.keep("keep_completed"),
        keep_failed=job.keep("keep_failed"),
        timeout=job.seconds("timeout"),
        key=job.text("key"),
        key_ttl=job.seconds("key_ttl"),
        created=job.created(job_id),
        started=job.time("started"),
        finished=when if state in ("completed", "failed") else job.time("finished"),
        due=when if state == "delayed" else None,
        result=job.json("result"),
        error=job.text("error"),
        traceback=job.text("traceback"),
        progress=job.json("progress"),
        consumer=job.text("consumer"),
        parent=job.text("parent"),
        children=job.number("children") or 0,
        children_completed=job.number("children_completed") or 0,
        children_failed=job.number("children_failed") or 0,
        follows=job.text("follows"),
        then=job.chain(),
        logs=logs,
    )
    problems += job.problems
    return info if not problems else replace(info, problem="; ".join(problems))


def log_lines(lines: Lines) -> tuple[str, ...]:
    """A job's log lines as read (:func:`framework.peek.lines_of`), oldest first, each cut
    line ending with the marker; a first line says so when older lines were not read."""
    shown = tuple(text_of(start, size) for start, size in lines.lines)
    if lines.total <= len(shown):
        return shown
    return (marker(lines.total, len(shown), "lines", "the newest "), *shown)


def _time_of(score: float | None) -> datetime.datetime | None:
    if score is None:
        return None
    try:
        return datetime.datetime.fromtimestamp(score / 1000, datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return None
