"""Huey's exceptions keep Huey's meaning in a real ``huey_consumer framework.app``.

The queue "retry" allows 3 attempts, 0.5 s apart at first (conftest.BACKOFF).
"""

from __future__ import annotations

import pytest

from tests.e2e import e2e_handlers as handlers
from tests.e2e.conftest import E2E

pytestmark = [pytest.mark.e2e, pytest.mark.untimed]


def test_cancel_execution_retries_while_attempts_remain_and_retry_false_fails_now(
    e2e: E2E,
) -> None:
    e2e.start_consumer()

    softly = handlers.cancel.enqueue({"tag": "softly", "retry": None})
    now = handlers.cancel.enqueue({"tag": "now", "retry": False})

    e2e.wait_final_error("retry", softly, timeout=20)
    e2e.wait_final_error("retry", now, timeout=20)
    assert len(e2e.records.starts("retry.cancel", "softly")) == 3
    assert len(e2e.records.starts("retry.cancel", "now")) == 1


def test_a_held_lock_sends_the_locked_signal_and_retries_without_a_traceback(
    e2e: E2E,
) -> None:
    # Given the handler's lock_task lock held by this process (another worker, elsewhere)
    held = e2e.app.queue("retry").huey.lock_task("monthly")
    held.acquire()
    consumer = e2e.start_consumer()

    # When its job runs in the consumer
    job_id = handlers.locked_report.enqueue({"tag": "m", "lock": "monthly"})

    # Then the consumer sends Huey's locked signal, and logs one warning without a traceback
    e2e.records.wait_for(1, job="retry.locked_report", tag=job_id, event="locked")
    consumer.wait_log(f"job {job_id} (locked_report) attempt 1 of 3 not run, its lock is held")
    info = e2e.job(job_id)
    assert info is not None and info.traceback in ("", None)

    # And when the lock is free, the retry completes, and the job keeps no error of before
    held.release()
    assert e2e.wait_result("retry", job_id, timeout=20) == {"tag": "m"}
    info = e2e.job(job_id)
    assert info is not None
    assert (info.attempts, info.error, info.traceback) == (2, None, None)
    assert "Traceback" not in consumer.log()


def test_a_job_that_completes_after_failing_keeps_no_error(e2e: E2E) -> None:
    e2e.start_consumer()

    job_id = handlers.flaky.enqueue({"tag": "recovers", "failures": 1})

    assert e2e.wait_result("retry", job_id, timeout=20) == {"attempt": 2}
    info = e2e.job(job_id)
    assert info is not None
    assert (info.state, info.error, info.traceback) == ("completed", None, None)
