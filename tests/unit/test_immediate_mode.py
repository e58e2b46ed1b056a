"""The test mode's switch from the environment, and what importing its modules loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from framework.errors import ConfigError
from framework.immediate import mode_of

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        (None, None), ("", None), ("0", None), ("false", None), ("No", None), ("off", None),
        ("1", "memory"), ("true", "memory"), (" YES ", "memory"), ("on", "memory"),
        ("memory", "memory"), ("redis", "redis"), ("Redis", "redis"),
    ],
)  # fmt: skip
def test_hueyard_immediate_names_the_mode(value: str | None, mode: str | None) -> None:
    env = {} if value is None else {"HUEYARD_IMMEDIATE": value}
    assert mode_of(env) == mode


def test_anything_else_is_refused_naming_the_values_that_work() -> None:
    with pytest.raises(ConfigError) as caught:
        mode_of({"HUEYARD_IMMEDIATE": "sometimes"})
    message = str(caught.value)
    assert "HUEYARD_IMMEDIATE='sometimes' is not a test mode" in message
    assert "use 1" in message and "redis" in message and "0 (off)" in message


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HUEYARD_CONFIG": "/nonexistent/queues.toml"}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, timeout=60, env=env, cwd=ROOT, check=False,
    )  # fmt: skip


def test_framework_testing_imports_neither_pytest_nor_fakeredis() -> None:
    done = _run(
        "import json, sys\n"
        "import framework, framework.testing, framework.immediate\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert loaded.isdisjoint({"pytest", "_pytest", "fakeredis", "lupa"})


def test_without_lupa_the_memory_store_says_what_to_install() -> None:
    done = _run(
        "import sys\n"
        "sys.modules['lupa'] = None  # not installed\n"
        "from framework.immediate import memory_pool\n"
        "try:\n"
        "    memory_pool()\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("HueyardError the test mode keeps jobs in memory")
    assert "pip install 'hueyard[testing]'" in done.stdout
    assert "app.immediate_use_memory = False (or HUEYARD_IMMEDIATE=redis)" in done.stdout
