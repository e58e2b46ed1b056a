"""The ``messages`` queue: one WhatsApp message per job.

The queue's policy (``config/queues.toml``): 3 attempts with exponential
backoff, at most 20 jobs started per minute, priorities 1 (first) to 10::

    from pipelines.messages import OutboundMessage, send_message

    send_message.enqueue(OutboundMessage(to="+14155550123", content="Hello World"))
    send_message.enqueue({"to": "+14155550123", "content": "Urgent"}, priority=1)
    send_message.enqueue({"to": "+14155550123", "type": "template",
                          "template": {"name": "order_update", "language": "en_US"}})

The sender: ``HUEYARD_MESSAGE_SENDER`` when set (``log``, ``whatsapp`` or a
registered one); otherwise ``whatsapp`` (:mod:`pipelines._whatsapp`, the
WhatsApp Cloud API) when its settings are present, else ``log`` (recorded in
the log, not sent: ``{"sent": false, "dryRun": true}``).

Each job sends at most once (:func:`pipelines._once.send_at_most_once`): a re-run of a job whose
send was recorded returns the recorded result; a re-run of one whose send
may have happened without an answer fails instead of sending again.
"""

from __future__ import annotations

import logging
import os
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from framework import current_job, handler
from framework.errors import ConfigError
from framework.settings import Settings
from pipelines._once import RECORD_TTL, record_key, send_at_most_once
from pipelines._providers import (
    MESSAGE_SENDERS,
    HttpUrl,
    MessageSender,
    PhoneNumber,
    SenderConfigError,
    provider_config,
)
from pipelines._whatsapp import MEDIA_TYPES, whatsapp_settings

__all__ = [
    "MAX_CONTENT",
    "SEND_RECORD_TTL",
    "OutboundMessage",
    "Template",
    "select_sender",
    "send_message",
    "send_record_key",
]

logger = logging.getLogger(__name__)

MAX_CONTENT = 4096
"""WhatsApp's limit on the text of one message, in characters."""

SEND_RECORD_TTL = RECORD_TTL
"""Seconds a job's send record is kept: a re-run within them never sends twice."""

SENDER_ENV = "HUEYARD_MESSAGE_SENDER"


class Template(BaseModel):
    """An approved template: its name, its language, and the values of its variables.

    ``components`` go to the API as they are (``[{"type": "body", "parameters":
    [{"type": "text", "text": "Ada"}]}]``); each needs a ``type``.
    """

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,512}$")]
    language: Annotated[str, Field(pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})?$")] = "en_US"
    components: Annotated[list[dict[str, Any]], Field(max_length=20)] = []

    @model_validator(mode="after")
    def _components_have_a_type(self) -> Self:
        for index, component in enumerate(self.components):
            if not isinstance(component.get("type"), str) or not component["type"]:
                raise ValueError(
                    f"components[{index}] needs a 'type' (header, body or button), as in "
                    '{"type": "body", "parameters": [{"type": "text", "text": "Ada"}]}'
                )
        return self


class OutboundMessage(BaseModel):
    """One message to one WhatsApp number.

    - ``text``: ``content`` is the text (required); a ``media_url`` turns on the
      link preview.
    - ``image``, ``document``, ``video``, ``audio``: ``media_url`` is required;
      ``content`` is the caption (not for audio), ``filename`` a document's name.
    - ``template``: ``template`` names it (the WhatsApp sender needs one; older
      payloads without it still validate); a ``media_url`` fills an image header.
    """

    model_config = ConfigDict(extra="forbid")

    to: PhoneNumber
    content: Annotated[str, Field(min_length=1, max_length=MAX_CONTENT)] | None = None
    type: Literal["text", "image", "document", "audio", "video", "template"] = "text"
    media_url: HttpUrl | None = None
    template: Template | None = None
    filename: Annotated[str, Field(min_length=1, max_length=240)] | None = None

    @model_validator(mode="after")
    def _fields_fit_the_type(self) -> Self:
        kind = self.type
        if kind == "text" and self.content is None:
            raise ValueError("a 'text' message needs content (1 to 4096 characters)")
        if kind in MEDIA_TYPES and self.media_url is None:
            raise ValueError(f"an {kind!r} message needs media_url (an http(s) URL of the file)")
        if kind == "audio" and self.content is not None:
            raise ValueError("an 'audio' message has no caption; leave content out")
        if self.template is not None and kind != "template":
            raise ValueError(f"template is for 'template' messages, not {kind!r} ones")
        if self.filename is not None and kind != "document":
            raise ValueError("filename is for 'document' messages only")
        return self


def select_sender() -> tuple[str, MessageSender]:
    """The sender's name and the sender: ``HUEYARD_MESSAGE_SENDER``, else ``whatsapp`` when
    its settings are present, else ``log``. A half-configured WhatsApp sender raises
    :class:`SenderConfigError`; an unknown name ``UnknownProviderError``: both a
    :class:`~framework.errors.ConfigError` that fails the job at once."""
    name = os.environ.get(SENDER_ENV, "").strip()
    if name:
        return name, MESSAGE_SENDERS.chosen(SENDER_ENV, name, _DEFAULT_CHOICE)
    configured = whatsapp_settings(config=provider_config("whatsapp")) is not None
    name = "whatsapp" if configured else "log"
    return name, MESSAGE_SENDERS.get(name)


_DEFAULT_CHOICE = "whatsapp when its settings are present, else log"


SEND_RECORD = "messages:send"
"""A job's send record (:mod:`pipelines._once`): ``<prefix>:cache:messages:send:<id>``."""


def send_record_key(job_id: str) -> str:
    """The cache key (under the app's cache prefix) of one job's send record."""
    return record_key(SEND_RECORD, job_id)


@handler("messages")
def send_message(payload: OutboundMessage) -> dict[str, Any]:
    """Send one message; return ``{"sent", "dryRun", "messageId", "sender"}``.

    ``sent`` is true only when a provider accepted the message (the ``log``
    sender says ``"sent": false, "dryRun": true``). The sender's exceptions
    decide the job's fate (:mod:`pipelines._providers`).
    """
    name, sender = select_sender()
    job = current_job()
    if job is None:  # called directly, outside a job: nothing to deduplicate against
        return _result(name, sender, payload)
    return send_at_most_once(
        job, SEND_RECORD, lambda: _result(name, sender, payload), what="message"
    )


def _result(name: str, sender: MessageSender, payload: OutboundMessage) -> dict[str, Any]:
    receipt = sender.send(payload)
    return {
        "sent": receipt.sent,
        "dryRun": not receipt.sent,
        "messageId": receipt.message_id,
        "sender": name,
    }


@send_message.startup_check
def _check_whatsapp(settings: Settings) -> None:
    """At start-up: WhatsApp settings set by half, or not valid, or a
    ``HUEYARD_MESSAGE_SENDER`` that names no registered sender, stop the app being built
    (producers and consumers alike) instead of failing the first message job."""
    try:
        whatsapp_settings(config=settings.providers.get("whatsapp", {}))
    except SenderConfigError as exc:
        raise ConfigError(str(exc)) from None
    name = os.environ.get(SENDER_ENV, "").strip()
    if name:
        MESSAGE_SENDERS.chosen(SENDER_ENV, name, _DEFAULT_CHOICE)  # a ConfigError if unknown
