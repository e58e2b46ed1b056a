"""Huey's API on a hueyard queue's Huey: it keeps Huey's meaning, or refuses at the call
naming the hueyard way; never accepted and then ignored (real Redis, jobs run in-process
the way a worker runs them)."""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from huey.api import Result, Task
from huey.exceptions import CancelExecution, ResultTimeout, TaskException
from huey.signals import (
    SIGNAL_COMPLETE,
    SIGNAL_ENQUEUED,
    SIGNAL_RETRYING,
    SIGNAL_SCHEDULED,
)

import framework
from framework.application import Hueyard
from framework.errors import (
    HueyardError,
    JobActionError,
    JobFailedError,
    ResultTimeoutError,
)
from framework.execution import QueueHuey
from framework.handlers import HandlerRegistry, handler
from framework.jobs import Jobs
from framework.runtime import reset_app, set_app
from tests.conftest import AppFactory


@pytest.fixture
def app(make_app: AppFactory) -> Hueyard:
    registry = HandlerRegistry()

    @handler("work", registry=registry)
    def double(payload: dict[str, Any]) -> int:
        if payload["n"] < 0:
            raise ValueError("negative")
        return int(payload["n"]) * 2

    built = make_app("[queues.work]\nattempts = 1", registry, prefix="hapi")
    built.queue("work").huey.storage.read_timeout = 0.2
    return built


def run_one(app: Hueyard) -> None:
    huey: QueueHuey = app.queue("work").huey
    task = huey.dequeue()
    assert task is not None, "nothing to run"
    huey.execute(task)


def test_pre_and_post_execute_hooks_run_around_each_job(app: Hueyard) -> None:
    huey = app.queue("work").huey
    seen: list[tuple[Any, ...]] = []

    @huey.pre_execute()
    def before(task: Any) -> None:
        seen.append(("pre", task.id))

    @huey.post_execute()
    def after(task: Any, value: Any, exc: BaseException | None) -> None:
        seen.append(("post", task.id, value, type(exc).__name__ if exc else None))

    ok = app.enqueue("work", "double", {"n": 21})
    bad = app.enqueue("work", "double", {"n": -1})
    run_one(app)
    run_one(app)

    assert seen == [
        ("pre", ok), ("post", ok, 42, None),
        ("pre", bad), ("post", bad, None, "ValueError"),
    ]  # fmt: skip


def test_a_pre_execute_hook_that_cancels_fails_the_job_without_running_it(app: Hueyard) -> None:
    huey = app.queue("work").huey

    @huey.pre_execute()
    def veto(task: Any) -> None:
        raise CancelExecution()

    job_id = app.enqueue("work", "double", {"n": 1})
    run_one(app)

    info = Jobs(app).get(job_id)
    assert info is not None
    assert (info.state, info.result) == ("failed", None)
    assert info.error == "CancelExecution: cancelled by a pre-execute hook"


@pytest.mark.parametrize(
    ("call", "hueyard_way"),
    [
        (lambda huey: huey.periodic_task(None), "[schedules.<name>] table"),
        (lambda huey: huey.revoke_by_id("x"), "framework.jobs.Jobs(app).cancel(queue, job_id)"),
        (lambda huey: huey.revoke_all(None), "hueyard cancel"),
        (lambda huey: huey.restore_by_id("x"), "framework.jobs.Jobs(app).cancel(queue, job_id)"),
        (lambda huey: huey.task(), "pipelines/: @handler('work') on a function of one payload"),
        (lambda huey: huey.task(retries=2), "the queue's [queues.work] in config/queues.toml"),
        (lambda huey: huey.context_task(open), "@handler('work')"),
        (lambda huey: huey.context_task(open), "open the context inside the handler"),
        (lambda huey: huey.rate_limit("sms", 10, 60), "rate_limit = { max = 20, per = 60 }"),
        (lambda huey: huey.rate_limit("sms", 10, 60), "in [queues.work] of config/queues.toml"),
        (lambda huey: huey.all_results(), "`hueyard jobs QUEUE --state completed`"),
        (lambda huey: huey.put_result("k", 1), "framework.result(job_id)"),
        (lambda huey: huey.storage.flush_results(), "hueyard clean QUEUE"),
        (lambda huey: huey.enqueue(Task()), "handler.enqueue(payload) or framework.enqueue("),
        (lambda huey: huey.enqueue(Task().then(Task())), "handler.s(payload).then(...)"),
        (lambda huey: huey.add_schedule(Task()), "handler.enqueue(payload, delay=seconds)"),
    ],
)
def test_huey_calls_hueyard_does_not_honour_are_refused_naming_the_hueyard_way(
    app: Hueyard, call: Any, hueyard_way: str
) -> None:
    huey = app.queue("work").huey
    told: list[str] = []
    huey.signal()(lambda signal, task, *args: told.append(signal))
    with pytest.raises(HueyardError) as caught:
        call(huey)
    assert hueyard_way in str(caught.value)
    assert told == []  # no signal says it happened (Huey sends "enqueued" before it stores)
    # and nothing changed: the queue still enqueues to Redis and runs jobs
    job_id = app.enqueue("work", "double", {"n": 2})
    run_one(app)
    assert app.result("work", job_id) == 4


