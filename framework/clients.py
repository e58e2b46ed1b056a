"""Where every Redis client of an app comes from: one Redis (or Sentinel's master), or a Cluster.

An app has one :class:`RedisClients`. On a single Redis it holds the bounded
pool (:func:`~framework.connection.build_pool`) and hands out pooled clients
and per-thread ones (:class:`~framework.connection.ThreadClients`). With
``[redis] cluster = true`` it holds one redis-py
:class:`~redis.cluster.RedisCluster`, made at its first command
(:class:`LazyCluster`), which keeps a bounded pool per node, finds the node
of each key's slot, and follows ``MOVED`` replies and failovers; every caller
shares it (it is thread-safe).

Both clients speak the same commands, so the rest of hueyard is typed
against :class:`redis.Redis` and does not ask which one it has, with three
exceptions, answered here: a transaction must stay within one slot
(:func:`is_cluster` lets cross-queue reads run as a plain pipeline), redis-py's
cluster pipeline takes no scripts (:func:`pipeline` gives a
:class:`SlotPipeline` instead), and ``WAIT`` must run on the connection of the
queue's own master (:meth:`RedisClients.node_client`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, cast

import redis
from redis._parsers.encoders import Encoder
from redis.cluster import ClusterNode, RedisCluster
from redis.commands.core import Script
from redis.connection import parse_url
from redis.exceptions import (
    ClusterDownError,
    ClusterError,
    RedisClusterException,
    SlotNotCoveredError,
)

from framework import defaults
from framework.connection import (
    BoundedPool,
    ConnectionSpec,
    PoolSize,
    SpecBackoff,
    SpecRetry,
    ThreadClients,
    build_pool,
    sending_once,
    tls_options,
)

__all__ = [
    "LazyCluster",
    "RedisClients",
    "SlotPipeline",
    "build_cluster",
    "is_cluster",
    "lock_node_moves",
    "pipeline",
]


def is_cluster(client: Any) -> bool:
    """Whether ``client`` talks to a Redis Cluster."""
    return isinstance(client, RedisCluster | LazyCluster)


def pipeline(client: redis.Redis, *, transaction: bool) -> Any:
    """A pipeline on ``client``: redis-py's, or on a Cluster a :class:`SlotPipeline`."""
    if isinstance(client, RedisCluster | LazyCluster):
        return SlotPipeline(cast(RedisCluster, client), transaction=transaction)
    return client.pipeline(transaction=transaction)


class LazyCluster:
    """A :class:`~redis.cluster.RedisCluster` made at its first command, not at start-up.

    redis-py's cluster client reads the slot map from a node as it is built,
    and fails if none answers. hueyard promises an app that opens no
    connection until its first Redis call, so that a consumer started before
    its Redis waits for it and a producer imports without one: until a node
    answers, each command raises :class:`redis.ConnectionError` naming the
    cluster (what a single Redis that does not answer raises), and the next
    tries again. Scripts are registered without a connection: their SHA needs
    only the encoder. Every attribute but its own few (``resolve``, ``built``)
    is the cluster client's: ``get`` is Redis's GET.
    """

    def __init__(self, spec: ConnectionSpec, max_connections: int) -> None:
        self.spec = spec
        self.max_connections = max_connections
        self.connection_kwargs: dict[str, Any] = parse_url(spec.url)  # type: ignore[no-untyped-call]
        self.retry = SpecRetry(SpecBackoff(), spec.reconnect_attempts)
        self._lock = threading.Lock()
        self._client: RedisCluster | None = None

    @property
    def built(self) -> RedisCluster | None:
        """The cluster client, if a node answered already."""
        return self._client

    def resolve(self) -> RedisCluster:
        """The cluster client, made now if it was not (raises ConnectionError meanwhile)."""
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                try:
                    self._client = build_cluster(
                        self.spec, max_connections=self.max_connections, retry=self.retry
                    )
                except RedisClusterException as exc:
                    raise redis.ConnectionError(
                        f"no node of the Redis Cluster at {self.spec.redacted_url} answered ({exc})"
                    ) from None
            return self._client

    def get_encoder(self) -> Encoder:
        return Encoder("utf-8", "strict", False)  # type: ignore[no-untyped-call]

    def register_script(self, script: str) -> Script:
        return Script(cast(redis.Redis, self), script)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.resolve(), name)


