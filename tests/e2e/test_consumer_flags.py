"""``huey_consumer`` flags under hueyard, with real processes: each one is honoured with
Huey's meaning, refused in one line, or warned about at start naming the hueyard way;
none is silently ignored."""

from __future__ import annotations

import subprocess
import time

import pytest

from framework.consumer import ignored_flags
from tests.e2e.conftest import E2E, consumer_command

pytestmark = [pytest.mark.e2e, pytest.mark.untimed]

SCHEDULE = """
[schedules.every_second]
handler = "gamma.tick"
every = 1
tick_field = "tick"
"""


def test_a_worker_type_hueyard_can_not_stop_is_refused_in_one_line(e2e: E2E) -> None:
    run = subprocess.run(
        consumer_command("-k", "greenlet"),
        env=e2e.consumer_env({"HUEYARD_QUEUES": "gamma"}),
        cwd=e2e.tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert (
        run.stderr.strip()
        .splitlines()[-1]
        .startswith("hueyard: error: -k greenlet is not supported")
    )
    assert "use -k thread (the default) or -k process" in run.stderr


def refusal(e2e: E2E, command: list[str]) -> str:
    """Run ``command`` as a consumer that must refuse to start; its one line of stderr."""
    run = subprocess.run(
        command,
        env=e2e.consumer_env({"HUEYARD_QUEUES": "gamma"}),
        cwd=e2e.tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    return run.stderr.strip().splitlines()[-1]


def test_max_tasks_without_the_health_check_is_refused_as_huey_refuses_it(e2e: E2E) -> None:
    # -M recycles a worker after N jobs, and only the health check (off with -C) starts
    # its replacement: Huey refuses the pair, so does hueyard
    line = refusal(e2e, consumer_command("-M", "5", "-C"))
    assert line.startswith("hueyard: error: -M 5 needs the worker health check, which -C")
    assert "drop -C (or -M)" in line
    # each alone is fine
    consumer = e2e.start_consumer("-M", "5", env={"HUEYARD_QUEUES": "gamma"})
    assert consumer.running()


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_a_worker_replaced_after_its_max_tasks_is_logged_as_planned_not_as_dead(
    e2e: E2E, kind: str
) -> None:
    # Given a consumer whose one worker is replaced every 2 jobs (-M 2)
    ids = [e2e.app.enqueue("gamma", "echo", {"tag": f"m{n}"}) for n in range(5)]
    consumer = e2e.start_consumer(
        "-k", kind, "-M", "2", "-c", "0.2", env={"HUEYARD_QUEUES": "gamma"}
    )
    # When it runs them all
    e2e.wait_drained("gamma", completed=len(ids))
    # Then each replacement is an INFO line naming -M, never a worker "died" warning
    consumer.wait_log("ran its 2 jobs (-M); starting a new one")
    assert "died" not in consumer.log()


def test_a_numeric_flag_out_of_its_range_is_refused_in_one_line(e2e: E2E) -> None:
    # -t nan was taken, then ended the shutdown in a ValueError with its jobs still
    # active; -t -1 gave running jobs no time at all
    for flag, value, told in (
        ("-t", "nan", "-t nan is not allowed (seconds running jobs get to finish at shutdown)"),
        ("-t", "-1", "-t -1 is not allowed (seconds running jobs get to finish at shutdown)"),
        ("-c", "0", "-c 0 is not allowed (seconds between worker health checks); use 0.1 to"),
        ("-M", "-3", "-M -3 is not allowed (jobs a worker runs before it is replaced); use 1"),
    ):
        assert refusal(e2e, consumer_command(flag, value)).startswith(f"hueyard: error: {told}")


def test_huey_consumer_on_one_queues_huey_is_refused_naming_hueyards_consumer(e2e: E2E) -> None:
    # Given a module that hands one queue's Huey to huey_consumer, as a Huey user would
    (e2e.tmp_path / "one_queue.py").write_text(
        "import framework\n\nhuey = framework.get_app().queue('gamma').huey\n",
        encoding="utf-8",
    )
    huey_consumer = consumer_command()[:-1]  # without "framework.app"

    line = refusal(e2e, [*huey_consumer, "one_queue.huey"])

    assert line.startswith("hueyard: error: the Huey of queue 'gamma' has no consumer of its own")
    assert line.endswith("HUEYARD_QUEUES=gamma huey_consumer framework.app (docs/consumer.md)")


def test_flags_hueyard_does_not_take_are_warned_about_at_start(e2e: E2E) -> None:
    consumer = e2e.start_consumer(
        "-w", "4", "-s", "5", "-f", "-L", "x", "-g", "TERM", env={"HUEYARD_QUEUES": "gamma"}
    )
    log = consumer.log()
    for line in ignored_flags(
        workers=4, scheduler_interval=5, flush_locks=True, extra_locks="x", graceful_signal="TERM"
    ):
        assert f"WARNING:hueyard.consumer:MainThread:{line}" in log
    assert len(ignored_flags(workers=4, scheduler_interval=5, flush_locks=True,
                             extra_locks="x", graceful_signal="TERM")) == 5  # fmt: skip


def test_defaults_warn_about_nothing() -> None:
    assert ignored_flags(workers=1, scheduler_interval=1, flush_locks=False,
                         extra_locks=None, graceful_signal="INT") == []  # fmt: skip


def test_no_periodic_keeps_huey_s_meaning_this_consumer_fires_no_schedule(e2e: E2E) -> None:
    # Given a schedule every second, and its queue's only consumer started with -n
    config = e2e.write_config("s.toml", schedules=SCHEDULE)
    consumer = e2e.start_consumer("-n", env={"HUEYARD_QUEUES": "gamma"}, config=config)

    # When 2 s pass (two ticks), no tick is fired
    time.sleep(2)
    assert e2e.records.starts() == []
    assert "-n: this consumer fires no schedule" in consumer.log()

    # And a consumer without -n fires them
    e2e.start_consumer(env={"HUEYARD_QUEUES": "gamma"}, config=config)
    e2e.records.wait_for(2)
