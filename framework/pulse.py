"""What holds one queue back right now: its pause, its rate-limit window, its next due
delayed job and its longest-running job. Reads only; two round trips.

Use it through :meth:`framework.jobs.Jobs.pulse`::

    pulse = jobs.pulse("messages")
    pulse.limited_until        # when the rate limit lets the next job start, or None
    pulse.next_due             # when the earliest delayed job is due, or None
    pulse.oldest_running       # RunningJob(id, started, consumer), or None

Times are read on the Redis server's clock (``TIME``), the clock the scripts
stamp every score with, so the rate-limit window is judged as the ``claim``
script judges it: at most ``max`` claims stamped in the last ``per`` seconds,
room again ``per`` seconds after the oldest of them (``framework/lua/_lib.lua``
``take``). A value planted by something else is skipped, never a crash.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from typing import Any

import redis

from framework import defaults
from framework.clients import pipeline
from framework.keys import QueueKeys
from framework.settings import RateLimit

__all__ = ["QueuePulse", "RunningJob", "read_pulse"]


@dataclass(frozen=True)
class RunningJob:
    """One active job: its id, when its current run started and the consumer that runs it."""

    id: str
    started: datetime.datetime | None
    consumer: str | None


@dataclass(frozen=True)
class QueuePulse:
    """One queue, at ``now`` (the Redis server's clock)."""

    queue: str
    now: datetime.datetime
    paused_since: datetime.datetime | None
    """When the queue was paused; None while it runs (or a pause without a time)."""
    window_starts: int
    """Jobs started within the last ``rate_limit.per`` seconds (0 without a rate limit)."""
    limited_until: datetime.datetime | None
    """When the window has room for the next start, while it has none; else None."""
    next_due: datetime.datetime | None
    """When the earliest delayed job is due; None without delayed jobs."""
    due: int
    """Delayed jobs already due (waiting for a consumer to promote them)."""
    oldest_running: RunningJob | None
    """The active job that started first (of the first :data:`~framework.defaults.BULK_BATCH`)."""


def read_pulse(
    conn: redis.Redis, q: QueueKeys, queue: str, rate_limit: RateLimit | None
) -> QueuePulse:
    """Read :class:`QueuePulse` of ``queue``: two pipelined round trips."""
    with pipeline(conn, transaction=False) as pipe:
        pipe.time()
        pipe.get(q.paused)
        pipe.zrange(q.delayed, 0, 0, withscores=True)
        pipe.zrange(q.active, 0, defaults.BULK_BATCH - 1)
        clock, paused, first_delayed, active = pipe.execute(raise_on_error=False)
    if isinstance(clock, Exception):
        raise clock
    seconds, micros = clock
    now_ms = seconds * 1000 + micros // 1000
    active_ids = [job_id.decode() for job_id in _list(active)]
    with pipeline(conn, transaction=False) as pipe:
        pipe.zcount(q.delayed, "-inf", now_ms)
        if rate_limit is not None:
            since = f"({now_ms - rate_limit.per * 1000}"
            pipe.zcount(q.limiter, since, "+inf")
            pipe.zrangebyscore(q.limiter, since, "+inf", start=0, num=1, withscores=True)
        for job_id in active_ids:
            pipe.hmget(q.job(job_id), ["started", "consumer"])
        replies = pipe.execute(raise_on_error=False)
    due = replies.pop(0)
    starts, limited_until = 0, None
    if rate_limit is not None:
        count, oldest = replies.pop(0), replies.pop(0)
        starts = count if isinstance(count, int) else 0
        oldest_ms = _first_score(oldest)
        if starts >= rate_limit.max and oldest_ms is not None:
            limited_until = _moment(oldest_ms + rate_limit.per * 1000)
    return QueuePulse(
        queue=queue,
        now=_moment(now_ms) or datetime.datetime.now(datetime.UTC),
        paused_since=_moment(_number(paused)) if paused is not None else None,
        window_starts=starts,
        limited_until=limited_until,
        next_due=_moment(_first_score(first_delayed)),
        due=due if isinstance(due, int) else 0,
        oldest_running=_oldest(active_ids, replies),
    )


def _oldest(ids: list[str], records: list[Any]) -> RunningJob | None:
    running = []
    for job_id, record in zip(ids, records, strict=True):
        started, consumer = record if isinstance(record, list) else (None, None)
        running.append(
            RunningJob(
                id=job_id,
                started=_moment(_number(started)),
                consumer=consumer.decode(errors="replace") if isinstance(consumer, bytes) else None,
            )
        )
    if not running:
        return None
    never = datetime.datetime.max.replace(tzinfo=datetime.UTC)
    return min(running, key=lambda job: job.started or never)


def _list(reply: Any) -> list[Any]:
    return reply if isinstance(reply, list) else []


def _first_score(reply: Any) -> float | None:
    pairs = _list(reply)
    return _number(pairs[0][1]) if pairs else None


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _moment(ms: float | None) -> datetime.datetime | None:
    if ms is None:
        return None
    try:
        return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return None
