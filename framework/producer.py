"""Enqueueing: validate once, encode once, store in one round trip.

Every enqueue path ends here: ``handler.enqueue``, ``framework.enqueue``,
``Hueyard.enqueue`` (and their ``enqueue_many``) and ``hueyard enqueue``. The
options become one :class:`~framework.options.EnqueueOptions`; the payload
is validated against the handler's model and encoded to JSON text once; the
storage writes the job records in one atomic script. Nothing is stored when
anything is wrong, and the error says what.

Huey's ``enqueued`` signal (and ``scheduled`` for a delayed job) is sent by the
queue's Huey for each job stored, when a receiver listens for it; otherwise an
enqueue builds no Huey task. In the app's test mode (``app.immediate = True``)
the jobs just stored then run, here and now, before the call returns
(:mod:`framework.immediate`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, Unpack, cast

import redis
from redis.exceptions import InvalidResponse

from framework.chains import encode_then
from framework.connection import connection_failure
from framework.errors import (
    ChainError,
    HueyardError,
    OptionError,
    PayloadError,
    QueueError,
    RedisUnavailableError,
    StorageError,
    UnknownHandlerError,
)
from framework.execution import QueueHuey
from framework.handlers import HandlerRegistry, HandlerSpec
from framework.options import (
    EnqueueArgs,
    EnqueuedIds,
    EnqueueManyArgs,
    EnqueueOptions,
    check_key,
)
from framework.storage import EnqueueFailed, JobStorage

__all__ = ["Producer", "Runner"]


class Runner(Protocol):
    """Runs jobs as soon as they are stored (the test mode, :mod:`framework.immediate`)."""

    def __call__(self, queue: str, ids: EnqueuedIds, options: EnqueueOptions) -> None: ...


class Producer:
    """Enqueues jobs of a compiled app: ``producer.enqueue(queue, handler, payload, **options)``.

    ``handler`` is the short name (``send_message``) or the stable name
    (``messages.send_message``). ``storages`` maps every queue to its storage;
    ``compiled`` names the handlers the app was compiled with; ``hueys`` maps
    queues to the Huey whose ``enqueued`` / ``scheduled`` receivers hear of
    their jobs.
    """

    def __init__(
        self,
        registry: HandlerRegistry,
        storages: Mapping[str, JobStorage],
        *,
        compiled: Iterable[str],
        redis_url: str,
        reconnect_attempts: int,
        hueys: Mapping[str, QueueHuey] | None = None,
    ) -> None:
        self.registry = registry
        self.storages = dict(storages)
        self.hueys = dict(hueys or {})
        self.compiled = frozenset(compiled)
        self.redis_url = redis_url
        self.reconnect_attempts = reconnect_attempts
        self._targets: dict[tuple[str, str], tuple[HandlerSpec, JobStorage]] = {}
        self.runner: Runner | None = None
        """The app's test mode (:mod:`framework.immediate`): runs the jobs just stored."""

    def enqueue(
        self,
        queue: str,
        handler: str,
        payload: Any,
        *,
        then: Any = None,
        **options: Unpack[EnqueueArgs],
    ) -> str:
        """Validate, store and return the new job's id. Nothing is stored on error.

        ``then`` names the follow-ups its result starts (a handler or a
        :class:`~framework.chains.Chain`; :mod:`framework.chains`), checked here.
        """
        spec, storage = self.target(queue, handler)
        checked = EnqueueOptions.of(options, also=["then"])
        if checked.key_ttl is not None and checked.key is None:
            raise OptionError("key_ttl= keeps a key taken; pass key= with it")
        links = {"then": encode_then(then, self.target)} if then is not None else None
        payload_json = spec.payload_json(payload, max_bytes=storage.policy.max_payload_bytes)
        keys = [checked.key] if checked.key is not None else None
        return self._store(spec, storage, [payload_json], checked, keys, links=links)[0]

    def enqueue_many(
        self,
        queue: str,
        handler: str,
        payloads: Iterable[Any],
        *,
        links: Mapping[str, str] | None = None,
        **options: Unpack[EnqueueManyArgs],
    ) -> EnqueuedIds:
        """Validate every payload, then store them all, one round trip per 500 jobs.

        Nothing is stored when any payload is invalid; the error names its index.
        ``keys`` gives each payload its key (``None`` for none; see ``key=``).
        Returns the ids in the order of ``payloads``; their ``existing`` are the
        positions whose key was held (nothing stored: the holder's id).
        ``links`` are record fields of fan-in (a spawn's ``parent``,
        :meth:`framework.fanin.Relay.spawn`).
        """
        if "then" in options:
            raise ChainError(
                "then= starts a follow-up from one job's result; enqueue_many takes none: "
                "enqueue each job with then=, or chain from a job that fans out"
            )
        spec, storage = self.target(queue, handler)
        keys = options.get("keys")
        _many("payloads", payloads, "enqueue(payload) enqueues one job", PayloadError)
        _many("keys=", keys, "give one key per payload: keys=[...]", OptionError)
        if options.get("key") is not None:
            raise OptionError(
                "key= names one job; give enqueue_many keys=[...], one key per payload"
            )
        rest = cast(EnqueueArgs, {name: v for name, v in options.items() if name != "keys"})
        checked = EnqueueOptions.of(rest, also=["keys"])
        encoded = []
        limit = storage.policy.max_payload_bytes
        for index, payload in enumerate(payloads):
            try:
                encoded.append(spec.payload_json(payload, max_bytes=limit))
            except PayloadError as exc:
                raise PayloadError(f"payload #{index}: {exc}") from None
        if keys is not None:
            keys = list(keys)
            if len(keys) != len(encoded):
                raise OptionError(
                    f"keys= has {len(keys)} keys for {len(encoded)} payloads; give one per "
                    "payload (None for a payload without a key)"
                )
            for index, key in enumerate(keys):
                if key is not None:
                    try:
                        check_key(key)
                    except OptionError as exc:
                        raise OptionError(f"keys[{index}]: {exc}") from None
        elif checked.key_ttl is not None:
            raise OptionError("key_ttl= keeps keys taken; pass keys=[...] with it")
        return self._store(spec, storage, encoded, checked, keys, links=links)

    def target(self, queue: str, handler: str) -> tuple[HandlerSpec, JobStorage]:
        """The handler (short or stable name) of ``queue`` and the queue's storage.

        Raises :class:`QueueError` or :class:`UnknownHandlerError` naming the known ones.
        """
        found = self._targets.get((queue, handler))
        if found is not None:
            return found
        storage = self.storages.get(queue)
        if storage is None:
            raise QueueError(
                f"unknown queue {queue!r}; declared queues: {', '.join(self.storages)}"
            )
        spec = self.registry.get(handler, queue)
        if spec.name not in self.compiled:  # registered after the app was compiled
            raise UnknownHandlerError(
                f"handler {spec.name!r} ({spec.location}) was registered after the app was "
                "built; import its module before the first enqueue, or list it in "
                "HUEYARD_HANDLER_MODULES"
            )
        self._targets[(queue, handler)] = spec, storage
        return spec, storage

    def _store(
        self,
        spec: HandlerSpec,
        storage: JobStorage,
        payloads: list[bytes],
        options: EnqueueOptions,
        keys: Sequence[str | None] | None = None,
        *,
        links: Mapping[str, str] | None = None,
    ) -> EnqueuedIds:
        row_keys = None if keys is None else [key or "" for key in keys]
        try:
            ids = storage.add(spec.name, payloads, options, row_keys, links)
        except EnqueueFailed as failed:
            raise self._failure(spec, failed) from None
        huey = self.hueys.get(spec.queue)
        if huey is not None and huey.hears_enqueues():
            huey.announce_enqueued(spec.name, ids, payloads, options)
        if self.runner is not None:  # Huey's order: enqueued, then the run
            self.runner(spec.queue, ids, options)
        return ids

    def _failure(self, spec: HandlerSpec, failed: EnqueueFailed) -> StorageError:
        """What an enqueue that failed says: why, and truthfully what it stored."""
        cause, stored, total = failed.cause, failed.stored, failed.total
        if isinstance(cause, InvalidResponse):  # not a Redis server: it stored nothing
            return RedisUnavailableError(
                f"could not enqueue {spec.name}: the server at {self.redis_url} "
                f"{connection_failure(cause, self.reconnect_attempts, self.redis_url)}; "
                "nothing was stored",
                stored=stored,
            )
        if isinstance(cause, redis.ConnectionError | redis.TimeoutError):
            lost = (
                "nothing was stored, unless Redis ran the call and only its answer was lost"
                if not stored
                else f"the first {len(stored)} of {total} jobs were stored (their ids are in "
                "the error's .stored); the next batch may have been, unless only its answer "
                "was lost, and the rest were not"
            )
            return RedisUnavailableError(
                f"could not enqueue {spec.name}: Redis at {self.redis_url} "
                f"{connection_failure(cause, self.reconnect_attempts, self.redis_url)}; {lost}",
                stored=stored,
            )
        if isinstance(cause, StorageError):
            reason = str(cause)
        else:
            reason = (
                f"Redis at {self.redis_url} answered with an error ({type(cause).__name__}: "
                f"{cause}); a key under the app's prefix is not what hueyard wrote there"
            )
        kept = (
            "Nothing was stored."
            if not stored
            else f"The first {len(stored)} of {total} jobs were stored (their ids are in the "
            "error's .stored), none of the others."
        )
        return StorageError(
            f"could not enqueue {spec.name}: {reason.rstrip('.')}. {kept}", stored=stored
        )


def _many(name: str, values: object, one: str, error: type[HueyardError]) -> None:
    """Refuse, for a collection of ``enqueue_many``, what iterates as something else: a
    dict (its keys), text or bytes (their characters): one job, or key, per item."""
    if isinstance(values, str | bytes | bytearray | Mapping):
        items = "keys" if isinstance(values, Mapping) else "characters"
        raise error(
            f"enqueue_many {name} must be a list (or another iterable) with one item per "
            f"job, not a {type(values).__name__}, whose {items} would each count as one; {one}"
        )
