"""The ``notifications`` queue: system notifications and real-time alerts, 3 attempts.

A notification is logged at the level of its severity (``info``,
``warning``, ``critical``; the title, never the body). A ``critical`` one is
also escalated by email when ``HUEYARD_ALERT_EMAIL`` names an address: an
``emails.send_email`` job is enqueued for it. The queue's default priority is
3, ahead of the other queues' 5.

::

    from pipelines.notifications import notify

    notify.enqueue({"userId": "u-1", "title": "Import finished",
                    "body": "1,204 contacts imported, 3 rejected.", "severity": "info"})
"""

from __future__ import annotations

import logging
import os
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from framework import handler
from pipelines._providers import Identifier, OneLine, mask_email
from pipelines.emails import EmailMessage, send_email

__all__ = ["ALERT_EMAIL_ENV", "Notification", "notify"]

logger = logging.getLogger(__name__)

ALERT_EMAIL_ENV = "HUEYARD_ALERT_EMAIL"
_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.CRITICAL}


class Notification(BaseModel):
    """A notification for one user of the CRM."""

    model_config = ConfigDict(extra="forbid")

    userId: Identifier
    title: Annotated[str, Field(min_length=1, max_length=200), OneLine]
    body: Annotated[str, Field(min_length=1, max_length=2000)]
    severity: Literal["info", "warning", "critical"] = "info"


@handler("notifications")
def notify(payload: Notification) -> dict[str, Any]:
    """Log it; escalate a critical one. Return ``{"notified", "severity", "escalation"}``.

    ``escalation`` is the id of the ``emails.send_email`` job, or None.
    """
    logger.log(
        _LEVELS[payload.severity],
        "notification for user %s: %s",
        payload.userId,
        payload.title,
    )
    escalation: str | None = None
    alert_to = os.environ.get(ALERT_EMAIL_ENV, "").strip()
    if payload.severity == "critical" and alert_to:
        escalation = send_email.enqueue(
            EmailMessage(to=alert_to, subject=f"[critical] {payload.title}", body=payload.body),
            priority=1,
        )
        logger.info("critical notification escalated to %s", mask_email(alert_to))
    return {"notified": True, "severity": payload.severity, "escalation": escalation}
