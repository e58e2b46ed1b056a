"""The compiled app: one Huey instance per configured queue, one task per handler.

``framework.app`` (what ``huey_consumer framework.app`` loads) is the
:class:`Hueyard` built by :func:`get_app` from ``$HUEYARD_CONFIG`` and the
discovered handler modules. Producers use the same object through
``handler.enqueue(...)`` or ``framework.enqueue(...)``.
"""

from __future__ import annotations

import datetime
import functools
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis
from huey import Huey
from huey.api import Task
from huey.exceptions import CancelExecution
from pydantic import ValidationError

from framework import defaults
from framework.config import load_settings
from framework.connection import ThreadClients, build_pool
from framework.errors import (
    OptionError,
    PayloadError,
    QueueError,
    RedisUnavailableError,
    SerializationError,
    UnknownHandlerError,
)
from framework.execution import QueueHuey
from framework.handlers import REGISTRY, HandlerRegistry, HandlerSpec, discover
from framework.keys import Keys
from framework.messages import MessageTemplate, new_job_id
from framework.redis_client import RedisClient
from framework.serializer import JSONSerializer, loads
from framework.settings import QueuePolicy, Settings
from framework.storage import JobStorage, NewJob

__all__ = ["Hueyard", "QueueRuntime", "get_app", "reset_app"]

logger = logging.getLogger("hueyard")


def to_huey_priority(priority: int) -> int:
    """Bull's 1 (first) .. 10 (last) as Huey's "higher runs first"."""
    return -priority


@dataclass
class QueueRuntime:
    """One queue: its resolved policy, its Huey instance, its task classes."""

    policy: QueuePolicy
    huey: Huey
    tasks: dict[str, type[Task]] = field(default_factory=dict)
    handlers: dict[str, HandlerSpec] = field(default_factory=dict)
    messages: dict[str, MessageTemplate] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.policy.name


