"""A real ``huey_consumer framework.app`` runs the jobs it is given, and only those.

Each test starts the consumer as a subprocess and watches it from outside
through what the handlers of ``e2e_handlers`` record in Redis.
"""

from __future__ import annotations

import os
import time

import pytest

import framework
from framework.errors import PayloadError
from tests.e2e import e2e_handlers as handlers
from tests.e2e.conftest import E2E, READY_LINE, wait_until, wrong_clock

pytestmark = pytest.mark.e2e


@pytest.mark.untimed
def test_jobs_on_several_queues_each_run_once_and_leave_their_result(e2e: E2E) -> None:
    # Given a consumer serving every queue
    e2e.start_consumer()

    # When five jobs are enqueued on each of three queues, through each producer API
    jobs: dict[str, tuple[str, str]] = {}
    for n in range(5):
        jobs[f"alpha-{n}"] = ("alpha", handlers.alpha_echo.enqueue({"tag": f"alpha-{n}", "n": n}))
        jobs[f"beta-{n}"] = (
            "beta",
            framework.enqueue("beta", "echo", {"tag": f"beta-{n}", "n": n}),
        )
        jobs[f"gamma-{n}"] = (
            "gamma",
            e2e.app.enqueue("gamma", "echo", {"tag": f"gamma-{n}", "n": n}),
        )

    # Then every job runs exactly once, on its own queue, and its result is readable
    e2e.records.wait_for(len(jobs), event="end")
    starts = e2e.records.starts()
    assert sorted(entry["tag"] for entry in starts) == sorted(jobs)
    for tag, (queue, job_id) in jobs.items():
        [entry] = [entry for entry in starts if entry["tag"] == tag]
        assert entry["job"] == f"{queue}.echo"
        n = int(tag.rsplit("-", 1)[1])
        # a handler records its end just before its outcome is stored
        assert e2e.wait_result(queue, job_id) == {"queue": queue, "tag": tag, "n": 2 * n}
    assert [e2e.pending(queue) for queue in ("alpha", "beta", "gamma")] == [0, 0, 0]


# (tag, priority) in enqueue order; None is the queue's default priority, 5.
PRIORITY_JOBS = [("a", 10), ("b", 1), ("c", 5), ("d", 1), ("e", 10), ("f", None), ("g", 5)]
PRIORITY_ORDER = ["b", "d", "c", "f", "g", "a", "e"]


def _enqueue_priority_jobs() -> None:
    for tag, priority in PRIORITY_JOBS:
        handlers.ordered_echo.enqueue({"tag": tag}, priority=priority)


@pytest.mark.untimed
def test_waiting_jobs_run_by_priority_then_in_enqueue_order(e2e: E2E) -> None:
    # Given jobs of priorities 10, 1, 5, 1, 10, default, 5 waiting before any consumer runs
    _enqueue_priority_jobs()
    assert e2e.pending("ordered") == len(PRIORITY_JOBS)

    # When a consumer with one worker on the queue starts
    e2e.start_consumer()

    # Then they run 1, 1, 5, 5, 5, 10, 10, first come first served within a priority
    e2e.records.wait_for(len(PRIORITY_JOBS), job="ordered.echo", event="end")
    assert [entry["tag"] for entry in e2e.records.starts("ordered.echo")] == PRIORITY_ORDER


@pytest.mark.untimed
def test_jobs_queued_behind_a_busy_worker_run_by_priority(e2e: E2E) -> None:
    # Given a running consumer whose only worker on the queue is held by a blocking job
    e2e.start_consumer()
    go = f"{e2e.prefix}:go"
    handlers.block_until.enqueue({"tag": "blocker", "key": go}, priority=10)
    e2e.records.wait_for(1, job="ordered.block_until")

    # When jobs of mixed priorities are enqueued behind it, then the worker is released
    _enqueue_priority_jobs()
    assert e2e.pending("ordered") == len(PRIORITY_JOBS)
    e2e.conn.set(go, 1)

    # Then they run by priority, FIFO within a priority, after the blocker
    e2e.records.wait_for(len(PRIORITY_JOBS), job="ordered.echo", event="end")
    assert [entry["tag"] for entry in e2e.records.starts("ordered.echo")] == PRIORITY_ORDER
    [released] = e2e.records.ends("ordered.block_until")
    assert released["t"] <= e2e.records.starts("ordered.echo")[0]["t"]


