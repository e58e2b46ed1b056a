"""RedisClient's own logic on fakeredis: JSON, None caching, TTL names, outage logging.

fakeredis stands in for the Redis server only (its ``connected = False``
emulates an outage); no framework code is replaced.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
import redis

from framework.cache import KeyedLocks, check_ttl, decode, encode, resolve_ttl
from framework.connection import ConnectionSpec
from framework.errors import ConfigError, PayloadError
from framework.redis_client import OutageLog, RedisClient

PREFIX = "hueyard:cache:"
TTLS = {"ANALYTICS_DASHBOARD": 300, "CAMPAIGN_STATS": 30}


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def raw(server: fakeredis.FakeServer) -> redis.Redis:
    return fakeredis.FakeRedis(server=server)


@pytest.fixture
def client(raw: redis.Redis) -> Iterator[RedisClient]:
    client = RedisClient(raw.connection_pool, cache_ttls=TTLS, default_ttl=90)
    yield client
    client.close()


def loader_returning(value: Any) -> tuple[list[int], Any]:
    calls: list[int] = []

    def load() -> Any:
        calls.append(1)
        return value

    return calls, load


# -- JSON ----------------------------------------------------------------------


def test_encode_is_compact_utf8_json() -> None:
    assert encode("k", {"a": [1, None, True], "é": "✓"}) == '{"a":[1,null,true],"é":"✓"}'


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        ({1, 2}, "set"),
        (object(), "object"),
        (b"bytes", "bytes"),
        (math.nan, "float"),
        ({"nested": [math.inf]}, "dict"),
    ],
)
def test_encode_refuses_what_is_not_json(value: object, type_name: str) -> None:
    with pytest.raises(PayloadError) as caught:
        encode("user:1", value)

    assert f"cannot cache {type_name} under key 'user:1' as JSON" in str(caught.value)


@pytest.mark.parametrize("raw_value", [b"\x80\x04pickle", b"{nope", b"", "not json"])
def test_decode_refuses_what_is_not_json(raw_value: bytes | str) -> None:
    with pytest.raises(ValueError):  # JSONDecodeError or UnicodeDecodeError
        decode(raw_value)


# -- TTLs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ttl", "ttl_name", "expected"),
    [
        (10, None, 10),
        (None, "CAMPAIGN_STATS", 30),
        (None, None, 90),
        (10, "CAMPAIGN_STATS", 10),
    ],
)
def test_resolve_ttl_prefers_ttl_then_name_then_default(
    ttl: int | None, ttl_name: str | None, expected: int
) -> None:
    assert resolve_ttl(ttl, ttl_name, TTLS, 90) == expected


@pytest.mark.parametrize(
    ("ttl", "names", "message"),
    [
        (
            None,
            TTLS,
            "unknown cache TTL name 'USER_PERMS'; known: ANALYTICS_DASHBOARD, CAMPAIGN_STATS; "
            "set it under [cache.ttl] in config/queues.toml",
        ),
        (
            5,
            TTLS,
            "unknown cache TTL name 'USER_PERMS'; known: ANALYTICS_DASHBOARD, CAMPAIGN_STATS; "
            "set it under [cache.ttl] in config/queues.toml",
        ),
        (
            None,
            {},
            "unknown cache TTL name 'USER_PERMS'; known: (none); "
            "set it under [cache.ttl] in config/queues.toml",
        ),
    ],
)
def test_unknown_ttl_name_is_a_config_error(
    ttl: int | None, names: dict[str, int], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_ttl(ttl, "USER_PERMS", names, 90)

    assert str(caught.value) == message


def test_a_ttl_name_given_as_the_ttl_says_to_pass_it_by_name() -> None:
    # The spec's getCached(key, fetch, 300) takes the TTL third; a name there is a slip
    with pytest.raises(ValueError) as caught:
        resolve_ttl("USER_PERMS", None, {"USER_PERMS": 900, "CONTACTS": 60}, 300)  # type: ignore[arg-type]
    assert str(caught.value) == (
        "a cache TTL is a whole number of seconds from 1 to 2592000 (30 days), got "
        "'USER_PERMS'; to use one of "
        "[cache.ttl]: CONTACTS, USER_PERMS, pass it by name: get_cached(key, loader, "
        "ttl_name='USER_PERMS')"
    )


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10", None, 30 * 86400 + 1, 10**20])
def test_check_ttl_wants_whole_positive_seconds(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"whole number of seconds from 1 to 2592000 \(30 days\)"):
        check_ttl(bad)


def test_client_refuses_a_bad_ttl_at_construction_and_call(raw: redis.Redis) -> None:
    with pytest.raises(ValueError, match="got 0"):
        RedisClient(raw.connection_pool, cache_ttls={"BROKEN": 0})
    client = RedisClient(raw.connection_pool)

    with pytest.raises(ValueError, match="got -5"):
        client.set("k", 1, ttl=-5)
    with pytest.raises(ValueError, match="got 0"):
        client.get_cached("k", lambda: 1, 0)
    assert raw.dbsize() == 0


# -- None and misses -------------------------------------------------------------


def test_a_stored_none_is_a_hit_for_get_cached(client: RedisClient, raw: redis.Redis) -> None:
    calls, load = loader_returning(None)

    assert client.get_cached("nothing", load) is None
    assert client.get_cached("nothing", load) is None

    assert calls == [1]
    assert raw.get(PREFIX + "nothing") == b"null"
    assert client.get("nothing") is None
    assert client.exists("nothing") is True


def test_get_cached_uses_the_named_ttl(client: RedisClient, raw: redis.Redis) -> None:
    client.get_cached("dash", lambda: {"x": 1}, ttl_name="ANALYTICS_DASHBOARD")
    client.get_cached("plain", lambda: 1)

    assert raw.ttl(PREFIX + "dash") == 300
    assert raw.ttl(PREFIX + "plain") == 90


def test_get_cached_leaves_no_lock_behind(client: RedisClient, raw: redis.Redis) -> None:
    client.get_cached("a", lambda: 1)
    with pytest.raises(ZeroDivisionError):
        client.get_cached("b", lambda: 1 // 0)

    assert sorted(raw.keys()) == [PREFIX.encode() + b"a"]


def test_garbage_is_a_miss_for_get_cached(
    client: RedisClient, raw: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    raw.set(PREFIX + "planted", b"\x80\x04\x95pickle")
    calls, load = loader_returning("fresh")

    assert client.get_cached("planted", load) == "fresh"
    assert calls == [1]
    assert raw.get(PREFIX + "planted") == b'"fresh"'
    assert any("not JSON hueyard wrote" in r.getMessage() for r in caplog.records)


# -- outages on fakeredis --------------------------------------------------------


def test_an_outage_is_logged_once_and_its_end_once(
    client: RedisClient, server: fakeredis.FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="framework")
    client.set("k", "v")

    # When Redis goes away
    server.connected = False
    failed = [client.get("k"), client.set("k", 1), client.exists("k"), client.incr("n")]
    calls, load = loader_returning("loaded")
    cached = client.get_cached("c", load)

    # Then
    assert failed == [None, False, False, None]
    assert cached == "loaded" and calls == [1]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].getMessage().startswith("Redis unavailable at redis://")
    assert client.health()["connected"] is False

    # When it comes back
    server.connected = True
    assert client.get("k") == "v"
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1
    assert "Redis connection restored" in infos[0]
    assert "5 operations failed meanwhile" in infos[0]


def test_outage_log_levels(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    logger = logging.getLogger("test.outage")
    outage = OutageLog("redis://cache:6379/0", attempts=10, logger=logger)

    outage.success()  # no outage: nothing logged
    outage.failure("GET", "k", "ConnectionError: refused")
    outage.failure("SET", "k", "ConnectionError: refused")
    assert outage.down
    outage.success()
    outage.success()
    outage.failure("GET", "k", "TimeoutError: timed out")

    levels = [r.levelname for r in caplog.records]
    texts = [r.getMessage() for r in caplog.records]
    assert levels == ["ERROR", "DEBUG", "INFO", "ERROR"]
    assert texts[0] == (
        "Redis unavailable at redis://cache:6379/0 after 10 reconnection attempts: "
        "ConnectionError: refused (during GET 'k')"
    )
    assert texts[1] == (
        "Redis still unavailable at redis://cache:6379/0: ConnectionError: refused (during SET 'k')"
    )
    assert texts[2].startswith("Redis connection restored at redis://cache:6379/0 after ")
    assert texts[2].endswith("(2 operations failed meanwhile)")
    assert texts[3] == (
        "Redis unavailable at redis://cache:6379/0 after 10 reconnection attempts: "
        "TimeoutError: timed out (during GET 'k')"
    )
    assert outage.down
    outage.success()
    assert not outage.down


def test_an_outage_of_refused_credentials_says_so_not_reconnection_attempts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = OutageLog("redis://cache:6379/0", attempts=10, logger=logging.getLogger("test.creds"))
    outage.failure("GET", "k", "AuthenticationError: invalid username-password pair")
    [told] = [r.getMessage() for r in caplog.records]
    assert told.startswith(
        "Redis at redis://cache:6379/0 refused the credentials: AuthenticationError: invalid "
        "username-password pair (during GET 'k'); check the user and password of [redis] url"
    )


def test_outage_log_is_thread_safe(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    outage = OutageLog("redis://cache:6379/0", attempts=1, logger=logging.getLogger("test.o"))
    start = threading.Barrier(16)

    def fail() -> None:
        start.wait()
        outage.failure("GET", "k", "ConnectionError")

    threads = [threading.Thread(target=fail) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [r.levelname for r in caplog.records].count("ERROR") == 1
    assert [r.levelname for r in caplog.records].count("DEBUG") == 15


# -- per-key thread locks ----------------------------------------------------------


def test_keyed_locks_are_dropped_after_use_and_time_out() -> None:
    locks = KeyedLocks()
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with locks.hold("k", timeout=1):
            held.set()
            release.wait(timeout=5)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(timeout=5)
    with locks.hold("k", timeout=0.05) as ours:
        assert ours is False
    with locks.hold("other", timeout=0.05) as ours:
        assert ours is True
        assert len(locks) == 2
    release.set()
    thread.join()

    assert len(locks) == 0


# -- URLs and secrets --------------------------------------------------------------


def test_repr_derives_the_url_from_the_pool_without_the_password() -> None:
    pool = redis.ConnectionPool(host="10.0.0.7", port=6380, db=3, password="hunter2")

    client = RedisClient(pool)

    assert repr(client) == "RedisClient(url='redis://10.0.0.7:6380/3')"


def test_url_for_logs_is_redacted_even_if_given_raw() -> None:
    pool = redis.ConnectionPool(host="cache", password="hunter2")

    client = RedisClient(pool, url_for_logs="redis://app:hunter2@cache:6379/0")

    assert repr(client) == "RedisClient(url='redis://app:***@cache:6379/0')"


def test_from_spec_uses_the_specs_redacted_url_and_retries() -> None:
    spec = ConnectionSpec("redis://:hunter2@cache:6379/2", reconnect_attempts=4)

    client = RedisClient.from_spec(spec)

    assert repr(client) == "RedisClient(url='redis://:***@cache:6379/2')"
    assert client.outage.attempts == 4
    assert client.outage.url == "redis://:***@cache:6379/2"
    client.close()


def test_error_texts_are_scrubbed_of_the_password() -> None:
    # Defence in depth: redis-py's own messages do not carry the password,
    # but a proxy or a future version might echo it back.
    client = RedisClient(redis.ConnectionPool(host="cache", password="hunter2"))

    text = client._describe(RuntimeError("AUTH hunter2 rejected"))

    assert text == "RuntimeError: AUTH *** rejected"
