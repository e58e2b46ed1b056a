"""The layers: ``framework`` never loads Flask or the dashboard, and its public names are pinned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import framework

ROOT = Path(__file__).resolve().parents[2]

FORBIDDEN = ("flask", "flask_httpauth", "werkzeug", "waitress")
"""Top-level packages that no module of ``framework`` may load (``dashboard*`` neither)."""

EXPORTED = [
    # declaring and enqueueing jobs
    "Handler",
    "handler",
    "enqueue",
    "enqueue_many",
    "EnqueueOptions",
    "Chain",
    "result",
    # the app, the running job, the cache
    "Hueyard",
    "get_app",
    "current_job",
    "JobContext",
    "get_cache",
    # errors
    "HueyardError",
    "ConfigError",
    "HandlerError",
    "UnknownHandlerError",
    "QueueError",
    "PayloadError",
    "OptionError",
    "SerializationError",
    "StorageError",
    "RedisUnavailableError",
    "JobFailedError",
    "ResultTimeoutError",
    "ChainError",
    "SpawnError",
    # raised inside a running handler
    "JobTimeout",
    "JobCancelled",
]
"""``framework.__all__``: change it here, on purpose, when the public API changes."""

IMPORT_EVERY_MODULE = textwrap.dedent("""
    import importlib, json, pkgutil, sys
    import framework

    walked = [m.name for m in pkgutil.walk_packages(framework.__path__, "framework.")]
    for name in walked:
        importlib.import_module(name)
    print(json.dumps({"walked": walked, "loaded": sorted(sys.modules)}))
""")


def test_no_module_of_framework_loads_flask_waitress_or_the_dashboard() -> None:
    # Given a fresh interpreter, with no config file to read
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HUEYARD_CONFIG": "/nonexistent/queues.toml"}
    # When it imports every module of the framework package
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERY_MODULE],
        capture_output=True, text=True, timeout=60, env=env, cwd=ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout)
    # Then the walk found the modules (so new ones are covered too) ...
    assert {"framework.cli", "framework.health", "framework.application"} <= set(modules["walked"])
    assert set(modules["walked"]) <= set(modules["loaded"])
    # ... and none of them loaded Flask, its kin or the dashboard
    leaked = [
        name
        for name in modules["loaded"]
        if name.partition(".")[0] in FORBIDDEN or name.startswith("dashboard")
    ]
    assert leaked == []


def test_the_public_names_are_pinned() -> None:
    assert framework.__all__ == EXPORTED


@pytest.mark.parametrize("name", EXPORTED)
def test_every_public_name_can_be_imported_from_framework(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from framework import {name}", namespace)
    assert namespace[name] is getattr(framework, name)


def test_a_built_in_command_loads_no_plugin_and_no_flask() -> None:
    # Given the project's own config, When `hueyard check` runs in a fresh interpreter
    code = (
        "import contextlib, io, sys\n"
        "from framework.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    status = main(['check', '--json'])\n"
        "names = {m.split('.')[0] for m in sys.modules}\n"
        "print(status, sorted(names & {'flask', 'dashboard'}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("HUEYARD_CONFIG", None)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, timeout=60, env=env, cwd=ROOT, check=False,
    )  # fmt: skip
    # Then it succeeded without importing Flask or the dashboard (their plugin is not its own)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0 []"