_REDIRECTED = (redis.exceptions.MovedError, redis.exceptions.AskError)
"""Replies that say a slot is served elsewhere (a failover, a resharding)."""


class SlotPipeline:
    """A pipeline over a Redis Cluster that runs scripts too, grouped by hash slot.

    redis-py's cluster pipeline refuses ``EVALSHA`` and a transaction across
    slots. This one records the commands, sends those of each node as one
    pipeline (with ``transaction``, those of each slot as one ``MULTI``: a
    transaction may not span slots), and gives the replies back in the order
    the commands were queued.
    Each command's key is its first (for ``EVALSHA``, the first of ``KEYS``);
    a command without one (``TIME``) goes with the first command that has one.
    A node that moved or went away (a failover) makes the client read the
    slot map again, and the whole pipeline is sent once more; a slot still
    being moved (``ASK``, a resharding) has the commands sent one at a time
    through the cluster client, which follows the redirections. Reads only.
    """

    def __init__(self, cluster: RedisCluster, *, transaction: bool) -> None:
        self.cluster = cluster
        self.transaction = transaction
        self._commands: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __enter__(self) -> SlotPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self._commands.clear()

    def __getattr__(self, name: str) -> Any:
        def queue(*args: Any, **kwargs: Any) -> SlotPipeline:
            self._commands.append((name, args, kwargs))
            return self

        return queue

    def _key(self, name: str, args: tuple[Any, ...]) -> Any:
        if name in ("evalsha", "eval"):
            return args[2] if int(args[1]) > 0 else None
        return args[0] if args else None

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        cluster: Any = self.cluster
        try:
            return self._execute(raise_on_error)
        except (redis.ConnectionError, redis.TimeoutError, *_REDIRECTED):
            cluster.nodes_manager.initialize()
        try:
            return self._execute(raise_on_error)
        except _REDIRECTED:
            # a slot being moved (resharding): one command at a time through the cluster
            # client, which follows ASK and MOVED (no transaction: these are reads)
            return self._one_by_one(raise_on_error)

    def _one_by_one(self, raise_on_error: bool) -> list[Any]:
        cluster: Any = self.cluster
        replies: list[Any] = []
        for name, args, kwargs in self._commands:
            try:
                replies.append(getattr(cluster, name)(*args, **kwargs))
            except redis.ResponseError as exc:
                if raise_on_error:
                    raise
                replies.append(exc)
        return replies

    def _execute(self, raise_on_error: bool) -> list[Any]:
        cluster: Any = self.cluster
        slots = [
            cluster.keyslot(key) if (key := self._key(name, args)) is not None else -1
            for name, args, _ in self._commands
        ]
        first = next((slot for slot in slots if slot >= 0), -1)
        # One pipeline per node (a transaction may not span slots: then one per slot)
        groups: dict[tuple[str, int], tuple[Any, list[int]]] = {}
        for index, own in enumerate(slots):
            slot = own if own >= 0 else first
            node = (
                cluster.nodes_manager.get_node_from_slot(slot)
                if slot >= 0
                else cluster.get_default_node()
            )
            group = (node.name, slot if self.transaction else -1)
            groups.setdefault(group, (node, []))[1].append(index)
        replies: list[Any] = [None] * len(self._commands)
        for (_, slot), (node, indexes) in groups.items():
            client: redis.Redis = node.redis_connection
            with client.pipeline(transaction=self.transaction and slot >= 0) as pipe:
                for index in indexes:
                    name, args, kwargs = self._commands[index]
                    getattr(pipe, name)(*args, **kwargs)
                answered = pipe.execute(raise_on_error=False)
            for index, reply in zip(indexes, answered, strict=True):
                if isinstance(reply, _REDIRECTED):
                    raise reply
                replies[index] = reply
        if raise_on_error:
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        return replies


