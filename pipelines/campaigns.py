"""The ``campaigns`` queue: a broadcast fans out into one ``messages`` job per recipient.

::

    from pipelines.campaigns import run_campaign

    run_campaign.enqueue(
        {"campaignId": "camp-123", "recipients": ["+14155550123", "+447700900123"],
         "content": "Our sale starts today"},
        eta=datetime.now(UTC) + timedelta(hours=2),
    )
    run_campaign.enqueue({"campaignId": "camp-124", "recipients_file": "segment-42.csv",
                          "content": "Our sale starts today"})

Recipients come from the payload (``recipients``) or from a file in the
campaign directory (``recipients_file``, see :mod:`pipelines._recipients`).
They are enqueued ``batch_size`` at a time, one ``enqueue_many`` call per batch,
each message job with the key ``<campaignId>:<phone>`` kept
:data:`KEY_TTL` seconds after the message job finished. So a re-run of the
campaign job (a retry after a crash, an operator's retry, a duplicate enqueue
days later) enqueues only the recipients that have no message job yet and
never messages a contact twice.

The message jobs are the campaign job's children (:mod:`framework.fanin`):
the campaign job completes when every message job has finished, waiting in
``waiting-children`` meanwhile, and its record counts how many completed and
failed (``children``, ``children_completed``, ``children_failed``; the job
page and ``hueyard job`` show them). Its result is the fan-out's summary,
known when the handler returns. A failed message does not fail the campaign.
A re-run of the same campaign job finds the message jobs of its earlier run by
their keys and counts each once; a message job of *another* campaign job with
the same ``campaignId`` (a duplicate enqueue) is not its child.

The campaign's messages are enqueued at ``priority`` (default 8, after the
default 5 of one-to-one messages), so a broadcast never holds up a reply; the
``messages`` queue's rate limit paces the actual sending.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Annotated, Any, Literal, Self

from huey.exceptions import CancelExecution
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from framework import current_job, handler
from framework.options import EnqueueArgs
from pipelines._providers import HttpUrl, Identifier, PhoneNumber
from pipelines._recipients import (
    FILE_NAME,
    Recipient,
    RecipientsFileError,
    Rejection,
    inline_recipients,
    read_recipients_file,
)
from pipelines.messages import MAX_CONTENT, OutboundMessage, Template, send_message

__all__ = ["BATCH_SIZE", "KEY_TTL", "MAX_RECIPIENTS", "CampaignJob", "message_key", "run_campaign"]

logger = logging.getLogger(__name__)

MAX_RECIPIENTS = 100_000
"""Recipients listed in one payload (which is at most 1 MiB: about 50,000 phones
fit); a larger audience comes as a ``recipients_file``."""
BATCH_SIZE = 500
"""Message jobs per ``enqueue_many`` call: one Redis round trip (the storage's batch)."""
KEY_TTL = 30 * 86400
"""Seconds a message job's key stays taken after the job finished (30 days): a re-run
of the campaign within them does not message the contact again."""
MAX_REJECTIONS = 10
"""Rejected rows listed in the result (all are counted)."""
_ANY_PHONE = "+10000000000"
"""Stands for the recipient where the message is checked (or dumped) before one is known."""


def _file_name(value: str) -> str:
    if not FILE_NAME.fullmatch(value):
        raise ValueError(
            "must be the name of a .csv or .jsonl file in the campaign directory "
            "($HUEYARD_CAMPAIGN_DIR), without a directory: 1 to 128 letters, digits, "
            "'_', '.' or '-', e.g. 'segment-42.csv'"
        )
    return value


class CampaignJob(BaseModel):
    """One broadcast: the same message to every recipient (each contact messaged once)."""

    model_config = ConfigDict(extra="forbid")

    campaignId: Identifier
    recipients: (
        Annotated[list[PhoneNumber], Field(min_length=1, max_length=MAX_RECIPIENTS)] | None
    ) = None
    recipients_file: Annotated[str, AfterValidator(_file_name)] | None = None
    content: Annotated[str, Field(min_length=1, max_length=MAX_CONTENT)] | None = None
    type: Literal["text", "image", "document", "audio", "video", "template"] = "text"
    media_url: HttpUrl | None = None
    template: Template | None = None
    filename: Annotated[str, Field(min_length=1, max_length=240)] | None = None
    batch_size: Annotated[int, Field(ge=1, le=1000)] = BATCH_SIZE
    priority: Annotated[int, Field(ge=1, le=10)] = 8

    @model_validator(mode="after")
    def _one_source_and_valid_messages(self) -> Self:
        if (self.recipients is None) == (self.recipients_file is None):
            raise ValueError(
                "give either recipients (a list of E.164 phones) or recipients_file (a "
                ".csv or .jsonl file in $HUEYARD_CAMPAIGN_DIR), not both and not neither"
            )
        # Refuse at enqueue what every one of the campaign's messages would refuse later.
        self.message_for(_ANY_PHONE)
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


def message_key(campaign_id: str, recipient: Recipient) -> str:
    """The job key of the campaign's message to ``recipient``: ``<campaignId>:<phone>``,
    the number messaged, whatever contact id its rows give."""
    return f"{campaign_id}:{recipient.identity}"


@handler("campaigns")
def run_campaign(payload: CampaignJob) -> dict[str, Any]:
    """Enqueue one ``messages.send_message`` job per contact, ``batch_size`` at a time.

    Returns ``{"campaignId", "recipients", "enqueued", "alreadyEnqueued", "rejected",
    "rejections", "batches"}``: ``recipients`` rows read, ``enqueued`` new
    message jobs, ``alreadyEnqueued`` recipients whose key was taken (by an
    earlier run of this campaign, or an earlier row of this one for the same
    contact), ``rejected`` rows of the file that name no valid recipient, the
    first :data:`MAX_REJECTIONS` of them in ``rejections`` (``{"line",
    "reason"}``). Progress is reported after every batch. The message jobs are
    its children: the job completes when they all finished (module docstring).
    """
    if payload.recipients is not None:
        source: Iterable[Recipient | Rejection] = inline_recipients(payload.recipients)
    else:
        assert payload.recipients_file is not None  # the model wants one source
        source = read_recipients_file(payload.recipients_file)
    try:
        return fan_out(payload, source)
    except RecipientsFileError as exc:
        # The file is what it is: a retry would read the same bytes. Fail now, say why.
        raise CancelExecution(str(exc), retry=False) from None


def fan_out(campaign: CampaignJob, source: Iterable[Recipient | Rejection]) -> dict[str, Any]:
    """Enqueue the message jobs of ``campaign`` for the recipients of ``source``."""
    template = campaign.message_for(_ANY_PHONE).model_dump(mode="json")
    counts = {"recipients": 0, "enqueued": 0, "alreadyEnqueued": 0, "rejected": 0, "batches": 0}
    rejections: list[dict[str, Any]] = []
    job = current_job()
    for batch in _batches(source, campaign.batch_size):
        recipients = []
        for item in batch:
            if isinstance(item, Rejection):
                counts["rejected"] += 1
                if len(rejections) < MAX_REJECTIONS:
                    rejections.append({"line": item.line, "reason": item.reason})
            else:
                recipients.append(item)
        counts["recipients"] += len(batch)
        if recipients:
            payloads = [{**template, "to": recipient.phone} for recipient in recipients]
            keys = [message_key(campaign.campaignId, recipient) for recipient in recipients]
            options: EnqueueArgs = {"priority": campaign.priority, "key_ttl": KEY_TTL}
            if job is None:  # called directly, not as a job: nothing waits for them
                ids = send_message.enqueue_many(payloads, keys=keys, **options)
            else:  # its children: the campaign job completes when they all finished
                ids = job.spawn_many(send_message, payloads, keys=keys, **options)
            counts["enqueued"] += len(ids) - len(ids.existing)
            counts["alreadyEnqueued"] += len(ids.existing)
        counts["batches"] += 1
        if job is not None:
            job.progress(dict(counts))
        logger.info(
            "campaign %s: batch %d: %d rows read, %d enqueued, %d already enqueued, %d rejected",
            campaign.campaignId,
            counts["batches"],
            counts["recipients"],
            counts["enqueued"],
            counts["alreadyEnqueued"],
            counts["rejected"],
        )
    return {"campaignId": campaign.campaignId, **counts, "rejections": rejections}


def _batches(
    source: Iterable[Recipient | Rejection], size: int
) -> Iterator[list[Recipient | Rejection]]:
    batch: list[Recipient | Rejection] = []
    for item in source:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
