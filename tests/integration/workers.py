"""Running jobs in the test's own process, as Huey's Worker does: ``huey.dequeue()``,
then ``huey.execute(task)``."""

from __future__ import annotations

from framework.application import Hueyard


def run_all(app: Hueyard, queue: str) -> int:
    """Run every job of ``queue`` that may be taken now; return how many ran."""
    huey = app.queue(queue).huey
    huey.storage.read_timeout = 0.1
    ran = 0
    while (task := huey.dequeue()) is not None:
        huey.execute(task)
        ran += 1
    return ran
