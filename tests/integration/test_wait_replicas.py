"""``[redis] wait_replicas``: an enqueue returns once that many replicas have it (WAIT),
against a real master and replica started on loopback ports."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from framework.errors import NotReplicatedError
from framework.handlers import HandlerRegistry, handler
from framework.jobs import Jobs
from tests.conftest import AppFactory
from tests.integration.redis_server import RedisServer


def registry() -> HandlerRegistry:
    handlers = HandlerRegistry()

    @handler("work", registry=handlers)
    def ping(payload: dict[str, Any]) -> None: ...

    return handlers


@pytest.fixture
def master() -> Iterator[RedisServer]:
    # its replicas sync at once, not after the default 5 s (repl-diskless-sync-delay)
    with RedisServer(None, "--repl-diskless-sync-delay", "0") as server:
        yield server


def replica_of(master: RedisServer) -> RedisServer:
    replica = RedisServer(None, "--replicaof", "127.0.0.1", str(master.port)).start()
    deadline = time.monotonic() + 10
    while replica.client().info("replication").get("master_link_status") != "up":
        assert time.monotonic() < deadline, "the replica did not sync"
        time.sleep(0.05)
    return replica


def test_an_enqueue_confirmed_by_the_replica_returns_and_is_on_the_replica(
    make_app: AppFactory, master: RedisServer
) -> None:
    replica = replica_of(master)
    try:
        # (WAIT returns at the replica's answer; 5 s only bounds it on a loaded machine)
        app = make_app(
            "[queues.work]", registry(), url=master.url,
            redis_lines="wait_replicas = 1\nwait_timeout = 5",
        )  # fmt: skip
        ids = app.enqueue_many("work", "ping", [{"n": n} for n in range(3)])
        # WAIT returned: the replica has every job already, no polling needed
        prefix = app.keys.job("work", "")
        assert all(replica.client().exists(prefix + job_id) for job_id in ids)
    finally:
        replica.stop()


def test_without_the_replica_the_enqueue_says_its_jobs_are_stored_but_not_confirmed(
    make_app: AppFactory, master: RedisServer
) -> None:
    app = make_app(
        "[queues.work]", registry(), url=master.url,
        redis_lines="wait_replicas = 1\nwait_timeout = 0.2",
    )  # fmt: skip

    with pytest.raises(NotReplicatedError) as caught:
        app.enqueue("work", "ping", {"n": 1}, key="order-1")

    error = caught.value
    assert "0 of 1 replica(s) confirmed them within 0.2 s" in str(error)
    assert len(error.stored) == 1
    job = Jobs(app).get(error.stored[0])
    assert job is not None and job.state == "waiting"  # stored on the master, as it says
    # and enqueueing again with the key returns the same job, storing nothing new
    with pytest.raises(NotReplicatedError) as again:
        app.enqueue("work", "ping", {"n": 1}, key="order-1")
    assert again.value.stored == error.stored
    assert Jobs(app).counts("work").waiting == 1
