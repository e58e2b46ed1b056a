"""Every Lua script checks before it writes: nothing is ever half-applied.

Redis keeps what a script wrote before a command that failed. So each script
checks, before its first write, every key it will write and every record it
will move (``framework/lua/_lib.lua``). These tests plant what hueyard never
writes, against the real Redis server, and prove for every script that:

- a key of the wrong type (a queue's set, its wake list, its sequence, a log
  list) stops the call with a :class:`StorageError` naming the key and the fix,
  and the database is byte for byte what it was (``DUMP`` of every key);
- a record that is not a hash, or whose numbers are not numbers, sends its job
  to ``failed`` with the reason; the job is never in two sets, or in none.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import uuid_utils

from framework.application import Hueyard
from framework.errors import JobActionError, StorageError
from framework.handlers import HandlerRegistry, handler
from framework.jobs import Cancel, Jobs
from framework.keys import JOB_STATES
from framework.options import NO_OPTIONS, Stored
from framework.record import Claim
from framework.storage import JobStorage
from tests.conftest import AppFactory, app_toml
from tests.integration.cli_runner import run

CONFIG = """
[consumer]
lease = 2

[queues.work]
attempts = 3
keep_failed = 100

[queues.limited]
rate_limit = { max = 5, per = 60 }
"""


@pytest.fixture
def app(make_app: AppFactory) -> Hueyard:
    registry = HandlerRegistry()

    @handler("work", registry=registry)
    def job(payload: dict[str, object]) -> object:
        return payload

    @handler("limited", registry=registry)
    def limited_job(payload: dict[str, object]) -> None: ...

    return make_app(CONFIG, registry, prefix="cf")


@pytest.fixture
def storage(app: Hueyard) -> JobStorage:
    storage: JobStorage = app.queue("work").storage
    storage.read_timeout = 0.1
    return storage


@pytest.fixture
def jobs(app: Hueyard) -> Jobs:
    return Jobs(app)


def snapshot(conn: redis.Redis) -> dict[bytes, tuple[bytes, bytes | None]]:
    """Every key of the test database: its type and its DUMP."""
    return {key: (conn.type(key), conn.dump(key)) for key in conn.scan_iter(count=1000)}


def states_of(conn: redis.Redis, job_id: str, queue: str = "work") -> list[str]:
    """The sets that hold ``job_id``: exactly one for a job that is somewhere."""
    found = []
    for state in JOB_STATES:
        key = f"{{cf:{queue}}}:{state}"
        if conn.type(key) == b"zset" and conn.zscore(key, job_id) is not None:
            found.append(state)
    return found


def claim(storage: JobStorage) -> Claim:
    claimed = storage.claim()
    assert claimed is not None, "expected a job to claim"
    return claimed


def plant(conn: redis.Redis, key: str, kind: str) -> None:
    """A key of type ``kind`` at ``key``, replacing whatever was there."""
    conn.delete(key)
    if kind == "string":
        conn.set(key, "planted")
    elif kind == "hash":
        conn.hset(key, "planted", "1")
    elif kind == "list":
        conn.rpush(key, "planted")
    elif kind == "set":
        conn.sadd(key, "planted")
    else:
        conn.zadd(key, {"planted": 1})


# -- a key of the wrong type: refused, nothing written ---------------------------------------

Scenario = Callable[[Hueyard, JobStorage, Jobs], Callable[[], Any]]
"""Set the stage (jobs in their states), then return the call under test."""


def _enqueue(app: Hueyard, storage: JobStorage, jobs: Jobs) -> Callable[[], Any]:
    return lambda: app.enqueue("work", "job", {"n": 1})


def _enqueue_delayed(app: Hueyard, storage: JobStorage, jobs: Jobs) -> Callable[[], Any]:
    return lambda: app.enqueue("work", "job", {"n": 1}, delay=60)


def _enqueue_many(app: Hueyard, storage: JobStorage, jobs: Jobs) -> Callable[[], Any]:
    return lambda: app.enqueue_many("work", "job", [{"n": i} for i in range(10)])


def _claim(app: Hueyard, storage: JobStorage, jobs: Jobs) -> Callable[[], Any]:
    app.enqueue("work", "job", {"n": 1})
    return storage.claim


def _claim_limited(app: Hueyard, storage: JobStorage, jobs: Jobs) -> Callable[[], Any]:
    app.enqueue("limited", "limited_job", {"n": 1})
    return app.queue("limited").storage.claim


def _release(outcome: str, *, fetch: bool = False) -> Scenario:
    def scenario(app: Hueyard, storage: JobStorage, jobs: Jobs) -> Callable[[], Any]:
        app.enqueue_many("work", "job", [{"n": 1}, {"n": 2}])
        claimed = claim(storage)
        if fetch:
            return lambda: storage.release_and_claim(claimed, outcome, value="{}", delay=5)
        return lambda: storage.release(claimed, outcome, value="{}", delay=5)

    return scenario


def _release_parent(children: str) -> Scenario:
    """A running parent released as completed: its children set (``children``: "pending",
    one child not finished yet; "string", a key of another type) is read before it writes."""

    def scenario(app: Hueyard, storage: JobStorage, jobs: Jobs) -> Callable[[], Any]:
        app.enqueue_many("work", "job", [{"n": 1}, {"n": 2}])
        claimed = claim(storage)
        links = storage.q.job(claimed.id) + ":children"
        storage.conn.hset(storage.q.job(claimed.id), "children", 1)  # it spawned one
        if children == "pending":
            storage.conn.zadd(links, {"work:a-child": 1})  # pending band: below CHILD_BAND
        else:
            storage.conn.set(links, "planted")
        return lambda: storage.release(claimed, "completed", value="{}")

    return scenario


def _promote(app: Hueyard, storage: JobStorage, jobs: Jobs) -> Callable[[], Any]:
    [job_id] = app.enqueue_many("work", "job", [{"n": 1}], delay=60)
    return lambda: jobs.promote("work", job_id)


def _promote_all(app: Hueyard, storage: JobStorage, jobs: Jobs) -> Callable[[], Any]:
    app.enqueue_many("work", "job", [{"n": 1}, {"n": 2}], delay=60)
    return lambda: jobs.promote_all("work")


def _failed_job(app: Hueyard, storage: JobStorage) -> str:
    app.enqueue("work", "job", {"n": 1})
    claimed = claim(storage)
    assert storage.release(claimed, "failed", value="ValueError: boom")
    return claimed.id


def _retry(app: Hueyard, storage: JobStorage, jobs: Jobs) -> Callable[[], Any]:
    job_id = _failed_job(app, storage)
    return lambda: jobs.retry("work", job_id)


def _retry_all(app: Hueyard, storage: JobStorage, jobs: Jobs) -> Callable[[], Any]:
    _failed_job(app, storage)
    return lambda: jobs.retry_all("work")


def _recover(app: Hueyard, storage: JobStorage, jobs: Jobs) -> Callable[[], Any]:
    app.enqueue("work", "job", {"n": 1})
    claimed = claim(storage)
    storage.conn.zadd(storage.q.active, {claimed.id: 0})  # its lease expired long ago
    return storage.recover


def _renew(app: Hueyard, storage: JobStorage, jobs: Jobs) -> Callable[[], Any]:
    app.enqueue("work", "job", {"n": 1})
    claimed = claim(storage)
    return lambda: storage.renew([claimed])


def _giveback(app: Hueyard, storage: JobStorage, jobs: Jobs) -> Callable[[], Any]:
    # A job claimed by a call whose answer was lost (tests/integration/test_lost_replies.py)
    app.enqueue("work", "job", {"n": 1})
    claimed = claim(storage)
    args = {
        "job_prefix": storage.q.job_prefix,
        "key_prefix": storage.q.key_prefix,
        "stats_prefix": storage.q.stats_prefix,
        "metrics_ttl": 90000,
        "default_priority": 5,
        "keep_failed": 100,
        "limit": 100,
    }
    return lambda: storage.scripts.call("giveback", storage.q, args=args, rows=[(claimed.token,)])


def _cancel(app: Hueyard, storage: JobStorage, jobs: Jobs) -> Callable[[], Any]:
    job_id = app.enqueue("work", "job", {"n": 1})
    return lambda: jobs.cancel("work", job_id)


def _remove(app: Hueyard, storage: JobStorage, jobs: Jobs) -> Callable[[], Any]:
    job_id = app.enqueue("work", "job", {"n": 1})
    return lambda: jobs.remove("work", job_id)


def _clean(app: Hueyard, storage: JobStorage, jobs: Jobs) -> Callable[[], Any]:
    return lambda: jobs.clean("work", "completed", 0)


def _resume(app: Hueyard, storage: JobStorage, jobs: Jobs) -> Callable[[], Any]:
    app.enqueue("work", "job", {"n": 1})
    jobs.pause("work")
    return lambda: jobs.resume("work")


def _log(app: Hueyard, storage: JobStorage, jobs: Jobs) -> Callable[[], Any]:
    app.enqueue("work", "job", {"n": 1})
    claimed = claim(storage)
    storage.conn.set(storage.q.job(claimed.id) + ":logs", "planted")
    return lambda: storage.report(claimed, "log", "a line")


WRONG_TYPES: list[tuple[str, Scenario, str, str]] = [
    # (what, scenario, the planted key's name under {cf:work}: or a full key, its type)
    ("enqueue", _enqueue, "waiting", "string"),
    ("enqueue", _enqueue, "wake", "hash"),
    ("enqueue", _enqueue, "seq", "list"),
    ("enqueue with a delay", _enqueue_delayed, "delayed", "set"),
    ("enqueue_many", _enqueue_many, "waiting", "hash"),
    ("claim", _claim, "active", "string"),
    ("claim", _claim, "failed", "list"),
    ("claim on a rate-limited queue", _claim_limited, "{cf:limited}:limiter", "string"),
    ("release completed", _release("completed"), "completed", "string"),
    ("release completed", _release_parent("pending"), "waiting-children", "list"),
    ("release completed", _release_parent("string"), "{cf:work}:job:*:children", "string"),
    ("release completed", _release("completed"), "outbox", "string"),
    ("release failed", _release("failed"), "outbox", "hash"),
    ("claim", _claim, "outbox", "list"),
    ("promote", _promote, "outbox", "string"),
    ("recover", _recover, "outbox", "hash"),
    ("giveback", _giveback, "outbox", "string"),
    ("cancel", _cancel, "waiting-children", "string"),
    ("cancel", _cancel, "outbox", "list"),
    ("remove", _remove, "outbox", "string"),
    ("release failed", _release("failed"), "failed", "hash"),
    ("release retry", _release("retry"), "delayed", "list"),
    ("release requeue", _release("requeue"), "wake", "string"),
    ("release and claim the next", _release("completed", fetch=True), "failed", "string"),
    ("promote", _promote, "waiting", "string"),
    ("promote", _promote, "seq", "hash"),
    ("promote_all", _promote_all, "wake", "string"),
    ("retry", _retry, "waiting", "list"),
    ("retry_all", _retry_all, "failed", "string"),
    ("recover", _recover, "waiting", "hash"),
    ("recover", _recover, "failed", "string"),
    ("renew", _renew, "active", "list"),
    ("giveback", _giveback, "waiting", "hash"),
    ("giveback", _giveback, "wake", "string"),
    ("cancel", _cancel, "failed", "string"),
    ("cancel", _cancel, "completed", "list"),
    ("clean", _clean, "completed", "string"),
    ("resume", _resume, "waiting", "hash"),
    ("a log line", _log, "{cf:work}:job:*:logs", "string"),
]


@pytest.mark.parametrize(
    ("what", "scenario", "name", "kind"),
    WRONG_TYPES,
    ids=[f"{what}-{name}-{kind}" for what, _, name, kind in WRONG_TYPES],
)
def test_a_key_of_the_wrong_type_stops_the_call_before_it_writes_anything(
    app: Hueyard, storage: JobStorage, jobs: Jobs, redis_conn: redis.Redis,
    what: str, scenario: Scenario, name: str, kind: str,
) -> None:  # fmt: skip
    # Given the jobs the call works on, and a key it writes holding another type
    call = scenario(app, storage, jobs)
    if "*" in name:  # planted by the scenario, under the job's id
        [key] = [k.decode() for k in redis_conn.scan_iter(name)]
    else:
        key = name if name.startswith("{") else f"{{cf:work}}:{name}"
        plant(redis_conn, key, kind)
    before = snapshot(redis_conn)
    # When the call runs
    with pytest.raises(StorageError) as caught:
        call()
    # Then it says which key is wrong, and how to fix it
    message = str(caught.value)
    assert repr(key) in message, message
    assert "DEL or RENAME" in message
    assert "reconnection" not in message  # Redis answered: never reported as an outage
    # and nothing was written: every key is byte for byte what it was
    assert snapshot(redis_conn) == before


def test_a_sequence_that_is_not_a_number_stops_enqueue_before_it_writes(
    app: Hueyard, redis_conn: redis.Redis
) -> None:
    # Given the queue's enqueue sequence holds text
    redis_conn.set("{cf:work}:seq", "twelve")
    before = snapshot(redis_conn)
    # When a job is enqueued, Then the sequence is named and nothing is stored
    with pytest.raises(StorageError, match=r"'\{cf:work\}:seq' holds something other than"):
        app.enqueue("work", "job", {"n": 1})
    assert snapshot(redis_conn) == before


# -- enqueue_many: nothing of a refused batch, and the truth about earlier ones --------------


@pytest.fixture
def known_ids(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The ids the next enqueues make, in order (made known in advance)."""
    ids = [str(uuid_utils.UUID(int=n + 1, version=7)) for n in range(2000)]
    made = iter(ids)
    monkeypatch.setattr(uuid_utils, "uuid7", lambda: next(made))
    yield ids


