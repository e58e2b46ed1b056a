"""A claim whose reply is lost: Redis ran it, the connection broke before the answer.

The job is then active under a token only the caller knows. Without help it
would wait out its lease and count a stall (and, on a second such blip, fail
as "stalled" although it never ran). The storage remembers the token and the
next claim gives the job back, the attempt not counted.
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
from framework.errors import RedisUnavailableError
from framework.handlers import HandlerRegistry, handler
from framework.jobs import Jobs
from framework.options import Stored
from framework.storage import JobStorage
from tests.conftest import TEST_DB, TEST_PORT, AppFactory
from tests.integration.flaky_proxy import FlakyProxy

CONFIG = """
[queues.work]
attempts = 2
"""


@pytest.fixture
def proxy() -> Iterator[FlakyProxy]:
    with FlakyProxy(TEST_PORT) as flaky:
        yield flaky


@pytest.fixture
def app(make_app: AppFactory, proxy: FlakyProxy, redis_conn: redis.Redis) -> Hueyard:
    registry = HandlerRegistry()

    @handler("work", registry=registry)
    def job(payload: dict[str, Any]) -> None: ...

    # No reconnection tries: the first broken connection reaches the caller.
    return make_app(
        CONFIG, registry, prefix="lr", url=proxy.url(TEST_DB), redis_lines="reconnect_attempts = 0"
    )


def storage_of(app: Hueyard) -> JobStorage:
    storage: JobStorage = app.queue("work").huey.storage
    storage.read_timeout = 0.2
    return storage


def record(conn: redis.Redis, job_id: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in conn.hgetall(f"{{lr:work}}:job:{job_id}").items()}


def test_a_job_claimed_by_a_call_whose_reply_was_lost_goes_back_at_once(
    app: Hueyard, proxy: FlakyProxy, redis_conn: redis.Redis
) -> None:
    # Given a waiting job, and a network that loses Redis's replies
    job_id = app.enqueue("work", "job", {})
    storage = storage_of(app)
    proxy.losing.set()

    # When a worker claims: Redis runs the claim, the worker sees a broken connection
    with pytest.raises(redis.ConnectionError):
        storage.claim()
    assert proxy.lost >= 1
    assert redis_conn.zscore("{lr:work}:active", job_id) is not None
    assert record(redis_conn, job_id)["attempts"] == "1"

    # Then, once replies arrive again, the next claim first gives that job back
    # (not counted as an attempt, no stall) and then takes it
    proxy.losing.clear()
    claim = storage.claim()
    assert claim is not None and claim.id == job_id
    assert claim.attempts == 1  # its first real run
    assert "stalls" not in record(redis_conn, job_id)


@pytest.mark.parametrize("fetch", [False, True], ids=["claim", "release-and-claim"])
def test_with_the_pools_retries_on_a_claim_is_still_sent_once(
    make_app: AppFactory, proxy: FlakyProxy, redis_conn: redis.Redis, fetch: bool
) -> None:
    # Given the pool's reconnection tries on (as in production), and three waiting jobs
    registry = HandlerRegistry()
    handler("work", registry=registry)(_nothing)
    app = make_app(
        CONFIG, registry, prefix="lr", url=proxy.url(TEST_DB), redis_lines="reconnect_attempts = 3"
    )
    storage = storage_of(app)
    jobs = app.enqueue_many("work", "_nothing", [{"n": n} for n in range(4)])
    held = storage.claim() if fetch else None

    # When the reply to a worker's claim (with its release, or alone) is lost, and the
    # network is fine again right after (a blip: the pool's retry would get through)
    def blip() -> None:
        while not proxy.lost:
            time.sleep(0.001)
        proxy.losing.clear()

    threading.Thread(target=blip, daemon=True).start()
    proxy.losing.set()
    with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
        if held is not None:
            storage.release_and_claim(held, "completed", value="null")
        else:
            storage.claim()
    proxy.losing.clear()
    # Then Redis ran the claim once, not once a retry (each would take a job under the
    # same token: all but the one given back would wait out a lease and stall)
    active = {member.decode() for member in redis_conn.zrange("{lr:work}:active", 0, -1)}
    assert len(active - {held.id if held else ""}) == 1, active
    # And the next claim gives that job back before it takes one: no stall anywhere
    if held is not None:  # the release ran too: its outcome is stored once asked again
        assert storage.release(held, "completed", value="null") == Stored.DROPPED
    claim = storage.claim()
    assert claim is not None
    assert redis_conn.zcard("{lr:work}:active") == 1
    assert all("stalls" not in record(redis_conn, job_id) for job_id in jobs)


def _nothing(payload: dict[str, Any]) -> None: ...


def test_a_lost_claim_reply_costs_one_warning_and_no_stall(
    app: Hueyard, proxy: FlakyProxy, redis_conn: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a waiting job and a worker's view of the queue (Huey's dequeue)
    job_id = app.enqueue("work", "job", {})
    huey = app.queue("work").huey
    storage_of(app)
    caplog.set_level(logging.INFO, logger="hueyard")

    # When replies are lost while the worker claims, twice, then arrive again
    proxy.losing.set()
    assert huey.dequeue() is None
    assert huey.dequeue() is None
    proxy.losing.clear()
    task = huey.dequeue()

    # Then it gets the job, unharmed, and the log tells the outage in a few lines
    assert task is not None and task.id == job_id
    assert "stalls" not in record(redis_conn, job_id)
    outage = [r.getMessage() for r in caplog.records if "Redis" in r.getMessage()]
    assert len(outage) == 2, outage
    assert outage[0].startswith("queue work: Redis does not answer (ConnectionError")
    assert outage[1].startswith("queue work: Redis works again, ")
    assert "went back to waiting" in caplog.text
    assert Jobs(app).counts("work").active == 1


def test_a_bulk_retry_that_redis_stops_part_way_says_how_far_it_got(
    app: Hueyard, proxy: FlakyProxy, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 40 failed jobs, retried 4 at a time, and a Redis that goes away once the
    # first batches are back in waiting
    jobs = Jobs(app)
    for job_id in app.enqueue_many("work", "job", [{"n": n} for n in range(40)]):
        jobs.cancel("work", job_id)
    monkeypatch.setattr("framework.defaults.BULK_BATCH", 4)
    waiting = app.keys.queue("work").state("waiting")
    # (the replies of its ZCARD and of two batches pass; the third batch's is lost)
    proxy.lose_after(3)
    # When every failed job is retried
    with pytest.raises(RedisUnavailableError) as stopped:
        jobs.retry_all("work")
    # Then the error says how many were retried and that the others are still failed
    done = redis_conn.zcard(waiting)
    assert done == 12  # two batches answered, the third ran and its answer was lost
    told = str(stopped.value)
    assert "failed jobs were retried before it stopped" in told and "still failed" in told
    assert "8 of the 40 failed jobs" in told and "run it again for them" in told
    # And running it again, once Redis answers, retries the rest
    proxy.losing.clear()
    assert jobs.retry_all("work") == 40 - done
    assert redis_conn.zcard(waiting) == 40
