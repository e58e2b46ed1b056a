"""Every outbound HTTP request of the pipelines ends within its timeout, in all.

A socket timeout bounds each read, not a request: a server that trickles its
answer (a header line, or a byte of the body, every 0.3 s) kept a webhook
delivery, a WhatsApp send, a Slack post or an OpenAI call open for as long as
it trickled. Each test runs a real trickling server on 127.0.0.1 and checks
that the request fails, as the timeout it is, within its deadline plus a
small margin.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
import redis

from framework.application import Hueyard
from framework.config import parse_settings
from framework.handlers import REGISTRY, HandlerRegistry
from framework.jobs import JobInfo, Jobs
from framework.runtime import reset_app, set_app
from pipelines import _http, _openai, _slack, _smtp, _whatsapp, messages, webhooks
from pipelines._providers import AIError, SendError, SendOutcomeUnknown
from pipelines.ai import AIRequest, VoiceTranscription
from tests.conftest import app_toml

DEADLINE = 1.0
MARGIN = 1.5
"""Seconds past the deadline a failure may take (a loaded 2-core CI machine)."""
TRICKLE_FOR = 8.0
"""Seconds the server keeps trickling: far past every deadline here."""


class Trickler:
    """Answers every request slowly: ``"headers"`` sends a header line every 0.3 s;
    ``"body"`` sends the headers at once, then one byte of the body every 0.3 s."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.server = socket.create_server(("127.0.0.1", 0))
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            conn.recv(65536)  # the request (its end does not matter to a trickler)
            end = time.monotonic() + TRICKLE_FOR
            if self.mode == "headers":
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
                while time.monotonic() < end:
                    time.sleep(0.3)
                    conn.sendall(b"X-Pad: 1\r\n")
                conn.sendall(b"Content-Length: 0\r\n\r\n")
            else:
                size = int(TRICKLE_FOR / 0.3)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {size}\r\n\r\n".encode()
                )
                for _ in range(size):
                    time.sleep(0.3)
                    conn.sendall(b" ")

    def close(self) -> None:
        self.server.close()


@pytest.fixture(params=["headers", "body"])
def trickler(request: pytest.FixtureRequest) -> Iterator[Trickler]:
    server = Trickler(request.param)
    yield server
    server.close()


@contextlib.contextmanager
def within(seconds: float) -> Iterator[None]:
    """The block takes at least ``DEADLINE`` (it did wait) and less than ``seconds``."""
    began = time.monotonic()
    yield
    took = time.monotonic() - began
    assert DEADLINE * 0.9 <= took < seconds, f"took {took:.1f} s"


def run_one(app: Hueyard, queue: str) -> JobInfo:
    huey = app.queue(queue).huey
    task = huey.dequeue()
    assert task is not None, "nothing to run"
    huey.execute(task)
    info = Jobs(app).get(task.id)
    assert info is not None
    return info


@pytest.fixture
def app(redis_conn: redis.Redis, redis_url: str) -> Iterator[Hueyard]:
    registry = HandlerRegistry()
    for name in ("webhooks.deliver_webhook", "messages.send_message"):
        registry.register(REGISTRY.get(name))
    body = "[queues.webhooks]\nattempts = 3\n[queues.messages]\nattempts = 3\n"
    app = Hueyard(parse_settings(app_toml(redis_url, body, prefix="dl"), env={}), registry)
    set_app(app)
    yield app
    reset_app()
    app.close()


