"""Redis connections: one place builds the pool every part of hueyard shares.

The pool applies the spec's reconnection policy (``min(tries x 50 ms, 3 s)``,
at most ``reconnect_attempts`` tries) and socket timeouts to every command.
Nothing else in hueyard creates a connection; the pool is injected.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import AbstractBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from framework import defaults, forks

__all__ = [
    "BoundedPool",
    "ConnectionSpec",
    "PoolSize",
    "SpecBackoff",
    "ThreadClients",
    "build_pool",
    "redact_url",
]


class SpecBackoff(AbstractBackoff):
    """The original system's reconnect strategy: ``min(tries x step, cap)`` seconds.

    >>> [SpecBackoff().compute(n) for n in (1, 2, 60, 61)]
    [0.05, 0.1, 3.0, 3.0]
    """

    def __init__(
        self, step: float = defaults.RECONNECT_STEP, cap: float = defaults.RECONNECT_CAP
    ) -> None:
        self.step = step
        self.cap = cap

    def reset(self) -> None:
        """Stateless: nothing to reset."""

    def compute(self, failures: int) -> float:
        return float(min(round(failures * self.step, 6), self.cap))


def redact_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***``.

    >>> redact_url("redis://user:s3cret@cache:6379/2")
    'redis://user:***@cache:6379/2'
    >>> redact_url("redis://localhost:6379/0")
    'redis://localhost:6379/0'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable Redis URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class ConnectionSpec:
    """What is needed to connect; its repr never shows the password."""

    url: str = field(repr=False)
    socket_timeout: float = defaults.SOCKET_TIMEOUT
    connect_timeout: float = defaults.CONNECT_TIMEOUT
    reconnect_attempts: int = defaults.RECONNECT_ATTEMPTS
    tls_ca_file: str | None = None

    @property
    def redacted_url(self) -> str:
        return redact_url(self.url)

    def __repr__(self) -> str:
        return (
            f"ConnectionSpec(url={self.redacted_url!r}, socket_timeout={self.socket_timeout}, "
            f"connect_timeout={self.connect_timeout}, "
            f"reconnect_attempts={self.reconnect_attempts})"
        )


class BoundedPool(redis.BlockingConnectionPool):
    """A pool of at most ``max_connections``: a caller waits for a free connection
    (up to ``timeout`` seconds) instead of failing with "Too many connections"."""

    @property
    def opened(self) -> int:
        """Connections this process has opened in the pool (in use or idle)."""
        self._checkpid()
        return len(self._connections)

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except RedisConnectionError as exc:
            if str(exc) != "No connection available.":
                raise
            raise RedisConnectionError(
                f"all {self.max_connections} connections of the pool were in use for "
                f"{self.timeout:g} s; raise [redis] max_connections (or lower the "
                "concurrency of this process)"
            ) from None


@dataclass(frozen=True)
class PoolSize:
    """How many connections a process may open, and how many threads may keep one."""

    max_connections: int
    max_kept: int
    """Threads that keep a connection of their own (:class:`ThreadClients`); the rest
    is lent per command: idle workers' blocking reads, the read API, the cache."""

    @classmethod
    def for_app(cls, *, workers: int, queues: int, configured: int | None) -> PoolSize:
        """Sized from what a consumer of every queue needs, unless ``configured``.

        A worker thread keeps one connection (claims, releases, the enqueues of
        its handlers); the scheduler, the lease keeper and the main thread keep
        one each; one idle worker per queue blocks in Redis on a lent one; the
        rest is spare (:data:`~framework.defaults.POOL_SPARE`). A configured
        size below that still works: more threads share lent connections, and
        wait for one when all are busy.
        """
        lent = queues + defaults.POOL_SPARE
        size = configured if configured is not None else workers + lent
        return cls(size, max(size - lent, 0))


def build_pool(spec: ConnectionSpec, *, max_connections: int | None = None) -> redis.ConnectionPool:
    """Build the shared pool: timeouts, the spec's backoff, TLS for ``rediss://``.

    Commands that hit a dropped connection are retried on a fresh one
    ``spec.reconnect_attempts`` times, waiting ``min(n x 50 ms, 3 s)`` between
    tries; after that the error reaches the caller. The pool holds at most
    ``max_connections`` (:data:`~framework.defaults.MAX_CONNECTIONS` when not
    given); past that a caller waits up to
    :data:`~framework.defaults.POOL_TIMEOUT` seconds for one to come back.
    """
    retry = Retry(
        SpecBackoff(),
        spec.reconnect_attempts,
        supported_errors=(RedisConnectionError, RedisTimeoutError, ConnectionResetError),
    )
    kwargs: dict[str, object] = {
        "socket_timeout": spec.socket_timeout,
        "socket_connect_timeout": spec.connect_timeout,
        "socket_keepalive": True,
        "health_check_interval": 30,
        "retry": retry,
    }
    kwargs["max_connections"] = max_connections or defaults.MAX_CONNECTIONS
    kwargs["timeout"] = defaults.POOL_TIMEOUT
    if spec.tls_ca_file and spec.url.startswith("rediss://"):
        kwargs["ssl_ca_certs"] = spec.tls_ca_file
    pool: redis.ConnectionPool = BoundedPool.from_url(spec.url, **kwargs)
    return pool


class ThreadClients:
    """One client per thread that keeps its own connection of the shared pool.

    A pooled client takes a connection from the pool and gives it back on
    every command, and redis-py polls each connection it hands out for unread
    data: one more system call per command. On the hot paths (a producer's
    enqueue, a worker's claim and release) that is about a quarter of a round
    trip. A client that keeps its connection (redis-py's
    ``single_connection_client``) skips both; the pool's retry policy and
    health checks still apply, and redis-py disconnects it on any error in the
    middle of a reply, so it never holds unread data.

    At most ``max_kept`` threads keep one (``None``: every thread); a thread
    past that shares lent connections, so a process with more threads than
    its pool has connections still works. A forked child makes new ones
    instead of using its parent's sockets. A thread's client gives its
    connection back to the pool when the thread ends.
    """

    def __init__(self, pool: redis.ConnectionPool, max_kept: int | None = None) -> None:
        self.pool = pool
        self.max_kept = max_kept
        self._local = threading.local()
        self._lent = redis.Redis(connection_pool=pool)
        self._lock = threading.Lock()
        self._kept = 0
        self._pid = forks.pid()

    def get(self) -> redis.Redis:
        """This thread's client (made on first use), or a lending one past ``max_kept``."""
        local = self._local
        client: redis.Redis | None = getattr(local, "client", None)
        pid = forks.pid()
        if client is not None and local.pid == pid:
            return client
        with self._lock:
            if self._pid != pid:  # a forked child: its parent's threads kept nothing here
                self._pid, self._kept = pid, 0
            if self.max_kept is not None and self._kept >= self.max_kept:
                return self._lent
            self._kept += 1
        client = redis.Redis(connection_pool=self.pool, single_connection_client=True)
        weakref.finalize(client, _client_gone, weakref.ref(self), pid)  # no strong ref to self
        local.client, local.pid = client, pid
        return client

    @property
    def kept(self) -> int:
        """Threads of this process that keep a connection now."""
        return self._kept if self._pid == forks.pid() else 0

    def _gone(self, pid: int) -> None:
        with self._lock:
            if self._pid == pid and self._kept > 0:
                self._kept -= 1


def _client_gone(clients: weakref.ref[ThreadClients], pid: int) -> None:
    """A thread's kept client was dropped (its thread ended): one more may keep one."""
    owner = clients()
    if owner is not None:
        owner._gone(pid)
