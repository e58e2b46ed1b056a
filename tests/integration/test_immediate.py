"""The test mode (framework/immediate.py, framework/testing.py): an enqueue runs its jobs
before it returns, through the enqueue, claim and release scripts and the queue's Huey.

Each test runs twice: with the jobs kept in memory (fakeredis with Lua; the test
then also checks that nothing reached the real server), and with them kept in
the real Redis test database.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from huey import signals
from pydantic import BaseModel

import framework
from framework import current_job
from framework.application import Hueyard
from framework.errors import HueyardError, JobFailedError, NotReplicatedError, PayloadError
from framework.handlers import HandlerRegistry, handler
from framework.immediate import memory_pool
from framework.jobs import Jobs
from framework.runtime import reset_app, set_app
from framework.testing import drain, immediate
from tests.conftest import AppFactory
from tests.integration import cli_runner

CONFIG = """
[defaults]
attempts = 3
backoff = { type = "exponential", delay = 300 }

[queues.work]
[queues.other]

[queues.slow]
attempts = 1
timeout = 0.5

[queues.limited]
rate_limit = { max = 1, per = 3600 }
"""


class Greeting(BaseModel):
    name: str


def registry_with_handlers() -> HandlerRegistry:
    registry = HandlerRegistry()

    @handler("work", registry=registry)
    def greet(payload: Greeting) -> dict[str, Any]:
        job = current_job()
        assert job is not None
        return {"hello": payload.name, "attempt": job.attempt}

    @handler("work", registry=registry)
    def always_fail(payload: dict[str, Any]) -> None:
        job = current_job()
        assert job is not None
        raise ValueError(f"no luck on attempt {job.attempt}")

    @handler("work", registry=registry)
    def third_time(payload: dict[str, Any]) -> str:
        job = current_job()
        assert job is not None
        if job.attempt < 3:
            raise ValueError("not yet")
        return "third time lucky"

    @handler("other", registry=registry)
    def double(payload: dict[str, Any]) -> int:
        return int(payload["n"]) * 2

    @handler("other", registry=registry)
    def add_five(payload: dict[str, Any]) -> dict[str, int]:
        return {"n": int(payload["n"]) + 5}

    @handler("work", registry=registry)
    def spawner(payload: dict[str, Any]) -> dict[str, int]:
        job = current_job()
        assert job is not None
        return {"spawned": len(job.spawn_many(double, [{"n": n} for n in range(3)]))}

    HANDLERS.update(double=double, add_five=add_five, spawner=spawner)

    @handler("work", registry=registry)
    def fan_out(payload: dict[str, Any]) -> dict[str, Any]:
        job = current_job()
        assert job is not None
        children = [double.enqueue({"n": n}) for n in range(payload["count"])]
        after = current_job()  # the children run after this job; it is still this job
        return {"children": children, "same_job": after is not None and after.id == job.id}

    @handler("other", registry=registry)
    def busy(payload: dict[str, Any]) -> str:
        order.append(f"busy starts, {payload['of']} {state_of(payload['of'])}")
        deadline = time.monotonic() + payload["seconds"]
        while time.monotonic() < deadline:
            pass
        return "busy done"

    @handler("slow", registry=registry)
    def hands_off(payload: dict[str, Any]) -> str:
        # a job of 0.5 s at most that enqueues one of 0.8 s on a queue with no timeout
        job = current_job()
        assert job is not None
        child = busy.enqueue({"seconds": 0.8, "of": job.id})
        order.append(f"enqueued, child {state_of(child)}")
        return child

    @handler("slow", registry=registry)
    def spin(payload: dict[str, Any]) -> str:
        deadline = time.monotonic() + payload["seconds"]
        while time.monotonic() < deadline:
            pass
        return "spun"

    @handler("work", registry=registry)
    def interrupted(payload: dict[str, Any]) -> None:
        signal.raise_signal(signal.SIGINT)  # Ctrl-C while the job runs
        time.sleep(5)  # Python's handler raises KeyboardInterrupt before this ends

    @handler("work", registry=registry)
    def gives_up(payload: dict[str, Any]) -> None:
        raise KeyboardInterrupt  # a handler's own raise, not Ctrl-C

    @handler("limited", registry=registry)
    def rare(payload: dict[str, Any]) -> int:
        return int(payload["n"])

    return registry


HANDLERS: dict[str, Any] = {}
"""The handlers of the latest :func:`registry_with_handlers`, by name (to chain them)."""

order: list[str] = []
"""What the handlers saw, in order (``busy`` and ``hands_off``)."""


def state_of(job_id: str) -> str | None:
    place = Jobs(framework.get_app()).find(job_id)
    return place.state if place else None


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def app(store: str, make_app: AppFactory, redis_conn: redis.Redis) -> Iterator[Hueyard]:
    """An app in test mode, the process's app (framework.result reads through it)."""
    built = make_app(CONFIG, registry_with_handlers(), prefix="imm")
    built.immediate_use_memory = store == "memory"
    built.immediate = True
    set_app(built)
    yield built
    reset_app()
    if store == "memory":
        assert redis_conn.dbsize() == 0, "the test mode in memory wrote to the real Redis"


