"""Run the ``hueyard`` command: in this process (fast), or as a real process.

:func:`run` calls ``framework.cli.main`` here, with ``env`` over the
environment, ``PYTHONPATH`` entries on ``sys.path``, stdout and stderr
captured, and everything the command changes in the process put back
afterwards: the environment, ``sys.path``, the modules it imported from
the project's ``PYTHONPATH`` (its handler modules), the global handler
registry (empty during the run, as in a fresh process), the logging set-up
and the process's app. :func:`run_process`
runs ``python -m framework.cli`` as a subprocess, for the tests whose point
is the real command.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Result:
    """What a run of the command gave: like ``subprocess.CompletedProcess``."""

    returncode: int
    stdout: str
    stderr: str


def project_env(tmp_path: Path, toml: str, module: str, source: str) -> dict[str, str]:
    """A project in ``tmp_path`` for the command: ``q.toml`` holding ``toml``, and the
    handler module ``module`` holding ``source`` (dedented), found on ``PYTHONPATH``."""
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
    (tmp_path / "q.toml").write_text(toml)
    return {
        "HUEYARD_CONFIG": str(tmp_path / "q.toml"),
        "HUEYARD_HANDLER_PACKAGES": "",
        "HUEYARD_HANDLER_MODULES": module,
        "PYTHONPATH": str(tmp_path),
    }


def run(args: list[str], env: dict[str, str], cwd: Path = ROOT) -> Result:
    """``hueyard ARGS`` in this process, with ``env`` over ours; nothing of it stays."""
    from framework.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with (
        _isolated(env, cwd),
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        try:
            status = main(args)
        except SystemExit as exc:  # argparse: usage errors and --help
            status = exc.code if isinstance(exc.code, int) else 1
    return Result(status, stdout.getvalue(), stderr.getvalue())


def run_process(
    args: list[str], env: dict[str, str], cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """``python -m framework.cli ARGS`` with ``env`` over ours and the checkout on the path."""
    full_env = {**os.environ, **env}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(ROOT)]))
    return subprocess.run(
        [sys.executable, "-m", "framework.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=full_env,
        cwd=cwd,
        check=False,
    )


@contextlib.contextmanager
def _isolated(env: dict[str, str], cwd: Path) -> Iterator[None]:
    from framework.handlers import REGISTRY
    from framework.runtime import reset_app

    saved_env, saved_path, saved_cwd = dict(os.environ), list(sys.path), Path.cwd()
    root = logging.getLogger()
    saved_logging = (list(root.handlers), root.level)
    root.handlers.clear()  # as in a fresh process: the command's basicConfig takes effect
    saved_modules, saved_handlers = set(sys.modules), list(REGISTRY)
    for spec in saved_handlers:  # as in a fresh process: only the project's handlers
        REGISTRY.unregister(spec.name)
    project_paths = [entry for entry in env.get("PYTHONPATH", "").split(os.pathsep) if entry]
    reset_app()
    os.environ.update({key: value for key, value in env.items() if key != "PYTHONPATH"})
    sys.path[:0] = project_paths
    os.chdir(cwd)
    try:
        yield
    finally:
        reset_app()
        root.handlers[:], _ = saved_logging
        root.setLevel(saved_logging[1])
        os.chdir(saved_cwd)
        sys.path[:] = saved_path
        os.environ.clear()
        os.environ.update(saved_env)
        for name in set(sys.modules) - saved_modules:
            origin = getattr(sys.modules[name], "__file__", None) or ""
            if any(origin.startswith(path) for path in project_paths):
                del sys.modules[name]
        for spec in list(REGISTRY):
            REGISTRY.unregister(spec.name)
        for spec in saved_handlers:
            REGISTRY.register(spec)
