"""The analytics snapshots the CRM's schedules enqueue: the job system's own counts,
read from real Redis (per-minute metrics and the stored daily records)."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
import redis

from framework.application import Hueyard
from framework.execution import QueueHuey
from framework.handlers import HandlerRegistry, handler
from pipelines import analytics
from pipelines.analytics import AnalyticsSnapshot, daily_key, job_counts, legacy_daily_key
from tests.conftest import AppFactory

UTC = datetime.UTC
CONFIG = """
[consumer]
metrics_ttl = {ttl}

[queues.work]
attempts = 1

[queues.other]
"""


@pytest.fixture
def make(make_app: AppFactory) -> Any:
    def build(ttl: int = 90000) -> Hueyard:
        registry = HandlerRegistry()

        @handler("work", registry=registry)
        def ok(payload: dict[str, Any]) -> None: ...

        @handler("work", registry=registry)
        def boom(payload: dict[str, Any]) -> None:
            raise ValueError("no")

        return make_app(CONFIG.format(ttl=ttl), registry, prefix="an")

    return build


def run_all(app: Hueyard, queue: str) -> None:
    huey: QueueHuey = app.queue(queue).huey
    huey.storage.read_timeout = 0.1  # type: ignore[attr-defined]
    while (task := huey.dequeue()) is not None:
        huey.execute(task)


def snapshot(app: Hueyard, now: datetime.datetime | None = None, **payload: Any) -> dict[str, Any]:
    return job_counts(
        app, AnalyticsSnapshot.model_validate(payload), now or datetime.datetime.now(UTC)
    )


def counted_at(app: Hueyard, queue: str, when: datetime.datetime) -> None:
    """What a job finishing at ``when`` leaves: its minute's metrics hash (expiring)."""
    conn = redis.Redis(connection_pool=app.pool)
    stats = app.keys.queue(queue).stats(int(when.timestamp() // 60))
    conn.hincrby(stats, "completed", 1)
    conn.expire(stats, app.settings.consumer.metrics_ttl)


def test_a_daily_snapshot_counts_the_jobs_each_queue_completed_and_failed_that_day(
    make: Any,
) -> None:
    # Given 3 jobs completed and 2 failed on "work" today
    app = make()
    for n in range(3):
        app.enqueue("work", "ok", {"n": n})
    for n in range(2):
        app.enqueue("work", "boom", {"n": n})
    run_all(app, "work")
    today = datetime.datetime.now(UTC).date()

    # When today's snapshot is taken (the day is not over)
    result = snapshot(app, period="daily", date=today.isoformat())

    # Then it has the counts of every queue, and says the day was not complete
    assert result["source"] == "jobs"
    assert result["window"] == {"start": today.isoformat(), "end": today.isoformat()}
    assert result["queues"]["work"] == {"completed": 3, "failed": 2, "retried": 0}
    assert result["queues"]["other"] == {"completed": 0, "failed": 0, "retried": 0}
    assert result["total"] == {"completed": 3, "failed": 2, "retried": 0}
    assert result["coverage"]["complete"] is False
    # and an incomplete day is not stored for the weekly and monthly snapshots
    conn = redis.Redis(connection_pool=app.pool)
    assert conn.exists(app.keys.cache(daily_key(today))) == 0


def test_a_complete_day_is_stored_for_a_bounded_time(make: Any) -> None:
    # Given per-minute metrics kept two days (yesterday is wholly within them), and a job
    # that finished before yesterday began: the metrics were kept since, so the minutes
    # without a key were quiet, not lost
    app = make(ttl=172800)
    now = datetime.datetime.now(UTC)
    tick = datetime.datetime.combine(now.date(), datetime.time(0, 5), UTC)
    counted_at(app, "other", tick - datetime.timedelta(days=1, minutes=30))

    # When the daily schedule's tick (00:05 today) runs: without a date, it covers yesterday
    result = snapshot(app, now=now, period="daily", tick=tick.isoformat())

    # Then yesterday's numbers are complete and stored, with an expiry
    yesterday = now.date() - datetime.timedelta(days=1)
    assert result["date"] == yesterday.isoformat()
    assert result["coverage"] == {"minutes": 1440, "minutes_read": 1440, "complete": True}
    conn = redis.Redis(connection_pool=app.pool)
    key = app.keys.cache(daily_key(yesterday, "UTC"))
    assert key.endswith(f"analytics:daily:UTC:{yesterday.isoformat()}")
    stored = json.loads(conn.get(key))  # type: ignore[arg-type]
    assert stored["queues"] == result["queues"]
    assert stored["zone"] == "UTC"
    assert 0 < conn.ttl(key) <= analytics.KEEP_DAILY


def test_a_day_with_no_metrics_at_all_claims_no_minutes_and_is_not_stored(make: Any) -> None:
    # Given a Redis with no metrics at all (just emptied: FLUSHDB, or a new server)
    app = make(ttl=172800)
    now = datetime.datetime.now(UTC)
    tick = datetime.datetime.combine(now.date(), datetime.time(0, 5), UTC)

    # When yesterday's snapshot runs
    result = snapshot(app, now=now, period="daily", tick=tick.isoformat())

    # Then it read nothing, says so, and stores nothing the weekly one would take as final
    assert result["coverage"] == {"minutes": 1440, "minutes_read": 0, "complete": False}
    assert result["total"] == {"completed": 0, "failed": 0, "retried": 0}
    conn = redis.Redis(connection_pool=app.pool)
    yesterday = now.date() - datetime.timedelta(days=1)
    assert conn.exists(app.keys.cache(daily_key(yesterday, "UTC"))) == 0

    # And that run marked the metrics as kept from then on: a later snapshot of today
    # reads the minutes after it only (at most the one the clock has moved into since)
    later = snapshot(app, now=now, period="daily", date=now.date().isoformat())
    assert later["coverage"]["minutes_read"] <= 1
    assert conn.ttl(app.keys.cache(analytics.OBSERVED_KEY)) > 0


def test_metrics_that_start_during_the_day_count_from_their_first_minute(make: Any) -> None:
    # Given metrics kept from 06:00 yesterday on (everything before was flushed)
    app = make(ttl=172800)
    now = datetime.datetime.now(UTC)
    midnight = datetime.datetime.combine(now.date(), datetime.time(), UTC)
    counted_at(app, "work", midnight - datetime.timedelta(hours=18))

    tick = midnight + datetime.timedelta(minutes=5)
    result = snapshot(app, now=now, period="daily", tick=tick.isoformat())

    # Then the day's 18 hours from then are read, the 6 before are not: not complete
    assert result["coverage"] == {"minutes": 1440, "minutes_read": 18 * 60, "complete": False}
    assert result["queues"]["work"]["completed"] == 1


def test_a_day_older_than_the_kept_metrics_is_reported_partial_not_complete(make: Any) -> None:
    app = make(ttl=90000)
    two_days_ago = datetime.datetime.now(UTC).date() - datetime.timedelta(days=2)

    result = snapshot(app, period="daily", date=two_days_ago.isoformat())

    assert result["coverage"]["complete"] is False
    assert result["coverage"]["minutes_read"] < 1440


def test_a_weekly_snapshot_adds_up_the_stored_days_and_names_the_missing_ones(
    make: Any,
) -> None:
    # Given daily records for Monday and Wednesday of a week, and garbage for Thursday
    app = make()
    conn = redis.Redis(connection_pool=app.pool)
    monday = datetime.date(2025, 11, 3)

    def store(day: datetime.date, value: str) -> None:
        conn.set(app.keys.cache(daily_key(day)), value, ex=60)

    store(monday, json.dumps({"queues": {"work": {"completed": 5, "failed": 1, "retried": 2}}}))
    store(
        monday + datetime.timedelta(days=2),
        json.dumps({"queues": {"work": {"completed": 7}, "other": {"failed": 4}}}),
    )
    store(monday + datetime.timedelta(days=3), "\xff not json")

    # When the weekly schedule ticks on the next Monday
    tick = datetime.datetime(2025, 11, 10, 0, 15, tzinfo=UTC)
    result = snapshot(app, period="weekly", tick=tick.isoformat())

    # Then the week Monday..Sunday is summed, and the days without a record are named
    assert result["window"] == {"start": "2025-11-03", "end": "2025-11-09"}
    assert result["queues"]["work"] == {"completed": 12, "failed": 1, "retried": 2}
    assert result["queues"]["other"] == {"completed": 0, "failed": 4, "retried": 0}
    assert result["coverage"]["days_found"] == 2
    assert result["coverage"]["missing"] == [
        "2025-11-04", "2025-11-06", "2025-11-07", "2025-11-08", "2025-11-09",
    ]  # fmt: skip
    assert result["coverage"]["complete"] is False


def test_a_monthly_snapshot_on_the_first_covers_the_month_before(make: Any) -> None:
    app = make()
    tick = datetime.datetime(2024, 3, 1, 0, 25, tzinfo=UTC)

    result = snapshot(app, period="monthly", tick=tick.isoformat())

    assert result["window"] == {"start": "2024-02-01", "end": "2024-02-29"}
    assert result["coverage"]["days"] == 29
    assert result["coverage"]["days_found"] == 0


def test_each_zone_has_its_own_daily_records_and_sums_only_its_own(make: Any) -> None:
    # Given a week's Monday stored for UTC and for Chicago (other hours, other counts), and
    # the Tuesday stored by hueyard 0.1.0 under its zone-less key
    app = make()
    conn = redis.Redis(connection_pool=app.pool)
    monday = datetime.date(2025, 11, 3)

    def record(zone: str | None, completed: int) -> str:
        queues = {"work": {"completed": completed, "failed": 0, "retried": 0}}
        return json.dumps({"queues": queues} | ({"zone": zone} if zone else {}))

    conn.set(app.keys.cache(daily_key(monday, "UTC")), record("UTC", 5), ex=60)
    conn.set(
        app.keys.cache(daily_key(monday, "America/Chicago")), record("America/Chicago", 7), ex=60
    )
    tuesday = monday + datetime.timedelta(days=1)
    conn.set(app.keys.cache(legacy_daily_key(tuesday)), record(None, 11), ex=60)
    # and a record of another zone planted under UTC's key (never summed as UTC's)
    wednesday = monday + datetime.timedelta(days=2)
    conn.set(app.keys.cache(daily_key(wednesday, "UTC")), record("Asia/Tokyo", 13), ex=60)

    # When each zone's week is summed
    utc = snapshot(app, period="weekly", date="2025-11-05")
    chicago = snapshot(app, period="weekly", date="2025-11-05", timezone="America/Chicago")

    # Then each adds up its own days: UTC reads the old zone-less record as its own
    assert utc["queues"]["work"]["completed"] == 5 + 11
    assert utc["coverage"]["days_found"] == 2
    assert "2025-11-05" in utc["coverage"]["missing"]
    assert chicago["queues"]["work"]["completed"] == 7
    assert chicago["coverage"]["missing"][0] == "2025-11-04"


def test_the_window_follows_the_payloads_time_zone(make: Any) -> None:
    app = make()
    # 23:30 UTC on Nov 9 is already Monday Nov 10 in Berlin: last week there is Nov 3..9
    tick = datetime.datetime(2025, 11, 9, 23, 30, tzinfo=UTC)

    berlin = snapshot(app, period="weekly", tick=tick.isoformat(), timezone="Europe/Berlin")
    utc = snapshot(app, period="weekly", tick=tick.isoformat())

    assert berlin["window"] == {"start": "2025-11-03", "end": "2025-11-09"}
    assert utc["window"] == {"start": "2025-10-27", "end": "2025-11-02"}
