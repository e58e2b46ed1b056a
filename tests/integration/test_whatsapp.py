"""The WhatsApp Cloud API sender, through the real framework, the real Redis and a fake
Graph API served on 127.0.0.1 (tests/fake_graph.py).

Jobs run the way a worker runs them (``huey.dequeue()`` then ``huey.execute(task)``);
what the API received is what the fake server recorded.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from framework.application import Hueyard
from framework.config import parse_settings
from framework.context import job_context
from framework.errors import ConfigError
from framework.handlers import REGISTRY, HandlerRegistry
from framework.jobs import JobInfo, Jobs
from framework.runtime import reset_app, set_app
from pipelines import _whatsapp, messages
from tests.conftest import app_toml
from tests.fake_graph import OK, Answer, FakeGraphAPI, error

TOKEN = "EAAG-test-access-token-do-not-leak-0123456789"
PHONE_ID = "109876543210987"
TO = "+14155550123"
DIGITS = TO.removeprefix("+")
BACKOFF = 2

QUEUES = f"""
[queues.messages]
attempts = 3
backoff = {{ type = "exponential", delay = {BACKOFF} }}
"""


def build_app(redis_url: str, extra: str = "") -> Hueyard:
    registry = HandlerRegistry()
    registry.register(REGISTRY.get("messages.send_message"))
    text = app_toml(redis_url, QUEUES + extra, prefix="wa")
    return Hueyard(parse_settings(text, env={}), registry)


@pytest.fixture
def api(fake_graph: FakeGraphAPI, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGraphAPI]:
    """The fake API, configured through the environment as a deployment would."""
    monkeypatch.delenv("HUEYARD_MESSAGE_SENDER", raising=False)
    monkeypatch.setenv("WHATSAPP_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("WHATSAPP_PHONE_NUMBER_ID", PHONE_ID)
    monkeypatch.setenv("WHATSAPP_API_BASE_URL", fake_graph.url)
    monkeypatch.setenv("WHATSAPP_TIMEOUT", "1")
    yield fake_graph
    _whatsapp.SENDER.close()


@pytest.fixture
def app(redis_conn: redis.Redis, redis_url: str) -> Iterator[Hueyard]:
    app = build_app(redis_url)
    set_app(app)  # the handler finds the app (Redis, config) through framework.get_app()
    yield app
    reset_app()


def run_one(app: Hueyard) -> JobInfo:
    huey = app.queue("messages").huey
    task = huey.dequeue()
    assert task is not None, "nothing to run"
    huey.execute(task)
    info = Jobs(app).get(task.id)
    assert info is not None
    return info


def due_in(app: Hueyard, redis_conn: redis.Redis, job_id: str) -> float:
    """Seconds from now until the delayed job is due."""
    due = redis_conn.zscore(app.queue("messages").storage.q.delayed, job_id)
    assert due is not None, f"job {job_id} is not delayed"
    return due / 1000 - time.time()


def send_record(app: Hueyard, redis_conn: redis.Redis, job_id: str) -> dict[str, Any] | None:
    raw = redis_conn.get(app.keys.cache(messages.send_record_key(job_id)))
    return None if raw is None else json.loads(raw)


# -- success -----------------------------------------------------------------------------------


def test_a_text_message_is_posted_to_the_phone_numbers_messages_endpoint(
    api: FakeGraphAPI, app: Hueyard, redis_conn: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # Given the Cloud API's settings in the environment
    # When a text message job runs
    job_id = messages.send_message.enqueue({"to": TO, "content": "Hello World"})
    info = run_one(app)

    # Then the API got one request, authenticated with the token, in its documented shape
    (request,) = api.requests
    assert request.path == f"/{_whatsapp.DEFAULT_API_VERSION}/{PHONE_ID}/messages"
    assert request.authorization == f"Bearer {TOKEN}"
    assert request.body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": DIGITS,
        "type": "text",
        "text": {"body": "Hello World", "preview_url": False},
    }
    # And the job completed with the WhatsApp message id
    assert info.state == "completed"
    assert info.result == {
        "sent": True,
        "dryRun": False,
        "messageId": request.answered_id,
        "sender": "whatsapp",
    }
    # And the send is recorded for the job's re-runs
    assert send_record(app, redis_conn, job_id) == {
        "state": "sent",
        "result": info.result,
        "at": pytest.approx(time.time(), abs=10),
    }
    ttl = redis_conn.ttl(app.keys.cache(messages.send_record_key(job_id)))
    assert 0 < ttl <= messages.SEND_RECORD_TTL
    # And the token is nowhere: not in the job, not in the log
    stored = redis_conn.hgetall(app.keys.job("messages", job_id))
    assert all(TOKEN.encode() not in value for value in stored.values())
    assert TOKEN not in caplog.text
    assert TO not in caplog.text


def test_one_thread_reuses_its_connection(api: FakeGraphAPI, app: Hueyard) -> None:
    messages.send_message.enqueue_many([{"to": TO, "content": f"n{n}"} for n in range(3)])
    for _ in range(3):
        assert run_one(app).state == "completed"
    assert len({request.port for request in api.requests}) == 1


def test_the_config_table_configures_the_sender_when_the_environment_does_not(
    fake_graph: FakeGraphAPI,
    redis_conn: redis.Redis,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable in (*_whatsapp.ENVIRONMENT.values(), "HUEYARD_MESSAGE_SENDER"):
        monkeypatch.delenv(variable, raising=False)
    table = f"""
