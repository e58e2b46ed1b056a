"""``/metrics`` in the Prometheus text format, from the read/act API.

A private :class:`~prometheus_client.CollectorRegistry` per dashboard (never
the process-global one), with one collector that reads everything at scrape
time: the scrape is the measurement, nothing is kept between scrapes.
Rates and percentiles cover the last :data:`WINDOW_MINUTES` minutes.

A schedule that never ticked (no tick noted in Redis yet, or its state
expired) has no ``hueyard_schedule_seconds_since_last_tick`` sample rather
than a made-up number or NaN: ``absent()`` finds it, and
``hueyard_schedule_overdue`` says whether that is a problem.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dashboard.state import DashboardState
from framework.health import check
from framework.redis_info import RedisInfo

__all__ = ["WINDOW_MINUTES", "scrape"]

WINDOW_MINUTES = 5
"""Minutes the throughput, failure rate and processing-time gauges cover."""

_STATES = ("waiting", "active", "delayed", "completed", "failed", "paused", "waiting-children")


def _redis_server(state: DashboardState) -> Iterator[Metric]:
    """Redis' memory, its limit, its clients and its eviction policy, from one ``INFO``
    (one try); nothing when ``INFO`` can not be read (an ACL, a proxy)."""
    reply = state.app.cache.server_info()
    if reply is None:
        return
    info = RedisInfo.parse(reply)
    gauges = (
        ("hueyard_redis_memory_used_bytes", "Bytes Redis has allocated (used_memory)",
         info.used_memory),
        ("hueyard_redis_memory_max_bytes", "Redis maxmemory in bytes; 0: no limit",
         info.maxmemory),
        ("hueyard_redis_connected_clients", "Client connections Redis has open, all clients",
         info.connected_clients),
    )  # fmt: skip
    for name, text, value in gauges:
        if value is not None:
            yield GaugeMetricFamily(name, text, value=float(value))
    if info.maxmemory_policy is not None:
        policy = GaugeMetricFamily(
            "hueyard_redis_maxmemory_policy",
            "1 for Redis' maxmemory-policy; any but noeviction can delete job data",
            labels=["policy"],
        )
        policy.add_metric([info.maxmemory_policy], 1.0)
        yield policy


class _JobsCollector(Collector):
    def __init__(self, state: DashboardState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        report = check(self.state.app, self.state.jobs, self.state.schedules)
        up = GaugeMetricFamily("hueyard_redis_up", "1 when Redis answers, else 0")
        up.add_metric([], 1.0 if report.redis_connected else 0.0)
        yield up
        healthy = GaugeMetricFamily(
            "hueyard_healthy", "1 when /health answers 200 (no [health] threshold crossed)"
        )
        healthy.add_metric([], 1.0 if report.healthy else 0.0)
        yield healthy
        if not report.redis_connected:
            return
        yield from _redis_server(self.state)
        if report.redis_error is not None:  # it answers but refuses reads (out of memory)
            return
        jobs = GaugeMetricFamily(
            "hueyard_jobs", "Jobs per queue and state", labels=["queue", "state"]
        )
        paused = GaugeMetricFamily(
            "hueyard_queue_paused", "1 when the queue is paused", labels=["queue"]
        )
        for name, counts in report.counts.items():
            for state in _STATES:
                jobs.add_metric([name, state], float(getattr(counts, state.replace("-", "_"))))
            paused.add_metric([name], 1.0 if counts.is_paused else 0.0)
        yield jobs
        yield paused
        live = self.state.jobs.live_consumers()[0]
        consumers = GaugeMetricFamily("hueyard_consumers", "Live consumer processes")
        consumers.add_metric([], float(len(live)))
        yield consumers
        abandoned = GaugeMetricFamily(
            "hueyard_abandoned_threads",
            "Worker threads a consumer gave up on: stuck in a job that timed out or was cancelled",
            labels=["consumer"],
        )
        connections = GaugeMetricFamily(
            "hueyard_redis_connections",
            "Redis connections a consumer's main process has open",
            labels=["consumer"],
        )
        for consumer in live:
            abandoned.add_metric([consumer.id], float(consumer.abandoned))
            if consumer.connections is not None:
                connections.add_metric([consumer.id], float(consumer.connections))
        yield abandoned
        yield connections
        yield from self._summaries(list(report.counts))
        yield from self._schedules()

    def _summaries(self, names: list[str]) -> Iterator[Metric]:
        window = f"over the last {WINDOW_MINUTES} minutes"
        throughput = GaugeMetricFamily(
            "hueyard_completed_per_minute", f"Jobs completed per minute {window}", labels=["queue"]
        )
        failure = GaugeMetricFamily(
            "hueyard_failure_ratio", f"Failed / finished jobs {window}", labels=["queue"]
        )
        timing = GaugeMetricFamily(
            "hueyard_processing_seconds",
            f"Processing time percentiles {window}",
            labels=["queue", "quantile"],
        )
        oldest = GaugeMetricFamily(
            "hueyard_oldest_waiting_seconds", "Age of the longest-waiting job", labels=["queue"]
        )
        for name in names:
            s = self.state.jobs.summary(name, WINDOW_MINUTES)
            throughput.add_metric([name], s.throughput_per_minute)
            if s.failure_rate is not None:
                failure.add_metric([name], s.failure_rate)
            for quantile, value in (("0.5", s.p50_ms), ("0.95", s.p95_ms), ("0.99", s.p99_ms)):
                if value is not None:
                    timing.add_metric([name, quantile], value / 1000)
            oldest.add_metric([name], s.oldest_waiting_age or 0.0)
        yield from (throughput, failure, timing, oldest)

    def _schedules(self) -> Iterator[Metric]:
        labels = ["schedule", "queue"]
        since = GaugeMetricFamily(
            "hueyard_schedule_seconds_since_last_tick",
            "Seconds since the schedule's newest tick accounted for (fired, or passed while "
            "paused); absent until it first ticks",
            labels=labels,
        )
        paused = GaugeMetricFamily(
            "hueyard_schedule_paused", "1 when the schedule is paused", labels=labels
        )
        overdue = GaugeMetricFamily(
            "hueyard_schedule_overdue",
            "1 when a due tick has gone unfired past the schedule's overdue_after "
            "(default: one period)",
            labels=labels,
        )
        now = self.state.schedules.now()  # the Redis server's clock, which schedules go by
        for info in self.state.schedules.list(now):
            key = [info.name, info.queue]
            if info.last_tick is not None:
                since.add_metric(key, max((now - info.last_tick).total_seconds(), 0.0))
            paused.add_metric(key, 1.0 if info.paused else 0.0)
            overdue.add_metric(key, 0.0 if info.overdue is None else 1.0)
        yield from (since, paused, overdue)


def scrape(state: DashboardState) -> tuple[bytes, str]:
    """The scrape's body and content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_JobsCollector(state))
    return generate_latest(registry), CONTENT_TYPE_LATEST
