"""What ops watch: per-minute metrics of a queue, and the live consumers.

``release`` (and ``recover``) count every outcome in a per-minute hash
(``completed`` / ``failed`` / ``retried``) and push the processing time of
each completed job (ms) to a per-minute list of at most
:data:`~framework.defaults.MAX_SAMPLES` to twice as many samples (the newest); both
expire after ``[consumer] metrics_ttl``. :func:`series` turns them into one
point per minute and :func:`summary` into totals, rates and percentiles, for
the dashboard's charts, the metrics endpoints and the health checks.
Minutes are counted on this process's clock (the scripts count on the Redis
server's), so a skew of a few seconds moves a job to the next minute.

Consumers beat every few seconds (``framework/consumer.py``): a zset of last
beats and a JSON record that expires. :func:`read_consumers` lists the live
ones with the jobs they hold.

Use all of it through :class:`framework.jobs.Jobs` (``jobs.metrics(queue)``,
``jobs.summary(queue)``, ``jobs.consumers()``). A value planted in Redis by
something else is skipped, never a crash.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis
from redis.client import Pipeline

from framework import defaults
from framework.clients import is_cluster
from framework.clock import server_ms, server_seconds
from framework.errors import JobActionError
from framework.ids import created_ms
from framework.keys import Keys, QueueKeys
from framework.peek import peek_field, read, record_of
from framework.scripts import Scripts, storage_error

__all__ = [
    "CONSUMER_WINDOW",
    "snapshot",
    "ConsumerInfo",
    "MetricPoint",
    "MetricsSummary",
    "percentile",
    "read_consumers",
    "series",
    "summary",
]

CONSUMER_WINDOW = 60.0
"""Seconds after its last heartbeat that a consumer leaves the ``consumers`` set."""

CONSUMER_RECORD_BYTES = 65536
"""Bytes of a consumer's heartbeat record read at most (one is a few hundred)."""

NAME_CHARS = 256
"""Characters of a host, queue or worker-type name from a heartbeat shown at most."""


@dataclass(frozen=True)
class MetricPoint:
    """One minute of one queue. ``p50_ms`` / ``p95_ms`` are None in a minute without samples."""

    minute: datetime.datetime  # the minute's start, UTC
    completed: int
    failed: int
    retried: int
    samples: int
    p50_ms: float | None
    p95_ms: float | None
    kept: bool = True
    """Whether Redis held this minute's counts or samples. False: nothing happened that
    minute, or its metrics are gone (expired, flushed): its zeros are not a reading."""

    def to_json(self) -> dict[str, Any]:
        return {
            "minute": self.minute.isoformat(),
            "completed": self.completed,
            "failed": self.failed,
            "retried": self.retried,
            "samples": self.samples,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
        }


@dataclass(frozen=True)
class MetricsSummary:
    """A queue over the last ``minutes`` minutes (the current, partial minute included)."""

    queue: str
    minutes: int
    completed: int
    failed: int
    retried: int
    throughput_per_minute: float  # completed jobs per minute
    failure_rate: float | None  # failed / (completed + failed); None when nothing finished
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    oldest_waiting_age: float | None  # seconds since the longest-waiting job was created;
    # None when nothing waits, or the queue is paused (its jobs are held, not waiting)

    def to_json(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "minutes": self.minutes,
            "completed": self.completed,
            "failed": self.failed,
            "retried": self.retried,
            "throughput_per_minute": self.throughput_per_minute,
            "failure_rate": self.failure_rate,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "oldest_waiting_age": self.oldest_waiting_age,
        }


@dataclass(frozen=True)
class ConsumerInfo:
    """A live consumer process, from its heartbeat."""

    id: str
    host: str
    pid: int | None
    queues: tuple[str, ...]
    worker_type: str
    workers: int
    started: datetime.datetime | None
    last_heartbeat: datetime.datetime
    running: tuple[str, ...]  # ids of the jobs it holds now
    abandoned: int = 0  # worker threads it gave up on (stuck in jobs that did not stop)
    connections: int | None = None  # Redis connections its main process has open
    max_connections: int | None = None  # ... and may open
    live: Mapping[str, int] | None = None
    """Worker threads or processes alive (and not given up on) per queue it serves; None
    from a consumer that does not say (an older hueyard's heartbeat)."""
    problem: str | None = None


