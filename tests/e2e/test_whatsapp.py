"""The real ``pipelines.messages`` in real ``huey_consumer`` processes, posting to a fake
WhatsApp Cloud API on 127.0.0.1 (tests/fake_graph.py).

The consumer runs only the ``messages`` queue, with the CRM's policy but a
shortened rate-limit window: at most 5 jobs started in any 2 seconds.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from framework.application import Hueyard
from framework.config import parse_settings
from framework.handlers import REGISTRY, HandlerRegistry
from framework.jobs import Jobs
from pipelines import messages
from tests.e2e.conftest import E2E, wait_until
from tests.e2e.test_rate_limit_and_pause import _most_in_a_window
from tests.fake_graph import Answer, FakeGraphAPI, error

pytestmark = pytest.mark.e2e

TOKEN = "EAAG-e2e-access-token-0123456789"
PHONE_ID = "100200300400500"
RATE_MAX = 5
RATE_PER = 2.0
JOBS = 15


def config(e2e: E2E, lease: float = 30) -> str:
    return e2e.pipeline_config(
        f"""
[queues.messages]
attempts = 3
backoff = {{ type = "exponential", delay = 0.5 }}
concurrency = 4
rate_limit = {{ max = {RATE_MAX}, per = {RATE_PER} }}
keep_completed = 1000
""",
        lease=lease,
        max_stalls=1,
    )


@pytest.fixture
def messages_app(e2e: E2E) -> Iterator[Hueyard]:
    """The producer side: the messages handler on the consumer's config."""
    registry = HandlerRegistry()
    registry.register(REGISTRY.get("messages.send_message"))
    app = Hueyard(parse_settings(config(e2e), env={}), registry)
    yield app
    app.close()


def start(e2e: E2E, api: FakeGraphAPI, lease: float = 30) -> None:
    path: Path = e2e.tmp_path / "messages.toml"
    path.write_text(config(e2e, lease), encoding="utf-8")
    e2e.start_consumer(
        config=path,
        env={
            "HUEYARD_HANDLER_PACKAGES": "",
            "HUEYARD_HANDLER_MODULES": "pipelines.messages",
            "WHATSAPP_ACCESS_TOKEN": TOKEN,
            "WHATSAPP_PHONE_NUMBER_ID": PHONE_ID,
            "WHATSAPP_API_BASE_URL": api.url,
            "WHATSAPP_TIMEOUT": "5",
        },
    )


def test_messages_are_posted_to_the_api_within_the_queues_rate_limit(
    e2e: E2E, messages_app: Hueyard, fake_graph: FakeGraphAPI
) -> None:
    # Given a consumer of the messages queue, and an API that throttles one recipient once
    start(e2e, fake_graph)
    phones = [f"+1415555{n:04d}" for n in range(JOBS)]
    fake_graph.script(phones[3].removeprefix("+"), error(130429, "Rate limit hit", Retry_After="1"))

    # When fifteen messages are enqueued at once
    ids = messages_app.enqueue_many(
        "messages",
        "send_message",
        [{"to": phone, "content": f"Hi {n}"} for n, phone in enumerate(phones)],
    )

    # Then every job completes with the id the API gave its message
    jobs = Jobs(messages_app)
    wait_until(
        lambda: jobs.counts("messages").completed == JOBS, timeout=40, what="15 completed jobs"
    )
    infos = [jobs.get(job_id) for job_id in ids]
    for phone, info in zip(phones, infos, strict=True):
        assert info is not None and info.state == "completed"
        accepted = [r for r in fake_graph.to(phone.removeprefix("+")) if r.answered_id]
        assert len(accepted) == 1, phone
        assert info.result == {
            "sent": True,
            "dryRun": False,
            "messageId": accepted[0].answered_id,
            "sender": "whatsapp",
        }
    # And each request went to the phone number's endpoint with the token
    assert {r.path for r in fake_graph.requests} == {f"/v23.0/{PHONE_ID}/messages"}
    assert {r.authorization for r in fake_graph.requests} == {f"Bearer {TOKEN}"}
    # And the throttled message was retried once, as the API asked, and sent once
    throttled = infos[3]
    assert throttled is not None and throttled.attempts == 2
    assert len(fake_graph.requests) == JOBS + 1

    # And no window of 2 s saw more than 5 jobs started, by Redis's claim times (the
    # limit is on starts; when each request leaves after its start depends on the
    # machine's load, so the API's arrival times prove nothing more)
    claims = [info.started.timestamp() for info in infos if info and info.started]
    most, at = _most_in_a_window(claims, RATE_PER)
    assert most <= RATE_MAX, f"{most} claims in the {RATE_PER:g} s from {at}"
    # (the 11th of 15 starts waits for two windows: the limit really held them back)
    span = max(claims) - min(claims)
    assert span >= 2 * RATE_PER - 0.05, f"15 jobs at 5 per {RATE_PER:g} s took {span:.2f} s"


def test_a_consumer_killed_mid_send_does_not_message_the_customer_twice(
    e2e: E2E, messages_app: Hueyard, fake_graph: FakeGraphAPI
) -> None:
    # Given an API that takes 3 s to answer, and a consumer with a 1 s lease
    fake_graph.script("14155550123", Answer(delay=3))
    start(e2e, fake_graph, lease=1)
    job_id = messages_app.enqueue(
        "messages", "send_message", {"to": "+14155550123", "content": "Hi"}
    )

    # When the consumer is killed while the request is in flight
    wait_until(lambda: fake_graph.requests, timeout=10, what="the request to reach the API")
    e2e.consumers[0].send_to_group(signal.SIGKILL)
    e2e.consumers[0].wait_exit()

    # And another consumer recovers the job once its lease expired
    start(e2e, fake_graph, lease=1)

    # Then the job fails for good, saying the message may have been sent, without a
    # second request
    jobs = Jobs(messages_app)
    info = wait_until(
        lambda: (i := jobs.get(job_id)) is not None and i.state == "failed" and i,
        timeout=20,
        what="the recovered job to fail",
    )
    assert info.error is not None
    assert info.error.startswith("SendOutcomeUnknown: attempt 1 of job")
    assert "may have been sent" in info.error
    assert len(fake_graph.requests) == 1
    assert e2e.conn.exists(messages_app.keys.cache(messages.send_record_key(job_id)))
