"""Redis connections: one place builds the pool every part of hueyard shares.

The pool applies the spec's reconnection policy (``min(tries x 50 ms, 3 s)``,
at most ``reconnect_attempts`` tries) and socket timeouts to every command.
Nothing else in hueyard creates a connection; the pool is injected.
"""

from __future__ import annotations

import math
import os
import queue
import ssl
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import redis
from redis.backoff import AbstractBackoff, NoBackoff
from redis.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, NoPermissionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from redis.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
)

from framework import defaults, forks
from framework.errors import ConfigError

T = TypeVar("T")

__all__ = [
    "BoundedPool",
    "BoundedSentinelPool",
    "ConnectionSpec",
    "PoolSize",
    "SpecBackoff",
    "ThreadClients",
    "SpecRetry",
    "build_pool",
    "check_url",
    "connection_failure",
    "redact_url",
    "never_sent",
    "refused_credentials",
    "CREDENTIALS_FIX",
    "sending_once",
    "sent_once",
    "written_once",
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


class _Tries(threading.local):
    depth = 0  # calls of a SpecRetry in progress in this thread (a connect inside a command)
    once = False  # inside sent_once() or written_once()
    reconnect = False  # inside written_once(): a command never written is tried again


_TRIES = _Tries()


class SpecRetry(Retry):
    """redis-py's retry, tried again only where trying again is safe and bounded.

    - A call inside another (redis-py retries a connection's handshake inside each try
      of a command) is tried once: a Redis that accepts connections and never answers
      fails after ``reconnect_attempts`` tries of the command, not that many squared
      (10 x 10 x a 5 s socket timeout: ten minutes).
    - Inside :func:`sent_once`, a call is tried once: a command whose answer is lost
      may have run, and a claim run twice takes two jobs with one token. A Cluster
      client asks :meth:`get_retries` for its own loop (it re-reads the slot map
      between tries), which is 0 there too.
    - Redis refusing the credentials (:func:`refused_credentials`) is not tried again:
      no new connection fixes a wrong password, and each try is one.
    - Inside :func:`written_once`, a call is tried again only when it failed before its
      command was written (connecting failed, :func:`never_sent`), as often as outside:
      a counter waits for a Redis that restarts, and never counts twice.
    """

    def get_retries(self) -> int:
        return 0 if _TRIES.once else self._retries

    @property
    def retries(self) -> int:
        """The tries after the first, outside :class:`sent_once`."""
        return self._retries

    def pause(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failed tries."""
        return float(self._backoff.compute(failures))

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        tries = _TRIES
        if tries.depth or (tries.once and not tries.reconnect):
            try:
                return do()
            except self._supported_errors as error:
                if with_failure_count:
                    fail(error, 1)
                else:
                    fail(error)
                raise
        tries.depth += 1
        try:
            if tries.once:  # written_once: again only what was never written
                return self._until_written(do, fail, with_failure_count)
            return super().call_with_retry(
                do, _once_refused(fail, with_failure_count), is_retryable, with_failure_count
            )
        finally:
            tries.depth -= 1

    def _until_written(
        self, do: Callable[[], T], fail: Callable[..., Any], with_failure_count: bool
    ) -> T:
        failures = 0
        while True:
            try:
                return do()
            except self._supported_errors as error:
                failures += 1
                if with_failure_count:
                    fail(error, failures)
                else:
                    fail(error)
                permanent = refused_credentials(error)
                if permanent or not never_sent(error) or failures > self._retries:
                    raise
                time.sleep(self.pause(failures))


def _once_refused(fail: Callable[..., Any], with_failure_count: bool) -> Callable[..., Any]:
    """``fail``, then the error raised again at once when Redis refused the credentials:
    permanent, so not tried ``reconnect_attempts`` times (each a new connection)."""

    def failed(error: Exception, *count: int) -> Any:
        if with_failure_count:
            fail(error, *count)
        else:
            fail(error)
        if refused_credentials(error):
            raise error

    return failed


def sending_once() -> bool:
    """Whether this thread is inside :class:`sent_once` (or :class:`written_once`)."""
    return _TRIES.once


class sent_once:
    """Commands in the block are sent once, never again by the pool's retry: for a
    script that must not run twice (a claim); the caller deals with a lost answer.
    (A class, not a generator: it is on every claim's path.)"""

    __slots__ = ("_before",)
    _reconnect = False

    def __enter__(self) -> None:
        tries = _TRIES
        self._before = (tries.once, tries.reconnect)
        tries.once, tries.reconnect = True, self._reconnect

    def __exit__(self, *exc: object) -> None:
        _TRIES.once, _TRIES.reconnect = self._before


class written_once(sent_once):
    """Commands in the block are written to Redis once: a write that must not be
    applied twice (a counter's increment, a log line's append). A try that failed
    before its command was written (connecting failed: :func:`never_sent`) is made
    again as the pool's retry would; one whose answer was lost (a timeout, a broken
    connection) is not: the caller reports that it may have been applied."""

    __slots__ = ()
    _reconnect = True


def never_sent(error: BaseException) -> bool:
    """Whether a connection error proves that the command it broke never reached Redis:
    connecting failed (redis-py's "Error 111 connecting to host:port", "Timeout
    connecting to server"), or Redis refused the connection's credentials. A timeout
    reading the answer, or a connection broken while writing or reading, does not:
    Redis may have run the command.

    >>> never_sent(redis.ConnectionError("Error 111 connecting to cache:6379. Connection refused."))
    True
    >>> never_sent(redis.TimeoutError("Timeout reading from socket"))
    False
    """
    return isinstance(error, redis.AuthenticationError) or "connecting to" in str(error)


_REFUSALS = (
    "WRONGPASS",
    "NOAUTH",
    "NOPERM",
    "invalid username-password",
    "Authentication required",
    "has no permissions",
)
"""What Redis (and redis-py) say when they refuse who hueyard connects as."""


CREDENTIALS_FIX = (
    "check the user and password of [redis] url (or REDIS_URL / REDIS_PASSWORD), and the user's ACL"
)
"""What to check when Redis refused the credentials (errors and logs say it alike)."""


def refused_credentials(error: BaseException | str) -> bool:
    """Whether Redis refused the credentials: a wrong password or user (``WRONGPASS``,
    ``NOAUTH``), or an ACL that forbids the user a command (``NOPERM``). Permanent: no
    reconnection fixes it, only the config. ``error`` may be an error's text.

    >>> refused_credentials(redis.AuthenticationError("invalid username-password pair"))
    True
    >>> refused_credentials("ConnectionError: Error 111 connecting to cache:6379.")
    False
    """
    if isinstance(error, redis.AuthenticationError | NoPermissionError):
        return True
    text = str(error)
    return any(word in text for word in _REFUSALS)


URL_SCHEMES = ("redis://", "rediss://", "unix://")


def check_url(url: str) -> None:
    """Raise ``ValueError`` saying what is wrong with a Redis URL, and the fix.

    redis-py would take some mistakes silently: a database that is not a number
    (``redis://cache/crm``) or port 0 mean database 0 and port 6379 to it, and
    its query arguments (``?socket_timeout=``, ``?max_connections=``) override
    the pool's settings that hueyard makes. Others it raises as a bare
    ``ValueError`` at the first connection. The message quotes no part of the
    URL: the caller shows it, redacted (:func:`redact_url`).

    >>> check_url("redis://cache:6379/2")
    >>> check_url("redis://cache/crm")
    Traceback (most recent call last):
    ...
    ValueError: database 'crm' is not a number; write redis://host:port/0 (or /1, /2, ...)
    """
    if not url.startswith(URL_SCHEMES):
        raise ValueError(
            "is not a Redis URL; use redis://host:port/db, rediss://host:port/db for TLS, "
            "or unix:///path/to/socket?db=0"
        )
    userinfo, at, _ = url.partition("://")[2].rpartition("@")
    if at and any(char in userinfo for char in "#/?@"):
        raise ValueError(
            "has a user or password with a character a URL can not carry as it is; "
            "percent-encode it: '#' as %23, '/' as %2F, '?' as %3F, '@' as %40 "
            "(python3 -c 'import urllib.parse, sys; print(urllib.parse.quote(sys.argv[1], "
            'safe=""))\' PASSWORD)'
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        reason = "the port is not a number from 1 to 65535" if "ort" in str(exc) else str(exc)
        raise ValueError(
            f"can not be parsed ({reason}); write redis://host:port/db, with a port from 1 to "
            "65535 and an IPv6 address in brackets"
        ) from None
    if parts.fragment:
        raise ValueError("has a '#' part; drop it (a '#' in a password is written %23)")
    query = [pair.partition("=") for pair in parts.query.split("&") if pair]
    database = parts.path.strip("/") or "0"
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("names no socket; write unix:///path/to/redis.sock?db=0")
        database = next((value for name, _, value in query if name == "db"), "0")
        query = [pair for pair in query if pair[0] != "db"]
    elif not parts.hostname:
        raise ValueError("names no host; write redis://host:port/db")
    elif port == 0:
        raise ValueError("has port 0; write the server's port, 1 to 65535")
    if query:
        names = ", ".join(sorted({name for name, _, _ in query}))
        raise ValueError(
            f"has query arguments ({names}), which would override the pool's settings; "
            "drop them, and set [redis] socket_timeout, connect_timeout or "
            "reconnect_attempts instead"
        )
    if not (database.isascii() and database.isdigit()):
        example = (
            "unix:///path/to/redis.sock?db=0 (or 1, 2, ...)"
            if parts.scheme == "unix"
            else "redis://host:port/0 (or /1, /2, ...)"
        )
        raise ValueError(f"database {database!r} is not a number; write {example}")


def redact_url(url: str) -> str:
    """Return ``url`` with its password and its query's values replaced by ``***``.

    The password is whatever follows the user's ``:`` up to the last ``@``, so one
    with a ``#``, ``/`` or ``?`` a URL can not carry as is (it should be
    percent-encoded) is hidden all the same.

    >>> redact_url("redis://user:s3cret@cache:6379/2")
    'redis://user:***@cache:6379/2'
    >>> redact_url("redis://localhost:6379/0")
    'redis://localhost:6379/0'
    >>> redact_url("unix:///run/redis.sock?db=2&password=s3cret")
    'unix:///run/redis.sock?db=2&password=***'
    >>> redact_url("redis://admin:pa#ss/wo?rd@cache:6379/0")
    'redis://admin:***@cache:6379/0'
    """
    scheme, slashes, rest = url.partition("://")
    if not slashes:
        return "<unparseable Redis URL>" if "@" in url or ":" in url else url
    userinfo, at, place = rest.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        userinfo = f"{user}:***@" if colon else f"{user}@"
    base, hash_sign, fragment = place.partition("#")
    base, question_mark, query = base.partition("?")
    hidden = "&".join(  # ?password=... is no less secret than the userinfo's
        name + (("=" + (value if name == "db" else "***")) if sep else "")
        for name, sep, value in (pair.partition("=") for pair in query.split("&"))
    )
    tail = question_mark + hidden + hash_sign + ("***" if fragment else "")
    return f"{scheme}://{userinfo}{base}{tail}"


def connection_failure(exc: BaseException, attempts: int, url: str = "") -> str:
    """Why Redis could not be used, for "Redis at <url> ..." messages: a server that
    refused us (credentials, TLS) is told apart from one that did not answer, with the fix.

    ``url`` (the config's, redacted) tells a TLS connection (``rediss``): there, a
    connection reset or closed right away is how a server that asks for client
    certificates refuses a client without one, when TLS 1.3 lets the reset arrive
    before the alert.

    >>> connection_failure(redis.AuthenticationError("invalid password"), 10)[:30]
    'refused the credentials (Authe'
    """
    text = f"{type(exc).__name__}: {exc}"
    message = str(exc)
    if isinstance(exc, InvalidResponse):
        return (
            f"answered in another protocol than Redis's ({text}): its host and port are "
            "another server's (a web server, a proxy, a database); check the port of "
            "[redis] url (or REDIS_URL / REDIS_PORT)"
        )
    if refused_credentials(exc):
        if isinstance(exc, MasterNotFoundError):  # the sentinels refused them
            return (
                f"refused the credentials ({text}); check [redis] sentinel_password "
                "(or REDIS_SENTINEL_PASSWORD)"
            )
        return f"refused the credentials ({text}); {CREDENTIALS_FIX}"
    if "CERTIFICATE_VERIFY_FAILED" in message:
        return (
            f"presented a TLS certificate that could not be verified ({text}); set [redis] "
            "tls_ca_file (or REDIS_TLS_CA_FILE) to the CA that signed it, and connect by the "
            "name or address the certificate names"
        )
    if "certificate required" in message or "CERTIFICATE_REQUIRED" in message:
        return f"asks for a client certificate ({text}); set [redis] tls_cert_file and tls_key_file"
    refused = "Connection reset by peer" in message or "Connection closed by server" in message
    if "violation of protocol" in message or (url.startswith("rediss") and refused):
        # TLS 1.3: a missing client certificate looks so
        return (
            f"closed the TLS connection ({text}); if it asks for client certificates "
            "(tls-auth-clients), set [redis] tls_cert_file and tls_key_file"
        )
    return f"did not answer after {attempts} reconnection attempts ({text})"


@dataclass(frozen=True)
class ConnectionSpec:
    """What is needed to connect; its repr never shows a password.

    With ``sentinels``, the master of ``master_name`` is asked of them (and
    again after every failover); ``url`` then gives only the scheme
    (``rediss://``: TLS, to the sentinels too), the credentials and the database.
    """

    url: str = field(repr=False)
    socket_timeout: float = defaults.SOCKET_TIMEOUT
    connect_timeout: float = defaults.CONNECT_TIMEOUT
    reconnect_attempts: int = defaults.RECONNECT_ATTEMPTS
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    sentinels: tuple[tuple[str, int], ...] = ()
    master_name: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    cluster: bool = False
    """A Redis Cluster, discovered from ``url`` (any node): see :mod:`framework.clients`."""
    cluster_nodes: tuple[tuple[str, int], ...] = ()
    """More nodes to discover the Cluster from, after the one ``url`` names."""

    @property
    def what_to_check(self) -> str:
        """Where to look when this Redis does not answer: the end of an error's message."""
        if self.sentinels:
            return (
                "check that the sentinels of [redis] sentinels (REDIS_SENTINELS) run and name "
                "a master called [redis] master_name (REDIS_MASTER_NAME) that is up"
            )
        if self.cluster:
            return (
                "check that a node [redis] url (REDIS_URL) or cluster_nodes "
                "(REDIS_CLUSTER_NODES) names is up: a process finds the cluster through them"
            )
        return "check that it runs and REDIS_URL points at it"

    @property
    def redacted_url(self) -> str:
        """Where it connects, for logs and errors: the URL without its password, or
        ``sentinel://host:port,.../<master>`` (the URL's part shown after it)."""
        if self.cluster:
            if not self.cluster_nodes:
                return f"{redact_url(self.url)} (cluster)"
            hosts = ",".join(f"{_bracket(host)}:{port}" for host, port in self.cluster_nodes)
            return f"{redact_url(self.url)} (cluster; also {hosts})"
        if not self.sentinels:
            return redact_url(self.url)
        hosts = ",".join(f"{_bracket(host)}:{port}" for host, port in self.sentinels)
        return f"sentinel://{hosts}/{self.master_name} ({redact_url(self.url)})"

    @property
    def tls(self) -> bool:
        return self.url.startswith("rediss://")

    def __repr__(self) -> str:
        return (
            f"ConnectionSpec(url={self.redacted_url!r}, socket_timeout={self.socket_timeout}, "
            f"connect_timeout={self.connect_timeout}, "
            f"reconnect_attempts={self.reconnect_attempts})"
        )


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


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

    def disconnect_free_connections(self, moving_address_src: str | None = None) -> None:
        """Close the idle connections, taking each out of the queue first.

        A Cluster client calls this on every node's pool when it re-reads the
        slot map (a node went away, a failover). redis-py 8.1's version closes
        the connections it saw in the queue while other threads go on taking
        connections from it (``get_connection`` takes one without the pool's
        lock): a thread that took one just then found its socket gone and
        failed with ``TypeError: argument must be an int, or have a fileno()
        method`` (from ``can_read``), not a Redis error that hueyard retries.
        A connection taken out of the queue here is this thread's alone.
        """
        taken = []
        while True:
            try:
                taken.append(self.pool.get_nowait())
            except queue.Empty:
                break
        try:
            for conn in taken:
                if conn is not None and self._should_update_connection(
                    conn, "connected_address", moving_address_src
                ):
                    conn.disconnect()
        finally:
            for conn in reversed(taken):  # a LIFO queue: the same order as before
                self.pool.put_nowait(conn)


class SentinelConnection(SentinelManagedConnection):
    """A connection to the master Sentinel names *now*, however it (re)connects.

    redis-py asks Sentinel for the master only in ``connect()``; but a command
    sent on a dropped connection reconnects through ``connect_check_health()``
    to the address it had, so after a failover every connection went back to
    the old master, now a replica, and each command failed with "The previous
    master is now a slave" for as long as it ran (redis/redis-py#3874, open in
    8.1). Asking Sentinel there too makes every reconnection follow the master.

    And a connection that stays up follows it too: Sentinel can promote a
    replica while the old master still runs and takes writes for a few
    seconds (until Sentinel demotes it), writes the new master never sees.
    Before a command, a connection whose server is not the master Sentinel
    named last is dropped and made again; its pool asks Sentinel at most every
    :data:`~framework.defaults.SENTINEL_RECHECK` seconds.
    """

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if self._sock is not None and self.connection_pool.is_master:
            pool = self.connection_pool.connection_pool_ref()
            master = pool.recent_master() if pool is not None else None
            if master is not None and (self.host, int(self.port)) != master:
                self.disconnect()
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]

    def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if self._sock is None and self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
        super().connect_check_health(
            check_health=check_health, retry_socket_connect=retry_socket_connect
        )


class SentinelSSLConnection(SentinelConnection, SSLConnection):
    """:class:`SentinelConnection` over TLS."""


class SentinelManager(Sentinel):
    """redis-py's :class:`~redis.sentinel.Sentinel`, whose "no master found" error
    says why each sentinel failed.

    redis-py 8.1 names each sentinel that failed by its client's repr (a line of
    40 options) and its error by a category alone (``network:ConnectionError``):
    a certificate that could not be verified, or a password the sentinels
    refused, was lost, and :func:`connection_failure` told neither apart from a
    sentinel that did not answer. The search itself is redis-py's.
    """

    def discover_master(self, service_name: str) -> tuple[str, int]:
        errors = []
        for index, sentinel in enumerate(self.sentinels):
            try:
                masters = cast(dict[str, dict[str, Any]], sentinel.sentinel_masters())
            except (RedisConnectionError, RedisTimeoutError) as exc:
                where = sentinel.connection_pool.connection_kwargs
                errors.append(
                    f"{_bracket(str(where['host']))}:{where['port']}: {type(exc).__name__}: {exc}"
                )
                continue
            state = masters.get(service_name)
            if state and self.check_master_state(state, service_name):  # type: ignore[no-untyped-call]
                # ask this sentinel first next time
                self.sentinels[0], self.sentinels[index] = sentinel, self.sentinels[0]
                host = self._force_master_ip if self._force_master_ip is not None else state["ip"]
                return str(host), int(state["port"])
        why = "; ".join(errors) if errors else "no sentinel names it as a master that is up"
        raise MasterNotFoundError(f"no master {service_name!r} found: {why}")


class BoundedSentinelPool(SentinelConnectionPool, BoundedPool):
    """:class:`BoundedPool` to the master that Sentinel names.

    Each new connection asks the sentinels for the master's address; a
    connection to a master that was demoted (its replies say READONLY) is
    dropped and the command retried, by the pool's retry policy, on the new
    master. redis-py's :class:`~redis.sentinel.SentinelConnectionPool` does
    the asking; :class:`BoundedPool` bounds the connections;
    :class:`SentinelConnection` moves live connections after a failover.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._asked_at = -math.inf
        self._asking = threading.Lock()

    def recent_master(self) -> tuple[str, int] | None:
        """The master's address as Sentinel gave it at most
        :data:`~framework.defaults.SENTINEL_RECHECK` seconds ago (None: unknown)."""
        now = time.monotonic()
        if now - self._asked_at >= defaults.SENTINEL_RECHECK and self._asking.acquire(False):
            try:
                self._asked_at = now
                self.get_master_address()  # type: ignore[no-untyped-call]
            except RedisConnectionError:
                pass  # no sentinel answered: keep the connections as they are
            finally:
                self._asking.release()
        address = self.master_address
        return None if address is None else (str(address[0]), int(address[1]))


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
    """Build the shared pool: timeouts, the spec's backoff, TLS for ``rediss://``,
    Sentinel discovery when ``spec.sentinels`` is set.

    Commands that hit a dropped connection are retried on a fresh one
    ``spec.reconnect_attempts`` times, waiting ``min(n x 50 ms, 3 s)`` between
    tries; after that the error reaches the caller. The pool holds at most
    ``max_connections`` (:data:`~framework.defaults.MAX_CONNECTIONS` when not
    given); past that a caller waits up to
    :data:`~framework.defaults.POOL_TIMEOUT` seconds for one to come back.
    """
    retry = SpecRetry(
        SpecBackoff(),
        spec.reconnect_attempts,
        supported_errors=(RedisConnectionError, RedisTimeoutError, ConnectionResetError),
    )
    kwargs: dict[str, Any] = {
        "socket_timeout": spec.socket_timeout,
        "socket_connect_timeout": spec.connect_timeout,
        "health_check_interval": 30,
        "retry": retry,
        **tls_options(spec),
    }
    if not spec.url.startswith("unix://"):  # a unix socket's connection takes no keepalive
        kwargs["socket_keepalive"] = True
    kwargs["max_connections"] = max_connections or defaults.MAX_CONNECTIONS
    kwargs["timeout"] = defaults.POOL_TIMEOUT
    if spec.sentinels:
        return _sentinel_pool(spec, kwargs)
    pool: redis.ConnectionPool = BoundedPool.from_url(spec.url, **kwargs)
    return pool


def tls_options(spec: ConnectionSpec) -> dict[str, Any]:
    """redis-py's ``ssl_*`` options for a ``rediss://`` spec: the server's certificate
    and name are checked; the CA and a client certificate come from the spec."""
    if not spec.tls:
        return {}
    _load_tls_files(spec.tls_ca_file, spec.tls_cert_file, spec.tls_key_file)
    options: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
    if spec.tls_ca_file:
        options["ssl_ca_certs"] = spec.tls_ca_file
    if spec.tls_cert_file:
        options["ssl_certfile"] = spec.tls_cert_file
        options["ssl_keyfile"] = spec.tls_key_file or spec.tls_cert_file
    return options


def _load_tls_files(ca: str | None, cert: str | None, key: str | None) -> None:
    """Load the TLS files before the first connection: a missing or wrong one would
    otherwise read as Redis not answering, after every reconnection attempt. (Not at
    config load: ``hueyard check`` may run where the files are not, in CI.)"""
    for name, path in (("tls_ca_file", ca), ("tls_cert_file", cert), ("tls_key_file", key)):
        if path is not None and not os.path.isfile(path):
            raise ConfigError(
                f"[redis] {name} = {path!r} is not a file; give the path of the PEM file"
            )
    loading: list[tuple[str, str, str | None]] = [("tls_ca_file", ca, None)] if ca else []
    if cert:
        loading.append(("tls_cert_file / tls_key_file", cert, key))
    for name, first, second in loading:
        try:
            context = ssl.create_default_context()
            if name == "tls_ca_file":
                context.load_verify_locations(cafile=first)
            else:
                context.load_cert_chain(first, second)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"[redis] {name} can not be loaded ({type(exc).__name__}: {exc}); give PEM "
                "files: the CA's certificate, the client's certificate and its private key"
            ) from None


def _sentinel_pool(spec: ConnectionSpec, kwargs: dict[str, Any]) -> BoundedSentinelPool:
    """The pool to the master named ``spec.master_name``, found through the sentinels."""
    url = parse_url(spec.url)  # type: ignore[no-untyped-call]  # credentials, db; not its host
    url.pop("host", None)
    url.pop("port", None)
    tls = {name: value for name, value in kwargs.items() if name.startswith("ssl_")}
    if spec.tls:
        tls["ssl"] = True
    manager = SentinelManager(  # type: ignore[no-untyped-call]
        list(spec.sentinels),
        sentinel_kwargs={
            "socket_timeout": spec.connect_timeout,
            "socket_connect_timeout": spec.connect_timeout,
            "password": spec.sentinel_password,
            # each sentinel is asked once per search; the pool's retry policy (the spec's)
            # repeats the search: redis-py's default retried each sentinel 3 times with up
            # to 10 s between tries, ~40 s before a wrong CA or password was reported
            "retry": Retry(NoBackoff(), 0),
            **tls,
        },
    )
    assert spec.master_name is not None
    pool_kwargs = {**kwargs, **{k: v for k, v in url.items() if k != "connection_class"}}
    pool_kwargs["connection_class"] = SentinelSSLConnection if spec.tls else SentinelConnection
    return BoundedSentinelPool(spec.master_name, manager, **pool_kwargs)


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

    def __init__(
        self,
        pool: redis.ConnectionPool | None,
        max_kept: int | None = None,
        *,
        shared: redis.Redis | None = None,
    ) -> None:
        self.pool = pool
        self.max_kept = max_kept
        self._local = threading.local()
        self._shared = shared
        self._lent = shared if shared is not None else redis.Redis(connection_pool=pool)
        self._lock = threading.Lock()
        self._kept = 0
        self._pid = forks.pid()

    def get(self) -> redis.Redis:
        """This thread's client (made on first use), or a lending one past ``max_kept``.

        With ``shared`` (a Cluster client, which keeps a pool per node) every
        thread shares that one.
        """
        if self._shared is not None:
            return self._shared
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
