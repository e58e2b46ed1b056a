"""Huey's API on a hueyard queue's Huey: it keeps Huey's meaning, or refuses at the call
naming the hueyard way; never accepted and then ignored (real Redis, jobs run in-process
the way a worker runs them)."""

from __future__ import annotations

from typing import Any

import pytest
from huey.exceptions import CancelExecution

from framework.application import Hueyard
from framework.errors import HueyardError
from framework.execution import QueueHuey
from framework.handlers import HandlerRegistry, handler
from framework.jobs import Jobs
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
        (lambda huey: setattr(huey, "immediate", True), "call it directly, handler(payload)"),
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
