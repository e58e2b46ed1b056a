"""The job-state storage contract.

Every transition of DESIGN.md §2: enqueue, claim, release, promote, renew,
recover; retention, the rate limit, pause, wake-ups, and data in Redis that
hueyard did not write. Each test runs against the real Redis server (the
proof) and against fakeredis with Lua (a check that the scripts use only
portable commands).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator

import fakeredis
import pytest
import redis

from framework.application import Hueyard
from framework.config import parse_settings
from framework.handlers import HandlerRegistry, handler
from framework.jobs import Cancel, Jobs
from framework.record import Claim
from framework.storage import JobStorage
from tests.conftest import AppFactory, app_toml
from tests.integration.redis_server import RedisServer

CONFIG = """
[consumer]
lease = 2
max_stalls = 1

[queues.work]
attempts = 3
backoff = { type = "exponential", delay = 1 }
keep_completed = 3
keep_failed = 2

[queues.limited]
rate_limit = { max = 3, per = 1 }
"""


@pytest.fixture(params=["redis", "fakeredis"])
def backend(request: pytest.FixtureRequest, redis_url: str) -> Iterator[redis.ConnectionPool]:
    if request.param == "redis":
        conn = request.getfixturevalue("redis_conn")  # flushed before and after
        yield conn.connection_pool
        return
    server = fakeredis.FakeServer()
    yield redis.ConnectionPool(connection_class=fakeredis.FakeRedisConnection, server=server)


@pytest.fixture
def conn(backend: redis.ConnectionPool) -> redis.Redis:
    return redis.Redis(connection_pool=backend)


@pytest.fixture
def app(backend: redis.ConnectionPool, make_app: AppFactory) -> Hueyard:
    registry = HandlerRegistry()

    @handler("work", registry=registry)
    def job(payload: dict[str, object]) -> object:
        return payload

    @handler("limited", registry=registry)
    def limited_job(payload: dict[str, object]) -> None: ...

    return make_app(CONFIG, registry, prefix="st", pool=backend)


@pytest.fixture
def storage(app: Hueyard) -> JobStorage:
    storage: JobStorage = app.queue("work").huey.storage
    storage.read_timeout = 0.2
    return storage


def enqueue(app: Hueyard, n: int = 1, **options: object) -> list[str]:
    return [app.enqueue("work", "job", {"n": i}, **options) for i in range(n)]  # type: ignore[arg-type]


def record(conn: redis.Redis, job_id: str) -> dict[str, str]:
    raw = conn.hgetall(f"{{st:work}}:job:{job_id}")
    return {k.decode(): v.decode(errors="replace") for k, v in raw.items()}


def state_of(conn: redis.Redis, job_id: str, queue: str = "work") -> str | None:
    """The state a job is in: the sorted set that holds its id."""
    found = [
        state
        for state in ("waiting", "active", "delayed", "completed", "failed")
        if conn.zscore(f"{{st:{queue}}}:{state}", job_id) is not None
    ]
    assert len(found) <= 1, f"job {job_id} is in several sets: {found}"
    return found[0] if found else None


def claim(storage: JobStorage) -> Claim:
    claimed = storage.claim()
    assert claimed is not None, "expected a job to claim"
    return claimed


def test_an_idle_read_ends_within_a_short_socket_timeout(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a socket_timeout shorter than the 1 s an idle worker's read blocks by default
    registry = HandlerRegistry()
    handler("work", registry=registry)(_echo)
    app = make_app(CONFIG, registry, prefix="st", redis_lines="socket_timeout = 0.5")
    storage: JobStorage = app.queue("work").huey.storage
    # When an idle worker reads an empty queue, again and again
    started = time.monotonic()
    reads = [storage.claim() for _ in range(4)]
    # Then each read ends empty within the socket's time, not as Redis not answering
    assert reads == [None] * 4 and time.monotonic() - started < 2
    assert storage.read_timeout == 0.25
    assert not [r for r in caplog.records if "does not answer" in r.getMessage()]


def _echo(payload: dict[str, object]) -> object:
    return payload


# -- enqueue ----------------------------------------------------------------------------------


def test_enqueue_writes_the_record_and_the_waiting_entry(
    app: Hueyard, storage: JobStorage, conn: redis.Redis
) -> None:
    [job_id] = enqueue(app, priority=2)
    job = record(conn, job_id)
    # The record is the job: its handler, its payload as JSON text and the options
    # the producer set (when is in its id); attempts, stalls and the rest come when
    # they happen.
    assert set(job) == {"handler", "payload", "priority"}
    assert (job["handler"], job["payload"], job["priority"]) == ("work.job", '{"n":0}', "2")
    assert state_of(conn, job_id) == "waiting"
    assert storage.queue_size() == 1


def test_bulk_enqueue_stores_every_job(app: Hueyard, storage: JobStorage) -> None:
    ids = app.enqueue_many("work", "job", [{"n": i} for i in range(1234)])
    assert len(set(ids)) == 1234
    assert storage.queue_size() == 1234


def test_enqueues_with_no_idle_worker_leave_a_bounded_wake_list(
    app: Hueyard, storage: JobStorage, conn: redis.Redis
) -> None:
    # Given no worker takes the wake tokens, When jobs keep coming, one by one and in bulk
    lengths = []
    for _ in range(300):
        enqueue(app)
        lengths.append(conn.llen(storage.q.wake))
    app.enqueue_many("work", "job", [{"n": i} for i in range(1000)])
    # Then the list grows to 128 at most and is cut back to 64
    assert max(lengths) == 128
    assert 64 <= conn.llen(storage.q.wake) <= 128
    assert storage.queue_size() == 1300


def test_enqueue_and_release_carry_on_after_redis_restarts() -> None:
    # Given an app on a private server, whose producer and worker connections are open
    with RedisServer() as server:
        registry = HandlerRegistry()

        @handler("work", registry=registry)
        def job(payload: dict[str, object]) -> object:
            return payload

        app = Hueyard(parse_settings(app_toml(server.url, CONFIG, prefix="st"), env={}), registry)
        storage: JobStorage = app.queue("work").huey.storage
        enqueue(app)
        assert storage.release(claim(storage), "completed", value="{}")
        # When Redis restarts: every connection drops and the script cache is empty
        server.stop()
        server.start()
        # Then the kept connections reconnect and the scripts are loaded again
        [job_id] = enqueue(app)
        claimed = claim(storage)
        assert claimed.id == job_id
        assert storage.release(claimed, "completed", value="{}")
        assert server.client().zcard("{st:work}:completed") == 1
        app.close()


def test_a_delayed_job_waits_in_delayed_until_promoted(
    app: Hueyard, storage: JobStorage, conn: redis.Redis
) -> None:
    [job_id] = enqueue(app, delay=0.3)
    assert state_of(conn, job_id) == "delayed"
    assert storage.promote_due() == 0
    time.sleep(0.35)
    assert storage.promote_due() == 1
    assert state_of(conn, job_id) == "waiting"
    assert claim(storage).id == job_id


# -- claim ------------------------------------------------------------------------------------


def test_claim_takes_priority_1_first_and_fifo_within_a_priority(
    app: Hueyard, storage: JobStorage
) -> None:
    labels = {}
    for label, priority in [("a", 10), ("b", 1), ("c", 5), ("d", 1), ("e", 10), ("f", 5)]:
        labels[app.enqueue("work", "job", {"l": label}, priority=priority)] = label
    order = [labels[claim(storage).id] for _ in range(6)]
    assert order == ["b", "d", "c", "f", "a", "e"]


def test_claim_moves_the_job_to_active_with_a_lease(
    app: Hueyard, storage: JobStorage, conn: redis.Redis
) -> None:
    [job_id] = enqueue(app)
    before = time.time() * 1000
    claimed = claim(storage)
    job = record(conn, job_id)
    assert (job["attempts"], job["token"]) == ("1", claimed.token)
    assert state_of(conn, job_id) == "active"
    lease = conn.zscore("{st:work}:active", job_id)
    assert lease is not None
    assert before + 1500 < lease < time.time() * 1000 + 2500  # lease = 2 s
    assert storage.queue_size() == 0


def test_an_idle_claim_waits_for_an_enqueue_and_wakes_within_milliseconds(
    app: Hueyard, storage: JobStorage
) -> None:
    storage.read_timeout = 5
    got: list[tuple[Claim | None, float]] = []

    def worker() -> None:
        result = storage.claim()
        got.append((result, time.monotonic()))

    thread = threading.Thread(target=worker)
    thread.start()
    time.sleep(0.3)  # the worker is blocked in Redis now
    enqueued_at = time.monotonic()
    [job_id] = enqueue(app)
    thread.join(5)
    assert got and got[0][0] is not None and got[0][0].id == job_id
    assert got[0][1] - enqueued_at < 0.1


def test_an_idle_worker_gets_its_job_after_redis_lost_its_scripts(
    make_app: AppFactory,
) -> None:
    # Given a worker blocked waiting for a job on a server whose scripts are then
    # flushed (as a restart or SCRIPT FLUSH does)
    registry = HandlerRegistry()

    @handler("work", registry=registry)
    def job(payload: dict[str, object]) -> None: ...

    with RedisServer() as private:
        app = make_app(CONFIG, registry, prefix="st", url=private.url)
        storage: JobStorage = app.queue("work").huey.storage
        storage.read_timeout = 5
        assert storage.claim_now() is None  # its scripts are loaded
        got: list[Claim] = []

        def worker() -> None:
            deadline = time.monotonic() + 5
            while not got and time.monotonic() < deadline:
                claimed = storage.claim()
                if claimed is not None:
                    got.append(claimed)

        thread = threading.Thread(target=worker)
        thread.start()
        time.sleep(0.3)  # blocked in Redis now
        private.client().script_flush()
        started = time.monotonic()
        [job_id] = enqueue(app)
        thread.join(6)
        # Then the worker gets the job at once, the script loaded again
        assert [claimed.id for claimed in got] == [job_id]
        assert time.monotonic() - started < 1


def test_an_empty_claim_returns_none_after_the_read_timeout(storage: JobStorage) -> None:
    started = time.monotonic()
    assert storage.claim() is None
    assert 0.15 < time.monotonic() - started < 1.0


# -- release ------------------------------------------------------------------------------------


def test_release_completed_keeps_the_result_and_counts_it(
    app: Hueyard, storage: JobStorage, conn: redis.Redis
) -> None:
    [job_id] = enqueue(app)
    assert storage.release(claim(storage), "completed", value='{"sent":true}')
    job = record(conn, job_id)
    # what a retained completed job keeps: what ran, when, and its result; no lease
    # token, no place in waiting, no consumer, and no count of its one run
    assert set(job) == {"handler", "payload", "started", "result"}
    assert job["result"] == '{"sent":true}'
    info = Jobs(app).get(job_id)
    assert info is not None and (info.attempts, info.consumer) == (1, None)
    assert state_of(conn, job_id) == "completed"
    assert conn.zcard("{st:work}:active") == 0
    assert app.result("work", job_id) == {"sent": True}
    [stats] = conn.keys("{st:work}:stats:*[0-9]")
    assert conn.hget(stats, "completed") == b"1"
    assert 86400 < conn.ttl(stats) <= 25 * 3600
    assert conn.llen(stats + b":ms") == 1


def test_release_failed_keeps_error_and_traceback(
    app: Hueyard, storage: JobStorage, conn: redis.Redis
) -> None:
    [job_id] = enqueue(app)
    storage.consumer_id = "host:1:abc"
    storage.release(claim(storage), "failed", value="ValueError: bad", traceback="Traceback...")
    job = record(conn, job_id)
    assert (job["error"], job["traceback"]) == ("ValueError: bad", "Traceback...")
    assert state_of(conn, job_id) == "failed"
    # a failed record keeps who ran it, and its count
    assert (job["consumer"], job["attempts"]) == ("host:1:abc", "1")


def test_a_job_completed_at_a_later_run_keeps_its_count_of_runs(
    app: Hueyard, storage: JobStorage, conn: redis.Redis
) -> None:
    [job_id] = enqueue(app)
    storage.release(claim(storage), "retry", value="boom", delay=0)
    time.sleep(0.01)
    assert storage.promote_due() == 1
    storage.release(claim(storage), "completed", value="1")
    job = record(conn, job_id)
    assert (job["attempts"], job["result"]) == ("2", "1")
    assert "consumer" not in job and "error" not in job
    info = Jobs(app).get(job_id)
    assert info is not None and info.attempts == 2


def test_release_retry_schedules_the_job_after_the_delay(
    app: Hueyard, storage: JobStorage, conn: redis.Redis
) -> None:
    [job_id] = enqueue(app)
    before = time.time() * 1000
    storage.release(claim(storage), "retry", value="boom", delay=30)
    job = record(conn, job_id)
    assert (job["error"], job["attempts"]) == ("boom", "1")
    due = conn.zscore("{st:work}:delayed", job_id)
    assert due is not None and before + 29_000 < due < time.time() * 1000 + 31_000


def test_release_requeue_puts_the_job_back_without_counting_the_attempt(
    app: Hueyard, storage: JobStorage, conn: redis.Redis
) -> None:
    first, _second = enqueue(app, 2)
    claimed = claim(storage)
    assert claimed.id == first
    storage.release(claimed, "requeue")
    assert record(conn, first)["attempts"] == "0"
    assert state_of(conn, first) == "waiting"
    assert claim(storage).id == first  # it kept its place ahead of `_second`


def test_only_the_lease_holder_can_release(
    app: Hueyard, storage: JobStorage, conn: redis.Redis
) -> None:
    [job_id] = enqueue(app)
    claimed = claim(storage)
    stale = dataclasses.replace(claimed, token="not-the-token")
    assert not storage.release(stale, "completed", value="1")
    assert state_of(conn, job_id) == "active"
    assert storage.release(claimed, "completed", value="1")
    assert not storage.release(claimed, "completed", value="1")  # twice: the second is refused


# -- retention --------------------------------------------------------------------------------


def test_retention_keeps_the_newest_completed_and_deletes_older_records(
    app: Hueyard, storage: JobStorage, conn: redis.Redis
) -> None:
    ids = enqueue(app, 5)
    for _ in ids:
        storage.release(claim(storage), "completed", value="null")
    kept = [i.decode() for i in conn.zrange("{st:work}:completed", 0, -1)]
    assert kept == ids[2:]  # keep_completed = 3
    for dropped in ids[:2]:
        assert not conn.exists(f"{{st:work}}:job:{dropped}")


def test_a_job_level_keep_0_deletes_just_that_job(
    app: Hueyard, storage: JobStorage, conn: redis.Redis
) -> None:
    [kept] = enqueue(app)
    storage.release(claim(storage), "completed", value="1")
    [gone] = enqueue(app, keep_completed=0)
    storage.release(claim(storage), "completed", value="1")
    assert not conn.exists(f"{{st:work}}:job:{gone}")
    assert conn.exists(f"{{st:work}}:job:{kept}")
    assert conn.zcard("{st:work}:completed") == 1


def test_failed_retention_uses_keep_failed(
    app: Hueyard, storage: JobStorage, conn: redis.Redis
) -> None:
    enqueue(app, 4)
    for _ in range(4):
        storage.release(claim(storage), "failed", value="x")
    assert conn.zcard("{st:work}:failed") == 2  # keep_failed = 2


def test_many_finished_jobs_leave_a_bounded_number_of_keys(
    app: Hueyard, storage: JobStorage, conn: redis.Redis
) -> None:
    app.enqueue_many("work", "job", [{"n": i} for i in range(200)])
    for i in range(200):
        storage.release(claim(storage), "completed" if i % 2 else "failed", value="1")
    job_keys = conn.keys("{st:work}:job:*")
    assert len(job_keys) == 3 + 2  # keep_completed + keep_failed
    for key in conn.keys("{st}:*"):
        if conn.ttl(key) == -1:  # no TTL: must be a bounded structure
            assert key.startswith(b"{st:work}:job:") or key.startswith(b"{st:work}:"), key


# -- leases and recovery -------------------------------------------------------------------------


def test_renew_extends_held_leases_and_reports_lost_ones(
    app: Hueyard, storage: JobStorage, conn: redis.Redis
) -> None:
    enqueue(app, 2)
    held, other = claim(storage), claim(storage)
    before = conn.zscore("{st:work}:active", held.id)
    time.sleep(0.05)
    stranger = dataclasses.replace(other, token="someone-else")
    assert storage.renew([held, stranger]) == ([other.id], [])
    after = conn.zscore("{st:work}:active", held.id)
    assert before is not None and after is not None and after > before


def test_renew_reports_the_held_jobs_whose_cancel_was_requested(
    app: Hueyard, storage: JobStorage, conn: redis.Redis
) -> None:
    enqueue(app, 2)
    cancelled, running = claim(storage), claim(storage)
    assert Jobs(app).cancel("work", cancelled.id) == Cancel.REQUESTED
    assert storage.renew([cancelled, running]) == ([], [cancelled.id])
    assert state_of(conn, cancelled.id) == "active"  # its holder stops it


@pytest.mark.parametrize("how", ["recovered", "put back at shutdown", "failed, to retry"])
def test_a_job_cancelled_while_it_ran_never_goes_back_to_waiting(
    app: Hueyard, storage: JobStorage, conn: redis.Redis, how: str
) -> None:
    # Given a running job whose cancel was requested
    [job_id] = enqueue(app)
    claimed = claim(storage)
    Jobs(app).cancel("work", job_id)
    # When its consumer dies (its lease runs out), shuts down, or the handler failed
    # with attempts left, before the consumer noticed the cancel
    if how == "recovered":
        conn.zadd("{st:work}:active", {job_id: 0})
        assert storage.recover() == (0, 1)
    elif how == "put back at shutdown":
        assert storage.release(claimed, "requeue")
    else:
        assert storage.release(claimed, "retry", value="ValueError: boom", delay=5)
    # Then it is failed, "cancelled", instead of being run again
    assert state_of(conn, job_id) == "failed"
    record_ = record(conn, job_id)
    assert record_["error"] == "cancelled"
    assert "cancel" not in record_ and "token" not in record_


def test_an_expired_lease_goes_back_to_waiting_at_its_old_place(
    app: Hueyard, storage: JobStorage, conn: redis.Redis
) -> None:
    first, _second = enqueue(app, 2)
    claim(storage)  # `first`; its consumer "dies": the lease is never renewed
    assert storage.recover() == (0, 0)  # not expired yet
    conn.zadd("{st:work}:active", {first: 0})  # lease ran out
    assert storage.recover() == (1, 0)
    job = record(conn, first)
    assert (job["stalls"], job["attempts"]) == ("1", "0")
    assert state_of(conn, first) == "waiting"
    assert claim(storage).id == first  # ahead of `_second`, as before


def test_a_job_that_stalls_past_max_stalls_fails_as_stalled(
    app: Hueyard, storage: JobStorage, conn: redis.Redis
) -> None:
    [job_id] = enqueue(app)
    for expected in [(1, 0), (0, 1)]:  # max_stalls = 1
        claim(storage)
        conn.zadd("{st:work}:active", {job_id: 0})
        assert storage.recover() == expected
    assert state_of(conn, job_id) == "failed"
    assert record(conn, job_id)["error"].startswith("stalled")


def test_a_recovered_job_cannot_be_released_by_its_old_holder(
    app: Hueyard, storage: JobStorage, conn: redis.Redis
) -> None:
    [job_id] = enqueue(app)
    old = claim(storage)
    conn.zadd("{st:work}:active", {job_id: 0})
    storage.recover()
    new = claim(storage)
    assert not storage.release(old, "completed", value="1")
    assert storage.release(new, "completed", value="2")
    assert record(conn, job_id)["result"] == "2"


# -- rate limit ---------------------------------------------------------------------------------


def test_the_rate_limit_holds_in_a_sliding_window_without_reordering(app: Hueyard) -> None:
    storage: JobStorage = app.queue("limited").huey.storage
    storage.read_timeout = 0.05
    ids = [app.enqueue("limited", "limited_job", {"n": i}) for i in range(5)]
    got = [claim(storage).id for _ in range(3)]
    assert storage.claim() is None  # 3 per second: the 4th waits
    assert storage.queue_size() == 2  # nothing consumed, nothing lost
    time.sleep(1.0)
    got += [claim(storage).id for _ in range(2)]
    assert got == ids  # order kept
    for job_id in ids[3:]:
        assert (
            app.queue("limited").huey.storage.conn.hget(f"{{st:limited}}:job:{job_id}", "attempts")
            == b"1"
        )


def test_the_rate_limit_is_shared_by_every_storage_of_the_queue(
    app: Hueyard, redis_url: str
) -> None:
    # Two apps (two consumers, maybe on two hosts) share one limit through Redis.
    own_pool = redis.ConnectionPool(
        connection_class=app.pool.connection_class, **app.pool.connection_kwargs
    )
    other = Hueyard(app.settings, app.registry, pool=own_pool)
    try:
        first = app.queue("limited").huey.storage
        second = other.queue("limited").huey.storage
        first.read_timeout = second.read_timeout = 0.05
        for i in range(6):
            app.enqueue("limited", "limited_job", {"n": i})
        taken = [first.claim(), second.claim(), first.claim(), second.claim()]
        assert sum(c is not None for c in taken) == 3
    finally:
        other.close()


# -- pause -------------------------------------------------------------------------------------


def test_a_paused_queue_keeps_its_jobs_and_hands_out_none(
    app: Hueyard, storage: JobStorage, conn: redis.Redis
) -> None:
    [job_id] = enqueue(app)
    conn.set("{st:work}:paused", 1)
    assert storage.claim() is None
    assert state_of(conn, job_id) == "waiting"
    conn.delete("{st:work}:paused")
    assert claim(storage).id == job_id


# -- data hueyard did not write ------------------------------------------------------------------


def test_an_id_without_a_record_is_skipped(
    app: Hueyard, storage: JobStorage, conn: redis.Redis
) -> None:
    conn.zadd("{st:work}:waiting", {"ghost": 0})
    conn.set("{st:work}:job:not-a-hash", "x")
    conn.zadd("{st:work}:waiting", {"not-a-hash": 1})
    [job_id] = enqueue(app)
    assert claim(storage).id == job_id
    assert conn.zcard("{st:work}:waiting") == 0


def test_a_record_with_garbage_data_fails_with_the_reason(
    app: Hueyard, storage: JobStorage, conn: redis.Redis
) -> None:
    [job_id] = enqueue(app)
    conn.hset(f"{{st:work}}:job:{job_id}", "payload", b"\x80\x04pickle-or-worse")
    huey = app.queue("work").huey
    assert huey.dequeue() is None
    assert state_of(conn, job_id) == "failed"
    assert "not JSON written by hueyard" in record(conn, job_id)["error"]


def test_a_job_for_a_handler_that_no_longer_exists_fails_with_that_reason(
    app: Hueyard, storage: JobStorage, conn: redis.Redis
) -> None:
    [job_id] = enqueue(app)
    conn.hset(f"{{st:work}}:job:{job_id}", "handler", "work.renamed")
    assert app.queue("work").huey.dequeue() is None
    assert state_of(conn, job_id) == "failed"
    assert "no handler named 'work.renamed'" in record(conn, job_id)["error"]


def test_a_record_without_handler_or_payload_fails_with_the_reason(
    app: Hueyard, storage: JobStorage, conn: redis.Redis
) -> None:
    [job_id] = enqueue(app)
    conn.hdel(f"{{st:work}}:job:{job_id}", "payload")
    assert app.queue("work").huey.dequeue() is None
    assert state_of(conn, job_id) == "failed"
    assert "has no payload" in record(conn, job_id)["error"]
