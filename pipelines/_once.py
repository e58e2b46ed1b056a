"""At most one send per job: a record per job id in Redis, taken before the send.

For every handler whose provider has no idempotency key: WhatsApp messages
(docs/pipelines.md, "At most one message per job") and emails::

    result = send_at_most_once(job, "emails:send", lambda: deliver(...), what="email")

The record (``<prefix>:cache:<name>:<job id>``, kept :data:`RECORD_TTL`
seconds) is taken with ``SET NX`` (state ``sending``) before ``send`` runs and
holds its result after. A later run of the job finds it and returns the
recorded result (``"replayed": true``), or fails at once
(:class:`SendOutcomeUnknown`) when the earlier run never recorded how its send
ended. A send that certainly failed (any exception but
:class:`SendOutcomeUnknown` and a job timeout) drops the record, so the retry sends.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import redis
from huey.exceptions import TaskTimeout

from framework import JobContext
from pipelines._providers import SendOutcomeUnknown

__all__ = ["RECORD_TTL", "record_key", "send_at_most_once"]

logger = logging.getLogger(__name__)

RECORD_TTL = 7 * 24 * 3600
"""Seconds a job's send record is kept: a re-run within them never sends twice."""


def record_key(name: str, job_id: str) -> str:
    """The cache key (under the app's cache prefix) of one job's send record."""
    return f"{name}:{job_id}"


def send_at_most_once(
    job: JobContext, name: str, send: Callable[[], dict[str, Any]], *, what: str
) -> dict[str, Any]:
    """``send()``'s result for ``job``, sending only if no run of the job did (or may have).

    ``name`` names the record (``emails:send``); ``what`` the thing sent, in errors.
    """
    import framework

    app = framework.get_app()
    conn = app.clients.client()
    key = app.keys.cache(record_key(name, job.id))
    sending = {"state": "sending", "attempt": job.attempt, "at": round(time.time(), 3)}
    if not conn.set(key, json.dumps(sending), nx=True, ex=RECORD_TTL):
        return _earlier_run(job, conn.get(key), what)
    try:
        result = send()
    except (SendOutcomeUnknown, TaskTimeout):
        raise  # the record stays "sending": no run of this job sends again
    except Exception:
        _drop(conn, key, job.id)
        raise
    done = {"state": "sent", "result": result, "at": round(time.time(), 3)}
    try:
        conn.set(key, json.dumps(done), ex=RECORD_TTL)
    except redis.RedisError as exc:
        # Sent, so the job must complete: a retry would find "sending" and fail.
        logger.warning("job %s: %s sent, record not kept: %s", job.id, what, exc)
    return result


def _earlier_run(job: JobContext, raw: bytes | str | None, what: str) -> dict[str, Any]:
    try:
        record = json.loads(raw) if raw is not None else {}
    except ValueError:
        record = {}
    if record.get("state") == "sent" and isinstance(record.get("result"), dict):
        logger.info("job %s: %s already sent by an earlier run, not sent again", job.id, what)
        return {**record["result"], "replayed": True}
    began = record.get("at")
    when = (
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(began))
        if isinstance(began, int | float)
        else "an unknown time"
    )
    raise SendOutcomeUnknown(
        f"attempt {record.get('attempt', '?')} of job {job.id} began sending this {what} at "
        f"{when} and did not record how it ended (its worker stopped, or the answer was lost); "
        f"the {what} may have been sent, so it is not sent again. Check, then enqueue a new "
        "job if it is missing"
    )


def _drop(conn: redis.Redis, key: str, job_id: str) -> None:
    try:
        conn.delete(key)
    except redis.RedisError as exc:
        logger.warning("job %s: send record %s not dropped: %s", job_id, key, exc)
