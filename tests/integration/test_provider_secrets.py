"""A provider that echoes the credential it was given never gets it into an error or a log.

APIs quote what they were sent: a 401 that says ``bad token Bearer EAAG…``, a
Slack error naming its webhook's path, an SMTP relay repeating the AUTH
argument (the password, base64-encoded). Each test runs a real local server
that echoes the sender's own credential, and checks the job's stored error,
the exception and the log.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import socket
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler

import pytest
import redis

from framework.application import Hueyard
from framework.config import parse_settings
from framework.handlers import REGISTRY, HandlerRegistry
from framework.jobs import Jobs
from framework.runtime import reset_app, set_app
from pipelines import _http, _openai, _slack, _smtp, _whatsapp, messages
from pipelines._providers import AIRefused, SenderConfigError, SendRefused
from pipelines.ai import AIRequest
from tests.conftest import app_toml
from tests.local_http import LocalServer, send

TOKEN = "EAAG-echoed-access-token-0123456789"
KEY = "sk-echoed-api-key-0123456789abcdef"
PASSWORD = "Echoed-SMTP-Pa55word"


def echo_credentials(handler: BaseHTTPRequestHandler, body: bytes) -> None:
    """401, quoting the request's Authorization header and its path, as some APIs do."""
    said = f"bad credentials {handler.headers.get('Authorization')} for {handler.path}"
    error = {"error": {"code": 190, "message": said, "type": "OAuthException"}}
    send(handler, 401, json.dumps(error).encode(), "application/json", {})


@pytest.fixture
def echo() -> Iterator[LocalServer]:
    server = LocalServer(echo_credentials)
    yield server
    server.close()


def test_a_whatsapp_api_echoing_the_token_leaves_it_out_of_the_job_and_the_log(
    echo: LocalServer,
    redis_conn: redis.Redis,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.delenv("HUEYARD_MESSAGE_SENDER", raising=False)
    monkeypatch.setenv("WHATSAPP_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("WHATSAPP_PHONE_NUMBER_ID", "1098765")
    monkeypatch.setenv("WHATSAPP_API_BASE_URL", echo.url)
    registry = HandlerRegistry()
    registry.register(REGISTRY.get("messages.send_message"))
    text = app_toml(redis_url, "[queues.messages]\nattempts = 3\n", prefix="echo")
    app = Hueyard(parse_settings(text, env={}), registry)
    set_app(app)
    try:
        # Given a job, and an API that quotes the token it was sent
        job_id = messages.send_message.enqueue({"to": "+14155550123", "content": "Hi"})

        # When the job runs (as a consumer runs it: the error stored, the failure logged)
        huey = app.queue("messages").huey
        task = huey.dequeue()
        assert task is not None
        huey.execute(task)
    finally:
        reset_app()
        _whatsapp.SENDER.close()
    info = Jobs(app).get(job_id)
    app.close()

    # Then it failed at once with the API's words, the token hidden in them
    assert info is not None and info.state == "failed"
    assert info.error is not None
    assert info.error.startswith("SendRefused: WhatsApp Cloud API code 190 (HTTP 401)")
    assert "bad credentials Bearer ********" in info.error
    # And the token is nowhere: not in the job's record, not in the log
    stored = redis_conn.hgetall(app.keys.job("messages", job_id))
    assert all(TOKEN.encode() not in value for value in stored.values())
    assert TOKEN not in caplog.text


def test_an_openai_api_echoing_the_key_leaves_it_out_of_the_error(
    echo: LocalServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", echo.url + "/v1")
    try:
        with pytest.raises(AIRefused) as caught:
            _openai.PROVIDER.reply(AIRequest(conversationId="c-1", prompt="Hi"))
    finally:
        _openai.PROVIDER.close()
    assert "bad credentials Bearer ********" in str(caught.value)
    assert KEY not in str(caught.value)
    assert KEY not in caplog.text


def test_a_slack_webhook_echoing_its_path_leaves_it_out_of_the_error(
    echo: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = "services/T0001/B0002/s3cr3tW3bh00kT0k3n"
    settings = _slack.slack_settings(env={"SLACK_WEBHOOK_URL": f"{echo.url}/{path}"})
    assert settings is not None
    try:
        with pytest.raises(SendRefused) as caught:
            _slack.WEBHOOK.post(settings, "Disk full")
    finally:
        _slack.WEBHOOK.close()
    assert "answered HTTP 401" in str(caught.value)
    assert "for /********" in str(caught.value)
    assert "s3cr3tW3bh00kT0k3n" not in str(caught.value)
    assert "s3cr3tW3bh00kT0k3n" not in caplog.text


@contextlib.contextmanager
def echoing_relay() -> Iterator[int]:
    """A plain SMTP relay on 127.0.0.1 that refuses every login, quoting the AUTH line."""
    server = socket.create_server(("127.0.0.1", 0))

    def session(conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn, conn.makefile("rb") as lines:
            conn.sendall(b"220 relay.test ESMTP\r\n")
            for raw in lines:
                line = raw.decode().strip()
                verb = line.split(" ")[0].upper()
                if verb == "EHLO":
                    conn.sendall(b"250-relay.test\r\n250 AUTH PLAIN\r\n")
                elif verb == "AUTH":
                    conn.sendall(f"535 5.7.8 refused: {line}\r\n".encode())
                elif verb == "QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 ok\r\n")

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                threading.Thread(target=session, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def test_an_smtp_relay_echoing_the_auth_line_leaves_the_password_out_of_the_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with echoing_relay() as port:
        settings = _smtp.smtp_settings(
            env={
                "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(port),
                "SMTP_SECURITY": "none",
                "SMTP_USER": "crm",
                "SMTP_PASSWORD": PASSWORD,
                "SMTP_FROM": "crm@example.com",
            }
        )
        assert settings is not None
        message = EmailMessage()
        message["Subject"] = "Hi"
        message.set_content("Hello")
        with pytest.raises(SenderConfigError) as caught:
            _smtp.deliver(settings, message, "jane@example.com")
    said = str(caught.value)
    assert "refused the login: 535 5.7.8 refused: AUTH PLAIN ********" in said
    plain = base64.b64encode(f"\0crm\0{PASSWORD}".encode()).decode()
    for form in (PASSWORD, plain, base64.b64encode(PASSWORD.encode()).decode()):
        assert form not in said
        assert form not in caplog.text


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("bad token Bearer s3cr3t-value", "bad token Bearer ********"),
        ("url-encoded s3cr3t%2Dvalue%21", "url-encoded s3cr3t%2Dvalue%21"),  # another secret
        (f"base64 {base64.b64encode(b's3cr3t-value').decode()}", "base64 ********"),
        ("nothing here", "nothing here"),
    ],
)
def test_hide_secrets_hides_the_secret_and_its_encodings(text: str, hidden: str) -> None:
    assert _http.hide_secrets(text, "s3cr3t-value", None, "") == hidden
