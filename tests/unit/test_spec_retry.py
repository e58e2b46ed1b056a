"""SpecRetry: redis-py's retry, tried again only where that is safe and bounded.

redis-py runs a retry inside another: before a command on a connection idle for
``health_check_interval``, its health check (a PING, reconnecting on failure) has
its own retry, inside each try of the command. Against a Redis that takes
connections and never answers, 10 tries of each at a 5 s socket timeout came to
ten minutes (a consumer's shutdown waited that long).
"""

from __future__ import annotations

import pytest
from redis.backoff import NoBackoff
from redis.exceptions import TimeoutError as RedisTimeoutError

from framework.connection import SpecRetry, sent_once


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
