"""The read/act API over job state: what the dashboard, health checks and CLI use.

Nothing outside ``framework`` spells a Redis key: it asks :class:`Jobs` and
gets small frozen dataclasses back::

    from framework.jobs import Jobs

    jobs = Jobs(app)                          # or framework.jobs.get_jobs()
    jobs.counts("messages")                   # QueueCounts(waiting=5, active=2, ...)
    page = jobs.list_jobs("messages", "failed", page=1, page_size=25)
    job = jobs.get(page.items[0].id)          # JobInfo: payload, error, traceback, logs
    jobs.retry_all("messages")                # failed -> waiting, in bounded batches
    jobs.pause("imports"); jobs.resume("imports")

Reads are one pipelined round trip (two for a page: its ids, then its
records). Every state change is one of the Lua scripts of ``framework/lua/``,
and a bulk action (``retry_all``, ``promote_all``, ``clean``) runs them in
batches of :data:`framework.defaults.BULK_BATCH` jobs, so it handles 100,000
jobs without one round trip per job and without one long script that blocks
Redis. A bulk action is bounded: it touches at most the jobs that were in the
state when it started (plus the ones that arrived meanwhile, in its last batch).

Every call that takes a job id refuses, with :class:`JobActionError`, one that
can not name a job (:func:`framework.ids.check_job_id`: ``<id>:logs`` is a
job's log list, not a job) before it reads or writes anything.

A job record that hueyard did not write (a planted key of another type, data
that is not JSON, an id without a record) never makes a call fail: its
:class:`JobInfo` says what is wrong in ``problem``. Nor does one of any size:
records are read within bounds (:mod:`framework.peek`), and a value read only
in part comes back marked as such (:mod:`framework.cut`).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import redis
from redis.client import Pipeline
from redis.exceptions import InvalidResponse

from framework import defaults
from framework.clock import server_ms
from framework.connection import connection_failure
from framework.errors import JobActionError, RedisUnavailableError, StorageError, WrongKeyError
from framework.ids import check_job_id
from framework.keys import JOB_STATES, Keys, QueueKeys
from framework.metrics import (
    ConsumerInfo,
    MetricPoint,
    MetricsSummary,
    read_consumers,
    series,
    snapshot,
    summary,
)
from framework.peek import Limits, Peeked, lines_of, peek_lines, peek_record, read, record_of
from framework.pulse import QueuePulse, read_pulse
from framework.records import (
    ChildLink,
    Cursor,
    JobInfo,
    JobLocation,
    Page,
    QueueCounts,
    Scan,
    job_info,
    log_lines,
)
from framework.runtime import get_app
from framework.scripts import COUNT_DIGITS, Scripts, is_count, refuses_scripts, storage_error
from framework.settings import QueuePolicy

if TYPE_CHECKING:
    from framework.application import Hueyard

__all__ = [
    "Cancel",
    "ChildLink",
    "Cursor",
    "STATES",
    "FINISHED_STATES",
    "MAX_OLDER_THAN",
    "MAX_PAGE",
    "MAX_PAGE_SIZE",
    "JobInfo",
    "JobLocation",
    "Jobs",
    "Page",
    "QueueCounts",
    "Scan",
    "check_older_than",
    "get_jobs",
]


class Cancel(StrEnum):
    """What :meth:`Jobs.cancel` did."""

    CANCELLED = "cancelled"
    """It was not running: it is failed, "cancelled", now."""
    REQUESTED = "requested"
    """It runs: its consumer stops it within one lease renewal."""


STATES = (*JOB_STATES, "paused")
"""Every state a job can be listed in (``paused`` is ``waiting`` of a paused queue)."""

FINISHED_STATES = ("completed", "failed")
"""The states :meth:`Jobs.clean` deletes from."""

MAX_PAGE_SIZE = 500
"""Most jobs one page may hold."""

MAX_PAGE = 1_000_000_000
"""The last page number a list may ask for: with :data:`MAX_PAGE_SIZE`, a start far
inside the 64-bit index Redis takes, and past the jobs any Redis can hold."""

MAX_OLDER_THAN = 1_000_000_000
"""The most seconds :meth:`Jobs.clean` takes for ``older_than`` (about 31 years): a
larger age is older than any job, and in ms past what Redis's numbers hold exactly."""

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")


# -- the API ---------------------------------------------------------------------------------


