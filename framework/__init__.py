"""hueyard: declarative background jobs on Huey and Redis.

Public API::

    from framework import handler, enqueue

    @handler("messages")
    def send_message(payload: OutboundMessage) -> dict: ...

    send_message.enqueue({"to": "+1234567890", "content": "Hi"}, priority=1, delay=5)
    enqueue("messages", "send_message", {...})

``framework.app`` is the compiled app that ``huey_consumer framework.app``
runs. It is built on first access, from ``$HUEYARD_CONFIG`` and the discovered
handler modules; importing ``framework`` alone reads no config and opens no
connection.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from framework.errors import (
    ConfigError,
    HandlerError,
    HueyardError,
    OptionError,
    PayloadError,
    QueueError,
    RedisUnavailableError,
    SerializationError,
    UnknownHandlerError,
)
from framework.handlers import Handler, handler

if TYPE_CHECKING:
    from framework.application import Hueyard
    from framework.execution import JobContext
    from framework.redis_client import RedisClient

__all__ = [
    # declaring and enqueueing jobs
    "Handler",
    "enqueue",
    "get_app",
    "get_cache",
    "current_job",
    "handler",
    # errors
    "ConfigError",
    "HandlerError",
    "HueyardError",
    "OptionError",
    "PayloadError",
    "QueueError",
    "RedisUnavailableError",
    "SerializationError",
    "UnknownHandlerError",
]


def get_app() -> Hueyard:
    """The process's compiled app (built on first use)."""
    from framework.application import get_app as _get_app

    return _get_app()


def current_job() -> JobContext | None:
    """The job this thread is running (id, queue, attempt; ``.progress()``, ``.log()``)."""
    from framework.execution import current_job as _current_job

    return _current_job()


def get_cache() -> RedisClient:
    """The spec's resilient Redis client with ``get_cached`` and the ``[cache.ttl]`` names."""
    return get_app().cache


def enqueue(
    queue: str,
    handler_name: str,
    payload: Any,
    *,
    priority: int | None = None,
    delay: float | datetime.timedelta | None = None,
    eta: datetime.datetime | None = None,
    attempts: int | None = None,
) -> str:
    """Enqueue a job for ``handler_name`` on ``queue`` and return its id.

    ``handler_name`` is the short name (``"send_message"``) or the stable name
    (``"messages.send_message"``).
    """
    return get_app().enqueue(
        handler_name,
        payload,
        queue=queue,
        priority=priority,
        delay=delay,
        eta=eta,
        attempts=attempts,
    )


def __getattr__(name: str) -> Any:
    # ``framework.app`` is built lazily so that ``from framework import handler``
    # in a handler module needs neither a config file nor Redis.
    if name == "app":
        return get_app()
    raise AttributeError(f"module 'framework' has no attribute {name!r}")
