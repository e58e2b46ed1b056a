"""A queue's rate limit and its pause, measured over real time with real consumers.

"throttled" allows 5 job starts in any second (``rate_limit = { max = 5,
per = 1 }``) across every consumer; "pausable" is a plain queue with four
workers. Both run ``_tracked`` of ``e2e_handlers``, which records each run with
the job's id and its consumer.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from typing import Any

import pytest

from tests.e2e import e2e_handlers as handlers
from tests.e2e.conftest import E2E, wait_until

pytestmark = pytest.mark.e2e

RATE_MAX = 5
RATE_PER = 1.0
RATE_JOBS = 20

CLOCK_SLACK = 0.25
"""Seconds between a job's claim (which the limiter counts) and its handler's start record."""


def _most_in_a_window(times: list[float], width: float) -> tuple[int, float]:
    """The most ``times`` in any window [t, t + width) starting at one of them, and its t."""
    ordered = sorted(times)
    best, at = 0, ordered[0] if ordered else 0.0
    for index, start in enumerate(ordered):
        inside = sum(1 for t in ordered[index:] if t < start + width)
        if inside > best:
            best, at = inside, start
    return best, at


def test_the_rate_limit_holds_in_every_window_across_consumers(e2e: E2E) -> None:
    # Given two consumers, each with four workers on "throttled" and two on "alpha"
    env = {"HUEYARD_QUEUES": "throttled,alpha"}
    consumers = [e2e.start_consumer(env=env) for _ in range(2)]

    # When twenty no-op jobs are enqueued on "throttled"
    ids = e2e.app.enqueue_many("throttled", "work", [{"n": n} for n in range(RATE_JOBS)])

    # And once the first window is spent, ten jobs are enqueued on "alpha"
    e2e.records.wait_for(RATE_MAX, job="throttled.work")
    other_enqueued = time.time()
    others = [handlers.alpha_echo.enqueue({"tag": f"other-{n}"}) for n in range(10)]

    # Then "alpha" is not slowed down: its jobs complete while "throttled" still waits
    e2e.records.wait_for(10, job="alpha.echo", event="end", timeout=10)
    other_done = time.time() - other_enqueued
    throttled_then = e2e.counts("throttled")
    assert other_done < 1.0, f"the other queue took {other_done:.2f}s"
    assert throttled_then.waiting > 0, throttled_then
    for job_id in others:  # a handler records its end just before its outcome is stored
        assert e2e.wait_result("alpha", job_id, timeout=5) is not None

    # And all twenty "throttled" jobs complete, each on its first and only attempt
    e2e.wait_drained("throttled", RATE_JOBS, timeout=30)
    infos = [e2e.job(job_id) for job_id in ids]
    assert [info.attempts if info else None for info in infos] == [1] * RATE_JOBS
    starts = e2e.records.by_id("throttled.work", "start")
    assert {job_id: len(runs) for job_id, runs in starts.items()} == dict.fromkeys(ids, 1)

    # And both consumers took a share of them
    shares = Counter(runs[0]["pgid"] for runs in starts.values())
    print(f"jobs per consumer: {dict(shares)}")
    assert set(shares) == {consumer.pid for consumer in consumers}

    # And in no window of 1 second did more than 5 jobs start: by the claim times Redis
    # recorded (exact, in ms) and by the handlers' clocks (up to CLOCK_SLACK later)
    claimed_ms = [info.started.timestamp() * 1000 for info in infos if info and info.started]
    assert len(claimed_ms) == RATE_JOBS
    most, at = _most_in_a_window(claimed_ms, RATE_PER * 1000)
    assert most == RATE_MAX, f"{most} claims in the {RATE_PER:g} s from {at}"
    started = [runs[0]["t"] for runs in starts.values()]
    most, at = _most_in_a_window(started, RATE_PER - CLOCK_SLACK)
    assert most <= RATE_MAX, f"{most} starts in the {RATE_PER:g} s from {at}"

    # And the limit only spaced the jobs out: they were claimed in enqueue order
    assert claimed_ms == sorted(claimed_ms)
    # (20 jobs, 5 per second: the last window opens 3 s after the first)
    span = (claimed_ms[-1] - claimed_ms[0]) / 1000
    print(f"other queue done in {other_done:.3f}s; throttled claims over {span:.3f}s")
    assert 3 * RATE_PER <= span < 3 * RATE_PER + 2.5, span


PAUSE_JOBS = 200


def _started(e2e: E2E) -> dict[str, list[dict[str, Any]]]:
    return e2e.records.by_id("pausable.work", "start")


def test_a_queue_paused_under_load_holds_across_a_restart_and_resumes_at_once(e2e: E2E) -> None:
    # Given a consumer working through 200 jobs of 20 ms on "pausable" (four workers)
    env = {"HUEYARD_QUEUES": "pausable"}
    e2e.start_consumer(env=env)
    ids = e2e.app.enqueue_many("pausable", "work", [{"n": n, "ms": 20} for n in range(PAUSE_JOBS)])
    e2e.records.wait_for(20, job="pausable.work", event="end")

    # When the queue is paused
    assert e2e.jobs.pause("pausable") is True
    paused_ms = time.time() * 1000

    # Then the running jobs finish, and no job is taken after the pause
    wait_until(lambda: e2e.counts("pausable").active == 0, timeout=5, what="running jobs to end")
    before = _started(e2e)
    ran = len(before)
    assert 20 <= ran < PAUSE_JOBS
    claims = [info.started for info in map(e2e.job, before) if info is not None and info.started]
    assert len(claims) == ran
    assert max(claim.timestamp() * 1000 for claim in claims) <= paused_ms
    time.sleep(0.5)  # nothing may start in this half second
    assert len(_started(e2e)) == ran

    # And the queue shows its jobs as paused, none waiting, every run finished
    counts = e2e.counts("pausable")
    assert counts.is_paused is True
    assert (counts.waiting, counts.active, counts.delayed, counts.failed) == (0, 0, 0, 0)
    assert (counts.completed, counts.paused) == (ran, PAUSE_JOBS - ran)
    assert e2e.records.by_id("pausable.work", "end").keys() == before.keys()

    # When the consumer is restarted
    old = e2e.consumers[-1]
    old.send(signal.SIGTERM)
    assert old.wait_exit() == 0
    e2e.start_consumer(env=env)

    # Then the pause holds: the new consumer takes nothing
    time.sleep(0.8)  # nothing may start in these 0.8 seconds
    assert len(_started(e2e)) == ran
    held = e2e.counts("pausable")
    assert (held.is_paused, held.paused, held.waiting) == (True, PAUSE_JOBS - ran, 0)

    # When the queue is resumed
    resumed_at = time.time()
    assert e2e.jobs.resume("pausable") is True

    # Then idle workers are woken at once (not by a poll), and every job completes
    e2e.wait_drained("pausable", PAUSE_JOBS, timeout=20)
    starts = _started(e2e)
    first_after = min(runs[0]["t"] for job_id, runs in starts.items() if job_id not in before)
    woken = first_after - resumed_at
    print(f"{ran} jobs ran before the pause; the first start came {woken:.3f}s after resume")
    assert woken < 0.3, f"the first start came {woken:.3f}s after resume"

    # And each job ran exactly once, and the queue is no longer paused
    assert {job_id: len(runs) for job_id, runs in starts.items()} == dict.fromkeys(ids, 1)
    ends = e2e.records.by_id("pausable.work", "end")
    assert {job_id: len(runs) for job_id, runs in ends.items()} == dict.fromkeys(ids, 1)
    final = e2e.counts("pausable")
    assert (final.is_paused, final.completed, final.paused, final.failed) == (
        False,
        PAUSE_JOBS,
        0,
        0,
    )