@pytest.mark.parametrize("trickler", ["headers"], indirect=True)  # its body is never read
def test_a_trickling_webhook_receiver_fails_the_attempt_at_the_deadline(
    trickler: Trickler, app: Hueyard, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a receiver that trickles its answer, allowed as an internal endpoint
    monkeypatch.setenv(webhooks.ALLOW_PRIVATE_ENV, "127.0.0.0/8")
    monkeypatch.setattr(webhooks, "TIMEOUT", DEADLINE)
    webhooks.deliver_webhook.enqueue(
        {"url": trickler.url + "/hook", "event": "e", "body": {}, "secret": "s" * 20}
    )

    # When the delivery runs, it gives up at the deadline
    with within(DEADLINE + MARGIN):
        info = run_one(app, "webhooks")

    # And the attempt failed as a timeout, to be retried after the backoff
    assert (info.state, info.attempts) == ("delayed", 1)
    assert info.error is not None
    assert info.error.startswith("WebhookError: webhook e to http://127.0.0.1:")
    assert f"no complete answer within {DEADLINE:g} s" in info.error


def test_a_trickling_whatsapp_api_fails_the_send_at_its_timeout(
    trickler: Trickler, app: Hueyard, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HUEYARD_MESSAGE_SENDER", raising=False)
    monkeypatch.setenv("WHATSAPP_ACCESS_TOKEN", "EAAG-token")
    monkeypatch.setenv("WHATSAPP_PHONE_NUMBER_ID", "1098765")
    monkeypatch.setenv("WHATSAPP_API_BASE_URL", trickler.url)
    monkeypatch.setenv("WHATSAPP_TIMEOUT", str(DEADLINE))
    messages.send_message.enqueue({"to": "+14155550123", "content": "Hi"})
    try:
        with within(DEADLINE + MARGIN):
            info = run_one(app, "messages")
    finally:
        _whatsapp.SENDER.close()
    # the request was sent: the message may have gone out, so it is not sent again
    assert (info.state, info.attempts) == ("failed", 1)
    assert info.error is not None
    assert info.error.startswith(SendOutcomeUnknown.__name__)
    assert f"no answer within {DEADLINE:g} s" in info.error


def test_a_trickling_slack_webhook_fails_the_post_at_its_timeout(trickler: Trickler) -> None:
    settings = _slack.slack_settings(
        env={"SLACK_WEBHOOK_URL": trickler.url + "/services/T/B/x", "SLACK_TIMEOUT": "1"}
    )
    assert settings is not None
    try:
        with within(DEADLINE + MARGIN), pytest.raises(SendError, match="no answer within 1 s"):
            _slack.WEBHOOK.post(settings, "Disk full")
    finally:
        _slack.WEBHOOK.close()


@pytest.fixture
def openai_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789")
    monkeypatch.setenv("HUEYARD_AI_TIMEOUT", str(DEADLINE))
    yield
    _openai.PROVIDER.close()


def test_a_trickling_openai_api_fails_the_reply_at_its_timeout(
    trickler: Trickler, openai_at: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", trickler.url + "/v1")
    request = AIRequest(conversationId="c-1", prompt="Hi")
    with within(DEADLINE + MARGIN), pytest.raises(AIError, match="no answer within 1 s"):
        _openai.PROVIDER.reply(request)


def test_a_trickling_voice_note_server_fails_the_download_at_its_timeout(
    trickler: Trickler, openai_at: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # never reached
    request = VoiceTranscription(conversationId="c-1", audio_url=trickler.url + "/v.ogg")
    with within(DEADLINE + MARGIN), pytest.raises(AIError, match="the voice note at"):
        _openai.PROVIDER.transcribe(request)


def test_a_deadline_bounds_the_requests_inside_it_only() -> None:
    # Given a deadline that passed
    with _http.deadline(0.01):
        time.sleep(0.02)
        # Then an operation inside it has no time left
        with pytest.raises(_http.DeadlinePassed, match=r"within 0\.01 s"):
            _http.time_left(5.0)
        # And an inner deadline does not extend it
        with _http.deadline(60), pytest.raises(_http.DeadlinePassed):
            _http.time_left(None)
    # And outside it, a socket timeout is what it was
    assert _http.time_left(5.0) == 5.0
    assert _http.time_left(None) is None


class TricklingRelay:
    """An SMTP relay that greets one continuation line every 0.1 s, for ``TRICKLE_FOR`` s:
    each answer line comes well within a socket timeout, the greeting never ends."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            conn, _ = self.server.accept()
            with conn:
                end = time.monotonic() + TRICKLE_FOR
                while time.monotonic() < end:
                    conn.sendall(b"220-relay.example.com still greeting\r\n")
                    time.sleep(0.1)
                conn.sendall(b"220 relay.example.com ready\r\n")

    def close(self) -> None:
        self.server.close()


def test_a_trickling_smtp_relay_fails_the_delivery_within_four_timeouts() -> None:
    # Given a relay whose greeting never ends, a line every 0.1 s, and a 0.25 s timeout
    relay = TricklingRelay()
    env = {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(relay.port),
        "SMTP_SECURITY": "none",
        "SMTP_FROM": "crm@example.com",
        "SMTP_TIMEOUT": "0.25",
    }
    settings = _smtp.smtp_settings(env=env)
    assert settings is not None
    message = EmailMessage()
    message["Subject"] = "hello"
    message.set_content("hi")
    # When an email is delivered through it
    began = time.monotonic()
    try:
        with pytest.raises(SendError, match="not reached"):
            _smtp.deliver(settings, message, "ada@example.com")
    finally:
        relay.close()
    # Then it fails (retryable, nothing handed over) at the delivery's deadline, 4 x 0.25 s
    took = time.monotonic() - began
    assert 0.9 <= took < 1.0 + MARGIN, f"took {took:.1f} s"