[providers.whatsapp]
access_token = "{TOKEN}"
phone_number_id = "{PHONE_ID}"
api_version = "v21.0"
api_base_url = "{fake_graph.url}"
timeout = 2
"""
    app = build_app(redis_url, table)
    set_app(app)
    try:
        messages.send_message.enqueue({"to": TO, "content": "from the config"})
        info = run_one(app)
    finally:
        reset_app()
        _whatsapp.SENDER.close()
    (request,) = fake_graph.requests
    assert request.path == f"/v21.0/{PHONE_ID}/messages"
    assert request.authorization == f"Bearer {TOKEN}"
    assert info.result["sender"] == "whatsapp"
    assert info.result["messageId"] == request.answered_id


# -- the API's errors --------------------------------------------------------------------------

PERMANENT = [
    (error(131047, "Re-engagement message", details="more than 24 hours"), "131047"),
    (error(131026, "Message undeliverable"), "131026"),
    (error(100, "Invalid parameter"), "code 100 "),
    (error(190, "Access token has expired", status=401), "code 190 "),
    (error(132001, "Template name does not exist in the translation"), "132001"),
    (error(131048, "Spam rate limit hit"), "131048"),
    (error(133010, "Phone number Not Registered"), "133010"),
    (error(368, "Temporarily blocked for policies violations", status=403), "code 368 "),
    (Answer(404, {"error": {"message": "Unknown path", "code": 999999}}), "code 999999"),
]


@pytest.mark.parametrize(("answer", "code"), PERMANENT, ids=[c.strip() for _, c in PERMANENT])
def test_a_permanent_error_fails_the_job_at_once_with_the_apis_code_and_message(
    api: FakeGraphAPI, app: Hueyard, redis_conn: redis.Redis, answer: Answer, code: str
) -> None:
    api.script(DIGITS, answer)
    job_id = messages.send_message.enqueue({"to": TO, "content": "Hi"})
    info = run_one(app)
    assert (info.state, info.attempts) == ("failed", 1)
    assert info.error is not None
    assert info.error.startswith("SendRefused: WhatsApp Cloud API code")
    assert code in info.error
    assert answer.body["error"]["message"] in info.error  # type: ignore[index]
    assert "failed at once, not retried" in info.error
    assert TOKEN not in info.error
    # nothing went out, so nothing is recorded against a later re-enqueue
    assert send_record(app, redis_conn, job_id) is None


WAITS = [
    (error(130429, "Rate limit hit", status=429, Retry_After="42"), 42.0),
    (error(130429, "Rate limit hit"), 5.0),
    (error(131056, "(Business Account, Consumer Account) pair rate limit hit"), 6.0),
    (error(80007, "Rate limit issues"), 60.0),
    (Answer(429, "<html>slow down</html>", {"Retry-After": "7"}), 7.0),
]


@pytest.mark.parametrize(("answer", "delay"), WAITS)
def test_a_throttle_retries_after_the_delay_the_api_asks_for(
    api: FakeGraphAPI, app: Hueyard, redis_conn: redis.Redis, answer: Answer, delay: float
) -> None:
    job_id = messages.send_message.enqueue({"to": TO, "content": "Hi"})
    api.script(DIGITS, answer)
    info = run_one(app)
    assert (info.state, info.attempts) == ("delayed", 1)
    assert info.error is not None
    assert info.error.startswith("SendRetryLater: WhatsApp Cloud API")
    assert "retried after the delay the API asks for" in info.error
    assert delay - 1.5 < due_in(app, redis_conn, job_id) <= delay


BACKOFFS = [
    error(131000, "Something went wrong", status=500),
    error(131016, "Service unavailable", status=503),
    Answer(502, "<html>Bad Gateway</html>"),
]


@pytest.mark.parametrize("answer", BACKOFFS)
def test_a_temporary_error_retries_after_the_backoff_and_the_retry_sends(
    api: FakeGraphAPI, app: Hueyard, redis_conn: redis.Redis, answer: Answer
) -> None:
    # Given an API that fails once, then accepts
    job_id = messages.send_message.enqueue({"to": TO, "content": "Hi"})
    api.script(DIGITS, answer, OK)

    # When the job runs, it is delayed by the queue's backoff, with the API's answer as error
    info = run_one(app)
    assert (info.state, info.attempts) == ("delayed", 1)
    assert info.error is not None
    assert info.error.startswith("SendError: WhatsApp Cloud API")
    assert str(answer.status) in info.error
    assert BACKOFF - 1.5 < due_in(app, redis_conn, job_id) <= BACKOFF

    # And when the retry runs, it sends again and completes
    redis_conn.zadd(app.queue("messages").storage.q.delayed, {job_id: 0})
    app.queue("messages").storage.promote_due()
    info = run_one(app)
    assert (info.state, info.attempts) == ("completed", 2)
    assert len(api.requests) == 2
    assert info.result["messageId"] == api.requests[1].answered_id


def test_an_unreachable_api_is_retried_after_the_backoff(
    api: FakeGraphAPI, app: Hueyard, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = FakeGraphAPI()
    closed.close()  # its port now refuses connections
    monkeypatch.setenv("WHATSAPP_API_BASE_URL", closed.url)
    job_id = messages.send_message.enqueue({"to": TO, "content": "Hi"})
    info = run_one(app)
    assert info.state == "delayed"
    assert info.error is not None
    assert info.error.startswith("SendError: WhatsApp Cloud API http://127.0.0.1:")
    assert "not reached" in info.error
    assert send_record(app, redis_conn, job_id) is None


# -- at most one message per job ---------------------------------------------------------------


def test_an_answer_slower_than_the_timeout_fails_the_job_and_is_never_sent_twice(
    api: FakeGraphAPI, app: Hueyard, redis_conn: redis.Redis
) -> None:
    # Given an API that answers after the sender's 1 s timeout
    api.script(DIGITS, Answer(delay=1.6))
    job_id = messages.send_message.enqueue({"to": TO, "content": "Hi"})

    # When the job runs, it fails at once: the message may have been sent
    info = run_one(app)
    assert (info.state, info.attempts) == ("failed", 1)
    assert info.error is not None
    assert info.error.startswith("SendOutcomeUnknown: WhatsApp Cloud API")
    assert "no answer within 1 s" in info.error
    assert "may have been sent" in info.error
    record = send_record(app, redis_conn, job_id)
    assert record is not None and record["state"] == "sending"

    # And when an operator retries the failed job, it fails again without a request
    assert Jobs(app).retry("messages", job_id) is True
    info = run_one(app)
    assert info.state == "failed"
    assert info.error is not None
    assert f"attempt 1 of job {job_id} began sending this message at" in info.error
    assert len(api.requests) == 1


def test_a_rerun_after_the_worker_died_past_the_send_returns_the_recorded_message_id(
    api: FakeGraphAPI, app: Hueyard, redis_conn: redis.Redis
) -> None:
    # Given a job whose first run sent the message, then its worker died before the
    # job's outcome reached Redis (the run ends without a release)
    job_id = messages.send_message.enqueue({"to": TO, "content": "Hi"})
    storage = app.queue("messages").storage
    claim = storage.claim()
    assert claim is not None and claim.id == job_id
    with job_context(storage, claim, max_attempts=3):
        first = messages.send_message(messages.OutboundMessage(to=TO, content="Hi"))
    assert first["sent"] is True

    # When its lease runs out and the job is recovered and run again
    redis_conn.zadd(storage.q.active, {job_id: 0})
    assert storage.recover() == (1, 0)
    info = run_one(app)

    # Then it completes with the first run's message id, and nothing more was sent
    assert info.state == "completed"
    assert info.result == {**first, "replayed": True}
    assert len(api.requests) == 1


# -- choosing the sender -----------------------------------------------------------------------


def test_without_whatsapp_settings_the_log_sender_reports_a_dry_run(
    app: Hueyard, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in (*_whatsapp.ENVIRONMENT.values(), "HUEYARD_MESSAGE_SENDER"):
        monkeypatch.delenv(variable, raising=False)
    messages.send_message.enqueue({"to": TO, "content": "Hi"})
    info = run_one(app)
    assert info.state == "completed"
    assert info.result["sent"] is False
    assert info.result["dryRun"] is True
    assert info.result["sender"] == "log"


def test_the_log_sender_can_be_forced_over_the_whatsapp_settings(
    api: FakeGraphAPI, app: Hueyard, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUEYARD_MESSAGE_SENDER", "log")
    messages.send_message.enqueue({"to": TO, "content": "Hi"})
    info = run_one(app)
    assert (info.result["sender"], info.result["sent"]) == ("log", False)
    assert api.requests == []


@pytest.mark.parametrize(
    ("unset", "named"),
    [
        ("WHATSAPP_PHONE_NUMBER_ID", "WHATSAPP_ACCESS_TOKEN is set but WHATSAPP_PHONE_NUMBER_ID"),
        ("WHATSAPP_ACCESS_TOKEN", "WHATSAPP_PHONE_NUMBER_ID is set but WHATSAPP_ACCESS_TOKEN"),
    ],
)
def test_half_the_settings_fail_the_job_at_once_naming_the_missing_one(
    api: FakeGraphAPI, app: Hueyard, monkeypatch: pytest.MonkeyPatch, unset: str, named: str
) -> None:
    monkeypatch.delenv(unset)
    messages.send_message.enqueue({"to": TO, "content": "Hi"})
    info = run_one(app)
    assert (info.state, info.attempts) == ("failed", 1)
    assert info.error is not None
    assert info.error.startswith("SenderConfigError: WhatsApp Cloud API: " + named)
    assert TOKEN not in info.error
    assert api.requests == []


def test_a_bad_setting_is_named_without_its_value(
    api: FakeGraphAPI, app: Hueyard, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WHATSAPP_API_VERSION", "23")
    messages.send_message.enqueue({"to": TO, "content": "Hi"})
    info = run_one(app)
    assert info.state == "failed"
    assert info.error is not None
    assert "are not valid: api_version: String should match pattern" in info.error
    assert TOKEN not in info.error


# -- what is posted for each kind of message ---------------------------------------------------

SHAPES = [
    (
        {
            "type": "template",
            "template": {
                "name": "order_update",
                "language": "pt_BR",
                "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ada"}]}],
            },
        },
        {
            "template": {
                "name": "order_update",
                "language": {"code": "pt_BR"},
                "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ada"}]}],
            }
        },
    ),
    (
        {
            "type": "template",
            "template": {"name": "promo"},
            "media_url": "https://cdn.example/p.png",
        },
        {
            "template": {
                "name": "promo",
                "language": {"code": "en_US"},
                "components": [
                    {
                        "type": "header",
                        "parameters": [
                            {"type": "image", "image": {"link": "https://cdn.example/p.png"}}
                        ],
                    }
                ],
            }
        },
    ),
    (
        {"type": "image", "media_url": "https://cdn.example/a.jpg", "content": "Our shop"},
        {"image": {"link": "https://cdn.example/a.jpg", "caption": "Our shop"}},
    ),
    (
        {"type": "document", "media_url": "https://cdn.example/i.pdf", "filename": "inv.pdf"},
        {"document": {"link": "https://cdn.example/i.pdf", "filename": "inv.pdf"}},
    ),
    (
        {"type": "audio", "media_url": "https://cdn.example/v.ogg"},
        {"audio": {"link": "https://cdn.example/v.ogg"}},
    ),
    (
        {"type": "video", "media_url": "https://cdn.example/v.mp4", "content": "Watch"},
        {"video": {"link": "https://cdn.example/v.mp4", "caption": "Watch"}},
    ),
    (
        {"content": "See https://example.com", "media_url": "https://example.com"},
        {"text": {"body": "See https://example.com", "preview_url": True}},
    ),
]


@pytest.mark.parametrize(("payload", "expected"), SHAPES)
def test_each_kind_of_message_is_posted_in_the_apis_shape(
    api: FakeGraphAPI, app: Hueyard, payload: dict[str, Any], expected: dict[str, Any]
) -> None:
    messages.send_message.enqueue({"to": TO, **payload})
    assert run_one(app).state == "completed"
    (request,) = api.requests
    kind = payload.get("type", "text")
    common = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": DIGITS}
    assert request.body == {**common, "type": kind, **expected}


def test_a_template_message_without_a_template_is_refused_before_any_request(
    api: FakeGraphAPI, app: Hueyard
) -> None:
    # An older payload (type "template", no template) still validates, but cannot be sent
    messages.send_message.enqueue({"to": TO, "content": "order_update", "type": "template"})
    info = run_one(app)
    assert (info.state, info.attempts) == ("failed", 1)
    assert info.error is not None
    assert info.error.startswith("SendRefused: a 'template' message needs template = {name")
    assert api.requests == []


@pytest.mark.parametrize(
    ("unset", "named"),
    [
        ("WHATSAPP_PHONE_NUMBER_ID", "WHATSAPP_ACCESS_TOKEN is set but WHATSAPP_PHONE_NUMBER_ID"),
        ("WHATSAPP_ACCESS_TOKEN", "WHATSAPP_PHONE_NUMBER_ID is set but WHATSAPP_ACCESS_TOKEN"),
    ],
)
def test_half_the_settings_stop_an_app_being_built(
    api: FakeGraphAPI, redis_url: str, monkeypatch: pytest.MonkeyPatch, unset: str, named: str
) -> None:
    monkeypatch.delenv(unset)
    registry = HandlerRegistry()
    registry.register(messages.send_message.spec)
    settings = parse_settings(app_toml(redis_url, "[queues.messages]", prefix="wa-start"), env={})
    with pytest.raises(ConfigError) as caught:
        Hueyard(settings, registry)
    assert named in str(caught.value)
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"messages": [{"id": "w" * 5000}]}, "without a message id"),
        ("x" * (5 * 1024 * 1024), "the answer is larger than 4,194,304 bytes"),
    ],
    ids=["an-id-of-5000-characters", "an-answer-of-5-mib"],
)
def test_an_answer_no_api_gives_fails_the_job_as_maybe_sent_without_keeping_it(
    api: FakeGraphAPI, app: Hueyard, body: Any, said: str
) -> None:
    # Given an API that answers 200 with what no WhatsApp API sends (a huge id, a body
    # that would fill the worker's memory)
    api.script(DIGITS, Answer(200, body))
    messages.send_message.enqueue({"to": TO, "content": "Hi"})
    # When the job runs: it fails at once, the message maybe sent, and keeps none of it
    info = run_one(app)
    assert (info.state, info.attempts) == ("failed", 1)
    assert info.error is not None and info.error.startswith("SendOutcomeUnknown")
    assert said in info.error
    assert len(info.error) < 2000
