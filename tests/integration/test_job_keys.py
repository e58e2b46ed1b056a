"""Job keys: enqueue(key=...) stores a job once while one with the key is unfinished.

Against the real Redis server: the key index is taken in the enqueue script
itself, so producers racing with one key make one job, and it is freed (or
kept ``key_ttl`` seconds) by the script that finishes the job.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis

from framework.application import Hueyard
from framework.errors import OptionError
from framework.handlers import HandlerRegistry, handler
from framework.jobs import Jobs
from framework.storage import JobStorage
from tests.conftest import AppFactory

CONFIG = """
[queues.work]
attempts = 3

[queues.other]
"""


@pytest.fixture
def app(make_app: AppFactory) -> Hueyard:
    registry = HandlerRegistry()

    @handler("work", registry=registry)
    def send(payload: dict[str, Any]) -> None: ...

    @handler("other", registry=registry)
    def audit(payload: dict[str, Any]) -> None: ...

    app = make_app(CONFIG, registry, prefix="jk")
    app.queue("work").storage.read_timeout = 0.1
    return app


@pytest.fixture
def storage(app: Hueyard) -> JobStorage:
    return app.queue("work").storage


def index(conn: redis.Redis, key: str, queue: str = "work") -> bytes | None:
    value: bytes | None = conn.get(f"{{jk:{queue}}}:key:{key}")
    return value


def finish(storage: JobStorage, outcome: str, **extra: Any) -> str:
    claim = storage.claim()
    assert claim is not None
    assert storage.release(claim, outcome, **extra)
    return claim.id


def test_a_key_held_by_an_unfinished_job_returns_that_job_and_stores_nothing(
    app: Hueyard, redis_conn: redis.Redis
) -> None:
    first = app.enqueue("work", "send", {"to": "+1"}, key="order-7:confirmation")
    again = app.enqueue("work", "send", {"to": "+2"}, key="order-7:confirmation")
    assert again == first
    assert Jobs(app).counts("work").waiting == 1
    assert Jobs(app).get(first).payload == {"to": "+1"}  # the first one's payload
    # the same key on another queue is another key
    assert app.enqueue("other", "audit", {}, key="order-7:confirmation") != first


def test_eight_producers_racing_with_one_key_make_exactly_one_job(app: Hueyard) -> None:
    ready, ids = threading.Barrier(8), []

    def produce() -> None:
        ready.wait()
        ids.append(app.enqueue("work", "send", {"n": 1}, key="race"))

    threads = [threading.Thread(target=produce) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 8 and len(set(ids)) == 1
    assert Jobs(app).counts("work").waiting == 1


@pytest.mark.parametrize("state", ["delayed", "active", "waiting for its retry", "paused"])
def test_the_key_is_held_in_every_unfinished_state(
    app: Hueyard, storage: JobStorage, state: str
) -> None:
    job_id = app.enqueue("work", "send", {}, key="k", delay=60 if state == "delayed" else None)
    if state == "active":
        assert storage.claim() is not None
    elif state == "waiting for its retry":
        finish(storage, "retry", value="ValueError: try later", delay=60)
    elif state == "paused":
        Jobs(app).pause("work")
    assert app.enqueue("work", "send", {}, key="k") == job_id


@pytest.mark.parametrize("outcome", ["completed", "failed"])
def test_the_key_is_freed_when_the_job_finishes(
    app: Hueyard, storage: JobStorage, redis_conn: redis.Redis, outcome: str
) -> None:
    job_id = app.enqueue("work", "send", {}, key="k")
    finish(storage, outcome, value="{}" if outcome == "completed" else "ValueError: no")
    assert index(redis_conn, "k") is None  # nothing left behind
    assert app.enqueue("work", "send", {}, key="k") != job_id


def test_key_ttl_keeps_the_key_taken_for_that_long_after_the_job_finished(
    app: Hueyard, storage: JobStorage, redis_conn: redis.Redis
) -> None:
    job_id = app.enqueue("work", "send", {}, key="k", key_ttl=1)
    finish(storage, "completed", value="{}")
    assert app.enqueue("work", "send", {}, key="k") == job_id  # a late duplicate: refused
    assert 0 < redis_conn.pttl("{jk:work}:key:k") <= 1000  # and the index expires
    time.sleep(1.1)
    assert app.enqueue("work", "send", {}, key="k") != job_id


@pytest.mark.parametrize("action", ["cancel", "remove"])
def test_cancel_and_remove_free_the_key(app: Hueyard, redis_conn: redis.Redis, action: str) -> None:
    job_id = app.enqueue("work", "send", {}, key="k", key_ttl=3600)
    getattr(Jobs(app), action)("work", job_id)
    if action == "remove":
        assert index(redis_conn, "k") is None  # removed: the key goes at once
    else:
        assert index(redis_conn, "k") == job_id.encode()  # failed "cancelled": kept its ttl
        assert 0 < redis_conn.pttl("{jk:work}:key:k") <= 3_600_000


def test_a_failed_job_retried_by_hand_takes_its_key_again(
    app: Hueyard, storage: JobStorage
) -> None:
    job_id = app.enqueue("work", "send", {}, key="k", attempts=1)
    finish(storage, "failed", value="ValueError: no")
    assert Jobs(app).retry("work", job_id)
    assert app.enqueue("work", "send", {}, key="k") == job_id


def test_an_index_left_by_a_record_deleted_by_hand_is_taken_over(
    app: Hueyard, redis_conn: redis.Redis
) -> None:
    job_id = app.enqueue("work", "send", {}, key="k")
    redis_conn.delete(f"{{jk:work}}:job:{job_id}")  # an operator's DEL
    redis_conn.zrem("{jk:work}:waiting", job_id)
    assert app.enqueue("work", "send", {}, key="k") != job_id


def test_enqueue_many_takes_one_key_per_payload(app: Hueyard) -> None:
    held = app.enqueue("work", "send", {"n": 0}, key="a")
    ids = app.enqueue_many(
        "work", "send", [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}], keys=["a", "b", None, "b"]
    )
    assert ids[0] == held  # held by the earlier job
    assert ids[3] == ids[1]  # one key twice in one call: one job
    assert len(set(ids)) == 3
    assert Jobs(app).counts("work").waiting == 3
    assert ids.existing == {0, 3}  # nothing new stored for these two


def test_enqueue_many_tells_new_jobs_from_held_keys_across_batches(app: Hueyard) -> None:
    # Given 700 keys taken by a first call (two of the storage's 500-job batches)
    first = app.enqueue_many("work", "send", [{"n": n} for n in range(700)],
                             keys=[f"c:{n}" for n in range(700)])  # fmt: skip
    assert first.existing == frozenset()

    # When 1,000 payloads are enqueued with the same 700 keys and 300 new ones
    again = app.enqueue_many("work", "send", [{"n": n} for n in range(1000)],
                             keys=[f"c:{n}" for n in range(1000)])  # fmt: skip

    # Then exactly the first 700 positions are reported as held, with their holders' ids
    assert again.existing == frozenset(range(700))
    assert again[:700] == first
    assert Jobs(app).counts("work").waiting == 1000


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda app: app.enqueue("work", "send", {}, key=""), "key='' is not allowed"),
        (lambda app: app.enqueue("work", "send", {}, key="a\nb"), "without control characters"),
        # C1 controls (NEL, CSI), a line separator and a direction mark, not only C0
        (lambda app: app.enqueue("work", "send", {}, key="a\x85b"), "line breaks or direction"),
        (lambda app: app.enqueue("work", "send", {}, key="\x9b31m"), "31m' is not allowed"),
        (lambda app: app.enqueue("work", "send", {}, key="a\u2028b"), "without control"),
        (lambda app: app.enqueue("work", "send", {}, key="gpj.\u202eexe"), "direction marks"),
        (lambda app: app.enqueue("work", "send", {}, key="x" * 257), "1 to 256 characters"),
        (lambda app: app.enqueue("work", "send", {}, key=7), "key=7 is not allowed"),
        (lambda app: app.enqueue("work", "send", {}, key_ttl=5), "pass key= with it"),
        (lambda app: app.enqueue("work", "send", {}, key="k", key_ttl=0), "key_ttl=0"),
        (lambda app: app.enqueue_many("work", "send", [{}], key="k"), "keys=[...], one key"),
        (lambda app: app.enqueue_many("work", "send", [{}, {}], keys=["k"]), "1 keys for 2"),
        (lambda app: app.enqueue_many("work", "send", [{}], keys=[""]), "keys[0]: key=''"),
    ],
)
def test_a_bad_key_is_refused_before_anything_is_stored(
    app: Hueyard, call: Any, message: str
) -> None:
    with pytest.raises(OptionError, match=message.replace("[", r"\[").replace("(", r"\(")):
        call(app)
    assert Jobs(app).counts("work").waiting == 0
