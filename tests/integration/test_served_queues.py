"""``HUEYARD_QUEUES``: the queues a consumer serves. A value that names no queue it can
serve stops ``huey_consumer framework.app`` with one line naming the value and the declared
queues, and no traceback (real processes, which exit before they touch a job).
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from framework.config import parse_settings
from framework.consumer import served_queues
from framework.errors import ConfigError, QueueError
from tests.conftest import app_toml
from tests.e2e.conftest import consumer_command
from tests.integration.cli_runner import ROOT

CONFIG = """
[queues.alpha]
[queues.beta]
[queues.gamma]
"""

DECLARED = "declared queues: alpha, beta, gamma"


@pytest.mark.parametrize(
    ("value", "served"),
    [
        (None, ["alpha", "beta", "gamma"]),
        ("beta", ["beta"]),
        (" gamma , alpha ", ["gamma", "alpha"]),
        ("alpha,alpha", ["alpha"]),
    ],
)
def test_the_served_queues_are_the_named_ones_or_all(value: str | None, served: list[str]) -> None:
    settings = parse_settings(CONFIG, env={})
    env = {} if value is None else {"HUEYARD_QUEUES": value}
    assert served_queues(settings, env) == served


BAD_VALUES = [
    ("alpha,,beta", ConfigError, "HUEYARD_QUEUES='alpha,,beta' has an empty entry"),
    ("alpha,", ConfigError, "HUEYARD_QUEUES='alpha,' has an empty entry"),
    (",", ConfigError, "HUEYARD_QUEUES=',' has an empty entry"),
    (" ", ConfigError, "HUEYARD_QUEUES=' ' is empty"),
    ("", ConfigError, "HUEYARD_QUEUES='' is empty"),
    ("alpha,nope", QueueError, "HUEYARD_QUEUES='alpha,nope' names unknown queue(s) 'nope'"),
    ("Alpha", QueueError, "names unknown queue(s) 'Alpha'"),
    ("alpha;beta", QueueError, "names unknown queue(s) 'alpha;beta'"),
]


@pytest.mark.parametrize(("value", "error", "fragment"), BAD_VALUES)
def test_a_value_that_names_no_queue_to_serve_is_an_error(
    value: str, error: type[Exception], fragment: str
) -> None:
    settings = parse_settings(CONFIG, env={})
    with pytest.raises(error) as caught:
        served_queues(settings, {"HUEYARD_QUEUES": value})
    assert fragment in str(caught.value)
    assert DECLARED in str(caught.value)


@pytest.fixture
def project(tmp_path: Path, redis_url: str) -> dict[str, str]:
    (tmp_path / "sq_handlers.py").write_text(
        textwrap.dedent("""
        from framework import handler

        @handler("alpha")
        def a(payload: dict) -> None: ...

        @handler("beta")
        def b(payload: dict) -> None: ...

        @handler("gamma")
        def c(payload: dict) -> None: ...
    """)
    )
    (tmp_path / "q.toml").write_text(app_toml(redis_url, CONFIG, prefix="sq"))
    return {
        "HUEYARD_CONFIG": str(tmp_path / "q.toml"),
        "HUEYARD_HANDLER_PACKAGES": "",
        "HUEYARD_HANDLER_MODULES": "sq_handlers",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "PYTHONDONTWRITEBYTECODE": "1",
    }


@pytest.mark.parametrize(("value", "error", "fragment"), BAD_VALUES)
def test_huey_consumer_says_what_is_wrong_in_one_line(
    project: dict[str, str], value: str, error: type[Exception], fragment: str
) -> None:
    # When huey_consumer framework.app starts with a bad HUEYARD_QUEUES
    result = subprocess.run(
        consumer_command(),
        env={**os.environ, **project, "HUEYARD_QUEUES": value},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # Then it exits 1 with one line naming the value and the declared queues
    assert result.returncode == 1
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("hueyard: error: ")
    assert fragment in result.stderr
    assert DECLARED in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
