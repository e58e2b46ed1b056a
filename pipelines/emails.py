"""The ``emails`` queue: transactional emails and notifications, 5 attempts.

::

    from pipelines.emails import send_email

    send_email.enqueue({"to": "jane@example.com", "subject": "Your export is ready",
                        "template": "export_ready",
                        "variables": {"name": "Jane", "url": "https://crm.example/e/42",
                                      "expires": "2025-11-12"}})
    send_email.enqueue({"to": "jane@example.com", "subject": "Hi", "body": "<p>Hi</p>",
                        "html": True})

A ``template`` names ``pipelines/templates/email/<name>.txt`` and/or ``.html``
(:mod:`pipelines._email_templates`); an unknown template or a missing variable
is refused at enqueue. ``body`` (with ``html``) is the 0.1.0 payload, sent as
it is. The relay and its settings: :mod:`pipelines._smtp` (``SMTP_HOST``...);
without ``SMTP_HOST`` the email is a dry run: ``{"sent": false, "dryRun": true}``.

Each job sends at most once (:mod:`pipelines._once`).
"""

from __future__ import annotations

import email.utils
import logging
from email.message import EmailMessage as MIMEMessage
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from framework import current_job, handler
from pipelines._email_templates import Parts, render
from pipelines._once import send_at_most_once
from pipelines._providers import EmailAddress, OneLine, mask_email, provider_config
from pipelines._smtp import SmtpSettings, deliver, smtp_settings

__all__ = ["RECORD_NAME", "EmailMessage", "build_message", "send_email"]

logger = logging.getLogger(__name__)

RECORD_NAME = "emails:send"
"""The send records' cache key prefix: ``<prefix>:cache:emails:send:<job id>``."""

MAX_VARIABLES = 100

VariableName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]


class EmailMessage(BaseModel):
    """One email to one recipient: a ``template`` with its ``variables``, or a ``body``
    (``html`` says whether it is HTML or plain text)."""

    model_config = ConfigDict(extra="forbid")

    to: EmailAddress
    subject: Annotated[str, Field(min_length=1, max_length=998), OneLine]
    body: Annotated[str, Field(max_length=1_000_000)] | None = None
    html: bool = False
    template: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    variables: Annotated[dict[VariableName, Any], Field(max_length=MAX_VARIABLES)] = {}

    _parts: Parts | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.body is None) == (self.template is None):
            raise ValueError(
                "give either template (with its variables) or body (with html), not both "
                "and not neither"
            )
        if self.template is None:
            if self.variables:
                raise ValueError("variables are for a template; a body is sent as it is")
            return self
        if self.html:
            raise ValueError("html is for body; a template's parts are its .txt and .html files")
        # Rendered here, so an unknown template or a missing variable is refused at
        # enqueue (and, for a template changed since, fails the job at once in the worker).
        self._parts = render(self.template, self.variables)
        return self

    @model_serializer(mode="wrap")
    def _without_unused(self, serialize: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Only the fields of the email's kind: a body email is stored as in 0.1.0
        data: dict[str, Any] = serialize(self)
        unused = ("template", "variables") if self.template is None else ("body", "html")
        for field in unused:
            data.pop(field, None)
        return data

    def parts(self) -> Parts:
        """The email's text and HTML parts."""
        if self._parts is not None:
            return self._parts
        if self.template is not None:
            return render(self.template, self.variables)
        body = self.body or ""
        return Parts(text=None, html=body) if self.html else Parts(text=body, html=None)


def build_message(payload: EmailMessage, sender: str) -> MIMEMessage:
    """The MIME message: ``multipart/alternative`` (text, then HTML) when both parts
    exist, else the one part; From, To, Subject, Date and a Message-ID on the
    sender's domain."""
    message = MIMEMessage()
    message["From"] = sender
    message["To"] = payload.to
    message["Subject"] = payload.subject
    message["Date"] = email.utils.formatdate(usegmt=True)
    domain = email.utils.parseaddr(sender)[1].rpartition("@")[2]
    message["Message-ID"] = email.utils.make_msgid(domain=domain or None)
    parts = payload.parts()
    if parts.text is not None:
        message.set_content(parts.text)
        if parts.html is not None:
            message.add_alternative(parts.html, subtype="html")
    else:
        message.set_content(parts.html or "", subtype="html")
    return message


@handler("emails")
def send_email(payload: EmailMessage) -> dict[str, Any]:
    """Send through the SMTP relay; return ``{"sent", "dryRun", "messageId"}``.

    Without ``SMTP_HOST`` (nor ``host`` in ``[providers.smtp]``) nothing is sent:
    the email is logged (recipient masked, never the body) and
    ``{"sent": False, "dryRun": True}`` is returned. The relay's answers decide
    the job's fate (:mod:`pipelines._smtp`).
    """
    settings = smtp_settings(config=provider_config("smtp"))
    if settings is None:
        logger.info(
            "dry run: email %sto %s not sent; set SMTP_HOST (and SMTP_FROM) to send",
            f"{payload.template!r} " if payload.template else "",
            mask_email(payload.to),
        )
        return {"sent": False, "dryRun": True}
    job = current_job()
    if job is None:  # called directly, outside a job: nothing to deduplicate against
        return _send(settings, payload)
    return send_at_most_once(job, RECORD_NAME, lambda: _send(settings, payload), what="email")


def _send(settings: SmtpSettings, payload: EmailMessage) -> dict[str, Any]:
    message = build_message(payload, settings.sender)
    deliver(settings, message, payload.to)
    logger.info(
        "email %s to %s accepted by %s", message["Message-ID"], mask_email(payload.to),
        settings.where,
    )  # fmt: skip
    return {"sent": True, "dryRun": False, "messageId": message["Message-ID"]}