class Hueyard:
    """The compiled configuration: queues, their Huey instances and tasks.

    Build it with :func:`get_app` (from the environment) or directly, e.g. in
    tests: ``Hueyard(settings, registry)``.
    """

    def __init__(
        self,
        settings: Settings,
        registry: HandlerRegistry = REGISTRY,
        *,
        pool: redis.ConnectionPool | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.keys = Keys(settings.redis.prefix)
        self.pool = pool if pool is not None else build_pool(settings.redis.connection)
        self.thread_clients = ThreadClients(self.pool)  # one connection per thread, all queues
        self.queues: dict[str, QueueRuntime] = {}
        self.warnings: list[str] = []
        self._compile()

    # -- compile ---------------------------------------------------------------------------

    def _compile(self) -> None:
        unknown = [spec for spec in self.registry if spec.queue not in self.settings.queues]
        if unknown:
            declared = ", ".join(self.settings.queue_names)
            lines = [
                f"{spec.location} is registered for queue {spec.queue!r}, which "
                f"config/queues.toml does not declare"
                for spec in unknown
            ]
            raise UnknownHandlerError(
                "; ".join(lines) + f". Declared queues: {declared}. Add a "
                "[queues.<name>] table or fix the queue name in @handler(...)"
            )
        for policy in self.settings.policies():
            huey = QueueHuey(
                policy.name,
                timeout=policy.timeout,
                serializer=JSONSerializer(),
                storage_class=JobStorage,
                connection_pool=self.pool,
                thread_clients=self.thread_clients,
                keys=self.keys,
                policy=policy,
                consumer=self.settings.consumer,
            )
            runtime = QueueRuntime(policy=policy, huey=huey)
            for spec in self.registry.for_queue(policy.name):
                spec.payload_model  # noqa: B018 - resolve annotations now, not at 3 a.m.
                task_class = _task_class(huey, policy, spec)
                runtime.tasks[spec.name] = task_class
                runtime.handlers[spec.name] = spec
                runtime.messages[spec.name] = MessageTemplate(huey, task_class)
            if not runtime.tasks:
                self.warnings.append(
                    f"queue {policy.name!r} has no handler; its jobs wait until one is "
                    "registered with @handler(" + repr(policy.name) + ")"
                )
            self.queues[policy.name] = runtime
        for warning in self.warnings:
            logger.warning(warning)

    # -- producer API ----------------------------------------------------------------------

    def queue(self, name: str) -> QueueRuntime:
        try:
            return self.queues[name]
        except KeyError:
            raise QueueError(
                f"unknown queue {name!r}; declared queues: {', '.join(self.queues)}"
            ) from None

    def handler_spec(self, name: str, queue: str | None = None) -> HandlerSpec:
        if queue is not None:
            self.queue(queue)
        return self.registry.get(name, queue)

    def enqueue(
        self,
        handler_name: str,
        payload: Any,
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay: float | datetime.timedelta | None = None,
        eta: datetime.datetime | None = None,
        attempts: int | None = None,
        keep_completed: int | None = None,
        keep_failed: int | None = None,
    ) -> str:
        """Validate, store and return the new job's id. Nothing is stored on error.

        ``keep_completed`` / ``keep_failed`` override the queue's retention for
        this job, like Bull's removeOnComplete / removeOnFail: 0 deletes the job
        when it finishes, N keeps the newest N of that state.
        """
        spec = self.handler_spec(handler_name, queue)
        runtime = self._runtime_for(spec)
        job = self._new_job(
            spec,
            runtime,
            payload,
            priority=priority,
            delay=delay,
            eta=eta,
            attempts=attempts,
            keep_completed=keep_completed,
            keep_failed=keep_failed,
        )
        self._store(spec, runtime, [job])
        return job.id

    def enqueue_many(
        self,
        handler_name: str,
        payloads: Iterable[Any],
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay: float | datetime.timedelta | None = None,
        attempts: int | None = None,
    ) -> list[str]:
        """Validate every payload, then store them all, one round trip per 500 jobs.

        Nothing is stored when any payload is invalid; the error names its index.
        """
        spec = self.handler_spec(handler_name, queue)
        runtime = self._runtime_for(spec)
        jobs = []
        for index, payload in enumerate(payloads):
            try:
                job = self._new_job(
                    spec, runtime, payload, priority=priority, delay=delay, attempts=attempts
                )
            except PayloadError as exc:
                raise PayloadError(f"payload #{index}: {exc}") from None
            jobs.append(job)
        self._store(spec, runtime, jobs)
        return [job.id for job in jobs]

    def _runtime_for(self, spec: HandlerSpec) -> QueueRuntime:
        runtime = self.queue(spec.queue)
        if spec.name not in runtime.tasks:  # registered after the app was compiled
            raise UnknownHandlerError(
                f"handler {spec.name!r} ({spec.location}) was registered after the app was "
                "built; import its module before the first enqueue, or list it in "
                "HUEYARD_HANDLER_MODULES"
            )
        return runtime

    def _new_job(
        self,
        spec: HandlerSpec,
        runtime: QueueRuntime,
        payload: Any,
        *,
        priority: int | None = None,
        delay: float | datetime.timedelta | None = None,
        eta: datetime.datetime | None = None,
        attempts: int | None = None,
        keep_completed: int | None = None,
        keep_failed: int | None = None,
    ) -> NewJob:
        data = spec.encode_payload(payload, check_json=False)
        job_priority = runtime.policy.priority if priority is None else _check_priority(priority)
        max_attempts = runtime.policy.attempts if attempts is None else _check_attempts(attempts)
        job_id = new_job_id()
        try:  # the one JSON encoding of the payload
            message = runtime.messages[spec.name].render(
                job_id, to_huey_priority(job_priority), data
            )
        except SerializationError as exc:
            raise PayloadError(spec.not_json(exc)) from None
        return NewJob(
            id=job_id,
            name=spec.name,
            data=message,
            priority=job_priority,
            delay_ms=_delay_ms(eta, delay),
            max_attempts=max_attempts,
            keep_completed=_check_keep("keep_completed", keep_completed),
            keep_failed=_check_keep("keep_failed", keep_failed),
        )

    def _store(self, spec: HandlerSpec, runtime: QueueRuntime, jobs: list[NewJob]) -> None:
        try:
            runtime.huey.storage.add(jobs)
        except redis.RedisError as exc:
            raise RedisUnavailableError(
                f"could not enqueue {spec.name}: Redis at "
                f"{self.settings.redis.connection.redacted_url} did not answer after "
                f"{self.settings.redis.reconnect_attempts} reconnection attempts "
                f"({type(exc).__name__}: {exc}); nothing was enqueued"
            ) from None

    def result(self, queue: str, job_id: str) -> Any:
        """The result of a completed job; None while it has not completed (or is gone)."""
        storage = self.queue(queue).huey.storage
        state, raw = storage.conn.hmget(self.keys.job(job_id), ["state", "result"])
        if state != b"completed" or raw is None:
            return None
        return loads(raw)

    # -- consumer --------------------------------------------------------------------------

    def create_consumer(self, **options: Any) -> Any:
        """What ``huey_consumer framework.app`` calls: a consumer for every served queue."""
        from framework.consumer import MultiQueueConsumer, served_queues

        names = served_queues(self.settings, os.environ)
        return MultiQueueConsumer(self, names, **options)

    @functools.cached_property
    def cache(self) -> RedisClient:
        """The spec's Redis client, on the app's pool, with ``[cache]`` TTLs."""
        return RedisClient(
            self.pool,
            cache_ttls=self.settings.cache.ttl,
            default_ttl=self.settings.cache.default_ttl,
            key_prefix=self.keys.cache(""),
            url_for_logs=self.settings.redis.connection.redacted_url,
        )

    def close(self) -> None:
        self.pool.disconnect()

    def __repr__(self) -> str:
        return (
            f"<Hueyard queues={list(self.queues)} handlers={len(self.registry)} "
            f"redis={self.settings.redis.connection.redacted_url}>"
        )


def _task_class(huey: Huey, policy: QueuePolicy, spec: HandlerSpec) -> type[Task]:
    def execute(task: Task) -> Any:
        (payload,) = task.args or (None,)
        try:
            return spec.call(payload)
        except ValidationError as exc:
            # A stored payload that no longer validates will never succeed: fail now.
            logger.error("job %s (%s): payload does not validate: %s", task.id, spec.name, exc)
            raise CancelExecution(retry=False) from exc

    attributes = {
        "__module__": policy.name,  # Huey's task name is "<module>.<class>": "<queue>.<handler>"
        "__doc__": spec.func.__doc__,
        "context": False,
        "execute": execute,
        "default_retries": policy.retries,
        "default_retry_delay": policy.backoff.delay,
        "default_retry_backoff": policy.backoff.factor,
        "default_priority": to_huey_priority(policy.priority),
        "default_timeout": policy.timeout,
    }
    task_class = type(spec.short_name, (Task,), attributes)
    huey._registry.register(task_class)
    return task_class


def _check_priority(priority: int) -> int:
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not (defaults.PRIORITY_HIGHEST <= priority <= defaults.PRIORITY_LOWEST)
    ):
        raise OptionError(
            f"priority={priority!r} is not allowed; use a whole number from "
            f"{defaults.PRIORITY_HIGHEST} (runs first) to {defaults.PRIORITY_LOWEST} (runs last)"
        )
    return priority


