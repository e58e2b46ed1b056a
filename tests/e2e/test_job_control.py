"""Job control with real consumers: timeouts that free the worker, cancel, a retry at a time.

The queue "timed" has one worker, one attempt and a 2-second timeout. Its
``spin`` handler runs pure Python (an exception raised in its thread stops it
at once); its ``block`` handler sleeps in C (no exception reaches it until the
sleep ends).
"""

from __future__ import annotations

import signal
import sys
import time

import pytest

from framework.consumer import EXIT_ABANDONED
from framework.jobs import Cancel
from tests.e2e import e2e_handlers as handlers
from tests.e2e.conftest import BACKOFF, E2E, wait_until

pytestmark = pytest.mark.e2e

WORKER_TYPES = ["thread", "process"]
TIMED = {"HUEYARD_QUEUES": "timed"}
SLACK = 1.5
"""Seconds a loaded machine may add to anything timed here."""


def _finished_at(e2e: E2E, job_id: str) -> float:
    info = e2e.job(job_id)
    assert info is not None and info.finished is not None
    return info.finished.timestamp()


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_a_runaway_job_stops_at_its_timeout_and_the_next_job_starts_right_after(
    e2e: E2E, worker_type: str
) -> None:
    # Given the only worker of "timed" (timeout 2 s) running a pure-Python job of a minute,
    # and a job waiting behind it
    e2e.start_consumer("-k", worker_type, env=TIMED)
    runaway = handlers.spin.enqueue({"tag": "runaway", "seconds": 60})
    following = handlers.spin.enqueue({"tag": "next", "seconds": 0})
    [started] = e2e.records.wait_for(1, tag="runaway")

    # Then it is stopped at its timeout and fails, "timed out after 2 s"
    assert e2e.wait_final_error("timed", runaway) == "timed out after 2 s"
    failed_at = _finished_at(e2e, runaway)
    assert 2.0 <= failed_at - started["t"] < 2.0 + SLACK
    assert e2e.records.ends(tag="runaway") == []

    # And the worker it held takes the next job at once
    [next_start] = e2e.records.wait_for(1, tag="next")
    assert next_start["t"] - failed_at < 1.0
    assert e2e.wait_result("timed", following) == {"tag": "next"}


@pytest.mark.untimed
@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_a_handler_that_raises_what_is_not_an_exception_fails_its_job_and_keeps_its_worker(
    e2e: E2E, worker_type: str
) -> None:
    # Given the only worker of "timed" (one attempt), and jobs whose handler raises
    # SystemExit, KeyboardInterrupt, asyncio.CancelledError and an exception that cannot
    # be turned into text, then an ordinary job
    consumer = e2e.start_consumer("-k", worker_type, env=TIMED)
    tags = ("exit", "interrupt", "cancel", "unprintable")
    raised = {tag: handlers.escapes.enqueue({"tag": tag}) for tag in tags}
    after = handlers.spin.enqueue({"tag": "after", "seconds": 0})

    # Then each of them failed, naming what it raised, once: none killed the worker or
    # stayed active, and the KeyboardInterrupt was not taken for a shutdown
    assert e2e.wait_final_error("timed", raised["exit"]) == "SystemExit: 3"
    assert e2e.wait_final_error("timed", raised["interrupt"]) == "KeyboardInterrupt"
    assert e2e.wait_final_error("timed", raised["cancel"]) == "CancelledError"
    unprintable = e2e.wait_final_error("timed", raised["unprintable"])
    assert unprintable == "Unprintable: <exception str() failed>"
    assert len(e2e.records.starts(tag="interrupt")) == 1
    assert "interrupted by shutdown" not in consumer.log()

    # And the same worker runs the next job
    assert e2e.wait_result("timed", after) == {"tag": "after"}
    assert consumer.running()


