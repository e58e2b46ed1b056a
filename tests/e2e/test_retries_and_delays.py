"""Retries with backoff, per-job attempts, delayed jobs: timed from outside the consumer.

The consumer's scheduler moves due retries and delayed jobs into their queue
every :data:`~tests.e2e.conftest.TICK` (0.1 s), so a job due at ``t`` starts
between ``t`` and about ``t + 0.1``; the upper bounds below allow
``SCHEDULER_SLACK`` for that tick and a loaded machine.
"""

from __future__ import annotations

import datetime
import time

import pytest

from framework.errors import OptionError
from tests.e2e import e2e_handlers as handlers
from tests.e2e.conftest import BACKOFF, E2E

pytestmark = pytest.mark.e2e

SCHEDULER_SLACK = 1.5
DELAY = 1.0


def _start_times(e2e: E2E, job: str | None, tag: str) -> list[float]:
    return [entry["t"] for entry in e2e.records.starts(job, tag)]


def test_a_failing_job_is_tried_attempts_times_with_exponential_backoff(e2e: E2E) -> None:
    # Given a consumer, and the queue "retry": attempts = 3, exponential backoff from 0.5 s
    e2e.start_consumer()

    # When a job that always fails is enqueued
    job_id = handlers.always_fail.enqueue({"tag": "doomed"})

    # Then it fails for good after exactly three attempts
    error = e2e.wait_final_error("retry", job_id, timeout=20)
    assert "always_fail doomed" in str(error)
    first, second, third = _start_times(e2e, "retry.always_fail", "doomed")

    # And waited 0.5 s before the second attempt and 1 s before the third
    assert BACKOFF <= second - first < BACKOFF + SCHEDULER_SLACK
    assert 2 * BACKOFF <= third - second < 2 * BACKOFF + SCHEDULER_SLACK

    # And nothing more is scheduled
    assert (e2e.pending("retry"), e2e.scheduled("retry")) == (0, 0)


@pytest.mark.untimed
def test_a_job_that_fails_twice_then_succeeds_completes_on_its_third_attempt(e2e: E2E) -> None:
    e2e.start_consumer()

    job_id = handlers.flaky.enqueue({"tag": "flaky", "failures": 2})

    assert e2e.wait_result("retry", job_id, timeout=20) == {"attempt": 3}
    attempts = e2e.records.starts("retry.flaky", "flaky")
    assert [entry["attempt"] for entry in attempts] == [1, 2, 3]
    assert len(e2e.records.ends("retry.flaky", "flaky")) == 1
    assert (e2e.pending("retry"), e2e.scheduled("retry")) == (0, 0)


def test_attempts_given_at_enqueue_override_the_queues_both_ways(e2e: E2E) -> None:
    # Given "retry" (attempts = 3) and "once" (attempts = 1)
    e2e.start_consumer()

    # When one job on each asks for 2 attempts
    fewer = handlers.always_fail.enqueue({"tag": "fewer"}, attempts=2)
    more = handlers.once_always_fail.enqueue({"tag": "more"}, attempts=2)

    # Then each is tried exactly twice, one backoff delay apart
    e2e.wait_final_error("retry", fewer, timeout=20)
    e2e.wait_final_error("once", more, timeout=20)
    for job, tag in (("retry.always_fail", "fewer"), ("once.always_fail", "more")):
        first, second = _start_times(e2e, job, tag)
        assert BACKOFF <= second - first < BACKOFF + SCHEDULER_SLACK
    assert (e2e.scheduled("retry"), e2e.scheduled("once")) == (0, 0)


@pytest.mark.untimed
def test_a_queue_with_one_attempt_never_retries(e2e: E2E) -> None:
    e2e.start_consumer()

    job_id = handlers.once_always_fail.enqueue({"tag": "single"})

    # The first failure is final (no retries left) and no retry is scheduled
    error = e2e.wait_final_error("once", job_id)
    assert "once.always_fail single" in str(error)
    assert len(e2e.records.starts("once.always_fail", "single")) == 1
    assert (e2e.pending("once"), e2e.scheduled("once")) == (0, 0)


def test_a_delayed_job_waits_for_its_delay(e2e: E2E) -> None:
    # Given a consumer
    e2e.start_consumer()

    # When jobs are enqueued with a delay of 1 s, as seconds and as a timedelta
    enqueued = time.time()
    seconds = handlers.alpha_echo.enqueue({"tag": "seconds"}, delay=DELAY)
    timedelta = handlers.beta_echo.enqueue(
        {"tag": "timedelta"}, delay=datetime.timedelta(seconds=DELAY)
    )

    # Then they are scheduled, not waiting
    assert (e2e.scheduled("alpha"), e2e.pending("alpha")) == (1, 0)
    assert (e2e.scheduled("beta"), e2e.pending("beta")) == (1, 0)

    # And each runs once, no sooner than 1 s after the enqueue and soon after that
    e2e.wait_result("alpha", seconds)
    e2e.wait_result("beta", timedelta)
    for tag in ("seconds", "timedelta"):
        [started] = _start_times(e2e, None, tag)
        assert DELAY <= started - enqueued < DELAY + SCHEDULER_SLACK, tag
    assert (e2e.scheduled("alpha"), e2e.scheduled("beta")) == (0, 0)


def test_a_job_with_an_aware_eta_waits_until_then_whatever_its_time_zone(e2e: E2E) -> None:
    e2e.start_consumer()

    # When jobs are given an eta 1 s ahead, written in UTC and in UTC+05:00
    now = datetime.datetime.now(datetime.UTC)
    eta = now + datetime.timedelta(seconds=DELAY)
    utc_id = handlers.alpha_echo.enqueue({"tag": "utc"}, eta=eta)
    plus5 = eta.astimezone(datetime.timezone(datetime.timedelta(hours=5)))
    plus5_id = handlers.gamma_echo.enqueue({"tag": "plus5"}, eta=plus5)
    assert (e2e.scheduled("alpha"), e2e.scheduled("gamma")) == (1, 1)

    # Then each runs once, not before its eta and soon after it
    e2e.wait_result("alpha", utc_id)
    e2e.wait_result("gamma", plus5_id)
    for tag in ("utc", "plus5"):
        [started] = _start_times(e2e, None, tag)
        assert eta.timestamp() <= started < eta.timestamp() + SCHEDULER_SLACK, tag


def test_a_naive_eta_is_refused_because_its_time_zone_is_a_guess(e2e: E2E) -> None:
    # Given an eta without a time zone
    eta = datetime.datetime.now() + datetime.timedelta(seconds=2)

    # Then enqueue refuses it and says how to write it, and nothing is stored
    with pytest.raises(OptionError, match="has no time zone; pass an aware datetime"):
        handlers.alpha_echo.enqueue({"tag": "naive"}, eta=eta)
    assert e2e.app.queue("alpha").huey.scheduled_count() == 0
    assert e2e.app.queue("alpha").huey.pending_count() == 0


def test_the_scheduler_checks_for_due_jobs_every_scheduler_interval(e2e: E2E) -> None:
    # Given a consumer whose scheduler looks for due jobs every 2 seconds
    consumer = e2e.start_consumer(config=e2e.write_config("interval.toml", scheduler_interval=2))
    first_check = consumer.started  # the scheduler checks as it starts, then every 2 s

    # When a job due 0.2 s later is enqueued
    job_id = handlers.alpha_echo.enqueue({"tag": "due"}, delay=0.2)

    # Then it is moved to its queue at the next check, about 2 s after the first
    e2e.wait_result("alpha", job_id)
    [started] = _start_times(e2e, "alpha.echo", "due")
    assert started - first_check >= 1.6