def test_a_batch_whose_third_key_is_taken_stores_none_of_its_jobs(
    app: Hueyard, redis_conn: redis.Redis, known_ids: list[str]
) -> None:
    # Given the record key of the 3rd of 10 jobs holds a string
    taken = app.keys.job("work", known_ids[2])
    redis_conn.set(taken, "planted")
    before = snapshot(redis_conn)
    # When the 10 are enqueued in one call
    with pytest.raises(StorageError) as caught:
        app.enqueue_many("work", "job", [{"n": i} for i in range(10)])
    # Then the key is named, and not one of the 10 was stored
    assert repr(taken) in str(caught.value)
    assert "Nothing was stored" in str(caught.value)
    assert caught.value.stored == ()
    assert snapshot(redis_conn) == before


def test_a_failed_batch_says_which_jobs_the_earlier_batches_stored(
    app: Hueyard, jobs: Jobs, redis_conn: redis.Redis, known_ids: list[str]
) -> None:
    # Given the record key of job #550 of 600 (in the second batch of 500) is taken
    redis_conn.set(app.keys.job("work", known_ids[549]), "planted")
    # When the 600 are enqueued
    with pytest.raises(StorageError) as caught:
        app.enqueue_many("work", "job", [{"n": i} for i in range(600)])
    # Then the error says the first 500 were stored, and they are; none of the others
    assert "The first 500 of 600 jobs were stored" in str(caught.value)
    assert caught.value.stored == tuple(known_ids[:500])
    assert jobs.counts("work").waiting == 500
    assert all(not redis_conn.exists(app.keys.job("work", job_id)) for job_id in known_ids[500:549])