@pytest.mark.untimed
def test_under_a_tracer_a_consumer_runs_job_after_job_stops_a_timeout_and_exits(
    e2e: E2E,
) -> None:
    # Given a thread consumer of "timed" run under a tracer, as coverage, pdb or an IDE's
    # debugger run it (a thread that ended a job used to spin forever at its next call)
    consumer = e2e.start_consumer(
        "-k", "thread", env=TIMED, command=[sys.executable, "-m", "tests.e2e.traced_consumer"]
    )

    # When a job completes, the next runs past its timeout, and one more follows
    first = handlers.spin.enqueue({"tag": "first", "seconds": 0})
    runaway = handlers.spin.enqueue({"tag": "runaway", "seconds": 60})
    last = handlers.spin.enqueue({"tag": "last", "seconds": 0})

    # Then each ends as it would without the tracer
    assert e2e.wait_result("timed", first) == {"tag": "first"}
    assert e2e.wait_final_error("timed", runaway) == "timed out after 2 s"
    assert e2e.wait_result("timed", last) == {"tag": "last"}

    # And the consumer stops at SIGTERM, its worker free
    consumer.send(signal.SIGTERM)
    assert consumer.wait_exit() == 0


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_a_job_blocked_outside_python_past_its_timeout_frees_its_worker(
    e2e: E2E, worker_type: str
) -> None:
    # Given the only worker of "timed" in time.sleep(60), a job waiting behind it, and
    # [consumer] abandon_after = 1.5
    config = e2e.write_config("abandon.toml", abandon_after=1.5)
    consumer = e2e.start_consumer("-k", worker_type, env=TIMED, config=config)
    stuck = handlers.block.enqueue({"tag": "stuck", "seconds": 60})
    following = handlers.spin.enqueue({"tag": "next", "seconds": 0})
    [started] = e2e.records.wait_for(1, tag="stuck")

    # Then the stuck job fails within 5 s of its start ...
    error = e2e.wait_final_error("timed", stuck)
    assert _finished_at(e2e, stuck) - started["t"] < 5.0
    if worker_type == "thread":
        # ... given up on: its thread stays blocked, a new worker takes its place
        assert error.startswith("timed out after 2 s; it did not stop within 1.5 s")
        consumer.wait_log("a new worker takes its place")
    else:
        # ... interrupted by Huey's alarm in its worker process
        assert error == "timed out after 2 s"

    # And the next job runs all the same: the queue kept its one worker
    assert e2e.wait_result("timed", following) == {"tag": "next"}
    assert e2e.records.ends(tag="stuck") == []


def test_past_max_abandoned_threads_the_consumer_exits_for_its_supervisor(e2e: E2E) -> None:
    # Given a consumer that may give up on one stuck thread at most
    config = e2e.write_config("stuck.toml", abandon_after=0.5, max_abandoned_threads=1)
    consumer = e2e.start_consumer(env=TIMED, config=config)

    # When two jobs in a row block outside Python past their timeout
    first = handlers.block.enqueue({"tag": "first", "seconds": 60})
    second = handlers.block.enqueue({"tag": "second", "seconds": 60})

    # Then the first thread is given up on and replaced, and it says so in its heartbeat
    e2e.wait_final_error("timed", first)
    consumer.wait_log("1 abandoned thread(s) still stuck in this consumer, at most 1")
    # And past the limit it stops and exits with EX_TEMPFAIL, for a supervisor to restart
    assert consumer.wait_exit(timeout=20) == EXIT_ABANDONED
    assert "more than 1 worker threads are stuck" in consumer.log()
    assert e2e.wait_final_error("timed", second).startswith("timed out after 2 s")
    assert e2e.counts("timed").active == 0


