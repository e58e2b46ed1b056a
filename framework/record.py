"""A job's record: the Redis hash ``{prefix:queue}:job:<id>``, readable with ``HGETALL``.

====================== ==================================================================
field                  what it holds
====================== ==================================================================
``handler``            the handler's stable name, ``<queue>.<handler>`` (``messages.send_message``)
``payload``            the payload, as JSON text
``priority``           options the producer set, and only those: without one, the queue's
``max_attempts``       current config applies (:mod:`framework.policy`). ``max_attempts`` is
``keep_completed``     the ``attempts=`` option (runs in all), ``keep_*`` the per-job retention,
``keep_failed``        ``timeout`` the seconds one run may take
``timeout``
``attempts``           runs started so far (absent: 0; absent beside ``started``: 1, a job
                       that completed at its first run keeps no count)
``stalls``             times its consumer died while running it (absent: 0)
``started``            when the latest run started (epoch ms)
``consumer``           the consumer process that runs it, or ran it and failed (a completed
                       record drops it: that consumer's log names each job it completed)
``token``, ``seq``     while it runs: the claim's token (only its holder may release it), and its
                       enqueue sequence (to put it back at its old place)
``cancel``             while it runs: set when it was cancelled; its consumer stops it
``result``             a completed job's result, as JSON text
``error``              why the latest run failed (a failed job, or one waiting for its retry)
``traceback``          that run's traceback
``progress``           what the handler reported with ``current_job().progress(...)``, as JSON
``parent``             a child's parent, ``<queue>:<id>`` (the job that spawned it waits for it)
``children``           a parent's children, counted as they are linked or report;
``children_completed`` and how many of them completed, and failed (each child once, its
``children_failed``    first outcome); the children themselves are ``<job key>:children``
``follow_up``          while a parent waits for its children: the follow-up to enqueue when it
                       completes (:mod:`framework.chains`)
``then``               the follow-ups its result starts, as JSON (:mod:`framework.chains`)
``follows``            a follow-up's origin, ``<queue>:<id>``: the job whose result started it
====================== ==================================================================

When the job was enqueued is in its id, a time-ordered UUID (:mod:`framework.ids`);
records written before, under random ids, keep it in a ``created`` field (epoch ms).

A job's state is the sorted set that holds its id (:mod:`framework.keys`), and
the score there holds the time that goes with it: a ``delayed`` job's due
time, a finished job's finish time, a running job's lease deadline. Nothing
keeps a second copy of them.

Records written by hueyard 0.1.0 kept the Huey message (``name``, ``data``)
instead of ``handler`` and ``payload``; they still run and still read
(:func:`legacy_message`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from framework.errors import SerializationError
from framework.serializer import MAX_DEPTH, TAG, decode, loads, too_deep

__all__ = ["LONG_FIELDS", "SHORT_FIELDS", "Claim", "claim_from_reply", "legacy_message"]

LONG_FIELDS = ("payload", "result", "progress", "error", "traceback", "data", "then")
"""The fields that hold what a job carries, of any size: a read takes only the start of
each one that is larger than its cap (:mod:`framework.peek`)."""

SHORT_FIELDS = (
    "handler", "name", "key", "consumer", "priority", "max_attempts", "attempts", "stalls",
    "keep_completed", "keep_failed", "timeout", "key_ttl", "created", "started", "finished",
    "parent", "follows", "children", "children_completed", "children_failed",
)  # fmt: skip
"""The fields the read API shows besides: names, numbers and times, short by nature."""


@dataclass(frozen=True, slots=True)
class Claim:
    """A job this process holds: run it, then release it with ``token``."""

    id: str
    token: str
    attempts: int
    """Runs started, this one included."""
    handler: str | None
    payload: bytes | None
    max_attempts: int | None
    """The job's ``attempts=`` option, None when the queue's applies."""
    timeout: float | None
    """The job's ``timeout=`` option, None when the queue's applies."""
    claimed_at: float
    """``time.monotonic()`` when it was claimed."""
    legacy_data: bytes | None = None
    """The Huey message of a record that hueyard 0.1.0 wrote."""
    then: bytes | None = None
    """The follow-ups its result starts (JSON, :mod:`framework.chains`), if it has any."""

    def job(self) -> tuple[str, Any]:
        """``(handler, payload)``: what to run. Raises :class:`SerializationError`."""
        if self.payload is None and self.legacy_data is not None:
            return legacy_message(self.legacy_data)
        if self.handler is None or self.payload is None:
            missing = " and ".join(
                name for name, value in (("handler", self.handler), ("payload", self.payload))
                if value is None
            )  # fmt: skip
            raise SerializationError(f"the job record has no {missing}; it is not a hueyard job")
        return self.handler, loads(self.payload)


def claim_from_reply(reply: list[Any], token: str) -> Claim:
    """The :class:`Claim` of a ``{'job', id, attempts, handler, payload, max_attempts,
    timeout, name, data, then}`` reply of the claim (or release) script."""
    _, job_id, attempts, handler, payload, max_attempts, timeout, name, data, then = reply
    return Claim(
        id=job_id.decode(),
        token=token,
        attempts=int(attempts),
        handler=(handler or name or b"").decode(errors="replace") or None,
        payload=payload,
        max_attempts=_whole(max_attempts),
        timeout=_seconds(timeout),
        claimed_at=time.monotonic(),
        legacy_data=data if handler is None else None,
        then=then or None,
    )


def legacy_message(data: bytes | str) -> tuple[str, Any]:
    """``(handler, payload)`` of the Huey message a hueyard 0.1.0 record kept in ``data``.

    That message was hueyard's tagged JSON of Huey's ``Message`` tuple:
    ``{"__hy": "msg", "v": [id, name, eta, retries, retry_delay, priority,
    {"__hy": "tuple", "v": [payload]}, kwargs, ...]}``.
    """
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError:  # not JSON, or nested past orjson's 1,024 levels
        message = None
    if too_deep(message, MAX_DEPTH):  # decode() recurses: deeper than hueyard wrote
        message = None
    if (
        isinstance(message, dict)
        and message.get(TAG) == "msg"
        and isinstance(message.get("v"), list)
        and len(message["v"]) > 6
    ):
        name, args = message["v"][1], decode(message["v"][6])
        if isinstance(name, str) and isinstance(args, tuple | list) and len(args) == 1:
            return name, args[0]
    head = data[:80] if isinstance(data, str) else data[:80].decode(errors="replace")
    raise SerializationError(
        f"the record's data is not a job message of hueyard 0.1.0 (starts {head!r}); "
        "it can not be run"
    )


def _seconds(value: bytes | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds > 0 else None


def _whole(value: bytes | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None
