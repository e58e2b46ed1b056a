"""The compiled app: one Huey instance per configured queue, and the producer API.

``framework.app`` (what ``huey_consumer framework.app`` loads) is the
:class:`Hueyard` built by :func:`framework.runtime.get_app` from
``$HUEYARD_CONFIG`` and the discovered handler modules. Producers use the same
object through ``handler.enqueue(...)`` or ``framework.enqueue(...)``; a test
builds its own: ``Hueyard(settings, registry)``.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Unpack

import redis
from redis.exceptions import RedisClusterException

from framework.checks import run_checks
from framework.clients import RedisClients
from framework.compiler import QueueRuntime, compile_queues
from framework.connection import PoolSize
from framework.consumer import MultiQueueConsumer, served_queues
from framework.errors import ConfigError, QueueError
from framework.fanin import Relay
from framework.handlers import REGISTRY, HandlerRegistry, HandlerSpec
from framework.keys import Keys
from framework.leases import LeaseKeeper
from framework.masking import Masker
from framework.options import EnqueueArgs, EnqueuedIds, EnqueueManyArgs
from framework.producer import Producer
from framework.redis_info import NO_EVICTION, RedisInfo
from framework.schedules import Schedule
from framework.serializer import loads
from framework.settings import Settings
from framework.storage import Replicas
from framework.ticks import compile_schedules
from framework.upgrade import legacy_queues

if TYPE_CHECKING:
    from framework.redis_client import RedisClient

__all__ = ["Hueyard", "QueueRuntime"]

logger = logging.getLogger("hueyard")


class Hueyard:
    """The compiled configuration: queues, their Huey instances and tasks; enqueueing.

    Building it compiles the config and the handlers of ``registry`` (errors
    stop here, not at 3 a.m.) and makes it the app those handlers' ``.enqueue``
    uses. It opens no connection until the first Redis call.
    """

    def __init__(
        self,
        settings: Settings,
        registry: HandlerRegistry = REGISTRY,
        *,
        pool: redis.ConnectionPool | None = None,
    ) -> None:
        # the handlers' own config (framework/checks.py): a bad one stops start-up here
        self.reports = run_checks((check for spec in registry for check in spec.checks), settings)
        self.settings = settings
        self.registry = registry
        self.keys = Keys(settings.redis.prefix)
        self.pool_size = PoolSize.for_app(
            workers=sum(policy.concurrency for policy in settings.policies()),
            queues=len(settings.queues),
            configured=settings.redis.max_connections,
        )
        # one Redis or a Cluster; one connection per thread, up to the pool's share for them
        self.clients = RedisClients(settings.redis.connection, self.pool_size, pool)
        self.redis_clients = self.clients
        """The configured Redis: :attr:`clients` unless the test mode keeps jobs in memory."""
        self.immediate_use_memory = True
        """Huey's name: the test mode (:attr:`immediate`) keeps jobs in memory, not in
        the configured Redis; set it before switching the mode on."""
        self.schedules: dict[str, Schedule] = compile_schedules(settings, registry)
        self.queues, self.warnings = compile_queues(
            settings, registry, clients=self.clients, keys=self.keys
        )
        for warning in self.warnings:
            logger.warning(warning)
        for runtime in self.queues.values():
            runtime.huey.owner = self  # huey.immediate is this app's switch
        self.producer = Producer(
            registry,
            {name: runtime.storage for name, runtime in self.queues.items()},
            compiled=[name for runtime in self.queues.values() for name in runtime.tasks],
            redis_url=settings.redis.connection.redacted_url,
            reconnect_attempts=settings.redis.reconnect_attempts,
            hueys={name: runtime.huey for name, runtime in self.queues.items()},
        )
        # Fan-in and follow-ups: what a release posts to an outbox is delivered at once
        self.relay = Relay(self.producer)
        for runtime in self.queues.values():
            runtime.huey.relay = self.relay
            runtime.storage.on_told = self.relay.deliver_quietly
        registry.bind(self)

    # -- producer API ----------------------------------------------------------------------

    def enqueue(
        self,
        queue: str,
        handler: str,
        payload: Any,
        *,
        then: Any = None,
        **options: Unpack[EnqueueArgs],
    ) -> str:
        """Enqueue one job for ``handler`` on ``queue``; return its id (see :class:`Producer`).

        ``then``: the follow-up its result starts (:mod:`framework.chains`)."""
        return self.producer.enqueue(queue, handler, payload, then=then, **options)

    def enqueue_many(
        self, queue: str, handler: str, payloads: Iterable[Any], **options: Unpack[EnqueueManyArgs]
    ) -> EnqueuedIds:
        """Enqueue one job per payload, validated first; one round trip per 500 jobs."""
        return self.producer.enqueue_many(queue, handler, payloads, **options)

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

    def result(self, queue: str, job_id: str) -> Any:
        """The result of a completed job; None while it has not completed (or is gone)."""
        runtime = self.queue(queue)
        with runtime.storage.conn.pipeline(transaction=True) as pipe:
            pipe.zscore(runtime.storage.q.completed, job_id)
            pipe.hget(runtime.storage.q.job(job_id), "result")
            completed, raw = pipe.execute()
        if completed is None or raw is None:
            return None
        return loads(raw)

    @property
    def pool(self) -> redis.ConnectionPool:
        """The single Redis's connection pool (there is none on a Cluster: use ``clients``)."""
        if self.clients.pool is None:
            raise ConfigError(
                "this app runs on a Redis Cluster, which has a pool per node; use "
                "app.clients.client() for a client"
            )
        return self.clients.pool

    # -- test mode -------------------------------------------------------------------------

    @property
    def immediate(self) -> bool:
        """Huey's test mode: every enqueue runs its jobs before it returns, through the
        same scripts, policy and Huey a consumer uses, in memory unless
        :attr:`immediate_use_memory` is False (:mod:`framework.immediate`)."""
        return self.producer.runner is not None

    @immediate.setter
    def immediate(self, value: bool) -> None:
        from framework.immediate import switch

        switch(self, bool(value))

    def use_clients(self, clients: RedisClients) -> None:
        """Keep jobs, results and the cache on ``clients`` from now on (the test mode's
        switch). A :class:`~framework.jobs.Jobs` made before keeps the Redis it had."""
        if "cache" in self.__dict__:
            self.__dict__.pop("cache").close()
        self.clients = clients
        redis_settings = self.settings.redis
        # an in-memory store has no replicas to wait for (nor WAIT: fakeredis lacks it)
        replicas = (
            Replicas(redis_settings.wait_replicas, redis_settings.wait_timeout)
            if clients is self.redis_clients
            else Replicas()
        )
        for runtime in self.queues.values():
            runtime.storage.use_clients(clients)
            runtime.storage.replicas = replicas

    # -- consumer --------------------------------------------------------------------------

    def create_consumer(self, **options: Any) -> MultiQueueConsumer:
        """What ``huey_consumer framework.app`` calls: a consumer for every served queue.

        A ``$HUEYARD_QUEUES`` that names no queue it can serve, or a flag hueyard can
        not honour (``-k greenlet``), ends the process with one line on stderr
        (``hueyard: error: ...``, exit status 1), not a traceback: this is the
        consumer's command line, and that is its usage error.
        """
        try:
            if self.immediate:
                raise ConfigError(
                    "this app is in test mode (app.immediate, HUEYARD_IMMEDIATE): its jobs "
                    "run when they are enqueued, so a consumer would serve nothing; unset "
                    "HUEYARD_IMMEDIATE to run a consumer"
                )
            queues = served_queues(self.settings, os.environ)
            self._refuse_legacy_keys(queues)
            self._warn_if_redis_may_evict()
            return MultiQueueConsumer(self, queues, **options)
        except (ConfigError, QueueError) as exc:
            raise SystemExit(f"hueyard: error: {exc}") from None

    def _warn_if_redis_may_evict(self) -> None:
        """A Redis whose ``maxmemory-policy`` deletes keys at its limit may delete job
        records, queue sets and pause flags: say so at start, at WARNING (``hueyard doctor``
        says it too). Best effort: a Redis that refuses ``INFO`` (an ACL, a proxy) or does
        not answer now is not a reason to stop."""
        try:
            reply = self.clients.client().info("memory")  # a Cluster's: its default node's
        except (redis.RedisError, RedisClusterException, OSError) as exc:
            logger.debug("could not read Redis's maxmemory-policy: %s", exc)
            return
        info = RedisInfo.parse(reply if isinstance(reply, dict) else {})
        if info.may_evict:
            limit = f"maxmemory {info.maxmemory:,} bytes" if info.maxmemory else "no maxmemory yet"
            logger.warning(
                "Redis maxmemory-policy is %s (%s): at its memory limit Redis deletes %s, "
                "and what they held is lost without a trace; CONFIG SET maxmemory-policy %s, "
                "and the same in redis.conf",
                info.maxmemory_policy, limit, info.evicts, NO_EVICTION,
            )  # fmt: skip

    def _refuse_legacy_keys(self, queues: list[str]) -> None:
        """A queue with keys of hueyard 0.1.0 would leave those jobs where no one looks:
        the consumer does not start until ``hueyard upgrade-keys`` moved them. A Redis
        that does not answer now is the consumer's to wait for, not a reason to stop."""
        try:
            old = legacy_queues(self.clients.client(), self.keys, queues)
        except redis.RedisError as exc:
            logger.debug("could not look for hueyard 0.1.0 keys: %s", exc)
            return
        if old:
            raise ConfigError(
                f"Redis holds keys of hueyard 0.1.0 for queue(s) {', '.join(old)} "
                f"({self.keys.legacy.queue_prefix(old[0])}...): their jobs would wait where no "
                "consumer looks. Stop every consumer, run `hueyard upgrade-keys`, then start "
                "them again (docs/storage.md, Upgrading from 0.1.0)"
            )

    @functools.cached_property
    def masker(self) -> Masker:
        """What hides secrets wherever this app's job data is shown (with ``mask_fields``)."""
        return Masker.of(self.settings)

    @functools.cached_property
    def cache(self) -> RedisClient:
        """The spec's Redis client, on the app's pool, with ``[cache]`` TTLs."""
        # imported here: a consumer whose handlers use no cache does not load it
        from framework.redis_client import RedisClient

        return RedisClient(
            self.clients.cluster or self.clients.pool,  # type: ignore[arg-type]  # one is set
            cache_ttls=self.settings.cache.ttl,
            default_ttl=self.settings.cache.default_ttl,
            key_prefix=self.keys.cache(""),
            url_for_logs=self.settings.redis.connection.redacted_url,
        )

    def close(self) -> None:
        """Let go of Redis: the pool's connections and the cache's health probe, and the
        leases of any job this app claimed and still holds (another consumer recovers it
        once its lease runs out, as after a crash)."""
        self.registry.unbind(self)
        let_go = LeaseKeeper.let_go([runtime.storage for runtime in self.queues.values()])
        if let_go:
            logger.warning(
                "closing with %d claimed job(s) still held (%s): each is recovered once "
                "its lease runs out",
                len(let_go),
                ", ".join(claim.id for claim in let_go[:5]) + (", ..." if len(let_go) > 5 else ""),
            )
        if "cache" in self.__dict__:
            self.cache.close()
        self.clients.disconnect()
        if self.redis_clients is not self.clients:
            self.redis_clients.disconnect()

    def __repr__(self) -> str:
        redis_url = self.settings.redis.connection.redacted_url
        return (
            f"<Hueyard queues={list(self.queues)} handlers={len(self.registry)} "
            f"redis={'memory' if self.clients is not self.redis_clients else redis_url}"
            f"{' immediate' if self.immediate else ''}>"
        )
