"""What a consumer starts, in which order: no queue's first worker waits behind another's."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest

from framework.application import Hueyard
from framework.handlers import HandlerRegistry, handler
from tests.conftest import AppFactory
from tests.integration.redis_server import RedisServer


def _noop(payload: Any) -> None:
    """A handler that is never run: these tests only start and stop workers."""


def test_the_first_worker_of_every_queue_starts_before_any_second_one(
    make_app: AppFactory,
) -> None:
    # Given three queues, the first at concurrency 3, the last at 1
    registry = HandlerRegistry()
    for queue in ("alpha", "beta", "gamma"):
        handler(queue, name="noop", registry=registry)(_noop)
    body = """
    [queues.alpha]
    concurrency = 3
    [queues.beta]
    concurrency = 2
    [queues.gamma]
    concurrency = 1
    """
    app = make_app(body, registry, prefix="start")
    consumer = app.create_consumer(worker_type="thread")
    before = set(threading.enumerate())
    # When it starts
    consumer.start()
    try:
        started = [t.name for t in threading.enumerate() if t not in before]
    finally:
        consumer.stop(graceful=True)
    # Then the threads started round the queues, worker by worker, the scheduler last
    ours = [name for name in started if re.fullmatch(r"Scheduler|(alpha|beta|gamma)-\d", name)]
    assert ours == [
        "alpha-1", "beta-1", "gamma-1", "alpha-2", "beta-2", "alpha-3", "Scheduler",
    ]  # fmt: skip


def _eviction_warnings(app: Hueyard, caplog: pytest.LogCaptureFixture) -> list[str]:
    caplog.clear()
    with caplog.at_level("WARNING", logger="hueyard"):
        app.create_consumer(worker_type="thread")
    return [r.getMessage() for r in caplog.records if "maxmemory-policy" in r.getMessage()]


def test_a_consumer_warns_at_start_when_redis_may_evict_its_jobs(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    registry = HandlerRegistry()
    handler("alpha", name="noop", registry=registry)(_noop)
    # Given a Redis that deletes keys at its memory limit
    with RedisServer(None, "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru") as lru:
        app = make_app("[queues.alpha]", registry, prefix="evict", url=lru.url)
        # When a consumer is made for it, then it says so at once, with the fix
        [line] = _eviction_warnings(app, caplog)
    assert line.startswith("Redis maxmemory-policy is allkeys-lru (maxmemory 67,108,864 bytes)")
    assert "deletes any key: job records, queue sets, pause flags" in line
    assert line.endswith("CONFIG SET maxmemory-policy noeviction, and the same in redis.conf")


def test_a_consumer_on_a_noeviction_redis_says_nothing_of_it(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    registry = HandlerRegistry()
    handler("alpha", name="noop", registry=registry)(_noop)
    app = make_app("[queues.alpha]", registry, prefix="evict")  # the shared server: noeviction
    assert _eviction_warnings(app, caplog) == []