def test_an_enqueue_sent_twice_after_a_lost_answer_stores_its_jobs_once(
    app: Hueyard, storage: JobStorage, jobs: Jobs
) -> None:
    # Given one enqueue call's batch (its ids fixed)
    args = storage._enqueue_args("work.job", NO_OPTIONS)
    rows = [("a-1", b'{"n":1}', ""), ("a-2", b'{"n":2}', "")]
    # When Redis runs it twice (the client resent it: the first answer was lost)
    assert storage.scripts.call("enqueue", storage.q, args=args, rows=rows) == [2]
    assert storage.scripts.call("enqueue", storage.q, args=args, rows=rows) == [0]
    # Then each job is stored once, and waits once
    assert jobs.counts("work").waiting == 2
    # But an id that holds another job (another payload, or another handler) is refused
    other = [("a-1", b'{"n":3}', "")]
    with pytest.raises(StorageError, match="exists already"):
        storage.scripts.call("enqueue", storage.q, args=args, rows=other)
    elsewhere = storage._enqueue_args("work.other", NO_OPTIONS)
    with pytest.raises(StorageError, match="exists already"):
        storage.scripts.call("enqueue", storage.q, args=elsewhere, rows=rows[1:])
    assert jobs.counts("work").waiting == 2


# -- records hueyard did not write: to failed with the reason, never lost ---------------------