def state(app: Hueyard, job_id: str) -> str | None:
    place = Jobs(app).find(job_id)
    return place.state if place else None


def test_an_enqueue_runs_the_job_and_its_result_is_readable(app: Hueyard) -> None:
    job_id = app.enqueue("work", "greet", {"name": "Ada"})

    assert framework.result(job_id) == {"hello": "Ada", "attempt": 1}
    info = Jobs(app).get(job_id)
    assert info is not None
    assert (info.state, info.attempts, info.error) == ("completed", 1, None)


def test_every_enqueue_path_runs_its_jobs(app: Hueyard) -> None:
    greet = app.registry.get("work.greet")
    by_handler = app.handler_spec("greet", "work")
    assert by_handler is greet
    ids = [
        framework.enqueue("work", "greet", {"name": "a"}),
        app.enqueue("work", "work.greet", {"name": "b"}),
        *framework.enqueue_many("work", "greet", [{"name": "c"}, {"name": "d"}]),
        *app.enqueue_many("other", "double", [{"n": 1}, {"n": 2}]),
    ]
    assert [state(app, job_id) for job_id in ids] == ["completed"] * 6
    assert [framework.result(job_id) for job_id in ids[-2:]] == [2, 4]


def test_a_failing_handler_ends_failed_after_its_attempts_with_its_error(app: Hueyard) -> None:
    # Given a queue with 3 attempts, 300 s apart: the test mode waits for no backoff
    job_id = app.enqueue("work", "always_fail", {})

    with pytest.raises(JobFailedError) as caught:
        framework.result(job_id)
    assert caught.value.error == "ValueError: no luck on attempt 3"
    info = Jobs(app).get(job_id)
    assert info is not None
    assert (info.state, info.attempts) == ("failed", 3)
    assert info.traceback is not None and "ValueError: no luck on attempt 3" in info.traceback


def test_a_retry_that_succeeds_completes_and_keeps_no_error(app: Hueyard) -> None:
    job_id = app.enqueue("work", "third_time", {}, attempts=5)
    assert framework.result(job_id) == "third time lucky"
    info = Jobs(app).get(job_id)
    assert info is not None
    assert (info.state, info.attempts, info.error) == ("completed", 3, None)


def test_a_job_a_job_enqueues_runs_after_it_as_with_a_consumer(app: Hueyard) -> None:
    # Given a job with a timeout of 0.5 s that enqueues a job of 0.8 s on another queue
    order.clear()
    parent = app.enqueue("slow", "hands_off", {})
    # Then its enqueue returned at once (the child waiting), the parent completed within
    # its timeout, and the child ran after it ended, on its own time
    assert framework.result(parent) is not None
    child = framework.result(parent)
    assert framework.result(child) == "busy done"
    assert order == ["enqueued, child waiting", f"busy starts, {parent} completed"]


def test_a_payload_that_does_not_validate_is_refused_at_enqueue(app: Hueyard) -> None:
    with pytest.raises(PayloadError, match="does not validate against Greeting: name"):
        app.enqueue("work", "greet", {"nom": "Ada"})
    assert Jobs(app).counts("work").to_json() == {
        "waiting": 0, "active": 0, "delayed": 0, "completed": 0, "failed": 0, "paused": 0,
        "waiting-children": 0, "isPaused": False,
    }  # fmt: skip


def test_a_job_enqueued_by_a_job_runs_inside_it(app: Hueyard) -> None:
    job_id = app.enqueue("work", "fan_out", {"count": 3})
    result = framework.result(job_id)
    assert result["same_job"] is True
    assert [framework.result(child) for child in result["children"]] == [0, 2, 4]


def test_a_chain_runs_to_its_last_step_before_the_enqueue_returns(app: Hueyard) -> None:
    # Given a chain of three steps (each step's result is the next one's payload)
    add_five = HANDLERS["add_five"]
    origin = add_five.s({"n": 1}).then(add_five).then(add_five).enqueue()
    # Then every step ran, as a consumer would have run them
    jobs = Jobs(app)
    assert jobs.counts("other").completed == 3 and jobs.counts("other").waiting == 0
    assert framework.result(origin) == {"n": 6}
    (last,) = [job for job in jobs.list_jobs("other", "completed").items if job.result == {"n": 16}]
    assert last.follows is not None


