"""Is the job system healthy? What ``/health``, the queue health API and ``/metrics`` share.

The dashboard serves those three endpoints; the check itself needs no Flask.

:func:`check` asks Redis once with a fast probe (no reconnection loop), so a
Redis that is down answers in about a second, not after every reconnection
try. With Redis up it reads every queue's counts in one round trip, then only
what the configured thresholds of ``[health]`` need:

- ``max_waiting``: a queue with more waiting jobs;
- ``max_oldest_waiting_seconds``: a queue whose longest-waiting job waited longer;
- ``max_failure_rate``: a queue that failed more than this share of its jobs
  over the last ``failure_window_minutes``;
- ``require_consumer`` (on by default): a queue with waiting jobs and no live
  consumer serving it;
- ``check_schedules`` (on by default): a schedule whose oldest due tick has
  gone unfired past its ``overdue_after`` (default: one period), as
  :attr:`framework.ticks.ScheduleInfo.overdue` says; a paused one never is.

Each crossed threshold is one reason, in words an operator can act on. A
Redis that answers but refuses the reads (out of memory with ``noeviction``
refuses transactions; a key of the wrong type) is one reason too,
:data:`REDIS_REFUSED`, never an exception; so is a Redis that runs no Lua script
(EVAL / EVALSHA renamed or forbidden), :data:`REDIS_SCRIPTS`: one read-only
EVALSHA at most every :data:`~framework.defaults.SCRIPTS_CHECK_EVERY` seconds.
The reasons name no host, port, URL or schedule (they may be shown to anyone:
``/health`` is open): the overdue schedules are one reason that counts them.
:attr:`HealthReport.detailed_reasons` spells out the Redis error and names
each overdue schedule, for those allowed to see it.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from framework import defaults
from framework.application import Hueyard
from framework.errors import RedisUnavailableError, StorageError
from framework.jobs import Jobs
from framework.metrics import ConsumerInfo
from framework.records import QueueCounts
from framework.redis_info import RedisInfo
from framework.ticks import Schedules

__all__ = [
    "REDIS_DOWN",
    "REDIS_FULL",
    "REDIS_REFUSED",
    "REDIS_SCRIPTS",
    "HealthReport",
    "check",
    "iso_timestamp",
]

_TOTALS = ("waiting", "active", "completed", "failed", "delayed")

REDIS_DOWN = "redis: not connected"
"""The reason when Redis does not answer; the error (host, port) only in the details."""

REDIS_FULL = (
    "redis: out of memory (used_memory at maxmemory, policy noeviction): it refuses "
    "enqueues, pauses and consumer heartbeats; raise maxmemory or free memory (hueyard doctor)"
)
"""The reason when Redis is full and may not evict: the writes that add data are refused;
claims, releases, retries and clean (whose first write removes data) still work."""

REDIS_SCRIPTS = (
    "redis: runs no Lua scripts (EVAL / EVALSHA renamed, removed or forbidden): every "
    "enqueue and job change is refused (hueyard doctor says how to fix it)"
)
"""The reason when Redis refuses to run scripts; its error only in the details."""

REDIS_REFUSED = "redis: refused the health check's reads"
"""The reason when Redis answers with an error (out of memory, a planted key); the
error only in the details."""


def iso_timestamp(now: datetime.datetime | None = None) -> str:
    """UTC, milliseconds, ``Z``: what JavaScript's ``toISOString()`` gives."""
    now = now or datetime.datetime.now(datetime.UTC)
    return now.astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class HealthReport:
    """The outcome of one :func:`check`."""

    redis_connected: bool
    redis_error: str | None
    counts: dict[str, QueueCounts] = field(default_factory=dict)
    consumers: tuple[ConsumerInfo, ...] = ()
    reasons: tuple[str, ...] = ()
    timestamp: str = field(default_factory=iso_timestamp)
    details: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Reasons in full, for those allowed to see internals: a reason of :attr:`reasons`
    -> the lines that replace it (the overdue schedules, one line each)."""

    @property
    def healthy(self) -> bool:
        return self.redis_connected and not self.reasons

    @property
    def detailed_reasons(self) -> tuple[str, ...]:
        """The reasons, with the Redis error (it may name the host and port) spelled out
        and each overdue schedule named."""
        lines: list[str] = []
        for reason in self.reasons:
            if reason in (REDIS_DOWN, REDIS_REFUSED) and self.redis_error is not None:
                lines.append(f"{reason} ({self.redis_error})")
            else:
                lines += self.details.get(reason, (reason,))
        return tuple(lines)

    def totals(self) -> dict[str, int]:
        return {name: sum(getattr(c, name) for c in self.counts.values()) for name in _TOTALS}

    def queues_json(self) -> dict[str, dict[str, object]]:
        """``data.queues`` of ``/api/v1/queues/health``: exactly the spec's fields."""
        return {
            name: {
                "name": name,
                "waiting": c.waiting,
                "active": c.active,
                "completed": c.completed,
                "failed": c.failed,
                "delayed": c.delayed,
                "isPaused": c.is_paused,
            }
            for name, c in self.counts.items()
        }