def _live(value: object) -> dict[str, int] | None:
    """A heartbeat's live workers per queue; None when it holds none, or garbage."""
    if not isinstance(value, dict):
        return None
    live: dict[str, int] = {}
    for name, raw in list(value.items())[:1000]:
        count = _whole_or_none(raw)
        if isinstance(name, str) and count is not None:
            live[_short(name)] = count
    return live


def _whole_or_none(value: object) -> int | None:
    """A non-negative whole number from a heartbeat, else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def percentile(samples: Sequence[float], pct: float) -> float | None:
    """The nearest-rank percentile of sorted ``samples``; None when there are none.

    >>> percentile([10, 20, 30, 40], 50)
    20
    """
    if not samples:
        return None
    rank = max(math.ceil(pct / 100 * len(samples)), 1)
    return samples[min(rank, len(samples)) - 1]


def series(
    conn: redis.Redis, q: QueueKeys, minutes: int, *, max_minutes: int, now: float | None = None
) -> list[MetricPoint]:
    """``minutes`` points, oldest first, ending with the current minute: two round trips.

    The current minute is the Redis server's (``TIME``), whose minutes the
    scripts count in, whatever this host's clock says.
    """
    first = _first_minute(minutes, max_minutes, server_seconds(conn) if now is None else now)
    with conn.pipeline(transaction=False) as pipe:
        _queue_series(pipe, q, first, minutes)
        replies = pipe.execute(raise_on_error=False)
    return [point for point, _ in _points(replies, first, minutes)]


def summary(
    conn: redis.Redis,
    scripts: Scripts,
    keys: Keys,
    queue: str,
    minutes: int,
    *,
    max_minutes: int,
    now: float | None = None,
) -> MetricsSummary:
    """Totals, rates and percentiles of the last ``minutes`` minutes: three round trips.

    The oldest waiting job is the first job of each priority band of the
    waiting set (the earliest enqueued there), so a low-priority job stuck
    behind busy high-priority work is seen too.
    """
    now = server_seconds(conn) if now is None else now  # the clock the scripts count by
    q = keys.queue(queue)
    first = _first_minute(minutes, max_minutes, now)
    bands = range(defaults.PRIORITY_HIGHEST, defaults.PRIORITY_LOWEST + 1)
    with conn.pipeline(transaction=False) as pipe:
        _queue_series(pipe, q, first, minutes)
        for priority in bands:
            low, high = priority * defaults.SEQ_SPAN, (priority + 1) * defaults.SEQ_SPAN
            pipe.zrangebyscore(q.waiting, low, f"({high}", start=0, num=1)
        pipe.exists(q.paused)
        replies = pipe.execute(raise_on_error=False)
    points = _points(replies[: 2 * minutes], first, minutes)
    paused = isinstance(replies[-1], int) and replies[-1] > 0  # EXISTS (an error: not known)
    heads = [
        reply[0].decode()
        for reply in replies[2 * minutes : -1]
        if reply and not isinstance(reply, Exception)
    ]
    # a paused queue's jobs are held ("paused"), not waiting: none of them is overdue
    oldest = None if paused else _oldest_created(conn, scripts, q, heads)

    completed = sum(point.completed for point, _ in points)
    failed = sum(point.failed for point, _ in points)
    samples = sorted(sample for _, minute_samples in points for sample in minute_samples)
    return MetricsSummary(
        queue=queue,
        minutes=minutes,
        completed=completed,
        failed=failed,
        retried=sum(point.retried for point, _ in points),
        throughput_per_minute=completed / minutes,
        failure_rate=failed / (completed + failed) if completed + failed else None,
        p50_ms=percentile(samples, 50),
        p95_ms=percentile(samples, 95),
        p99_ms=percentile(samples, 99),
        oldest_waiting_age=None if oldest is None else max(now - oldest / 1000, 0.0),
    )


def snapshot(
    conn: redis.Redis, reads: Callable[[Any], None], *, raise_on_error: bool = False
) -> list[Any]:
    """Run the commands ``reads`` queues on a pipeline in one transaction: one moment
    of the data, as no other client runs between them.

    On a Redis Cluster a transaction may not span slots, and the reads of a
    page span queues: they run as a plain pipeline, split over the nodes (each
    reply right, the set of them of a few instants, a millisecond apart).

    A Redis over ``maxmemory`` with ``noeviction`` refuses every ``MULTI``, even
    of reads alone ("OOM command not allowed"), and that is when an operator
    opens the dashboard: the reads then run as a plain pipeline (each reply
    still right, the set of them no longer of one instant).
    """
    if not is_cluster(conn):
        try:
            with conn.pipeline(transaction=True) as pipe:
                reads(pipe)
                return list(pipe.execute(raise_on_error=raise_on_error))
        except redis.exceptions.OutOfMemoryError:
            pass
    with conn.pipeline(transaction=False) as pipe:
        reads(pipe)
        return list(pipe.execute(raise_on_error=raise_on_error))


def read_consumers(
    conn: redis.Redis, scripts: Scripts, keys: Keys, queues: list[str]
) -> list[ConsumerInfo]:
    """Consumers that sent a heartbeat lately, with the ids of the jobs they run.

    Heartbeats older than :data:`CONSUMER_WINDOW` are pruned; a consumer
    whose record expired (no beat for 30 s) is gone and not listed. Bounded
    whatever Redis holds: the newest :data:`~framework.defaults.MAX_LISTED_CONSUMERS`
    beats, :data:`CONSUMER_RECORD_BYTES` of each record,
    :data:`~framework.defaults.MAX_LISTED_ACTIVE` active jobs of each queue.
    """
    now_ms = server_ms(conn)  # the heartbeats' clock (framework/clock.py)

    def reads(pipe: Any) -> None:
        pipe.zremrangebyscore(keys.consumers, "-inf", now_ms - CONSUMER_WINDOW * 1000)
        pipe.zrevrange(keys.consumers, 0, defaults.MAX_LISTED_CONSUMERS - 1, withscores=True)

    try:
        _, beats = snapshot(conn, reads, raise_on_error=True)
    except redis.ResponseError as exc:  # the registry planted with another type: named
        raise storage_error(
            exc, "reading the live consumers", key=keys.consumers, wanted="zset", conn=conn
        ) from None
    if not beats:
        return []
    ids = [member.decode(errors="replace") for member, _ in beats]
    with conn.pipeline(transaction=False) as pipe:
        for consumer_id in ids:
            pipe.strlen(keys.consumer(consumer_id))
            pipe.getrange(keys.consumer(consumer_id), 0, CONSUMER_RECORD_BYTES - 1)
        for name in queues:
            pipe.zrange(keys.queue(name).active, 0, defaults.MAX_LISTED_ACTIVE - 1)
        replies = pipe.execute(raise_on_error=False)
    sizes, records = replies[0 : 2 * len(ids) : 2], replies[1 : 2 * len(ids) : 2]
    actives = replies[2 * len(ids) :]
    active_ids = [
        (name, job_id.decode(errors="replace"))
        for name, reply in zip(queues, actives, strict=True)
        if not isinstance(reply, Exception)
        for job_id in reply
    ]
    holders: dict[str, list[str]] = {}
    if active_ids:

        def build(pipe: Pipeline) -> None:
            for name, job_id in active_ids:
                key = keys.job(name, job_id)
                peek_field(scripts, pipe, key, "consumer", defaults.SHORT_FIELD_BYTES)

        replies = read(conn, scripts, build, transaction=False)
        for (_, job_id), reply in zip(active_ids, replies, strict=True):
            holder = record_of(reply).values.get("consumer")
            if holder is not None:
                holders.setdefault(holder.decode(errors="replace"), []).append(job_id)
    consumers = [
        _consumer_info(consumer_id, raw, size, score, holders.get(consumer_id, []))
        for consumer_id, raw, size, (_, score) in zip(ids, records, sizes, beats, strict=True)
        if size != 0
    ]
    return sorted(consumers, key=lambda c: (c.host, c.id))


# -- helpers ---------------------------------------------------------------------------------


def _first_minute(minutes: int, max_minutes: int, now: float) -> int:
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= max_minutes:
        raise JobActionError(
            f"minutes={minutes!r} is not allowed; use 1 to {max_minutes} "
            "(metrics are kept for [consumer] metrics_ttl seconds)"
        )
    current = int(now // 60)
    return current - minutes + 1


_COUNTS = ("completed", "failed", "retried")
"""The fields of a minute's counts hash: only they are read (HMGET), whatever it holds."""


