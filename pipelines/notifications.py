"""The ``notifications`` queue: system notifications and real-time alerts, 3 attempts.

Each notification goes through the channels its severity is routed to
(:mod:`pipelines._notify`, ``[providers.notifications]``):

- ``log``: a line at the severity's level (user and title, never the body);
- ``pubsub``: a JSON message PUBLISHed on ``<prefix>:notifications``, for the
  CRM's real-time layer (fire-and-forget: nobody listening, nobody gets it);
- ``slack``: a post to a Slack incoming webhook (:mod:`pipelines._slack`);
- ``email``: an ``emails.send_email`` job to the alert address.

The queue's default priority is 3, ahead of the other queues' 5::

    from pipelines.notifications import notify

    notify.enqueue({"userId": "u-1", "title": "Import finished",
                    "body": "1,204 contacts imported, 3 rejected.", "severity": "info"})

A channel that fails does not stop the others. The job keeps a record of the
channels done (:func:`channels_key`, :data:`CHANNEL_RECORD_TTL`), so its retry
goes only through the channels not yet done: a retry never posts to Slack again.
Only a channel that worked is recorded: one refused for good (a Slack 4xx) is
tried again when the job is retried (by hand, once the webhook is fixed, or
because another channel asked for a retry). The record is deleted when the job
succeeds.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Annotated, Any

import redis
from pydantic import BaseModel, ConfigDict, Field

import framework
from framework import Hueyard, HueyardError, JobContext, current_job, handler
from framework.settings import Settings
from pipelines import _slack
from pipelines._notify import ALERT_EMAIL_ENV, DEFAULT_PUBSUB_CHANNEL, Routing, Severity, routing
from pipelines._providers import (
    Identifier,
    OneLine,
    SendError,
    SendRefused,
    SendRetryLater,
    mask_email,
    provider_config,
)
from pipelines.emails import EmailMessage, send_email

__all__ = [
    "ALERT_EMAIL_ENV",
    "CHANNEL_RECORD_TTL",
    "Notification",
    "channels_key",
    "notify",
]

logger = logging.getLogger(__name__)

CHANNEL_RECORD_TTL = 7 * 24 * 3600
"""Seconds a job's record of its done channels is kept after its last change, while the
job has not succeeded (it is deleted then): a retry within them skips those channels."""

REFUSED = "failed: "
"""The outcome of a channel that failed for good (a 4xx from Slack) in this run: the job
fails at once unless another channel asks for a retry. Never recorded as done."""
ENQUEUED = "enqueued emails job "
"""The ``email`` channel's outcome: this, then the ``emails.send_email`` job's id."""

_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.CRITICAL}


class Notification(BaseModel):
    """A notification for one user of the CRM."""

    model_config = ConfigDict(extra="forbid")

    userId: Identifier
    title: Annotated[str, Field(min_length=1, max_length=200), OneLine]
    body: Annotated[str, Field(min_length=1, max_length=2000)]
    severity: Severity = "info"


def channels_key(job_id: str) -> str:
    """The cache key (under the app's cache prefix) of one job's done channels (a hash:
    channel -> its outcome)."""
    return f"notifications:channels:{job_id}"


@handler("notifications")
def notify(payload: Notification) -> dict[str, Any]:
    """Go through the severity's channels; return ``{"notified", "severity", "channels",
    "escalation"}``.

    ``channels`` maps each channel to its outcome (``"logged"``, ``"published to 2
    subscribers"``, ``"sent"``, ``"enqueued emails job <id>"``); ``escalation`` is
    the email job's id, or None. When a channel fails, the job fails with every
    channel's outcome in its error: retried (only the failed channels) when one
    may work later, failed at once when none can.
    """
    settings = routing(
        {"notifications": provider_config("notifications"), "slack": provider_config("slack")}
    )
    job = current_job()
    record = _Record(framework.get_app(), job) if job is not None else None
    outcomes = record.read() if record is not None else {}
    retryable: dict[str, SendError] = {}
    for channel in settings.routes[payload.severity]:
        if channel in outcomes:
            continue
        try:
            outcomes[channel] = _CHANNELS[channel](payload, settings, job)
        except SendRefused as exc:
            # failed for good in this run, and not recorded: nothing was delivered, so a
            # retry (by hand, once the webhook is fixed) must go through it again
            outcomes[channel] = f"{REFUSED}{exc}"
            continue
        except SendError as exc:
            retryable[channel] = exc
            continue
        if record is not None:
            record.add(channel, outcomes[channel])
    if retryable or any(outcome.startswith(REFUSED) for outcome in outcomes.values()):
        raise _failure(payload, outcomes, retryable)
    if record is not None:
        record.forget()  # done with every channel: no retry will read it
    email = outcomes.get("email", "")
    return {
        "notified": True,
        "severity": payload.severity,
        "channels": outcomes,
        "escalation": email.removeprefix(ENQUEUED) if email.startswith(ENQUEUED) else None,
    }


@notify.startup_check
def _check_routes(settings: Settings) -> None:
    """At start-up: a bad ``[providers.notifications]`` (or ``[providers.slack]``, or a
    route to a channel whose settings are missing) stops the app being built."""
    routing(settings.providers)


def _failure(
    payload: Notification, outcomes: dict[str, str], retryable: dict[str, SendError]
) -> SendError:
    """Retry after the longest wait a channel asked for, or after the backoff; fail at once
    when every failed channel failed for good."""
    failed = [f"{name}: {exc}" for name, exc in retryable.items()]
    failed += [
        f"{name}: {o.removeprefix(REFUSED)}"
        for name, o in outcomes.items()
        if o.startswith(REFUSED)
    ]
    done = [f"{name}: {o}" for name, o in outcomes.items() if not o.startswith(REFUSED)]
    text = (
        f"{payload.severity} notification {payload.title!r}: {len(failed)} channel(s) failed "
        f"({'; '.join(failed)}); done: {'; '.join(done) or 'none'}"
    )
    if not retryable:
        return SendRefused(text)
    delays = [exc.delay for exc in retryable.values() if isinstance(exc, SendRetryLater)]
    if len(delays) == len(retryable):
        return SendRetryLater(f"{text}; retrying {', '.join(retryable)}", delay=max(delays))
    return SendError(f"{text}; retrying {', '.join(retryable)} after the queue's backoff")


# -- the channels -------------------------------------------------------------------------------


def _log(payload: Notification, settings: Routing, job: JobContext | None) -> str:
    logger.log(
        _LEVELS[payload.severity],
        "%s notification for user %s: %s",
        payload.severity,
        payload.userId,
        payload.title,
    )
    return "logged"


def _pubsub(payload: Notification, settings: Routing, job: JobContext | None) -> str:
    app = framework.get_app()
    channel = settings.pubsub_channel or app.keys.channel(DEFAULT_PUBSUB_CHANNEL)
    message = {
        "userId": payload.userId,
        "severity": payload.severity,
        "title": payload.title,
        "body": payload.body,
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "jobId": job.id if job is not None else None,
    }
    try:
        receivers = int(app.clients.client().publish(channel, json.dumps(message)))
    except redis.RedisError as exc:
        raise SendError(f"PUBLISH to {channel} failed: {type(exc).__name__}: {exc}") from None
    return f"published to {receivers} subscriber{'' if receivers == 1 else 's'}"


def _slack_post(payload: Notification, settings: Routing, job: JobContext | None) -> str:
    assert settings.slack is not None  # routing() refuses a slack route without a URL
    text = f"*[{payload.severity}]* {_slack.escape(payload.title)}\n{_slack.escape(payload.body)}"
    _slack.WEBHOOK.post(settings.slack, text)
    logger.info("%s notification %r posted to Slack", payload.severity, payload.title)
    return "sent"


def _email(payload: Notification, settings: Routing, job: JobContext | None) -> str:
    assert settings.alert_email is not None  # routing() refuses an email route without one
    message = EmailMessage(
        to=settings.alert_email, subject=f"[{payload.severity}] {payload.title}", body=payload.body
    )
    # The key makes a re-run that died before recording this channel find the same job.
    key = f"notification:{job.id}:email" if job is not None else None
    try:
        email_job = send_email.enqueue(
            message, priority=1 if payload.severity == "critical" else 3, key=key
        )
    except (HueyardError, redis.RedisError) as exc:
        raise SendError(f"the emails job was not enqueued: {type(exc).__name__}: {exc}") from None
    logger.info(
        "%s notification escalated to %s (emails job %s)",
        payload.severity,
        mask_email(settings.alert_email),
        email_job,
    )
    return f"{ENQUEUED}{email_job}"


_CHANNELS = {"log": _log, "pubsub": _pubsub, "slack": _slack_post, "email": _email}


class _Record:
    """The channels one job is done with: a Redis hash, channel -> outcome."""

    def __init__(self, app: Hueyard, job: JobContext) -> None:
        self._job = job
        self._key = app.keys.cache(channels_key(job.id))
        self._conn = app.clients.client()

    def read(self) -> dict[str, str]:
        """The channels done. A refusal an older hueyard recorded is not done: nothing was
        delivered, and a retry is what someone asks for after fixing it."""
        raw = self._conn.hgetall(self._key)
        outcomes = {_text(name): _text(outcome) for name, outcome in raw.items()}
        return {name: o for name, o in outcomes.items() if not o.startswith(REFUSED)}

    def forget(self) -> None:
        """Delete the record: the job succeeded. Best effort: it expires anyway."""
        try:
            self._conn.delete(self._key)
        except redis.RedisError as exc:
            logger.warning(
                "job %s: its channel record was not deleted (%s); it expires in %d s",
                self._job.id,
                exc,
                CHANNEL_RECORD_TTL,
            )

    def add(self, channel: str, outcome: str) -> None:
        try:
            with self._conn.pipeline(transaction=True) as pipe:
                pipe.hset(self._key, channel, outcome)
                pipe.expire(self._key, CHANNEL_RECORD_TTL)
                pipe.execute()
        except redis.RedisError as exc:
            # Done but not recorded: a retry would go through this channel again.
            logger.warning(
                "job %s: channel %s done but not recorded (%s): a retry repeats it",
                self._job.id,
                channel,
                exc,
            )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
