"""What one ``INFO`` says about the Redis server: role, memory, its limit and eviction policy.

``hueyard doctor`` (:mod:`framework.doctor`) and ``/metrics`` read the same
fields, from one ``INFO`` call (:meth:`framework.redis_client.RedisClient.server_info`,
one try, no reconnection loop)::

    info = RedisInfo.parse(app.cache.server_info() or {})
    info.is_replica            # INFO replication role:slave: writes are refused
    info.memory_ratio          # used_memory / maxmemory; None without a limit
    info.may_evict             # a maxmemory-policy other than noeviction

A field the server does not report (an old Redis, a proxy) is None, never an
error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["NO_EVICTION", "RedisInfo"]

NO_EVICTION = "noeviction"
"""The one ``maxmemory-policy`` that never deletes a key: a full Redis refuses writes instead."""


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class RedisInfo:
    """The fields of ``INFO`` that say whether jobs can be stored and kept."""

    version: str | None = None
    role: str | None = None
    """``master``, or ``slave`` for a replica (Redis still says ``slave``)."""
    primary: str | None = None
    """``host:port`` a replica copies from."""
    used_memory: int | None = None
    """Bytes Redis has allocated (``used_memory``)."""
    maxmemory: int | None = None
    """Bytes past which the policy applies; 0: no limit."""
    maxmemory_policy: str | None = None
    connected_clients: int | None = None

    @classmethod
    def parse(cls, info: Mapping[str, Any]) -> RedisInfo:
        """From redis-py's ``info()`` dict."""
        host, port = info.get("master_host"), info.get("master_port")
        return cls(
            version=_text(info.get("redis_version")),
            role=_text(info.get("role")),
            primary=f"{host}:{port}" if host is not None else None,
            used_memory=_whole(info.get("used_memory")),
            maxmemory=_whole(info.get("maxmemory")),
            maxmemory_policy=_text(info.get("maxmemory_policy")),
            connected_clients=_whole(info.get("connected_clients")),
        )

    @property
    def is_replica(self) -> bool:
        return self.role is not None and self.role != "master"

    @property
    def memory_ratio(self) -> float | None:
        """``used_memory / maxmemory``; None when there is no limit (0) or a field is missing."""
        if not self.maxmemory or self.used_memory is None:
            return None
        return self.used_memory / self.maxmemory

    @property
    def may_evict(self) -> bool:
        """Whether Redis may delete keys to make room: any policy but ``noeviction``."""
        return self.maxmemory_policy is not None and self.maxmemory_policy != NO_EVICTION

    @property
    def evicts(self) -> str:
        """What the policy deletes at the memory limit, of hueyard's keys (for a message)."""
        if (self.maxmemory_policy or "").startswith("volatile-"):
            return (
                "keys with a TTL: rate-limit windows, consumer heartbeats, schedule state, "
                "job keys, metrics and the cache"
            )
        return "any key: job records, queue sets, pause flags"
