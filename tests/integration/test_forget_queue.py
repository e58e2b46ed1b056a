"""A queue taken out of the config: ``hueyard doctor`` names the keys it left in Redis,
and ``hueyard forget-queue NAME --yes`` deletes them, naming any parent that waited
for one of its jobs. Against the real Redis server, through the real command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from framework import current_job
from framework.application import Hueyard
from framework.handlers import HandlerRegistry, handler
from framework.jobs import JobLocation, Jobs
from tests.conftest import AppFactory, app_toml
from tests.integration.cli_runner import project_env, run
from tests.integration.workers import run_all

BOTH = """
[queues.alpha]
attempts = 1
[queues.beta]
attempts = 1
"""

PREFIX = "fq"


def registry() -> HandlerRegistry:
    registry = HandlerRegistry()

    @handler("beta", registry=registry)
    def child(payload: dict[str, Any]) -> None: ...

    @handler("alpha", registry=registry)
    def parent(payload: dict[str, Any]) -> dict[str, Any]:
        job = current_job()
        assert job is not None
        return {"spawned": len(job.spawn_many(child, [{"n": n} for n in range(3)]))}

    return registry


def only_alpha(tmp_path: Path, url: str) -> dict[str, str]:
    """The project after ``[queues.beta]`` and its handler were taken out."""
    handlers = """
        from framework import handler

        @handler("alpha")
        def parent(payload: dict) -> None: ...
    """
    toml = app_toml(url, "[queues.alpha]\n", prefix=PREFIX)
    return project_env(tmp_path, toml, "fq_handlers", handlers)


@pytest.fixture
def app(make_app: AppFactory) -> Hueyard:
    return make_app(BOTH, registry(), prefix=PREFIX)


def test_a_queue_taken_out_of_the_config_is_found_and_forgotten(
    app: Hueyard, tmp_path: Path, redis_url: str, redis_conn: redis.Redis
) -> None:
    # Given a queue with keyed, delayed and waiting jobs, and a parent on alpha waiting
    # for children on it
    gone = app.keys.queue("beta")
    app.enqueue("beta", "child", {"n": 10}, key="k-1")
    app.enqueue("beta", "child", {"n": 11}, delay=600)
    parent_id = app.enqueue("alpha", "parent", {})
    assert run_all(app, "alpha") == 1
    assert Jobs(app).find(parent_id) == JobLocation("alpha", "waiting-children")
    alpha_keys = {k for k in redis_conn.scan_iter(match=r"\{fq:alpha\}:*")}
    assert redis_conn.zcard(gone.waiting) == 4
    # When the queue is taken out of the config
    env = only_alpha(tmp_path, redis_url)
    # Then the doctor names it, with its keys, and the fix
    doctor = run(["doctor", "--json"], env)
    found = [f for f in json.loads(doctor.stdout) if f["check"] == "undeclared-queue"]
    assert len(found) == 1, doctor.stdout
    assert found[0]["queue"] == "beta" and found[0]["severity"] == "warning"
    assert "hueyard forget-queue beta" in found[0]["fix"]
    # And forget-queue asks for --yes first, deleting nothing
    asked = run(["forget-queue", "beta"], env)
    assert asked.returncode == 1 and "--yes" in asked.stderr
    assert redis_conn.zcard(gone.waiting) == 4
    # And with it, deletes every key of the queue and names the waiting parent
    done = run(["forget-queue", "beta", "--yes"], env)
    assert done.returncode == 0, done.stderr
    assert "5 of them job records" in done.stdout
    assert done.stderr.count(f"parent {parent_id} of queue 'alpha'") == 3
    assert not list(redis_conn.scan_iter(match=r"\{fq:beta\}:*"))
    # And nothing of alpha was touched
    assert {k for k in redis_conn.scan_iter(match=r"\{fq:alpha\}:*")} == alpha_keys
    assert run(["doctor", "--json"], env).stdout.count("undeclared-queue") == 0
    # And the command it names ends the parent's wait
    assert run(["cancel", "alpha", parent_id], env).returncode == 0
    assert Jobs(app).find(parent_id) == JobLocation("alpha", "failed")


def test_a_declared_queue_is_refused(app: Hueyard, tmp_path: Path, redis_url: str) -> None:
    env = only_alpha(tmp_path, redis_url)
    app.enqueue("alpha", "parent", {})
    for args in (["forget-queue", "alpha"], ["forget-queue", "alpha", "--yes"]):
        result = run(args, env)
        assert result.returncode == 1
        assert "queue 'alpha' is declared in the config; take [queues.alpha] out" in result.stderr
    assert Jobs(app).counts("alpha").waiting == 1


@pytest.mark.parametrize("name", ["a*", "beta}:x", "Beta", ""])
def test_a_name_that_is_no_queue_s_is_refused(
    app: Hueyard, tmp_path: Path, redis_url: str, name: str
) -> None:
    result = run(["forget-queue", name, "--yes"], only_alpha(tmp_path, redis_url))
    assert result.returncode == 1
    assert "is not a queue name" in result.stderr
