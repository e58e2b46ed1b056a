"""The test mode as a user meets it, in a fresh process and with no Redis server at all:
``HUEYARD_IMMEDIATE=1`` for a script, and the ``immediate_app`` fixture in a pytest run of
a project of their own. ``REDIS_URL`` points at a port nobody listens on, so anything that
reached for Redis would fail (and slowly: it would retry)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.integration.cli_runner import ROOT

HANDLERS = """
from pydantic import BaseModel

from framework import current_job, handler


class Order(BaseModel):
    prices: list[int]


@handler("shop")
def total(payload: Order) -> int:
    return sum(payload.prices)


@handler("shop")
def refuse(payload: dict) -> None:
    raise ValueError(f"refused on attempt {current_job().attempt}")
"""

CONFIG = """
[defaults]
attempts = 2
backoff = { type = "fixed", delay = 600 }

[queues.shop]
"""


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user's project: its config, its handler module; no Redis anywhere."""
    (tmp_path / "queues.toml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "shop_handlers.py").write_text(HANDLERS, encoding="utf-8")
    return tmp_path


def project_env(project: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "HUEYARD_", "PYTEST_"))
    }
    env.update(
        HUEYARD_CONFIG=str(project / "queues.toml"),
        HUEYARD_HANDLER_PACKAGES="",
        HUEYARD_HANDLER_MODULES="shop_handlers",
        PYTHONPATH=os.pathsep.join([str(project), str(ROOT)]),
        REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0",
        **extra,
    )
    return env


def run_script(project: Path, source: str) -> list[str]:
    """Run ``source`` as the project's script with ``HUEYARD_IMMEDIATE=1`` (and Redis
    unreachable); its output lines, once it exited 0."""
    (project / "script.py").write_text(textwrap.dedent(source), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "script.py"],
        cwd=project, env=project_env(project, HUEYARD_IMMEDIATE="1"),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_hueyard_immediate_runs_a_script_without_any_redis(project: Path) -> None:
    # Given a script that enqueues and reads results as a producer would
    script = """
        import framework
        from framework.jobs import Jobs
        from shop_handlers import total, refuse

        job_id = total.enqueue({"prices": [2, 3, 5]})
        print("result", framework.result(job_id))
        failed = refuse.enqueue({})
        info = Jobs(framework.get_app()).get(failed)
        print("failed", info.state, info.attempts, info.error)
    """
    # When it runs with HUEYARD_IMMEDIATE=1 and Redis unreachable
    lines = run_script(project, script)
    # Then every job ran to its end, in memory
    assert lines == ["result 10", "failed failed 2 ValueError: refused on attempt 2"]


def test_the_test_mode_runs_job_after_job_under_a_tracer(project: Path) -> None:
    # Given a script run under a tracer, as `coverage run` or `pytest --cov` runs a user's
    # tests (each job's end used to leave CPython spinning at the next call, for good)
    script = """
        import sys

        def trace(frame, event, arg):
            return None

        sys.settrace(trace)

        import framework
        from shop_handlers import total

        for n in range(3):
            print("result", framework.result(total.enqueue({"prices": [n, 1]})))
    """
    # When it enqueues three jobs in the test mode, then each ran, one after the other
    assert run_script(project, script) == ["result 1", "result 2", "result 3"]


def test_the_immediate_app_fixture_and_drain_in_a_users_pytest_run(project: Path) -> None:
    # Given a user's tests that use hueyard's fixture (no conftest: pytest finds the plugin)
    (project / "test_shop.py").write_text(
        textwrap.dedent("""
            import pytest

            import framework
            from framework import JobFailedError, PayloadError
            from framework.jobs import Jobs
            from framework.testing import drain
            from shop_handlers import refuse, total


            def test_total(immediate_app):
                assert framework.result(total.enqueue({"prices": [1, 2]})) == 3


            def test_refused(immediate_app):
                job_id = refuse.enqueue({})
                with pytest.raises(JobFailedError, match="refused on attempt 2"):
                    framework.result(job_id)


            def test_bad_payload(immediate_app):
                with pytest.raises(PayloadError):
                    total.enqueue({"prices": "many"})


            def test_each_test_starts_empty_and_drain_runs_a_delayed_job(immediate_app):
                counts = Jobs(immediate_app).counts("shop")
                assert (counts.completed, counts.failed) == (0, 0)
                later = total.enqueue({"prices": [4]}, delay=60)
                drained = drain("shop", delayed=True)
                assert (drained.completed, drained.failed) == (1, 0)
                assert framework.result(later) == 4


            def test_a_test_that_builds_an_app_of_its_own_and_leaves_it_open():
                from framework.application import Hueyard
                from framework.config import load_settings
                from framework.handlers import REGISTRY
                from framework.immediate import memory_pool

                Hueyard(load_settings(), REGISTRY, pool=memory_pool())  # never closed


            def test_the_fixture_s_app_takes_the_enqueues_all_the_same(immediate_app):
                assert framework.result(total.enqueue({"prices": [5, 5]})) == 10


            def test_immediate_inside_the_fixture_keeps_the_outer_jobs(immediate_app):
                from framework.testing import immediate

                first = total.enqueue({"prices": [1]})
                with immediate():
                    second = total.enqueue({"prices": [2]})
                assert (framework.result(first), framework.result(second)) == (1, 2)


            def test_a_queues_huey_reads_and_sets_the_apps_memory_switch(immediate_app):
                huey = immediate_app.queue("shop").huey
                assert huey.immediate_use_memory is True
                huey.immediate_use_memory = False
                assert immediate_app.immediate_use_memory is False
                huey.immediate_use_memory = True


            def test_a_blocking_wait_in_the_test_mode_says_why_it_would_never_end(immediate_app):
                from framework.errors import JobActionError

                later = total.enqueue({"prices": [4]}, delay=60)
                with pytest.raises(JobActionError, match="in test mode nothing runs it"):
                    framework.result(later, blocking=True)
        """),
        encoding="utf-8",
    )
    # When pytest runs them with Redis unreachable
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_shop.py"],
        cwd=project, env=project_env(project),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    # Then they pass
    assert done.returncode == 0, done.stdout + done.stderr
    assert "9 passed" in done.stdout
