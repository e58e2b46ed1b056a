"""Commands that packages add through the ``hueyard.commands`` entry points.

Plugins are real distributions: a ``*.dist-info`` directory on ``PYTHONPATH``,
found by :mod:`importlib.metadata` exactly as an installed one; those tests run
the command in this process (``cli_runner.run``, which puts ``PYTHONPATH`` on
``sys.path`` and forgets the plugin's modules afterwards). "Flask is not
installed" is a ``flask`` package first on ``PYTHONPATH`` that fails to import
the way a missing module does: that needs a fresh process (this one may have
imported Flask already), so those tests run ``python -m framework.cli``.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import redis

from tests.conftest import app_toml
from tests.integration.cli_runner import run, run_process

COMMANDS = [
    "check",
    "enqueue",
    "status",
    "jobs",
    "job",
    "retry",
    "cancel",
    "pause",
    "resume",
    "clean",
    "schedules",
    "schedule",
    "doctor",
    "upgrade-keys",
    "forget-queue",
]


@pytest.fixture
def project(tmp_path: Path, redis_url: str, redis_conn: redis.Redis) -> dict[str, str]:
    (tmp_path / "plugin_handlers.py").write_text(
        "from framework import handler\n\n@handler('alpha')\ndef ping(payload: dict) -> None: ...\n"
    )
    (tmp_path / "q.toml").write_text(app_toml(redis_url, "[queues.alpha]", prefix="cliplugins"))
    return {
        "HUEYARD_CONFIG": str(tmp_path / "q.toml"),
        "HUEYARD_HANDLER_PACKAGES": "",
        "HUEYARD_HANDLER_MODULES": "plugin_handlers",
        "PYTHONPATH": str(tmp_path),
    }


def with_path(env: dict[str, str], *paths: Path) -> dict[str, str]:
    """``env`` with ``paths`` first on ``PYTHONPATH``."""
    return {**env, "PYTHONPATH": os.pathsep.join([*map(str, paths), env.get("PYTHONPATH", "")])}


def without_flask(tmp_path: Path) -> Path:
    """A directory whose ``flask`` fails to import as an uninstalled one does."""
    package = tmp_path / "no_flask" / "flask"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'flask'\", name='flask')\n"
    )
    return package.parent


def install_plugin(tmp_path: Path, entry_points: str, modules: dict[str, str]) -> Path:
    """A distribution ``hueyard-test-plugin 0.1`` with these entry points and modules."""
    site = tmp_path / "site"
    dist_info = site / "hueyard_test_plugin-0.1.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: hueyard-test-plugin\nVersion: 0.1\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[hueyard.commands]\n" + textwrap.dedent(entry_points)
    )
    for name, source in modules.items():
        (site / f"{name}.py").write_text(textwrap.dedent(source))
    return site


HELLO = """
    from framework.errors import HueyardError

    def add_hello(commands):
        command = commands.add_parser("hello", help="greet someone")
        command.add_argument("name")
        command.add_argument("--status", type=int, default=0)
        command.set_defaults(run=hello)

    def hello(args):
        if args.name == "nobody":
            raise HueyardError("there is nobody to greet")
        print(f"hello, {args.name}")
        return args.status
