"""The handlers of ``benchmarks.cluster``: one no-op handler, ``noop``, on each queue.

``huey_consumer framework.app`` imports this module (``HUEYARD_HANDLER_MODULES``)
and registers ``noop`` on the queues named in ``$BENCH_CLUSTER_QUEUES``
(comma-separated); the benchmark process calls :func:`register` on a private
registry instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from framework.handlers import HandlerRegistry, handler

__all__ = ["QUEUES_ENV", "noop", "register"]

QUEUES_ENV = "BENCH_CLUSTER_QUEUES"


def noop(payload: dict[str, Any]) -> None:
    """The job: nothing. What is measured is hueyard's and Redis's work around it."""


def register(queues: Iterable[str], registry: HandlerRegistry | None = None) -> None:
    for queue in queues:
        handler(queue, name="noop", registry=registry)(noop)


register(filter(None, os.environ.get(QUEUES_ENV, "").split(",")))
