"""The Redis server's clock: the one clock hueyard's decisions go by.

The scripts read ``TIME`` inside Redis (claims, leases, delays, rate limits,
finished times). What Python decides against those times reads the same clock,
so that a host whose clock is wrong (by a minute or an hour) still fires each
schedule tick at its time, still shows as a live consumer, and still delivers
the notices its peers left behind, and a dashboard on such a host still reads
this minute's metrics: :func:`server_seconds`, :func:`server_ms` and
:func:`server_now`, one ``TIME`` round trip each.

A user whose ACL refuses ``TIME`` (a reader's, such as a dashboard's: a
consumer's scripts need it) gets this host's clock instead, not an error.
"""

from __future__ import annotations

import datetime
import logging
import time
from typing import Any

import redis

__all__ = ["server_ms", "server_now", "server_seconds"]

logger = logging.getLogger("hueyard")


def server_seconds(conn: Any) -> float:
    """The Redis server's time, in epoch seconds (``TIME``)."""
    try:
        seconds, micros = conn.time()
    except redis.ResponseError as exc:  # NOPERM: TIME is not this user's
        logger.debug("TIME refused (%s); reading this host's clock instead", exc)
        return time.time()
    return int(seconds) + int(micros) / 1e6


def server_ms(conn: Any) -> int:
    """The Redis server's time, in epoch milliseconds (``TIME``)."""
    return int(server_seconds(conn) * 1000)


def server_now(conn: Any) -> datetime.datetime:
    """The Redis server's time, as an aware UTC datetime, to the microsecond."""
    return datetime.datetime.fromtimestamp(server_seconds(conn), datetime.UTC)