"""


def test_help_lists_the_built_in_commands_and_the_dashboard_s() -> None:
    result = run(["--help"], {})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    listed = [line.split()[0] for line in lines if line.startswith("    ") and line[4] != " "]
    assert listed == [*COMMANDS, "dashboard", "up"]
    assert "serve the web dashboard and health endpoints" in result.stdout


def test_a_plugin_command_runs_with_its_arguments_and_exit_status(tmp_path: Path) -> None:
    # Given a distribution whose entry point adds `hueyard hello`
    site = install_plugin(tmp_path, "hello = hello_plugin:add_hello\n", {"hello_plugin": HELLO})
    env = with_path({}, site)
    # When it runs
    result = run(["hello", "Ada", "--status", "3"], env)
    # Then its output and exit status are the command's
    assert (result.returncode, result.stdout, result.stderr) == (3, "hello, Ada\n", "")
    failed = run(["hello", "nobody"], env)
    assert (failed.returncode, failed.stderr) == (1, "hueyard: error: there is nobody to greet\n")
    assert "greet someone" in run(["--help"], env).stdout


@pytest.mark.parametrize("command", ["dashboard", "up"])
def test_without_flask_the_dashboard_commands_say_why_in_one_line(
    tmp_path: Path, project: dict[str, str], command: str
) -> None:
    # Given Flask is not importable
    env = with_path(project, without_flask(tmp_path))
    # When the dashboard's command is asked for, with its usual arguments
    result = run_process([command, "--port", "8080"], env)
    # Then it exits 1 with one line naming the plugin and the error
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"hueyard: error: command {command!r} is unavailable: its plugin "
        f"dashboard.cli:add_{command} of hueyard 0.1.0 failed to load: "
        "ModuleNotFoundError: No module named 'flask'; reinstall hueyard with its dependencies\n"
    )


def test_without_flask_the_other_commands_work_as_before(
    tmp_path: Path, project: dict[str, str]
) -> None:
    # Given what `hueyard status` and `hueyard --help` print with Flask
    status = run(["status"], project)
    assert status.returncode == 0, status.stderr
    # When Flask is not importable
    env = with_path(project, without_flask(tmp_path))
    # Then `hueyard status` prints the same, and the help still lists every command
    without = run_process(["status"], env)
    assert (without.returncode, without.stdout, without.stderr) == (0, status.stdout, "")
    help_text = " ".join(run_process(["--help"], env).stdout.split())  # as argparse wraps it
    assert "(unavailable: its plugin failed to load; run hueyard up for why)" in help_text
    assert "dashboard" in help_text


@pytest.mark.parametrize(
    ("module", "error"),
    [
        ("import hueyard_no_such_module\n", "ModuleNotFoundError: No module named "
         "'hueyard_no_such_module'; reinstall hueyard-test-plugin with its dependencies"),
        ("def add_broken(commands):\n    raise RuntimeError('bad\\nplugin')\n",
         "RuntimeError: bad plugin"),
        ("add_broken = None\n", "TypeError: 'NoneType' object is not callable"),
    ],
    ids=["import-fails", "add-raises", "not-callable"],
)  # fmt: skip
def test_a_broken_plugin_breaks_only_its_own_command(
    tmp_path: Path, project: dict[str, str], module: str, error: str
) -> None:
    # Given one plugin that cannot be used, and one that can
    site = install_plugin(
        tmp_path,
        "broken = broken_plugin:add_broken\nhello = hello_plugin:add_hello\n",
        {"broken_plugin": module, "hello_plugin": HELLO},
    )
    env = with_path(project, site)
    # When its command runs, Then it says which plugin failed and why, in one line
    result = run(["broken", "--any", "arguments"], env)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "hueyard: error: command 'broken' is unavailable: its plugin "
        f"broken_plugin:add_broken of hueyard-test-plugin 0.1 failed to load: {error}\n"
    )
    # And the built-in commands and the other plugins work
    status = run(["status"], env)
    assert (status.returncode, status.stderr) == (0, ""), status.stderr
    assert status.stdout.splitlines()[2].split()[0] == "alpha"
    assert run(["hello", "Ada"], env).stdout == "hello, Ada\n"


def test_a_plugin_cannot_replace_a_built_in_command(
    tmp_path: Path, project: dict[str, str]
) -> None:
    # Given a plugin that adds a command named like a built-in one
    site = install_plugin(
        tmp_path,
        "status = status_plugin:add_status\n",
        {"status_plugin": "def add_status(commands):\n    commands.add_parser('status')\n"},
    )
    # When `hueyard status` runs, the built-in command runs (a built-in loads no plugin)
    result = run(["status"], with_path(project, site))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[2].split()[0] == "alpha"
    assert result.stderr == ""
    # And when every plugin loads (for the help), a warning names the one that clashes
    result = run(["--help"], with_path(project, site))
    assert result.returncode == 0
    assert result.stderr == (
        "hueyard: warning: command 'status' is unavailable: its plugin "
        "status_plugin:add_status of hueyard-test-plugin 0.1 failed to load: "
        "ArgumentError: argument COMMAND: conflicting subparser: status\n"
    )
