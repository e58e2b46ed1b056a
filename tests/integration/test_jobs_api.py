"""The read/act API (framework.jobs) against the real Redis server.

Jobs are put into their states by driving the storage directly (claim, then
release), so no consumer runs. How many round trips each call takes is the
business of ``python -m benchmarks.calls``, which counts them on the wire.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

import pytest
import redis
import uuid_utils

from framework import defaults
from framework.application import Hueyard
from framework.consumer import MultiQueueConsumer
from framework.errors import JobActionError, QueueError, RedisUnavailableError
from framework.handlers import HandlerRegistry, handler
from framework.jobs import JobInfo, JobLocation, Jobs
from framework.serializer import dumps
from framework.storage import Claim, JobStorage
from tests.conftest import AppFactory

CONFIG = """
[queues.work]
attempts = 1
keep_completed = 100000
keep_failed = 100000

[queues.other]
"""


@pytest.fixture
def app(make_app: AppFactory) -> Hueyard:
    registry = HandlerRegistry()

    @handler("work", registry=registry)
    def job(payload: dict[str, object]) -> object:
        return payload

    @handler("other", registry=registry)
    def other_job(payload: dict[str, object]) -> None: ...

    return make_app(CONFIG, registry, prefix="jt")


@pytest.fixture
def jobs(app: Hueyard) -> Jobs:
    return Jobs(app)


@pytest.fixture
def storage(app: Hueyard) -> JobStorage:
    storage: JobStorage = app.queue("work").huey.storage
    storage.read_timeout = 0.1
    return storage


def add(app: Hueyard, n: int = 1, queue: str = "work", **options: Any) -> list[str]:
    handler = "job" if queue == "work" else "other_job"
    return app.enqueue_many(queue, handler, [{"n": i} for i in range(n)], **options)


def claim(storage: JobStorage) -> Claim:
    claimed = storage.claim()
    assert claimed is not None, "expected a job to claim"
    return claimed


def finish(storage: JobStorage, outcome: str, n: int = 1) -> list[str]:
    """Claim the next ``n`` jobs and release them with ``outcome``."""
    ids = []
    for _ in range(n):
        claimed = claim(storage)
        value = '{"ok":1}' if outcome == "completed" else f"ValueError: boom {claimed.id}"
        assert storage.release(claimed, outcome, value=value, traceback="Traceback: ...")
        ids.append(claimed.id)
    return ids


def ids_of(items: tuple[JobInfo, ...]) -> list[str]:
    return [item.id for item in items]


# -- counts -----------------------------------------------------------------------------------


def test_counts_give_every_state(app: Hueyard, jobs: Jobs, storage: JobStorage) -> None:
    # Given 2 completed, 1 failed, 1 active, 3 waiting and 2 delayed jobs
    add(app, 7)
    add(app, 2, delay=60)
    finish(storage, "completed", 2)
    finish(storage, "failed")
    claim(storage)
    # When
    counts = jobs.counts("work")
    # Then
    assert counts.to_json() == {
        "waiting": 3,
        "active": 1,
        "delayed": 2,
        "completed": 2,
        "failed": 1,
        "paused": 0,
        "waiting-children": 0,
        "isPaused": False,
    }
    assert counts.queue == "work"


def test_counts_all_covers_every_queue_in_config_order(app: Hueyard, jobs: Jobs) -> None:
    add(app, 2)
    add(app, 3, queue="other")
    jobs.pause("other")
    counts = jobs.counts_all()
    assert list(counts) == ["work", "other"]
    assert (counts["work"].waiting, counts["work"].paused) == (2, 0)
    assert (counts["other"].waiting, counts["other"].paused, counts["other"].is_paused) == (
        0, 3, True,
    )  # fmt: skip


def test_an_unknown_queue_names_the_declared_ones(jobs: Jobs) -> None:
    with pytest.raises(QueueError, match="unknown queue 'nope'; declared queues: work, other"):
        jobs.counts("nope")
    with pytest.raises(QueueError, match="declared queues: work, other"):
        jobs.retry_all("nope")


# -- pause and resume -------------------------------------------------------------------------


def test_a_paused_queue_holds_its_jobs_as_paused_until_resumed(
    app: Hueyard, jobs: Jobs, storage: JobStorage, redis_conn: redis.Redis
) -> None:
    # Given a queue with 3 waiting jobs, paused
    ids = add(app, 3)
    redis_conn.delete(storage.q.wake)
    assert jobs.pause("work") is True
    assert jobs.pause("work") is False  # already paused
    # Then nothing is handed out, and the jobs count (and list) as paused
    assert jobs.is_paused("work")
    assert storage.claim() is None
    counts = jobs.counts("work")
    assert (counts.waiting, counts.paused, counts.is_paused) == (0, 3, True)
    assert ids_of(jobs.list_jobs("work", "paused").items) == ids
    assert jobs.list_jobs("work", "waiting").total == 0
    assert jobs.find(ids[0]) == JobLocation("work", "paused")
    job = jobs.get(ids[0])
    assert job is not None and job.state == "paused"
    # When resumed
    assert jobs.resume("work") is True
    assert jobs.resume("work") is False  # not paused any more
    # Then idle workers are woken (one token per waiting job) and claims work again
    assert redis_conn.llen(storage.q.wake) == 3
    assert not jobs.is_paused("work")
    assert claim(storage).id == ids[0]
    assert jobs.counts("work").to_json()["waiting"] == 2


def test_resume_pushes_at_most_64_wake_tokens(
    app: Hueyard, jobs: Jobs, storage: JobStorage, redis_conn: redis.Redis
) -> None:
    add(app, 100)
    jobs.pause("work")
    redis_conn.delete(storage.q.wake)  # the tokens of the enqueue were taken meanwhile
    jobs.resume("work")
    assert redis_conn.llen(storage.q.wake) == 64


# -- pages ------------------------------------------------------------------------------------


def test_waiting_jobs_are_listed_in_run_order_one_bounded_page_at_a_time(
    app: Hueyard, jobs: Jobs
) -> None:
    # Given 7 waiting jobs of mixed priorities
    labels = {}
    for label, priority in [("a", 10), ("b", 1), ("c", 5), ("d", 1), ("e", 10), ("f", 5), ("g", 1)]:
        labels[app.enqueue("work", "job", {"l": label}, priority=priority)] = label
    # When listed 3 at a time
    first = jobs.list_jobs("work", "waiting", page=1, page_size=3)
    # Then: a page of page_size jobs, and how many pages there are
    assert (first.total, first.page, first.pages, first.has_next, first.has_previous) == (
        7, 1, 3, True, False,
    )  # fmt: skip
    pages = [first] + [jobs.list_jobs("work", "waiting", page=p, page_size=3) for p in (2, 3)]
    order = [labels[item.id] for page in pages for item in page.items]
    assert order == ["b", "d", "g", "c", "f", "a", "e"]  # priority 1 first, FIFO within
    assert len(pages[2].items) == 1 and not pages[2].has_next
    # A page past the end is empty, not an error
    beyond = jobs.list_jobs("work", "waiting", page=4, page_size=3)
    assert (beyond.items, beyond.total, beyond.pages) == ((), 7, 3)
    item = first.items[0]
    assert (item.state, item.queue, item.name, item.handler, item.payload) == (
        "waiting", "work", "work.job", "job", {"l": "b"},
    )  # fmt: skip
    assert item.logs == ()  # only get() reads log lines


def test_finished_delayed_and_active_jobs_are_listed_newest_first(
    app: Hueyard, jobs: Jobs, storage: JobStorage
) -> None:
    add(app, 6)
    completed = finish(storage, "completed", 3)
    failed = finish(storage, "failed", 2)
    active = claim(storage).id
    assert ids_of(jobs.list_jobs("work", "completed").items) == completed[::-1]
    listed = jobs.list_jobs("work", "failed").items
    assert ids_of(listed) == failed[::-1]
    assert listed[0].error == f"ValueError: boom {failed[-1]}"
    assert ids_of(jobs.list_jobs("work", "active").items) == [active]
    soon, later = add(app, 1, delay=10)[0], add(app, 1, delay=100)[0]
    assert ids_of(jobs.list_jobs("work", "delayed").items) == [later, soon]


def test_an_empty_state_is_one_empty_page(jobs: Jobs) -> None:
    page = jobs.list_jobs("work", "failed")
    assert (page.items, page.total, page.page, page.pages, page.has_next) == ((), 0, 1, 1, False)


@pytest.mark.parametrize(
    ("state", "options", "fragment"),
    [
        ("done", {}, "unknown job state 'done'; use one of waiting, active, delayed, completed"),
        ("failed", {"page": 0}, "page=0 is not allowed; pages count from 1"),
        ("failed", {"page_size": 0}, "page_size=0 is not allowed; use 1 to 500"),
        ("failed", {"page_size": 501}, "page_size=501 is not allowed"),
        ("failed", {"page": True}, "page=True is not allowed"),
        (
            "failed",
            {"page": 10**19},
            "page=10000000000000000000 is not allowed; pages count from 1 to 1,000,000,000",
        ),
        ("failed", {"page": 1_000_000_001}, "pages count from 1 to 1,000,000,000"),
    ],
)
def test_bad_list_arguments_are_refused_clearly(
    jobs: Jobs, state: str, options: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(JobActionError, match=fragment):
        jobs.list_jobs("work", state, **options)


def test_the_last_page_allowed_is_read_as_any_page_past_the_end(jobs: Jobs) -> None:
    page = jobs.list_jobs("work", "failed", page=1_000_000_000, page_size=500)
    assert (page.items, page.total, page.unreadable) == ((), 0, None)


# -- scans ------------------------------------------------------------------------------------


def scan_all(jobs: Jobs, state: str, between: Any = None, count: int = 2) -> list[str]:
    """Every id a walk by cursor reads, ``count`` at a time, calling ``between()`` between
    two reads."""
    scan = jobs.scan("work", state, count=count)
    read = ids_of(scan.items)
    while scan.next is not None:
        if between is not None:
            between()
        scan = jobs.scan("work", state, after=scan.next, count=count)
        read += ids_of(scan.items)
    return read


def test_a_scan_reads_each_job_once_in_list_order_while_jobs_complete_meanwhile(
    app: Hueyard, jobs: Jobs, storage: JobStorage
) -> None:
    # Given 7 completed jobs, and more jobs waiting
    add(app, 30)
    completed = finish(storage, "completed", 7)
    # When they are walked 2 at a time, newest first, while 2 more complete between reads
    read = scan_all(jobs, "completed", between=lambda: finish(storage, "completed", 2))
    # Then each of the 7 was read once, newest first, and none that completed meanwhile
    # (by page number, each completion would have pushed a job read onto the next page)
    assert read == completed[::-1]
    assert jobs.counts("work").completed == 7 + 2 * 3


def test_a_scan_reads_jobs_of_one_score_once_while_others_of_that_score_come_and_go(
    app: Hueyard, jobs: Jobs, redis_conn: redis.Redis
) -> None:
    # Given 7 delayed jobs due at the same ms (one score: Redis orders them by id)
    delayed_set = app.keys.queue("work").delayed

    def due_at_one_ms(ids: list[str]) -> list[str]:
        redis_conn.zadd(delayed_set, dict.fromkeys(ids, 1_900_000_000_000), xx=True)
        return ids

    delayed = due_at_one_ms(add(app, 7, delay=3600))
    read: list[str] = []
    joined: list[str] = []

    def meanwhile() -> None:
        if jobs.find(read[0]) is not None:
            jobs.remove("work", read[0])  # a job read leaves
        joined.extend(due_at_one_ms(add(app, 1, delay=3600)))  # ahead of the cursor: newer

    # When they are walked 2 at a time, while a job read leaves and one of that score
    # joins between two reads
    scan = jobs.scan("work", "delayed", count=2)
    read += ids_of(scan.items)
    while scan.next is not None:
        meanwhile()
        scan = jobs.scan("work", "delayed", after=scan.next, count=2)
        read += ids_of(scan.items)
    # Then each of the 7 was read once, in the list's order, and none that joined
    assert read == delayed[::-1]
    assert jobs.counts("work").delayed == 7 - 1 + len(joined) and len(joined) >= 3


def test_a_scan_of_waiting_jobs_goes_in_run_order_and_reads_jobs_added_behind_it(
    app: Hueyard, jobs: Jobs
) -> None:
    first = add(app, 5)
    later: list[str] = []
    # Given 5 waiting jobs, When they are walked 2 at a time while jobs are added
    read = scan_all(jobs, "waiting", between=lambda: later.extend(add(app, 1)))
    # Then in run order, with the ones added behind the cursor (FIFO) read too
    assert read == first + later
    jobs.pause("work")
    assert scan_all(jobs, "waiting") == [] and scan_all(jobs, "paused") == first + later


# -- one job ----------------------------------------------------------------------------------


def test_get_returns_the_whole_job(app: Hueyard, jobs: Jobs, storage: JobStorage) -> None:
    before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    job_id = app.enqueue("work", "job", {"to": "+1"}, priority=2, keep_completed=7)
    claimed = claim(storage)
    storage.report(claimed, "progress", dumps({"done": 40}).decode())
    storage.report(claimed, "log", "step 1")
    storage.report(claimed, "log", "step 2")
    running = jobs.get(job_id)
    assert running is not None
    assert (running.state, running.consumer, running.attempts) == ("active", None, 1)
    assert storage.release(claimed, "completed", value='{"sent":true}')

    job = jobs.get(job_id)

    assert job is not None and job.problem is None
    assert (job.id, job.queue, job.state, job.name) == (job_id, "work", "completed", "work.job")
    assert job.payload == {"to": "+1"}
    assert (job.priority, job.attempts, job.max_attempts, job.stalls) == (2, 1, 1, 0)
    assert (job.keep_completed, job.keep_failed) == (7, None)
    assert job.result == {"sent": True}
    assert job.progress == {"done": 40}
    assert job.logs == ("step 1", "step 2")
    assert job.created is not None and job.started is not None and job.finished is not None
    now = datetime.datetime.now(datetime.UTC)
    assert before <= job.created <= job.started <= job.finished <= now
    assert job.due is None and job.error is None
    as_json = job.to_json()
    assert as_json["logs"] == ["step 1", "step 2"]
    assert as_json["created"] == job.created.isoformat(timespec="milliseconds")


def test_get_of_a_failed_and_of_a_delayed_job(
    app: Hueyard, jobs: Jobs, storage: JobStorage
) -> None:
    [failed] = add(app)
    finish(storage, "failed")
    job = jobs.get(failed)
    assert job is not None
    assert (job.state, job.error, job.traceback) == (
        "failed", f"ValueError: boom {failed}", "Traceback: ...",
    )  # fmt: skip
    [delayed] = add(app, delay=30)
    job = jobs.get(delayed)
    assert job is not None and job.state == "delayed" and job.due is not None
    assert job.due > datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=25)


def test_an_unknown_id_is_none(jobs: Jobs) -> None:
    assert jobs.get("no-such-job") is None
    assert jobs.find("no-such-job") is None
    assert jobs.get("") is None


def test_find_names_the_queue_and_state(app: Hueyard, jobs: Jobs, storage: JobStorage) -> None:
    [work_id] = add(app)
    [other_id] = add(app, queue="other")
    finish(storage, "completed")
    assert jobs.find(work_id) == JobLocation("work", "completed")
    assert jobs.find(other_id) == JobLocation("other", "waiting")


# -- data hueyard did not write ---------------------------------------------------------------


def test_garbage_in_redis_is_listed_with_its_problem_never_a_crash(
    app: Hueyard, jobs: Jobs, storage: JobStorage, redis_conn: redis.Redis
) -> None:
    # Given a real job, an id without a record, a record with non-JSON data,
    # a job key of the wrong type, and a record whose result is not JSON
    [good, bad_data, bad_result] = add(app, 3)
    redis_conn.zadd(storage.q.waiting, {"ghost": 0})
    redis_conn.hset(app.keys.job("work", bad_data), "payload", b"\x80\x04pickle-or-worse")
    redis_conn.hset(app.keys.job("work", bad_data), "started", "yesterday")
    redis_conn.set(app.keys.job("work", "a-string"), "x")
    redis_conn.zadd(storage.q.failed, {"a-string": 1})
    redis_conn.hset(app.keys.job("work", bad_result), "result", "{not json")
    # When listed
    waiting = {item.id: item for item in jobs.list_jobs("work", "waiting").items}
    failed = jobs.list_jobs("work", "failed").items
    # Then every entry is there, and says what is wrong
    assert set(waiting) == {"ghost", good, bad_data, bad_result}
    assert waiting[good].problem is None
    assert waiting["ghost"].problem is not None
    assert "no job record" in waiting["ghost"].problem
    bad = waiting[bad_data]
    assert bad.problem is not None and bad.payload is None
    assert "not JSON written by hueyard" in bad.problem
    assert "started is not a whole number" in bad.problem
    assert bad.priority == 5  # what could be read is there
    assert waiting[bad_result].problem is not None
    assert waiting[bad_result].result == "{not json"
    [string_key] = failed
    assert string_key.problem is not None and "not a job record (not a hash)" in string_key.problem
    # get() and counts() do not crash either
    garbage = jobs.get("a-string")
    assert garbage is not None and garbage.state == "failed" and garbage.problem
    ghost = jobs.get("ghost")
    assert ghost is not None and ghost.problem and "no job record" in ghost.problem
    assert jobs.counts("work").waiting == 4
    # and garbage can be removed
    assert jobs.remove("work", "ghost") is True
    assert jobs.remove("work", "a-string") is True
    assert jobs.get("a-string") is None


def test_a_state_key_of_another_type_counts_and_lists_as_empty(
    app: Hueyard, jobs: Jobs, redis_conn: redis.Redis
) -> None:
    add(app, 2, queue="other")
    redis_conn.set(app.keys.queue("other").failed, "not a sorted set")
    counts = jobs.counts_all()
    assert (counts["other"].failed, counts["other"].waiting) == (0, 2)
    assert jobs.list_jobs("other", "failed").items == ()


def test_a_record_in_no_queue_is_an_orphan(
    app: Hueyard, jobs: Jobs, storage: JobStorage, redis_conn: redis.Redis
) -> None:
    [job_id] = add(app)
    redis_conn.zrem(storage.q.waiting, job_id)
    job = jobs.get(job_id)
    assert job is not None
    assert (job.queue, job.state) == ("work", None)  # the queue from the record's handler
    assert job.problem is not None and "orphan" in job.problem
    assert jobs.find(job_id) is None


# -- retry ------------------------------------------------------------------------------------


def test_retry_puts_one_failed_job_back_with_fresh_attempts(
    app: Hueyard, jobs: Jobs, storage: JobStorage
) -> None:
    [job_id, other] = add(app, 2)
    finish(storage, "failed")
    assert jobs.retry("work", other) is False  # waiting, not failed
    assert jobs.retry("other", job_id) is False  # not failed on that queue
    assert jobs.retry("work", job_id) is True
    job = jobs.get(job_id)
    assert job is not None
    assert (job.state, job.attempts, job.error, job.traceback, job.finished) == (
        "waiting", 0, None, None, None,
    )  # fmt: skip
    assert jobs.retry("work", job_id) is False  # not failed any more


def test_retry_all_runs_in_bounded_batches_until_done(
    app: Hueyard, jobs: Jobs, storage: JobStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 350 failed jobs and batches of 100
    add(app, 350)
    failed = finish(storage, "failed", 350)
    monkeypatch.setattr(defaults, "BULK_BATCH", 100)
    # When
    moved = jobs.retry_all("work")
    # Then every job is back in waiting, oldest first
    assert moved == 350
    counts = jobs.counts("work")
    assert (counts.failed, counts.waiting) == (0, 350)
    page = jobs.list_jobs("work", "waiting", page_size=3)
    assert ids_of(page.items) == failed[:3]
    assert jobs.retry_all("work") == 0


def test_retry_all_skips_garbage_ids_without_stopping_early(
    app: Hueyard, jobs: Jobs, storage: JobStorage, redis_conn: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # The oldest batch holds only ids without records: later batches still run.
    redis_conn.zadd(storage.q.failed, {f"ghost-{i}": 0 for i in range(10)})
    add(app, 15)
    finish(storage, "failed", 15)
    monkeypatch.setattr(defaults, "BULK_BATCH", 10)
    assert jobs.retry_all("work") == 15
    assert jobs.counts("work").failed == 0


# -- promote ----------------------------------------------------------------------------------


def test_promote_moves_a_delayed_job_to_waiting_now(app: Hueyard, jobs: Jobs) -> None:
    [delayed] = add(app, delay=3600)
    [waiting] = add(app)
    assert jobs.promote("work", waiting) is False
    assert jobs.promote("work", delayed) is True
    job = jobs.get(delayed)
    assert job is not None and (job.state, job.due) == ("waiting", None)
    assert jobs.promote("work", delayed) is False


def test_promote_all_runs_in_bounded_batches(
    app: Hueyard, jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    add(app, 250, delay=3600)
    monkeypatch.setattr(defaults, "BULK_BATCH", 100)
    assert jobs.promote_all("work") == 250
    counts = jobs.counts("work")
    assert (counts.delayed, counts.waiting) == (0, 250)


# -- remove -----------------------------------------------------------------------------------


def test_remove_deletes_a_job_but_refuses_an_active_one(
    app: Hueyard, jobs: Jobs, storage: JobStorage, redis_conn: redis.Redis
) -> None:
    [running, waiting] = add(app, 2)
    claimed = claim(storage)
    assert claimed.id == running
    storage.report(claimed, "log", "working")
    with pytest.raises(JobActionError, match=f"job {running!r} on queue 'work' is active"):
        jobs.remove("work", running)
    assert jobs.find(running) == JobLocation("work", "active")
    assert jobs.remove("work", waiting) is True
    assert jobs.get(waiting) is None
    assert redis_conn.exists(app.keys.job("work", waiting)) == 0
    assert jobs.remove("work", waiting) is False
    storage.release(claimed, "completed", value="1")
    assert jobs.remove("work", running) is True
    assert redis_conn.exists(app.keys.job_logs("work", running)) == 0


def test_remove_refuses_a_job_of_another_queue(app: Hueyard, jobs: Jobs) -> None:
    [other] = add(app, queue="other")
    with pytest.raises(JobActionError, match=f"job {other!r} belongs to queue 'other', not 'work'"):
        jobs.remove("work", other)
    assert jobs.find(other) == JobLocation("other", "waiting")


# -- clean ------------------------------------------------------------------------------------


def test_clean_deletes_only_finished_jobs_older_than_the_age_in_batches(
    app: Hueyard,
    jobs: Jobs,
    storage: JobStorage,
    redis_conn: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given 250 completed jobs that finished two hours ago, and 5 just now
    add(app, 255)
    old = finish(storage, "completed", 250)
    recent = finish(storage, "completed", 5)
    two_hours_ago = (time.time() - 7200) * 1000
    redis_conn.zadd(storage.q.completed, dict.fromkeys(old, two_hours_ago), xx=True)
    monkeypatch.setattr(defaults, "BULK_BATCH", 100)
    # When
    deleted = jobs.clean("work", "completed", older_than=3600)
    # Then
    assert deleted == 250
    assert ids_of(jobs.list_jobs("work", "completed").items) == recent[::-1]
    assert redis_conn.exists(app.keys.job("work", old[0])) == 0
    assert jobs.clean("work", "completed", older_than=3600) == 0
    assert jobs.clean("work", "completed", older_than=0) == 5


def test_clean_of_failed_jobs(app: Hueyard, jobs: Jobs, storage: JobStorage) -> None:
    add(app, 3)
    finish(storage, "failed", 3)
    time.sleep(0.01)
    assert jobs.clean("work", "failed", older_than=0.005) == 3
    assert jobs.counts("work").failed == 0


@pytest.mark.parametrize(
    ("state", "older_than", "fragment"),
    [
        ("waiting", 10, "clean deletes completed or failed jobs, not 'waiting'"),
        ("paused", 10, "not 'paused'"),
        ("completed", -1, "older_than=-1 is not allowed; use seconds from 0 to 1,000,000,000"),
        ("completed", float("nan"), "older_than=nan is not allowed"),
        ("failed", 1e306, r"older_than=1e\+306 is not allowed; use seconds from 0 to 1,000,"),
        ("failed", 1_000_000_001, "older_than=1000000001 is not allowed"),
    ],
)
def test_clean_refuses_other_states_and_bad_ages(
    jobs: Jobs, state: str, older_than: float, fragment: str
) -> None:
    with pytest.raises(JobActionError, match=fragment):
        jobs.clean("work", state, older_than)


# -- consumers --------------------------------------------------------------------------------


def test_consumers_lists_a_live_consumer_with_the_jobs_it_runs(
    app: Hueyard, jobs: Jobs, storage: JobStorage
) -> None:
    # Given a consumer that beat, and holds one job
    consumer = MultiQueueConsumer(app, ["work"])
    consumer.heartbeat()
    add(app, 2)
    held = claim(storage)  # the storage claims for the consumer's id
    # When
    [info] = jobs.consumers()
    # Then
    assert info.id == consumer.consumer_id
    assert info.pid is not None and info.host
    assert (info.queues, info.worker_type, info.workers) == (("work",), "thread", 1)
    assert info.running == (held.id,)
    assert info.problem is None
    now = datetime.datetime.now(datetime.UTC)
    assert now - datetime.timedelta(seconds=5) < info.last_heartbeat <= now
    assert info.started is not None and info.started <= now
    # A consumer that leaves is gone at once
    consumer.heartbeat(leaving=True)
    assert jobs.consumers() == []


def test_a_heartbeat_prunes_dead_consumers_and_bounds_the_registry_with_no_reader(
    app: Hueyard, redis_conn: redis.Redis
) -> None:
    # Given consumers that died (a crash loop: one id a restart) and nothing that reads
    now_ms = int(time.time() * 1000)
    dead = {f"crashed-{n}": now_ms - 120_000 - n for n in range(50)}
    redis_conn.zadd(app.keys.consumers, dead)
    # When a live consumer beats
    consumer = MultiQueueConsumer(app, ["work"])
    consumer.heartbeat()
    # Then only it is left, and the registry expires if every consumer stops
    assert redis_conn.zrange(app.keys.consumers, 0, -1) == [consumer.consumer_id.encode()]
    assert 0 < redis_conn.ttl(app.keys.consumers) <= 86400
    consumer.heartbeat(leaving=True)


def test_stale_heartbeats_are_pruned_and_bad_records_reported(
    app: Hueyard, jobs: Jobs, redis_conn: redis.Redis
) -> None:
    now_ms = int(time.time() * 1000)
    redis_conn.zadd(app.keys.consumers, {"old": now_ms - 120_000, "expired": now_ms, "bad": now_ms})
    redis_conn.set(app.keys.consumer("old"), "{}")
    redis_conn.set(app.keys.consumer("bad"), "not json")
    [bad] = jobs.consumers()
    assert bad.id == "bad" and bad.problem is not None
    assert "not hueyard's JSON" in bad.problem
    assert redis_conn.zscore(app.keys.consumers, "old") is None  # pruned


# -- metrics ----------------------------------------------------------------------------------


def clear_of_a_minute_boundary() -> None:
    """Metrics are per minute: start a test early in one, so it stays in it."""
    into_minute = time.time() % 60
    if into_minute > 55:
        time.sleep(60.1 - into_minute)


def test_metrics_give_one_point_a_minute(app: Hueyard, jobs: Jobs, storage: JobStorage) -> None:
    clear_of_a_minute_boundary()
    add(app, 6)
    finish(storage, "completed", 3)
    finish(storage, "failed", 2)
    finish(storage, "retry")
    points = jobs.metrics("work", minutes=5)
    assert len(points) == 5
    assert [p.minute for p in points] == sorted(p.minute for p in points)
    assert points[-1].minute.timestamp() == (time.time() // 60) * 60
    totals = (sum(p.completed for p in points), sum(p.failed for p in points))
    assert totals == (3, 2)
    assert sum(p.retried for p in points) == 1
    busy = [p for p in points if p.samples]
    assert sum(p.samples for p in busy) == 3
    assert all(p.p50_ms is not None and p.p95_ms is not None for p in busy)
    assert all(p.p50_ms is None for p in points if not p.samples)


def test_the_summary_has_rates_percentiles_and_the_oldest_waiting_age(
    app: Hueyard, jobs: Jobs, storage: JobStorage, redis_conn: redis.Redis
) -> None:
    clear_of_a_minute_boundary()
    add(app, 4)
    finish(storage, "completed", 3)
    finish(storage, "failed", 1)
    # The longest-waiting job has a low priority: it is found behind newer urgent work.
    # (Its id says it was enqueued two minutes ago: ids are time-ordered UUIDs.)
    two_minutes_ago, uuid7 = time.time_ns() - 120 * 10**9, uuid_utils.uuid7
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(uuid_utils, "uuid7", lambda: uuid7(nanoseconds=two_minutes_ago))
        add(app, priority=10)
    add(app, 2, priority=1)
    summary = jobs.summary("work", minutes=10)
    assert (summary.completed, summary.failed, summary.retried) == (3, 1, 0)
    assert summary.throughput_per_minute == pytest.approx(0.3)
    assert summary.failure_rate == pytest.approx(0.25)
    assert summary.p50_ms is not None and summary.p99_ms is not None
    assert summary.p50_ms <= summary.p95_ms <= summary.p99_ms  # type: ignore[operator]
    assert summary.oldest_waiting_age is not None
    assert 119 < summary.oldest_waiting_age < 130
    assert jobs.summary("other").oldest_waiting_age is None
    # A paused queue's jobs are held, not waiting: none of them is overdue (/health and
    # /metrics read this age)
    jobs.pause("work")
    assert jobs.summary("work", minutes=10).oldest_waiting_age is None
    jobs.resume("work")
    assert jobs.summary("work", minutes=10).oldest_waiting_age is not None
    assert jobs.summary("other").failure_rate is None


def test_metrics_survive_planted_keys_and_refuse_bad_windows(
    app: Hueyard, jobs: Jobs, storage: JobStorage, redis_conn: redis.Redis
) -> None:
    clear_of_a_minute_boundary()
    minute = int(time.time() // 60)
    redis_conn.set(storage.q.stats(minute), "not a hash")
    redis_conn.rpush(storage.q.samples(minute - 1), "12", "fast", "30")
    points = jobs.metrics("work", minutes=2)
    assert points[-1].completed == 0
    assert (points[0].samples, points[0].p50_ms) == (2, 12)
    with pytest.raises(JobActionError, match="minutes=0 is not allowed; use 1 to 1500"):
        jobs.metrics("work", minutes=0)
    with pytest.raises(JobActionError, match="minutes=1501"):
        jobs.summary("work", minutes=1501)


# -- Redis down -------------------------------------------------------------------------------


def test_a_dead_redis_is_a_clear_error_without_the_password(make_app: AppFactory) -> None:
    registry = HandlerRegistry()

    @handler("work", registry=registry)
    def job(payload: dict[str, object]) -> None: ...

    app = make_app(
        CONFIG, registry, prefix="jt", url="redis://:hunter2@127.0.0.1:1/0",
        redis_lines="reconnect_attempts = 1\nconnect_timeout = 0.5",
    )  # fmt: skip
    with pytest.raises(RedisUnavailableError) as caught:
        Jobs(app).counts("work")
    message = str(caught.value)
    assert "jobs.counts: Redis at redis://:***@127.0.0.1:1/0 did not answer" in message
    assert "hunter2" not in message