def test_a_huey_task_is_refused_at_its_decorator_not_when_it_is_first_called(
    app: Hueyard,
) -> None:
    huey = app.queue("work").huey
    with pytest.raises(HueyardError, match=r"@huey.task\(\) is not available"):

        @huey.task()
        def send(to: str) -> None: ...

    assert sorted(huey._registry._registry) == ["work.double"]  # nothing else registered


# -- the enqueued and scheduled signals ------------------------------------------------------


def listen(huey: QueueHuey, *signals: str) -> list[tuple[str, Any]]:
    heard: list[tuple[str, Any]] = []

    @huey.signal(*signals)
    def receiver(signal: str, task: Any, *args: Any) -> None:
        heard.append((signal, task))

    return heard


def test_an_enqueue_sends_hueys_enqueued_signal_with_the_task_a_worker_runs(
    app: Hueyard,
) -> None:
    huey = app.queue("work").huey
    heard = listen(huey, SIGNAL_ENQUEUED, SIGNAL_SCHEDULED)

    job_id = app.enqueue("work", "double", {"n": 21}, timeout=7)

    assert [signal for signal, _ in heard] == [SIGNAL_ENQUEUED]
    task = heard[0][1]
    assert (task.id, task.name, task.args, task.timeout, task.eta) == (
        job_id, "double", ({"n": 21},), 7, None,
    )  # fmt: skip
    worker_task = huey.dequeue()  # what a worker builds from the record: the same task
    assert worker_task is not None
    assert (worker_task.id, type(worker_task), worker_task.args, worker_task.timeout) == (
        task.id, type(task), task.args, task.timeout,
    )  # fmt: skip


def test_a_delayed_enqueue_is_enqueued_then_scheduled_with_its_eta(app: Hueyard) -> None:
    huey = app.queue("work").huey
    heard = listen(huey)  # no signal named: every signal, as in Huey
    before = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)

    delayed = app.enqueue("work", "double", {"n": 1}, delay=60)
    plus_two = datetime.timezone(datetime.timedelta(hours=2))
    at = (datetime.datetime.now(plus_two) + datetime.timedelta(days=1)).replace(microsecond=0)
    timed = app.enqueue("work", "double", {"n": 2}, eta=at)

    assert [(signal, task.id) for signal, task in heard] == [
        (SIGNAL_ENQUEUED, delayed), (SIGNAL_SCHEDULED, delayed),
        (SIGNAL_ENQUEUED, timed), (SIGNAL_SCHEDULED, timed),
    ]  # fmt: skip
    assert heard[1][1].eta >= before + datetime.timedelta(seconds=60)
    expected = at.astimezone(datetime.UTC).replace(tzinfo=None)  # UTC, naive, as Huey's
    assert heard[3][1].eta == expected


def test_enqueue_many_announces_the_jobs_it_stored_not_those_whose_key_was_held(
    app: Hueyard,
) -> None:
    huey = app.queue("work").huey
    first = app.enqueue("work", "double", {"n": 1}, key="k1")
    heard = listen(huey, SIGNAL_ENQUEUED)

    ids = app.enqueue_many("work", "double", [{"n": 1}, {"n": 2}], keys=["k1", "k2"])

    assert ids[0] == first
    assert [(task.id, task.args) for _, task in heard] == [(ids[1], ({"n": 2},))]


