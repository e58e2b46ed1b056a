"""Cache values as JSON, and cache-aside loading without a stampede.

:class:`~framework.redis_client.RedisClient` stores every value with
:func:`encode` and reads it back with :func:`decode`; its ``get_cached`` is
:class:`CacheAside`. This module knows nothing about Redis connections: it
talks to a :class:`CacheStore`, which the client implements on Redis.

How :meth:`CacheAside.get` keeps N concurrent misses of one key to one loader
call:

1. Threads of one process queue on a per-key :class:`KeyedLocks` lock, so only
   one of them talks to Redis about that key at a time.
2. That thread takes a short Redis lock (``SET NX PX`` with a random token);
   the other processes poll the cache until the value appears or the lock
   is free again, then take it themselves.
3. The lock expires after ``lock_ttl`` seconds, so a holder that died or
   hangs cannot block anyone for long: a waiter then takes the lock, or,
   after ``2 x lock_ttl`` at most, calls the loader itself rather than wait
   forever.

A loader that raises is not cached: the next caller (or the next waiter) calls
it again. A loader that returns ``None`` *is* cached, as JSON ``null``; a key
holding ``null`` is a hit, a missing key a miss.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from framework import defaults
from framework.errors import ConfigError, PayloadError

__all__ = [
    "CACHE_LOCK_TTL",
    "CacheAside",
    "CacheStore",
    "KeyedLocks",
    "StoreUnavailable",
    "decode",
    "encode",
    "resolve_ttl",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

CACHE_LOCK_TTL = 10.0
"""Seconds one loader may hold a key's lock before waiters call the loader themselves."""

_POLL_FIRST = 0.01
_POLL_MAX = 0.1
"""Waiters re-read the cache after 10 ms, then ever more slowly, up to every 100 ms."""


def encode(key: str, value: Any) -> str:
    """Return ``value`` as compact JSON, or raise :class:`PayloadError` naming ``key``.

    Tuples come back as lists and non-string dict keys as strings, as JSON does.
    NaN and infinity are refused: they are not JSON.

    >>> encode("k", {"a": [1, None, "é"]})
    '{"a":[1,null,"é"]}'
    """
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PayloadError(
            f"cannot cache {type(value).__name__} under key {key!r} as JSON ({exc}); "
            "store only dicts, lists, strings, numbers, booleans and None"
        ) from None


def decode(raw: bytes | str) -> Any:
    """Parse a value :func:`encode` wrote; raise ``ValueError`` if it is not JSON."""
    return json.loads(raw)


def resolve_ttl(
    ttl: int | None, ttl_name: str | None, named: Mapping[str, int], default: int
) -> int:
    """Pick a TTL: ``ttl`` if given, else ``named[ttl_name]``, else ``default``.

    An unknown ``ttl_name`` raises :class:`ConfigError` even when ``ttl`` is
    given, so a typo never hides behind an explicit TTL.

    >>> resolve_ttl(None, "CAMPAIGN_STATS", {"CAMPAIGN_STATS": 30}, 300)
    30
    """
    if ttl_name is not None and ttl_name not in named:
        known = ", ".join(sorted(named)) or "(none)"
        raise ConfigError(
            f"unknown cache TTL name {ttl_name!r}; known: {known}; "
            f"set it under [cache.ttl] in {defaults.CONFIG_PATH}"
        )
    if isinstance(ttl, str):  # the TTL's name where its seconds go: get_cached(k, f, "USER")
        known = f"one of [cache.ttl]: {', '.join(sorted(named))}" if named else "a [cache.ttl] name"
        raise ValueError(
            f"a cache TTL is a whole number of seconds from 1 to {defaults.CACHE_TTL_MAX} (30 "
            f"days), got {ttl!r}; to use {known}, pass "
            f"it by name: get_cached(key, loader, ttl_name={ttl!r})"
        )
    if ttl is not None:
        return check_ttl(ttl)
    if ttl_name is not None:
        return named[ttl_name]
    return default


def check_ttl(ttl: int) -> int:
    """Return ``ttl`` if it is a whole number of seconds >= 1, else raise ``ValueError``."""
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= defaults.CACHE_TTL_MAX:
        raise ValueError(
            f"a cache TTL is a whole number of seconds from 1 to {defaults.CACHE_TTL_MAX} "
            f"(30 days), got {ttl!r}"
        )
    return ttl


class StoreUnavailable(Exception):
    """The store cannot answer now (already logged): use the loader, skip the cache."""


