"""Job keys under a real ``huey_consumer``: a key holds through a job's retries, is
freed when it finishes, and stays taken for ``key_ttl`` after that."""

from __future__ import annotations

import time

import pytest

from tests.e2e import e2e_handlers as handlers
from tests.e2e.conftest import E2E, wait_until

pytestmark = pytest.mark.e2e


def test_a_key_is_held_through_every_retry_and_freed_once_the_job_completes(e2e: E2E) -> None:
    # Given a job that fails twice (backoff 0.5 s, then 1 s) before it completes, with a key
    e2e.start_consumer()
    first = handlers.flaky.enqueue({"tag": "keyed", "failures": 2}, key="order-42")

    # When a duplicate is enqueued between its attempts (waiting for a retry)
    wait_until(
        lambda: len(e2e.records.starts("retry.flaky", "keyed")) >= 1, timeout=10, what="attempt 1"
    )
    during = [handlers.flaky.enqueue({"tag": "dup", "failures": 0}, key="order-42")]
    wait_until(
        lambda: len(e2e.records.starts("retry.flaky", "keyed")) >= 2, timeout=10, what="attempt 2"
    )
    during.append(handlers.flaky.enqueue({"tag": "dup", "failures": 0}, key="order-42"))

    # Then each duplicate got the first job's id, and nothing of the duplicates ran
    assert during == [first, first]
    assert e2e.wait_result("retry", first, timeout=20) == {"attempt": 3}
    assert e2e.records.starts("retry.flaky", "dup") == []

    # And once it completed, the key is free: the same key makes a new job, which runs
    after = handlers.flaky.enqueue({"tag": "after", "failures": 0}, key="order-42")
    assert after != first
    assert e2e.wait_result("retry", after, timeout=10) == {"attempt": 1}


def test_key_ttl_refuses_a_late_duplicate_until_it_expires(e2e: E2E) -> None:
    e2e.start_consumer()
    first = handlers.flaky.enqueue({"tag": "ttl", "failures": 0}, key="evt-7", key_ttl=2)
    assert e2e.wait_result("retry", first, timeout=10) == {"attempt": 1}
    done = time.monotonic()

    # A duplicate within key_ttl of the finish gets the finished job's id
    assert handlers.flaky.enqueue({"tag": "late", "failures": 0}, key="evt-7") == first

    # After it, the key is free again
    time.sleep(max(0.0, 2 - (time.monotonic() - done)))
    wait_until(
        lambda: handlers.flaky.enqueue({"tag": "later", "failures": 0}, key="evt-7") != first,
        timeout=5,
        what="key_ttl to pass",
    )
    assert e2e.records.starts("retry.flaky", "late") == []