class _Cluster(RedisCluster):
    """redis-py's Cluster client, whose tries keep to :class:`~framework.connection.sent_once`
    and whose refusals read as outages.

    - Inside ``sent_once``, a command is tried again only where Redis refused to run it
      (``CLUSTERDOWN``, ``MASTERDOWN`` during a failover; a slot no node serves while
      the map is re-read), never when its answer was lost (a timeout, a connection
      broken after the send): redis-py's own loop of tries is 0 there
      (``SpecRetry.get_retries``).
    - A command redirected (``MOVED``, ``ASK``, ``TRYAGAIN``) until redis-py's budget
      ran out ("TTL exhausted": a slot being moved, its keys half moved) ran nowhere:
      it is tried again, ``reconnect_attempts`` times with the spec's backoff, then
      fails as a connection error, which every caller treats as Redis not answering
      (a worker's release keeps trying for its lease), not as an error of the data. So
      does a refusal past its tries: none of them ran anything.
    """

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        retry = cast(SpecRetry, self.retry)  # build_cluster gives it one
        failures = 0
        while True:
            try:
                return super().execute_command(*args, **kwargs)  # type: ignore[no-untyped-call]
            except (ClusterError, SlotNotCoveredError) as exc:
                unsettled = type(exc) is ClusterError  # "TTL exhausted": redirected only
                # outside sent_once, redis-py's own loop tried the refusals already
                if unsettled or sending_once():
                    failures += 1
                    if failures <= retry.retries:
                        time.sleep(retry.pause(failures))
                        continue
                if unsettled:
                    why = "kept redirecting the command: a slot being moved did not settle in time"
                elif isinstance(exc, ClusterDownError):
                    why = "is down, during a failover or while a slot has no master"
                else:
                    why = "has no node that serves the command's slot"
                raise redis.ConnectionError(
                    f"the Redis Cluster {why} ({exc}); nothing ran"
                ) from exc


def build_cluster(
    spec: ConnectionSpec, *, max_connections: int, retry: SpecRetry | None = None
) -> RedisCluster:
    """A Cluster client that discovers the cluster from ``spec.url`` (any one node), or
    when that node does not answer, from ``spec.cluster_nodes`` in turn.

    Per node: the spec's timeouts, TLS and credentials, and a pool of at most
    ``max_connections`` in which a caller waits for a free connection. A
    command that finds its node gone is retried by the cluster client (it
    re-reads the slot map, so it reaches the replica promoted in its place)
    ``reconnect_attempts`` times, waiting ``min(n x 50 ms, 3 s)`` between tries.
    """
    kwargs: dict[str, Any] = {
        "socket_timeout": spec.socket_timeout,
        "socket_connect_timeout": spec.connect_timeout,
        "socket_keepalive": True,
        "health_check_interval": 30,
        "max_connections": max_connections,
        "connection_pool_class": BoundedPool,
        "timeout": defaults.POOL_TIMEOUT,
        **tls_options(spec),
    }
    # rediss:// makes from_url choose the TLS connection class (an ssl=True as well
    # reaches the connection itself, which refuses it)
    if retry is None:
        retry = SpecRetry(SpecBackoff(), spec.reconnect_attempts)
    seeds = [ClusterNode(host, port) for host, port in spec.cluster_nodes]  # type: ignore[no-untyped-call]
    cluster = _Cluster.from_url(spec.url, retry=retry, startup_nodes=seeds, **kwargs)
    lock_node_moves(cluster)
    return cluster