def _queue_series(pipe: Any, q: QueueKeys, first: int, minutes: int) -> None:
    for minute in range(first, first + minutes):
        pipe.hmget(q.stats(minute), _COUNTS)
        pipe.lrange(q.samples(minute), 0, 2 * defaults.MAX_SAMPLES - 1)  # no more are kept


def _points(replies: list[Any], first: int, minutes: int) -> list[tuple[MetricPoint, list[float]]]:
    points = []
    for offset in range(minutes):
        counts, raw_samples = replies[2 * offset], replies[2 * offset + 1]
        if not isinstance(counts, list):
            counts = [None] * len(_COUNTS)  # a planted key of another type: no counts
        completed, failed, retried = counts
        raw_samples = raw_samples if isinstance(raw_samples, list) else []
        samples = sorted(_numbers(raw_samples))
        point = MetricPoint(
            minute=datetime.datetime.fromtimestamp((first + offset) * 60, datetime.UTC),
            completed=_count(completed),
            failed=_count(failed),
            retried=_count(retried),
            samples=len(samples),
            p50_ms=percentile(samples, 50),
            p95_ms=percentile(samples, 95),
            kept=any(count is not None for count in counts) or bool(raw_samples),
        )
        points.append((point, samples))
    return points


def _oldest_created(
    conn: redis.Redis, scripts: Scripts, q: QueueKeys, ids: list[str]
) -> float | None:
    """When the oldest of ``ids`` was enqueued (epoch ms): read from the id
    (:mod:`framework.ids`), or from the ``created`` field of a record of an older
    hueyard, whose id does not say."""
    created: list[float] = []
    older: list[str] = []
    for job_id in ids:
        ms = created_ms(job_id)
        if ms is None:
            older.append(job_id)
        else:
            created.append(ms)
    if older:

        def build(pipe: Pipeline) -> None:
            for job_id in older:
                peek_field(scripts, pipe, q.job(job_id), "created", defaults.SHORT_FIELD_BYTES)

        records = [record_of(reply) for reply in read(conn, scripts, build, transaction=False)]
        created += _numbers(record.values.get("created") for record in records)
    return min(created) if created else None


