"""A Redis that refuses the credentials (a wrong password) is told as such, not as a
Redis that does not answer, and is not hammered: no reconnection fixes a wrong password,
so a call is not tried again, and a worker waits the backoff's ceiling before its next.

Against a real ``redis-server --requirepass``; its ``total_connections_received`` counts
the connections hueyard made.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from framework import defaults
from framework.application import Hueyard
from framework.handlers import HandlerRegistry, handler
from tests.conftest import AppFactory
from tests.integration.redis_server import RedisServer


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer(None, "--requirepass", "the-right-one") as running:
        yield running


@pytest.fixture
def app(make_app: AppFactory, server: RedisServer) -> Hueyard:
    registry = HandlerRegistry()

    @handler("work", registry=registry)
    def job(payload: dict[str, Any]) -> None: ...

    url = f"redis://:wrong@127.0.0.1:{server.port}/0"
    return make_app("[queues.work]", registry, prefix="rc", url=url)  # 10 reconnect tries


def connections(server: RedisServer) -> int:
    admin = redis.Redis(port=server.port, password="the-right-one")
    return int(admin.info("stats")["total_connections_received"])


def test_a_refused_password_is_not_tried_again(app: Hueyard, server: RedisServer) -> None:
    # Given a pool that tries a failed call 10 more times
    before = connections(server)
    started = time.monotonic()

    # When a call meets the wrong password
    with pytest.raises(redis.AuthenticationError):
        app.queue("work").huey.storage.promote_due()

    # Then it made one connection, at once, not eleven over 2.75 s
    assert connections(server) - before == 1 + 1  # its own, and this test's INFO
    assert time.monotonic() - started < 1


def test_a_worker_says_the_credentials_were_refused_and_waits_the_backoffs_ceiling(
    app: Hueyard, server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a worker of the queue
    huey = app.queue("work").huey
    caplog.set_level(logging.WARNING, logger="hueyard.storage")
    started = time.monotonic()

    # When it looks for a job
    assert huey.dequeue() is None

    # Then its log says what the runbook says, and it waited before its next try
    [warning] = [r.getMessage() for r in caplog.records if r.name == "hueyard.storage"]
    assert warning.startswith("queue work: Redis refused the credentials")
    assert "REDIS_PASSWORD" in warning and "does not answer" not in warning
    assert time.monotonic() - started >= defaults.RECONNECT_CAP - 0.1
