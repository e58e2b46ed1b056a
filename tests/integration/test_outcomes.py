"""Storing an outcome while Redis is away: tried again while the lease holds, then given up.

The happy path (Redis back within the lease: the outcome is stored, the job
runs once) runs against a real consumer in tests/e2e/test_redis_blip.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from framework.application import Hueyard
from framework.handlers import HandlerRegistry, handler
from framework.leases import LeaseKeeper
from framework.options import Outcome
from framework.outcomes import store_outcome
from framework.storage import JobStorage
from tests.conftest import AppFactory
from tests.integration.redis_server import RedisServer

CONFIG = """
[consumer]
lease = 2

[queues.work]
"""


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as private:
        yield private


@pytest.fixture
def app(make_app: AppFactory, server: RedisServer) -> Hueyard:
    registry = HandlerRegistry()

    @handler("work", registry=registry)
    def job(payload: dict[str, Any]) -> None: ...

    return make_app(
        CONFIG, registry, prefix="oc", url=server.url, redis_lines="reconnect_attempts = 1"
    )


def test_an_outcome_is_given_up_once_the_lease_may_have_run_out(
    app: Hueyard, server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a job that a worker holds (lease 2 s), whose handler has finished
    app.enqueue("work", "job", {})
    storage: JobStorage = app.queue("work").huey.storage
    claim = storage.claim()
    assert claim is not None
    keeper = LeaseKeeper.for_process()
    keeper.track(storage, claim, None)
    keeper.releasing(claim)
    caplog.set_level(logging.INFO, logger="hueyard")

    # When Redis goes away for good and the worker stores the outcome
    server.stop()
    started = time.monotonic()
    try:
        stored = store_outcome(
            storage, claim, Outcome.COMPLETED, value="1", traceback="", delay=0, fetch=True
        )
    finally:
        keeper.forget(claim)

    # Then it tried again until the lease may have run out, then gave up, saying so
    assert stored == (False, None)
    assert time.monotonic() - claim.claimed_at >= 2 - 0.5  # about the lease, not at once
    assert time.monotonic() - started < 10
    assert "could not be stored" in caplog.text
    assert "it will run again when Redis is back (delivery is at-least-once)" in caplog.text
