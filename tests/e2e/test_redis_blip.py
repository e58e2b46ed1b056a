"""Redis goes away for longer than the reconnection budget and less than a lease.

Every job whose handler finished while Redis was away keeps its outcome: the
worker stores it when Redis is back. No job runs twice, none stalls, and the
consumer's log tells the outage in a few lines, without a traceback.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.e2e.conftest import E2E, wait_until, world_on
from tests.integration.redis_server import RedisServer

pytestmark = pytest.mark.e2e

LEASE = 12.0
OUTAGE = 6.0
"""Seconds Redis is away: more than the reconnection budget (about 2.75 s), less than a lease."""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private Redis that keeps its data across a restart (an append-only file)."""
    data = tmp_path / "redis"
    data.mkdir()
    with RedisServer(
        None, "--appendonly", "yes", "--appendfsync", "always", "--dir", str(data)
    ) as private:
        yield private


@pytest.fixture
def blip(tmp_path: Path, server: RedisServer) -> Iterator[E2E]:
    conn = server.client()
    with world_on(tmp_path, server.url, conn, lease=LEASE) as world:
        yield world
    conn.close()


def test_outcomes_survive_a_redis_outage_no_job_runs_twice_none_stalls(
    blip: E2E, server: RedisServer, tmp_path: Path
) -> None:
    # Given 40 jobs of 300 ms on a queue of 4 workers, running
    runs = tmp_path / "runs.txt"
    runs.touch()
    ids = blip.app.enqueue_many(
        "blip", "work", [{"n": n, "ms": 300, "runs": str(runs)} for n in range(40)]
    )
    consumer = blip.start_consumer(env={"HUEYARD_QUEUES": "blip"})
    wait_until(lambda: len(runs.read_text().split()) >= 6, timeout=10, what="jobs running")

    # When Redis stops for 6 s while jobs run and finish, then comes back with its data
    server.stop()
    time.sleep(OUTAGE)
    server.start()

    # Then every job completes, each ran exactly once, and none counted a stall
    def completed() -> int:
        try:
            return blip.counts("blip").completed
        except redis.RedisError:
            return 0

    wait_until(lambda: completed() == 40, timeout=60, what="40 completed jobs", interval=0.2)
    counts = Counter(runs.read_text().split())
    assert set(counts) == set(ids)
    assert [job for job, n in counts.items() if n > 1] == []
    conn = server.client()
    assert [job for job in ids if conn.hexists(f"{{{blip.prefix}:work}}:job:{job}", "stalls")] == []
    assert blip.counts("blip").failed == 0

    # And the log tells the outage without a traceback: outcomes stored once Redis is back
    log = consumer.log()
    assert "Traceback" not in log
    assert "Redis does not answer" in log
    assert "Redis works again" in log
    assert "is stored, on try" in log  # at least one outcome waited for Redis
    assert "could not be stored" not in log
