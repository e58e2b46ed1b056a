"""Shared fixtures: a dedicated, cleaned database on the real Redis server.

The server is the one at 127.0.0.1:6379 (``.ci/run`` makes sure it answers).
Tests use database ``$HUEYARD_TEST_REDIS_DB`` (default 15) and flush only that
database, before and after each test that asks for it. A missing server fails
the run instead of skipping it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

TEST_DB = int(os.environ.get("HUEYARD_TEST_REDIS_DB", "15"))
TEST_HOST = os.environ.get("HUEYARD_TEST_REDIS_HOST", "127.0.0.1")
TEST_PORT = int(os.environ.get("HUEYARD_TEST_REDIS_PORT", "6379"))


@pytest.fixture
def redis_url() -> str:
    return f"redis://{TEST_HOST}:{TEST_PORT}/{TEST_DB}"


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[redis.Redis]:
    """A client on the dedicated test database, flushed before and after."""
    conn = redis.Redis.from_url(redis_url)
    try:
        conn.ping()
    except redis.ConnectionError as exc:  # pragma: no cover - CI starts the server
        pytest.fail(f"no Redis server at {redis_url}: {exc}; start one (see .ci/run)")
    conn.flushdb()
    yield conn
    conn.flushdb()
    conn.close()
