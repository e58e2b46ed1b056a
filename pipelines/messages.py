"""The ``messages`` queue: one WhatsApp message per job.

The queue's policy (``config/queues.toml``): 3 attempts with exponential
backoff, at most 20 jobs started per minute, priorities 1 (first) to 10::

    from pipelines.messages import OutboundMessage, send_message

    send_message.enqueue(OutboundMessage(to="+14155550123", content="Hello World"))
    send_message.enqueue({"to": "+14155550123", "content": "Urgent"}, priority=1)

The message goes out through the sender named by ``HUEYARD_MESSAGE_SENDER``
(default ``log``: recorded in the log, not sent; see :mod:`pipelines._providers`).
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from framework import handler
from pipelines._providers import MESSAGE_SENDERS, HttpUrl, PhoneNumber

__all__ = ["MAX_CONTENT", "OutboundMessage", "send_message"]

MAX_CONTENT = 4096
"""WhatsApp's limit on the text of one message, in characters."""

SENDER_ENV = "HUEYARD_MESSAGE_SENDER"
DEFAULT_SENDER = "log"


class OutboundMessage(BaseModel):
    """One message to one WhatsApp number.

    ``image`` messages need ``media_url``; ``text`` and ``template`` messages
    may carry one (a header image, a preview).
    """

    model_config = ConfigDict(extra="forbid")

    to: PhoneNumber
    content: Annotated[str, Field(min_length=1, max_length=MAX_CONTENT)]
    type: Literal["text", "image", "template"] = "text"
    media_url: HttpUrl | None = None

    @model_validator(mode="after")
    def _image_needs_media(self) -> Self:
        if self.type == "image" and self.media_url is None:
            raise ValueError("an 'image' message needs media_url (an http(s) URL of the image)")
        return self


@handler("messages")
def send_message(payload: OutboundMessage) -> dict[str, Any]:
    """Send one message; return ``{"sent": True, "messageId": ..., "sender": ...}``.

    A sender error fails the attempt, so the queue's retries apply. Delivery is
    at-least-once: a retried job may send twice.
    """
    sender_name = os.environ.get(SENDER_ENV) or DEFAULT_SENDER
    sender = MESSAGE_SENDERS.get(sender_name)
    message_id = sender.send(
        payload.to, payload.content, message_type=payload.type, media_url=payload.media_url
    )
    return {"sent": True, "messageId": message_id, "sender": sender_name}
