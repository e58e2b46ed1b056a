"""Start-up checks that handler modules add, without the framework importing them.

A handler module whose own configuration lives outside ``queues.toml`` (the
flows of ``config/flows/``) registers a check when it is imported::

    from framework.checks import CheckReport, register_check

    def check_flows(app: Hueyard) -> CheckReport:
        book = load_flows(...)                    # raises ConfigError naming file and line
        return CheckReport("flows", ["flow", "nodes"], [["welcome", "7"]], "1 flow")

    register_check("flows", check_flows)

The process's app (:func:`framework.runtime.get_app`, what ``huey_consumer
framework.app`` and the ``hueyard`` commands build) runs the checks of the
modules that have a handler in its registry once discovery imported them: a check that raises
:class:`~framework.errors.ConfigError` stops start-up, as a bad
``queues.toml`` does. ``hueyard check`` prints each report after the queues.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from framework.application import Hueyard

__all__ = ["Check", "CheckReport", "register_check", "run_checks", "unregister_check"]


@dataclass(frozen=True)
class CheckReport:
    """What a check found: a titled table for ``hueyard check`` and a one-line summary."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    summary: str
    """One line, e.g. ``"2 flows from config/flows"``."""


Check: TypeAlias = "Callable[[Hueyard], CheckReport]"
"""A start-up check: the app in, a report out; raises ``ConfigError`` for bad config."""

_checks: dict[str, Callable[[Hueyard], CheckReport]] = {}
_lock = threading.Lock()


def register_check(name: str, check: Callable[[Hueyard], CheckReport]) -> None:
    """Run ``check`` when the process's app is built; a second registration replaces it."""
    with _lock:
        _checks[name] = check


def unregister_check(name: str) -> None:
    with _lock:
        _checks.pop(name, None)


def run_checks(app: Hueyard) -> list[CheckReport]:
    """The reports of the checks whose module has a handler in ``app``'s registry (an app
    built without that module's handlers does not need its config), in name order.
    Their errors propagate."""
    with _lock:
        checks = sorted(_checks.items())
    modules = {spec.module for spec in app.registry}
    return [check(app) for _, check in checks if check.__module__ in modules]
