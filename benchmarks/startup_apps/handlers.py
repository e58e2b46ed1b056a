"""The hueyard handler of ``benchmarks.startup``, found through ``HUEYARD_HANDLER_MODULES``.

``huey_consumer framework.app`` imports it while it builds the app (the config
in ``$HUEYARD_CONFIG`` declares the queue ``bench``).
"""

from __future__ import annotations

from typing import Any

from benchmarks.startup_apps import mark_started
from framework import handler


@handler("bench")
def started(payload: dict[str, Any]) -> None:
    mark_started()
