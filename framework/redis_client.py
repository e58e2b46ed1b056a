"""The resilient Redis client: JSON values, errors logged not raised, a health probe.

This is the original system's ``src/config/redis.js`` in Python::

    client = RedisClient.from_spec(settings.redis.connection,
                                   cache_ttls=settings.cache.ttl)
    client.set("user:123:permissions", permissions, ttl=300)
    permissions = client.get("user:123:permissions")
    data = client.get_cached("analytics:dashboard", fetch_dashboard_data,
                             ttl_name="ANALYTICS_DASHBOARD")

Contract, as the spec puts it: an operation that fails (Redis down, a timeout,
a value that is not JSON, a wrong type) is logged with its context and returns
``None`` or ``False``; it never raises. Programming errors do raise: a value
that is not JSON (:class:`~framework.errors.PayloadError`), an unknown TTL name
(:class:`~framework.errors.ConfigError`), a TTL that is not a positive integer
(``ValueError``).

Reconnection is the injected pool's (:func:`framework.connection.build_pool`).
When it gives up, the first failure of an outage is logged at ERROR, the
following ones at DEBUG, and the first success after it at INFO
(:class:`OutageLog`). No log line, repr or error text shows the password.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict, TypeVar, cast

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from framework import defaults
from framework.cache import (
    CACHE_LOCK_TTL,
    CacheAside,
    StoreUnavailable,
    check_ttl,
    decode,
    encode,
    resolve_ttl,
)
from framework.clients import LazyCluster
from framework.connection import (
    CREDENTIALS_FIX,
    ConnectionSpec,
    build_pool,
    never_sent,
    redact_url,
    refused_credentials,
    tls_options,
    written_once,
)
from framework.errors import StorageError
from framework.keys import Keys, cache_lock_prefix
from framework.scripts import Scripts

__all__ = ["HEALTH_TIMEOUT", "Health", "OutageLog", "RedisClient"]

log = logging.getLogger(__name__)

DEFAULT_PREFIX = Keys(defaults.KEY_PREFIX).cache("")
"""Keys of a client built without a ``key_prefix``: ``hueyard:cache:<key>``."""

T = TypeVar("T")
R = TypeVar("R")

HEALTH_TIMEOUT = 1.0
"""Seconds :meth:`RedisClient.health` waits for PING: one try, no reconnection loop."""

_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)
"""Errors meaning "Redis did not answer" (auth failures included), as opposed to
"Redis answered no" (a wrong type, a script error) or "the value is not JSON"."""


class Health(TypedDict):
    """What :meth:`RedisClient.health` returns."""

    connected: bool
    latency_ms: float | None
    error: str | None


class OutageLog:
    """Logs an outage once: ERROR when it starts, DEBUG while it lasts, INFO when it ends.

    Thread-safe. ``failure`` and ``success`` are called after every operation;
    ``success`` costs one attribute read when Redis is up.

    >>> outage = OutageLog("redis://cache:6379/0", attempts=10)
    >>> outage.down
    False
    """

    def __init__(self, url: str, attempts: int, logger: logging.Logger | None = None) -> None:
        self.url = url
        self.attempts = attempts
        self._log = logger or log
        self._lock = threading.Lock()
        self._since: float | None = None
        self._failures = 0

    @property
    def down(self) -> bool:
        """Whether the last operation found Redis unavailable."""
        return self._since is not None

    def failure(self, operation: str, key: str, error: str) -> None:
        """Record that ``operation`` on ``key`` found Redis unavailable with ``error``."""
        with self._lock:
            first = self._since is None
            if first:
                self._since = time.monotonic()
            self._failures += 1
        if first and refused_credentials(error):  # no reconnection was tried: permanent
            self._log.error(
                "Redis at %s refused the credentials: %s (during %s %r); %s",
                self.url,
                error,
                operation,
                key,
                CREDENTIALS_FIX,
            )
        elif first:
            self._log.error(
                "Redis unavailable at %s after %d reconnection attempts: %s (during %s %r)",
                self.url,
                self.attempts,
                error,
                operation,
                key,
            )
        else:
            self._log.debug(
                "Redis still unavailable at %s: %s (during %s %r)", self.url, error, operation, key
            )

    def success(self) -> None:
        """Record that Redis answered; logs the end of an outage if one was going on."""
        if self._since is None:
            return
        with self._lock:
            if self._since is None:
                return
            lasted = time.monotonic() - self._since
            failures = self._failures
            self._since = None
            self._failures = 0
        self._log.info(
            "Redis connection restored at %s after %.1f s (%d operations failed meanwhile)",
            self.url,
            lasted,
            failures,
        )


@dataclass(frozen=True)
class _Failed:
    """An operation failed and was logged; ``unavailable`` if Redis did not answer."""

    unavailable: bool


class RedisClient:
    """JSON values in Redis, with ``None``/``False`` instead of exceptions.

    ``pool`` is shared and owned by the caller (see
    :func:`framework.connection.build_pool`), or a Redis Cluster's lazy client
    (:class:`framework.clients.LazyCluster`); every key is ``key_prefix + key``.
    ``cache_ttls`` maps the names of ``[cache.ttl]`` to seconds for
    :meth:`get_cached`; ``lock_ttl`` bounds how long one loader blocks others.
    """

    def __init__(
        self,
        pool: redis.ConnectionPool | LazyCluster,
        *,
        cache_ttls: Mapping[str, int] | None = None,
        default_ttl: int = defaults.CACHE_TTL,
        key_prefix: str = DEFAULT_PREFIX,
        url_for_logs: str = "",
        lock_ttl: float = CACHE_LOCK_TTL,
        health_timeout: float = HEALTH_TIMEOUT,
    ) -> None:
        self._owns_pool = False
        self._cluster = pool if isinstance(pool, LazyCluster) else None
        self._pool: redis.ConnectionPool | None = None
        self._probe_pool: redis.ConnectionPool | None = None
        self._health_timeout = health_timeout
        if isinstance(pool, LazyCluster):
            # the cluster client routes each key to its node; the health probe and INFO
            # ask the nodes themselves, once each, within health_timeout
            self._redis = self._probe = cast(redis.Redis, pool)
            kwargs: dict[str, Any] = pool.connection_kwargs
            retry: Any = pool.retry
        else:
            self._pool = pool
            self._redis = redis.Redis(connection_pool=pool)
            self._probe_pool = _single_try_pool(pool, health_timeout)
            self._probe = redis.Redis(connection_pool=self._probe_pool)
            kwargs = pool.connection_kwargs
            retry = kwargs.get("retry")
        self._scripts = Scripts(self._redis)
        self._prefix = key_prefix
        self._lock_prefix = cache_lock_prefix(key_prefix)
        self._url = redact_url(url_for_logs) if url_for_logs else _url_of(kwargs)
        password = kwargs.get("password")
        self._password = password if isinstance(password, str) and password else None
        self._default_ttl = check_ttl(default_ttl)
        self._cache_ttls = {name: check_ttl(ttl) for name, ttl in (cache_ttls or {}).items()}
        attempts = retry.get_retries() if isinstance(retry, Retry) else 0
        self.outage = OutageLog(self._url, attempts)
        self._cache = CacheAside(_Store(self), lock_ttl=lock_ttl)

    @classmethod
    def from_spec(cls, spec: ConnectionSpec, **kwargs: Any) -> RedisClient:
        """Build the pool from ``spec`` (and own it: :meth:`close` disconnects it)."""
        kwargs.setdefault("url_for_logs", spec.redacted_url)
        client = cls(build_pool(spec), **kwargs)
        client._owns_pool = True
        return client

    def __repr__(self) -> str:
        return f"RedisClient(url={self._url!r})"

    def close(self) -> None:
        """Drop the health probe's connections, and the pool's if :meth:`from_spec` built it."""
        if self._probe_pool is not None:
            self._probe_pool.disconnect()
        if self._owns_pool and self._pool is not None:
            self._pool.disconnect()

    # -- operations --------------------------------------------------------

    def set(
        self, key: str, value: Any, ttl: int | None = None, *, ttl_name: str | None = None
    ) -> bool:
        """Store ``value`` as JSON for its TTL: ``ttl`` seconds, else ``[cache.ttl]``'s
        ``ttl_name``, else ``[cache] default_ttl`` (every cached value expires: nothing the
        cache writes stays forever). ``True`` if stored.

        Raises :class:`PayloadError` if ``value`` is not JSON, ``ValueError`` for a TTL
        outside 1 s to 30 days, :class:`ConfigError` for an unknown ``ttl_name``.
        """
        name = self._prefix + key
        encoded = encode(name, value)
        seconds = resolve_ttl(ttl, ttl_name, self._cache_ttls, self._default_ttl)
        result = self._run("SET", name, lambda: self._redis.set(name, encoded, ex=seconds))
        return not isinstance(result, _Failed) and bool(result)

    def get(self, key: str) -> Any | None:
        """The value at ``key``; ``None`` if missing, stored as ``None``, not JSON, or on error."""
        name = self._prefix + key
        result = self._run("GET", name, lambda: _decode_or_none(self._redis.get(name)))
        return None if isinstance(result, _Failed) else result

    def delete(self, key: str) -> bool:
        """Delete ``key``; ``True`` if it existed, ``False`` if not or on error."""
        name = self._prefix + key
        result = self._run("DEL", name, lambda: self._redis.delete(name))
        return not isinstance(result, _Failed) and result > 0

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists; ``False`` on error."""
        name = self._prefix + key
        result = self._run("EXISTS", name, lambda: self._redis.exists(name))
        return not isinstance(result, _Failed) and result > 0

    def incr(
        self, key: str, amount: int = 1, ttl: int | None = None, *, ttl_name: str | None = None
    ) -> int | None:
        """Add ``amount`` to the integer at ``key`` (0 if missing): the sum, ``None`` on error.

        The counter lives its TTL (chosen as for :meth:`set`) from its first increment:
        later increments keep the expiry it has, so ``incr("sent:2026-12-01",
        ttl=86400)`` counts one day's messages and is gone a day later.

        The increment is written to Redis once (:class:`~framework.connection.written_once`):
        a call whose answer is lost (Redis slower than ``socket_timeout``, a connection
        broken mid-call) returns ``None`` and logs that it may have counted; it is never
        sent again, so one call adds ``amount`` at most once.
        """
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise TypeError(f"incr takes a whole number as amount, got {amount!r}")
        name = self._prefix + key
        seconds = resolve_ttl(ttl, ttl_name, self._cache_ttls, self._default_ttl)

        def call() -> Any:
            with written_once():
                return self._scripts.call(
                    "cache_incr", keys={"counter": name}, args={"amount": amount, "ttl": seconds}
                )

        result = self._run("INCRBY", name, call, once=True)
        return None if isinstance(result, _Failed) else int(result)

    def get_cached(
        self,
        key: str,
        loader: Callable[[], T],
        ttl: int | None = None,
        *,
        ttl_name: str | None = None,
    ) -> T:
        """Cache-aside: ``key``'s cached value, else ``loader()``'s, cached for the TTL.

        The TTL is ``ttl``, else ``cache_ttls[ttl_name]``, else ``default_ttl``;
        an unknown ``ttl_name`` raises :class:`ConfigError`. Concurrent misses
        of ``key`` (threads and processes) call ``loader`` once. A ``None``
        result is cached too. ``loader``'s exceptions propagate and are not
        cached. With Redis down, ``loader`` is called every time and no Redis
        error is raised. See :class:`framework.cache.CacheAside`.
        """
        seconds = resolve_ttl(ttl, ttl_name, self._cache_ttls, self._default_ttl)
        return self._cache.get(self._prefix + key, loader, seconds)

    # -- health ------------------------------------------------------------

    def health(self) -> Health:
        """PING once (no reconnection loop, ``health_timeout`` at most).

        ``{"connected": True, "latency_ms": 0.2, "error": None}`` or
        ``{"connected": False, "latency_ms": None, "error": "ConnectionError: ..."}``.
        """
        started = time.perf_counter()
        try:
            if self._cluster is not None:
                self._ping_cluster()
            else:
                self._probe.ping()
        except (RedisError, OSError) as exc:
            log.debug("Redis health check at %s failed: %s", self._url, self._describe(exc))
            return {"connected": False, "latency_ms": None, "error": self._describe(exc)}
        latency = round((time.perf_counter() - started) * 1000, 3)
        self.outage.success()
        return {"connected": True, "latency_ms": latency, "error": None}

    def is_connected(self) -> bool:
        """Whether Redis answers PING now (see :meth:`health`)."""
        return self.health()["connected"]

    def server_info(self) -> dict[str, Any] | None:
        """The server's ``INFO`` (version, memory, clients, ...), one try; None on error.

        On a Cluster: the ``INFO`` of the master nearest its ``maxmemory`` (the
        one to worry about first), with ``cluster_masters``, how many answered.
        """
        try:
            if self._cluster is not None:
                return self._cluster_info()
            info: dict[str, Any] = self._probe.info()
        except (RedisError, OSError) as exc:
            log.debug("Redis INFO at %s failed: %s", self._url, self._describe(exc))
            return None
        return info

    def _ping_cluster(self) -> None:
        """PING the Cluster's masters as the client knows them, in turn, until one answers
        (a dead master whose replica took over must not make the cluster read as down);
        the first answer also builds the cluster client, so that this process knows
        every node from then on, not only the one the URL names (which may die)."""
        assert self._cluster is not None
        failure: BaseException | None = None
        for host, port in self._cluster_nodes():
            try:
                with self._node_probe(host, port) as node:
                    node.ping()
            except (RedisError, OSError) as exc:
                failure = failure or exc
                continue
            if self._cluster.built is None:
                with contextlib.suppress(RedisError, RedisClusterException):
                    self._cluster.resolve()
            return
        assert failure is not None
        raise failure

    def _cluster_nodes(self) -> list[tuple[str, int]]:
        """The Cluster's masters as the client knows them; before its first command, the
        node the URL names, then ``cluster_nodes``."""
        assert self._cluster is not None
        built: Any = self._cluster.built
        if built is not None:
            masters = [(node.host, int(node.port)) for node in built.get_primaries()]
            if masters:
                return masters
        kwargs = self._cluster.connection_kwargs
        named = (str(kwargs.get("host", "localhost")), int(kwargs.get("port", 6379)))
        return [named, *self._cluster.spec.cluster_nodes]

    def _node_probe(self, host: str, port: int) -> redis.Redis:
        """A client of one Cluster node that tries once, within ``health_timeout``."""
        assert self._cluster is not None
        spec = self._cluster.spec
        kwargs = self._cluster.connection_kwargs
        tls: dict[str, Any] = {"ssl": True, **tls_options(spec)} if spec.tls else {}
        return redis.Redis(
            host=host,
            port=port,
            username=kwargs.get("username"),
            password=kwargs.get("password"),
            socket_timeout=self._health_timeout,
            socket_connect_timeout=self._health_timeout,
            retry=Retry(NoBackoff(), 0),
            **tls,
        )

    def _cluster_info(self) -> dict[str, Any] | None:
        """INFO of every master (once each, within ``health_timeout``): the one nearest its
        ``maxmemory``. Before the client's first command, the slot map is read first."""
        assert self._cluster is not None
        if self._cluster.built is None:
            with self._node_probe(*self._cluster_nodes()[0]) as node:
                node.ping()  # a dead cluster answers here, fast, not in the client's retries
            self._cluster.resolve()
        replies = {}
        for host, port in self._cluster_nodes():
            with self._node_probe(host, port) as node:
                replies[f"{host}:{port}"] = node.info()
        return _nearest_full(replies)

    # -- internals ---------------------------------------------------------

    def _run(
        self, operation: str, key: str, call: Callable[[], R], *, once: bool = False
    ) -> R | _Failed:
        """``call()``, its failure logged; ``once``: a write sent once, whose lost answer
        is logged as such (it may have been applied), not as Redis being down (unless
        an outage is already logged: that says it, once)."""
        try:
            result = call()
        except _UNAVAILABLE as exc:
            if once and not never_sent(exc) and not self.outage.down:
                log.error(
                    "Redis %s %r at %s: the answer was lost (%s); it was sent once and not "
                    "again, so it may or may not have been applied",
                    operation,
                    key,
                    self._url,
                    self._describe(exc),
                    extra={"redis_operation": operation, "redis_key": key},
                )
                return _Failed(unavailable=True)
            self.outage.failure(operation, key, self._describe(exc))
            return _Failed(unavailable=True)
        except (RedisError, ValueError, StorageError) as exc:  # StorageError: a script's
            self.outage.success()  # Redis answered: it is up
            hint = ""
            if isinstance(exc, ValueError):
                hint = "; the value is not JSON hueyard wrote, so it reads as missing"
            log.error(
                "Redis %s %r at %s failed: %s%s",
                operation,
                key,
                self._url,
                self._describe(exc),
                hint,
                extra={"redis_operation": operation, "redis_key": key},
            )
            return _Failed(unavailable=False)
        self.outage.success()
        return result

    def _describe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}"
        return text.replace(self._password, "***") if self._password else text


