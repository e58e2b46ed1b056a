"""Start-up checks of a handler's own configuration, without the framework importing it.

A handler whose configuration lives outside the queues (a ``[providers.<name>]``
table, the flows of ``config/flows/``) attaches a check to itself::

    @notify.startup_check
    def _check(settings: Settings) -> None:
        routing(settings.providers)               # raises ConfigError naming field and fix

    @execute_flow.startup_check
    def _flows(settings: Settings) -> CheckReport:
        book = load_flows(...)                    # raises ConfigError naming file and line
        return CheckReport("flows", ["flow", "nodes"], [["welcome", "7"]], "1 flow")

Every app built with that handler (:class:`framework.application.Hueyard`)
runs its checks, once each however many handlers share one: a check that
raises :class:`~framework.errors.ConfigError` stops start-up, as a bad
``queues.toml`` does, and the reports returned are kept on the app
(``app.reports``) for ``hueyard check`` to print after the queues.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from framework.settings import Settings

__all__ = ["Check", "CheckReport", "run_checks"]


@dataclass(frozen=True)
class CheckReport:
    """What a check found: a titled table for ``hueyard check`` and a one-line summary."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    summary: str
    """One line, e.g. ``"2 flows from config/flows"``."""


Check: TypeAlias = "Callable[[Settings], CheckReport | None]"
"""A start-up check: the settings in, a report (or None) out; raises ``ConfigError``."""


def run_checks(
    checks: Iterable[Callable[[Any], CheckReport | None]], settings: Settings
) -> list[CheckReport]:
    """Run each distinct check once, in order; the reports they return. Errors propagate."""
    seen: set[int] = set()
    reports = []
    for check in checks:
        if id(check) in seen:
            continue
        seen.add(id(check))
        report = check(settings)
        if report is not None:
            reports.append(report)
    return reports