def _redis_errors(method: Callable[Concatenate[Jobs, P], R]) -> Callable[Concatenate[Jobs, P], R]:
    """A Redis that does not answer becomes a :class:`RedisUnavailableError` with the fix;
    one that answers with an error, a :class:`StorageError` naming the problem (a
    :class:`~framework.errors.ReadOnlyReplicaError` for a replica's ``READONLY``)."""

    @functools.wraps(method)
    def call(self: Jobs, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except _Interrupted as stopped:  # a bulk action that did part of its work
            error = _converted(self, method.__name__, stopped.cause)
            raise type(error)(f"{error}; {stopped.done}") from None
        except (
            redis.ResponseError,
            redis.ConnectionError,
            redis.TimeoutError,
            InvalidResponse,
        ) as exc:
            raise _converted(self, method.__name__, exc) from None

    return call


def _converted(jobs: Jobs, name: str, exc: Exception) -> StorageError:
    if isinstance(exc, StorageError):  # a script's error, said already
        return exc
    if isinstance(exc, redis.ResponseError):  # Redis answered: not an outage
        return storage_error(exc, f"jobs.{name}")
    settings = jobs.app.settings.redis
    url = settings.connection.redacted_url
    return RedisUnavailableError(
        f"jobs.{name}: Redis at {url} "
        f"{connection_failure(exc, settings.reconnect_attempts, url)}; "
        f"{settings.connection.what_to_check}"
    )


class _Interrupted(Exception):
    """A bulk action stopped by Redis after it did part of its work: ``done`` says what."""

    def __init__(self, cause: Exception, done: str) -> None:
        super().__init__(done)
        self.cause, self.done = cause, done


class Bulk(int):
    """What a bulk action returns: how many jobs it moved or deleted; ``skipped`` holds
    how many it stepped over (a record that can not be read: ``hueyard job ID`` says
    why). Compares and prints as the plain count."""

    skipped: int

    def __new__(cls, done: int, skipped: int = 0) -> Bulk:
        bulk = super().__new__(cls, done)
        bulk.skipped = skipped
        return bulk


class Jobs:
    """Counts, pages, single jobs and actions for every queue of ``app``.

    Cheap to build (no I/O): it shares the app's connection pool. With
    ``masked=True`` every job it returns has its secrets hidden by the app's
    masker (:meth:`JobInfo.masked`): what the dashboard and the CLI show.
    """

    def __init__(self, app: Hueyard, *, masked: bool = False) -> None:
        self.app = app
        self.masked = masked
        self.keys: Keys = app.keys
        self.conn = app.clients.client()
        self.scripts = Scripts(self.conn)
        self._scripts_checked: tuple[float, StorageError | None] | None = None

    # -- counts --------------------------------------------------------------------------

    @_redis_errors
    def counts(self, queue: str) -> QueueCounts:
        """Jobs of ``queue`` per state: one round trip (5 x ZCARD + EXISTS)."""
        return self._counts([queue])[queue]

    @_redis_errors
    def counts_all(self) -> dict[str, QueueCounts]:
        """:meth:`counts` of every declared queue, in config order, in one round trip."""
        return self._counts(list(self.app.queues))

    def _counts(self, queues: list[str]) -> dict[str, QueueCounts]:
        sets = [(name, self._q(name)) for name in queues]

        def reads(pipe: Any) -> None:
            for _, q in sets:
                for state in JOB_STATES:
                    pipe.zcard(q.state(state))
                pipe.exists(q.paused)
                for key, _ in _kinds(q):
                    pipe.type(key)
                pipe.getrange(q.seq, 0, COUNT_DIGITS)  # enough to tell a count from no count

        # A set key planted with another type counts as empty, not as a crash, and is
        # named in ``unreadable`` (hueyard status and the doctor say what to do), as is
        # any other key of the queue that its scripts refuse when it is not their type.
        raw = snapshot(self.conn, reads)
        replies = [_count(reply) for reply in raw]
        kinds = len(_kinds(sets[0][1])) if sets else 0
        width = len(JOB_STATES) + 1 + kinds + 1
        counts = {}
        for index, (name, q) in enumerate(sets):
            row = replies[index * width : index * width + len(JOB_STATES) + 1]
            waiting, active, delayed, completed, failed, waiting_children, paused = row
            types = raw[index * width + len(JOB_STATES) + 1 : (index + 1) * width - 1]
            seq = raw[(index + 1) * width - 1]
            unreadable = tuple(
                q.state(state)
                for offset, state in enumerate(JOB_STATES)
                if _wrong_type(raw[index * width + offset])
            ) + tuple(
                key
                for (key, wanted), found in zip(_kinds(q), types, strict=True)
                if isinstance(found, bytes | str)
                and (found.decode() if isinstance(found, bytes) else found) not in ("none", wanted)
            )
            is_paused = bool(paused)
            counts[name] = QueueCounts(
                queue=name,
                waiting=0 if is_paused else int(waiting),
                active=int(active),
                delayed=int(delayed),
                completed=int(completed),
                failed=int(failed),
                paused=int(waiting) if is_paused else 0,
                is_paused=is_paused,
                waiting_children=int(waiting_children),
                unreadable=unreadable,
                not_counts=(q.seq,) if isinstance(seq, bytes) and seq and not is_count(seq) else (),
            )
        return counts

    # -- reading jobs --------------------------------------------------------------------

    @_redis_errors
    def list_jobs(
        self,
        queue: str,
        state: str,
        *,
        page: int = 1,
        page_size: int = 25,
        field_bytes: int = defaults.LIST_FIELD_BYTES,
    ) -> Page[JobInfo]:
        """One page of the jobs of ``queue`` in ``state``.

        Waiting and paused jobs come in run order (priority, then FIFO); the
        other states newest first (active: latest lease deadline first).
        Two round trips, and never more than ``page_size`` records read, each
        payload, result, progress, error and traceback at most ``field_bytes``
        bytes (the rest is cut, see :mod:`framework.peek`); no log lines.
        """
        state = _check_state(state)
        _check_page(page, page_size)
        limits = Limits(field_bytes=_check_bytes(field_bytes))
        q = self._q(queue)
        set_state = "waiting" if state == "paused" else state
        key = q.state(set_state)
        start, stop = (page - 1) * page_size, page * page_size - 1

        def reads(pipe: Any) -> None:
            pipe.exists(q.paused)
            pipe.zcard(key)
            if set_state == "waiting":
                pipe.zrange(key, start, stop)
            else:
                pipe.zrevrange(key, start, stop)

        paused, total, ids = snapshot(self.conn, reads)
        unreadable = key if _wrong_type(ids) else None
        if unreadable or (set_state == "waiting" and bool(paused) != (state == "paused")):
            total, ids = 0, []  # a paused queue has no waiting jobs, a running one none paused
        ids = [job_id.decode(errors="replace") for job_id in ids]
        items = self._page_records(queue, state, key, ids, limits)
        if self.masked:
            items = [item.masked(self.app.masker) for item in items]
        return Page(
            items=tuple(items),
            total=int(total),
            page=page,
            page_size=page_size,
            unreadable=unreadable,
        )

    @_redis_errors
    def scan(
        self,
        queue: str,
        state: str,
        *,
        after: Cursor | None = None,
        count: int = 100,
        field_bytes: int = defaults.LIST_FIELD_BYTES,
    ) -> Scan[JobInfo]:
        """The next ``count`` jobs of ``queue`` in ``state`` after the cursor ``after``
        (from the first when None), in :meth:`list_jobs`' order, and the cursor to the
        ones after them (``next``; None at the end). Two round trips, as a page.

        What a walk over a whole state uses (the dashboard's payload search): a page
        number moves when jobs join or leave the state, so a job that completes during
        a walk of the completed jobs, newest first, would push one already read onto
        the next page, read twice. A cursor is the last job read, its score and its
        id (Redis orders the jobs of one score by id): a walk reads each job that
        stays in the state once, never one that joined ahead of the cursor, and
        steps over none because others left.
        """
        state = _check_state(state)
        _check_page(1, count)
        limits = Limits(field_bytes=_check_bytes(field_bytes))
        q = self._q(queue)
        set_state = "waiting" if state == "paused" else state
        key = q.state(set_state)
        ascending = set_state == "waiting"  # run order; the other states newest first
        window = count + (after.ties if after is not None else 0)

        def reads(pipe: Any) -> None:
            pipe.exists(q.paused)
            pipe.zcard(key)
            if ascending:
                low = "-inf" if after is None else after.score
                pipe.zrangebyscore(key, low, "+inf", start=0, num=window, withscores=True)
            else:
                high = "+inf" if after is None else after.score
                pipe.zrevrangebyscore(key, high, "-inf", start=0, num=window, withscores=True)

        paused, total, rows = snapshot(self.conn, reads)
        unreadable = key if _wrong_type(rows) else None
        if unreadable or (set_state == "waiting" and bool(paused) != (state == "paused")):
            return Scan(items=(), total=0, next=None, unreadable=unreadable)
        kept, following = _past_cursor(rows, after, count, window, ascending=ascending)
        ids = [member.decode(errors="replace") for member in kept]
        items = self._page_records(queue, state, key, ids, limits)
        if self.masked:
            items = [item.masked(self.app.masker) for item in items]
        return Scan(items=tuple(items), total=int(total), next=following)

    def _page_records(
        self, queue: str, state: str, key: str, ids: list[str], limits: Limits
    ) -> list[JobInfo]:
        if not ids:
            return []

        # Each record is read with its membership, atomically: a job that left the
        # state since its id was listed is dropped, not shown with a stale state.
        def build(pipe: Pipeline) -> None:
            for job_id in ids:
                peek_record(self.scripts, pipe, self.keys.job(queue, job_id), limits)
                pipe.zscore(key, job_id)

        replies = read(self.conn, self.scripts, build, transaction=True)
        items = []
        for index, job_id in enumerate(ids):
            record, score = replies[2 * index], replies[2 * index + 1]
            if score is None or isinstance(score, Exception):
                continue
            items.append(
                job_info(job_id, record_of(record), queue=queue, state=state,
                         score=float(score), policy=self._policy(queue))
            )  # fmt: skip
        return items

    @_redis_errors
    def get(
        self, job_id: str, *, queue: str | None = None, field_bytes: int | None = None
    ) -> JobInfo | None:
        """The job with all its details and log lines, or None if no queue knows it.

        A job's keys are its queue's (:mod:`framework.keys`): with ``queue`` it
        is read there, in one round trip (the record, its logs and its place in
        that queue, atomically); without, each queue is asked first, in one more
        round trip. Each payload, result, progress, error and traceback is read
        up to ``field_bytes`` bytes (default: the largest ``max_payload_bytes``
        of the queues, so any payload hueyard accepted is read whole), and the
        newest ``[consumer] max_log_lines`` log lines, each up to
        :data:`~framework.defaults.LOG_LINE_BYTES`; what is longer is cut, with
        a marker (:mod:`framework.peek`).
        """
        if not isinstance(job_id, str) or not job_id:
            return None
        check_job_id(job_id)
        limits = Limits(
            field_bytes=_check_bytes(self._read_bytes if field_bytes is None else field_bytes),
            log_lines=self.app.settings.consumer.max_log_lines,
        )
        problems: list[str] = []
        if queue is None:
            holders = self._holders(job_id)
            if not holders:
                return None
            if len(holders) > 1:
                problems.append(f"the id is known to several queues at once ({', '.join(holders)})")
            queue = holders[0]
        q = self._q(queue)

        def build(pipe: Pipeline) -> None:
            peek_record(self.scripts, pipe, q.job(job_id), limits)
            peek_lines(self.scripts, pipe, q.logs(job_id), limits)
            self._locate(pipe, job_id, [queue])

        replies = read(self.conn, self.scripts, build, transaction=True)
        record, lines = record_of(replies[0]), lines_of(replies[1])
        found = self._places(replies[2:], [queue])
        places = [place for place, _ in found]
        if not places and record.kind == "none":
            return None
        if len(places) > 1:
            where = ", ".join(f"{p.queue}/{p.state}" for p in places)
            problems.append(f"the id is in several sets at once ({where})")
        if lines.kind not in ("list", "none"):
            problems.append(f"its log key is not a list (it is a {lines.kind})")
        logs = log_lines(lines)
        score: float | None = None
        state: str | None = None
        if places:
            state, score = places[0].state, found[0][1]
        else:
            problems.append("the record is in no queue's sorted set (an orphan; remove it)")
        owner = self._owner(record)
        if owner is not None and owner != queue:
            problems.append(f"its record names a handler of queue {owner!r}, not {queue!r}")
        job = job_info(
            job_id,
            record,
            queue=queue,
            state=state,
            score=score,
            policy=self._policy(queue),
            logs=logs,
            problems=problems,
        )
        return job.masked(self.app.masker) if self.masked else job

    @_redis_errors
    def children(
        self, queue: str, job_id: str, *, page: int = 1, page_size: int = 25
    ) -> Page[ChildLink]:
        """A page of the children of job ``job_id`` of ``queue`` (:mod:`framework.fanin`):
        failed first, then completed, then pending, the latest first within each. One
        round trip. A finished parent keeps links to at most
        :data:`~framework.defaults.CHILD_LINKS_KEPT` children (its counts stay whole:
        ``JobInfo.children``)."""
        _check_page(page, page_size)
        key = self._q(queue).children(check_job_id(job_id))
        start, stop = (page - 1) * page_size, page * page_size - 1

        def reads(pipe: Any) -> None:
            pipe.zcard(key)
            pipe.zrevrange(key, start, stop, withscores=True)

        total, rows = snapshot(self.conn, reads)
        if _wrong_type(rows):  # a planted key of another type holds no children
            total, rows = 0, []
        items = tuple(ChildLink.of(member, score) for member, score in rows)
        return Page(items=items, total=_count(total), page=page, page_size=page_size)

    @_redis_errors
    def find(self, job_id: str) -> JobLocation | None:
        """The queue and state of a job (from the sorted sets), or None. One round trip."""
        if not isinstance(job_id, str) or not job_id:
            return None
        check_job_id(job_id)
        queues = list(self.app.queues)
        found = self._places(
            snapshot(self.conn, lambda pipe: self._locate(pipe, job_id, queues)), queues
        )
        return found[0][0] if found else None

    def _holders(self, job_id: str) -> list[str]:
        """The queues whose keys know ``job_id`` (its record, or an entry in a set):
        one round trip, a pipeline over every queue (on a Cluster, over its nodes)."""
        queues = list(self.app.queues)

        def reads(pipe: Any) -> None:
            for name in queues:
                pipe.exists(self.keys.job(name, job_id))
            self._locate(pipe, job_id, queues)

        replies = snapshot(self.conn, reads)
        records, places = replies[: len(queues)], self._places(replies[len(queues) :], queues)
        known = {place.queue for place, _ in places}
        known |= {name for name, exists in zip(queues, records, strict=True) if exists == 1}
        return [name for name in queues if name in known]

    def _locate(self, pipe: Any, job_id: str, queues: list[str]) -> None:
        for name in queues:
            q = self.keys.queue(name)
            pipe.exists(q.paused)
            for state in JOB_STATES:
                pipe.zscore(q.state(state), job_id)

    def _places(self, replies: list[Any], queues: list[str]) -> list[tuple[JobLocation, float]]:
        """Where the replies of :meth:`_locate` say the job is, with its score there."""
        places = []
        width = len(JOB_STATES) + 1
        for index, name in enumerate(queues):
            paused, *scores = replies[index * width : (index + 1) * width]
            for state, score in zip(JOB_STATES, scores, strict=True):
                if score is None or isinstance(score, Exception):
                    continue
                shown = "paused" if state == "waiting" and paused == 1 else state
                places.append((JobLocation(name, shown), float(score)))
        return places

    def _owner(self, record: Peeked) -> str | None:
        """The queue a record's stable name belongs to, if the app declares it."""
        name = record.values.get("handler") or record.values.get("name") or b""  # 0.1.0: name
        owner = name.decode(errors="replace").partition(".")[0]
        return owner if owner in self.app.queues else None

    # -- actions -------------------------------------------------------------------------

    @_redis_errors
    def retry(self, queue: str, job_id: str) -> bool:
        """A failed job back to waiting with fresh attempts. False if it is not failed.

        Raises :class:`JobActionError` for a job whose record is corrupt (it stays
        failed, with the reason).
        """
        q = self._q(queue)
        moved, kept = self._call("retry", queue, q, limit=1, ids=[check_job_id(job_id)])
        if kept:
            raise JobActionError(
                f"job {job_id!r} of queue {queue!r} stays failed: its record is corrupt "
                f"({kept[1].decode(errors='replace')}); correct the field (HSET) and retry "
                "it, or remove it"
            )
        return int(moved) == 1

    @_redis_errors
    def retry_all(self, queue: str) -> Bulk:
        """Every failed job of ``queue`` back to waiting, oldest first; returns how many.

        One script call per :data:`~framework.defaults.BULK_BATCH` jobs, and no
        more calls than the failed jobs at the start need (a job that fails
        again meanwhile is not retried twice by this call).
        """
        q = self._q(queue)
        remaining = total = self._size(q.failed)
        moved = skip = 0

        def done() -> str:
            return (
                f"{moved:,} of the {total:,} failed jobs were retried before it stopped (and "
                "the batch it was sending, if only its answer was lost); the others are "
                "still failed: run it again for them"
            )

        while remaining > 0:
            limit = min(defaults.BULK_BATCH, remaining)
            try:
                batch, kept = self._call("retry", queue, q, limit=limit, skip=skip)
            except KeyboardInterrupt as exc:  # Ctrl-C: still one, saying how far it got
                exc.add_note(done())
                raise
            except (redis.RedisError, StorageError) as exc:
                if not moved:
                    raise
                raise _Interrupted(exc, done()) from None
            moved += int(batch)
            skip += len(kept) // 2  # corrupt records stay failed, at the head: step over them
            remaining -= limit
        return Bulk(moved, skip)

    @_redis_errors
    def promote(self, queue: str, job_id: str) -> bool:
        """A delayed job to waiting now. False if it is not delayed."""
        q = self._q(queue)
        return int(self._call("promote", queue, q, limit=1, ids=[check_job_id(job_id)])) == 1

    @_redis_errors
    def promote_all(self, queue: str) -> int:
        """Every delayed job of ``queue`` to waiting now, in batches; returns how many."""
        q = self._q(queue)
        remaining = self._size(q.delayed)
        moved = 0
        while remaining > 0:
            try:
                ids = self.conn.zrange(q.delayed, 0, min(defaults.BULK_BATCH, remaining) - 1)
                if not ids:
                    break
                moved += int(self._call("promote", queue, q, limit=len(ids), ids=ids))
            except KeyboardInterrupt as exc:  # Ctrl-C: still one, saying how far it got
                exc.add_note(
                    f"{moved:,} delayed jobs were promoted before it stopped (and the batch it "
                    "was sending, if only its answer was lost): run it again for the others"
                )
                raise
            remaining -= len(ids)
        return moved

    @_redis_errors
    def cancel(self, queue: str, job_id: str) -> Cancel:
        """Cancel a job of ``queue``: what became of it (:class:`Cancel`).

        A waiting, paused or delayed job is failed as "cancelled" at once; a
        running one is marked, and the consumer that runs it raises
        :class:`~framework.errors.JobCancelled` in its handler within one lease
        renewal (a third of ``[consumer] lease``), on whichever host it runs.
        A cancelled job is never retried by itself; :meth:`retry` runs it again.
        Raises :class:`JobActionError` for a finished job, a job of another
        queue, or an id no queue knows.
        """
        q = self._q(queue)
        check_job_id(job_id)
        policy = self.app.queue(queue).policy
        args = {
            "job_prefix": q.job_prefix,
            "key_prefix": q.key_prefix,
            "stats_prefix": q.stats_prefix,
            "metrics_ttl": self.app.settings.consumer.metrics_ttl,
            "keep_failed": policy.keep_failed,
            "id": job_id,
            "queue": queue,
        }
        answer = self.scripts.call("cancel", q, args=args).decode()
        if answer == "finished":
            raise JobActionError(f"job {job_id!r} of queue {queue!r} has finished already")
        if answer == "other":
            raise JobActionError(f"job {job_id!r} belongs to another queue than {queue!r}")
        if answer == "unknown":
            self._elsewhere(queue, job_id)
            raise JobActionError(f"no job {job_id!r} in queue {queue!r}")
        if answer == "cancelled":  # a child's parent hears of it now (framework/fanin.py)
            self.app.relay.deliver_now(queue)
        return Cancel(answer)

    def _elsewhere(self, queue: str, job_id: str) -> None:
        """Raise :class:`JobActionError` naming the queue that holds ``job_id``, if it
        is another than ``queue`` (a job's keys are its queue's: one queue does not
        see another's jobs)."""
        place = self.find(job_id)
        if place is not None and place.queue != queue:
            raise JobActionError(f"job {job_id!r} belongs to queue {place.queue!r}, not {queue!r}")

    @_redis_errors
    def remove(self, queue: str, job_id: str) -> bool:
        """Delete a job that is not running (record, logs, set entry). False if unknown.

        Raises :class:`JobActionError` for an active job, or a job of another queue.
        """
        q = self._q(queue)
        check_job_id(job_id)
        replies = read(
            self.conn,
            self.scripts,
            lambda pipe: peek_record(self.scripts, pipe, q.job(job_id), Limits(field_bytes=0)),
            transaction=False,
        )
        owner = self._owner(record_of(replies[0]))
        # a key that is not a record has no owner: remove deletes it like one
        if owner is not None and owner != queue:
            raise JobActionError(f"job {job_id!r} belongs to queue {owner!r}, not {queue!r}")
        removed = int(
            self.scripts.call(
                "remove",
                q,
                args={
                    "job_prefix": q.job_prefix,
                    "key_prefix": q.key_prefix,
                    "id": job_id,
                    "queue": queue,
                },
            )
        )
        if removed == -2:
            raise JobActionError(f"job {job_id!r} belongs to another queue than {queue!r}")
        if removed < 0:
            raise JobActionError(
                f"job {job_id!r} on queue {queue!r} is active (a worker runs it) and can not be "
                "removed; wait until it finishes, then remove it"
            )
        if removed == 0:
            self._elsewhere(queue, job_id)
        if removed == 1:  # an unfinished child's parent hears of it now (framework/fanin.py)
            self.app.relay.deliver_now(queue)
        return removed == 1

    @_redis_errors
    def clean(self, queue: str, state: str, older_than: float) -> Bulk:
        """Delete the ``completed`` or ``failed`` jobs that finished over ``older_than`` s ago.

        Returns how many were deleted; one script call per batch.
        """
        if state not in FINISHED_STATES:
            raise JobActionError(
                f"clean deletes completed or failed jobs, not {state!r}; remove a "
                "waiting, delayed or paused job by its id"
            )
        older_than = check_older_than(older_than)
        q = self._q(queue)
        key = q.state(state)
        batch = defaults.BULK_BATCH
        deleted = 0

        def done() -> str:
            return (
                f"{deleted:,} {state} jobs were deleted before it stopped (and the batch "
                "it was sending, if only its answer was lost): run it again for the others"
            )

        for _ in range(math.ceil(self._size(key) / batch)):
            args = {"job_prefix": q.job_prefix, "age_ms": int(older_than * 1000), "limit": batch}
            try:
                count = int(self.scripts.call("clean", keys={"set": key}, args=args))
            except KeyboardInterrupt as exc:  # Ctrl-C: still one, saying how far it got
                exc.add_note(done())
                raise
            except (redis.RedisError, StorageError) as exc:
                if not deleted:
                    raise
                raise _Interrupted(exc, done()) from None
            deleted += count
            if count < batch:
                break
        return Bulk(deleted)

    @_redis_errors
    def pause(self, queue: str) -> bool:
        """Stop handing out jobs of ``queue``; running jobs finish. False if already paused.

        The flag holds when, by the Redis server's clock, which the doctor's "paused
        since" compares with.
        """
        q = self._q(queue)
        return bool(self.conn.set(q.paused, server_ms(self.conn), nx=True))

    @_redis_errors
    def resume(self, queue: str) -> bool:
        """Hand out jobs again and wake idle workers at once. False if it was not paused."""
        return bool(self.scripts.call("resume", self._q(queue)))

    @_redis_errors
    def is_paused(self, queue: str) -> bool:
        return bool(self.conn.exists(self._q(queue).paused))

    @_redis_errors
    def pulse(self, queue: str) -> QueuePulse:
        """What holds ``queue`` back now: its pause, its rate-limit window, its next due
        delayed job, its longest-running job (:mod:`framework.pulse`). Two round trips."""
        q = self._q(queue)
        rate_limit = self.app.queue(queue).policy.rate_limit
        return read_pulse(self.conn, q, queue, rate_limit)

    @_redis_errors
    def refused_scripts(self, max_age: float = 0.0) -> StorageError | None:
        """The error saying Redis runs no Lua script (EVAL / EVALSHA renamed, removed, or
        forbidden by an ACL), None when it runs them: every enqueue and job change is a
        script, so with that error nothing moves.

        It runs one read-only script (``peek_lines`` of the consumers registry, which
        changes nothing) the way every job change runs one, by EVALSHA; a refusal of
        another kind raises as any read's does. The answer is kept ``max_age`` seconds
        (``/health`` asks at most every :data:`~framework.defaults.SCRIPTS_CHECK_EVERY`).
        """
        now = time.monotonic()
        kept = self._scripts_checked
        if kept is not None and now - kept[0] < max_age:
            return kept[1]
        refusal: StorageError | None = None
        try:
            self.scripts.call(
                "peek_lines", keys={"list": self.keys.consumers}, args={"count": 0, "cap": 0}
            )
        except StorageError as exc:
            if not refuses_scripts(exc):
                raise
            refusal = exc
        self._scripts_checked = (now, refusal)
        return refusal

    # -- consumers and metrics -----------------------------------------------------------

    @_redis_errors
    def consumers(self) -> list[ConsumerInfo]:
        """Consumers that sent a heartbeat lately, with the ids of the jobs they run.

        Heartbeats older than :data:`~framework.metrics.CONSUMER_WINDOW` are
        pruned; a consumer whose record expired (no beat for 30 s) is gone.
        """
        return read_consumers(self.conn, self.scripts, self.keys, list(self.app.queues))

    def live_consumers(self) -> tuple[list[ConsumerInfo], WrongKeyError | None]:
        """:meth:`consumers`, or none and the error when the consumers registry
        (``{prefix}:consumers``) holds another type: the doctor, ``/health`` and the
        dashboard's pages go on without the consumers, saying why."""
        try:
            return self.consumers(), None
        except WrongKeyError as exc:
            if exc.key != self.keys.consumers:
                raise
            return [], exc

    @_redis_errors
    def metrics(self, queue: str, minutes: int = 60) -> list[MetricPoint]:
        """Completed, failed, retried and p50/p95 processing time per minute, oldest first.

        One round trip; ``minutes`` from 1 to the metrics TTL in minutes.
        """
        return series(self.conn, self._q(queue), minutes, max_minutes=self._max_minutes)

    @_redis_errors
    def summary(self, queue: str, minutes: int = 60) -> MetricsSummary:
        """Throughput, failure rate, percentiles and the oldest waiting job's age."""
        self._q(queue)
        return summary(
            self.conn, self.scripts, self.keys, queue, minutes, max_minutes=self._max_minutes
        )

    # -- helpers -------------------------------------------------------------------------

    @functools.cached_property
    def _read_bytes(self) -> int:
        """What :meth:`get` reads of a field: the most any queue accepts as a payload."""
        return max(runtime.policy.max_payload_bytes for runtime in self.app.queues.values())

    @property
    def _max_minutes(self) -> int:
        return max(self.app.settings.consumer.metrics_ttl // 60, 1)

    def _q(self, queue: str) -> QueueKeys:
        self.app.queue(queue)  # QueueError naming the declared queues
        return self.keys.queue(queue)

    def _policy(self, queue: str) -> QueuePolicy | None:
        runtime = self.app.queues.get(queue)
        return runtime.policy if runtime is not None else None

    def _call(
        self,
        name: str,
        queue: str,
        q: QueueKeys,
        *,
        limit: int,
        ids: Sequence[Any] = (),
        skip: int = 0,
    ) -> Any:
        """``retry`` or ``promote``: the given ids, or up to ``limit`` of the set
        (for ``retry``, after the first ``skip``)."""
        policy = self.app.queue(queue).policy
        args = {
            "job_prefix": q.job_prefix,
            "key_prefix": q.key_prefix,
            "default_priority": policy.priority,
            "limit": limit,
        }
        if name == "retry":
            args["skip"] = skip
        return self.scripts.call(name, q, args=args, rows=[(job_id,) for job_id in ids])

    def _size(self, key: str) -> int:
        """Members of the sorted set ``key``; another type is a StorageError naming it."""
        try:
            return int(self.conn.zcard(key))
        except redis.ResponseError as exc:
            raise storage_error(exc, "ZCARD", key=key, wanted="zset", conn=self.conn) from None


def get_jobs() -> Jobs:
    """The read/act API of the process's app (:func:`framework.runtime.get_app`)."""
    return Jobs(get_app())


# -- reading records -------------------------------------------------------------------------


def _kinds(q: QueueKeys) -> tuple[tuple[str, str], ...]:
    """The keys of a queue besides its state sets that its scripts check, and their type:
    one of another type refuses every enqueue, claim or promotion of the queue."""
    return ((q.wake, "list"), (q.seq, "string"), (q.outbox, "zset"), (q.limiter, "zset"))


def _past_cursor(
    rows: list[tuple[bytes, float]],
    after: Cursor | None,
    count: int,
    window: int,
    *,
    ascending: bool,
) -> tuple[list[bytes], Cursor | None]:
    """Of ``rows`` (at most ``window`` members from the cursor's score on, inclusive, in
    the set's order), the first ``count`` past the cursor, and the cursor after them.

    The rows of the cursor's score that sort at or before its member were read
    already, or joined ahead of it: they are dropped. The next window is widened by
    the rows of its score read up to its member, so that it always reaches past them.
    """

    def passed(member: bytes, score: float) -> bool:
        if after is None or score != after.score:
            return False
        return member <= after.member if ascending else member >= after.member

    kept = [(member, float(score)) for member, score in rows if not passed(member, float(score))]
    items = kept[:count]
    if len(rows) < window and len(kept) <= count:
        return [member for member, _ in items], None  # the end of the set
    if not items:  # only rows that joined ahead of the cursor: widen the window past them
        assert after is not None
        return [], Cursor(after.score, after.member, ties=len(rows))
    member, score = items[-1]
    upto = next(index for index, row in enumerate(rows) if row[0] == member) + 1
    ties = sum(1 for _, other in rows[:upto] if float(other) == score)
    return [member for member, _ in items], Cursor(score, member, ties)


def _wrong_type(reply: Any) -> bool:
    """Whether a pipelined read's reply is Redis's ``WRONGTYPE``: a key of another type
    planted where a set should be, read as empty and named as unreadable. Any other
    error is raised (an index out of range is not a planted key)."""
    if not isinstance(reply, Exception):
        return False
    if isinstance(reply, redis.ResponseError) and str(reply).startswith("WRONGTYPE"):
        return True
    raise reply


def _count(reply: Any) -> int:
    return int(reply) if isinstance(reply, int) else 0


def _check_state(state: str) -> str:
    if state not in STATES:
        raise JobActionError(f"unknown job state {state!r}; use one of {', '.join(STATES)}")
    return state


def _check_bytes(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise JobActionError(f"field_bytes={limit!r} is not allowed; use bytes, 0 or more")
    return limit


def check_older_than(older_than: float) -> float:
    """``older_than`` if :meth:`Jobs.clean` takes it (seconds, 0 to :data:`MAX_OLDER_THAN`);
    :class:`JobActionError` naming the range if not. What the CLI and the dashboard check."""
    if (
        isinstance(older_than, bool)
        or not isinstance(older_than, int | float)
        or not math.isfinite(older_than)
        or not 0 <= older_than <= MAX_OLDER_THAN
    ):
        raise JobActionError(
            f"older_than={older_than!r} is not allowed; use seconds from 0 to "
            f"{MAX_OLDER_THAN:,} (about 31 years)"
        )
    return older_than


def _check_page(page: int, page_size: int) -> None:
    if isinstance(page, bool) or not isinstance(page, int) or not 1 <= page <= MAX_PAGE:
        raise JobActionError(f"page={page!r} is not allowed; pages count from 1 to {MAX_PAGE:,}")
    if (
        isinstance(page_size, bool)
        or not isinstance(page_size, int)
        or not 1 <= page_size <= MAX_PAGE_SIZE
    ):
        raise JobActionError(
            f"page_size={page_size!r} is not allowed; use 1 to {MAX_PAGE_SIZE} jobs a page"
        )
