"""hueyard: declarative background jobs on Huey and Redis.

Public API::

    from framework import handler, enqueue

    @handler("messages")
    def send_message(payload: OutboundMessage) -> dict: ...

    send_message.enqueue({"to": "+1234567890", "content": "Hi"}, priority=1, delay=5)
    enqueue("messages", "send_message", {...}, priority=1)

``framework.app`` is the compiled app that ``huey_consumer framework.app``
runs. It is built on first access, from ``$HUEYARD_CONFIG`` and the discovered
handler modules; importing ``framework`` alone reads no config and opens no
connection.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Unpack

from framework.application import Hueyard
from framework.chains import Chain
from framework.context import JobContext, current_job
from framework.errors import (
    ChainError,
    ConfigError,
    HandlerError,
    HueyardError,
    JobCancelled,
    JobFailedError,
    JobTimeout,
    OptionError,
    PayloadError,
    QueueError,
    RedisUnavailableError,
    ResultTimeoutError,
    SerializationError,
    SpawnError,
    StorageError,
    UnknownHandlerError,
)
from framework.handlers import Handler, handler
from framework.options import EnqueueArgs, EnqueuedIds, EnqueueManyArgs, EnqueueOptions
from framework.runtime import get_app

if TYPE_CHECKING:  # loaded with the app's cache (get_cache), not by every import
    from framework.redis_client import RedisClient

__all__ = [
    # declaring and enqueueing jobs
    "Handler",
    "handler",
    "enqueue",
    "enqueue_many",
    "EnqueueOptions",
    "Chain",
    "result",
    # the app, the running job, the cache
    "Hueyard",
    "get_app",
    "current_job",
    "JobContext",
    "get_cache",
    # errors
    "HueyardError",
    "ConfigError",
    "HandlerError",
    "UnknownHandlerError",
    "QueueError",
    "PayloadError",
    "OptionError",
    "SerializationError",
    "StorageError",
    "RedisUnavailableError",
    "JobFailedError",
    "ResultTimeoutError",
    "ChainError",
    "SpawnError",
    # raised inside a running handler
    "JobTimeout",
    "JobCancelled",
]


def enqueue(
    queue: str, handler: str, payload: Any, *, then: Any = None, **options: Unpack[EnqueueArgs]
) -> str:
    """Enqueue a job for ``handler`` on ``queue`` and return its id.

    ``handler`` is the short name (``"send_message"``) or the stable name
    (``"messages.send_message"``); ``options`` as for ``handler.enqueue``
    (:class:`EnqueueOptions`); ``then`` the follow-up its result starts
    (a handler or a :class:`Chain`).
    """
    return get_app().enqueue(queue, handler, payload, then=then, **options)


def enqueue_many(
    queue: str, handler: str, payloads: Iterable[Any], **options: Unpack[EnqueueManyArgs]
) -> EnqueuedIds:
    """Enqueue one job per payload (all validated first); return their ids in order."""
    return get_app().enqueue_many(queue, handler, payloads, **options)


def result(
    job_id: str,
    *,
    blocking: bool = False,
    timeout: float | None = None,
    backoff: float = 1.15,
    max_delay: float = 1.0,
) -> Any:
    """A job's result, as Huey's ``huey.result(id, blocking=..., timeout=...)`` gives a
    task's: the completed job's result; :class:`JobFailedError` (with its ``.error``)
    for a failed or cancelled one; None while it is unfinished, or with ``blocking``
    a wait of at most ``timeout`` s, then :class:`ResultTimeoutError`."""
    from framework.results import result as read

    return read(
        get_app(), job_id, blocking=blocking, timeout=timeout, backoff=backoff,
        max_delay=max_delay,
    )  # fmt: skip


def get_cache() -> RedisClient:
    """The spec's resilient Redis client with ``get_cached`` and the ``[cache.ttl]`` names."""
    return get_app().cache


def __getattr__(name: str) -> Any:
    # ``framework.app`` is built lazily so that ``from framework import handler``
    # in a handler module needs neither a config file nor Redis.
    if name == "app":
        try:
            return get_app()
        except HueyardError as exc:
            if _read_by_huey_consumer():
                # ``huey_consumer framework.app`` with a config it can not run: its usage
                # error, one line and status 1 (Huey's loader would print hueyard's
                # traceback). A handler module that raised as it was imported keeps the
                # traceback of its own code, above that line.
                cause = exc.__cause__
                if (
                    isinstance(exc, HandlerError)
                    and cause is not None
                    and not isinstance(cause, ModuleNotFoundError | SyntaxError)
                ):
                    traceback.print_exception(type(cause), cause, _own_frames(cause.__traceback__))
                raise SystemExit(f"hueyard: error: {exc}") from None
            raise
    raise AttributeError(f"module 'framework' has no attribute {name!r}")


def _own_frames(tb: TracebackType | None) -> TracebackType | None:
    """``tb`` from the first frame of the user's code: past hueyard's and the import
    machinery's frames that led to it (all of ``tb`` when none is the user's)."""
    skipped = (str(Path(__file__).parent), str(Path(importlib.__file__).parent), "<frozen ")
    first = tb
    while first is not None and first.tb_frame.f_code.co_filename.startswith(skipped):
        first = first.tb_next
    return first or tb


def _read_by_huey_consumer() -> bool:
    """Whether ``huey_consumer``'s loader (its ``load_huey``) is reading ``framework.app``."""
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "load_huey" and Path(code.co_filename).parts[-3:] == (
            "huey", "bin", "huey_consumer.py",
        ):  # fmt: skip
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False
