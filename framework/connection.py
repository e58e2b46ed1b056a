"""Redis connections: one place builds the pool every part of hueyard shares.

The pool applies the spec's reconnection policy (``min(tries x 50 ms, 3 s)``,
at most ``reconnect_attempts`` tries) and socket timeouts to every command.
Nothing else in hueyard creates a connection; the pool is injected.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import AbstractBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from framework import defaults, forks

__all__ = ["ConnectionSpec", "SpecBackoff", "ThreadClients", "build_pool", "redact_url"]


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


def build_pool(spec: ConnectionSpec, *, max_connections: int | None = None) -> redis.ConnectionPool:
    """Build the shared pool: timeouts, the spec's backoff, TLS for ``rediss://``.

    Commands that hit a dropped connection are retried on a fresh one
    ``spec.reconnect_attempts`` times, waiting ``min(n x 50 ms, 3 s)`` between
    tries; after that the error reaches the caller.
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
    if max_connections is not None:
        kwargs["max_connections"] = max_connections
    if spec.tls_ca_file and spec.url.startswith("rediss://"):
        kwargs["ssl_ca_certs"] = spec.tls_ca_file
    return redis.ConnectionPool.from_url(spec.url, **kwargs)


class ThreadClients:
    """One client per thread that keeps its own connection of the shared pool.

    A pooled client takes a connection from the pool and gives it back on
    every command, and redis-py polls each connection it hands out for unread
    data: one more system call per command. On the hot paths (a producer's
    enqueue, a worker's release) that is about a quarter of a round trip. A
    client that keeps its connection (redis-py's ``single_connection_client``)
    skips both; the pool's retry policy and health checks still apply, and
    redis-py disconnects it on any error in the middle of a reply, so it never
    holds unread data.

    Each thread gets its own, so threads never wait for each other. A forked
    child makes new ones instead of using its parent's sockets. A thread's
    client gives its connection back to the pool when the thread ends, and
    all of them when this object is dropped.
    """

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self.pool = pool
        self._local = threading.local()

    def get(self) -> redis.Redis:
        """This thread's client (made on first use)."""
        local = self._local
        client: redis.Redis | None = getattr(local, "client", None)
        if client is None or local.pid != forks.pid():
            client = redis.Redis(connection_pool=self.pool, single_connection_client=True)
            local.client, local.pid = client, forks.pid()
        return client
