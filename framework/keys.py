"""Every Redis key hueyard writes is spelled here, and only here.

All keys of one app carry the Redis Cluster hash tag ``{<prefix>}``, so the
multi-key Lua scripts of one app always run on one Cluster slot.
"""

from __future__ import annotations

__all__ = ["Keys"]


class Keys:
    """Key builder for one app (one ``[redis] prefix``)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.tag = "{" + prefix + "}"

    def huey_name(self, queue: str) -> str:
        """The name of a queue's Huey instance; Huey derives its own keys from it."""
        return f"{self.tag}.{queue}"

    def cache(self, key: str) -> str:
        """A cache entry of :class:`framework.redis_client.RedisClient`."""
        return f"{self.prefix}:cache:{key}"