class _Store:
    """:class:`framework.cache.CacheStore` on a :class:`RedisClient` (keys already prefixed)."""

    def __init__(self, client: RedisClient) -> None:
        self._client = client

    def read(self, key: str) -> tuple[bool, Any]:
        client = self._client
        result = client._run("GET", key, lambda: _hit_or_miss(client._redis.get(key)))
        if isinstance(result, _Failed):
            if result.unavailable:
                raise StoreUnavailable(key)
            return False, None  # not JSON, or not a string: a miss, overwritten on load
        return result

    def write(self, key: str, encoded: str, ttl: int) -> None:
        client = self._client
        client._run("SET", key, lambda: client._redis.set(key, encoded, ex=ttl))

    def acquire(self, key: str, ttl_ms: int) -> str | None:
        client = self._client
        name = client._lock_prefix + key.removeprefix(client._prefix)
        token = secrets.token_hex(16)
        result = client._run(
            "SET NX", name, lambda: client._redis.set(name, token, nx=True, px=ttl_ms)
        )
        if isinstance(result, _Failed):
            # A lock Redis refuses (ACLs, say) is as good as no Redis: skip the cache.
            raise StoreUnavailable(key)
        return token if result else None

    def release(self, key: str, token: str) -> None:
        client = self._client
        name = client._lock_prefix + key.removeprefix(client._prefix)
        client._run(
            "EVALSHA",
            name,
            lambda: client._scripts.call(
                "cache_unlock", keys={"lock": name}, args={"token": token}
            ),
        )


