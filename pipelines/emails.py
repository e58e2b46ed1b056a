"""The ``emails`` queue: transactional emails and notifications, 5 attempts.

::

    from pipelines.emails import send_email

    send_email.enqueue({"to": "jane@example.com", "subject": "Your export is ready",
                        "body": "<p>Download it here.</p>", "html": True})

Environment:

- ``HUEYARD_SMTP_HOST``: the SMTP relay. Unset: dry-run, nothing is sent.
- ``HUEYARD_SMTP_PORT``: its port (default 25).
- ``HUEYARD_SMTP_FROM``: the sender address (default ``hueyard@localhost``).
"""

from __future__ import annotations

import logging
import os
import smtplib
from collections.abc import Mapping
from email.message import EmailMessage as MIMEMessage
from email.utils import make_msgid
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from framework import handler
from pipelines._providers import EmailAddress, OneLine, mask_email

__all__ = ["SMTP_TIMEOUT", "EmailMessage", "send_email", "smtp_settings"]

logger = logging.getLogger(__name__)

SMTP_TIMEOUT = 10.0
"""Seconds to connect to the relay and for each of its answers."""

DEFAULT_PORT = 25
DEFAULT_SENDER = "hueyard@localhost"


class EmailMessage(BaseModel):
    """One email to one recipient; ``html`` says whether ``body`` is HTML or plain text."""

    model_config = ConfigDict(extra="forbid")

    to: EmailAddress
    subject: Annotated[str, Field(min_length=1, max_length=998), OneLine]
    body: Annotated[str, Field(max_length=1_000_000)]
    html: bool = False


def smtp_settings(env: Mapping[str, str] | None = None) -> tuple[str, int, str] | None:
    """``(host, port, sender)`` from the environment, or None for dry-run."""
    env = os.environ if env is None else env
    host = env.get("HUEYARD_SMTP_HOST", "").strip()
    if not host:
        return None
    raw_port = env.get("HUEYARD_SMTP_PORT", "").strip() or str(DEFAULT_PORT)
    if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
        raise ValueError(f"HUEYARD_SMTP_PORT={raw_port!r} is not a port; use 1 to 65535, e.g. 25")
    sender = env.get("HUEYARD_SMTP_FROM", "").strip() or DEFAULT_SENDER
    return host, int(raw_port), sender


@handler("emails")
def send_email(payload: EmailMessage) -> dict[str, Any]:
    """Send through the SMTP relay; return ``{"delivered", "dryRun"}`` (and ``messageId``).

    Without ``HUEYARD_SMTP_HOST`` the email is logged (recipient masked, never
    the body) and ``{"delivered": False, "dryRun": True}`` is returned. An SMTP
    error fails the attempt, so the queue's retries apply.
    """
    settings = smtp_settings()
    if settings is None:
        logger.info(
            "dry-run: email to %s (%d characters) not sent; set HUEYARD_SMTP_HOST to send",
            mask_email(payload.to),
            len(payload.body),
        )
        return {"delivered": False, "dryRun": True}
    host, port, sender = settings
    message = MIMEMessage()
    message["From"] = sender
    message["To"] = payload.to
    message["Subject"] = payload.subject
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message.set_content(payload.body, subtype="html" if payload.html else "plain")
    with smtplib.SMTP(host, port, timeout=SMTP_TIMEOUT) as smtp:
        smtp.send_message(message)
    logger.info(
        "email %s to %s sent via %s:%d", message["Message-ID"], mask_email(payload.to), host, port
    )
    return {"delivered": True, "dryRun": False, "messageId": message["Message-ID"]}