def test_threads_given_up_on_that_ended_neither_count_nor_stop_their_replacements(
    e2e: E2E,
) -> None:
    # Given a consumer that may have one stuck thread at most, and jobs that block past
    # their timeout (2 s) and the grace (0.5 s), then return: given up on, then gone
    config = e2e.write_config("ended.toml", abandon_after=0.5, max_abandoned_threads=1)
    consumer = e2e.start_consumer(env=TIMED, config=config)
    for n in range(3):
        stuck = handlers.block.enqueue({"tag": f"stuck-{n}", "seconds": 2.8})
        assert e2e.wait_final_error("timed", stuck).startswith("timed out after 2 s")
        time.sleep(0.6)  # its thread returns from its call and ends
    # Then the consumer runs on: three threads given up on in all, never two at once
    # (a thread's id is reused at once: a replacement given a given-up id used to
    # leave its loop as it started, and the queue stopped for good)
    quick = [handlers.spin.enqueue({"tag": f"quick-{n}", "seconds": 0}) for n in range(5)]
    for job_id in quick:
        assert e2e.wait_result("timed", job_id)["tag"].startswith("quick-")
    assert consumer.running() and "worker threads are stuck" not in consumer.log()
    assert "died" not in consumer.log()


def test_the_heartbeat_counts_the_abandoned_threads(e2e: E2E) -> None:
    # Given a consumer that gave up on a stuck thread
    config = e2e.write_config("beat.toml", abandon_after=0.5)
    consumer = e2e.start_consumer(env=TIMED, config=config)
    e2e.wait_final_error("timed", handlers.block.enqueue({"tag": "stuck", "seconds": 60}))
    consumer.wait_log("a new worker takes its place")

    # Then its heartbeat (every 5 s) says so, for the workers page and /metrics, and
    # counts the queue's live workers without it (its replacement), for the doctor
    def abandoned() -> bool:
        return any(
            c.pid == consumer.pid and c.abandoned == 1 and c.live == {"timed": 1}
            for c in e2e.jobs.consumers()
        )

    wait_until(abandoned, timeout=8, what="a heartbeat with 1 abandoned thread")


@pytest.mark.parametrize("worker_type", WORKER_TYPES)
def test_cancel_ends_a_running_job_within_one_lease_renewal(e2e: E2E, worker_type: str) -> None:
    # Given a lease of 3 s (renewed every second) and a pure-Python job of a minute
    # (its own timeout of 60 s over the queue's 2 s)
    config = e2e.write_config("lease.toml", lease=3)
    e2e.start_consumer("-k", worker_type, env=TIMED, config=config)
    long = handlers.spin.enqueue({"tag": "long", "seconds": 60}, timeout=60)
    following = handlers.spin.enqueue({"tag": "next", "seconds": 0})
    e2e.records.wait_for(1, tag="long")

    # When it is cancelled
    requested = time.time()
    assert e2e.jobs.cancel("timed", long) == Cancel.REQUESTED

    # Then its consumer stops it within one renewal: failed, "cancelled", not retried
    assert e2e.wait_final_error("timed", long) == "cancelled"
    assert _finished_at(e2e, long) - requested < 1.0 + SLACK
    info = e2e.job(long)
    assert info is not None and info.attempts == 1
    assert e2e.records.ends(tag="long") == []
    # And the worker goes on with the next job
    assert e2e.wait_result("timed", following) == {"tag": "next"}


def test_cancel_of_a_waiting_job_fails_it_at_once_and_it_never_runs(e2e: E2E) -> None:
    waiting = handlers.spin.enqueue({"tag": "never", "seconds": 0})
    assert e2e.jobs.cancel("timed", waiting) == Cancel.CANCELLED
    info = e2e.job(waiting)
    assert info is not None and (info.state, info.error) == ("failed", "cancelled")
    e2e.start_consumer(env=TIMED)
    marker = handlers.spin.enqueue({"tag": "marker", "seconds": 0})
    e2e.wait_result("timed", marker)
    assert e2e.records.starts(tag="never") == []


def test_retry_task_with_a_delay_retries_then_not_after_the_backoff(e2e: E2E) -> None:
    # Given a handler that answers its first attempt with RetryTask(delay=3)
    e2e.start_consumer()
    job_id = handlers.later.enqueue({"tag": "later", "delay": 3})

    # Then its second attempt runs 3 s later, not after the queue's 0.5 s backoff
    assert e2e.wait_result("retry", job_id) == {"attempt": 2}
    first, second = (entry["t"] for entry in e2e.records.starts("retry.later", "later"))
    assert 3.0 <= second - first < 3.0 + SLACK
    assert second - first > BACKOFF * 4