def test_a_queue_runs_as_many_jobs_at_once_as_its_concurrency(e2e: E2E) -> None:
    # Given a consumer with concurrency 3 on the queue "wide"
    e2e.start_consumer()

    # When four jobs of 0.8 s each are enqueued at once
    for n in range(4):
        handlers.wide_sleep.enqueue({"tag": f"w{n}", "seconds": 0.8})

    # Then three run at the same time and the fourth waits for a free worker
    e2e.records.wait_for(4, job="wide.sleep", event="end", timeout=20)
    starts = sorted(entry["t"] for entry in e2e.records.starts("wide.sleep"))
    ends = sorted(entry["t"] for entry in e2e.records.ends("wide.sleep"))
    assert starts[2] < ends[0], "the first three jobs did not overlap"
    assert starts[3] >= ends[0], "a fourth job ran while three were running"
    assert len({entry["pid"] for entry in e2e.records.starts("wide.sleep")}) == 1


@pytest.mark.untimed
def test_a_bad_payload_is_refused_at_enqueue_and_nothing_is_stored(e2e: E2E) -> None:
    # Given a running consumer
    e2e.start_consumer()

    # When a payload does not match the handler's model
    with pytest.raises(PayloadError) as refused:
        handlers.place_order.enqueue({"order_id": "not a number", "email": "a@example.com"})

    # Then the error names the handler and the field, and nothing is stored
    message = str(refused.value)
    assert "alpha.place_order" in message
    assert "order_id" in message
    assert "Order" in message
    assert (e2e.pending("alpha"), e2e.scheduled("alpha")) == (0, 0)

    # The same for a delayed job, which would have gone to the schedule
    with pytest.raises(PayloadError, match="email"):
        e2e.app.enqueue("alpha", "place_order", {"order_id": 7}, delay=30)
    assert (e2e.pending("alpha"), e2e.scheduled("alpha")) == (0, 0)

    # And a good payload still goes through: the handler ran for it, and only for it
    job_id = handlers.place_order.enqueue({"order_id": 8, "email": "b@example.com"})
    assert e2e.wait_result("alpha", job_id) == {"order_id": 8}
    assert [entry["tag"] for entry in e2e.records.starts("alpha.place_order")] == ["8"]


@pytest.mark.untimed
def test_hueyard_queues_limits_the_consumer_to_the_named_queues(e2e: E2E) -> None:
    # Given a consumer started with HUEYARD_QUEUES=alpha
    consumer = e2e.start_consumer(env={"HUEYARD_QUEUES": "alpha"})

    # When a job is enqueued on alpha and one on beta
    beta_id = handlers.beta_echo.enqueue({"tag": "on-beta"})
    alpha_id = handlers.alpha_echo.enqueue({"tag": "on-alpha"})

    # Then the alpha job runs and the beta job stays waiting
    e2e.wait_result("alpha", alpha_id)
    time.sleep(0.5)  # an idle beta worker, if there were one, would have taken it by now
    assert e2e.records.starts(tag="on-beta") == []
    assert e2e.pending("beta") == 1
    [ready] = [line for line in consumer.log().splitlines() if READY_LINE in line]
    assert ready.endswith("workers (thread) on alpha x2")

    # And a consumer for beta picks it up
    e2e.start_consumer(env={"HUEYARD_QUEUES": "beta"})
    assert e2e.wait_result("beta", beta_id)["tag"] == "on-beta"


