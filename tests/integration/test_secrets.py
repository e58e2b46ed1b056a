"""Secrets stay out of a failed job's error, traceback and log line, and out of the CLI.

Jobs run the way Huey's worker runs them (``dequeue`` then ``execute``) against
the real Redis server; the CLI runs in this process on the same config file.
``[dashboard] mask_fields = ["pin"]`` adds a word, which the consumer and the
CLI honour as the dashboard does.
"""

from __future__ import annotations

import json
import logging
import textwrap
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import BaseModel

from framework.application import Hueyard
from framework.execution import QueueHuey
from framework.handlers import HandlerRegistry, handler
from framework.jobs import Jobs
from framework.masking import MASK
from tests.conftest import AppFactory, app_toml
from tests.integration.cli_runner import run

CONFIG = """
[queues.work]
attempts = 3
backoff = { delay = 60 }

[dashboard]
mask_fields = ["pin"]
"""

HANDLERS = """
from pydantic import BaseModel
from framework import handler


class Login(BaseModel):
    user: str
    password: str


@handler("work")
def strict(payload: Login) -> None:
    return None


@handler("work")
def leaky(payload: dict) -> None:
    raise ValueError(f"login failed for {payload}")


@handler("work")
def inner(payload: dict) -> None:
    Login.model_validate(payload)


@handler("work")
def fine(payload: dict) -> dict:
    return {"session": "sess-RESULT-9", "ok": True}
"""

SECRETS = ("S3CRET", "4321", "sess-RESULT-9")


class Login(BaseModel):
    user: str
    password: str


def registry() -> HandlerRegistry:
    """The handlers of ``HANDLERS``, on a registry of this test's own."""
    handlers = HandlerRegistry()

    @handler("work", registry=handlers)
    def strict(payload: Login) -> None:
        return None

    @handler("work", registry=handlers)
    def leaky(payload: dict[str, Any]) -> None:
        raise ValueError(f"login failed for {payload}")

    @handler("work", registry=handlers)
    def inner(payload: dict[str, Any]) -> None:
        Login.model_validate(payload)

    @handler("work", registry=handlers)
    def fine(payload: dict[str, Any]) -> dict[str, Any]:
        return {"session": "sess-RESULT-9", "ok": True}

    return handlers


@pytest.fixture
def app(make_app: AppFactory) -> Hueyard:
    built = make_app(CONFIG, registry(), prefix="secrets")
    built.queue("work").storage.read_timeout = 0.1
    return built


def run_one(app: Hueyard) -> None:
    huey: QueueHuey = app.queue("work").huey
    task = huey.dequeue()
    assert task is not None, "nothing to run"
    huey.execute(task)


def record(app: Hueyard, job_id: str) -> dict[str, str]:
    raw = app.queue("work").storage.conn.hgetall(app.keys.job("work", job_id))
    return {key.decode(): value.decode() for key, value in raw.items()}


@pytest.mark.parametrize(
    ("handler_name", "payload", "stored", "error"),
    [
        ("strict", {"user": "ada", "password": "ok-password"},
         {"password": "S3CRET-1", "pin": "4321"},
         "payload does not validate against Login: user: Field required (stored payload; "
         "not retried: enqueue the job again with a valid one)"),
        ("leaky", {"user": "ada", "password": "S3CRET-2", "pin": "4321"}, None,
         f"ValueError: login failed for {{'user': 'ada', 'password': '{MASK}', 'pin': '{MASK}'}}"),
        ("inner", {"password": "S3CRET-3", "pin": 4321}, None,
         "ValidationError: 1 validation error for Login: user: Field required"),
    ],
    ids=["stored-payload-invalid", "payload-in-message", "validation-error-in-handler"],
)  # fmt: skip
def test_a_failed_job_stores_and_logs_its_error_without_secrets(
    app: Hueyard,
    redis_conn: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    handler_name: str,
    payload: dict[str, Any],
    stored: dict[str, Any] | None,
    error: str,
) -> None:
    # Given a job whose payload holds secrets (put in Redis behind the model's back, maybe)
    job_id = app.enqueue("work", handler_name, payload)
    if stored is not None:
        redis_conn.hset(app.keys.job("work", job_id), "payload", json.dumps(stored))
    # When it runs and fails
    with caplog.at_level(logging.INFO, logger="hueyard"):
        run_one(app)
    # Then its error names what went wrong, and no secret is in the error, the
    # traceback or the log
    saved = record(app, job_id)
    assert saved["error"] == error
    for secret in SECRETS:
        for text in (saved["error"], saved["traceback"], caplog.text):
            assert secret not in text
    assert "input_value=" not in saved["traceback"] or f"input_value={MASK}" in saved["traceback"]


