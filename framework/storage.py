"""The storage under every queue's Huey instance: the one place to swap it.

Today each queue uses Huey's ``PriorityRedisExpireStorage`` (a sorted set per
queue, results that expire after ``[consumer] result_ttl``). The job-state
storage with Lua scripts replaces it here without touching handlers, config or
the producer API.
"""

from __future__ import annotations

from typing import Any

import redis
from huey.storage import PriorityRedisExpireStorage

from framework.settings import Settings

__all__ = ["BLOCKING_READ_TIMEOUT", "storage_options"]

BLOCKING_READ_TIMEOUT = 1
"""Seconds an idle worker blocks in Redis before it checks the stop flag."""


def storage_options(settings: Settings, pool: redis.ConnectionPool) -> dict[str, Any]:
    """Keyword arguments for ``Huey(...)`` that select and configure the storage."""
    return {
        "storage_class": PriorityRedisExpireStorage,
        "connection_pool": pool,
        "expire_time": settings.consumer.result_ttl,
        "blocking": True,
        "read_timeout": BLOCKING_READ_TIMEOUT,
        "clean_name": False,
    }
