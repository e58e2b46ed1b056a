"""RedisClient against real Redis: the shared server's test DB, and private servers.

Only the DB named by ``HUEYARD_TEST_REDIS_DB`` (default 15) is ever flushed;
tests that stop Redis start their own ``redis-server``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from framework.connection import ConnectionSpec
from framework.errors import ConfigError, PayloadError
from framework.redis_client import RedisClient
from tests.integration.redis_server import RedisServer, free_port

PREFIX = "hueyard:cache:"
LOCK_PREFIX = "hueyard:cache-lock:"  # where get_cached keeps a key's loader lock
TTLS = {"CAMPAIGN_STATS": 30, "CONTACT_DETAILS": 60, "USER_PERMISSIONS": 300}
LOGGER = "framework.redis_client"


@pytest.fixture
def raw(redis_conn: redis.Redis) -> redis.Redis:
    """A plain redis-py client on the test DB (flushed before and after, by conftest)."""
    return redis_conn


@pytest.fixture
def client(raw: redis.Redis, redis_url: str) -> Iterator[RedisClient]:
    """The client under test, on the test DB, with known TTL names and default TTL."""
    client = RedisClient.from_spec(
        ConnectionSpec(redis_url), cache_ttls=TTLS, default_ttl=123, lock_ttl=2.0
    )
    yield client
    client.close()


def fast_spec(url: str) -> ConnectionSpec:
    """Short timeouts and 3 reconnection tries: a failing call takes about 0.3 s."""
    return ConnectionSpec(url, socket_timeout=0.5, connect_timeout=0.5, reconnect_attempts=3)


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level and r.name == LOGGER]


# -- operations --------------------------------------------------------------

UNICODE = "héllo ✓ 日本語 🚀"


@pytest.mark.parametrize(
    "value",
    [
        {"user": 123, "roles": ["admin", "agent"], "active": True},
        [1, 2.5, "three", None, {"four": 4}],
        "a plain string",
        42,
        -7.25,
        False,
        None,
        UNICODE,
        {UNICODE: [UNICODE]},
    ],
    ids=lambda v: type(v).__name__,
)
def test_values_round_trip_as_json(client: RedisClient, raw: redis.Redis, value: object) -> None:
    # When
    stored = client.set("round:trip", value)

    # Then
    assert stored is True
    assert client.get("round:trip") == value
    assert client.exists("round:trip") is True
    stored_text = raw.get(PREFIX + "round:trip")
    assert stored_text is not None
    assert b"\\u" not in stored_text  # UTF-8 text, not escapes
    assert b": " not in stored_text and b", " not in stored_text  # compact separators


def test_every_value_set_expires_by_its_ttl_its_ttl_name_or_the_default(
    client: RedisClient, raw: redis.Redis
) -> None:
    client.set("user:123:permissions", ["read"], ttl=300)
    client.set("contact:9", {"name": "Ada"}, ttl_name="CONTACT_DETAILS")
    client.set("no:ttl:named", 1)

    assert 295 <= raw.ttl(PREFIX + "user:123:permissions") <= 300
    assert 55 <= raw.ttl(PREFIX + "contact:9") <= 60
    assert 118 <= raw.ttl(PREFIX + "no:ttl:named") <= 123  # [cache] default_ttl: never forever
    with pytest.raises(ConfigError, match="unknown cache TTL name 'CONTACTS'"):
        client.set("x", 1, ttl_name="CONTACTS")


def test_a_counter_lives_its_ttl_from_its_first_increment(
    client: RedisClient, raw: redis.Redis
) -> None:
    # Given a day's counter, incremented once
    assert client.incr("messages:sent:2026-12-01", ttl=86_400) == 1
    raw.expire(PREFIX + "messages:sent:2026-12-01", 1_000)  # as if most of the day went by
    # When it is incremented again (with its TTL named again, as a caller does)
    assert client.incr("messages:sent:2026-12-01", amount=10, ttl=86_400) == 11
    # Then it keeps the expiry it had: it ends a day after it began, not after the last
    assert 990 <= raw.ttl(PREFIX + "messages:sent:2026-12-01") <= 1_000
    # And a counter without a TTL named lives the default; one made before counters had
    # a TTL gets one at its next increment (nothing the cache writes stays forever)
    client.incr("plain")
    assert 118 <= raw.ttl(PREFIX + "plain") <= 123
    raw.set(PREFIX + "old", 5)
    assert client.incr("old", ttl_name="CAMPAIGN_STATS") == 6
    assert 25 <= raw.ttl(PREFIX + "old") <= 30
    assert client.get("old") == 6


@pytest.mark.parametrize("amount", [1.5, True, "2"])
def test_a_counter_takes_a_whole_number(client: RedisClient, amount: object) -> None:
    with pytest.raises(TypeError, match="whole number"):
        client.incr("n", amount=amount)  # type: ignore[arg-type]


def test_set_refuses_a_value_that_is_not_json(client: RedisClient, raw: redis.Redis) -> None:
    with pytest.raises(PayloadError) as caught:
        client.set("bad", {1, 2})

    message = str(caught.value)
    assert "hueyard:cache:bad" in message
    assert "set" in message
    assert raw.exists(PREFIX + "bad") == 0


def test_missing_key_reads_as_none_and_false(client: RedisClient) -> None:
    assert client.get("nope") is None
    assert client.exists("nope") is False
    assert client.delete("nope") is False


def test_delete_removes_the_key(client: RedisClient, raw: redis.Redis) -> None:
    client.set("gone", "soon")

    assert client.delete("gone") is True
    assert raw.exists(PREFIX + "gone") == 0
    assert client.get("gone") is None


def test_incr_counts_from_zero_and_by_amount(client: RedisClient) -> None:
    assert client.incr("messages:sent:today") == 1
    assert client.incr("messages:sent:today") == 2
    assert client.incr("messages:sent:today", amount=10) == 12
    assert client.get("messages:sent:today") == 12


def test_incr_on_a_non_integer_logs_and_returns_none(
    client: RedisClient, caplog: pytest.LogCaptureFixture, redis_url: str
) -> None:
    client.set("label", "not a number")

    assert client.incr("label") is None
    [error] = messages(caplog, logging.ERROR)
    assert "INCRBY 'hueyard:cache:label'" in error
    assert "not an integer" in error
    assert redis_url in error


def test_garbage_in_redis_reads_as_none_and_is_logged(
    client: RedisClient, raw: redis.Redis, caplog: pytest.LogCaptureFixture, redis_url: str
) -> None:
    # Given a value hueyard did not write
    raw.set(PREFIX + "planted", b"\x80\x04\x95 pickle-ish {not json")

    # When
    value = client.get("planted")

    # Then
    assert value is None
    [error] = messages(caplog, logging.ERROR)
    assert "GET 'hueyard:cache:planted'" in error
    assert "not JSON hueyard wrote" in error
    assert redis_url in error


def test_a_key_of_another_type_reads_as_none_and_is_logged(
    client: RedisClient, raw: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    raw.rpush(PREFIX + "a-list", "x")

    assert client.get("a-list") is None
    [error] = messages(caplog, logging.ERROR)
    assert "WRONGTYPE" in error


def test_keys_get_the_configured_prefix(raw: redis.Redis, redis_url: str) -> None:
    client = RedisClient.from_spec(ConnectionSpec(redis_url), key_prefix="crm:")
    try:
        client.set("k", "v")
        assert raw.get("crm:k") == b'"v"'
    finally:
        client.close()


# -- get_cached ----------------------------------------------------------------


class CountingLoader:
    """A loader that counts its calls (thread-safe) and can be slow."""

    def __init__(self, value: Any = "fresh", delay: float = 0.0) -> None:
        self.value = value
        self.delay = delay
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        return self.value


def test_get_cached_calls_the_loader_on_a_miss_only(client: RedisClient, raw: redis.Redis) -> None:
    loader = CountingLoader({"sent": 10})

    first = client.get_cached("analytics:dashboard", loader, 300)
    second = client.get_cached("analytics:dashboard", loader, 300)

    assert first == second == {"sent": 10}
    assert loader.calls == 1
    assert 295 <= raw.ttl(PREFIX + "analytics:dashboard") <= 300
    assert raw.exists(LOCK_PREFIX + "analytics:dashboard") == 0


@pytest.mark.parametrize(
    ("ttl", "ttl_name", "low", "high"),
    [
        (None, "CAMPAIGN_STATS", 25, 30),
        (None, "USER_PERMISSIONS", 295, 300),
        (None, None, 118, 123),  # the client's default_ttl
        (7, "CONTACT_DETAILS", 2, 7),  # an explicit ttl wins
    ],
)
def test_get_cached_ttl_comes_from_ttl_then_name_then_default(
    client: RedisClient,
    raw: redis.Redis,
    ttl: int | None,
    ttl_name: str | None,
    low: int,
    high: int,
) -> None:
    client.get_cached("stats", CountingLoader(), ttl, ttl_name=ttl_name)

    assert low <= raw.ttl(PREFIX + "stats") <= high


def test_get_cached_unknown_ttl_name_says_which_names_exist(
    client: RedisClient, raw: redis.Redis
) -> None:
    loader = CountingLoader()

    with pytest.raises(ConfigError) as caught:
        client.get_cached("perms", loader, ttl_name="USER_PERMS")

    assert str(caught.value) == (
        "unknown cache TTL name 'USER_PERMS'; known: CAMPAIGN_STATS, CONTACT_DETAILS, "
        "USER_PERMISSIONS; set it under [cache.ttl] in config/queues.toml"
    )
    assert loader.calls == 0
    assert raw.dbsize() == 0


def test_get_cached_caches_none(client: RedisClient, raw: redis.Redis) -> None:
    loader = CountingLoader(None)

    assert client.get_cached("empty", loader) is None
    assert client.get_cached("empty", loader) is None

    assert loader.calls == 1
    assert raw.get(PREFIX + "empty") == b"null"


def test_get_cached_does_not_cache_a_loader_error(client: RedisClient, raw: redis.Redis) -> None:
    def failing() -> str:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError, match="database down"):
        client.get_cached("report", failing)

    assert raw.exists(PREFIX + "report") == 0
    assert raw.exists(LOCK_PREFIX + "report") == 0
    assert client.get_cached("report", CountingLoader("ok")) == "ok"


def test_get_cached_refuses_a_loader_value_that_is_not_json(
    client: RedisClient, raw: redis.Redis
) -> None:
    with pytest.raises(PayloadError, match="hueyard:cache:obj"):
        client.get_cached("obj", object)

    assert raw.exists(PREFIX + "obj") == 0
    assert raw.exists(LOCK_PREFIX + "obj") == 0


def test_get_cached_replaces_garbage_with_the_loaders_value(
    client: RedisClient, raw: redis.Redis
) -> None:
    raw.set(PREFIX + "planted", b"{not json")
    loader = CountingLoader([1, 2])

    assert client.get_cached("planted", loader) == [1, 2]
    assert client.get("planted") == [1, 2]
    assert loader.calls == 1


def test_twenty_threads_missing_one_key_call_the_loader_once(client: RedisClient) -> None:
    # Given
    loader = CountingLoader({"segments": 5}, delay=0.2)
    start = threading.Barrier(20)
    results: list[Any] = []

    def reader() -> None:
        start.wait()
        results.append(client.get_cached("segment:counts", loader, 60))

    threads = [threading.Thread(target=reader) for _ in range(20)]

    # When
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    # Then
    assert loader.calls == 1
    assert results == [{"segments": 5}] * 20


def _stampede_process(url: str, start: Any, results: Any) -> None:
    """One of several processes missing the same key at once (runs in a child)."""
    client = RedisClient.from_spec(ConnectionSpec(url))
    counter = redis.Redis.from_url(url)

    def loader() -> dict[str, int]:
        counter.incr("stampede:loader-calls")
        time.sleep(0.2)
        return {"computed_by": os.getpid()}

    values: list[Any] = []

    def reader() -> None:
        values.append(client.get_cached("stampede", loader, 60))

    threads = [threading.Thread(target=reader) for _ in range(3)]
    start.wait(timeout=30)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    results.put(values)
    client.close()


def test_four_processes_missing_one_key_call_the_loader_once(
    raw: redis.Redis, redis_url: str
) -> None:
    # Given 4 processes x 3 threads, released together
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(4)
    results = context.Queue()
    processes = [
        context.Process(target=_stampede_process, args=(redis_url, start, results))
        for _ in range(4)
    ]

    # When
    for process in processes:
        process.start()
    collected = [results.get(timeout=30) for _ in processes]
    for process in processes:
        process.join(timeout=10)

    # Then
    assert [process.exitcode for process in processes] == [0, 0, 0, 0]
    assert raw.get("stampede:loader-calls") == b"1"
    values = [value for per_process in collected for value in per_process]
    assert len(values) == 12
    assert all(value == values[0] for value in values)


def test_a_waiter_loads_itself_once_a_dead_holders_lock_expires(
    raw: redis.Redis, redis_url: str
) -> None:
    # Given a lock left by a process that died while loading
    client = RedisClient.from_spec(ConnectionSpec(redis_url), lock_ttl=0.3)
    raw.set(LOCK_PREFIX + "orphan", "dead-token", px=300)
    loader = CountingLoader("recomputed")

    # When
    started = time.monotonic()
    value = client.get_cached("orphan", loader)
    waited = time.monotonic() - started
    client.close()

    # Then
    assert value == "recomputed"
    assert loader.calls == 1
    assert 0.2 <= waited < 1.5


def test_a_waiter_gives_up_on_a_lock_that_never_expires(
    raw: redis.Redis, caplog: pytest.LogCaptureFixture, redis_url: str
) -> None:
    # Given a lock without expiry (never written by hueyard, but possible by hand)
    client = RedisClient.from_spec(ConnectionSpec(redis_url), lock_ttl=0.2)
    raw.set(LOCK_PREFIX + "stuck", "someone")
    loader = CountingLoader("mine")

    # When
    started = time.monotonic()
    value = client.get_cached("stuck", loader)
    waited = time.monotonic() - started
    client.close()

    # Then: about 2 x lock_ttl, then the loader runs here
    assert value == "mine"
    assert loader.calls == 1
    assert 0.35 <= waited < 1.5
    assert any("still locked" in r.getMessage() for r in caplog.records)
    assert raw.get(LOCK_PREFIX + "stuck") == b"someone"  # not ours to release


# -- health --------------------------------------------------------------------


def test_health_reports_latency_when_connected(client: RedisClient) -> None:
    health = client.health()

    assert health["connected"] is True
    assert health["latency_ms"] is not None and 0 < health["latency_ms"] < 1000
    assert health["error"] is None
    assert client.is_connected() is True


def test_repr_shows_the_url_only(client: RedisClient, redis_url: str) -> None:
    assert repr(client) == f"RedisClient(url={redis_url!r})"


# -- outages -------------------------------------------------------------------


def test_client_survives_a_server_that_stops_and_comes_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    server = RedisServer().start()
    client = RedisClient.from_spec(fast_spec(server.url))
    try:
        # Given a working client
        assert client.set("k", "before") is True
        assert client.get("k") == "before"

        # When the server stops
        server.stop()
        started = time.monotonic()
        outcomes = [
            client.get("k"),
            client.set("k", "during"),
            client.exists("k"),
            client.delete("k"),
            client.incr("n"),
        ]
        elapsed = time.monotonic() - started

        # Then every operation fails softly, and the outage is logged once
        assert outcomes == [None, False, False, False, None]
        assert elapsed < 5
        [error] = messages(caplog, logging.ERROR)
        assert error.startswith(
            f"Redis unavailable at {server.url} after 3 reconnection attempts: ConnectionError"
        )
        assert len(messages(caplog, logging.DEBUG)) >= 4
        assert client.outage.down

        started = time.monotonic()
        health = client.health()
        assert time.monotonic() - started < 2
        assert health["connected"] is False
        assert health["latency_ms"] is None
        assert health["error"] is not None and "ConnectionError" in health["error"]

        loader = CountingLoader("from the database")
        assert client.get_cached("dashboard", loader) == "from the database"
        assert client.get_cached("dashboard", loader) == "from the database"
        assert loader.calls == 2  # nothing could be cached
        assert len(messages(caplog, logging.ERROR)) == 1

        # When the server comes back on the same port
        server.start()

        # Then the same client works again, and says so once
        assert client.set("k", "after") is True
        assert client.get("k") == "after"
        assert client.health()["connected"] is True
        [restored] = messages(caplog, logging.INFO)
        assert restored.startswith(f"Redis connection restored at {server.url}")
        assert not client.outage.down
        # (the restarted server has no scripts loaded: the lock release reloads its own)
        assert client.get_cached("dashboard", loader) == "from the database"
        assert client.get_cached("dashboard", loader) == "from the database"
        assert loader.calls == 3  # cached again
        with server.client() as plain:
            assert plain.keys("hueyard:cache-lock:*") == []

        # And a second outage is logged again, once
        server.stop()
        assert client.get("k") is None
        assert client.get("k") is None
        assert len(messages(caplog, logging.ERROR)) == 2
    finally:
        client.close()
        server.stop()


def test_health_answers_fast_when_nothing_listens() -> None:
    client = RedisClient.from_spec(ConnectionSpec(f"redis://127.0.0.1:{free_port()}/0"))
    try:
        started = time.monotonic()
        health = client.health()
        elapsed = time.monotonic() - started
    finally:
        client.close()

    assert health["connected"] is False
    assert elapsed < 1.0  # the default 10-try loop would take about 2.75 s


# -- secrets -------------------------------------------------------------------


def _exercise(client: RedisClient) -> list[str]:
    """Call everything that can fail; return every text the client produced."""
    texts = [repr(client), str(client.health()), str(client.is_connected())]
    texts += [
        str(client.set("k", 1)),
        str(client.get("k")),
        str(client.exists("k")),
        str(client.delete("k")),
        str(client.incr("k")),
        str(client.get_cached("k", lambda: "loaded")),
    ]
    return texts


def test_the_password_never_leaks_when_nothing_listens(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, redis-py's included
    port = free_port()
    url = f"redis://:hunter2@127.0.0.1:{port}/0"
    client = RedisClient.from_spec(fast_spec(url))
    try:
        texts = _exercise(client)
    finally:
        client.close()

    assert repr(client) == f"RedisClient(url='redis://:***@127.0.0.1:{port}/0')"
    assert "ConnectionError" in texts[1]
    assert caplog.records, "the failures should have been logged"
    assert all("hunter2" not in text for text in texts)
    assert all("hunter2" not in record.getMessage() for record in caplog.records)
    assert "hunter2" not in caplog.text


def test_the_password_never_leaks_when_it_is_wrong(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with RedisServer(None, "--requirepass", "the-right-one") as server:
        url = f"redis://:hunter2@127.0.0.1:{server.port}/0"
        client = RedisClient.from_spec(fast_spec(url))
        try:
            texts = _exercise(client)
        finally:
            client.close()

    health_text = texts[1]
    assert "AuthenticationError" in health_text or "WRONGPASS" in health_text
    assert any("unavailable" in r.getMessage() for r in caplog.records)
    assert all("hunter2" not in text for text in texts)
    assert "hunter2" not in caplog.text


def test_server_info_reads_info_once_and_is_none_when_redis_is_down(client: RedisClient) -> None:
    info = client.server_info()
    assert info is not None
    assert str(info["redis_version"]).count(".") >= 1
    dead = RedisClient.from_spec(ConnectionSpec(f"redis://127.0.0.1:{free_port()}/0"))
    try:
        started = time.monotonic()
        assert dead.server_info() is None
        assert time.monotonic() - started < 2
    finally:
        dead.close()
