"""Jobs that hueyard 0.1.0 left in Redis still run and still read.

``tests/fixtures/records_0_1_0.json`` holds four records exactly as 0.1.0
wrote them (``HGETALL`` of a waiting, a delayed, a completed and a failed job
of queue ``messages``, with their sorted-set scores). Each test plants them
in the test database, then uses the current code on them.
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
from framework.handlers import HandlerRegistry, handler
from framework.jobs import Jobs
from tests.conftest import AppFactory

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
    for job_id, job in RECORDS.items():
        redis_conn.hset(app.keys.job(job_id), mapping=job["record"])
        redis_conn.zadd(app.keys.queue("messages").state(job["set"]), {job_id: job["score"]})
        for line in job.get("logs", []):
            redis_conn.rpush(app.keys.job_logs(job_id), line)
    return app


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
    assert (failed.state, failed.error, failed.problem) == ("failed", "ValueError: boom", None)
    assert failed.payload == {"to": "+2", "content": "broken"}


def test_a_failed_job_of_0_1_0_retried_by_hand_runs_again(app: Hueyard) -> None:
    jobs = Jobs(app)
    job_id = job_in("failed")
    assert jobs.retry("messages", job_id)
    jobs.remove("messages", job_in("waiting"))
    run_one(app)
    assert app.result("messages", job_id) == {"sent_to": "+2", "when": None}
