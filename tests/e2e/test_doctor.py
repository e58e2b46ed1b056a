"""``hueyard doctor`` against a real ``huey_consumer`` process: busy workers while it runs a
long job, no consumer once it has stopped; what it reads on a host whose clock is wrong."""

from __future__ import annotations

import json
import re
import signal

import pytest

from framework.doctor import Check, Severity, diagnose
from framework.jobs import Jobs
from tests.e2e.conftest import E2E, wait_until, wrong_clock
from tests.integration.cli_runner import run_process

pytestmark = [pytest.mark.e2e, pytest.mark.untimed]


def test_the_doctor_sees_a_real_consumers_busy_worker_then_its_absence(e2e: E2E) -> None:
    # Given a real consumer of "slow" (one worker) running a long job, and one more waiting
    consumer = e2e.start_consumer("-t", "0.5", env={"HUEYARD_QUEUES": "slow"})
    long_job = e2e.app.enqueue("slow", "sleep", {"tag": "long", "seconds": 30})
    e2e.records.wait_for(1, job="slow.sleep", tag="long")
    e2e.app.enqueue("slow", "sleep", {"tag": "next", "seconds": 0})
    wait_until(lambda: Jobs(e2e.app).consumers(), timeout=10, what="a heartbeat")
    # When
    [busy] = [f for f in diagnose(e2e.app, ["slow"]) if f.queue == "slow"]
    # Then its one worker is busy with the long job
    assert (busy.check, busy.severity) == (Check.WORKERS_BUSY, Severity.WARNING)
    assert busy.what == "its only worker is busy"
    assert busy.evidence.startswith("1 job running on 1 consumer x concurrency 1; 1 job waiting")
    assert f"the longest-running job, {long_job}, started " in busy.evidence
    # When the consumer stops (SIGTERM: the long job goes back to waiting, the consumer leaves)
    consumer.send(signal.SIGTERM)
    assert consumer.wait_exit() == 0
    # Then nothing serves "slow" any more
    [gone] = [f for f in diagnose(e2e.app, ["slow"]) if f.queue == "slow"]
    assert (gone.check, gone.severity) == (Check.NO_CONSUMER, Severity.ERROR)
    assert gone.evidence.startswith("2 jobs waiting, the oldest for ")


def test_hosts_whose_clocks_are_an_hour_off_pause_and_diagnose_by_the_redis_servers_clock(
    e2e: E2E,
) -> None:
    # Given a real consumer failed a job of "once" for good (one attempt) this minute
    e2e.start_consumer(env={"HUEYARD_QUEUES": "once"})
    job = e2e.app.enqueue("once", "always_fail", {"tag": "clock"})
    e2e.wait_final_error("once", job)
    # and an operator on a host whose clock is an hour behind paused the queue
    env = e2e.consumer_env()
    paused = run_process(["pause", "once"], env={**env, **wrong_clock("-1h")})
    assert paused.returncode == 0, paused.stderr
    # When the doctor runs on a host whose clock is an hour ahead
    doctor = run_process(["doctor", "--json", "once"], env={**env, **wrong_clock("+1h")})
    # Then it reads this minute's failure (its window ends at the server's minute, where the
    # scripts counted it), and the pause is moments old, not an hour
    findings = {f["check"]: f for f in json.loads(doctor.stdout) if f["queue"] == "once"}
    assert findings["failing"]["evidence"].startswith("1 of 1 finished jobs failed"), findings
    evidence = findings["paused"]["evidence"]
    assert re.match(r"paused since [-0-9]+ [:0-9]+ UTC \(\d+ s ago\)", evidence), evidence
