"""``hueyard schedules`` and ``hueyard schedule run|pause|resume`` on real Redis."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import redis

from tests.conftest import app_toml
from tests.integration.cli_runner import run

TOML = """
[queues.analytics]

[schedules.nightly]
handler = "analytics.snap"
cron = "5 0 * * *"
timezone = "Europe/Berlin"
payload = { period = "daily" }
description = "yesterday's numbers"
"""


@pytest.fixture
def project(tmp_path: Path, redis_url: str, redis_conn: object) -> dict[str, str]:
    (tmp_path / "cli_schedule_handlers.py").write_text(
        textwrap.dedent("""
        from framework import handler

        @handler("analytics")
        def snap(payload: dict) -> None: ...
    """)
    )
    (tmp_path / "q.toml").write_text(app_toml(redis_url, TOML, prefix="clisched"))
    return {
        "HUEYARD_CONFIG": str(tmp_path / "q.toml"),
        "HUEYARD_HANDLER_PACKAGES": "",
        "HUEYARD_HANDLER_MODULES": "cli_schedule_handlers",
        "PYTHONPATH": str(tmp_path),
    }


def test_schedules_lists_next_and_last_run_and_run_pause_resume_act(
    project: dict[str, str],
) -> None:
    listed = run(["schedules"], project)
    assert listed.returncode == 0, listed.stderr
    header, _, row = listed.stdout.splitlines()[:3]
    assert header.split()[:4] == ["schedule", "queue", "handler", "when"]
    assert row.split()[:8] == ["nightly", "analytics", "snap", "cron", "5", "0", "*", "*"]
    assert "never" in row and row.endswith("ok")

    ran = run(["schedule", "run", "nightly"], project)
    job_id = ran.stdout.strip()
    assert ran.returncode == 0 and len(job_id) == 36
    [info] = json.loads(run(["schedules", "--json"], project).stdout)
    assert (info["name"], info["last_job"], info["paused"]) == ("nightly", job_id, False)
    assert info["schedule"] == "cron 5 0 * * * (Europe/Berlin)"
    assert info["next_run"].endswith(("+01:00", "+02:00"))  # in the schedule's zone

    assert "paused" in run(["schedule", "pause", "nightly"], project).stdout
    assert "was paused already" in run(["schedule", "pause", "nightly"], project).stdout
    assert run(["schedules"], project).stdout.splitlines()[2].endswith("paused")
    assert "resumed" in run(["schedule", "resume", "nightly"], project).stdout


def test_an_unknown_schedule_is_one_line_naming_the_declared_ones(
    project: dict[str, str],
) -> None:
    result = run(["schedule", "run", "weekly"], project)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "hueyard: error: unknown schedule 'weekly'; declared schedules: nightly"
    )


def test_run_by_hand_with_its_state_key_of_another_type_enqueues_nothing_and_names_it(
    project: dict[str, str], redis_conn: redis.Redis
) -> None:
    # Given something else wrote a string where the schedule's state hash lives
    redis_conn.set("{clisched}:schedule:nightly", "not a hash")
    # When it is run by hand, twice
    for _ in range(2):
        result = run(["schedule", "run", "nightly"], project)
        # Then it refuses, naming the key and its type, and no job was enqueued
        assert result.returncode == 1 and result.stdout == ""
        assert "{clisched}:schedule:nightly" in result.stderr and "string" in result.stderr
    assert not [key for key in redis_conn.scan_iter("{clisched:analytics}:*")]
