"""The two consumers ``benchmarks.startup`` starts, and what their first job does.

- ``benchmarks.startup_apps.raw``: a stock ``PriorityRedisHuey`` and one task,
  run as ``huey_consumer benchmarks.startup_apps.raw.huey``;
- ``benchmarks.startup_apps.handlers``: one hueyard handler on the queue
  ``bench``, found by ``huey_consumer framework.app`` through
  ``HUEYARD_HANDLER_MODULES``.

Both jobs call :func:`mark_started` first thing. This module imports nothing
but ``redis``, which both consumers import anyway, so neither side pays for
the other's code.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis

__all__ = ["RAW_QUEUE", "RAW_TASK", "STARTED_KEY", "URL_ENV", "mark_started", "raw_job"]

URL_ENV = "BENCH_START_URL"
"""The benchmark database's URL, given to both consumers in their environment."""

STARTED_KEY = "bench:start:started"
"""The list the first job pushes its start time to (``time.time()``, as text)."""

RAW_QUEUE = "bench_start"
"""The raw Huey instance's name."""

RAW_TASK = "started"
"""The raw Huey task's name (Huey registers it as ``<module of the function>.started``)."""


def mark_started() -> None:
    """Note the time, then push it to :data:`STARTED_KEY`, where the benchmark waits."""
    now = time.time()
    conn = redis.Redis.from_url(os.environ[URL_ENV])
    try:
        conn.rpush(STARTED_KEY, repr(now))
    finally:
        conn.close()


def raw_job(payload: Any) -> None:
    """The raw Huey task. It lives here, not in ``raw``, because Huey names a task after
    its function's module: the benchmark, which enqueues it, and the consumer must agree."""
    mark_started()
