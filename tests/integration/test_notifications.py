"""The notifications pipeline through the real framework and the real Redis: channels per
severity, a fake Slack webhook on 127.0.0.1 (tests/fake_slack.py), a real Redis
subscriber for pub/sub, and the ``emails`` queue for the email channel.

Jobs run the way a worker runs them (``huey.dequeue()`` then ``huey.execute(task)``).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from framework.application import Hueyard
from framework.config import parse_settings
from framework.errors import ConfigError
from framework.handlers import REGISTRY, HandlerRegistry
from framework.jobs import JobInfo, Jobs
from framework.runtime import reset_app, set_app
from pipelines import _slack, notifications
from tests.conftest import app_toml
from tests.fake_slack import PATH, FakeSlack, Reply

ROUTES = """
[providers.notifications]
info = ["log", "pubsub"]
warning = ["log", "slack"]
critical = ["email", "log", "slack", "pubsub"]
alert_email = "oncall@example.com"
"""

QUEUES = """
[queues.notifications]
attempts = 3
backoff = { type = "exponential", delay = 2 }

[queues.emails]
attempts = 5
"""

NOTE = {"userId": "u-1", "title": "Disk almost full", "body": "92% used on db-1 <!channel>"}


def build_app(redis_url: str, extra: str = ROUTES, prefix: str | None = None) -> Hueyard:
    registry = HandlerRegistry()
    for name in ("notifications.notify", "emails.send_email"):
        registry.register(REGISTRY.get(name))
    # pub/sub channels are server-wide: a prefix of its own keeps parallel tests apart
    prefix = prefix or f"nt{uuid.uuid4().hex[:8]}"
    return Hueyard(
        parse_settings(app_toml(redis_url, QUEUES + extra, prefix=prefix), env={}), registry
    )


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSlack]:
    """A fake Slack webhook, configured through the environment as a deployment would."""
    server = FakeSlack()
    monkeypatch.setenv("SLACK_WEBHOOK_URL", server.url)
    monkeypatch.setenv("SLACK_TIMEOUT", "2")
    monkeypatch.delenv("HUEYARD_ALERT_EMAIL", raising=False)
    yield server
    _slack.WEBHOOK.close()
    server.close()


@pytest.fixture
def app(hook: FakeSlack, redis_conn: redis.Redis, redis_url: str) -> Iterator[Hueyard]:
    app = build_app(redis_url)
    set_app(app)
    yield app
    reset_app()


@pytest.fixture
def subscriber(app: Hueyard, redis_url: str) -> Iterator[redis.client.PubSub]:
    """A real Redis subscriber on the app's notifications channel."""
    conn = redis.Redis.from_url(redis_url)
    pubsub = conn.pubsub()
    pubsub.subscribe(app.keys.channel("notifications"))
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"  # type: ignore[index]
    yield pubsub
    pubsub.close()
    conn.close()


def published(pubsub: redis.client.PubSub, timeout: float = 0.5) -> list[dict[str, Any]]:
    """Every message the subscriber got, until none came for ``timeout`` seconds."""
    messages = []
    while (message := pubsub.get_message(timeout=timeout)) is not None:
        if message["type"] == "message":
            messages.append(json.loads(message["data"]))
    return messages


def run_one(app: Hueyard) -> JobInfo:
    huey = app.queue("notifications").huey
    task = huey.dequeue()
    assert task is not None, "nothing to run"
    huey.execute(task)
    info = Jobs(app).get(task.id)
    assert info is not None
    return info


def make_due(app: Hueyard, redis_conn: redis.Redis, job_id: str) -> None:
    storage = app.queue("notifications").storage
    redis_conn.zadd(storage.q.delayed, {job_id: 0})
    storage.promote_due()


def due_in(app: Hueyard, redis_conn: redis.Redis, job_id: str) -> float:
    due = redis_conn.zscore(app.queue("notifications").storage.q.delayed, job_id)
    assert due is not None, f"job {job_id} is not delayed"
    return due / 1000 - time.time()


# -- each severity goes through its channels -----------------------------------------------------


