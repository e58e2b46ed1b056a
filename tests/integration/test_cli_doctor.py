"""``hueyard doctor``: the report, ``--json`` and the exit status, through the real command.

The command runs in this process (``cli_runner.run``) on the config file a test
writes; its jobs and consumers are put in place by an app built from the same
file, so the command sees real records and real heartbeats.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from framework.application import Hueyard
from framework.consumer import MultiQueueConsumer
from framework.handlers import HandlerRegistry, handler
from framework.jobs import Jobs
from tests.conftest import AppFactory, app_toml
from tests.integration.cli_runner import run, run_process
from tests.integration.redis_server import RedisServer, free_port

TOML = """
[queues.alpha]
attempts = 1
[queues.beta]
attempts = 1
"""

FIELDS = {"check", "severity", "queue", "what", "evidence", "fix"}


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A private Redis with redis-server's defaults (no maxmemory, noeviction), so that the
    findings about the server do not depend on how the shared one is configured."""
    with RedisServer() as private:
        yield private


def project_env(tmp_path: Path, url: str) -> dict[str, str]:
    (tmp_path / "doctor_handlers.py").write_text(
        textwrap.dedent("""
        from framework import handler

        @handler("alpha")
        def ping(payload: dict) -> None: ...

        @handler("beta")
        def pong(payload: dict) -> None: ...
    """)
    )
    (tmp_path / "q.toml").write_text(app_toml(url, TOML, prefix="doccli"))
    return {
        "HUEYARD_CONFIG": str(tmp_path / "q.toml"),
        "HUEYARD_HANDLER_PACKAGES": "",
        "HUEYARD_HANDLER_MODULES": "doctor_handlers",
        "PYTHONPATH": str(tmp_path),
    }


@pytest.fixture
def project(tmp_path: Path, server: RedisServer) -> dict[str, str]:
    return project_env(tmp_path, server.url)


@pytest.fixture
def app(make_app: AppFactory, server: RedisServer) -> Hueyard:
    registry = HandlerRegistry()

    @handler("alpha", registry=registry)
    def ping(payload: dict[str, object]) -> None: ...

    @handler("beta", registry=registry)
    def pong(payload: dict[str, object]) -> None: ...

    return make_app(TOML, registry, prefix="doccli", url=server.url)


def test_a_quiet_system_looks_fine_and_exits_0(
    project: dict[str, str], server: RedisServer
) -> None:
    result = run(["doctor"], project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "OK       everything looks fine"
    assert f"redis://127.0.0.1:{server.port}/0 answers; queues checked: alpha, beta" in (
        " ".join(result.stdout.split())
    )
    assert result.stdout.rstrip().endswith("error 0, warning 0, info 0")


def test_an_error_finding_is_reported_with_evidence_and_fix_and_exits_1(
    project: dict[str, str], app: Hueyard
) -> None:
    # Given waiting jobs on alpha, a paused beta, and no consumer
    app.enqueue_many("alpha", "ping", [{}, {}])
    Jobs(app).pause("beta")
    # When
    result = run(["doctor"], project)
    # Then the error comes first, then the warning, each with its evidence and fix
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "ERROR    queue alpha: no live consumer serves the queue"
    assert lines[1].startswith("         evidence  2 jobs waiting, the oldest for ")
    flat = " ".join(result.stdout.split())
    assert "fix Start one: huey_consumer framework.app (every queue), or HUEYARD_QUEUES=alpha" in (
        flat
    )
    assert "WARNING  queue beta: paused: no job of it starts" in result.stdout
    assert "everything looks fine" not in result.stdout
    assert result.stdout.rstrip().endswith("error 1, warning 1, info 0")


def test_queues_can_be_named_and_json_gives_every_field(
    project: dict[str, str], app: Hueyard
) -> None:
    # Given a paused beta and waiting jobs on alpha without a consumer
    app.enqueue_many("alpha", "ping", [{}])
    Jobs(app).pause("beta")
    # When only beta is looked at, as JSON
    result = run(["doctor", "beta", "--json"], project)
    # Then: a warning only, so exit 0
    assert result.returncode == 0, result.stderr
    findings = json.loads(result.stdout)
    assert [(f["check"], f["severity"], f["queue"]) for f in findings] == [
        ("paused", "warning", "beta")
    ]
    assert set(findings[0]) == FIELDS
    assert findings[0]["fix"] == "hueyard resume beta (or Resume on /admin/queues/beta)."


def test_a_served_queue_is_not_reported(project: dict[str, str], app: Hueyard) -> None:
    app.enqueue_many("alpha", "ping", [{}])
    MultiQueueConsumer(app, ["alpha", "beta"]).heartbeat()
    result = run(["doctor", "--json"], project)
    assert result.returncode == 0, result.stderr
    assert [f["check"] for f in json.loads(result.stdout)] == ["fine"]


def test_an_unknown_queue_is_a_usage_error_exit_2(project: dict[str, str]) -> None:
    result = run(["doctor", "alpha", "nope"], project)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "hueyard: error: unknown queue 'nope'; declared queues: alpha, beta"
    )
    assert result.stdout == ""


def test_a_bad_config_exits_2(project: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "q.toml").write_text("[queues.alpha]\nattempts = 0\n")
    result = run(["doctor"], project)
    assert result.returncode == 2
    assert "[queues.alpha] attempts = 0: must be at least 1" in result.stderr


def test_an_unreachable_redis_exits_2_without_its_password(tmp_path: Path) -> None:
    # Given REDIS_URL, with a password, naming a closed port; a real process
    port = free_port()
    env = {**project_env(tmp_path, "redis://127.0.0.1:6379/0"),
           "REDIS_URL": f"redis://:s3cr3t-pw@127.0.0.1:{port}/0"}  # fmt: skip
    # When
    result = run_process(["doctor", "--json"], env)
    # Then
    assert result.returncode == 2, result.stderr
    [finding] = json.loads(result.stdout)
    assert finding["check"] == "redis-unreachable"
    assert finding["what"] == f"Redis at redis://:***@127.0.0.1:{port}/0 does not answer"
    assert "s3cr3t" not in result.stdout + result.stderr
    text = run_process(["doctor"], env)
    assert text.returncode == 2
    assert text.stdout.startswith(f"ERROR    redis: Redis at redis://:***@127.0.0.1:{port}/0")
    assert "s3cr3t" not in text.stdout + text.stderr