def _check_attempts(attempts: int) -> int:
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 100:
        raise OptionError(f"attempts={attempts!r} is not allowed; use a whole number from 1 to 100")
    return attempts


def _check_keep(name: str, keep: int | None) -> int:
    if keep is None:
        return -1
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise OptionError(f"{name}={keep!r} is not allowed; use 0 (delete when done) or more")
    return keep


def _delay_ms(eta: datetime.datetime | None, delay: float | datetime.timedelta | None) -> int:
    if eta is not None and delay is not None:
        raise OptionError("pass either delay= or eta=, not both")
    if isinstance(delay, datetime.timedelta):
        delay = delay.total_seconds()
    if eta is not None:
        if not isinstance(eta, datetime.datetime):
            raise OptionError(f"eta={eta!r} is not allowed; use a datetime")
        if eta.tzinfo is None:
            raise OptionError(
                f"eta={eta!r} has no time zone; pass an aware datetime, e.g. "
                "datetime(2025, 11, 6, 10, 0, tzinfo=timezone.utc)"
            )
        delay = (eta - datetime.datetime.now(datetime.UTC)).total_seconds()
        return max(int(delay * 1000), 0)
    if delay is None:
        return 0
    if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
        raise OptionError(f"delay={delay!r} is not allowed; use seconds >= 0 or a timedelta")
    return int(delay * 1000)


_app: Hueyard | None = None
_app_lock = threading.Lock()


def get_app(env: Mapping[str, str] | None = None) -> Hueyard:
    """The process's app, built once: config from ``$HUEYARD_CONFIG``, handlers discovered."""
    global _app  # noqa: PLW0603 - one app per process, built lazily
    if _app is None:
        with _app_lock:
            if _app is None:
                env = os.environ if env is None else env
                settings = load_settings(env=env)
                discover(env)
                _app = Hueyard(settings, REGISTRY)
    return _app


def reset_app() -> None:
    """Forget the process's app (tests, or after changing the environment)."""
    global _app  # noqa: PLW0603 - one app per process, built lazily
    with _app_lock:
        if _app is not None:
            _app.close()
        _app = None
