"""What every view needs, built once by :func:`dashboard.create_app`.

Views reach it with :func:`current`; nothing in ``dashboard/`` keeps a global.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from flask import current_app

from dashboard.auth import Credentials, Environment
from dashboard.hosts import AllowedHosts
from dashboard.throttle import LoginThrottle
from framework.application import Hueyard
from framework.jobs import Jobs
from framework.ticks import Schedules

__all__ = ["EXTENSION", "DashboardState", "current"]

EXTENSION = "hueyard"
"""The key of the state in ``flask_app.extensions``."""


@dataclass(frozen=True)
class DashboardState:
    """The app the dashboard shows, its read/act API and the resolved options."""

    app: Hueyard
    jobs: Jobs
    schedules: Schedules
    credentials: Credentials
    environment: Environment
    read_only: bool
    open_endpoints: tuple[str, ...]
    allowed_hosts: AllowedHosts
    page_size: int
    search_limit: int
    search_bytes: int
    preview_chars: int
    csrf_secret: bytes = field(repr=False)
    throttle: LoginThrottle = field(repr=False, compare=False)
    started: float = field(default_factory=time.monotonic)

    @property
    def uptime(self) -> int:
        """Whole seconds since the dashboard was built (the spec's ``uptime``)."""
        return int(time.monotonic() - self.started)


def current() -> DashboardState:
    """The state of the Flask app handling the current request."""
    state: DashboardState = current_app.extensions[EXTENSION]
    return state
