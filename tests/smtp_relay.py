"""A real SMTP relay on 127.0.0.1 (aiosmtpd), for the email tests.

It speaks STARTTLS, implicit TLS (SMTPS) or plain SMTP, with a throwaway
certificate (tests/topology.py ``make_ca``), and AUTH (PLAIN, LOGIN) checked
against one user. It records every message it accepted (envelope, raw bytes,
the login it came with) and every login attempt; a test scripts other answers
to ``RCPT TO`` (per recipient) and to the end of ``DATA``, in order::

    relay.rcpt_answers["jane@example.com"] = ["450 4.2.1 Mailbox busy"]
    ...
    (received,) = relay.received
    assert received.rcpt_tos == ["jane@example.com"]
"""

from __future__ import annotations

import logging
import ssl
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.integration.redis_server import free_port
from tests.topology import CA

# aiosmtpd logs every line it reads at DEBUG (AUTH included): the tests' log checks are
# about hueyard's lines, so the relay keeps quiet
logging.getLogger("mail.log").setLevel(logging.WARNING)

USER = "relay-user"
PASSWORD = "s3cret-relay-password-do-not-leak"


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    login: str | None


@dataclass
class Relay:
    """What the relay saw, and what it will answer."""

    port: int
    received: list[Received] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)
    rcpt_answers: dict[str, deque[str]] = field(default_factory=dict)
    data_answers: deque[str] = field(default_factory=deque)

    # aiosmtpd handler hooks --------------------------------------------------------------

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        scripted = self.rcpt_answers.get(address)
        if scripted:
            return scripted.popleft()
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_answers:
            return self.data_answers.popleft()
        login = session.auth_data.decode() if isinstance(session.auth_data, bytes) else None
        content = envelope.original_content or b""
        self.received.append(
            Received(str(envelope.mail_from), list(envelope.rcpt_tos), content, login)
        )
        return "250 2.0.0 Ok: queued"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        ok = data.login == USER.encode() and data.password == PASSWORD.encode()
        self.logins.append((data.login.decode(), ok))
        return AuthResult(success=ok, handled=False, auth_data=data.login if ok else None)


Security = Literal["starttls", "tls", "none"]


@contextmanager
def smtp_relay(ca: CA, security: Security, *, auth: bool = True) -> Iterator[Relay]:
    """A relay speaking ``security`` (``none``: plain SMTP, no STARTTLS offered)."""
    relay = Relay(port=free_port())
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(ca.server_cert, ca.server_key)
    options: dict[str, Any] = {}
    if auth:
        options.update(authenticator=relay.authenticate, auth_required=True)
    if security == "starttls":
        options.update(tls_context=context, require_starttls=True, auth_require_tls=True)
    elif security == "tls":
        # aiosmtpd counts only STARTTLS as TLS for auth_require_tls; the whole session
        # is TLS here (its warning about it is filtered by the test)
        options.update(ssl_context=context, auth_require_tls=False)
    else:
        options.update(auth_require_tls=False)
    controller = Controller(
        relay, hostname="127.0.0.1", port=relay.port, server_hostname="localhost", **options
    )
    controller.start()
    try:
        yield relay
    finally:
        controller.stop()