def test_a_parent_s_follow_up_runs_once_its_children_finished(app: Hueyard) -> None:
    # Given a parent whose three children double 0, 1, 2, and a follow-up on its result
    parent = (
        HANDLERS["spawner"].s({}).then(HANDLERS["add_five"], {"n": 10}, field="spawn").enqueue()
    )
    # Then the children ran, the parent completed, and its follow-up ran after them
    jobs = Jobs(app)
    assert state(app, parent) == "completed"
    assert jobs.counts("other").waiting == 0
    results = [job.result for job in jobs.list_jobs("other", "completed").items]
    assert sorted(results, key=str) == sorted([0, 2, 4, {"n": 15}], key=str)


def test_a_job_past_its_timeout_is_stopped_as_in_a_worker(app: Hueyard) -> None:
    job_id = app.enqueue("slow", "spin", {"seconds": 30})
    with pytest.raises(JobFailedError, match=r"timed out after 0\.5 s"):
        framework.result(job_id)


@pytest.fixture
def python_handles_sigint() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt in this process (as in a test run from a terminal;
    a worker process of pytest-xdist may ignore it)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("python_handles_sigint")
def test_ctrl_c_in_a_job_stops_the_test_and_puts_the_job_back(app: Hueyard) -> None:
    with pytest.raises(KeyboardInterrupt):
        app.enqueue("work", "interrupted", {})
    (waiting,) = Jobs(app).list_jobs("work", "waiting").items
    assert (waiting.attempts, waiting.error) == (0, None)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


@pytest.mark.usefixtures("python_handles_sigint")
def test_a_keyboard_interrupt_a_handler_raises_itself_fails_its_attempts_as_in_a_worker(
    app: Hueyard,
) -> None:
    # When a handler raises KeyboardInterrupt itself (no Ctrl-C)
    job_id = app.enqueue("work", "gives_up", {})
    # Then the enqueue returns, and the job failed after its attempts, as with a consumer
    job = Jobs(app).get(job_id)
    assert job is not None and job.state == "failed", job
    assert job.error is not None and "KeyboardInterrupt" in job.error
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_in_another_thread_a_keyboard_interrupt_is_the_handler_s_own(app: Hueyard) -> None:
    # A signal never reaches a thread other than the main one: there it is code's own
    ids: list[str] = []
    thread = threading.Thread(target=lambda: ids.append(app.enqueue("work", "gives_up", {})))
    thread.start()
    thread.join()
    job = Jobs(app).get(ids[0])
    assert job is not None and job.state == "failed", job


def test_hooks_and_signals_run_as_in_a_worker(app: Hueyard) -> None:
    huey = app.queue("work").huey
    seen: list[str] = []

    @huey.pre_execute()
    def before(task: Any) -> None:
        seen.append("pre")

    @huey.signal(signals.SIGNAL_COMPLETE)
    def done(signal: str, task: Any) -> None:
        seen.append(signal)

    app.enqueue("work", "greet", {"name": "Ada"})
    assert seen == ["pre", signals.SIGNAL_COMPLETE]


def test_a_delayed_job_waits_until_drained(app: Hueyard) -> None:
    # Given a job for later: it is not run by its enqueue
    later = app.enqueue("work", "greet", {"name": "later"}, delay=3600)
    assert state(app, later) == "delayed"
    # When the queue is drained, it stays: it is not due
    assert drain("work") == drain("work", app=app)
    assert drain("work").delayed == 1
    # Then drained with delayed=True, it runs
    drained = drain("work", delayed=True)
    assert (drained.completed, drained.delayed) == (1, 0)
    assert framework.result(later) == {"hello": "later", "attempt": 1}


def test_drain_runs_the_delayed_jobs_that_are_due(app: Hueyard) -> None:
    soon = app.enqueue("work", "greet", {"name": "soon"}, delay=0.2)
    later = app.enqueue("work", "greet", {"name": "later"}, delay=3600)
    time.sleep(0.3)  # `soon` is due now

    drained = drain("work")

    assert (drained.completed, drained.failed, drained.delayed) == (1, 0, 1)
    assert (state(app, soon), state(app, later)) == ("completed", "delayed")


@pytest.fixture
def plain_app(store: str, make_app: AppFactory) -> Hueyard:
    """An app not in test mode, its jobs in memory or in the real Redis."""
    pool = memory_pool() if store == "memory" else None
    return make_app(CONFIG, registry_with_handlers(), prefix="imm", pool=pool)


def test_drain_runs_what_was_enqueued_outside_the_test_mode(plain_app: Hueyard) -> None:
    ok = plain_app.enqueue("work", "greet", {"name": "Ada"})
    bad = plain_app.enqueue("work", "always_fail", {})
    assert (state(plain_app, ok), state(plain_app, bad)) == ("waiting", "waiting")

    drained = drain("work", app=plain_app)

    assert (drained.completed, drained.failed, drained.retried) == (1, 1, 2)
    assert (state(plain_app, ok), state(plain_app, bad)) == ("completed", "failed")