def test_an_enqueue_builds_no_task_when_no_receiver_listens(app: Hueyard) -> None:
    huey = app.queue("work").huey
    assert not huey.hears_enqueues()
    listen(huey, SIGNAL_COMPLETE)
    assert not huey.hears_enqueues()  # the worker's signals do not make enqueues build tasks
    heard: list[str] = []

    def receiver(signal: str, task: Any) -> None:
        heard.append(signal)

    huey.signal(SIGNAL_SCHEDULED)(receiver)
    assert huey.hears_enqueues()
    huey.disconnect_signal(receiver, SIGNAL_SCHEDULED)
    assert not huey.hears_enqueues()
    app.enqueue("work", "double", {"n": 1}, delay=5)
    assert heard == []


def test_a_retry_is_scheduled_after_the_retrying_signal(app: Hueyard) -> None:
    huey = app.queue("work").huey
    heard = listen(huey, SIGNAL_RETRYING, SIGNAL_SCHEDULED)
    job_id = app.enqueue("work", "double", {"n": -1}, attempts=2)
    before = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)

    run_one(app)

    assert [(signal, task.id) for signal, task in heard] == [
        (SIGNAL_RETRYING, job_id), (SIGNAL_SCHEDULED, job_id),
    ]  # fmt: skip
    assert heard[1][1].eta > before  # after the queue's backoff


# -- results ----------------------------------------------------------------------------------


@pytest.fixture
def process_app(app: Hueyard) -> Iterator[Hueyard]:
    """``app`` as the process's app, which ``framework.result`` reads through."""
    set_app(app)
    yield app
    reset_app()


def test_a_queues_huey_reads_results_in_its_own_app_not_the_process_app(
    app: Hueyard, make_app: AppFactory
) -> None:
    # Given an app that is not the process's app (a service with two, a test, a script)
    set_app(make_app("[queues.work]", HandlerRegistry(), prefix="elsewhere"))
    try:
        huey = app.queue("work").huey
        job_id = app.enqueue("work", "double", {"n": 21})
        # Then its queue's Huey finds the job in its own app: waiting, then its result
        assert huey.result(job_id) is None
        run_one(app)
        assert huey.result(job_id) == 42
        assert huey.result(job_id, blocking=True, timeout=1) == 42
    finally:
        reset_app()


def test_a_completed_jobs_result_is_returned_every_time_it_is_asked(process_app: Hueyard) -> None:
    job_id = process_app.enqueue("work", "double", {"n": 21})
    assert framework.result(job_id) is None  # still waiting, not blocking
    run_one(process_app)
    assert framework.result(job_id) == 42
    assert process_app.queue("work").huey.result(job_id) == 42  # Huey's call, same record
    assert framework.result(job_id, blocking=True, timeout=1) == 42  # preserved


def test_a_blocking_wait_returns_when_a_worker_completes_the_job(process_app: Hueyard) -> None:
    job_id = process_app.enqueue("work", "double", {"n": 5})
    worker = threading.Timer(0.3, run_one, args=(process_app,))
    worker.start()
    try:
        assert framework.result(job_id, blocking=True, timeout=10) == 10
    finally:
        worker.join()


def test_a_failed_job_raises_with_its_error(process_app: Hueyard) -> None:
    job_id = process_app.enqueue("work", "double", {"n": -1})
    run_one(process_app)
    with pytest.raises(JobFailedError) as caught:
        framework.result(job_id, blocking=True, timeout=1)
    assert caught.value.error == "ValueError: negative"
    assert job_id in str(caught.value)
    # and code ported from Huey, which catches TaskException from huey.result(), catches it
    with pytest.raises(TaskException) as huey_caught:
        process_app.queue("work").huey.result(job_id)
    assert huey_caught.value.metadata == {"task_id": job_id, "error": "ValueError: negative"}


def test_a_blocking_wait_times_out_as_hueys_does(process_app: Hueyard) -> None:
    job_id = process_app.enqueue("work", "double", {"n": 1})
    with pytest.raises(ResultTimeout) as caught:  # Huey's exception class
        process_app.queue("work").huey.result(job_id, blocking=True, timeout=0.3)
    assert isinstance(caught.value, ResultTimeoutError)
    assert "is still waiting after 0.3 s" in str(caught.value)


def test_an_unknown_job_is_an_error_not_a_wait(process_app: Hueyard) -> None:
    with pytest.raises(JobActionError, match="no job 'nope' in any queue"):
        framework.result("nope", blocking=True, timeout=30)


