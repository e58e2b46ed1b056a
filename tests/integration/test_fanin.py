"""Fan-in and chains against the real Redis server: a parent completes when its last
child finishes, with the counts; follow-ups start with their origin's result.

Workers are driven as Huey's Worker drives them (``huey.dequeue()`` then
``huey.execute(task)``). A consumer that dies between a child's release and the
delivery of its notice is played by taking the storage's ``on_told`` away: the
notice then stays in the child queue's outbox, as it would.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from pydantic import BaseModel, ConfigDict

from framework import current_job, defaults
from framework.application import Hueyard
from framework.errors import (
    ChainError,
    JobActionError,
    OptionError,
    StorageError,
    UnknownHandlerError,
)
from framework.execution import QueueHuey
from framework.fanin import follow_up_key
from framework.handlers import Handler, HandlerRegistry, handler
from framework.jobs import Jobs
from tests.conftest import AppFactory, job_keys

CONFIG = """
[consumer]
lease = 5

[queues.parents]
attempts = 2
backoff = { type = "fixed", delay = 1 }

[queues.kids]
attempts = 1

[queues.next]
attempts = 1
"""


CRASHED: set[str] = set()
"""Tags of the parents that crashed once already (``crash_once``)."""


class Report(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: str
    summary: dict[str, Any]


class Handlers:
    """The test's handlers, by name."""

    def __init__(self, registry: HandlerRegistry) -> None:
        @handler("parents", registry=registry)
        def fan(payload: dict[str, Any]) -> dict[str, Any]:
            job = current_job()
            assert job is not None
            if payload.get("log"):
                job.log("fanning out")
            keys = (
                [f"{payload['tag']}:{i}" for i in range(payload["n"])]
                if payload.get("keyed")
                else None
            )
            ids = job.spawn_many(
                self.work,
                [{"i": i, "fail": i in payload.get("fail", [])} for i in range(payload["n"])],
                keys=keys,
                key_ttl=60 if keys else None,
            )
            if payload.get("inline"):  # the children run (on another thread) before this returns
                worker = threading.Thread(target=lambda: [run_one(self.app, "kids") for _ in ids])
                worker.start()
                worker.join()
            if payload.get("crash_on_first") and job.attempt == 1:
                raise RuntimeError("crashed after the fan-out")
            if payload.get("crash_once") and payload["tag"] not in CRASHED:
                CRASHED.add(payload["tag"])
                raise RuntimeError("crashed after the fan-out")
            return {"spawned": len(ids), "new": len(ids) - len(ids.existing)}

        @handler("parents", registry=registry)
        def lonely(payload: dict[str, Any]) -> dict[str, Any]:
            return {"total": payload["n"] * 2}

        @handler("kids", registry=registry)
        def work(payload: dict[str, Any]) -> dict[str, Any]:
            if payload.get("fail"):
                raise ValueError(f"child {payload['i']} fails")
            return {"i": payload["i"]}

        @handler("next", registry=registry)
        def echo(payload: Any) -> Any:
            return {"got": payload}

        @handler("next", registry=registry)
        def report(payload: Report) -> str:
            return f"to {payload.to}: {payload.summary}"

        self.fan, self.lonely, self.work, self.echo, self.report = fan, lonely, work, echo, report
        self.app: Hueyard


@pytest.fixture
def handlers(make_app: AppFactory) -> Handlers:
    registry = HandlerRegistry()
    found = Handlers(registry)
    found.app = make_app(CONFIG, registry, prefix="fi")
    for runtime in found.app.queues.values():
        runtime.storage.read_timeout = 0.1
    return found


@pytest.fixture
def app(handlers: Handlers) -> Hueyard:
    return handlers.app


@pytest.fixture
def jobs(app: Hueyard) -> Jobs:
    return Jobs(app)


def run_one(app: Hueyard, queue: str) -> str:
    huey: QueueHuey = app.queue(queue).huey
    task = huey.dequeue()
    assert task is not None, f"nothing to run on {queue}"
    huey.execute(task)
    return str(task.id)


def record(app: Hueyard, queue: str, job_id: str) -> dict[str, str]:
    raw = app.queue(queue).storage.conn.hgetall(app.queue(queue).storage.q.job(job_id))
    return {k.decode(): v.decode() for k, v in raw.items()}


