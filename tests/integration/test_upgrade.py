"""Jobs that hueyard 0.1.0 left in Redis still run and still read.

``tests/fixtures/records_0_1_0.json`` holds four records exactly as 0.1.0
wrote them (``HGETALL`` of a waiting, a delayed, a completed and a failed job
of queue ``messages``, with their sorted-set scores). Each test plants them
in the test database where 0.1.0 kept them (``{hueyard}:job:<id>``,
``{hueyard}:q:messages:<state>``), moves them with ``upgrade_keys`` (what
``hueyard upgrade-keys`` does), then uses the current code on them.
"""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from framework.application import Hueyard
from framework.doctor import Check, Severity, diagnose
from framework.handlers import HandlerRegistry, handler
from framework.jobs import Jobs
from framework.upgrade import legacy_queues, upgrade_keys
from tests.conftest import AppFactory, app_toml

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "records_0_1_0.json"
RECORDS: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))["jobs"]

handled: list[dict[str, Any]] = []
"""The payloads the handler ran on, in order."""


def job_in(state: str) -> str:
    [job_id] = [job_id for job_id, job in RECORDS.items() if job["set"] == state]
    return job_id


@pytest.fixture
def app(redis_conn: redis.Redis, make_app: AppFactory) -> Hueyard:
    registry = HandlerRegistry()

    @handler("messages", registry=registry)
    def send_message(payload: dict[str, Any]) -> dict[str, Any]:
        handled.append(payload)
        return {"sent_to": payload["to"], "when": payload.get("when")}

    handled.clear()
    app = make_app("[queues.messages]", registry, prefix="hueyard")
    app.queue("messages").storage.read_timeout = 0.1
    plant_0_1_0(redis_conn)
    report = upgrade_keys(redis_conn, app.keys, ["messages"])
    assert (report.jobs, report.left) == ({"messages": len(RECORDS)}, [])
    return app


def plant_0_1_0(conn: redis.Redis) -> None:
    """The records where hueyard 0.1.0 kept them, under the one tag ``{hueyard}``."""
    for job_id, job in RECORDS.items():
        conn.hset(f"{{hueyard}}:job:{job_id}", mapping=job["record"])
        conn.zadd(f"{{hueyard}}:q:messages:{job['set']}", {job_id: job["score"]})
        for line in job.get("logs", []):
            conn.rpush(f"{{hueyard}}:job:{job_id}:logs", line)
    conn.set("{hueyard}:q:messages:seq", 4)


def run_one(app: Hueyard) -> None:
    huey = app.queue("messages").huey
    task = huey.dequeue()
    assert task is not None, "nothing to run"
    huey.execute(task)


def test_a_waiting_job_of_0_1_0_runs_with_its_payload(app: Hueyard) -> None:
    # When a current consumer takes the waiting job 0.1.0 wrote
    job_id = job_in("waiting")
    run_one(app)

    # Then its handler ran on its payload (a datetime in it included) and it completed
    job = Jobs(app).get(job_id)
    assert job is not None
    assert (job.state, job.attempts, job.problem) == ("completed", 1, None)
    when = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)  # a tagged datetime in 0.1.0
    assert handled == [
        {"to": "+4915112345678", "content": "Hallo é", "n": [1, 2.5, None], "when": when}
    ]
    assert app.result("messages", job_id) == {"sent_to": "+4915112345678", "when": when}


def test_a_delayed_job_of_0_1_0_is_promoted_and_runs(app: Hueyard, redis_conn: redis.Redis) -> None:
    job_id = job_in("delayed")
    storage = app.queue("messages").storage
    redis_conn.zadd(storage.q.delayed, {job_id: time.time() * 1000 - 1})  # due now
    redis_conn.zrem(storage.q.waiting, job_in("waiting"))
    assert storage.promote_due() == 1
    run_one(app)
    assert handled == [{"to": "+1"}]
    # and its keep_completed = 0 (Bull's removeOnComplete: true) still applies
    assert Jobs(app).get(job_id) is None


def test_finished_jobs_of_0_1_0_read_as_before(app: Hueyard) -> None:
    jobs = Jobs(app)
    completed = jobs.get(job_in("completed"))
    failed = jobs.get(job_in("failed"))
    assert completed is not None and failed is not None
    assert (completed.state, completed.name, completed.payload, completed.result) == (
        "completed", "messages.send_message", {"to": "+1", "content": "done"}, {"ok": True},
    )  # fmt: skip
    assert completed.logs == ("sending",)
    assert completed.finished is not None and completed.problem is None
    # its id (a random UUID) does not say when it was enqueued: its created field does
    created = int(RECORDS[job_in("completed")]["record"]["created"])
    assert completed.created is not None
    assert round(completed.created.timestamp() * 1000) == created
    assert completed.attempts == 1
    assert (failed.state, failed.error, failed.problem) == ("failed", "ValueError: boom", None)
    assert failed.payload == {"to": "+2", "content": "broken"}


