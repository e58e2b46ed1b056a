"""Every error hueyard raises, in one tree.

::

    HueyardError
     ├── ConfigError            config/queues.toml or the environment is wrong
     ├── HandlerError           a handler is declared or discovered wrongly
     │    └── UnknownHandlerError   a producer names a handler that does not exist
     ├── QueueError             a producer or consumer names a queue that does not exist
     ├── PayloadError           a payload does not validate, or is not JSON
     │    └── StoredPayloadError    a stored payload no longer validates when its job runs
     ├── OptionError            an enqueue option (priority, delay, attempts) is out of range
     ├── ChainError             a chain of follow-ups is declared wrongly, or a result can not
     │                          start its follow-up
     ├── SpawnError             a job can not spawn children (outside a job, too many)
     ├── JobActionError         a read/act call does not apply (unknown state, active job)
     ├── SerializationError     data in Redis is not what hueyard wrote
     ├── StorageError           Redis answered with an error (a key of the wrong type, ...)
     │    ├── RedisUnavailableError  Redis did not answer after every reconnection try
     │    ├── NotReplicatedError     stored, but not confirmed by wait_replicas replicas
     │    ├── ReadOnlyReplicaError   Redis is a read-only replica: it refused a write
     │    └── WrongKeyError          a key holds another type than hueyard keeps there
     ├── JobFailedError         the job whose result was asked for failed (its .error)
     ├── ResultTimeoutError     a blocking wait for a result ran out (also Huey's ResultTimeout)
     ├── DashboardError         the dashboard can not start (credentials in production)
     └── JobTimeout             raised in a thread worker's handler past its timeout
                                (also a Huey ``TaskTimeout``)

Every message says where the problem is (file, table, field, module, value)
and what would fix it. No message ever contains a Redis password.

:class:`JobTimeout` and :class:`JobCancelled` are raised *into a running
handler* by the consumer, not by a call. ``JobCancelled`` stands outside the
tree on purpose: it is a ``BaseException``, like ``asyncio.CancelledError``, so
that a handler's ``except Exception`` does not swallow a cancel.
"""

from __future__ import annotations

from huey.exceptions import CancelExecution, ResultTimeout, TaskException, TaskTimeout

__all__ = [
    "JobCancelled",
    "JobTimeout",
    "ChainError",
    "ConfigError",
    "DashboardError",
    "HandlerError",
    "HueyardError",
    "JobActionError",
    "JobFailedError",
    "NotReplicatedError",
    "OptionError",
    "PayloadError",
    "QueueError",
    "ReadOnlyReplicaError",
    "RedisUnavailableError",
    "ResultTimeoutError",
    "SerializationError",
    "SpawnError",
    "StorageError",
    "StoredPayloadError",
    "UnknownHandlerError",
    "WrongKeyError",
]


class HueyardError(Exception):
    """Base class of every error hueyard raises on purpose."""


class ConfigError(HueyardError):
    """The configuration file or an environment variable is invalid."""


class HandlerError(HueyardError):
    """A handler is declared wrongly: unknown queue, duplicate name, bad signature."""


class UnknownHandlerError(HandlerError):
    """A producer asked for a handler that is not registered."""


class QueueError(HueyardError):
    """A queue name that the configuration does not declare."""


class PayloadError(HueyardError):
    """A payload that does not validate against its handler's model, or is not JSON."""


class StoredPayloadError(PayloadError, CancelExecution):  # type: ignore[misc]
    """A stored payload that no longer validates against its handler's model, at run time.

    Also a Huey ``CancelExecution(retry=False)``: the job fails at once, never
    retried (the same payload would fail again). Its message is the job's error,
    ``payload does not validate against OutboundMessage: to: Field required``,
    built without the input values.
    """

    def __init__(self, message: str) -> None:
        CancelExecution.__init__(self, message, retry=False)


class OptionError(HueyardError):
    """An enqueue option is out of range: priority, delay, eta or attempts."""


class ChainError(HueyardError):
    """A chain of follow-ups is declared wrongly (too long, too large, an option a
    follow-up can not take, a fixed payload without ``field=``), or a job's result can
    not start its follow-up (it does not validate as its payload): the job then fails,
    not retried."""


class SpawnError(HueyardError):
    """A job can not spawn children: called outside a running job, or past
    :data:`~framework.defaults.MAX_CHILDREN` children."""


class JobActionError(HueyardError):
    """A read/act call that does not apply: an unknown state, a bad page, an active job."""


class SerializationError(HueyardError):
    """Data read from Redis is not what hueyard wrote (garbage, or pickle)."""


class StorageError(HueyardError):
    """Redis answered a storage call with an error: a key of the wrong type, a script error.

    ``stored`` holds the ids of the jobs an enqueue of several batches did store
    before it failed (empty when it stored none), so a caller can tell them apart.
    """

    def __init__(self, message: str = "", *, stored: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.stored = stored


class RedisUnavailableError(StorageError):
    """Redis did not answer, even after the configured reconnection attempts."""


class NotReplicatedError(StorageError):
    """An enqueue was stored, but fewer replicas than ``[redis] wait_replicas`` confirmed
    it in time: a failover now could lose it. ``stored`` holds its ids."""

    def __init__(self, message: str, stored: tuple[str, ...]) -> None:
        super().__init__(message, stored=stored)


class ReadOnlyReplicaError(StorageError):
    """Redis answered ``READONLY``: the URL names a replica, and jobs need the primary."""


class WrongKeyError(StorageError):
    """A key holds another type than hueyard keeps there (planted by something else);
    ``key`` names it, the message says the fix."""

    def __init__(self, message: str, *, key: str) -> None:
        super().__init__(message)
        self.key = key


class JobFailedError(HueyardError, TaskException):  # type: ignore[misc]
    """The job whose result was asked for failed (or was cancelled); ``error`` is its
    error, secrets masked.

    Also Huey's ``TaskException`` (``.metadata`` has ``task_id`` and ``error``), so code
    ported from Huey that catches it from ``huey.result()`` catches this one.
    """

    def __init__(self, message: str, *, job_id: str, error: str | None) -> None:
        TaskException.__init__(self, {"task_id": job_id, "error": error}, message)
        self.job_id = job_id
        self.error = error

    def __str__(self) -> str:
        return str(self.args[0])


class ResultTimeoutError(HueyardError, ResultTimeout):  # type: ignore[misc]
    """A blocking wait for a job's result ran out of time; also Huey's ``ResultTimeout``."""


class JobTimeout(HueyardError, TaskTimeout):  # type: ignore[misc]
    """Raised in a thread worker's handler when its job runs past its timeout.

    Also a subclass of Huey's ``TaskTimeout``, so code that handles Huey's
    timeout handles this one: the attempt fails ("timed out after N s") and is retried
    while attempts remain.
    """


class JobCancelled(BaseException):
    """Raised in a handler whose job was cancelled (``hueyard cancel``, the dashboard).

    A ``BaseException``, like ``asyncio.CancelledError``: an ``except Exception``
    in a handler does not swallow it. The job fails as "cancelled" and is never
    retried by itself.
    """


class DashboardError(HueyardError):
    """The dashboard refuses to start: missing or default credentials in production."""
