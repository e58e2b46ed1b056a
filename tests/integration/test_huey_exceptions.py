"""Huey's exceptions keep Huey's meaning in a hueyard job (real Redis, jobs run in-process
the way a worker runs them): what the job becomes, which Huey signal fires, what is logged
and what the record keeps.

================================ ============================ ==================
raised in the handler            the job                      signals
================================ ============================ ==================
``CancelExecution()``            retried while attempts left  canceled, retrying, scheduled
``CancelExecution(retry=False)`` failed at once               canceled
``TaskLockedException``          retried, no traceback        locked, retrying, scheduled
``RetryTask``                    retried                      retrying, scheduled
anything else                    retried, then failed         error, retrying, scheduled
================================ ============================ ==================
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from huey import signals
from huey.exceptions import CancelExecution, RetryTask

from framework.application import Hueyard
from framework.execution import QueueHuey
from framework.handlers import HandlerRegistry, handler
from framework.jobs import Jobs
from tests.conftest import AppFactory

CONFIG = """
[queues.work]
attempts = 2
backoff = { type = "fixed", delay = 30 }
"""


@pytest.fixture
def app(make_app: AppFactory) -> Hueyard:
    registry = HandlerRegistry()
    built: dict[str, Hueyard] = {}

    @handler("work", registry=registry)
    def cancel_softly(payload: dict[str, Any]) -> None:
        raise CancelExecution()

    @handler("work", registry=registry)
    def cancel_now(payload: dict[str, Any]) -> None:
        raise CancelExecution(retry=False)

    @handler("work", registry=registry)
    def later(payload: dict[str, Any]) -> None:
        raise RetryTask(delay=60)

    @handler("work", registry=registry)
    def boom(payload: dict[str, Any]) -> None:
        raise ValueError("boom")

    @handler("work", registry=registry)
    def report(payload: dict[str, Any]) -> str:
        with built["app"].queue("work").huey.lock_task("nightly-report"):
            return "reported"

    built["app"] = make_app(CONFIG, registry, prefix="hexc")
    built["app"].queue("work").huey.storage.read_timeout = 0.2
    return built["app"]


@pytest.fixture
def fired(app: Hueyard) -> Iterator[list[str]]:
    """The Huey signals the queue's Huey sends in the worker, in order (``executing``
    left out, and ``enqueued``, which the producer sends)."""
    seen: list[str] = []
    huey = app.queue("work").huey

    @huey.signal()
    def watch(signal: str, task: Any, *args: Any) -> None:
        if signal not in (signals.SIGNAL_EXECUTING, signals.SIGNAL_ENQUEUED):
            seen.append(signal)

    yield seen
    huey.disconnect_signal(watch)


def run_one(app: Hueyard) -> None:
    huey: QueueHuey = app.queue("work").huey
    task = huey.dequeue()
    assert task is not None, "nothing to run"
    huey.execute(task)


def make_due(app: Hueyard, conn: redis.Redis, job_id: str) -> None:
    conn.zadd(app.queue("work").storage.q.delayed, {job_id: 0})
    assert app.queue("work").storage.promote_due() == 1


def record(app: Hueyard, job_id: str) -> dict[str, str]:
    raw = app.queue("work").storage.conn.hgetall(app.keys.job("work", job_id))
    return {k.decode(): v.decode() for k, v in raw.items()}


def state(app: Hueyard, job_id: str) -> str | None:
    place = Jobs(app).find(job_id)
    return place.state if place else None


def test_cancel_execution_without_arguments_is_retried_while_attempts_remain(
    app: Hueyard, fired: list[str], redis_conn: redis.Redis
) -> None:
    job_id = app.enqueue("work", "cancel_softly", {})
    run_one(app)
    assert state(app, job_id) == "delayed"
    assert fired == [signals.SIGNAL_CANCELED, signals.SIGNAL_RETRYING, signals.SIGNAL_SCHEDULED]

    make_due(app, redis_conn, job_id)
    run_one(app)
    assert (state(app, job_id), record(app, job_id)["attempts"]) == ("failed", "2")
    assert record(app, job_id)["error"] == "CancelExecution"


def test_cancel_execution_without_retry_fails_at_once_with_no_error_signal(
    app: Hueyard, fired: list[str]
) -> None:
    job_id = app.enqueue("work", "cancel_now", {})
    run_one(app)
    assert (state(app, job_id), record(app, job_id)["attempts"]) == ("failed", "1")
    assert fired == [signals.SIGNAL_CANCELED]


def test_retry_task_fires_no_error_signal(app: Hueyard, fired: list[str]) -> None:
    job_id = app.enqueue("work", "later", {})
    run_one(app)
    assert state(app, job_id) == "delayed"
    assert fired == [signals.SIGNAL_RETRYING, signals.SIGNAL_SCHEDULED]


def test_any_other_exception_fires_the_error_signal(app: Hueyard, fired: list[str]) -> None:
    app.enqueue("work", "boom", {})
    run_one(app)
    assert fired == [signals.SIGNAL_ERROR, signals.SIGNAL_RETRYING, signals.SIGNAL_SCHEDULED]


def test_a_held_lock_fires_locked_and_retries_without_a_traceback_then_the_job_completes(
    app: Hueyard, fired: list[str], redis_conn: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the handler's lock_task lock held elsewhere (another worker runs the report)
    huey = app.queue("work").huey
    held = huey.lock_task("nightly-report")
    held.acquire()
    job_id = app.enqueue("work", "report", {})

    # When the job runs
    with caplog.at_level(logging.INFO, logger="hueyard"):
        run_one(app)

    # Then it is retried (its attempt counted), with Huey's locked signal and no error one
    assert (state(app, job_id), record(app, job_id)["attempts"]) == ("delayed", "1")
    assert fired == [signals.SIGNAL_LOCKED, signals.SIGNAL_RETRYING, signals.SIGNAL_SCHEDULED]
    saved = record(app, job_id)
    assert saved["error"] == "TaskLockedException: unable to acquire lock nightly-report"
    assert saved["traceback"] == ""
    lines = [r for r in caplog.records if job_id in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.WARNING]
    assert "not run, its lock is held, retrying in 30s" in lines[0].getMessage()
    assert "Traceback" not in caplog.text and lines[0].exc_info is None

    # And once the lock is free, its retry completes and keeps no error of the locked attempt
    held.release()
    make_due(app, redis_conn, job_id)
    run_one(app)
    info = Jobs(app).get(job_id)
    assert info is not None
    assert (info.state, info.result, info.error, info.traceback) == (
        "completed", "reported", None, None,
    )  # fmt: skip


def test_a_lock_held_for_every_attempt_fails_the_job_naming_the_lock(
    app: Hueyard, fired: list[str], redis_conn: redis.Redis
) -> None:
    app.queue("work").huey.lock_task("nightly-report").acquire()
    job_id = app.enqueue("work", "report", {})
    run_one(app)
    make_due(app, redis_conn, job_id)
    run_one(app)

    assert (state(app, job_id), record(app, job_id)["attempts"]) == ("failed", "2")
    assert record(app, job_id)["error"] == (
        "TaskLockedException: unable to acquire lock nightly-report"
    )
    assert record(app, job_id)["traceback"] == ""
    assert fired == [
        signals.SIGNAL_LOCKED,
        signals.SIGNAL_RETRYING,
        signals.SIGNAL_SCHEDULED,
        signals.SIGNAL_LOCKED,
    ]
