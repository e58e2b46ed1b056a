"""SpecRetry: redis-py's retry, tried again only where that is safe and bounded.

redis-py runs a retry inside another: before a command on a connection idle for
``health_check_interval``, its health check (a PING, reconnecting on failure) has
its own retry, inside each try of the command. Against a Redis that takes
connections and never answers, 10 tries of each at a 5 s socket timeout came to
ten minutes (a consumer's shutdown waited that long).
"""

from __future__ import annotations

import pytest
import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from framework.connection import SpecRetry, never_sent, sent_once, written_once


def _failing(calls: list[str], name: str) -> None:
    calls.append(name)
    raise RedisTimeoutError("Timeout reading from socket")


def test_a_retry_inside_another_is_tried_once() -> None:
    retry = SpecRetry(NoBackoff(), 3, supported_errors=(RedisTimeoutError,))
    calls: list[str] = []
    failed: list[Exception] = []

    def command() -> None:
        calls.append("command")
        retry.call_with_retry(lambda: _failing(calls, "health check"), failed.append)

    with pytest.raises(RedisTimeoutError):
        retry.call_with_retry(command, failed.append)
    # 4 tries of the command, each with one health check: not 4 x 4
    assert calls == ["command", "health check"] * 4
    assert len(failed) == 8  # every failure still closes its connection


def test_inside_sent_once_a_command_is_sent_once() -> None:
    retry = SpecRetry(NoBackoff(), 3, supported_errors=(RedisTimeoutError,))
    calls: list[str] = []
    with sent_once(), pytest.raises(RedisTimeoutError):
        retry.call_with_retry(lambda: _failing(calls, "claim"), lambda error: None)
    assert calls == ["claim"]
    # and outside it, the pool's tries are back
    with pytest.raises(RedisTimeoutError):
        retry.call_with_retry(lambda: _failing(calls, "get"), lambda error: None)
    assert calls == ["claim", "get", "get", "get", "get"]


def test_inside_written_once_only_a_command_never_written_is_tried_again() -> None:
    # Given a retry of 3 more tries, and a connection refused twice, then a lost answer
    retry = SpecRetry(NoBackoff(), 3, supported_errors=(RedisConnectionError, RedisTimeoutError))
    errors = [
        RedisConnectionError("Error 111 connecting to cache:6379. Connection refused."),
        RedisTimeoutError("Timeout connecting to server"),
        RedisTimeoutError("Timeout reading from socket"),
    ]
    calls: list[str] = []

    def increment() -> None:
        calls.append("incr")
        raise errors[len(calls) - 1]

    # When an increment is written once
    with written_once(), pytest.raises(RedisTimeoutError, match="reading"):
        retry.call_with_retry(increment, lambda error: None)

    # Then the tries that never reached Redis were made again, the one whose answer
    # was lost was not
    assert calls == ["incr", "incr", "incr"]


def test_inside_written_once_refused_credentials_are_not_tried_again() -> None:
    retry = SpecRetry(NoBackoff(), 3, supported_errors=(RedisConnectionError,))
    calls: list[str] = []

    def increment() -> None:
        calls.append("incr")
        raise redis.AuthenticationError("invalid username-password pair")

    with written_once(), pytest.raises(redis.AuthenticationError):
        retry.call_with_retry(increment, lambda error: None)
    assert calls == ["incr"]


def test_sent_once_inside_written_once_sends_once() -> None:
    retry = SpecRetry(NoBackoff(), 3, supported_errors=(RedisConnectionError,))
    calls: list[str] = []

    def claim() -> None:
        calls.append("claim")
        raise RedisConnectionError("Error 111 connecting to cache:6379. Connection refused.")

    with written_once(), sent_once(), pytest.raises(RedisConnectionError):
        retry.call_with_retry(claim, lambda error: None)
    assert calls == ["claim"]


@pytest.mark.parametrize(
    ("error", "unsent"),
    [
        (RedisConnectionError("Error 111 connecting to cache:6379. Connection refused."), True),
        (RedisTimeoutError("Timeout connecting to server"), True),
        (redis.AuthenticationError("invalid username-password pair"), True),
        (RedisTimeoutError("Timeout reading from socket"), False),
        (RedisConnectionError("Connection closed by server."), False),
        (RedisConnectionError("Error 32 while writing to socket. Broken pipe."), False),
    ],
)
def test_never_sent_tells_a_refused_connection_from_a_lost_answer(
    error: Exception, unsent: bool
) -> None:
    assert never_sent(error) is unsent