def test_a_failed_job_of_0_1_0_retried_by_hand_runs_again(app: Hueyard) -> None:
    jobs = Jobs(app)
    job_id = job_in("failed")
    assert jobs.retry("messages", job_id)
    jobs.remove("messages", job_in("waiting"))
    run_one(app)
    assert app.result("messages", job_id) == {"sent_to": "+2", "when": None}


# -- the upgrade itself ------------------------------------------------------------------------


@pytest.fixture
def fresh(make_app: AppFactory) -> Hueyard:
    """An app on the same prefix, with no key moved yet."""
    registry = HandlerRegistry()

    @handler("messages", registry=registry)
    def send_message(payload: dict[str, Any]) -> None:
        """Not run here."""

    return make_app("[queues.messages]\n[queues.emails]", registry, prefix="hueyard")


def test_a_consumer_does_not_start_on_keys_of_0_1_0_and_says_what_to_run(
    fresh: Hueyard, redis_conn: redis.Redis
) -> None:
    # Given the keys 0.1.0 left for queue messages
    plant_0_1_0(redis_conn)
    # When huey_consumer would start on them
    with pytest.raises(SystemExit) as stopped:
        fresh.create_consumer()
    # Then it stops with one line that names the queue, the old keys and the command
    message = str(stopped.value)
    assert message.startswith("hueyard: error: Redis holds keys of hueyard 0.1.0")
    assert "queue(s) messages ({hueyard}:q:messages:...)" in message
    assert "run `hueyard upgrade-keys`" in message


def test_the_doctor_names_keys_of_0_1_0_written_after_the_upgrade(
    fresh: Hueyard, redis_conn: redis.Redis
) -> None:
    # Given a 0.1.0 web process, still running after the upgrade, that enqueued a job
    assert not [f for f in diagnose(fresh) if f.check is Check.LEGACY_KEYS]
    plant_0_1_0(redis_conn)
    # Then the doctor says so as an error, naming the queue and what to stop first
    [found] = [f for f in diagnose(fresh) if f.check is Check.LEGACY_KEYS]
    assert (found.queue, found.severity) == ("messages", Severity.ERROR)
    assert "{hueyard}:q:messages:" in found.evidence
    assert found.fix.startswith("A process of hueyard 0.1.0 still writes them")


def test_upgrade_keys_moves_every_key_merges_new_jobs_and_is_idempotent(
    fresh: Hueyard, redis_conn: redis.Redis
) -> None:
    # Given 0.1.0's keys, a job enqueued by an upgraded producer before the upgrade,
    # an orphan record, a Huey lock and a job key of the queue
    plant_0_1_0(redis_conn)
    newer = fresh.enqueue("messages", "send_message", {"to": "+9"})
    redis_conn.hset("{hueyard}:job:orphan", mapping={"handler": "messages.send_message"})
    redis_conn.set("{hueyard}:q:messages:kv:lock.x", "1", ex=60)
    redis_conn.set("{hueyard}:q:messages:key:order-7", "some-id")
    redis_conn.hset("{hueyard}:job:stray", mapping={"handler": "gone.job"})
    redis_conn.rpush("{hueyard}:q:messages:wake", "1")  # the new queue has one too
    assert legacy_queues(redis_conn, fresh.keys, ["messages", "emails"]) == ["messages"]

    # When the keys are moved
    report = upgrade_keys(redis_conn, fresh.keys, ["messages", "emails"])

    # Then every job is under the queue's tag, the sets merged, FIFO order goes on
    q = fresh.keys.queue("messages")
    assert report.jobs == {"messages": len(RECORDS) + 1, "emails": 0}
    waiting = [m.decode() for m in redis_conn.zrange(q.waiting, 0, -1)]
    assert waiting == [job_in("waiting"), newer]
    assert int(redis_conn.get(q.seq) or 0) >= 4
    assert redis_conn.exists(q.job("orphan"), q.job(job_in("completed")) + ":logs") == 2
    assert redis_conn.get(q.kv_prefix + "lock.x") == b"1"
    assert 0 < redis_conn.ttl(q.kv_prefix + "lock.x") <= 60  # a TTL moves with its key
    assert redis_conn.get(q.key("order-7")) == b"some-id"
    # and what no declared queue owns is left where it is, named
    assert report.left == ["{hueyard}:job:stray: no declared queue owns it (handler 'gone')"]
    assert sorted(k.decode() for k in redis_conn.scan_iter("{hueyard}:*")) == [
        "{hueyard}:job:stray"
    ]
    assert legacy_queues(redis_conn, fresh.keys, ["messages", "emails"]) == []
    # and a second run moves nothing and loses nothing
    again = upgrade_keys(redis_conn, fresh.keys, ["messages", "emails"])
    assert (again.moved, again.left) == (0, report.left)
    assert Jobs(fresh).counts("messages").waiting == 2


