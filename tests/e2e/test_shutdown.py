"""Stopping a consumer: running jobs finish, or go back to their queue; none is lost.

The queue "slow" has one worker, "spare" has three: while one of them runs a
job the other two are idle, blocked in Redis waiting for the next job.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.e2e import e2e_handlers as handlers
from tests.e2e.conftest import E2E, READY_LINE, ConsumerProcess, wait_until

pytestmark = pytest.mark.e2e

GRACEFUL = [
    pytest.param("thread", signal.SIGTERM, False, id="thread-SIGTERM"),
    pytest.param("thread", signal.SIGINT, False, id="thread-SIGINT"),
    pytest.param("process", signal.SIGTERM, False, id="process-SIGTERM"),
    # Ctrl-C in a terminal signals the whole process group, worker processes included.
    pytest.param("process", signal.SIGINT, True, id="process-SIGINT-to-group"),
]


def _stop_message(consumer: ConsumerProcess, signum: signal.Signals) -> None:
    """Wait until the consumer has logged that it is stopping."""
    consumer.wait_log(f"received {signum.name}")


@pytest.mark.parametrize(("worker_type", "signum", "to_group"), GRACEFUL)
def test_a_signal_lets_the_running_job_finish_and_starts_no_new_one(
    e2e: E2E, worker_type: str, signum: signal.Signals, to_group: bool
) -> None:
    # Given a consumer running a 1.5-second job on its only "slow" worker
    consumer = e2e.start_consumer("-k", worker_type)
    running = handlers.slow_sleep.enqueue({"tag": "running", "seconds": 1.5})
    [started] = e2e.records.wait_for(1, tag="running")

    # When it gets the signal, and a job is enqueued once the consumer said it is stopping
    sent = consumer.send_to_group(signum) if to_group else consumer.send(signum)
    _stop_message(consumer, signum)
    handlers.slow_sleep.enqueue({"tag": "late", "seconds": 0})

    # Then it waits for the running job, which finishes, and exits with status 0
    assert consumer.wait_exit() == 0
    exited = time.time()
    [ended] = e2e.records.ends(tag="running")
    assert started["t"] < sent < ended["t"] <= exited
    assert e2e.app.result("slow", running)["tag"] == "running"

    # And the job enqueued after the signal was not started: it is still waiting
    assert e2e.records.starts(tag="late") == []
    assert e2e.pending("slow") == 1


@pytest.mark.parametrize("worker_type", ["thread", "process"])
def test_idle_workers_take_no_job_after_the_signal(e2e: E2E, worker_type: str) -> None:
    # Given a consumer running one job on "spare", whose two other workers are idle
    consumer = e2e.start_consumer("-k", worker_type)
    handlers.spare_sleep.enqueue({"tag": "running", "seconds": 1.5})
    e2e.records.wait_for(1, tag="running")

    # When it gets SIGTERM, and a job is enqueued once the consumer said it is stopping
    consumer.send(signal.SIGTERM)
    _stop_message(consumer, signal.SIGTERM)
    handlers.spare_sleep.enqueue({"tag": "late", "seconds": 0})

    # Then the late job is not started: it waits for the next consumer
    assert consumer.wait_exit() == 0
    assert len(e2e.records.ends(tag="running")) == 1
    assert e2e.records.starts(tag="late") == []
    assert e2e.pending("spare") == 1


@pytest.mark.parametrize("worker_type", ["thread", "process"])
def test_a_job_still_running_after_the_grace_period_goes_back_to_its_queue(
    e2e: E2E, worker_type: str
) -> None:
    # Given a consumer with [consumer] shutdown_timeout = 1, running a 10-second job
    consumer = e2e.start_consumer(
        "-k", worker_type, config=e2e.write_config("grace.toml", shutdown_timeout=1)
    )
    job_id = handlers.slow_sleep.enqueue({"tag": "long", "first_seconds": 10, "seconds": 0.1})
    e2e.records.wait_for(1, tag="long")

    # When it gets SIGTERM
    sent = consumer.send(signal.SIGTERM)

    # Then it exits within a few seconds, the job unfinished and back in its queue
    assert consumer.wait_exit(timeout=8) == 0
    assert time.time() - sent < 5
    assert e2e.records.ends(tag="long") == []
    assert e2e.pending("slow") == 1
    assert "back to waiting" in consumer.log()

    # And the next consumer runs it to the end, under the same job id
    e2e.start_consumer("-k", worker_type)
    assert e2e.wait_result("slow", job_id)["tag"] == "long"
    assert [entry["run"] for entry in e2e.records.starts(tag="long")] == [1, 2]
    assert [entry["run"] for entry in e2e.records.ends(tag="long")] == [2]


def test_a_second_signal_stops_waiting_for_running_jobs(e2e: E2E) -> None:
    # Given a consumer (grace period 8 s) running a 10-second job, told to stop once
    consumer = e2e.start_consumer()
    job_id = handlers.slow_sleep.enqueue({"tag": "long", "first_seconds": 10, "seconds": 0.1})
    e2e.records.wait_for(1, tag="long")
    consumer.send(signal.SIGTERM)
    _stop_message(consumer, signal.SIGTERM)

    # When a second signal comes
    sent = consumer.send(signal.SIGINT)

    # Then it stops at once, and the job is back in its queue for the next consumer
    assert consumer.wait_exit(timeout=8) == 0
    assert time.time() - sent < 4
    assert e2e.records.ends(tag="long") == []
    assert e2e.pending("slow") == 1
    e2e.start_consumer()
    assert e2e.wait_result("slow", job_id)["tag"] == "long"


@pytest.mark.parametrize("worker_type", ["thread", "process"])
def test_a_job_put_back_at_shutdown_waits_for_the_next_consumer(e2e: E2E, worker_type: str) -> None:
    # Given a consumer running a 10-second job on "spare", whose two other workers are idle
    consumer = e2e.start_consumer("-k", worker_type)
    job_id = handlers.spare_sleep.enqueue({"tag": "long", "first_seconds": 10, "seconds": 0.5})
    e2e.records.wait_for(1, tag="long")

    # When it is told to stop twice, so the running job is interrupted and put back at once
    consumer.send(signal.SIGTERM)
    _stop_message(consumer, signal.SIGTERM)
    sent = consumer.send(signal.SIGINT)
    assert consumer.wait_exit() == 0
    elapsed = time.time() - sent
    assert "back to waiting" in consumer.log()

    # Then the consumer stopped at once, and the job waits in its queue, not run again
    assert (elapsed < 2.5, e2e.pending("spare"), len(e2e.records.starts(tag="long"))) == (
        True,
        1,
        1,
    )
    e2e.start_consumer()
    assert e2e.wait_result("spare", job_id)["tag"] == "long"


def test_a_signal_during_start_up_still_stops_every_worker_process(e2e: E2E) -> None:
    # Given a process-mode consumer that has started its first worker processes
    consumer = e2e.start_consumer("-k", "process", wait=False)
    consumer.wait_log(READY_LINE, timeout=20, interval=0.001)
    wait_until(
        lambda: len(consumer.group_members()) > 1,
        timeout=5,
        what="a worker process",
        interval=0.001,
    )

    # When it gets SIGTERM at once (a deploy that stops what it just started)
    consumer.send(signal.SIGTERM)

    # Then it stops gracefully, and none of its worker processes outlives it
    status = consumer.wait_exit()
    time.sleep(0.5)
    survivors = consumer.group_members()
    assert (status, survivors) == (0, [])


def test_threads_a_handler_left_running_do_not_keep_the_consumer_alive(e2e: E2E) -> None:
    # Given a thread consumer whose handler started a thread that never ends (not a daemon)
    consumer = e2e.start_consumer()
    job = handlers.leaves_a_thread.enqueue({})
    assert e2e.wait_result("slow", job) == "started"
    # When it gets SIGTERM
    consumer.send(signal.SIGTERM)
    # Then it exits (Python would have waited for that thread for ever, deaf to signals)
    assert consumer.wait_exit() == 0
    assert "1 thread(s) a handler started still run (left-behind)" in consumer.log()


def test_a_worker_process_whose_handler_swallows_its_interrupt_is_killed(e2e: E2E) -> None:
    # Given a process consumer (1 s to finish jobs at shutdown) running a handler that
    # catches every interrupt and would run two minutes
    config = e2e.write_config("short.toml", shutdown_timeout=1)
    consumer = e2e.start_consumer("-k", "process", config=config)
    job = handlers.swallows.enqueue({"tag": "deaf", "seconds": 120})
    e2e.records.wait_for(1, tag="deaf")
    # When the consumer is stopped
    sent = consumer.send(signal.SIGTERM)
    # Then it exits within its grace period and a few seconds, killing that worker
    assert consumer.wait_exit() == 0
    assert time.time() - sent < 15
    assert "still runs a job that did not stop when interrupted" in consumer.log()
    # And the job did not finish: it goes back to waiting once its lease runs out
    assert e2e.records.ends(tag="deaf") == []
    info = e2e.job(job)
    assert info is not None and info.state == "active", info


def test_a_process_the_handler_forked_ends_with_the_handler(e2e: E2E) -> None:
    # Given a handler that forks, whose child returns from the handler
    consumer = e2e.start_consumer()
    job = handlers.forks.enqueue({})
    # Then the job's outcome is the parent's, the child ended there, and said why
    result = e2e.wait_result("slow", job)
    child = result["child"]
    assert isinstance(child, int)
    consumer.wait_log("returned from the handler; it exits now")
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)
    # And the consumer stops as usual, no second worker left behind
    consumer.send(signal.SIGTERM)
    assert consumer.wait_exit() == 0