def _numbers(values: Iterable[Any]) -> list[float]:
    numbers = []
    for value in values:
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue  # a sample planted by something else than hueyard
        if math.isfinite(number):
            numbers.append(number)
    return numbers


def _count(value: bytes | None) -> int:
    try:
        return max(int(value or 0), 0)
    except (TypeError, ValueError):
        return 0


def _short(value: Any) -> str:
    """A name from a heartbeat: a string, at most :data:`NAME_CHARS` characters."""
    if not isinstance(value, str):
        return ""
    return value if len(value) <= NAME_CHARS else value[:NAME_CHARS] + "…"


def _consumer_info(
    consumer_id: str, raw: Any, size: Any, score: float, running: list[str]
) -> ConsumerInfo:
    beat = datetime.datetime.fromtimestamp(score / 1000, datetime.UTC)
    try:
        if isinstance(raw, Exception) or isinstance(size, Exception):
            raise TypeError(f"its key is not a string: {raw}")
        if size > len(raw):
            raise ValueError(f"it is {size:,} bytes long, more than a heartbeat ever is")
        data = orjson.loads(raw)  # no recursion: nested past 1,024 levels is an error
        if not isinstance(data, dict):
            raise TypeError(f"a JSON {type(data).__name__}, not an object")
        started = data.get("started")
        queues = data.get("queues")
        return ConsumerInfo(
            id=consumer_id[:NAME_CHARS],
            host=_short(data.get("host", "")),
            pid=_whole_or_none(data.get("pid")),
            queues=tuple(_short(name) for name in queues[:1000] if isinstance(name, str))
            if isinstance(queues, list)
            else (),
            worker_type=_short(data.get("worker_type", "")),
            workers=_whole_or_none(data.get("workers")) or 0,
            started=(
                datetime.datetime.fromtimestamp(started / 1000, datetime.UTC)
                if isinstance(started, int | float)
                else None
            ),
            last_heartbeat=beat,
            running=tuple(sorted(running)),
            abandoned=_whole_or_none(data.get("abandoned")) or 0,
            connections=_whole_or_none(data.get("connections")),
            max_connections=_whole_or_none(data.get("max_connections")),
            live=_live(data.get("live")),
        )
    except (ValueError, TypeError, OverflowError, OSError) as exc:
        return ConsumerInfo(
            id=consumer_id[:NAME_CHARS],
            host="",
            pid=None,
            queues=(),
            worker_type="",
            workers=0,
            started=None,
            last_heartbeat=beat,
            running=tuple(sorted(running)),
            problem=f"its heartbeat record is not hueyard's JSON: {exc}",
        )
