"""Huey's option names, and what each one is on hueyard: the one home of the hints that
an enqueue call, ``@handler``, a follow-up and the config give when code or a config
ported from Huey uses one (docs/coming-from-huey.md, "Task options")."""

from __future__ import annotations

__all__ = ["HUEY_OPTIONS", "huey_hint"]

HUEY_OPTIONS: dict[str, str] = {
    "retries": (
        "Huey's retries=N is attempts = N + 1 on hueyard (attempts counts the first run): "
        "attempts in the queue's [queues.<name>] table, or enqueue(..., attempts=N + 1)"
    ),
    "retry_delay": (
        "Huey's retry_delay=S is the queue's backoff = { type = \"fixed\", delay = S } in "
        "its [queues.<name>] table; a handler may also raise RetryTask(delay=S)"
    ),
    "expires": (
        "a job does not expire on hueyard: return early in the handler when the work is "
        "stale, or enqueue with key= and key_ttl= to refuse late duplicates"
    ),
    "context": "a handler reads its own job with framework.current_job()",
    "id": "hueyard makes each job's id; key='...' makes an enqueue idempotent",
    "task_id": "hueyard makes each job's id; key='...' makes an enqueue idempotent",
    "revoke_on_timeout": "cancel a job that ran too long: hueyard cancel QUEUE JOB_ID",
}
"""Huey task and enqueue options hueyard has no option of that name for -> the way."""


def huey_hint(name: str) -> str | None:
    """What Huey's option ``name`` is on hueyard, or None when it is no Huey option."""
    return HUEY_OPTIONS.get(name)
