"""A config or a handler module that ``huey_consumer framework.app`` can not run stops it
before it starts, with one line naming the file, field or module and the fix, and exit
status 1: the consumer's usage error, not a traceback of hueyard through Huey's loader
(real processes, which exit before they touch Redis).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import framework
from framework.errors import ConfigError
from framework.runtime import reset_app
from tests.e2e.conftest import consumer_command
from tests.integration.cli_runner import ROOT

GOOD_QUEUE = """
[redis]
url = "redis://127.0.0.1:6379/0"
prefix = "starterr"

[queues.alpha]
"""

HANDLERS = """
from pydantic import BaseModel

from framework import handler

class Ping(BaseModel):
    n: int

@handler("alpha")
def ping(payload: Ping) -> None: ...
"""

CASES = {
    "malformed TOML": (
        "[redis\nurl =",
        "start.toml: malformed TOML: Expected ']' at the end of a table declaration",
    ),
    "an unknown field": (
        GOOD_QUEUE + "concurency = 3\n",
        "[queues.alpha] concurency: unknown field; did you mean 'concurrency'?",
    ),
    "a schedule's payload": (
        GOOD_QUEUE
        + '[schedules.tick]\nhandler = "alpha.ping"\nevery = 60\npayload = { n = "x" }\n',
        "[schedules.tick] payload does not validate for alpha.ping",
    ),
}


def start(tmp_path: Path, config: str | None, modules: str = "start_handlers") -> str:
    """``huey_consumer framework.app`` with ``config`` (None: no such file): its stderr,
    once it exited with status 1."""
    (tmp_path / "start_handlers.py").write_text(textwrap.dedent(HANDLERS))
    (tmp_path / "raising_handlers.py").write_text('raise RuntimeError("no database at import")\n')
    path = tmp_path / "start.toml"
    if config is not None:
        path.write_text(config)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("REDIS_", "HUEYARD_"))
    }
    env.update(
        HUEYARD_CONFIG=str(path),
        HUEYARD_HANDLER_PACKAGES="",
        HUEYARD_HANDLER_MODULES=modules,
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]),
        PYTHONDONTWRITEBYTECODE="1",
    )
    result = subprocess.run(
        consumer_command(), env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    return result.stderr


@pytest.mark.parametrize("case", list(CASES))
def test_a_config_it_can_not_run_stops_the_consumer_with_the_reason_in_one_line(
    tmp_path: Path, case: str
) -> None:
    config, fragment = CASES[case]
    stderr = start(tmp_path, config)
    assert stderr.startswith("hueyard: error: ")
    assert fragment in stderr
    assert "Traceback" not in stderr and "Error importing" not in stderr
    if case != "an unknown field":  # whose line is followed by the field's own lines
        assert stderr.count("\n") == 1


def test_a_missing_config_file_and_handler_module_say_so_in_one_line(tmp_path: Path) -> None:
    missing = start(tmp_path, None)
    assert missing.startswith("hueyard: error: ")
    assert "start.toml: configuration file not found" in missing
    assert missing.count("\n") == 1
    module = start(tmp_path, GOOD_QUEUE, modules="no_such_handlers")
    assert module == (
        "hueyard: error: cannot import handler module 'no_such_handlers': "
        "ModuleNotFoundError: No module named 'no_such_handlers'\n"
    )


def test_a_handler_module_that_raises_shows_its_own_traceback_then_the_line(
    tmp_path: Path,
) -> None:
    stderr = start(tmp_path, GOOD_QUEUE, modules="raising_handlers")
    lines = stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert 'raising_handlers.py", line 1, in <module>' in stderr
    assert "framework/" not in stderr  # hueyard's own frames are not the user's problem
    assert lines[-1] == (
        "hueyard: error: cannot import handler module 'raising_handlers': "
        "RuntimeError: no database at import"
    )


def test_read_outside_huey_consumer_framework_app_still_raises_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A service or a test that reads framework.app gets the exception, not an exit
    (tmp_path / "q.toml").write_text("[redis\n")
    monkeypatch.setenv("HUEYARD_CONFIG", str(tmp_path / "q.toml"))
    reset_app()
    try:
        with pytest.raises(ConfigError, match="malformed TOML"):
            framework.app  # noqa: B018
    finally:
        reset_app()
    assert sys.exc_info() == (None, None, None)