def check(app: Hueyard, jobs: Jobs, schedules: Schedules | None = None) -> HealthReport:
    """Probe Redis, read the counts, and list every threshold of ``[health]`` crossed.

    ``schedules`` reads the schedules' state (default: a new :class:`Schedules` of ``app``).
    """
    probe = app.cache.health()
    if not probe["connected"]:
        error = probe["error"] or "no answer"
        return HealthReport(False, error, reasons=(REDIS_DOWN,))
    try:
        counts = jobs.counts_all()
        settings = app.settings.health
        reasons: list[str] = []
        details: dict[str, tuple[str, ...]] = {}
        refusal = jobs.refused_scripts(max_age=defaults.SCRIPTS_CHECK_EVERY)
        if refusal is not None:
            reasons.append(REDIS_SCRIPTS)
            details[REDIS_SCRIPTS] = (f"{REDIS_SCRIPTS} ({refusal})",)
        consumers: list[ConsumerInfo] = []
        unseen = None
        if settings.require_consumer:
            consumers, unseen = jobs.live_consumers()
        if unseen is not None:
            reasons.append(
                f"consumers: key {unseen.key} is not of the type hueyard keeps there, so no "
                "consumer is seen and their heartbeats fail (hueyard doctor says what to do)"
            )
        if _full(app):
            reasons.append(REDIS_FULL)
        for name, c in counts.items():
            reasons += _queue_reasons(app, jobs, name, c, None if unseen else consumers)
        if settings.check_schedules and app.schedules:
            overdue = _overdue_schedules(app, schedules or Schedules(app))
            if overdue:
                reason = (
                    f"schedules: {len(overdue)} overdue, a due tick not enqueued in time "
                    "(sign in to see which, or run: hueyard schedules)"
                )
                reasons.append(reason)
                details[reason] = overdue
    except RedisUnavailableError as exc:
        return HealthReport(False, str(exc), reasons=(REDIS_DOWN,))
    except StorageError as exc:  # Redis answers, but refuses: out of memory, a planted key
        return HealthReport(True, str(exc), reasons=(REDIS_REFUSED,))
    return HealthReport(True, None, counts, tuple(consumers), tuple(reasons), details=details)


def _overdue_schedules(app: Hueyard, schedules: Schedules) -> tuple[str, ...]:
    """One line per overdue schedule, naming it and its queue (by the Redis server's clock,
    which the schedules go by)."""
    now = schedules.now()
    lines = []
    for info in schedules.list(now):
        if info.overdue is None:
            continue
        schedule = app.schedules[info.name]
        why = "overdue_after" if schedule.overdue_after is not None else "one period"
        lines.append(
            f"schedule {info.name}: a tick due {info.overdue:.0f} s ago is not enqueued yet "
            f"(overdue after {schedule.overdue_limit(now):g} s, {why}); is a consumer of "
            f"queue {info.queue} running?"
        )
    return tuple(lines)


def _full(app: Hueyard) -> bool:
    """Whether Redis is at its ``maxmemory`` with ``noeviction`` (one INFO, one try)."""
    raw = app.cache.server_info()
    if raw is None:
        return False
    info = RedisInfo.parse(raw)
    ratio = info.memory_ratio
    return ratio is not None and ratio >= 1 and not info.may_evict


def _queue_reasons(
    app: Hueyard,
    jobs: Jobs,
    name: str,
    counts: QueueCounts,
    consumers: list[ConsumerInfo] | None,
) -> list[str]:
    """``consumers``: None when they can not be read (no "no live consumer" reason then)."""
    settings = app.settings.health
    reasons = counts.unreadable_reasons()
    if settings.max_waiting is not None and counts.waiting > settings.max_waiting:
        reasons.append(
            f"queue {name}: {counts.waiting} jobs waiting (max_waiting = {settings.max_waiting})"
        )
    if (
        settings.require_consumer
        and consumers is not None
        and counts.waiting
        and not any(name in consumer.queues for consumer in consumers)
    ):
        reasons.append(
            f"queue {name}: {counts.waiting} jobs waiting and no live consumer serves it "
            "(start one: huey_consumer framework.app)"
        )
    oldest_limit, rate_limit = settings.max_oldest_waiting_seconds, settings.max_failure_rate
    if oldest_limit is None and rate_limit is None:
        return reasons
    window = min(settings.failure_window_minutes, max(app.settings.consumer.metrics_ttl // 60, 1))
    summary = jobs.summary(name, minutes=window)
    age = summary.oldest_waiting_age
    if oldest_limit is not None and counts.waiting and age is not None and age > oldest_limit:
        reasons.append(
            f"queue {name}: the oldest waiting job has waited {age:.0f} s "
            f"(max_oldest_waiting_seconds = {oldest_limit:g})"
        )
    rate = summary.failure_rate
    if rate_limit is not None and rate is not None and rate > rate_limit:
        reasons.append(
            f"queue {name}: {rate:.0%} of the jobs finished in the last {window} min failed "
            f"({summary.failed} of {summary.failed + summary.completed}; "
            f"max_failure_rate = {rate_limit:g})"
        )
    return reasons
