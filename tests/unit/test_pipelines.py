"""The CRM's handlers in ``pipelines/``: payload contracts, results, side effects.

Handlers run in-process (a ``Handler`` is callable). Payload refusals go through
``spec.payload_json``, the exact check ``enqueue`` makes. Fan-out (campaigns,
flows, notifications) enqueues into a real app on the test Redis database;
webhooks and SMTP talk to real servers on 127.0.0.1.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import smtplib
import socketserver
import stat
import threading
from collections.abc import Iterator
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis

from framework.application import Hueyard
from framework.config import parse_settings
from framework.errors import PayloadError
from framework.handlers import REGISTRY, Handler, HandlerRegistry
from framework.jobs import JobInfo, Jobs
from framework.runtime import reset_app, set_app
from pipelines import (
    ai,
    analytics,
    campaigns,
    emails,
    exports,
    flows,
    imports,
    messages,
    notifications,
    webhooks,
)
from pipelines._providers import AI_PROVIDERS, UnknownProviderError, mask_phone, redact_url

ROOT = Path(__file__).resolve().parents[2]
QUEUES = [
    "messages",
    "campaigns",
    "flows",
    "emails",
    "webhooks",
    "ai",
    "imports",
    "exports",
    "analytics",
    "notifications",
]
PHONE = "+14155550123"
SECRET = "whsec-0123456789abcdef-TOPSECRET"


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def app(redis_conn: redis.Redis, redis_url: str) -> Iterator[Hueyard]:
    """The real config/queues.toml on the test database, installed as the process app."""
    registry = HandlerRegistry()
    for spec in REGISTRY:
        if spec.module.startswith("pipelines."):
            registry.register(spec)
    text = (ROOT / "config" / "queues.toml").read_text(encoding="utf-8")
    settings = parse_settings(text, env={"REDIS_URL": redis_url})
    app = Hueyard(settings, registry)
    set_app(app)  # the pipelines' handlers enqueue through this app
    yield app
    reset_app()


def jobs_in(app: Hueyard, queue: str, state: str = "waiting") -> list[JobInfo]:
    return list(Jobs(app).list_jobs(queue, state, page_size=500).items)


def pending_payloads(app: Hueyard, queue: str) -> list[dict[str, Any]]:
    return [job.payload for job in jobs_in(app, queue)]


# -- every queue has its handlers -------------------------------------------------------------


def test_every_configured_queue_has_a_handler(app: Hueyard) -> None:
    # Given the real config and the pipelines' handlers
    # Then every queue of the spec is served and nothing is left waiting for a handler
    assert sorted(app.queues) == sorted(QUEUES)
    assert app.warnings == []
    assert {spec.name for spec in app.registry} == {
        "messages.send_message",
        "campaigns.run_campaign",
        "flows.execute_flow",
        "emails.send_email",
        "webhooks.deliver_webhook",
        "ai.generate_reply",
        "ai.transcribe_voice",
        "imports.import_contacts",
        "exports.export_data",
        "analytics.snapshot",
        "notifications.notify",
    }


# -- payloads refused at enqueue --------------------------------------------------------------

GOOD = {
    "messages.send_message": {"to": PHONE, "content": "Hello World"},
    "campaigns.run_campaign": {"campaignId": "camp-123", "recipients": [PHONE], "content": "Hi"},
    "flows.execute_flow": {"flowId": "f1", "contactId": "c1", "trigger": "contact.created"},
    "emails.send_email": {"to": "jane@example.com", "subject": "Hi", "body": "Hello"},
    "webhooks.deliver_webhook": {
        "url": "https://example.com/hook",
        "event": "contact.created",
        "body": {"id": 1},
        "secret": SECRET,
    },
    "ai.generate_reply": {"conversationId": "conv-1", "prompt": "Hi"},
    "ai.transcribe_voice": {"conversationId": "conv-1", "audio_url": "https://cdn.example/a.ogg"},
    "imports.import_contacts": {"importId": "imp-1", "rows": []},
    "exports.export_data": {"exportId": "exp-1", "kind": "contacts", "format": "csv", "rows": []},
    "analytics.snapshot": {"period": "daily", "date": "2025-11-05", "metrics": {"sent": 1}},
    "notifications.notify": {"userId": "u-1", "title": "Hi", "body": "Hello"},
}

HANDLERS: dict[str, Handler[Any]] = {
    "messages.send_message": messages.send_message,
    "campaigns.run_campaign": campaigns.run_campaign,
    "flows.execute_flow": flows.execute_flow,
    "emails.send_email": emails.send_email,
    "webhooks.deliver_webhook": webhooks.deliver_webhook,
    "ai.generate_reply": ai.generate_reply,
    "ai.transcribe_voice": ai.transcribe_voice,
    "imports.import_contacts": imports.import_contacts,
    "exports.export_data": exports.export_data,
    "analytics.snapshot": analytics.snapshot,
    "notifications.notify": notifications.notify,
}


def bad(name: str, fragment: str, **changes: Any) -> Any:
    """A GOOD payload with ``changes`` (a value of ``...`` deletes the field)."""
    payload = {**GOOD[name], **changes}
    payload = {key: value for key, value in payload.items() if value is not ...}
    return pytest.param(name, payload, fragment, id=f"{name}-{fragment[:40]}")


BAD_PAYLOADS = [
    # messages
    bad("messages.send_message", "to: Field required", to=...),
    bad("messages.send_message", "E.164", to="14155550123"),
    bad("messages.send_message", "E.164", to="+1 415 555 0123"),
    bad("messages.send_message", "E.164", to="+0123456789"),
    bad("messages.send_message", "E.164", to="+123456"),
    bad("messages.send_message", "E.164", to="+1234567890123456"),
    bad("messages.send_message", "content: String should have at least 1 character", content=""),
    bad("messages.send_message", "at most 4096 characters", content="x" * 4097),
    bad(
        "messages.send_message",
        "type: Input should be 'text', 'image', 'document', 'audio', 'video' or 'template'",
        type="x",
    ),
    bad("messages.send_message", "an 'image' message needs media_url", type="image"),
    bad("messages.send_message", "a 'text' message needs content", content=None),
    bad(
        "messages.send_message",
        "an 'audio' message has no caption",
        type="audio",
        media_url="https://cdn.example/v.ogg",
    ),
    bad("messages.send_message", "filename is for 'document' messages only", filename="a.pdf"),
    bad(
        "messages.send_message",
        "template is for 'template' messages, not 'text'",
        template={"name": "promo"},
    ),
    bad(
        "messages.send_message",
        "template.name: String should match pattern",
        type="template",
        template={"name": "Promo Code"},
    ),
    bad(
        "messages.send_message",
        "template.language: String should match pattern",
        type="template",
        template={"name": "promo", "language": "english please"},
    ),
    bad(
        "messages.send_message",
        "components[0] needs a 'type'",
        type="template",
        template={"name": "promo", "components": [{"parameters": []}]},
    ),
    bad("messages.send_message", "http:// or https://", media_url="file:///etc/passwd"),
    bad("messages.send_message", "priority: Extra inputs are not permitted", priority=1),
    # campaigns
    bad("campaigns.run_campaign", "recipients: List should have at least 1 item", recipients=[]),
    bad(
        "campaigns.run_campaign",
        "recipients.1: Value error, must be an E.164",
        recipients=[PHONE, "123"],
    ),
    bad("campaigns.run_campaign", "campaignId: Value error, must be 1 to 128", campaignId="../x"),
    bad(
        "campaigns.run_campaign",
        "batch_size: Input should be greater than or equal to 1",
        batch_size=0,
    ),
    bad(
        "campaigns.run_campaign",
        "batch_size: Input should be less than or equal to 1000",
        batch_size=1001,
    ),
    bad(
        "campaigns.run_campaign", "priority: Input should be less than or equal to 10", priority=11
    ),
    bad("campaigns.run_campaign", "needs media_url", type="image"),
    bad("campaigns.run_campaign", "a 'text' message needs content", content=...),
    # flows
    bad("flows.execute_flow", "contactId: Field required", contactId=...),
    bad("flows.execute_flow", "nodes.0: Unable to extract tag", nodes=[{"id": "a"}]),
    bad("flows.execute_flow", "nodes.0: Input tag 'jump'", nodes=[{"id": "a", "type": "jump"}]),
    bad(
        "flows.execute_flow",
        "seconds: Input should be greater than 0",
        nodes=[{"id": "a", "type": "wait", "seconds": 0}],
    ),
    bad(
        "flows.execute_flow",
        "node ids must be unique; repeated: a",
        nodes=[{"id": "a", "type": "set", "key": "k", "value": 1}] * 2,
    ),
    bad(
        "flows.execute_flow",
        "send_message node needs the contact's phone",
        nodes=[{"id": "a", "type": "send_message", "content": "Hi"}],
    ),
    bad("flows.execute_flow", "context: Input should be a valid dictionary", context=[1]),
    # emails
    bad("emails.send_email", "to: Value error, must be an email address", to="jane"),
    bad("emails.send_email", "must be an email address", to="jane@localhost"),
    bad("emails.send_email", "must be an email address", to="a b@example.com"),
    bad(
        "emails.send_email",
        "subject: Value error, must be one line",
        subject="Hi\r\nBcc: x@evil.example",
    ),
    bad("emails.send_email", "subject: String should have at least 1 character", subject=""),
    bad("emails.send_email", "html: Input should be a valid boolean", html="maybe"),
    bad("emails.send_email", "cc: Extra inputs are not permitted", cc="x@example.com"),
    # webhooks
    bad(
        "webhooks.deliver_webhook",
        "url: Value error, must be an absolute http://",
        url="ftp://example.com/x",
    ),
    bad("webhooks.deliver_webhook", "must be an absolute http://", url="/relative/path"),
    bad("webhooks.deliver_webhook", "must be an absolute http://", url="https:///no-host"),
    bad("webhooks.deliver_webhook", "secret: Value error, must be 16 to 512", secret="short"),
    bad("webhooks.deliver_webhook", "secret: Field required", secret=...),
    bad("webhooks.deliver_webhook", "event: String should match pattern", event="a b"),
    bad("webhooks.deliver_webhook", "body: Input should be a valid dictionary", body=[1, 2]),
    # ai
    bad("ai.generate_reply", "unknown ai provider 'gpt-9'; registered: echo", provider="gpt-9"),
    bad("ai.generate_reply", "prompt: String should have at least 1 character", prompt=""),
    bad("ai.generate_reply", "prompt: String should have at most 8000", prompt="x" * 8001),
    bad("ai.transcribe_voice", "audio_url: Value error, must be an absolute", audio_url="a.ogg"),
    bad("ai.transcribe_voice", "language: String should match pattern", language="english!"),
    bad("ai.transcribe_voice", "unknown ai provider 'nope'", provider="nope"),
    # imports
    bad("imports.import_contacts", "importId: Field required", importId=...),
    bad("imports.import_contacts", "rows: Input should be a valid list", rows={"name": "x"}),
    bad("imports.import_contacts", "rows.0: Input should be a valid dictionary", rows=["Ada"]),
    bad(
        "imports.import_contacts",
        "rows: List should have at most 100000 items",
        rows=[{}] * 100_001,
    ),
    # exports
    bad("exports.export_data", "exportId: Value error", exportId="../../etc/passwd"),
    bad(
        "exports.export_data",
        "kind: Input should be 'contacts', 'messages' or 'campaigns'",
        kind="users",
    ),
    bad("exports.export_data", "format: Input should be 'csv' or 'json'", format="xlsx"),
    # analytics
    bad(
        "analytics.snapshot",
        "period: Input should be 'daily', 'weekly' or 'monthly'",
        period="yearly",
    ),
    bad("analytics.snapshot", "date: Value error, must be a calendar date", date="2025-02-30"),
    bad("analytics.snapshot", "must be a calendar date", date="2025/11/05"),
    bad("analytics.snapshot", "must be a calendar date", date="20251105"),
    bad("analytics.snapshot", "metrics: Dictionary should have at least 1 item", metrics={}),
    bad("analytics.snapshot", "refused: 'bad name'", metrics={"bad name": 1}),
    bad("analytics.snapshot", "Input should be a finite number", metrics={"x": float("nan")}),
    bad("analytics.snapshot", "Input should be a finite number", metrics={"x": [1, float("inf")]}),
    bad("analytics.snapshot", "List should have at least 1 item", metrics={"x": []}),
    bad("analytics.snapshot", "date is required with metrics", date=...),
    bad("analytics.snapshot", "unknown time zone 'Mars/Olympus'", timezone="Mars/Olympus"),
    bad("analytics.snapshot", "tick: Input should have timezone info", tick="2025-11-05T00:05"),
    bad("analytics.snapshot", "Extra inputs are not permitted", metrcs={"x": 1}),
    # notifications
    bad(
        "notifications.notify",
        "severity: Input should be 'info', 'warning' or 'critical'",
        severity="fatal",
    ),
    bad("notifications.notify", "title: Value error, must be one line", title="a\nb"),
    bad("notifications.notify", "body: String should have at most 2000", body="x" * 2001),
    bad("notifications.notify", "userId: Value error, must be 1 to 128", userId=""),
]


@pytest.mark.parametrize("name", sorted(GOOD))
def test_the_example_payloads_are_accepted(name: str) -> None:
    encoded = HANDLERS[name].spec.payload_json(GOOD[name])
    assert isinstance(json.loads(encoded), dict)


@pytest.mark.parametrize(("name", "payload", "fragment"), BAD_PAYLOADS)
def test_bad_payloads_are_refused_with_a_reason(name: str, payload: Any, fragment: str) -> None:
    with pytest.raises(PayloadError) as caught:
        HANDLERS[name].spec.payload_json(payload)
    message = str(caught.value)
    assert f"payload for {name} does not validate" in message
    assert fragment in message


def test_a_refused_payload_stores_nothing(app: Hueyard) -> None:
    with pytest.raises(PayloadError, match=r"E\.164"):
        messages.send_message.enqueue({"to": "12345", "content": "Hi"})
    assert app.queue("messages").huey.pending_count() == 0


# -- messages ---------------------------------------------------------------------------------


def test_the_log_sender_reports_a_dry_run_and_logs_no_content(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for variable in ("HUEYARD_MESSAGE_SENDER", "WHATSAPP_ACCESS_TOKEN", "WHATSAPP_PHONE_NUMBER_ID"):
        monkeypatch.delenv(variable, raising=False)
    caplog.set_level(logging.DEBUG)

    result = messages.send_message(messages.OutboundMessage(to=PHONE, content="secret plans"))

    assert result["sent"] is False
    assert result["dryRun"] is True
    assert result["sender"] == "log"
    assert result["messageId"].startswith("msg-")
    assert mask_phone(PHONE) in caplog.text
    assert PHONE not in caplog.text
    assert "secret plans" not in caplog.text


def test_an_unknown_message_sender_is_named_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUEYARD_MESSAGE_SENDER", "twilio")
    with pytest.raises(
        UnknownProviderError, match="unknown message sender 'twilio'; registered: log, whatsapp"
    ):
        messages.send_message(messages.OutboundMessage(to=PHONE, content="Hi"))


# -- campaigns --------------------------------------------------------------------------------


def test_a_campaign_fans_out_one_message_job_per_distinct_recipient(app: Hueyard) -> None:
    # Given five recipients, one of them twice, in batches of two
    recipients = ["+14155550101", "+14155550102", "+14155550101", "+14155550103", "+14155550104"]
    job = campaigns.CampaignJob(
        campaignId="camp-123", recipients=recipients, content="Sale!", batch_size=2
    )

    # When the campaign runs
    result = campaigns.run_campaign(job)

    # Then four message jobs wait, one per distinct number, at the campaign's priority
    assert result == {"campaignId": "camp-123", "enqueued": 4, "duplicates": 1, "batches": 2}
    waiting = jobs_in(app, "messages")
    assert len(waiting) == 4
    assert sorted(job.payload["to"] for job in waiting) == sorted(set(recipients))
    assert {job.payload["content"] for job in waiting} == {"Sale!"}
    assert {job.priority for job in waiting} == {8}


def test_a_template_campaign_gives_every_message_the_template(app: Hueyard) -> None:
    template = {
        "name": "sale_starts",
        "language": "de",
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "20%"}]}],
    }
    job = campaigns.CampaignJob.model_validate(
        {"campaignId": "camp-9", "recipients": [PHONE, "+447700900123"], "type": "template",
         "template": template}
    )  # fmt: skip
    campaigns.run_campaign(job)
    waiting = jobs_in(app, "messages")
    assert [(j.payload["type"], j.payload["template"]) for j in waiting] == [
        ("template", template)
    ] * 2


# -- flows ------------------------------------------------------------------------------------

WELCOME = [
    {"id": "tag", "type": "set", "key": "stage", "value": "new"},
    {"id": "is-new", "type": "condition", "key": "stage", "equals": "new"},
    {"id": "greet", "type": "send_message", "content": "Hi $name, welcome! ($missing)"},
    {"id": "pause", "type": "wait", "seconds": 3600},
    {"id": "follow-up", "type": "send_message", "content": "How is it going, $name?"},
]


def trigger(nodes: list[dict[str, Any]], **context: Any) -> flows.FlowTrigger:
    return flows.FlowTrigger.model_validate(
        {
            "flowId": "welcome",
            "contactId": "c-42",
            "trigger": "contact.created",
            "phone": PHONE,
            "context": context,
            "nodes": nodes,
        }
    )


def test_a_flow_runs_until_a_wait_then_schedules_the_rest(app: Hueyard) -> None:
    # When the flow runs
    result = flows.execute_flow(trigger(WELCOME, name="Ada"))

    # Then the nodes up to the wait ran, the greeting is queued with its placeholders filled
    assert result == {
        "flowId": "welcome",
        "contactId": "c-42",
        "status": "waiting",
        "executed": ["tag", "is-new", "greet", "pause"],
    }
    assert pending_payloads(app, "messages") == [
        {
            "to": PHONE,
            "content": "Hi Ada, welcome! ($missing)",
            "type": "text",
            "media_url": None,
            "template": None,
            "filename": None,
        }
    ]
    # and the rest of the flow is scheduled, carrying the context
    flows_huey = app.queue("flows").huey
    assert flows_huey.pending_count() == 0
    (scheduled,) = jobs_in(app, "flows", "delayed")
    rest = flows.FlowTrigger.model_validate(scheduled.payload)
    assert [node.id for node in rest.nodes] == ["follow-up"]
    assert rest.context == {"name": "Ada", "stage": "new"}

    # When the scheduled rest runs, the follow-up is sent
    assert flows.execute_flow(rest)["status"] == "completed"
    assert app.queue("messages").huey.pending_count() == 2


def test_a_failed_condition_stops_the_flow(app: Hueyard) -> None:
    nodes = [
        {"id": "check", "type": "condition", "key": "vip", "equals": True},
        {"id": "greet", "type": "send_message", "content": "Hi VIP"},
    ]
    result = flows.execute_flow(trigger(nodes, vip=False))
    assert result["status"] == "stopped"
    assert result["executed"] == ["check"]
    assert app.queue("messages").huey.pending_count() == 0


def test_a_trailing_wait_schedules_nothing(app: Hueyard) -> None:
    result = flows.execute_flow(trigger([{"id": "w", "type": "wait", "seconds": 5}]))
    assert result["status"] == "completed"
    assert app.queue("flows").huey.scheduled_count() == 0


# -- emails -----------------------------------------------------------------------------------


class _SMTPSession(socketserver.StreamRequestHandler):
    """Just enough SMTP for smtplib: EHLO, MAIL, RCPT, DATA, QUIT."""

    server: _SMTPServer

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode("ascii") + b"\r\n")

    def handle(self) -> None:
        self.reply("220 test ESMTP")
        data: list[bytes] | None = None
        envelope: list[str] = []
        for raw in self.rfile:
            if data is not None:
                if raw == b".\r\n":
                    self.server.received.append((envelope, b"".join(data)))
                    data, envelope = None, []
                    self.reply("250 queued")
                else:
                    data.append(raw[1:] if raw.startswith(b"..") else raw)
                continue
            command = raw.decode("ascii").strip()
            verb = command[:4].upper()
            if verb == "EHLO":
                self.reply("250-test")
                self.reply("250 8BITMIME")
            elif verb == "RCPT" and self.server.refuse_recipients:
                self.reply("550 no such user")
            elif verb in ("MAIL", "RCPT"):
                envelope.append(verb + command[4:])
                self.reply("250 ok")
            elif verb == "DATA":
                data = []
                self.reply("354 go ahead")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("250 ok")


class _SMTPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SMTPSession)
        self.received: list[tuple[list[str], bytes]] = []
        self.refuse_recipients = False


@pytest.fixture
def smtp_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[_SMTPServer]:
    server = _SMTPServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("HUEYARD_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("HUEYARD_SMTP_PORT", str(server.server_address[1]))
    monkeypatch.setenv("HUEYARD_SMTP_FROM", "crm@example.com")
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_without_an_smtp_host_an_email_is_a_logged_dry_run(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("HUEYARD_SMTP_HOST", raising=False)
    caplog.set_level(logging.DEBUG)
    email = emails.EmailMessage(to="jane.doe@example.com", subject="Reset", body="code 918273")

    assert emails.send_email(email) == {"delivered": False, "dryRun": True}
    assert "j***@example.com" in caplog.text
    assert "918273" not in caplog.text
    assert "jane.doe" not in caplog.text


def test_an_email_is_delivered_over_smtp(smtp_server: _SMTPServer) -> None:
    email = emails.EmailMessage(
        to="jane@example.com", subject="Your export", body="<p>Ready</p>", html=True
    )

    result = emails.send_email(email)

    assert result["delivered"] is True
    assert result["dryRun"] is False
    ((envelope, raw),) = smtp_server.received
    assert envelope == ["MAIL FROM:<crm@example.com>", "RCPT TO:<jane@example.com>"]
    sent = message_from_bytes(raw, policy=policy.default)
    assert sent["Subject"] == "Your export"
    assert sent["Message-ID"] == result["messageId"]
    assert sent.get_content_type() == "text/html"
    assert sent.get_content().strip() == "<p>Ready</p>"  # type: ignore[attr-defined]


def test_a_refused_recipient_fails_the_attempt(smtp_server: _SMTPServer) -> None:
    smtp_server.refuse_recipients = True
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        emails.send_email(emails.EmailMessage(to="nobody@example.com", subject="x", body="y"))
    assert smtp_server.received == []


@pytest.mark.parametrize("port", ["smtp", "0", "70000", "-1"])
def test_a_bad_smtp_port_names_the_variable(port: str) -> None:
    with pytest.raises(ValueError, match=f"HUEYARD_SMTP_PORT='{port}' is not a port"):
        emails.smtp_settings({"HUEYARD_SMTP_HOST": "mail", "HUEYARD_SMTP_PORT": port})


def test_smtp_settings_defaults() -> None:
    assert emails.smtp_settings({}) is None
    assert emails.smtp_settings({"HUEYARD_SMTP_HOST": "mail"}) == ("mail", 25, "hueyard@localhost")


# -- webhooks: signatures ---------------------------------------------------------------------

BODY = b'{"contactId":"c-42"}'
NOW = 1_700_000_000


def test_sign_is_hmac_sha256_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert webhooks.sign(SECRET, NOW, BODY) == f"sha256={expected}"


@pytest.mark.parametrize(
    ("secret", "timestamp", "body", "now", "valid"),
    [
        pytest.param(SECRET, NOW, BODY, NOW, True, id="genuine"),
        pytest.param(SECRET, NOW, BODY, NOW + 300, True, id="at-the-tolerance"),
        pytest.param(SECRET, NOW, b'{"contactId":"c-43"}', NOW, False, id="tampered-body"),
        pytest.param("another-secret-value", NOW, BODY, NOW, False, id="wrong-secret"),
        pytest.param(SECRET, NOW + 1, BODY, NOW, False, id="timestamp-swapped"),
        pytest.param(SECRET, NOW, BODY, NOW + 301, False, id="stale"),
        pytest.param(SECRET, NOW, BODY, NOW - 301, False, id="from-the-future"),
    ],
)
def test_verify(secret: str, timestamp: int, body: bytes, now: int, valid: bool) -> None:
    signature = webhooks.sign(SECRET, NOW, BODY)
    assert webhooks.verify(secret, timestamp, body, signature, now=now) is valid


def test_verify_refuses_a_malformed_signature() -> None:
    digest = webhooks.sign(SECRET, NOW, BODY).removeprefix("sha256=")
    assert webhooks.verify(SECRET, NOW, BODY, digest, now=NOW) is False
    assert webhooks.verify(SECRET, NOW, BODY, "", now=NOW) is False
    assert webhooks.verify(SECRET, NOW, BODY, "sha256=" + digest, tolerance=0, now=NOW) is True


def test_the_body_is_compact_sorted_json() -> None:
    assert (
        webhooks.encode_body({"b": 1, "a": [1, 2], "é": None})
        == '{"a":[1,2],"b":1,"é":null}'.encode()
    )


# -- webhooks: delivery to a real server ------------------------------------------------------


class _Receiver(BaseHTTPRequestHandler):
    server: _WebhookServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((dict(self.headers), body))
        status = self.server.status
        genuine = webhooks.verify(
            SECRET,
            int(self.headers[webhooks.TIMESTAMP_HEADER]),
            body,
            self.headers[webhooks.SIGNATURE_HEADER],
        )
        self.send_response(status if genuine else 401)
        if 300 <= status < 400:
            self.send_header("Location", self.server.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _WebhookServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Receiver)
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        self.location = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/crm"


@pytest.fixture
def webhook_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[_WebhookServer]:
    monkeypatch.setenv("HUEYARD_WEBHOOK_ALLOW_PRIVATE", "1")
    server = _WebhookServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def delivery(url: str, secret: str = SECRET) -> webhooks.WebhookDelivery:
    return webhooks.WebhookDelivery.model_validate(
        {"url": url, "event": "contact.created", "body": {"contactId": "c-42"}, "secret": secret}
    )


def test_a_webhook_is_posted_signed(
    webhook_server: _WebhookServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    # Given a delivery stored the way enqueue stores it (JSON, as a worker reads it back)
    spec = webhooks.deliver_webhook.spec
    stored = json.loads(spec.payload_json(delivery(webhook_server.url + "?token=abc")))

    # When a worker runs it
    result = spec.call(stored)

    # Then the receiver got the body, signed with the secret that survived storage
    assert result == {"status": 200}
    ((headers, body),) = webhook_server.received
    assert body == BODY
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Hueyard-Event"] == "contact.created"
    assert headers["X-Hueyard-Signature"] == webhooks.sign(
        SECRET, int(headers["X-Hueyard-Timestamp"]), BODY
    )
    assert SECRET not in caplog.text
    assert "token=abc" not in caplog.text


def test_a_wrongly_signed_delivery_is_refused_by_the_receiver(
    webhook_server: _WebhookServer,
) -> None:
    with pytest.raises(webhooks.WebhookError, match="answered HTTP 401"):
        webhooks.deliver_webhook(delivery(webhook_server.url, secret="not-the-shared-secret"))


@pytest.mark.parametrize("status", [500, 503, 404])
def test_a_non_2xx_answer_raises_so_the_queue_retries(
    webhook_server: _WebhookServer, status: int
) -> None:
    webhook_server.status = status
    with pytest.raises(webhooks.WebhookError) as caught:
        webhooks.deliver_webhook(delivery(webhook_server.url + "?token=abc"))
    message = str(caught.value)
    assert f"answered HTTP {status}" in message
    assert SECRET not in message
    assert "token=abc" not in message
    assert len(webhook_server.received) == 1


def test_a_redirect_is_not_followed(webhook_server: _WebhookServer) -> None:
    webhook_server.status = 302
    webhook_server.location = webhook_server.url + "/elsewhere"
    with pytest.raises(webhooks.WebhookError, match="answered HTTP 302"):
        webhooks.deliver_webhook(delivery(webhook_server.url))
    assert len(webhook_server.received) == 1


def test_an_unreachable_endpoint_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUEYARD_WEBHOOK_ALLOW_PRIVATE", "1")
    closed = _WebhookServer()
    url = closed.url
    closed.server_close()
    with pytest.raises(webhooks.WebhookError, match=r"failed: .*refused"):
        webhooks.deliver_webhook(delivery(url))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x",
        "http://localhost:9/x",
        "http://10.1.2.3/x",
        "http://[::1]:9/x",
        "http://169.254.169.254/latest",
    ],
)
def test_internal_addresses_are_refused_by_default(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.delenv("HUEYARD_WEBHOOK_ALLOW_PRIVATE", raising=False)
    with pytest.raises(webhooks.WebhookError, match=r"non-public address .* refused"):
        webhooks.deliver_webhook(delivery(url))


def test_the_stored_payload_carries_the_secret_but_its_repr_does_not() -> None:
    model = delivery("https://example.com/hook")
    assert SECRET not in repr(model)
    assert json.loads(webhooks.deliver_webhook.spec.payload_json(model))["secret"] == SECRET


def test_a_refused_secret_is_not_quoted() -> None:
    with pytest.raises(PayloadError) as caught:
        webhooks.deliver_webhook.spec.payload_json(
            {**GOOD["webhooks.deliver_webhook"], "secret": "tiny-secret"}
        )
    assert "tiny-secret" not in str(caught.value)


def test_redact_url_drops_credentials_query_and_fragment() -> None:
    assert (
        redact_url("https://user:pw@example.com:8443/a/b?token=x#f")
        == "https://example.com:8443/a/b"
    )
    assert redact_url("http://[::1]:9/x") == "http://[::1]:9/x"


# -- ai ---------------------------------------------------------------------------------------


def test_the_echo_provider_is_deterministic() -> None:
    request = ai.AIRequest(conversationId="conv-7", prompt="Opening hours?")
    assert (
        ai.generate_reply(request)
        == ai.generate_reply(request)
        == {
            "conversationId": "conv-7",
            "provider": "echo",
            "reply": "echo: Opening hours?",
        }
    )
    voice = ai.VoiceTranscription(
        conversationId="conv-7", audio_url="https://cdn.example/v.ogg?sig=1", language="pt-BR"
    )
    assert ai.transcribe_voice(voice)["transcript"] == (
        "echo transcript (pt-BR) of https://cdn.example/v.ogg"
    )


def test_a_registered_provider_is_used() -> None:
    class Shouty:
        def reply(self, prompt: str, *, conversation_id: str) -> str:
            return prompt.upper()

        def transcribe(self, audio_url: str, *, language: str | None) -> str:
            return "HELLO"

    AI_PROVIDERS.register("shouty", Shouty())
    try:
        request = ai.AIRequest(conversationId="c", prompt="hi", provider="shouty")
        assert ai.generate_reply(request)["reply"] == "HI"
        with pytest.raises(ValueError, match="'shouty' is already registered"):
            AI_PROVIDERS.register("shouty", Shouty())
    finally:
        AI_PROVIDERS.unregister("shouty")
    with pytest.raises(UnknownProviderError, match="unknown ai provider 'shouty'"):
        ai.generate_reply(request)


# -- imports ----------------------------------------------------------------------------------

ADA = {"name": "Ada Lovelace", "phone": "+442079460958"}


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"phone": PHONE}, "name is missing"),
        ({"name": "   ", "phone": PHONE}, "name is missing"),
        ({"name": 42, "phone": PHONE}, "name is missing"),
        ({"name": "x" * 201, "phone": PHONE}, "name is longer than 200 characters"),
        ({"name": "Ada"}, "phone is missing"),
        ({"name": "Ada", "phone": ""}, "phone is missing"),
        ({"name": "Ada", "phone": 14155550123}, "phone must be text"),
        ({"name": "Ada", "phone": "4155550123"}, "phone is not an E.164 number"),
        ({"name": "Ada", "phone": "+0123456789"}, "phone is not an E.164 number"),
        ({"name": "Ada", "phone": "+1 415 CALL ME"}, "phone is not an E.164 number"),
        ({**ADA, "email": "not-an-email"}, "email is not an email address"),
        ({**ADA, "email": 7}, "email is not an email address"),
    ],
)
def test_bad_rows_are_rejected_with_a_reason(row: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        imports.validate_row(row)


@pytest.mark.parametrize(
    ("phone", "normalised"),
    [
        ("+1 (415) 555-0123", "+14155550123"),
        ("0044 20 7946 0958", "+442079460958"),
        ("+44.20.7946.0958", "+442079460958"),
    ],
)
def test_phones_are_normalised(phone: str, normalised: str) -> None:
    contact = imports.validate_row({"name": " Ada ", "phone": phone, "email": "", "tags": "x"})
    assert contact == imports.Contact(name="Ada", phone=normalised, email=None)


def test_an_import_counts_and_explains_rejections() -> None:
    # Given two good rows, a duplicate of the first and twelve bad rows
    rows: list[dict[str, Any]] = [
        {**ADA, "email": " ada@example.com "},
        {"name": "Grace", "phone": "+1 415 555 0199"},
        {"name": "Ada again", "phone": "+44 20 7946 0958"},
    ] + [{"name": f"n{i}"} for i in range(12)]

    # When they are imported
    result = imports.import_contacts(imports.ContactImport(importId="imp-9", rows=rows))

    # Then the counts add up and the first ten reasons are listed, by row index
    assert result["importId"] == "imp-9"
    assert (result["total"], result["imported"], result["rejected"]) == (15, 2, 13)
    assert len(result["rejections"]) == imports.MAX_REASONS
    assert result["rejections"][0] == {"index": 2, "reason": "phone duplicates row 0"}
    assert result["rejections"][1] == {"index": 3, "reason": "phone is missing"}


# -- exports ----------------------------------------------------------------------------------


@pytest.fixture
def export_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "exports"
    monkeypatch.setenv("HUEYARD_EXPORT_DIR", str(directory))
    return directory


@pytest.mark.parametrize(
    "export_id",
    ["../escape", "..", "a/b", "a\\b", ".hidden", "a.csv", "", "x" * 129, "a b", "ünï", "/abs"],
)
def test_an_export_id_that_is_not_a_plain_name_is_refused(export_id: str) -> None:
    payload = {**GOOD["exports.export_data"], "exportId": export_id}
    with pytest.raises(PayloadError, match="exportId: Value error"):
        exports.export_data.spec.payload_json(payload)


def export(format: str, rows: list[dict[str, Any]], kind: str = "contacts") -> dict[str, Any]:
    request = exports.ExportRequest.model_validate(
        {"exportId": "exp-1", "kind": kind, "format": format, "rows": rows}
    )
    return exports.export_data(request)


def test_a_csv_export_is_written_with_every_column(export_dir: Path) -> None:
    rows = [
        {"name": "Ada", "phone": "+442079460958", "tags": ["vip"]},
        {"name": '=HYPERLINK("http://evil")', "balance": -12.5, "active": True, "note": None},
        {"name": "-1+1", "phone": "+14155550123", "note": "@SUM(A1)"},
    ]

    result = export("csv", rows)

    target = export_dir / "contacts-exp-1.csv"
    assert result == {
        "exportId": "exp-1",
        "path": str(target),
        "rows": 3,
        "bytes": target.stat().st_size,
    }
    assert target.read_text(encoding="utf-8").splitlines() == [
        "name,phone,tags,balance,active,note",
        'Ada,+442079460958,"[""vip""]",,,',
        '"\'=HYPERLINK(""http://evil"")",,,-12.5,true,',
        "'-1+1,+14155550123,,,,'@SUM(A1)",
    ]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_json_export_round_trips(export_dir: Path) -> None:
    rows = [{"id": "m1", "text": "héllo"}, {"id": "m2", "nested": {"a": [1, 2]}}]
    result = export("json", rows, kind="messages")
    assert Path(result["path"]).name == "messages-exp-1.json"
    assert json.loads(Path(result["path"]).read_text(encoding="utf-8")) == rows
    assert json.loads(Path(export("json", [])["path"]).read_text(encoding="utf-8")) == []


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("disk full, say")


@pytest.mark.parametrize(
    ("format", "bad_row"),
    [("csv", {"name": _Unprintable()}), ("json", {"score": float("nan")})],
)
def test_a_failed_export_leaves_the_previous_file_whole(
    export_dir: Path, format: str, bad_row: dict[str, Any]
) -> None:
    # Given an earlier export of the same id
    first = Path(export(format, [{"name": "old"}])["path"])
    before = first.read_bytes()

    # When a re-export fails after some rows were written
    with pytest.raises((RuntimeError, ValueError)):
        export(format, [{"name": f"row {i}"} for i in range(100)] + [bad_row])

    # Then the earlier file is untouched and no temporary file is left behind
    assert first.read_bytes() == before
    assert os.listdir(export_dir) == [first.name]


def test_the_default_export_dir_is_under_the_temp_dir() -> None:
    import tempfile

    assert exports.export_dir({}) == Path(tempfile.gettempdir()) / "hueyard-exports"
    assert exports.export_dir({"HUEYARD_EXPORT_DIR": "/data/x"}) == Path("/data/x")


# -- analytics --------------------------------------------------------------------------------


def test_a_snapshot_aggregates_every_metric() -> None:
    payload = analytics.AnalyticsSnapshot.model_validate(
        {
            "period": "daily",
            "date": "2025-11-05",
            "metrics": {"sent": [1, 2, 3, 4], "rate": 0.5, "tenths": [0.1] * 10, "delta": [-3, 7]},
        }
    )

    result = analytics.snapshot(payload)

    assert result == {
        "period": "daily",
        "date": "2025-11-05",
        "window": {"start": "2025-11-05", "end": "2025-11-05"},
        "metrics": {
            "delta": {"count": 2, "sum": 4.0, "avg": 2.0, "min": -3.0, "max": 7.0},
            "rate": {"count": 1, "sum": 0.5, "avg": 0.5, "min": 0.5, "max": 0.5},
            "sent": {"count": 4, "sum": 10.0, "avg": 2.5, "min": 1.0, "max": 4.0},
            "tenths": {"count": 10, "sum": 1.0, "avg": 0.1, "min": 0.1, "max": 0.1},
        },
    }
    assert list(result["metrics"]) == ["delta", "rate", "sent", "tenths"]


@pytest.mark.parametrize(
    ("period", "today", "start", "end"),
    [
        ("daily", "2025-11-05", "2025-11-04", "2025-11-04"),
        ("daily", "2025-03-01", "2025-02-28", "2025-02-28"),
        ("weekly", "2025-11-10", "2025-11-03", "2025-11-09"),  # the Monday tick
        ("weekly", "2025-11-12", "2025-11-03", "2025-11-09"),  # run late, on Wednesday
        ("weekly", "2025-01-01", "2024-12-23", "2024-12-29"),
        ("monthly", "2024-03-01", "2024-02-01", "2024-02-29"),
        ("monthly", "2025-01-01", "2024-12-01", "2024-12-31"),
    ],
)
def test_without_a_date_the_window_is_the_last_complete_period(
    period: str, today: str, start: str, end: str
) -> None:
    window = analytics.previous_window(period, datetime.date.fromisoformat(today))  # type: ignore[arg-type]
    assert (window[0].isoformat(), window[1].isoformat()) == (start, end)


@pytest.mark.parametrize(
    ("period", "date", "start", "end"),
    [
        ("daily", "2025-11-05", "2025-11-05", "2025-11-05"),
        ("weekly", "2025-11-05", "2025-11-03", "2025-11-09"),  # a Wednesday
        ("weekly", "2025-11-03", "2025-11-03", "2025-11-09"),  # the Monday
        ("weekly", "2025-11-09", "2025-11-03", "2025-11-09"),  # the Sunday
        ("weekly", "2025-01-01", "2024-12-30", "2025-01-05"),  # across the year
        ("monthly", "2024-02-10", "2024-02-01", "2024-02-29"),  # leap year
        ("monthly", "2025-02-10", "2025-02-01", "2025-02-28"),
        ("monthly", "2025-12-31", "2025-12-01", "2025-12-31"),
    ],
)
def test_the_window_is_the_calendar_period(period: str, date: str, start: str, end: str) -> None:
    payload = analytics.AnalyticsSnapshot.model_validate(
        {"period": period, "date": date, "metrics": {"x": 1}}
    )
    assert analytics.snapshot(payload)["window"] == {"start": start, "end": end}
