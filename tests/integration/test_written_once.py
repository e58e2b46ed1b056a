"""Writes that must not be applied twice (a counter's increment, a job's log line) are
written to Redis once: when Redis answers slower than ``socket_timeout``, the pool's
retry would send them again although the first was only delayed.

Redis is made slow for real: ``DEBUG SLEEP`` from another connection blocks a private
``redis-server`` past the client's socket timeout, so every command sent meanwhile
runs once the sleep ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from framework.application import Hueyard
from framework.connection import ConnectionSpec
from framework.errors import RedisUnavailableError
from framework.handlers import HandlerRegistry, handler
from framework.redis_client import RedisClient
from framework.storage import JobStorage
from tests.conftest import AppFactory
from tests.integration.redis_server import RedisServer

SLEEP = 1.5
"""Seconds Redis sleeps: five socket timeouts, time for the pool to try again thrice."""

FAST = "socket_timeout = 0.3\nconnect_timeout = 0.3\nreconnect_attempts = 3"


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer(None, "--enable-debug-command", "yes") as running:
        yield running


def slow(server: RedisServer) -> threading.Thread:
    """Block ``server`` for :data:`SLEEP` seconds from a connection of its own."""
    sleeper = threading.Thread(
        target=lambda: server.client().execute_command("DEBUG", "SLEEP", str(SLEEP))
    )
    sleeper.start()
    time.sleep(0.1)  # the DEBUG SLEEP is running
    return sleeper


def test_a_cache_counter_counts_once_when_redis_is_slower_than_the_socket_timeout(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a counter at 1, and a client that tries a command four times
    spec = ConnectionSpec(server.url, socket_timeout=0.3, connect_timeout=0.3, reconnect_attempts=3)
    client = RedisClient.from_spec(spec)
    try:
        assert client.incr("sent") == 1

        # When Redis answers the next increment only after the socket timeout
        sleeper = slow(server)
        counted = client.incr("sent")
        sleeper.join()

        # Then the call says it does not know (None, logged as a lost answer, not as
        # Redis being down), and Redis counted it once, not once per try
        assert counted is None
        assert server.client().get("hueyard:cache:sent") == b"2"
        [error] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert "INCRBY 'hueyard:cache:sent'" in error
        assert "answer was lost" in error and "may or may not have been applied" in error
        assert not client.outage.down
        assert client.incr("sent") == 3
    finally:
        client.close()


def test_a_cache_counter_still_waits_for_a_redis_that_comes_back(
    server: RedisServer,
) -> None:
    # Given a counter, and a Redis that restarts: the pool's connection is dead, and
    # connecting is refused for a moment
    spec = ConnectionSpec(
        server.url, socket_timeout=0.5, connect_timeout=0.5, reconnect_attempts=10
    )
    client = RedisClient.from_spec(spec)
    try:
        assert client.incr("sent") == 1
        server.stop()
        restart = threading.Timer(0.4, server.start)
        restart.start()

        # When it counts meanwhile
        counted = client.incr("sent")
        restart.join()

        # Then the increment was tried again until Redis took it (it was never written
        # before), and written once: the restarted, empty Redis holds 1
        assert counted == 1
        assert server.client().get("hueyard:cache:sent") == b"1"
    finally:
        client.close()


@pytest.fixture
def app(make_app: AppFactory, server: RedisServer) -> Hueyard:
    registry = HandlerRegistry()

    @handler("work", registry=registry)
    def job(payload: dict[str, Any]) -> None: ...

    return make_app("[queues.work]", registry, prefix="wo", url=server.url, redis_lines=FAST)


def test_a_huey_counter_counts_once_when_redis_is_slower_than_the_socket_timeout(
    app: Hueyard, server: RedisServer
) -> None:
    # Given Huey's counter of a queue at 1
    storage: JobStorage = app.queue("work").huey.storage
    assert storage.incr("chord") == 1

    # When Redis answers the next increment only after the socket timeout
    sleeper = slow(server)
    with pytest.raises(RedisUnavailableError) as caught:
        storage.incr("chord")
    sleeper.join()

    # Then the error says the increment may have counted, and it counted once
    assert "may or may not have counted" in str(caught.value)
    assert storage.incr("chord", 0) == 2


def test_a_job_log_line_is_appended_once_when_redis_is_slower_than_the_socket_timeout(
    app: Hueyard, server: RedisServer
) -> None:
    # Given a running job that logged a line
    job_id = app.enqueue("work", "job", {})
    storage: JobStorage = app.queue("work").huey.storage
    claim = storage.claim_now()
    assert claim is not None and claim.id == job_id
    assert storage.report(claim, "log", "first line")

    # When it logs a line while Redis is slower than the socket timeout
    sleeper = slow(server)
    with pytest.raises(redis.TimeoutError):
        storage.report(claim, "log", "second line")
    sleeper.join()

    # Then the line is in its log once, not once per try
    lines = server.client().lrange(f"{{wo:work}}:job:{job_id}:logs", 0, -1)
    assert lines == [b"first line", b"second line"]