def test_a_paused_queue_runs_nothing_until_resumed_and_drained(app: Hueyard) -> None:
    Jobs(app).pause("work")
    job_id = app.enqueue("work", "greet", {"name": "Ada"})
    assert state(app, job_id) == "paused"
    assert drain("work").waiting == 1

    Jobs(app).resume("work")
    assert drain("work").completed == 1
    assert state(app, job_id) == "completed"


def test_the_rate_limit_holds(app: Hueyard) -> None:
    first = app.enqueue("limited", "rare", {"n": 1})
    second = app.enqueue("limited", "rare", {"n": 2})
    assert (state(app, first), state(app, second)) == ("completed", "waiting")
    assert drain("limited").waiting == 1


def test_hueys_own_switch_is_the_apps(app: Hueyard) -> None:
    huey = app.queue("other").huey
    assert huey.immediate is True
    huey.immediate = False
    assert (app.immediate, app.queue("work").huey.immediate) == (False, False)
    huey.immediate = True
    assert (app.immediate, app.queue("work").huey.immediate) == (True, True)
    job_id = app.enqueue("work", "greet", {"name": "Ada"})
    assert state(app, job_id) == "completed"


def test_a_consumer_refuses_an_app_in_test_mode(app: Hueyard) -> None:
    with pytest.raises(SystemExit, match="test mode"):
        app.create_consumer()


def test_drain_stops_after_max_runs(plain_app: Hueyard) -> None:
    for n in range(5):
        plain_app.enqueue("other", "double", {"n": n})
    with pytest.raises(HueyardError, match="stopped after 3 runs"):
        drain("other", app=plain_app, max_runs=3)


def test_switching_the_mode_off_puts_the_configured_redis_back(
    make_app: AppFactory, redis_conn: redis.Redis
) -> None:
    app = make_app(CONFIG, registry_with_handlers(), prefix="imm")
    configured = app.pool
    with immediate(app) as same:
        assert same is app and app.pool is not configured
        in_memory = app.enqueue("work", "greet", {"name": "Ada"})
        assert state(app, in_memory) == "completed"
    assert (app.immediate, app.pool) == (False, configured)
    assert state(app, in_memory) is None  # the memory store went with the mode
    assert redis_conn.dbsize() == 0
    # and a second block starts from an empty store
    with immediate(app):
        assert Jobs(app).counts("work").completed == 0


def test_hueyard_enqueue_runs_the_job_and_hueyard_job_shows_it(
    tmp_path: Any, redis_url: str, redis_conn: redis.Redis
) -> None:
    # Given a project whose config points at the test database, and a handler module
    config = tmp_path / "queues.toml"
    config.write_text(f'[redis]\nurl = "{redis_url}"\n\n[queues.work]\nattempts = 2\n')
    (tmp_path / "shop_handlers.py").write_text(
        "from framework import handler\n\n"
        "@handler('work')\n"
        "def total(payload: dict) -> int:\n"
        "    return sum(payload['prices'])\n"
    )
    env = {
        "HUEYARD_CONFIG": str(config),
        "HUEYARD_HANDLER_PACKAGES": "",
        "HUEYARD_HANDLER_MODULES": "shop_handlers",
        "PYTHONPATH": str(tmp_path),
    }
    # When `hueyard enqueue` runs in test mode, keeping the job in that Redis
    enqueued = cli_runner.run(
        ["enqueue", "work", "total", "--data", '{"prices": [2, 3]}'],
        {**env, "HUEYARD_IMMEDIATE": "redis"},
    )
    assert enqueued.returncode == 0, enqueued.stderr
    job_id = enqueued.stdout.strip()
    assert "the job ran here and is completed" in enqueued.stderr

    # Then `hueyard job` (no test mode) shows it completed with its result
    shown = cli_runner.run(["job", job_id, "--json"], env)
    assert shown.returncode == 0, shown.stderr
    assert '"state": "completed"' in shown.stdout and '"result": 5' in shown.stdout


def test_the_memory_store_waits_for_no_replica(make_app: AppFactory) -> None:
    # Given an app whose enqueues wait for a replica, on a server that has none
    app = make_app(
        CONFIG, registry_with_handlers(), prefix="imm",
        redis_lines="wait_replicas = 1\nwait_timeout = 0.1",
    )  # fmt: skip
    # When it is in test mode in memory, an enqueue stores and runs its job
    with immediate(app):
        job_id = app.enqueue("work", "greet", {"name": "Ada"})
        assert state(app, job_id) == "completed"
    # And back on the configured Redis, enqueues wait for the replica again
    with pytest.raises(NotReplicatedError):
        app.enqueue("work", "greet", {"name": "Ada"})
