"""``hueyard doctor`` against a real ``huey_consumer`` process: busy workers while it runs a
long job, no consumer once it has stopped."""

from __future__ import annotations

import signal

import pytest

from framework.doctor import Check, Severity, diagnose
from framework.jobs import Jobs
from tests.e2e.conftest import E2E, wait_until

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