def test_an_info_notification_is_logged_and_published_to_the_subscribers(
    app: Hueyard,
    hook: FakeSlack,
    subscriber: redis.client.PubSub,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pipelines.notifications")
    job_id = notifications.notify.enqueue({**NOTE, "severity": "info"})

    info = run_one(app)

    assert info.state == "completed"
    assert info.result == {
        "notified": True,
        "severity": "info",
        "channels": {"log": "logged", "pubsub": "published to 1 subscriber"},
        "escalation": None,
    }
    (message,) = published(subscriber)
    assert message == {
        "userId": "u-1",
        "severity": "info",
        "title": "Disk almost full",
        "body": "92% used on db-1 <!channel>",
        "time": message["time"],
        "jobId": job_id,
    }
    assert message["time"].endswith("Z")
    assert hook.posts == []  # info is not routed to Slack
    (record,) = [r for r in caplog.records if r.name == "pipelines.notifications"]
    assert (record.levelno, record.getMessage()) == (
        logging.INFO,
        "info notification for user u-1: Disk almost full",
    )
    assert "92%" not in caplog.text  # the body is never logged


def test_a_warning_is_posted_to_the_slack_webhook_escaped(app: Hueyard, hook: FakeSlack) -> None:
    notifications.notify.enqueue({**NOTE, "severity": "warning"})

    info = run_one(app)

    assert info.result["channels"] == {"log": "logged", "slack": "sent"}
    (post,) = hook.posts
    assert post.path == PATH
    assert post.content_type == "application/json"
    assert post.body == {"text": "*[warning]* Disk almost full\n92% used on db-1 &lt;!channel&gt;"}


def test_a_critical_notification_goes_through_every_channel_and_enqueues_an_email(
    app: Hueyard, hook: FakeSlack, subscriber: redis.client.PubSub
) -> None:
    job_id = notifications.notify.enqueue({**NOTE, "severity": "critical"})

    info = run_one(app)

    (email,) = Jobs(app).list_jobs("emails", "waiting").items
    assert info.result == {
        "notified": True,
        "severity": "critical",
        # in the order of CHANNELS, whatever the order of the config's list
        "channels": {
            "log": "logged",
            "pubsub": "published to 1 subscriber",
            "slack": "sent",
            "email": f"enqueued emails job {email.id}",
        },
        "escalation": email.id,
    }
    assert list(info.result["channels"]) == ["log", "pubsub", "slack", "email"]
    assert email.payload == {
        "to": "oncall@example.com",
        "subject": "[critical] Disk almost full",
        "body": "92% used on db-1 <!channel>",
        "html": False,
    }
    assert email.priority == 1
    assert email.key == f"notification:{job_id}:email"
    assert len(hook.posts) == 1
    assert len(published(subscriber)) == 1


def test_the_pubsub_channel_can_be_named_and_with_nobody_listening_it_says_so(
    hook: FakeSlack, redis_conn: redis.Redis, redis_url: str
) -> None:
    channel = f"crm-{uuid.uuid4().hex[:8]}:alerts"
    app = build_app(redis_url, f'[providers.notifications]\npubsub_channel = "{channel}"\n')
    set_app(app)
    try:
        conn = redis.Redis.from_url(redis_url)
        pubsub = conn.pubsub()
        pubsub.subscribe(channel)
        pubsub.get_message(timeout=5)
        notifications.notify.enqueue(NOTE)
        assert run_one(app).result["channels"]["pubsub"] == "published to 1 subscriber"
        assert [m["title"] for m in published(pubsub)] == ["Disk almost full"]
        pubsub.close()
        conn.close()
        # fire-and-forget: nobody subscribed, nobody gets it, and the result says so
        notifications.notify.enqueue(NOTE)
        assert run_one(app).result["channels"]["pubsub"] == "published to 0 subscribers"
    finally:
        reset_app()


def test_without_a_table_the_defaults_follow_the_settings_present(
    hook: FakeSlack, redis_conn: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUEYARD_ALERT_EMAIL", "oncall@example.com")
    app = build_app(redis_url, "")
    set_app(app)
    try:
        for severity in ("info", "warning", "critical"):
            notifications.notify.enqueue({**NOTE, "severity": severity})
        channels = [list(run_one(app).result["channels"]) for _ in range(3)]
    finally:
        reset_app()
    assert channels == [
        ["log", "pubsub"],
        ["log", "pubsub", "slack"],
        ["log", "pubsub", "slack", "email"],
    ]


# -- a failing channel: retried alone ------------------------------------------------------------


def test_a_slack_5xx_retries_only_slack_and_the_retry_posts_once(
    app: Hueyard, hook: FakeSlack, subscriber: redis.client.PubSub, redis_conn: redis.Redis
) -> None:
    hook.script(Reply(500, "rollup_error"))
    job_id = notifications.notify.enqueue({**NOTE, "severity": "critical"})

    # When the first attempt meets a Slack outage
    first = run_one(app)

    # Then the job waits for its backoff, its error naming the failed and the done channels
    assert (first.state, first.attempts) == ("delayed", 1)
    assert first.error is not None
    assert "slack: Slack webhook on 127.0.0.1 answered HTTP 500 (rollup_error)" in first.error
    assert "done: log: logged; pubsub: published to 1 subscriber; email: enqueued" in first.error
    assert 0 < due_in(app, redis_conn, job_id) <= 2.5
    key = app.keys.cache(notifications.channels_key(job_id))
    assert set(redis_conn.hkeys(key)) == {b"log", b"pubsub", b"email"}
    assert 0 < redis_conn.ttl(key) <= notifications.CHANNEL_RECORD_TTL

    # When the retry runs, only Slack is tried again
    make_due(app, redis_conn, job_id)
    second = run_one(app)

    assert second.state == "completed"
    assert second.result["channels"]["slack"] == "sent"
    assert second.result["channels"]["pubsub"] == "published to 1 subscriber"
    assert len(hook.posts) == 2  # the failed post and the one that worked
    assert len(published(subscriber)) == 1  # published by the first attempt only
    assert Jobs(app).counts("emails").waiting == 1  # one email, not two
    # and the record is gone with the job's success: no retry will read it
    assert redis_conn.exists(key) == 0


def test_a_completed_slack_post_is_not_repeated_when_another_channel_fails(
    app: Hueyard, hook: FakeSlack, redis_conn: redis.Redis, redis_url: str
) -> None:
    # Given a warning routed to log and slack, whose Slack post works
    job_id = notifications.notify.enqueue({**NOTE, "severity": "warning"})
    key = app.keys.cache(notifications.channels_key(job_id))
    # ... and an earlier attempt that already posted (as recorded)
    redis_conn.hset(key, "slack", "sent")

    info = run_one(app)

    assert info.result["channels"] == {"slack": "sent", "log": "logged"}
    assert hook.posts == []  # not posted again


def test_a_429_retries_after_the_wait_slack_asks_for(
    app: Hueyard, hook: FakeSlack, redis_conn: redis.Redis
) -> None:
    hook.script(Reply(429, "rate_limited", {"Retry-After": "7"}))
    job_id = notifications.notify.enqueue({**NOTE, "severity": "warning"})

    info = run_one(app)

    assert (info.state, info.attempts) == ("delayed", 1)
    assert info.error is not None and "HTTP 429 (rate_limited)" in info.error
    assert 5 < due_in(app, redis_conn, job_id) <= 7.5


@pytest.mark.parametrize(
    ("status", "text"),
    [(400, "invalid_payload"), (404, "no_service"), (410, "channel_is_archived")],
)
def test_a_slack_4xx_fails_the_job_at_once_without_the_url(
    app: Hueyard,
    hook: FakeSlack,
    redis_conn: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    status: int,
    text: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    hook.script(Reply(status, text))
    job_id = notifications.notify.enqueue({**NOTE, "severity": "warning"})

    info = run_one(app)

    assert (info.state, info.attempts) == ("failed", 1)
    assert info.error is not None
    assert info.error.startswith("SendRefused: warning notification 'Disk almost full'")
    assert f"answered HTTP {status} ({text}); not retried" in info.error
    assert "done: log: logged" in info.error
    assert len(hook.posts) == 1
    # the webhook URL is a secret: not in the job, its error, or any log line
    secret = PATH.rpartition("/")[2]
    assert all(
        secret.encode() not in value
        for value in redis_conn.hgetall(app.keys.job("notifications", job_id)).values()
    )
    assert secret not in caplog.text


def test_a_slack_refusal_is_not_recorded_so_a_retry_by_hand_posts_once_fixed(
    app: Hueyard, hook: FakeSlack, redis_conn: redis.Redis
) -> None:
    # Given a warning whose webhook answers 404 (the Slack app was removed): failed for good
    hook.script(Reply(404, "no_service"))
    job_id = notifications.notify.enqueue({**NOTE, "severity": "warning"})
    first = run_one(app)
    assert (first.state, first.attempts) == ("failed", 1)
    key = app.keys.cache(notifications.channels_key(job_id))
    # only the channel that worked is recorded as done
    assert redis_conn.hgetall(key) == {b"log": b"logged"}

    # When the webhook is fixed and the operator retries the job by hand
    assert Jobs(app).retry("notifications", job_id)
    second = run_one(app)

    # Then Slack is posted to (once), the log line is not repeated, and the job succeeds
    assert second.state == "completed"
    assert second.result["channels"] == {"log": "logged", "slack": "sent"}
    assert [post.body["text"].split("\n")[0] for post in hook.posts] == [
        "*[warning]* Disk almost full",
        "*[warning]* Disk almost full",
    ]  # the refused post and the one after the fix
    assert redis_conn.exists(key) == 0  # done with: the record does not outlive the job


def test_a_refusal_recorded_by_an_older_hueyard_is_tried_again(
    app: Hueyard, hook: FakeSlack, redis_conn: redis.Redis
) -> None:
    # Given a record that stored a Slack refusal among the done channels (0.1.0 did)
    job_id = notifications.notify.enqueue({**NOTE, "severity": "warning"})
    key = app.keys.cache(notifications.channels_key(job_id))
    redis_conn.hset(key, mapping={"log": "logged", "slack": "failed: HTTP 404 (no_service)"})

    info = run_one(app)

    assert info.state == "completed"
    assert info.result["channels"] == {"log": "logged", "slack": "sent"}
    assert len(hook.posts) == 1  # posted, not reported as an old 404


def test_an_unreachable_webhook_is_retried_and_its_url_is_not_shown(
    app: Hueyard, hook: FakeSlack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hook.close()  # nothing listens on its port any more
    notifications.notify.enqueue({**NOTE, "severity": "warning"})

    info = run_one(app)

    assert info.state == "delayed"
    assert info.error is not None and "Slack webhook on 127.0.0.1: not reached" in info.error
    assert PATH not in info.error and PATH not in caplog.text


def test_httpx_request_lines_show_the_webhook_host_only(
    app: Hueyard, hook: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    notifications.notify.enqueue({**NOTE, "severity": "warning"})
    assert run_one(app).state == "completed"
    requests = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert requests and all("/<webhook>" in line for line in requests)
    assert PATH.rpartition("/")[2] not in caplog.text


# -- the settings are checked at start-up --------------------------------------------------------

BAD_TABLES = [
    (
        'info = ["log", "sms"]',
        "info: Value error, unknown channel 'sms' in ['log', 'sms']; the channels are "
        "log, pubsub, slack, email",
    ),
    ("warning = []", 'warning: Value error, no channel; name at least one, e.g. ["log"]'),
    ('critical = ["log", "log"]', "a channel is named twice in ['log', 'log']"),
    ('info = "log"', "info: Input should be a valid list"),
    ('severe = ["log"]', "severe: Extra inputs are not permitted"),
    ('pubsub_channel = "has space"', "pubsub_channel: String should match pattern"),
    ('alert_email = "oncall"', "alert_email: Value error, must be an email address"),
]


@pytest.mark.parametrize(("line", "message"), BAD_TABLES)
def test_a_bad_table_stops_the_app_at_start_up_naming_the_field(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, line: str, message: str
) -> None:
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("HUEYARD_ALERT_EMAIL", raising=False)
    with pytest.raises(ConfigError) as caught:
        build_app(redis_url, f"[providers.notifications]\n{line}\n")
    assert str(caught.value).startswith("[providers.notifications] of ")
    assert message in str(caught.value)


MISSING = [
    (
        'warning = ["log", "slack"]',
        "warning = ['log', 'slack'] routes to 'slack', but no webhook URL is set; set "
        "SLACK_WEBHOOK_URL (or webhook_url in [providers.slack]), or take 'slack' out",
    ),
    (
        'critical = ["email"]',
        "critical = ['email'] routes to 'email', but no recipient is set; set "
        "HUEYARD_ALERT_EMAIL (or alert_email in [providers.notifications]), or take 'email' out",
    ),
]


@pytest.mark.parametrize(("line", "message"), MISSING)
def test_a_route_to_a_channel_without_its_settings_stops_the_app(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, line: str, message: str
) -> None:
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("HUEYARD_ALERT_EMAIL", raising=False)
    with pytest.raises(ConfigError, match="routes to") as caught:
        build_app(redis_url, f"[providers.notifications]\n{line}\n")
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "SLACK_WEBHOOK_URL",
            "hooks.slack.com/services/T/B/x",
            "SLACK_WEBHOOK_URL (or webhook_url in [providers.slack]) is not an http(s) URL",
        ),
        ("SLACK_TIMEOUT", "soon", "timeout: Input should be a valid number"),
        ("HUEYARD_ALERT_EMAIL", "oncall", "HUEYARD_ALERT_EMAIL='oncall' is not an email address"),
    ],
)
def test_a_bad_variable_stops_the_app_naming_it_but_never_the_url(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T/B/s3cr3t")
    monkeypatch.delenv("HUEYARD_ALERT_EMAIL", raising=False)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        build_app(redis_url, "")
    assert message in str(caught.value)
    assert "s3cr3t" not in str(caught.value) and "/T/B/" not in str(caught.value)


def test_the_slack_table_configures_the_webhook(
    hook: FakeSlack, redis_conn: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLACK_WEBHOOK_URL")
    table = f'[providers.slack]\nwebhook_url = "{hook.url}"\ntimeout = 3\n'
    app = build_app(redis_url, table + '[providers.notifications]\ninfo = ["slack"]\n')
    set_app(app)
    try:
        notifications.notify.enqueue(NOTE)
        assert run_one(app).result["channels"] == {"slack": "sent"}
    finally:
        reset_app()
    assert len(hook.posts) == 1
    shown = repr(_slack.slack_settings(env={}, config={"webhook_url": hook.url}))
    assert PATH not in shown and "127.0.0.1" not in shown