class CacheStore(Protocol):
    """What :class:`CacheAside` needs from Redis. Every method logs its own failures."""

    def read(self, key: str) -> tuple[bool, Any]:
        """``(True, value)`` on a hit, ``(False, None)`` on a miss or an unreadable value.

        Raises :class:`StoreUnavailable` when Redis does not answer.
        """
        ...

    def write(self, key: str, encoded: str, ttl: int) -> None:
        """Store JSON text for ``ttl`` seconds; failures are logged and swallowed."""
        ...

    def acquire(self, key: str, ttl_ms: int) -> str | None:
        """Take ``key``'s lock for ``ttl_ms`` ms: its token, or ``None`` if someone holds it.

        Raises :class:`StoreUnavailable` when Redis does not answer.
        """
        ...

    def release(self, key: str, token: str) -> None:
        """Release ``key``'s lock if ``token`` still holds it; failures are logged."""
        ...


class KeyedLocks:
    """One ``threading.Lock`` per key, created on demand and dropped when unused."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    def __len__(self) -> int:
        """How many keys have a lock right now (0 when nobody holds or waits)."""
        with self._guard:
            return len(self._locks)

    @contextmanager
    def hold(self, key: str, timeout: float) -> Iterator[bool]:
        """Hold ``key``'s lock; yields ``False`` if ``timeout`` seconds passed first."""
        with self._guard:
            lock, users = self._locks.get(key, (None, 0))
            if lock is None:
                lock = threading.Lock()
            self._locks[key] = (lock, users + 1)
        acquired = lock.acquire(timeout=timeout)
        try:
            yield acquired
        finally:
            if acquired:
                lock.release()
            with self._guard:
                _, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


class CacheAside:
    """``get(key, loader, ttl)``: the cached value, or the loader's, computed once.

    Contract of :meth:`get`:

    * a hit returns the cached value (``None`` included) without calling ``loader``;
    * concurrent misses of one key, in any number of threads and processes,
      call ``loader`` once while its lock lives (``lock_ttl`` seconds);
    * ``loader``'s exception reaches the caller and nothing is cached;
    * a value that is not JSON raises :class:`PayloadError`, Redis up or down;
    * when Redis is down, ``loader`` is called and its value returned: no
      Redis error ever reaches the caller.
    """

    def __init__(self, store: CacheStore, *, lock_ttl: float = CACHE_LOCK_TTL) -> None:
        if lock_ttl <= 0:
            raise ValueError(f"lock_ttl is a number of seconds > 0, got {lock_ttl!r}")
        self._store = store
        self._lock_ttl = lock_ttl
        # A waiter gives up after twice the lock TTL: the holder may first wait
        # up to one TTL for another process's lock, then run the loader.
        self._patience = 2 * lock_ttl
        self._locks = KeyedLocks()

    def get(self, key: str, loader: Callable[[], T], ttl: int) -> T:
        """Return ``key``'s cached value, or call ``loader`` once and cache its value."""
        try:
            hit, value = self._store.read(key)
        except StoreUnavailable:
            return self._bypass(key, loader)
        if hit:
            return value  # type: ignore[no-any-return]
        with self._locks.hold(key, self._patience) as ours:
            if not ours:
                log.warning(
                    "another thread has been loading cache key %r for over %.1f s; "
                    "calling the loader here too",
                    key,
                    self._patience,
                )
                return self._load(key, loader, ttl)
            return self._load_once(key, loader, ttl)

    def _load_once(self, key: str, loader: Callable[[], T], ttl: int) -> T:
        # The Redis lock expires after lock_ttl, so a dead holder's lock is soon
        # taken by a waiter; the deadline only guards against a lock that
        # outlives its TTL (a holder that keeps re-taking it, clock trouble).
        deadline = time.monotonic() + self._patience
        pause = _POLL_FIRST
        while True:
            try:
                hit, value = self._store.read(key)
                if hit:
                    return value  # type: ignore[no-any-return]
                token = self._store.acquire(key, max(1, round(self._lock_ttl * 1000)))
            except StoreUnavailable:
                return self._bypass(key, loader)
            if token is not None:
                try:
                    return self._load_locked(key, loader, ttl)
                finally:
                    self._store.release(key, token)
            if time.monotonic() >= deadline:
                log.warning(
                    "cache key %r is still locked after %.1f s; calling the loader here too",
                    key,
                    self._patience,
                )
                return self._load(key, loader, ttl)
            time.sleep(pause)
            pause = min(pause * 1.5, _POLL_MAX)

    def _load_locked(self, key: str, loader: Callable[[], T], ttl: int) -> T:
        # The previous holder may have stored the value between our read and
        # our acquire: look once more before calling the loader.
        try:
            hit, value = self._store.read(key)
        except StoreUnavailable:
            return self._bypass(key, loader)
        if hit:
            return value  # type: ignore[no-any-return]
        return self._load(key, loader, ttl)

    def _load(self, key: str, loader: Callable[[], T], ttl: int) -> T:
        value = loader()
        self._store.write(key, encode(key, value), ttl)
        return value

    def _bypass(self, key: str, loader: Callable[[], T]) -> T:
        log.debug("Redis unavailable: calling the loader for cache key %r without caching", key)
        value = loader()
        encode(key, value)  # a non-JSON value is refused whether Redis is up or not
        return value