def test_an_invalid_stored_payload_fails_at_once_and_is_not_retried(
    app: Hueyard, redis_conn: redis.Redis
) -> None:
    # Given a queue with 3 attempts, and a stored payload that no longer validates
    job_id = app.enqueue("work", "strict", {"user": "ada", "password": "pw"})
    redis_conn.hset(app.keys.job("work", job_id), "payload", '{"user": 5}')
    # When it runs
    run_one(app)
    # Then it failed after one attempt, with the field and its problem
    place = Jobs(app).find(job_id)
    assert place is not None and place.state == "failed"
    saved = record(app, job_id)
    assert saved["attempts"] == "1"
    assert saved["error"].startswith(
        "payload does not validate against Login: user: Input should be a valid string; "
        "password: Field required"
    )
    assert "CancelExecution" not in saved["error"]


def test_the_jobs_api_masks_only_when_asked(app: Hueyard) -> None:
    job_id = app.enqueue("work", "fine", {"user": "ada", "pin": "4321", "api_key": "S3CRET-4"})
    plain, masked = Jobs(app).get(job_id), Jobs(app, masked=True).get(job_id)
    assert plain is not None and masked is not None
    assert plain.payload == {"user": "ada", "pin": "4321", "api_key": "S3CRET-4"}
    assert masked.payload == {"user": "ada", "pin": MASK, "api_key": MASK}
    listed = Jobs(app, masked=True).list_jobs("work", "waiting").items
    assert [job.payload for job in listed] == [masked.payload]


# -- the CLI ---------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, redis_url: str) -> dict[str, str]:
    (tmp_path / "secret_handlers.py").write_text(textwrap.dedent(HANDLERS))
    (tmp_path / "q.toml").write_text(app_toml(redis_url, CONFIG, prefix="secrets"))
    return {
        "HUEYARD_CONFIG": str(tmp_path / "q.toml"),
        "HUEYARD_HANDLER_PACKAGES": "",
        "HUEYARD_HANDLER_MODULES": "secret_handlers",
        "PYTHONPATH": str(tmp_path),
    }


@pytest.mark.parametrize(
    "args",
    [
        ["job", "{id}"],
        ["job", "{id}", "--json"],
        ["jobs", "work", "--state", "{state}"],
        ["jobs", "work", "--state", "{state}", "--json"],
    ],
    ids=["job", "job-json", "jobs", "jobs-json"],
)
@pytest.mark.parametrize("outcome", ["failed", "completed"])
def test_the_cli_shows_jobs_with_their_secrets_masked(
    app: Hueyard, project: dict[str, str], args: list[str], outcome: str
) -> None:
    # Given a failed job (secrets in its payload, error and traceback) or a completed
    # one (a secret in its result)
    name = "leaky" if outcome == "failed" else "fine"
    payload = {"user": "ada", "password": "S3CRET-5", "pin": "4321"}
    job_id = app.enqueue("work", name, payload)
    run_one(app)
    if outcome == "failed":  # the retry is due in 60 s: fail it for good now
        storage = app.queue("work").storage
        assert Jobs(app).promote("work", job_id)
        claimed = storage.claim()
        assert claimed is not None
        trace = "Traceback\n  headers={'Authorization': 'Bearer S3CRET-7'}"
        storage.release(claimed, "failed", value="ValueError: token=S3CRET-6", traceback=trace)
    # When the CLI shows it
    result = run([arg.format(id=job_id, state=outcome) for arg in args], project)
    # Then every secret is masked, and the rest shows
    assert result.returncode == 0, result.stderr
    for secret in (*SECRETS, "S3CRET-5", "S3CRET-6", "S3CRET-7"):
        assert secret not in result.stdout
    assert MASK in result.stdout
    if args[0] == "job":
        assert "ada" in result.stdout
