"""Raw Huey for ``benchmarks.startup``: ``huey_consumer benchmarks.startup_apps.raw.huey``.

A stock ``PriorityRedisHuey`` on the benchmark database (``$BENCH_START_URL``)
and the one task the benchmark enqueues.
"""

from __future__ import annotations

import os

from huey import PriorityRedisHuey

from benchmarks.startup_apps import RAW_QUEUE, RAW_TASK, URL_ENV, raw_job

huey = PriorityRedisHuey(RAW_QUEUE, url=os.environ[URL_ENV])

started = huey.task(name=RAW_TASK)(raw_job)