def state(jobs: Jobs, job_id: str) -> str | None:
    place = jobs.find(job_id)
    return place.state if place else None


@pytest.fixture
def undelivered(app: Hueyard) -> Iterator[None]:
    """The consumer that releases the children dies before it delivers their notices."""
    storage = app.queue("kids").storage
    saved, storage.on_told = storage.on_told, None
    yield
    storage.on_told = saved


def outbox(app: Hueyard, queue: str) -> list[str]:
    storage = app.queue(queue).storage
    return [item.decode() for item in storage.conn.zrange(storage.q.outbox, 0, -1)]


# -- fan-in ------------------------------------------------------------------------------------


def test_a_parent_waits_for_its_children_and_completes_with_the_last_with_the_counts(
    app: Hueyard, jobs: Jobs
) -> None:
    # Given a parent that fans out three children, the second of which fails
    parent = app.enqueue("parents", "fan", {"n": 3, "fail": [1]})
    # When its handler returns
    run_one(app, "parents")
    # Then it waits for them, its result kept, counted as waiting-children
    assert state(jobs, parent) == "waiting-children"
    assert jobs.counts("parents").waiting_children == 1
    assert jobs.counts("parents").to_json()["waiting-children"] == 1
    info = jobs.get(parent)
    assert info is not None and info.result == {"spawned": 3, "new": 3}
    assert (info.children, info.children_completed, info.children_failed) == (3, 0, 0)
    [waiting] = jobs.list_jobs("parents", "waiting-children").items
    assert waiting.id == parent
    # and each child names it
    children = [job.id for job in jobs.list_jobs("kids", "waiting").items]
    assert {record(app, "kids", child)["parent"] for child in children} == {f"parents:{parent}"}
    # When two children finish, Then it still waits
    run_one(app, "kids")
    run_one(app, "kids")
    assert state(jobs, parent) == "waiting-children"
    # When the last one finishes, Then it completes, once, with the counts
    run_one(app, "kids")
    assert state(jobs, parent) == "completed"
    info = jobs.get(parent)
    assert info is not None
    assert (info.children, info.children_completed, info.children_failed) == (3, 2, 1)
    assert jobs.counts("parents").completed == 1 and jobs.counts("parents").waiting_children == 0
    assert outbox(app, "kids") == [] and outbox(app, "parents") == []
    completed = sum(point.completed for point in jobs.metrics("parents", minutes=2))
    assert completed == 1


def test_children_that_finish_before_their_parent_returns_are_counted(
    app: Hueyard, jobs: Jobs
) -> None:
    # Given a parent whose two children run and finish while its handler still runs
    parent = app.enqueue("parents", "fan", {"n": 2, "fail": [0], "inline": True})
    # When its handler returns
    run_one(app, "parents")
    # Then it completes at once: nothing is pending, and both children count
    assert state(jobs, parent) == "completed"
    info = jobs.get(parent)
    assert info is not None
    assert (info.children, info.children_completed, info.children_failed) == (2, 1, 1)


def test_a_parent_without_children_completes_as_any_job(app: Hueyard, jobs: Jobs) -> None:
    parent = app.enqueue("parents", "fan", {"n": 0})
    run_one(app, "parents")
    assert state(jobs, parent) == "completed"
    assert "children" not in record(app, "parents", parent)


@pytest.mark.usefixtures("undelivered")
def test_a_notice_delivered_twice_counts_once_and_completes_the_parent_once(
    app: Hueyard, jobs: Jobs
) -> None:
    # Given a parent waiting for one child, and the child's consumer died after the
    # child's release and before it delivered the child's notice
    parent = app.enqueue("parents", "fan", {"n": 1})
    run_one(app, "parents")
    child = run_one(app, "kids")
    [notice] = outbox(app, "kids")
    assert notice == f"c|parents:{parent}|{child}|completed"
    assert state(jobs, parent) == "waiting-children"
    # When the notice is delivered, and delivered again (another consumer, at the same time)
    relay = app.relay
    assert relay.deliver("kids", [notice]) == 1
    assert relay.deliver("kids", [notice]) == 1
    # Then the child counts once, and the parent completed once
    info = jobs.get(parent)
    assert info is not None
    assert (info.children, info.children_completed, info.children_failed) == (1, 1, 0)
    assert state(jobs, parent) == "completed"
    assert sum(point.completed for point in jobs.metrics("parents", minutes=2)) == 1
    assert outbox(app, "kids") == []


