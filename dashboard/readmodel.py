"""What the pages show, built from :class:`framework.jobs.Jobs`: small frozen dataclasses.

Like dramatiq_dashboard's ``interface.py``: templates get these and never
touch Redis. Everything here reads; :mod:`dashboard.actions` acts.
"""

from __future__ import annotations

from dataclasses import dataclass

from dashboard.charts import Chart, sparkline
from dashboard.state import DashboardState
from framework.cut import render
from framework.health import REDIS_DOWN, HealthReport, check
from framework.jobs import Cursor, JobInfo
from framework.metrics import ConsumerInfo
from framework.records import QueueCounts

__all__ = [
    "Overview",
    "QueueRow",
    "RedisStatus",
    "ScheduleNotice",
    "SearchResult",
    "overview",
    "queue_row",
    "redis_status",
    "schedule_notice",
    "search_payloads",
]

SPARK_MINUTES = 60


@dataclass(frozen=True)
class RedisStatus:
    connected: bool
    latency_ms: float | None = None
    version: str | None = None
    memory: str | None = None
    peak_memory: str | None = None
    clients: int | None = None
    uptime_days: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class QueueRow:
    name: str
    description: str
    counts: QueueCounts
    concurrency: int
    rate_limit: str | None
    consumers: int
    spark: Chart | None


@dataclass(frozen=True)
class Overview:
    redis: RedisStatus
    health: HealthReport
    rows: tuple[QueueRow, ...]
    consumers: tuple[ConsumerInfo, ...]
    consumers_error: str | None = None
    """Why the consumers could not be read (their registry of another type), if so."""


def redis_status(state: DashboardState) -> RedisStatus:
    """PING (fast, one try), then ``INFO`` for the version, memory and clients."""
    probe = state.app.cache.health()
    if not probe["connected"]:
        return RedisStatus(False, error=probe["error"])
    info = state.app.cache.server_info()
    if info is None:
        return RedisStatus(True, probe["latency_ms"], error="INFO failed")
    uptime = info.get("uptime_in_seconds")
    return RedisStatus(
        connected=True,
        latency_ms=probe["latency_ms"],
        version=str(info.get("redis_version", "?")),
        memory=str(info.get("used_memory_human", "?")),
        peak_memory=str(info.get("used_memory_peak_human", "?")),
        clients=int(info["connected_clients"]) if "connected_clients" in info else None,
        uptime_days=round(uptime / 86400, 1) if isinstance(uptime, int) else None,
    )


def _rate_limit(state: DashboardState, name: str) -> str | None:
    limit = state.app.queue(name).policy.rate_limit
    return f"{limit.max} / {limit.per:g} s" if limit else None


def queue_row(
    state: DashboardState,
    name: str,
    counts: QueueCounts,
    consumers: tuple[ConsumerInfo, ...],
    *,
    with_spark: bool = True,
) -> QueueRow:
    policy = state.app.queue(name).policy
    spark = sparkline(state.jobs.metrics(name, SPARK_MINUTES)) if with_spark else None
    return QueueRow(
        name=name,
        description=policy.description,
        counts=counts,
        concurrency=policy.concurrency,
        rate_limit=_rate_limit(state, name),
        consumers=sum(1 for c in consumers if name in c.queues),
        spark=spark,
    )


def overview(state: DashboardState) -> Overview:
    """Every queue with counts, policy, sparkline and consumers; Redis and health."""
    status = redis_status(state)
    if not status.connected:
        report = HealthReport(False, status.error, reasons=(REDIS_DOWN,))
        return Overview(status, report, (), ())
    report = check(state.app, state.jobs, state.schedules)
    live, unseen = state.jobs.live_consumers()
    consumers = report.consumers or tuple(live)
    rows = tuple(queue_row(state, name, c, consumers) for name, c in report.counts.items())
    error = None if unseen is None else state.app.masker.text(str(unseen))
    return Overview(status, report, rows, consumers, error)


@dataclass(frozen=True)
class SearchResult:
    """Jobs whose (masked) payload holds ``text``, from a scan of at most ``limit`` jobs."""

    queue: str
    state: str
    text: str
    matches: tuple[JobInfo, ...]
    searched: int
    """Distinct jobs whose payload was searched."""
    total: int
    """Jobs in the state at the last read (jobs may join or leave it while a search reads)."""
    limit: int
    complete: bool = False
    """The scan read to the end of the state (else it stopped at ``limit`` jobs or at
    ``max_matches`` matches)."""
    max_matches: int = 100


SEARCH_BATCH = 100
"""Jobs a search reads per round trip: with ``search_bytes`` of each, what it holds at once."""


def search_payloads(
    state: DashboardState,
    queue: str,
    job_state: str,
    text: str,
    *,
    max_matches: int = 100,
    batch: int = SEARCH_BATCH,
) -> SearchResult:
    """A bounded scan of the state, in its list's order, until ``search_limit`` jobs are read.

    It walks the state's sorted set with a cursor (:meth:`framework.jobs.Jobs.scan`),
    ``batch`` jobs a round trip, not by page number: jobs that complete while it
    reads do not shift it, so no job is listed or counted twice (one that leaves
    the state and comes back behind the cursor, failed again, is not searched
    again either), and ``searched`` is the number of distinct jobs searched.

    Each job is read with at most ``search_bytes`` bytes of each value, so a
    search holds at most ``batch`` such jobs and its matches, whatever Redis
    holds; text past those bytes is not searched. Secret-named fields are
    masked before matching, so a search can not be used to guess a secret.
    """
    needle = text.casefold()
    limit = state.search_limit
    matches: list[JobInfo] = []
    seen: set[str] = set()
    total = 0
    cursor: Cursor | None = None
    complete = False
    while len(seen) < limit and len(matches) < max_matches:
        scan = state.jobs.scan(
            queue,
            job_state,
            after=cursor,
            count=min(batch, limit),
            field_bytes=state.search_bytes,
        )
        total = scan.total
        stopped = False
        for job in scan.items:
            if len(seen) >= limit or len(matches) >= max_matches:
                stopped = True
                break
            if job.id in seen:
                continue
            seen.add(job.id)
            haystack = render(job.payload).text  # masked; a cut payload: the start read
            if needle in haystack.casefold():
                matches.append(job)
        if scan.next is None:
            complete = not stopped
            break
        cursor = scan.next
    return SearchResult(
        queue, job_state, text, tuple(matches), len(seen), total, limit, complete, max_matches
    )


@dataclass(frozen=True)
class ScheduleNotice:
    """What a schedule action did, said once on the Schedules page."""

    text: str
    name: str
    queue: str
    job_id: str | None = None
    """The job Run now enqueued: the page names it, linked to its page on ``queue``."""


_SCHEDULE_DONE = {
    "run": "Schedule {name} ran now.",
    "pause": "Schedule {name} paused: its ticks are not enqueued until it is resumed.",
    "pause-none": "Schedule {name} was paused already.",
    "resume": "Schedule {name} resumed: it fires from its next tick.",
    "resume-none": "Schedule {name} was not paused.",
}


def schedule_notice(
    state: DashboardState, done: str, name: str, job_id: str | None
) -> ScheduleNotice | None:
    """The notice for ``?done=<outcome>&schedule=<name>[&job=<id>]``; None unless both the
    outcome and the schedule are known."""
    schedule = state.app.schedules.get(name)
    if done not in _SCHEDULE_DONE or schedule is None:
        return None
    text = _SCHEDULE_DONE[done].format(name=name)
    job = ((job_id or "")[:100] or None) if done == "run" else None
    return ScheduleNotice(text, name, schedule.queue, job)
