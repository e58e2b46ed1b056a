"""The emails queue through the real framework, the real Redis and a real SMTP relay on
127.0.0.1 (tests/smtp_relay.py: aiosmtpd with STARTTLS, implicit TLS and AUTH, and a
throwaway CA made with openssl).

Jobs run the way a worker runs them (``huey.dequeue()`` then ``huey.execute(task)``);
what the relay received is what it recorded.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
import redis

from framework.application import Hueyard
from framework.config import parse_settings
from framework.context import job_context
from framework.errors import PayloadError
from framework.handlers import REGISTRY, HandlerRegistry
from framework.jobs import JobInfo, Jobs
from framework.runtime import reset_app, set_app
from pipelines import _once, _smtp, emails
from tests.conftest import app_toml
from tests.integration.redis_server import free_port
from tests.smtp_relay import PASSWORD, USER, Relay, Security, smtp_relay
from tests.topology import CA, make_ca

# one worker runs the module, so its module-scoped servers start once
pytestmark = pytest.mark.xdist_group("email")

TO = "jane.doe@example.com"
FROM = "Example CRM <crm@example.com>"
EXPORT = {"name": "Ada <Lovelace> & Co", "url": "https://crm.example/e/42?a=1&b=2",
          "expires": "2025-11-12"}  # fmt: skip

QUEUES = """
[queues.emails]
attempts = 5
backoff = { type = "exponential", delay = 2 }
"""


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CA:
    return make_ca(tmp_path_factory.mktemp("smtp-ca"))


def build_app(redis_url: str, extra: str = "") -> Hueyard:
    registry = HandlerRegistry()
    registry.register(REGISTRY.get("emails.send_email"))
    text = app_toml(redis_url, QUEUES + extra, prefix="mail")
    return Hueyard(parse_settings(text, env={}), registry)


@pytest.fixture
def app(redis_conn: redis.Redis, redis_url: str) -> Iterator[Hueyard]:
    app = build_app(redis_url)
    set_app(app)
    yield app
    reset_app()


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch, ca: CA) -> Any:
    """Point the SMTP settings at a relay, through the environment as a deployment would."""
    for variable in (*_smtp.ENVIRONMENT.values(), *_smtp.RENAMED):
        monkeypatch.delenv(variable, raising=False)

    def configure(port: int, security: Security, **overrides: str) -> None:
        settings = {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(port),
            "SMTP_SECURITY": security,
            "SMTP_FROM": FROM,
            "SMTP_TIMEOUT": "5",
            "SMTP_CA_FILE": str(ca.ca_cert),
        }
        if security != "none":
            settings.update(SMTP_USER=USER, SMTP_PASSWORD=PASSWORD)
        settings.update(overrides)
        for name, value in settings.items():
            if value:
                monkeypatch.setenv(name, value)
            else:
                monkeypatch.delenv(name, raising=False)

    return configure


@pytest.fixture
def starttls(ca: CA, configure: Any) -> Iterator[Relay]:
    with smtp_relay(ca, "starttls") as relay:
        configure(relay.port, "starttls")
        yield relay


def run_one(app: Hueyard) -> JobInfo:
    huey = app.queue("emails").huey
    task = huey.dequeue()
    assert task is not None, "nothing to run"
    huey.execute(task)
    info = Jobs(app).get(task.id)
    assert info is not None
    return info


def send_record(app: Hueyard, redis_conn: redis.Redis, job_id: str) -> dict[str, Any] | None:
    raw = redis_conn.get(app.keys.cache(_once.record_key(emails.RECORD_NAME, job_id)))
    return None if raw is None else json.loads(raw)


def parsed(relay: Relay) -> EmailMessage:
    (received,) = relay.received
    message = message_from_bytes(received.data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def export_job(**fields: Any) -> str:
    payload = {"to": TO, "subject": "Your export is ready", "template": "export_ready",
               "variables": EXPORT, **fields}  # fmt: skip
    return emails.send_email.enqueue(payload)


# -- success -----------------------------------------------------------------------------------


def test_a_template_email_goes_over_starttls_with_auth_as_text_and_html(
    starttls: Relay, app: Hueyard, redis_conn: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # Given a relay that requires STARTTLS and AUTH, configured in the environment
    # When a job for the export_ready template runs
    job_id = export_job()
    info = run_one(app)

    # Then the job completed, and the relay got one message, after a login over TLS
    assert info.state == "completed", info.error
    assert starttls.logins == [(USER, True)]
    (received,) = starttls.received
    assert received.login == USER
    assert received.mail_from == "crm@example.com"
    assert received.rcpt_tos == [TO]
    # And its headers say who, to whom, what and when
    message = parsed(starttls)
    assert message["From"] == FROM
    assert message["To"] == TO
    assert message["Subject"] == "Your export is ready"
    assert message["Date"] is not None
    assert message["Message-ID"] == info.result["messageId"]
    assert message["Message-ID"].endswith("@example.com>")
    # And it has a text part (not escaped) and an HTML part (escaped), in that order
    assert message.get_content_type() == "multipart/alternative"
    text, html = (part for part in message.iter_parts() if isinstance(part, EmailMessage))
    assert text.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    assert "Hello Ada <Lovelace> & Co," in text.get_content()
    assert "https://crm.example/e/42?a=1&b=2" in text.get_content()
    assert "<p>Hello Ada &lt;Lovelace&gt; &amp; Co,</p>" in html.get_content()
    assert 'href="https://crm.example/e/42?a=1&amp;b=2"' in html.get_content()
    assert "<Lovelace>" not in html.get_content()
    # And the result says it was sent; the send is recorded for the job's re-runs
    assert info.result == {"sent": True, "dryRun": False, "messageId": message["Message-ID"]}
    record = send_record(app, redis_conn, job_id)
    assert record is not None and record["state"] == "sent"
    assert 0 < redis_conn.ttl(app.keys.cache(f"emails:send:{job_id}")) <= _once.RECORD_TTL
    # And the password is nowhere: not in the job, not in the log; the recipient is masked
    stored = redis_conn.hgetall(app.keys.job("emails", job_id))
    assert all(PASSWORD.encode() not in value for value in stored.values())
    assert PASSWORD not in caplog.text
    assert TO not in caplog.text
    assert "j***@example.com" in caplog.text


def test_a_body_payload_of_0_1_0_is_sent_as_it_is(starttls: Relay, app: Hueyard) -> None:
    emails.send_email.enqueue(
        {"to": TO, "subject": "Your export", "body": "<p>Ready</p>", "html": True}
    )
    assert run_one(app).state == "completed"

    message = parsed(starttls)
    assert message.get_content_type() == "text/html"
    assert message.get_content().strip() == "<p>Ready</p>"  # type: ignore[attr-defined]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_implicit_tls_smtps(ca: CA, configure: Any, app: Hueyard) -> None:
    with smtp_relay(ca, "tls") as relay:
        configure(relay.port, "tls")
        emails.send_email.enqueue({"to": TO, "subject": "Hi", "body": "Hello"})
        info = run_one(app)

    assert info.state == "completed", info.error
    assert relay.logins == [(USER, True)]
    assert parsed(relay).get_content().strip() == "Hello"  # type: ignore[attr-defined]


def test_providers_smtp_table_configures_the_relay(
    ca: CA, configure: Any, redis_conn: redis.Redis, redis_url: str
) -> None:
    # Given the relay's settings in [providers.smtp], the password alone in the environment
    with smtp_relay(ca, "starttls") as relay:
        configure(0, "starttls", SMTP_HOST="", SMTP_PORT="", SMTP_SECURITY="", SMTP_FROM="",
                  SMTP_USER="", SMTP_CA_FILE="")  # fmt: skip
        app = build_app(
            redis_url,
            f"""
            [providers.smtp]
            host = "127.0.0.1"
            port = {relay.port}
            security = "starttls"
            username = "{USER}"
            from = "crm@example.com"
            ca_file = "{ca.ca_cert}"
            """,
        )
        set_app(app)
        try:
            emails.send_email.enqueue({"to": TO, "subject": "Hi", "body": "Hello"})
            info = run_one(app)
        finally:
            reset_app()
            app.close()

    assert info.state == "completed", info.error
    assert relay.received[0].mail_from == "crm@example.com"


def test_without_smtp_settings_the_email_is_an_honest_dry_run(
    configure: Any, app: Hueyard, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    export_job()
    info = run_one(app)

    assert info.state == "completed"
    assert info.result == {"sent": False, "dryRun": True}
    assert "j***@example.com" in caplog.text
    assert "Ada" not in caplog.text


# -- what the relay's answers do to the job ----------------------------------------------------


def test_a_4xx_answer_is_retried_after_the_backoff_and_the_retry_sends(
    starttls: Relay, app: Hueyard, redis_conn: redis.Redis
) -> None:
    starttls.rcpt_answers[TO] = deque(["450 4.2.1 Mailbox busy"])
    job_id = export_job()

    info = run_one(app)

    assert info.state == "delayed"
    assert info.error is not None
    assert "answered 450 4.2.1 Mailbox busy to RCPT TO" in info.error
    assert "retried after the queue's backoff" in info.error
    assert send_record(app, redis_conn, job_id) is None  # not sent: the retry may send
    assert starttls.received == []


def test_a_4xx_answer_to_the_message_is_retried(starttls: Relay, app: Hueyard) -> None:
    starttls.data_answers.append("451 4.3.0 Try again later")
    export_job()

    info = run_one(app)

    assert info.state == "delayed"
    assert info.error is not None and "451 4.3.0 Try again later" in info.error


def test_a_5xx_answer_fails_the_job_at_once(starttls: Relay, app: Hueyard) -> None:
    starttls.rcpt_answers[TO] = deque(["550 5.1.1 Mailbox unavailable"])
    export_job()

    info = run_one(app)

    assert info.state == "failed"
    assert info.attempts == 1
    assert info.error is not None
    assert "550 5.1.1 Mailbox unavailable to RCPT TO" in info.error
    assert "failed at once" in info.error
    assert starttls.received == []


def test_a_wrong_password_fails_at_once_naming_the_settings_not_the_password(
    starttls: Relay, configure: Any, app: Hueyard
) -> None:
    configure(starttls.port, "starttls", SMTP_PASSWORD="wrong-password-12345")
    job_id = export_job()

    info = run_one(app)

    assert info.state == "failed"
    assert info.attempts == 1
    assert info.error is not None
    assert "refused the login: 535" in info.error
    assert "check SMTP_USER and SMTP_PASSWORD" in info.error
    assert "wrong-password-12345" not in (info.error + (info.traceback or ""))
    assert starttls.logins  # smtplib tries each mechanism the relay offers: all refused
    assert all(login == (USER, False) for login in starttls.logins)
    assert starttls.received == []
    assert job_id


def test_a_relay_without_starttls_is_refused_when_starttls_is_asked(
    ca: CA, configure: Any, app: Hueyard
) -> None:
    # Given a relay that offers no STARTTLS, and settings that ask for it
    with smtp_relay(ca, "none", auth=False) as relay:
        configure(relay.port, "starttls")
        export_job()
        info = run_one(app)

    # Then nothing is sent in clear, and the job says what to check
    assert info.state == "failed"
    assert info.error is not None and "does not offer STARTTLS" in info.error
    assert relay.received == []
    assert relay.logins == []


def test_a_relay_that_requires_starttls_refuses_a_plain_session(
    starttls: Relay, configure: Any, app: Hueyard
) -> None:
    configure(starttls.port, "none", SMTP_USER="", SMTP_PASSWORD="")
    export_job()

    info = run_one(app)

    assert info.state == "failed"
    assert info.error is not None
    assert "answered 530" in info.error
    assert "check SMTP_USER, SMTP_PASSWORD and SMTP_SECURITY" in info.error


def test_an_untrusted_certificate_fails_at_once(
    starttls: Relay, configure: Any, app: Hueyard
) -> None:
    configure(starttls.port, "starttls", SMTP_CA_FILE="")
    export_job()

    info = run_one(app)

    assert info.state == "failed"
    assert info.error is not None and "certificate is not trusted" in info.error
    assert starttls.logins == []


def test_a_relay_not_reached_is_retried(configure: Any, app: Hueyard) -> None:
    configure(free_port(), "starttls")
    export_job()

    info = run_one(app)

    assert info.state == "delayed"
    assert info.error is not None and "not reached" in info.error


# -- at most one email per job -----------------------------------------------------------------


def test_a_rerun_after_the_worker_died_past_the_send_sends_nothing(
    starttls: Relay, app: Hueyard, redis_conn: redis.Redis
) -> None:
    # Given a job whose first run sent the email, then its worker died before the job's
    # outcome reached Redis
    job_id = export_job()
    storage = app.queue("emails").storage
    claim = storage.claim()
    assert claim is not None and claim.id == job_id
    payload = emails.EmailMessage(to=TO, subject="Your export is ready",
                                  template="export_ready", variables=EXPORT)  # fmt: skip
    with job_context(storage, claim, max_attempts=5):
        first = emails.send_email(payload)

    # When its lease runs out and the job is recovered and run again
    redis_conn.zadd(storage.q.active, {job_id: 0})
    assert storage.recover() == (1, 0)
    info = run_one(app)

    # Then it completes with the first run's result, and the relay got one email
    assert info.state == "completed"
    assert info.result == {**first, "replayed": True}
    assert len(starttls.received) == 1


def test_a_run_that_began_sending_and_never_recorded_fails_instead_of_sending(
    starttls: Relay, app: Hueyard, redis_conn: redis.Redis
) -> None:
    job_id = export_job()
    key = app.keys.cache(_once.record_key(emails.RECORD_NAME, job_id))
    redis_conn.set(key, json.dumps({"state": "sending", "attempt": 1, "at": 0}), ex=60)

    info = run_one(app)

    assert info.state == "failed"
    assert info.error is not None
    assert f"attempt 1 of job {job_id} began sending this email" in info.error
    assert starttls.received == []


# -- refused at enqueue ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"template": "no_such_template"},
            "unknown email template 'no_such_template'; known templates: export_ready",
        ),
        (
            {"variables": {"name": "Ada"}},
            "needs variables that the payload does not give: expires, url",
        ),
        ({"template": "../secrets"}, "is not a template name"),
        ({"body": "Hi"}, "give either template (with its variables) or body"),
        ({"html": True}, "html is for body"),
        ({"variables": {**EXPORT, "bad-name": 1}}, "variables.bad-name"),
    ],
)
def test_a_bad_template_payload_is_refused_at_enqueue(
    app: Hueyard, fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(PayloadError) as raised:
        export_job(**fields)
    assert message.split("; known", maxsplit=1)[0] in str(raised.value)
    assert app.queue("emails").huey.pending_count() == 0


def test_a_stored_job_whose_template_needs_more_fails_at_once(
    starttls: Relay, app: Hueyard, redis_conn: redis.Redis
) -> None:
    # Given a stored job that no longer gives what its template needs (the template
    # gained a variable in a deploy between enqueue and run)
    job_id = export_job()
    stored = json.loads(redis_conn.hget(app.keys.job("emails", job_id), "payload") or b"{}")
    del stored["variables"]["expires"]
    redis_conn.hset(app.keys.job("emails", job_id), "payload", json.dumps(stored))

    # When it runs, it fails at once, naming the variable, and sends nothing
    info = run_one(app)
    assert info.state == "failed"
    assert info.attempts == 1
    assert (
        info.error is not None
        and "needs variables that the payload does not give: expires" in info.error
    )
    assert starttls.received == []


# -- an address that is more than an address ---------------------------------------------------


@pytest.mark.parametrize("to", [f"{TO}\n", f"{TO}\r\nBcc: x@evil.example", f"{TO}\r"])
def test_an_address_with_a_line_break_is_refused_and_never_reaches_the_relay(
    starttls: Relay, app: Hueyard, redis_conn: redis.Redis, to: str
) -> None:
    # Given an address with a line break: in the To header it would end the headers early
    # (the Subject and the rest became the body, and the job said sent)
    with pytest.raises(PayloadError, match="to: Value error, must be an email address"):
        emails.send_email.enqueue({"to": to, "subject": "Hi", "body": "Hello"})
    assert app.queue("emails").huey.pending_count() == 0

    # And a job stored with one (by an older version) fails at once when it runs
    job_id = emails.send_email.enqueue({"to": TO, "subject": "Hi", "body": "Hello"})
    key = app.keys.job("emails", job_id)
    stored = json.loads(redis_conn.hget(key, "payload") or b"{}")
    redis_conn.hset(key, "payload", json.dumps({**stored, "to": to}))
    info = run_one(app)

    # Then nothing reached the relay
    assert info.state == "failed"
    assert info.attempts == 1
    assert "must be an email address" in (info.error or "")
    assert starttls.received == []