@pytest.mark.usefixtures("undelivered")
def test_a_notice_its_consumer_did_not_deliver_is_delivered_by_the_recovery_pass(
    app: Hueyard, jobs: Jobs
) -> None:
    # Given a child whose notice stayed in the outbox
    parent = app.enqueue("parents", "fan", {"n": 1})
    run_one(app, "parents")
    run_one(app, "kids")
    # When a recovery pass looks for notices older than a minute, Then it leaves it
    # (its consumer may still deliver it)
    assert app.relay.deliver_pending("kids", older_than=60) == 0
    assert state(jobs, parent) == "waiting-children"
    # When a pass looks for the older ones, Then it delivers it and the parent completes
    assert app.relay.deliver_pending("kids", older_than=0) == 1
    assert state(jobs, parent) == "completed"
    assert outbox(app, "kids") == []


def test_a_child_counts_with_its_first_outcome_only(app: Hueyard, jobs: Jobs) -> None:
    # Given a parent with two children, the first of which failed
    parent = app.enqueue("parents", "fan", {"n": 2, "fail": [0]})
    run_one(app, "parents")
    failed = run_one(app, "kids")
    info = jobs.get(parent)
    assert info is not None and (info.children_completed, info.children_failed) == (0, 1)
    # When that child reports again, completed (retried by hand, it completed)
    app.relay.deliver("kids", [f"c|parents:{parent}|{failed}|completed"])
    # Then its parent still counts its first outcome, and still waits for the other
    info = jobs.get(parent)
    assert info is not None and info.state == "waiting-children"
    assert (info.children, info.children_completed, info.children_failed) == (2, 0, 1)
    # When the other child completes, Then the parent completes with the counts
    run_one(app, "kids")
    info = jobs.get(parent)
    assert info is not None and info.state == "completed"
    assert (info.children, info.children_completed, info.children_failed) == (2, 1, 1)


def test_a_parent_that_runs_again_links_the_children_its_keys_find_and_counts_each_once(
    app: Hueyard, jobs: Jobs
) -> None:
    # Given a parent that fans out keyed children, then crashes (its attempt fails)
    parent = app.enqueue(
        "parents", "fan", {"n": 3, "keyed": True, "tag": "p1", "crash_on_first": True}
    )
    run_one(app, "parents")
    assert state(jobs, parent) == "delayed"
    # and one of its children finishes meanwhile
    run_one(app, "kids")
    app.queue("parents").storage.conn.zadd(app.queue("parents").storage.q.delayed, {parent: 0})
    app.queue("parents").storage.promote_due()
    # When it runs again, spawning the same keyed children
    run_one(app, "parents")
    # Then it found its three children (none new) and waits for the two pending ones
    info = jobs.get(parent)
    assert info is not None and info.result == {"spawned": 3, "new": 0}
    assert (info.children, info.children_completed) == (3, 1)
    assert info.children_pending == 2
    run_one(app, "kids")
    run_one(app, "kids")
    info = jobs.get(parent)
    assert info is not None and info.state == "completed"
    assert (info.children, info.children_completed, info.children_failed) == (3, 3, 0)


def test_a_cancelled_parent_fails_and_its_childrens_later_notices_change_nothing(
    app: Hueyard, jobs: Jobs
) -> None:
    parent = app.enqueue("parents", "fan", {"n": 1})
    run_one(app, "parents")
    assert jobs.cancel("parents", parent).value == "cancelled"
    run_one(app, "kids")
    info = jobs.get(parent)
    assert info is not None and info.state == "failed" and info.error == "cancelled"
    assert (info.children, info.children_completed) == (1, 0)


def test_a_child_removed_before_it_ran_counts_as_failed(app: Hueyard, jobs: Jobs) -> None:
    parent = app.enqueue("parents", "fan", {"n": 2})
    run_one(app, "parents")
    first = jobs.list_jobs("kids", "waiting").items[0].id
    assert jobs.remove("kids", first)  # the parent hears of it at once
    info = jobs.get(parent)
    assert info is not None and (info.children_failed, info.children_pending) == (1, 1)
    run_one(app, "kids")
    info = jobs.get(parent)
    assert info is not None and info.state == "completed"
    assert (info.children, info.children_completed, info.children_failed) == (2, 1, 1)