GARBAGE_FIELDS = [
    ("attempts", "abc", 'attempts is "abc", not a whole number from 0 up'),
    ("attempts", "007", 'attempts is "007"'),
    ("priority", "high", 'priority is "high", not a whole number from 1 to 10'),
    ("priority", "99", 'priority is "99", not a whole number from 1 to 10'),
    ("max_attempts", "0x10", 'max_attempts is "0x10", not a whole number from 1 to 100'),
    ("timeout", "nan", 'timeout is "nan", not seconds above 0'),
    ("timeout", "-5", 'timeout is "-5"'),
    ("seq", "1e3", 'seq is "1e3"'),
    ("stalls", " 1", 'stalls is " 1"'),
    ("keep_failed", "all", 'keep_failed is "all"'),
]


def _garbage_ids(params: list[tuple[str, str, str]]) -> list[str]:
    return [f"{field}={value!r}" for field, value, _ in params]


def corrupt_reason(conn: redis.Redis, job_id: str) -> str:
    error = conn.hget(f"{{cf:work}}:job:{job_id}", "error")
    assert error is not None, "the failed job says why"
    return str(error.decode())


@pytest.mark.parametrize(
    ("field", "value", "reason"), GARBAGE_FIELDS, ids=_garbage_ids(GARBAGE_FIELDS)
)
def test_claim_fails_a_corrupt_job_with_the_reason_and_takes_the_next(
    app: Hueyard, storage: JobStorage, redis_conn: redis.Redis, field: str, value: str, reason: str
) -> None:
    # Given a waiting job whose record holds garbage in a number field, and a good one behind it
    bad, good = app.enqueue_many("work", "job", [{"n": 1}, {"n": 2}])
    redis_conn.hset(app.keys.job("work", bad), field, value)
    # When a worker claims, Then it gets the good job
    assert claim(storage).id == good
    # and the corrupt one is failed, with the field named, never run and never lost
    assert states_of(redis_conn, bad) == ["failed"]
    assert corrupt_reason(redis_conn, bad).startswith(f"corrupt record: {reason}")
    assert redis_conn.hget(app.keys.job("work", bad), "attempts") == (
        value.encode() if field == "attempts" else None
    )