def lock_node_moves(cluster: RedisCluster) -> None:
    """Make redis-py move a failed node under its node manager's lock, as it reads them.

    When a node refuses a connection, redis-py (8.1) moves it to the end of the
    manager's ``startup_nodes`` and ``nodes_cache`` (pop, then insert) without
    the manager's ``_lock``; another thread that re-reads the slot map at that
    moment iterates those dicts under the lock and fails with ``RuntimeError:
    dictionary keys changed during iteration``. In a consumer that is a worker
    whose job's outcome is not stored during a failover (the job runs again
    after its lease). The lock is an ``RLock``, and the move takes no other
    lock, so this adds no lock-order risk. A redis-py without the method or the
    lock is left as it is.
    """
    manager = cluster.nodes_manager
    lock = getattr(manager, "_lock", None)
    move = getattr(manager, "move_node_to_end_of_cached_nodes", None)
    if lock is None or move is None:
        return

    def move_locked(node_name: str) -> None:
        with lock:
            move(node_name)

    manager.move_node_to_end_of_cached_nodes = move_locked  # type: ignore[method-assign]


class RedisClients:
    """The app's Redis: a shared client, this thread's client, the masters, the pool size.

    ``pool`` injects a single-Redis pool (tests and benchmarks build their own);
    otherwise the spec decides: a Cluster with ``spec.cluster``, else
    :func:`~framework.connection.build_pool` (one Redis, or Sentinel's master).
    """

    def __init__(
        self, spec: ConnectionSpec, size: PoolSize, pool: redis.ConnectionPool | None = None
    ) -> None:
        self.spec = spec
        self.size = size
        self.cluster: LazyCluster | None = None
        self.pool: redis.ConnectionPool | None = None
        if pool is None and spec.cluster:
            self.cluster = LazyCluster(spec, size.max_connections)
            self._shared = cast(redis.Redis, self.cluster)  # the same command API
            self.threads = ThreadClients(None, shared=self._shared)
        else:
            self.pool = (
                pool if pool is not None else build_pool(spec, max_connections=size.max_connections)
            )
            self._shared = redis.Redis(connection_pool=self.pool)
            self.threads = ThreadClients(self.pool, size.max_kept)

    def client(self) -> redis.Redis:
        """A client every thread may share (each command borrows a pooled connection)."""
        return self._shared

    def thread_client(self) -> redis.Redis:
        """This thread's own client, for the hot paths (see ThreadClients)."""
        return self.threads.get()

    def node_client(self, key: str) -> redis.Redis:
        """A client of the one server that holds ``key`` (for ``WAIT``, which counts the
        writes of its own connection): this thread's, or the Cluster node's of its slot."""
        if self.cluster is None:
            return self.threads.get()
        cluster: Any = self.cluster.resolve()  # redis-py's cluster API is untyped
        node = cluster.get_node_from_key(key)
        if node is None or node.redis_connection is None:
            raise redis.ConnectionError(f"no Cluster node serves the slot of {key!r} now")
        return cast(redis.Redis, node.redis_connection)

    def lost_node(self) -> None:
        """A node of :meth:`node_client` failed or moved: read the Cluster's slot map
        again before the next call (a no-op on a single Redis)."""
        cluster: Any = self.cluster.built if self.cluster is not None else None
        if cluster is not None:
            with contextlib.suppress(redis.RedisError):  # the next command's retries report it
                cluster.nodes_manager.initialize()

    @property
    def max_connections(self) -> int:
        """Connections this process may open (per node, on a Cluster)."""
        return self.size.max_connections

    @property
    def opened(self) -> int | None:
        """Connections this process holds open now (summed over the nodes of a Cluster)."""
        if self.pool is not None:
            opened = getattr(self.pool, "opened", None)
            return opened if isinstance(opened, int) else None
        cluster: Any = self.cluster.built if self.cluster is not None else None
        if cluster is None:
            return 0
        total = 0
        for node in cluster.get_nodes():
            connection = node.redis_connection
            if connection is not None:
                total += getattr(connection.connection_pool, "opened", 0)
        return total

    def disconnect(self) -> None:
        """Close every connection (a forked child must not share its parent's sockets)."""
        if self.pool is not None:
            self.pool.disconnect()
        elif self.cluster is not None and self.cluster.built is not None:
            cluster: Any = self.cluster.built
            cluster.disconnect_connection_pools()

    def __repr__(self) -> str:
        kind = "cluster" if self.cluster is not None else "redis"
        return f"<RedisClients {kind} {self.spec.redacted_url}>"
