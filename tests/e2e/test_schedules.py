"""Schedules under real ``huey_consumer`` processes and the wall clock.

Each tick runs once however many consumers fire it; a tick missed while no
consumer ran is fired once (``catch_up = "last"``) or skipped (``"none"``).
"""

from __future__ import annotations

import datetime
import time
from collections import Counter

import pytest

from tests.e2e.conftest import E2E, TICK, wait_until, wrong_clock

pytestmark = pytest.mark.e2e

SCHEDULE = """
[schedules.every_second]
handler = "gamma.tick"
every = 1
tick_field = "tick"
catch_up = "{catch_up}"
"""
ENV = {"HUEYARD_QUEUES": "gamma"}
ON_TIME = max(0.5, 2 * TICK)
"""framework.schedules.grace for ``every = 1``: a tick fired later than this was caught up."""


def fired(e2e: E2E) -> list[datetime.datetime]:
    """The tick of every run of the schedule's jobs so far."""
    return [datetime.datetime.fromisoformat(entry["tag"]) for entry in e2e.records.starts()]


def created_of(e2e: E2E) -> dict[datetime.datetime, datetime.datetime]:
    """Each run's tick -> when its job was enqueued."""
    out = {}
    for entry in e2e.records.starts():
        job = e2e.job(entry["id"])
        assert job is not None and job.created is not None
        out[datetime.datetime.fromisoformat(entry["tag"])] = job.created
    return out


def test_three_consumers_fire_each_tick_of_a_one_second_schedule_once(e2e: E2E) -> None:
    # Given three consumers of the schedule's queue
    config = e2e.write_config("s.toml", schedules=SCHEDULE.format(catch_up="last"))
    for consumer in [e2e.start_consumer(env=ENV, config=config, wait=False) for _ in range(3)]:
        consumer.wait_ready()

    # When they run for 6 s
    start = datetime.datetime.now(datetime.UTC)
    time.sleep(6.5)
    end = start + datetime.timedelta(seconds=6)
    time.sleep(1)  # the last ticks' jobs run

    # Then each tick of those 6 s ran once: 6 jobs (±1 at the edges), no tick twice
    ticks = fired(e2e)
    assert [tick for tick, n in Counter(ticks).items() if n > 1] == []
    inside = [tick for tick in ticks if start < tick <= end]
    assert 5 <= len(inside) <= 7, sorted(inside)


@pytest.mark.parametrize(("catch_up", "late_jobs"), [("last", 1), ("none", 0)])
def test_ticks_missed_while_every_consumer_was_down_are_caught_up_once_or_skipped(
    e2e: E2E, catch_up: str, late_jobs: int
) -> None:
    # Given a schedule that has fired for a while
    config = e2e.write_config("s.toml", schedules=SCHEDULE.format(catch_up=catch_up))
    consumers = [e2e.start_consumer(env=ENV, config=config, wait=False) for _ in range(2)]
    for consumer in consumers:
        consumer.wait_ready()
    e2e.records.wait_for(2)

    # When every consumer is killed for 2.5 s (at least two ticks are missed: each is
    # more than ON_TIME old when a consumer is back), then one comes back
    for consumer in consumers:
        consumer.kill()
    killed_at = datetime.datetime.now(datetime.UTC)
    before = len(fired(e2e))
    time.sleep(2.5)
    e2e.start_consumer(env=ENV, config=config)
    wait_until(lambda: len(fired(e2e)) >= before + 3, timeout=15, what="ticks after the restart")
    time.sleep(1)  # a second catch-up, were there one, would have run

    # Then no tick ran twice, and of the ticks since the kill exactly `late_jobs` were
    # enqueued late (caught up). (Before the kill a loaded machine may have caught up a
    # tick its consumers, just started, were late for: right, and not what this tests.)
    created = created_of(e2e)
    assert [tick for tick, n in Counter(fired(e2e)).items() if n > 1] == []
    late = [
        tick
        for tick, at in created.items()
        if tick > killed_at and (at - tick).total_seconds() >= ON_TIME
    ]
    assert len(late) == late_jobs, {t.isoformat(): c.isoformat() for t, c in created.items()}


def test_consumers_whose_clocks_are_an_hour_off_fire_ticks_by_the_redis_servers_clock(
    e2e: E2E,
) -> None:
    # Given two consumers of the schedule's queue whose hosts' clocks are wrong, one an
    # hour ahead and one an hour behind (libfaketime; the Redis server's clock is right)
    config = e2e.write_config("s.toml", schedules=SCHEDULE.format(catch_up="last"))
    start = datetime.datetime.now(datetime.UTC)
    for offset in ("+1h", "-1h"):
        e2e.start_consumer(env={**ENV, **wrong_clock(offset)}, config=config)

    # When they have run until three ticks' jobs started
    e2e.records.wait_for(3, timeout=10)
    end = datetime.datetime.now(datetime.UTC)

    # Then the ticks they fired are the real seconds, each once: before, the one an hour
    # ahead fired the ticks of its clock, an hour early, and the other none
    ticks = fired(e2e)
    assert [tick for tick, n in Counter(ticks).items() if n > 1] == []
    assert all(start - datetime.timedelta(seconds=2) <= tick <= end for tick in ticks), [
        tick.isoformat() for tick in ticks
    ]