def test_claim_fails_a_record_with_neither_handler_nor_payload_and_takes_the_next(
    app: Hueyard, storage: JobStorage, redis_conn: redis.Redis
) -> None:
    # Given a waiting job whose record lost its handler and its payload (a hash that
    # still holds other fields), and a good one behind it
    bad, good = app.enqueue_many("work", "job", [{"n": 1}, {"n": 2}], priority=3)
    redis_conn.hdel(app.keys.job("work", bad), "handler", "payload")
    assert redis_conn.hgetall(app.keys.job("work", bad)) == {b"priority": b"3"}
    # When a worker claims, Then it gets the good job, and the bad one is failed with why
    assert claim(storage).id == good
    assert states_of(redis_conn, bad) == ["failed"]
    assert corrupt_reason(redis_conn, bad) == (
        "corrupt record: it has no handler and no payload; correct the field (HSET) and "
        "retry the job, or remove it"
    )


@pytest.mark.parametrize(
    ("field", "value", "reason"), GARBAGE_FIELDS, ids=_garbage_ids(GARBAGE_FIELDS)
)
def test_promote_recover_cancel_and_release_fail_a_corrupt_job_with_the_reason(
    app: Hueyard, storage: JobStorage, jobs: Jobs, redis_conn: redis.Redis,
    field: str, value: str, reason: str,
) -> None:  # fmt: skip
    # Given a delayed job, a job whose consumer died, a waiting job and a running
    # job, each of whose records then turns corrupt
    [delayed] = app.enqueue_many("work", "job", [{"n": 0}], delay=60)
    [stalled, running, waiting] = app.enqueue_many("work", "job", [{"n": i} for i in range(3)])
    stalled_claim, running_claim = claim(storage), claim(storage)
    redis_conn.zadd(storage.q.active, {stalled_claim.id: 0})  # its lease expired
    for job_id in (delayed, stalled, waiting, running):
        redis_conn.hset(app.keys.job("work", job_id), field, value)
    # When each is moved by its script
    assert jobs.promote("work", delayed) is False
    assert storage.recover() == (0, 1)
    assert jobs.cancel("work", waiting) is Cancel.CANCELLED
    assert (
        storage.release(running_claim, "requeue") is Stored.CORRUPT
    )  # stored: failed, with the reason
    # Then each is failed with the reason, in that one set
    for job_id in (delayed, stalled, waiting, running):
        assert states_of(redis_conn, job_id) == ["failed"], job_id
        assert corrupt_reason(redis_conn, job_id).startswith(f"corrupt record: {reason}")


