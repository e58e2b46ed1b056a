"""Huey's API on a hueyard queue's Huey: it keeps Huey's meaning, or refuses at the call
naming the hueyard way; never accepted and then ignored (real Redis, jobs run in-process
the way a worker runs them)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from huey.exceptions import CancelExecution, ResultTimeout

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
        (lambda huey: huey.revoke_by_id("x"), "Jobs(app).cancel(job_id)"),
        (lambda huey: huey.revoke_all(None), "hueyard cancel"),
        (lambda huey: huey.restore_by_id("x"), "Jobs(app).cancel(job_id)"),
    ],
)
def test_huey_calls_hueyard_does_not_honour_are_refused_naming_the_hueyard_way(
    app: Hueyard, call: Any, hueyard_way: str
) -> None:
    huey = app.queue("work").huey
    with pytest.raises(HueyardError) as caught:
        call(huey)
    assert hueyard_way in str(caught.value)
    # and nothing changed: the queue still enqueues to Redis and runs jobs
    job_id = app.enqueue("work", "double", {"n": 2})
    run_one(app)
    assert app.result("work", job_id) == 4


# -- results ----------------------------------------------------------------------------------


@pytest.fixture
def process_app(app: Hueyard) -> Iterator[Hueyard]:
    """``app`` as the process's app, which ``framework.result`` reads through."""
    set_app(app)
    yield app
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


def test_a_blocking_wait_times_out_as_hueys_does(process_app: Hueyard) -> None:
    job_id = process_app.enqueue("work", "double", {"n": 1})
    with pytest.raises(ResultTimeout) as caught:  # Huey's exception class
        process_app.queue("work").huey.result(job_id, blocking=True, timeout=0.3)
    assert isinstance(caught.value, ResultTimeoutError)
    assert "is still waiting after 0.3 s" in str(caught.value)


def test_an_unknown_job_is_an_error_not_a_wait(process_app: Hueyard) -> None:
    with pytest.raises(JobActionError, match="no job 'nope' in any queue"):
        framework.result("nope", blocking=True, timeout=30)


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