def _decode_or_none(raw: bytes | str | None) -> Any:
    return None if raw is None else decode(raw)


def _hit_or_miss(raw: bytes | str | None) -> tuple[bool, Any]:
    return (False, None) if raw is None else (True, decode(raw))


def _single_try_pool(pool: redis.ConnectionPool, timeout: float) -> redis.ConnectionPool:
    """A small pool to ``pool``'s server that tries once and waits ``timeout`` at most.

    A ``retry=`` given to ``redis.Redis(connection_pool=pool)`` is ignored (the
    pool's connections carry their own), so the probe needs its own pool.
    """
    # Settings a pool adds for its own connections stay with that pool.
    kwargs = {
        name: value
        for name, value in pool.connection_kwargs.items()
        if not name.startswith(("maint_notifications", "orig_", "himport_", "event_dispatcher"))
    }
    kwargs.update(
        retry=Retry(NoBackoff(), 0),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=0,
    )
    return redis.ConnectionPool(connection_class=pool.connection_class, **kwargs)


def _nearest_full(replies: Any) -> dict[str, Any] | None:
    """Of each master's ``INFO`` (by node name), the one with the highest share of its
    ``maxmemory`` used (without limits: the most memory used), and how many answered."""
    infos: list[dict[str, Any]] = [
        info for info in dict(replies).values() if isinstance(info, dict)
    ]
    if not infos:
        return None

    def fullness(info: dict[str, Any]) -> tuple[float, int]:
        used, limit = info.get("used_memory", 0), info.get("maxmemory", 0)
        used = used if isinstance(used, int) else 0
        share = used / limit if isinstance(limit, int) and limit > 0 else 0.0
        return share, used

    fullest = max(infos, key=fullness)
    return {**fullest, "cluster_masters": len(infos)}


def _url_of(kwargs: Mapping[str, Any]) -> str:
    """``redis://host:port/db`` from a pool's settings, never with the password."""
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    host, port = kwargs.get("host", "localhost"), kwargs.get("port", 6379)
    return f"redis://{host}:{port}/{kwargs.get('db', 0)}"