def test_hueyard_upgrade_keys_refuses_while_consumers_run_then_moves(
    fresh: Hueyard, redis_conn: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    from tests.integration.cli_runner import run

    plant_0_1_0(redis_conn)
    config = tmp_path / "queues.toml"
    config.write_text(app_toml(redis_url, "[queues.messages]", prefix="hueyard"))
    env = {
        "HUEYARD_CONFIG": str(config),
        "HUEYARD_HANDLER_PACKAGES": "",
        "HUEYARD_HANDLER_MODULES": "",
    }
    redis_conn.zadd(fresh.keys.consumers, {"old-consumer": int(time.time() * 1000)})
    refused = run(["upgrade-keys"], env)
    assert refused.returncode == 1
    assert "1 consumer(s) sent a heartbeat" in refused.stderr
    assert legacy_queues(redis_conn, fresh.keys, ["messages"]) == ["messages"]

    moved = run(["upgrade-keys", "--force"], env)
    assert moved.returncode == 0, moved.stderr
    assert f"messages: {len(RECORDS)} job(s) and" in moved.stdout
    assert "moved to {hueyard:messages}" in moved.stdout
    assert (
        run(["upgrade-keys"], env).stdout == "nothing to move: no queue has keys of hueyard 0.1.0\n"
    )


def test_upgrade_keys_leaves_keys_of_the_wrong_type_where_they_are_and_names_them(
    fresh: Hueyard, redis_conn: redis.Redis
) -> None:
    # Given 0.1.0 keys, but its waiting set planted as a string and its counter as text
    plant_0_1_0(redis_conn)
    redis_conn.delete("{hueyard}:q:messages:waiting")
    redis_conn.set("{hueyard}:q:messages:waiting", "planted")
    redis_conn.set("{hueyard}:q:messages:seq", "twelve")
    # When the keys are moved
    report = upgrade_keys(redis_conn, fresh.keys, ["messages"])
    # Then the odd keys stay where they were, named, and nothing took their new names
    q = fresh.keys.queue("messages")
    assert redis_conn.get("{hueyard}:q:messages:waiting") == b"planted"
    assert redis_conn.get("{hueyard}:q:messages:seq") == b"twelve"
    assert redis_conn.exists(q.waiting, q.seq) == 0
    assert any(line.startswith("{hueyard}:q:messages:waiting: a string") for line in report.left)
    assert any("not the whole number hueyard counts with" in line for line in report.left)
    # and the rest moved: the jobs and the other sets
    assert redis_conn.zcard(q.completed) == 1 and redis_conn.zcard(q.failed) == 1
    # and a consumer still refuses to start until they are fixed
    assert legacy_queues(redis_conn, fresh.keys, ["messages"]) == ["messages"]


def test_hueyard_upgrade_keys_on_a_redis_that_does_not_answer_says_so_in_one_line(
    tmp_path: Path,
) -> None:
    from tests.integration.cli_runner import run

    config = tmp_path / "queues.toml"
    config.write_text(
        app_toml("redis://127.0.0.1:1/0", "[queues.messages]", prefix="hueyard",
                 redis_lines="reconnect_attempts = 0")
    )  # fmt: skip
    env = {"HUEYARD_CONFIG": str(config), "HUEYARD_HANDLER_PACKAGES": "",
           "HUEYARD_HANDLER_MODULES": ""}  # fmt: skip
    result = run(["upgrade-keys"], env)
    assert result.returncode == 1
    [line] = [text for text in result.stderr.splitlines() if text.startswith("hueyard: error:")]
    assert line.startswith("hueyard: error: Redis at redis://127.0.0.1:1/0 did not answer")
    assert "Run hueyard upgrade-keys again when it answers" in line
