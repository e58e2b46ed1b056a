"""Sentinel: a master, a replica and three sentinels, all real, on loopback ports.

Producers and two real consumers find the master through the sentinels; a
failover forced mid-drain moves the master to the other server, and they
follow it by themselves. What ran, what ran twice and what was lost is
counted. Every job was enqueued (and replicated) before the failover, so none
may be lost. A forced failover leaves the old master running, and taking
writes, until the consumers see that Sentinel named another (at most
``SENTINEL_RECHECK`` later) and until Sentinel demotes it: the jobs claimed
and completed there in that window are not on the new master, and run again
(at-least-once). Only jobs that started around the switch may run twice.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from framework import defaults
from tests.e2e.conftest import E2E, wait_until, world_on
from tests.topology import MASTER_NAME, SentinelGroup

pytestmark = [pytest.mark.e2e, pytest.mark.topology]

JOBS = 3000
LEASE = 3.0
WORKERS = 2 * 4
"""Two consumers of the queue ``blip`` (concurrency 4)."""


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    directory = tmp_path / "sentinel"
    directory.mkdir()
    with SentinelGroup(directory) as running:
        yield running


@pytest.fixture
def world(tmp_path: Path, group: SentinelGroup) -> Iterator[E2E]:
    sentinels = ", ".join(f'"{entry}"' for entry in group.sentinels)
    lines = f'sentinels = [{sentinels}]\nmaster_name = "{MASTER_NAME}"\nsocket_timeout = 2'
    conn = group.master.client()
    # The url's host is not used with sentinels: an address where no Redis runs proves it.
    with world_on(
        tmp_path, "redis://127.0.0.1:1/0", conn, lease=LEASE, redis_lines=lines
    ) as running:
        yield running
    conn.close()


def test_two_consumers_drain_across_a_forced_failover_losing_nothing(
    world: E2E, group: SentinelGroup, tmp_path: Path
) -> None:
    # Given 3,000 jobs enqueued through the sentinels, on the replica too
    runs = tmp_path / "runs.txt"
    runs.touch()
    ids = world.app.enqueue_many(
        "blip", "work", [{"n": n, "ms": 10, "runs": str(runs)} for n in range(JOBS)]
    )
    old = group.master_port()
    group.wait_replicated()

    # And two consumers draining them
    consumers = [world.start_consumer(env={"HUEYARD_QUEUES": "blip"}) for _ in range(2)]
    wait_until(lambda: len(runs.read_text().split()) >= 500, timeout=30, what="500 runs")

    # When a failover is forced mid-drain
    started = time.monotonic()
    before = len(runs.read_text().split())
    new = group.failover()
    failover_seconds = time.monotonic() - started
    assert new != old
    time.sleep(defaults.SENTINEL_RECHECK + 1)  # every consumer has moved by now
    moved = len(runs.read_text().split())

    # Then the consumers follow the new master by themselves and every job completes
    def completed() -> int:
        try:
            return world.counts("blip").completed
        except redis.RedisError:
            return 0

    wait_until(lambda: completed() == JOBS, timeout=120, what="every job completed", interval=0.5)
    order = runs.read_text().split()
    counts = Counter(order)
    lost = set(ids) - set(counts)
    twice = [job for job, n in counts.items() if n > 1]
    print(
        f"sentinel failover in {failover_seconds:.1f} s: {len(counts)} jobs ran, "
        f"{len(twice)} ran twice, {len(lost)} lost"
    )
    assert lost == set()
    # only jobs that first ran around the switch ran again
    first_run = {job: order.index(job) for job in twice}
    early = [job for job, at in first_run.items() if not before - WORKERS <= at < moved]
    assert early == []
    assert world.counts("blip").failed == 0
    # and the consumers ran on, without a traceback
    for consumer in consumers:
        assert consumer.process.poll() is None
        assert "Traceback" not in consumer.log()