def test_retry_keeps_a_corrupt_job_failed_with_the_reason(
    app: Hueyard, storage: JobStorage, jobs: Jobs, redis_conn: redis.Redis
) -> None:
    # Given two failed jobs, the older one's priority garbage
    bad, good = _failed_job(app, storage), _failed_job(app, storage)
    redis_conn.hset(app.keys.job("work", bad), "priority", "urgent")
    # When one is retried by hand, Then the call says why it can not be
    with pytest.raises(JobActionError, match=r"stays failed: its record is corrupt \(priority"):
        jobs.retry("work", bad)
    # and retry_all moves the good one and keeps the corrupt one failed, with the reason,
    # saying it stepped over one
    moved = jobs.retry_all("work")
    assert (moved, moved.skipped) == (1, 1)
    assert states_of(redis_conn, good) == ["waiting"]
    assert states_of(redis_conn, bad) == ["failed"]
    assert corrupt_reason(redis_conn, bad).startswith('corrupt record: priority is "urgent"')


def test_retry_all_steps_over_corrupt_jobs_batch_after_batch(
    app: Hueyard, storage: JobStorage, jobs: Jobs, redis_conn: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # Given 12 failed jobs, the 5 oldest corrupt, and batches of 4
    failed = [_failed_job(app, storage) for _ in range(12)]
    for job_id in failed[:5]:
        redis_conn.hset(app.keys.job("work", job_id), "attempts", "many")
    monkeypatch.setattr("framework.defaults.BULK_BATCH", 4)
    # When every failed job is retried, Then the 7 good ones are, past the corrupt ones
    moved = jobs.retry_all("work")
    assert (moved, moved.skipped) == (7, 5)
    assert jobs.counts("work").failed == 5


KEY_KINDS = ["string", "list", "set"]


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_a_job_key_that_is_not_a_hash_goes_to_failed_from_every_state(
    app: Hueyard, storage: JobStorage, jobs: Jobs, redis_conn: redis.Redis, kind: str
) -> None:
    # Given a waiting, a delayed, a stalled and a cancel-bound job whose keys turn into a {kind}
    [delayed] = app.enqueue_many("work", "job", [{"n": 0}], delay=60)
    [stalled, claimed, cancelled] = app.enqueue_many("work", "job", [{"n": i} for i in range(3)])
    stalled_claim = claim(storage)
    redis_conn.zadd(storage.q.active, {stalled_claim.id: 0})
    for job_id in (delayed, stalled, claimed, cancelled):
        plant(redis_conn, app.keys.job("work", job_id), kind)
    # When each one's script meets it
    assert jobs.promote("work", delayed) is False
    assert storage.recover() == (0, 1)
    assert jobs.cancel("work", cancelled) is Cancel.CANCELLED
    assert storage.claim() is None  # the waiting one is not run
    # Then each is in failed, and reads with what is wrong
    for job_id in (delayed, stalled, claimed, cancelled):
        assert states_of(redis_conn, job_id) == ["failed"], job_id
        info = jobs.get(job_id)
        assert info is not None and info.problem is not None
        assert "not a job record (not a hash)" in info.problem
    # and retry keeps it there (it could not run), where remove deletes it
    with pytest.raises(JobActionError, match="its key is a"):
        jobs.retry("work", delayed)
    assert jobs.remove("work", delayed) is True
    assert states_of(redis_conn, delayed) == [] and not redis_conn.exists(
        app.keys.job("work", delayed)
    )


def test_a_running_job_whose_key_turns_into_a_string_is_not_released_but_recovered_to_failed(
    app: Hueyard, storage: JobStorage, redis_conn: redis.Redis
) -> None:
    app.enqueue("work", "job", {"n": 1})
    claimed = claim(storage)
    plant(redis_conn, app.keys.job("work", claimed.id), "string")
    # The worker can not prove it holds the job any more: its outcome is dropped
    assert storage.release(claimed, "completed", value="{}") is Stored.DROPPED
    assert storage.renew([claimed]) == ([claimed.id], [])
    assert states_of(redis_conn, claimed.id) == ["active"]
    # and once its lease expires, recover files it as failed
    redis_conn.zadd(storage.q.active, {claimed.id: 0})
    assert storage.recover() == (0, 1)
    assert states_of(redis_conn, claimed.id) == ["failed"]


def test_remove_deletes_a_job_even_when_other_sets_are_planted_keys(
    app: Hueyard, jobs: Jobs, redis_conn: redis.Redis
) -> None:
    # Given a waiting job, and the queue's completed and active keys of other types
    job_id = app.enqueue("work", "job", {"n": 1})
    plant(redis_conn, "{cf:work}:completed", "string")
    plant(redis_conn, "{cf:work}:active", "list")
    # When it is removed, Then it is gone, and the planted keys are untouched
    assert jobs.remove("work", job_id) is True
    assert states_of(redis_conn, job_id) == []
    assert redis_conn.get("{cf:work}:completed") == b"planted"


def test_metrics_keys_of_the_wrong_type_never_stop_a_release(
    app: Hueyard, storage: JobStorage, redis_conn: redis.Redis
) -> None:
    # Given every per-minute metrics key of the next minutes planted with garbage
    app.enqueue_many("work", "job", [{"n": 1}, {"n": 2}])
    minute = int(time.time() // 60)
    for m in range(minute - 1, minute + 3):
        plant(redis_conn, f"{{cf:work}}:stats:{m}", "string")
        plant(redis_conn, f"{{cf:work}}:stats:{m}:ms", "hash")
    # When jobs complete and fail, Then they are filed: a metric is never a reason to stop
    first, second = claim(storage), claim(storage)
    assert storage.release(first, "completed", value="{}")
    assert storage.release(second, "failed", value="ValueError: x")
    assert states_of(redis_conn, first.id) == ["completed"]
    assert states_of(redis_conn, second.id) == ["failed"]


# -- how the errors reach people --------------------------------------------------------------


def test_a_worker_meeting_a_wrong_type_says_once_naming_the_key_and_takes_nothing(
    app: Hueyard, redis_conn: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    app.enqueue("work", "job", {"n": 1})
    redis_conn.set("{cf:work}:active", "planted")
    huey = app.queue("work").huey
    # a worker's loop: no traceback a turn (Huey's "Error reading from queue"), one line
    assert [huey.dequeue(), huey.dequeue()] == [None, None]
    told = [r.getMessage() for r in caplog.records if "{cf:work}:active" in r.getMessage()]
    assert len(told) == 1, told
    assert (
        "Redis refuses the queue's calls (WrongKeyError: Redis key '{cf:work}:active' is a "
        "string, not the sorted set" in told[0]
    )


def test_a_worker_blocked_on_a_wake_key_of_the_wrong_type_is_told_which(
    app: Hueyard, storage: JobStorage, redis_conn: redis.Redis
) -> None:
    redis_conn.set("{cf:work}:wake", "planted")
    with pytest.raises(StorageError, match=r"'\{cf:work\}:wake' is a string, not the list"):
        storage.claim()


def test_the_cli_names_the_key_in_one_line_instead_of_a_traceback(
    redis_conn: redis.Redis, tmp_path: Path, redis_url: str
) -> None:
    config = tmp_path / "queues.toml"
    config.write_text(app_toml(redis_url, "[queues.work]", prefix="cf"))
    redis_conn.set("{cf:work}:failed", "planted")
    result = run(
        ["retry", "work", "--all"],
        env={"HUEYARD_CONFIG": str(config), "HUEYARD_HANDLER_PACKAGES": ""},
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("hueyard: error: Redis key '{cf:work}:failed' is a string"), last
