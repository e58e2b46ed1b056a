"""The ``campaigns`` queue: a broadcast fans out into one ``messages`` job per recipient.

::

    from pipelines.campaigns import run_campaign

    run_campaign.enqueue(
        {"campaignId": "camp-123", "recipients": ["+14155550123", "+447700900123"],
         "content": "Our sale starts today"},
        eta=datetime(2025, 11, 6, 10, 0, tzinfo=UTC),
    )

The campaign's messages are enqueued at ``priority`` (default 8, after the
default 5 of one-to-one messages), so a broadcast never holds up a reply; the
``messages`` queue's rate limit paces the actual sending.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from framework import handler
from pipelines._providers import HttpUrl, Identifier, PhoneNumber
from pipelines.messages import MAX_CONTENT, OutboundMessage, Template, send_message

__all__ = ["MAX_RECIPIENTS", "CampaignJob", "run_campaign"]

logger = logging.getLogger(__name__)

MAX_RECIPIENTS = 100_000
"""Recipients of one campaign job; split larger audiences into several jobs."""


class CampaignJob(BaseModel):
    """One broadcast: the same message to every recipient (duplicates are sent once)."""

    model_config = ConfigDict(extra="forbid")

    campaignId: Identifier
    recipients: Annotated[list[PhoneNumber], Field(min_length=1, max_length=MAX_RECIPIENTS)]
    content: Annotated[str, Field(min_length=1, max_length=MAX_CONTENT)] | None = None
    type: Literal["text", "image", "document", "audio", "video", "template"] = "text"
    media_url: HttpUrl | None = None
    template: Template | None = None
    filename: Annotated[str, Field(min_length=1, max_length=240)] | None = None
    batch_size: Annotated[int, Field(ge=1, le=1000)] = 100
    priority: Annotated[int, Field(ge=1, le=10)] = 8

    @model_validator(mode="after")
    def _messages_are_valid(self) -> Self:
        # Refuse at enqueue what every one of the campaign's messages would refuse later.
        self.message_for(self.recipients[0])
        return self

    def message_for(self, recipient: str) -> OutboundMessage:
        return OutboundMessage(
            to=recipient,
            content=self.content,
            type=self.type,
            media_url=self.media_url,
            template=self.template,
            filename=self.filename,
        )


@handler("campaigns")
def run_campaign(payload: CampaignJob) -> dict[str, Any]:
    """Enqueue one ``messages.send_message`` job per distinct recipient, batch by batch.

    Returns ``{"campaignId", "enqueued", "duplicates", "batches"}``. If Redis
    fails midway the attempt fails and the retry enqueues every recipient
    again: delivery is at-least-once.
    """
    recipients = list(dict.fromkeys(payload.recipients))
    batches = 0
    for start in range(0, len(recipients), payload.batch_size):
        batch = recipients[start : start + payload.batch_size]
        for recipient in batch:
            send_message.enqueue(payload.message_for(recipient), priority=payload.priority)
        batches += 1
        logger.info(
            "campaign %s: batch %d enqueued (%d of %d messages)",
            payload.campaignId,
            batches,
            start + len(batch),
            len(recipients),
        )
    return {
        "campaignId": payload.campaignId,
        "enqueued": len(recipients),
        "duplicates": len(payload.recipients) - len(recipients),
        "batches": batches,
    }