def test_a_result_built_by_hand_reads_the_jobs_record_as_huey_reads_its_result_store(
    app: Hueyard,
) -> None:
    huey = app.queue("work").huey
    job_id = app.enqueue("work", "double", {"n": 21})
    result = Result(huey, Task(id=job_id))
    assert result.get() is None  # not run yet
    assert not result.is_ready()

    run_one(app)

    assert result.get() == 42
    assert Result(huey, Task(id=job_id)).get() == 42  # Huey would have popped it; kept
    assert Result(huey, Task(id=job_id))() == 42
    assert huey.get(job_id) == 42 and huey.get(job_id, peek=True) == 42


def test_a_result_built_by_hand_for_a_failed_job_raises_hueys_task_exception(
    app: Hueyard,
) -> None:
    huey = app.queue("work").huey
    job_id = app.enqueue("work", "double", {"n": -1})
    run_one(app)

    result = Result(huey, Task(id=job_id))
    assert result.is_ready()
    with pytest.raises(TaskException) as caught:
        result.get()
    assert str(caught.value) == "ValueError: negative"
    assert caught.value.metadata["task_id"] == job_id
    assert "raise ValueError" in caught.value.metadata["traceback"]


def test_a_result_built_by_hand_blocks_until_a_worker_completes_the_job(app: Hueyard) -> None:
    huey = app.queue("work").huey
    job_id = app.enqueue("work", "double", {"n": 5})
    with pytest.raises(ResultTimeout):
        Result(huey, Task(id=job_id)).get(blocking=True, timeout=0.2)
    worker = threading.Timer(0.3, run_one, args=(app,))
    worker.start()
    try:
        assert Result(huey, Task(id=job_id)).get(blocking=True, timeout=10) == 10
    finally:
        worker.join()


def test_a_result_built_by_hand_for_a_job_this_queue_does_not_hold_is_an_error_not_a_wait(
    app: Hueyard,
) -> None:
    huey = app.queue("work").huey
    # a job its retention removed as it completed, and an id no job ever had
    gone = app.enqueue("work", "double", {"n": 2}, keep_completed=0)
    run_one(app)
    never = "01900000-0000-7000-8000-000000000000"
    for job_id in (gone, never):
        started = time.monotonic()
        with pytest.raises(JobActionError, match=f"no job '{job_id}' on queue 'work' to wait for"):
            Result(huey, Task(id=job_id)).get(blocking=True, timeout=30)
        assert time.monotonic() - started < 5  # at once, not after the timeout
    # while a job still waiting is waited for, as before
    waiting = app.enqueue("work", "double", {"n": 3})
    with pytest.raises(ResultTimeout):
        Result(huey, Task(id=waiting)).get(blocking=True, timeout=0.2)


def test_the_key_value_store_keeps_hueys_meaning_beside_the_results(
    app: Hueyard, redis_conn: Any
) -> None:
    huey = app.queue("work").huey
    huey.put("greeting", {"text": "hi"})
    # bounded, unlike Huey's: the key expires after [consumer] metrics_ttl
    ttl = redis_conn.ttl(huey.storage.q.kv_prefix + "greeting")
    assert 0 < ttl <= app.settings.consumer.metrics_ttl
    assert huey.get("greeting", peek=True) == {"text": "hi"}
    assert huey.get("greeting") == {"text": "hi"}  # popped
    assert huey.get("greeting") is None
    # a key of the user's that looks like a job id is theirs: read, then popped
    own = "00000000-0000-4000-8000-000000000000"
    huey.put(own, [1, 2])
    assert huey.get(own) == [1, 2]
    assert huey.get(own) is None


def test_result_count_counts_the_finished_jobs_the_queue_keeps(app: Hueyard) -> None:
    huey = app.queue("work").huey
    assert huey.result_count() == 0
    app.enqueue("work", "double", {"n": 1})
    app.enqueue("work", "double", {"n": -1})
    app.enqueue("work", "double", {"n": 2})
    run_one(app)
    run_one(app)
    assert huey.result_count() == 2  # one completed, one failed, one still waiting


def test_a_lock_task_lock_expires_even_when_its_worker_dies_holding_it(
    app: Hueyard, redis_conn: Any
) -> None:
    huey = app.queue("work").huey
    lock = huey.lock_task("nightly-report")
    lock.acquire()  # and its worker dies: nobody releases it
    key = huey.storage.q.kv_prefix + "work.lock.nightly-report"
    assert 0 < redis_conn.ttl(key) <= app.settings.consumer.metrics_ttl
    timed = huey.lock_task("short", ttl=5)
    timed.acquire()
    assert 0 < redis_conn.ttl(huey.storage.q.kv_prefix + "work.lock.short") <= 5
