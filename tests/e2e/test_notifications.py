"""The real ``pipelines.notifications`` in a real ``huey_consumer framework.app`` process:
its log line shows at INFO under the consumer's default logging, its Slack post reaches
a fake webhook on 127.0.0.1, and a real Redis subscriber gets its pub/sub message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from framework.application import Hueyard
from framework.config import parse_settings
from framework.handlers import REGISTRY, HandlerRegistry
from framework.jobs import Jobs
from pipelines import notifications
from tests.e2e.conftest import E2E, wait_until
from tests.fake_slack import PATH, FakeSlack

pytestmark = [pytest.mark.e2e, pytest.mark.untimed]


def config(e2e: E2E) -> str:
    return e2e.pipeline_config(
        """
[queues.notifications]
attempts = 3
backoff = { type = "exponential", delay = 0.5 }

[queues.emails]
attempts = 5

[providers.notifications]
info = ["log", "pubsub"]
warning = ["log", "pubsub", "slack"]
""",
    )


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSlack]:
    server = FakeSlack()
    monkeypatch.setenv("SLACK_WEBHOOK_URL", server.url)  # the producer checks the routes too
    yield server
    server.close()


@pytest.fixture
def producer(e2e: E2E, hook: FakeSlack) -> Iterator[Hueyard]:
    registry = HandlerRegistry()
    registry.register(notifications.notify.spec)
    registry.register(REGISTRY.get("emails.send_email"))
    app = Hueyard(parse_settings(config(e2e), env={}), registry)
    yield app
    app.close()


def test_a_notification_under_huey_consumer_is_logged_posted_and_published(
    e2e: E2E, producer: Hueyard, hook: FakeSlack
) -> None:
    conn = redis.Redis.from_url(e2e.redis_url)
    subscriber = conn.pubsub()
    try:
        subscriber.subscribe(producer.keys.channel("notifications"))
        subscriber.get_message(timeout=5)
        # Given a consumer started the plain way: no -v, huey_consumer's own logging
        path: Path = e2e.tmp_path / "notifications.toml"
        path.write_text(config(e2e), encoding="utf-8")
        consumer = e2e.start_consumer(
            config=path,
            env={
                "HUEYARD_HANDLER_PACKAGES": "",
                "HUEYARD_HANDLER_MODULES": "pipelines.notifications",
                "SLACK_WEBHOOK_URL": hook.url,
            },
        )

        # When a warning is enqueued
        job_id = producer.enqueue(
            "notifications",
            "notify",
            {
                "userId": "u-7",
                "title": "Campaign paused",
                "body": "rate limit",
                "severity": "warning",
            },
        )

        # Then it completes through log, pub/sub and Slack
        jobs = Jobs(producer)
        wait_until(lambda: jobs.counts("notifications").completed == 1, timeout=20, what="the job")
        info = jobs.get(job_id)
        assert info is not None
        assert info.result["channels"] == {
            "log": "logged",
            "pubsub": "published to 1 subscriber",
            "slack": "sent",
        }
        # And the handler's line is in the consumer's output, at INFO... for a warning at WARNING
        consumer.wait_log("WARNING:pipelines.notifications:")
        assert "warning notification for user u-7: Campaign paused" in consumer.log()
        # (and an INFO line of the pipelines shows too: the Slack post's)
        assert "INFO:pipelines.notifications:" in consumer.log()
        assert "'Campaign paused' posted to Slack" in consumer.log()
        (post,) = hook.posts
        assert post.body == {"text": "*[warning]* Campaign paused\nrate limit"}
        message = subscriber.get_message(timeout=5)
        assert message is not None and json.loads(message["data"])["jobId"] == job_id
        # And the webhook URL is nowhere in the consumer's output
        assert PATH.rpartition("/")[2] not in consumer.log()

        # When an info notification runs, its INFO line shows as well
        producer.enqueue(
            "notifications", "notify", {"userId": "u-7", "title": "Import done", "body": "ok"}
        )
        consumer.wait_log("INFO:pipelines.notifications:", timeout=10)
        consumer.wait_log("info notification for user u-7: Import done", timeout=10)
    finally:
        subscriber.close()
        conn.close()