@pytest.mark.untimed
def test_hueyard_queues_naming_an_unknown_queue_stops_the_consumer(e2e: E2E) -> None:
    # When a consumer is started for a queue the config does not declare
    consumer = e2e.start_consumer(env={"HUEYARD_QUEUES": "alpha,nope"}, wait=False)

    # Then it exits non-zero, naming the queue and the declared ones, and runs nothing
    status = consumer.wait_exit()
    log = consumer.log()
    assert status != 0
    assert "'nope'" in log
    assert "declared queues: alpha, beta, gamma, ordered, retry, once, slow, spare, wide" in log
    assert "hueyard consumer pid" not in log


@pytest.mark.untimed
def test_process_workers_run_jobs_outside_the_consumer_process(e2e: E2E) -> None:
    # Given a consumer with worker processes
    consumer = e2e.start_consumer("-k", "process")

    # When jobs are enqueued on two queues
    ids = [handlers.alpha_echo.enqueue({"tag": f"p{n}", "n": n}) for n in range(4)]
    gamma_id = handlers.gamma_echo.enqueue({"tag": "pg"})

    # Then they run, and not in the consumer's own process
    assert [e2e.wait_result("alpha", job_id)["n"] for job_id in ids] == [0, 2, 4, 6]
    assert e2e.wait_result("gamma", gamma_id)["tag"] == "pg"
    pids = {entry["pid"] for entry in e2e.records.starts()}
    assert consumer.pid not in pids
    assert os.getpid() not in pids
    alpha_pids = {entry["pid"] for entry in e2e.records.starts("alpha.echo")}
    [gamma_pid] = {entry["pid"] for entry in e2e.records.starts("gamma.echo")}
    assert len(alpha_pids) <= 2  # alpha's concurrency
    assert gamma_pid not in alpha_pids  # each queue has its own workers


def test_a_consumer_whose_clock_is_an_hour_behind_is_listed_as_live_and_runs_jobs(
    e2e: E2E,
) -> None:
    # Given a consumer on a host whose clock runs an hour behind (the Redis server's and
    # this process's clocks are right)
    consumer = e2e.start_consumer(env={"HUEYARD_QUEUES": "alpha", **wrong_clock("-1h")})

    # Then the readers see it: its heartbeat is stamped by the Redis server's clock (it
    # was stamped by its own, an hour old, and pruned at once as a dead consumer's)
    listed = wait_until(
        lambda: [c for c in e2e.jobs.consumers() if c.pid == consumer.pid],
        timeout=10,
        what="the consumer in the heartbeat set",
    )
    assert listed[0].queues == ("alpha",)
    # And it runs jobs as any other
    job_id = handlers.alpha_echo.enqueue({"tag": "skewed"})
    assert e2e.wait_result("alpha", job_id) is not None


def test_a_key_of_another_type_is_said_once_not_a_traceback_a_round(e2e: E2E) -> None:
    # Given a consumer (its maintenance runs every 0.1 s) and, under alpha's prefix, a
    # string where alpha keeps its outbox: every claim and promotion of alpha is refused
    consumer = e2e.start_consumer(env={"HUEYARD_QUEUES": "alpha"})
    outbox = e2e.app.keys.queue("alpha").outbox
    e2e.conn.set(outbox, "garbage")
    e2e.app.enqueue("alpha", "echo", {"tag": "held"})
    # When it runs for a while
    time.sleep(3)
    # Then the log says so once, naming the key, and holds no traceback
    log = consumer.log()
    told = [line for line in log.splitlines() if outbox in line]
    assert 1 <= len(told) <= 2, told
    assert "Redis refuses the queue's calls" in told[0]
    assert "Traceback" not in log, log
    # And once the key is gone the job runs
    e2e.conn.delete(outbox)
    e2e.records.wait_for(1, job="alpha.echo", tag="held")
