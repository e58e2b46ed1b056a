"""framework.checks: the start-up checks a handler attaches to itself, run by every app
built with that handler (real apps, no Redis call: building an app opens no connection)."""

from __future__ import annotations

from typing import Any

import pytest

from framework.application import Hueyard
from framework.checks import CheckReport
from framework.config import parse_settings
from framework.errors import ConfigError
from framework.handlers import HandlerRegistry, handler

SETTINGS = parse_settings('[redis]\nurl = "redis://127.0.0.1:1/0"\n[queues.work]\n', env={})
calls: list[str] = []


def report(settings: Any) -> CheckReport:
    calls.append("report")
    return CheckReport("things", ["thing"], [["one"]], "1 thing")


def broken(settings: Any) -> None:
    raise ConfigError("things/one.yaml:3: field 'x': unknown field")


def registry(*checks: Any) -> HandlerRegistry:
    handlers = HandlerRegistry()

    @handler("work", registry=handlers)
    def first(payload: Any) -> None: ...

    @handler("work", registry=handlers)
    def second(payload: Any) -> None: ...

    for check in checks:  # the same check on both handlers runs once
        first.startup_check(check)
        second.startup_check(check)
    return handlers


def test_an_apps_checks_run_once_each_and_their_reports_are_kept() -> None:
    calls.clear()
    app = Hueyard(SETTINGS, registry(report))
    assert app.reports == [report(SETTINGS)]
    assert calls == ["report", "report"]  # once at build, once just above
    app.close()


def test_an_app_without_the_handler_runs_none_of_its_checks() -> None:
    app = Hueyard(SETTINGS, HandlerRegistry())
    assert app.reports == []
    app.close()


def test_a_checks_config_error_stops_the_app_being_built() -> None:
    with pytest.raises(ConfigError, match=r"things/one\.yaml:3"):
        Hueyard(SETTINGS, registry(broken))