def test_a_failed_parent_retried_by_hand_counts_its_children_afresh(
    app: Hueyard, jobs: Jobs
) -> None:
    # Given a parent that failed for good after its fan-out (2 attempts)
    tag = f"p2-{id(jobs)}"
    parent = app.enqueue("parents", "fan", {"n": 2, "keyed": True, "tag": tag,
                                             "crash_once": True}, attempts=1)  # fmt: skip
    run_one(app, "parents")
    assert state(jobs, parent) == "failed"
    run_one(app, "kids")
    # When it is retried by hand and runs again
    assert jobs.retry("parents", parent)
    run_one(app, "parents")
    run_one(app, "kids")
    # Then it counts its two children once each
    info = jobs.get(parent)
    assert info is not None and info.state == "completed"
    assert (info.children, info.children_completed, info.children_failed) == (2, 2, 0)


def test_too_many_children_are_refused_before_they_are_enqueued(
    app: Hueyard, jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(defaults, "MAX_CHILDREN", 2)
    parent = app.enqueue("parents", "fan", {"n": 3})
    run_one(app, "parents")
    info = jobs.get(parent)
    assert info is not None and info.state == "delayed"
    assert info.error is not None and "SpawnError" in info.error and "MAX_CHILDREN" in info.error
    assert jobs.counts("kids").waiting == 0


# -- bounds ------------------------------------------------------------------------------------


def test_a_finished_parent_keeps_links_to_a_bounded_number_of_children_failed_first(
    app: Hueyard, jobs: Jobs, redis_conn: redis.Redis
) -> None:
    # Given a parent with more children than a finished parent keeps links to, 3 failing
    n = defaults.CHILD_LINKS_KEPT + 20
    parent = app.enqueue("parents", "fan", {"n": n, "fail": [0, 1, 2]})
    run_one(app, "parents")
    children = app.queue("parents").storage.q.children(parent)
    assert redis_conn.zcard(children) == n
    # When they all finish
    for _ in range(n):
        run_one(app, "kids")
    # Then the counts are whole, the links cut, and the failed ones kept
    info = jobs.get(parent)
    assert info is not None and info.state == "completed"
    assert (info.children, info.children_completed, info.children_failed) == (n, n - 3, 3)
    assert redis_conn.zcard(children) == defaults.CHILD_LINKS_KEPT
    failed = redis_conn.zrangebyscore(children, 2 * defaults.CHILD_BAND, "+inf")
    assert len(failed) == 3


def test_a_parent_trimmed_by_retention_takes_its_children_set_with_it(
    app: Hueyard, jobs: Jobs, redis_conn: redis.Redis
) -> None:
    first = app.enqueue("parents", "fan", {"n": 1}, keep_completed=1)
    run_one(app, "parents")
    run_one(app, "kids")
    children = app.queue("parents").storage.q.children(first)
    assert redis_conn.exists(children)
    second = app.enqueue("parents", "fan", {"n": 1}, keep_completed=1)
    run_one(app, "parents")
    run_one(app, "kids")
    assert jobs.get(first) is None
    assert not redis_conn.exists(children)
    assert state(jobs, second) == "completed"


def test_removing_a_waiting_parent_deletes_its_children_set(
    app: Hueyard, jobs: Jobs, redis_conn: redis.Redis
) -> None:
    parent = app.enqueue("parents", "fan", {"n": 1})
    run_one(app, "parents")
    assert jobs.remove("parents", parent)
    assert not redis_conn.exists(app.queue("parents").storage.q.children(parent))
    run_one(app, "kids")  # its notice finds no parent: nothing is written
    assert not redis_conn.exists(app.queue("parents").storage.q.job(parent))
    assert outbox(app, "kids") == []


@pytest.mark.parametrize("suffix", [":children", ":logs"])
def test_an_id_naming_a_jobs_own_key_is_refused_by_every_call_and_nothing_is_deleted(
    app: Hueyard, jobs: Jobs, redis_conn: redis.Redis, suffix: str
) -> None:
    # Given a parent waiting for its two children, with a log line and its children set
    parent = app.enqueue("parents", "fan", {"n": 2, "log": True})
    run_one(app, "parents")
    q = app.queue("parents").storage.q

    before = job_keys(redis_conn, q, parent)
    assert all(before)
    sub_key = parent + suffix  # "<id>:children" names its children set, not a job
    calls = {
        "remove": lambda: jobs.remove("parents", sub_key),
        "retry": lambda: jobs.retry("parents", sub_key),
        "promote": lambda: jobs.promote("parents", sub_key),
        "cancel": lambda: jobs.cancel("parents", sub_key),
        "get": lambda: jobs.get(sub_key),
        "get on its queue": lambda: jobs.get(sub_key, queue="parents"),
        "find": lambda: jobs.find(sub_key),
        "children": lambda: jobs.children("parents", sub_key),
    }
    # When each call is given it, Then each refuses it, saying why
    for name, call in calls.items():
        with pytest.raises(JobActionError, match="is not a job id: a job id never contains ':'"):
            call()
            pytest.fail(f"{name} took {sub_key!r}")
    # And nothing was deleted or changed
    assert job_keys(redis_conn, q, parent) == before
    # And the parent waits for both children, then completes with the right counts
    run_one(app, "kids")
    assert state(jobs, parent) == "waiting-children"
    run_one(app, "kids")
    info = jobs.get(parent)
    assert info is not None and info.state == "completed"
    assert (info.children, info.children_completed, info.children_failed) == (2, 2, 0)


def test_a_key_of_the_wrong_type_stops_the_children_script_before_it_writes(
    app: Hueyard, redis_conn: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    parent = app.enqueue("parents", "fan", {"n": 1})
    run_one(app, "parents")
    storage = app.queue("parents").storage
    redis_conn.delete(storage.q.waiting_children)
    redis_conn.set(storage.q.waiting_children, "planted")
    before = {key: redis_conn.dump(key) for key in redis_conn.scan_iter()}
    with caplog.at_level(logging.ERROR, logger="hueyard.fanin"):
        assert app.relay.deliver("kids", [f"c|parents:{parent}|some-child|completed"]) == 0
    assert "'{fi:parents}:waiting-children' is a string" in caplog.text
    assert {key: redis_conn.dump(key) for key in redis_conn.scan_iter()} == before


# -- chains ------------------------------------------------------------------------------------


def test_a_follow_up_gets_the_result_as_its_payload(
    app: Hueyard, handlers: Handlers, jobs: Jobs
) -> None:
    # Given a job whose follow-up is echo
    origin = handlers.lonely.enqueue({"n": 21}, then=handlers.echo)
    # When it completes
    run_one(app, "parents")
    # Then its follow-up waits on its queue, with the result as its payload, its origin named
    [follow] = jobs.list_jobs("next", "waiting").items
    assert follow.payload == {"total": 42}
    assert follow.follows == f"parents:{origin}"
    assert follow.key == follow_up_key("parents", origin)
    assert outbox(app, "parents") == []
    run_one(app, "next")
    assert app.result("next", follow.id) == {"got": {"total": 42}}


def test_a_chain_carries_its_fixed_payload_and_options_and_the_rest_of_the_chain(
    app: Hueyard, handlers: Handlers, jobs: Jobs
) -> None:
    # Given lonely -> report (the result under "summary") -> echo (the report's result)
    chain = (
        handlers.lonely.s({"n": 1})
        .then(handlers.report, {"to": "ops@example.com"}, field="summary", priority=2)
        .then(handlers.echo)
    )
    origin = chain.enqueue()
    assert jobs.get(origin).then == ("next.report", "next.echo")  # type: ignore[union-attr]
    run_one(app, "parents")
    [second] = jobs.list_jobs("next", "waiting").items
    assert second.payload == {"to": "ops@example.com", "summary": {"total": 2}}
    assert second.priority == 2 and second.then == ("next.echo",)
    run_one(app, "next")
    [third] = jobs.list_jobs("next", "waiting").items
    assert third.follows == f"next:{second.id}" and third.then == ()
    run_one(app, "next")
    assert app.result("next", third.id) == {"got": "to ops@example.com: {'total': 2}"}


def test_the_follow_up_of_a_parent_starts_when_its_last_child_finished(
    app: Hueyard, handlers: Handlers, jobs: Jobs
) -> None:
    parent = handlers.fan.enqueue({"n": 1}, then=handlers.echo)
    run_one(app, "parents")
    assert jobs.counts("next").waiting == 0
    assert "follow_up" in record(app, "parents", parent)
    run_one(app, "kids")
    [follow] = jobs.list_jobs("next", "waiting").items
    assert follow.payload == {"spawned": 1, "new": 1}
    assert "follow_up" not in record(app, "parents", parent)


def test_a_result_that_is_not_a_valid_follow_up_payload_fails_the_job_not_retried(
    app: Hueyard, handlers: Handlers, jobs: Jobs
) -> None:
    # Given a job whose result goes to report as its whole payload (report wants to, summary)
    origin = handlers.lonely.enqueue({"n": 1}, then=handlers.report)
    # When it completes
    run_one(app, "parents")
    # Then it fails at once (it has a second attempt), naming the follow-up and the fields
    info = jobs.get(origin)
    assert info is not None and info.state == "failed" and info.attempts == 1
    assert info.error is not None
    assert "can not start its follow-up next.report" in info.error
    assert "does not validate against Report" in info.error and "to: Field required" in info.error
    assert jobs.counts("next").waiting == 0


@pytest.mark.parametrize(
    ("chain", "error", "message"),
    [
        (lambda h: h.lonely.s({"n": 1}).then(h.report, {"to": "x"}), ChainError, "needs field="),
        (
            lambda h: h.lonely.s({"n": 1}).then(h.report, [1], field="summary"),
            ChainError,
            "must be a dict",
        ),
        (
            lambda h: h.lonely.s({"n": 1}).then(h.report, {"summary": 1}, field="summary"),
            ChainError,
            "has a key 'summary'",
        ),
        (lambda h: h.lonely.s({"n": 1}).then(h.echo, key="k"), ChainError, "can not take key"),
        (lambda h: h.lonely.s({"n": 1}).then(h.echo, priority=0), ChainError, "priority=0"),
        (
            lambda h: h.lonely.s({"n": 1}).then(h.echo, field="bad name", payload={}),
            ChainError,
            "field='bad name'",
        ),
        (
            lambda h: h.lonely.s({"n": 1}).then(h.echo, field="summary\n", payload={}),
            ChainError,
            "field='summary\\n'",
        ),
        (lambda h: h.lonely.s(field="x"), ChainError, "is a follow-up"),
        (lambda h: h.lonely.then(h.echo), ChainError, "lonely.s(payload).then"),
    ],
    ids=[
        "payload-without-field",
        "payload-not-a-dict",
        "field-taken",
        "key",
        "priority",
        "field-name",
        "field-name-with-newline",
        "head-is-a-follow-up",
        "then-on-a-handler",
    ],
)
def test_a_chain_declared_wrongly_is_refused_before_anything_is_stored(
    handlers: Handlers, jobs: Jobs, chain: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        built = chain(handlers)
        built.enqueue()
    assert jobs.counts("parents").waiting == 0


def test_a_chain_too_long_or_too_large_is_refused(handlers: Handlers, jobs: Jobs) -> None:
    chain = handlers.lonely.s({"n": 1})
    for _ in range(defaults.MAX_CHAIN + 1):
        chain = chain.then(handlers.echo)
    with pytest.raises(ChainError, match="too long"):
        chain.enqueue()
    big = {"to": "x" * defaults.MAX_CHAIN_BYTES}
    with pytest.raises(ChainError, match="over the limit"):
        handlers.lonely.s({"n": 1}).then(handlers.report, big, field="summary").enqueue()
    assert jobs.counts("parents").waiting == 0


def test_a_follow_up_on_a_handler_the_app_does_not_know_is_refused(
    handlers: Handlers, app: Hueyard, jobs: Jobs
) -> None:
    stranger: Handler[Any] = handler("next", name="stranger", registry=HandlerRegistry())(
        lambda payload: payload
    )
    with pytest.raises(UnknownHandlerError):
        handlers.lonely.enqueue({"n": 1}, then=stranger)
    with pytest.raises(OptionError):
        handlers.lonely.enqueue({"n": 1}, then=handlers.echo, priority=11)
    assert jobs.counts("parents").waiting == 0


def test_a_follow_up_notice_delivered_twice_enqueues_one_job(
    app: Hueyard, handlers: Handlers, jobs: Jobs, redis_conn: redis.Redis
) -> None:
    # Given a completed job whose follow-up notice its consumer did not deliver
    storage = app.queue("parents").storage
    storage.on_told = None
    origin = handlers.lonely.enqueue({"n": 1}, then=handlers.echo)
    run_one(app, "parents")
    [notice] = outbox(app, "parents")
    assert notice.startswith(f"t|{origin}|")
    # When it is delivered twice
    app.relay.deliver("parents", [notice])
    app.relay.deliver("parents", [notice])
    # Then one follow-up was enqueued, and its key outlives it for a day at most
    assert jobs.counts("next").waiting == 1
    run_one(app, "next")
    key = app.queue("next").storage.q.key(follow_up_key("parents", origin))
    assert 0 < redis_conn.pttl(key) <= defaults.FOLLOW_UP_KEY_TTL * 1000
    app.relay.deliver("parents", [notice])
    assert jobs.counts("next").waiting == 0 and jobs.counts("next").completed == 1


def test_the_read_api_lists_a_parents_children_failed_first(app: Hueyard, jobs: Jobs) -> None:
    parent = app.enqueue("parents", "fan", {"n": 3, "fail": [2]})
    run_one(app, "parents")
    pending = jobs.children("parents", parent)
    assert pending.total == 3 and {link.state for link in pending.items} == {"pending"}
    assert {link.queue for link in pending.items} == {"kids"}
    for _ in range(3):
        run_one(app, "kids")
    page = jobs.children("parents", parent, page=1, page_size=2)
    assert page.total == 3 and page.pages == 2
    assert [link.state for link in page.items] == ["failed", "completed"]
    assert jobs.get(page.items[0].id).parent == f"parents:{parent}"  # type: ignore[union-attr]
    assert jobs.children("parents", "no-such-job").total == 0


def test_a_childs_outcome_cancelled_before_it_ran_reaches_its_parent(
    app: Hueyard, jobs: Jobs
) -> None:
    parent = app.enqueue("parents", "fan", {"n": 1})
    run_one(app, "parents")
    [child] = jobs.list_jobs("kids", "waiting").items
    assert jobs.cancel("kids", child.id).value == "cancelled"  # the parent hears of it at once
    assert outbox(app, "kids") == []
    info = jobs.get(parent)
    assert info is not None and info.state == "completed"
    assert (info.children, info.children_completed, info.children_failed) == (1, 0, 1)


def test_a_children_set_of_the_wrong_type_stops_the_release_before_it_writes(
    app: Hueyard, redis_conn: redis.Redis
) -> None:
    app.enqueue("parents", "lonely", {"n": 1})
    storage = app.queue("parents").storage
    claim = storage.claim()
    assert claim is not None
    # a parent (its record counts a child) whose children set is not a set
    redis_conn.hset(storage.q.job(claim.id), "children", 1)
    redis_conn.set(storage.q.children(claim.id), "planted")
    before = {key: redis_conn.dump(key) for key in redis_conn.scan_iter()}
    with pytest.raises(StorageError, match=r":children' is a string"):
        storage.release(claim, "completed", value="{}")
    assert {key: redis_conn.dump(key) for key in redis_conn.scan_iter()} == before


def test_a_follow_up_its_queue_refuses_stays_in_the_outbox_until_the_key_is_fixed(
    app: Hueyard, handlers: Handlers, jobs: Jobs, redis_conn: redis.Redis
) -> None:
    # Given the follow-up's queue holds a key of the wrong type
    waiting = app.queue("next").storage.q.waiting
    redis_conn.set(waiting, "planted")
    # When a job with a follow-up completes
    origin = handlers.lonely.enqueue({"n": 1}, then=handlers.echo)
    run_one(app, "parents")
    # Then it completed, and its follow-up waits in the outbox
    assert state(jobs, origin) == "completed"
    [notice] = outbox(app, "parents")
    assert notice.startswith(f"t|{origin}|")
    # When the key is fixed, Then the next recovery pass enqueues the follow-up
    redis_conn.delete(waiting)
    assert app.relay.deliver_pending("parents", older_than=0) == 1
    [follow] = jobs.list_jobs("next", "waiting").items
    assert follow.payload == {"total": 2} and outbox(app, "parents") == []


def test_enqueue_many_refuses_a_follow_up_saying_how(app: Hueyard, jobs: Jobs) -> None:
    with pytest.raises(ChainError, match="enqueue_many takes none"):
        app.enqueue_many("parents", "lonely", [{"n": 1}], then="next.echo")  # type: ignore[call-arg]
    assert jobs.counts("parents").waiting == 0
