"""framework.checks: the start-up checks that handler modules register."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from framework.checks import CheckReport, register_check, run_checks, unregister_check
from framework.errors import ConfigError
from framework.handlers import HandlerRegistry, handler


def report(app: Any) -> CheckReport:
    return CheckReport("things", ["thing"], [["one"]], "1 thing")


def broken(app: Any) -> CheckReport:
    raise ConfigError("things/one.yaml:3: field 'x': unknown field")


@pytest.fixture
def registered() -> Iterator[None]:
    register_check("test-things", report)
    yield
    unregister_check("test-things")


def test_a_check_runs_for_an_app_with_its_modules_handlers(registered: None) -> None:
    registry = HandlerRegistry()

    @handler("work", registry=registry)
    def job(payload: Any) -> None: ...

    app = SimpleNamespace(registry=registry)
    assert report(app) in run_checks(app)  # type: ignore[arg-type]


def test_a_check_is_skipped_for_an_app_without_its_modules_handlers(registered: None) -> None:
    app = SimpleNamespace(registry=HandlerRegistry())
    assert run_checks(app) == []  # type: ignore[arg-type]


def test_a_checks_config_error_propagates() -> None:
    registry = HandlerRegistry()

    @handler("work", registry=registry)
    def job(payload: Any) -> None: ...

    register_check("test-broken", broken)
    try:
        with pytest.raises(ConfigError, match=r"things/one\.yaml:3"):
            run_checks(SimpleNamespace(registry=registry))  # type: ignore[arg-type]
    finally:
        unregister_check("test-broken")
