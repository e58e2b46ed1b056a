"""What a consumer starts, in which order: no queue's first worker waits behind another's."""

from __future__ import annotations

import re
import threading
from typing import Any

from framework.handlers import HandlerRegistry, handler
from tests.conftest import AppFactory


def _noop(payload: Any) -> None:
    """A handler that is never run: these tests only start and stop workers."""


def test_the_first_worker_of_every_queue_starts_before_any_second_one(
    make_app: AppFactory,
) -> None:
    # Given three queues, the first at concurrency 3, the last at 1
    registry = HandlerRegistry()
    for queue in ("alpha", "beta", "gamma"):
        handler(queue, name="noop", registry=registry)(_noop)
    body = """
    [queues.alpha]
    concurrency = 3
    [queues.beta]
    concurrency = 2
    [queues.gamma]
    concurrency = 1
    """
    app = make_app(body, registry, prefix="start")
    consumer = app.create_consumer(worker_type="thread")
    before = set(threading.enumerate())
    # When it starts
    consumer.start()
    try:
        started = [t.name for t in threading.enumerate() if t not in before]
    finally:
        consumer.stop(graceful=True)
    # Then the threads started round the queues, worker by worker, the scheduler last
    ours = [name for name in started if re.fullmatch(r"Scheduler|(alpha|beta|gamma)-\d", name)]
    assert ours == [
        "alpha-1", "beta-1", "gamma-1", "alpha-2", "beta-2", "alpha-3", "Scheduler",
    ]  # fmt: skip
