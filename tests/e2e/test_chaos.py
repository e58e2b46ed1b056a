"""At-least-once delivery with real consumers: nothing is lost, and a job runs twice
only when the consumer that ran it died while running it.

- consumers SIGKILLed at random moments while thousands of jobs run;
- SIGTERM mid-job: interrupted jobs are back in waiting at once, not after a lease;
- a job whose handler no longer exists fails, naming it; it is never dropped.

The queue "chaos" has four workers per consumer. Its handler (``chaos.work``)
records, per run, the job id, the run number (counted in Redis per job id) and
the consumer (its process group, which is the consumer's pid), so the tests can
tell every run of every job apart and say which consumer ran it.
"""

from __future__ import annotations

import datetime
import functools
import itertools
import os
import random
import re
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from framework.application import Hueyard
from framework.config import parse_settings
from framework.handlers import HandlerRegistry, handler
from tests.e2e.conftest import E2E, E2E_REGISTRY, ConsumerProcess, wait_until

pytestmark = pytest.mark.e2e

CHAOS_JOBS = 2000
CHAOS_KILLS = 4
CHAOS_PROCESS_KILL = 2
"""After this kill (0-based) the replacement runs ``-k process``."""
CHAOS_SEED = int(os.environ.get("HUEYARD_CHAOS_SEED", "20251106"))
"""Seeds the jobs' sleeps and the kills' moments and victims; set it to replay a run."""

LEASE = 2
COMPLETED_LINE = re.compile(r"job (\S+) \(work\) completed in")
WARM_UP = 0.3
"""Seconds a consumer runs jobs, at least, before it may be killed."""


@dataclass
class Kill:
    """One SIGKILL of a consumer's whole process group."""

    consumer: ConsumerProcess
    before: float  # time.time() just before the signal
    after: float  # time.time() once the consumer was reaped
    waiting: int  # jobs still waiting just before the kill
    held: set[str]  # active jobs it held (claimed, under its lease) just before the kill
    in_flight: set[str] = field(default_factory=set)  # jobs it had started and not ended

    @property
    def pgid(self) -> int:
        return self.consumer.pid


def _held(e2e: E2E, consumer: ConsumerProcess) -> set[str]:
    """The active jobs ``consumer`` holds (claimed, under its lease)."""
    return {
        job.id
        for job in e2e.jobs_in("chaos", "active")
        # a consumer's id is "<host>:<pid>:<random>"
        if job.consumer and job.consumer.rsplit(":", 2)[-2] == str(consumer.pid)
    }


def _kill(e2e: E2E, consumer: ConsumerProcess) -> Kill:
    waiting = e2e.counts("chaos").waiting
    held = _held(e2e, consumer)
    before = time.time()
    consumer.kill()  # SIGKILL to the process group, then reaped
    return Kill(consumer, before, time.time(), waiting, held)


def _completed_at_least(e2e: E2E, count: int) -> bool:
    return e2e.counts("chaos").completed >= count


def _explained(previous: dict[str, Any], following: dict[str, Any], kills: list[Kill]) -> bool:
    """Whether a kill of the consumer of ``previous`` came between the two runs."""
    return any(
        kill.pgid == previous["pgid"]
        and previous["t"] <= kill.after
        and kill.before <= following["t"]
        for kill in kills
    )


def test_jobs_survive_consumers_killed_at_random_moments(e2e: E2E) -> None:
    # Given thousands of jobs sleeping 0-40 ms (reproducible from the seed) on "chaos",
    # a 2-second lease, and so many allowed stalls that a killed job is recovered, not failed
    rng = random.Random(CHAOS_SEED)
    print(f"chaos seed {CHAOS_SEED} (HUEYARD_CHAOS_SEED replays this run)")
    config = e2e.write_config("chaos.toml", lease=LEASE, max_stalls=1000)
    env = {"HUEYARD_QUEUES": "chaos"}
    payloads = [{"n": n, "ms": rng.randint(0, 40)} for n in range(CHAOS_JOBS)]
    ids = e2e.app.enqueue_many("chaos", "work", payloads)
    assert e2e.counts("chaos").waiting == CHAOS_JOBS

    # When two consumers drain them, and one of them is SIGKILLed (its whole process
    # group) at a random moment, again and again, each time replaced by a new one
    # (the moments: when a random share, from 5 % to 75 %, of the jobs has completed)
    moments = sorted(rng.sample(range(CHAOS_JOBS // 20, CHAOS_JOBS * 3 // 4), CHAOS_KILLS))
    began = time.time()
    live = [e2e.start_consumer(env=env, config=config) for _ in range(2)]
    ready = {consumer.pid: time.time() for consumer in live}
    kills: list[Kill] = []
    for number, moment in enumerate(moments):
        wait_until(
            functools.partial(_completed_at_least, e2e, moment),
            timeout=30,
            what=f"{moment} completed jobs",
            interval=0.01,
        )
        victim = live.pop(rng.randrange(len(live)))
        time.sleep(max(ready[victim.pid] + WARM_UP - time.time(), 0))
        # it has jobs running (a -k process consumer on a loaded machine may take longer
        # than the warm-up to start its workers: a kill before that would test nothing)
        wait_until(
            lambda: bool(_held(e2e, victim)),  # noqa: B023 - called in this iteration only
            timeout=10,
            what=f"consumer {victim.pid} holding a job",
            interval=0.01,
        )
        kills.append(_kill(e2e, victim))
        args = ("-k", "process") if number == CHAOS_PROCESS_KILL else ()
        live.append(e2e.start_consumer(*args, env=env, config=config))
        ready[live[-1].pid] = time.time()
    killed_at = time.time()

    # Then every job completes (jobs of killed consumers come back after their lease)
    counts = e2e.wait_drained("chaos", CHAOS_JOBS, timeout=40)
    drained_at = time.time()
    assert (counts.completed, counts.failed, counts.waiting, counts.active, counts.delayed) == (
        CHAOS_JOBS,
        0,
        0,
        0,
        0,
    )
    print(
        f"{CHAOS_JOBS} jobs, {CHAOS_KILLS} kills over {killed_at - began:.1f}s; "
        f"drained {drained_at - killed_at:.1f}s after the last kill"
    )

    starts = e2e.records.by_id("chaos.work", "start")
    ends = e2e.records.by_id("chaos.work", "end")
    # And each one ran to its end at least once, and no record names an unknown job
    assert set(starts) == set(ends) == set(ids)

    # And the kills happened while the queue still had work, and hit running jobs
    for kill in kills:
        ended = {
            (entry["id"], entry["run"])
            for runs in ends.values()
            for entry in runs
            if entry["pgid"] == kill.pgid
        }
        kill.in_flight = {
            entry["id"]
            for runs in starts.values()
            for entry in runs
            if entry["pgid"] == kill.pgid and (entry["id"], entry["run"]) not in ended
        }
    summary = [(kill.pgid, kill.waiting, len(kill.held), len(kill.in_flight)) for kill in kills]
    print(f"kills (consumer, jobs waiting, held, started and not ended): {summary}")
    assert all(kill.waiting > 0 for kill in kills), f"the queue drained before a kill: {summary}"
    assert all(kill.held for kill in kills), f"a kill hit a consumer that held no job: {summary}"
    assert any(kill.in_flight for kill in kills), f"no kill hit a running handler: {summary}"

    # And a killed consumer wrote nothing after its death
    for kill in kills:
        late = [
            entry
            for runs in starts.values()
            for entry in runs
            if entry["pgid"] == kill.pgid and entry["t"] > kill.after
        ]
        assert late == [], f"consumer {kill.pgid} ran jobs after it was killed"

    # And every job in flight at a kill was run again by another consumer, within
    # two leases of the kill (its lease expires, a consumer's recovery pass, a worker)
    delays = []
    for kill in kills:
        for job_id in kill.in_flight:
            rerun = min(
                (entry["t"] for entry in starts[job_id] if entry["t"] > kill.after), default=None
            )
            assert rerun is not None, f"job {job_id} of killed consumer {kill.pgid} never ran again"
            delays.append(rerun - kill.before)
    print(f"jobs of killed consumers ran again {min(delays):.2f}-{max(delays):.2f}s later")
    assert max(delays) < 2 * LEASE + 1.0, max(delays)

    # And a job ran more than once only when the consumer of its previous run was killed
    # between the two runs, and never after a consumer logged it as completed
    completed_by = {
        consumer.pid: set(COMPLETED_LINE.findall(consumer.log())) for consumer in e2e.consumers
    }
    unexplained = []
    for job_id, runs in starts.items():
        runs = sorted(runs, key=lambda entry: entry["run"])
        first = runs[0]
        if first["run"] != 1 and not any(kill.before <= first["t"] for kill in kills):
            unexplained.append((job_id, "a run before the first record", runs))
        for previous, following in itertools.pairwise(runs):
            if not _explained(previous, following, kills):
                unexplained.append((job_id, "no kill between two runs", runs))
            elif job_id in completed_by.get(previous["pgid"], set()):
                unexplained.append((job_id, "ran again after it completed", runs))
    duplicates = sum(1 for runs in starts.values() if len(runs) > 1)
    logged = sum(len(done) for done in completed_by.values())
    print(f"{duplicates} job(s) ran more than once; {logged} completions logged")
    assert unexplained == [], f"{len(unexplained)} unexplained duplicate(s): {unexplained[:5]}"

    # And every completed job's result is that of its last run, and each run again
    # counted the stall that brought it back
    completed = {job.id: job for job in e2e.jobs_in("chaos", "completed")}
    assert len(completed) == CHAOS_JOBS
    wrong = [
        (job_id, job.result, job.stalls, len(starts[job_id]))
        for job_id, job in completed.items()
        if job.result["run"] != max(entry["run"] for entry in starts[job_id])
        or job.stalls < len(starts[job_id]) - 1
    ]
    assert wrong == []


TERM_JOBS = 60
TERM_LONG = (0, 6, 12, 18)
"""Jobs whose first run takes 30 s: by the time job 18 starts, they hold all four workers."""
TERM_LEASE = 30


@pytest.mark.parametrize("worker_type", ["thread", "process"])
def test_sigterm_mid_job_puts_interrupted_jobs_back_at_once(e2e: E2E, worker_type: str) -> None:
    # Given sixty 50-ms jobs on "chaos", four of which take 30 s on their first run,
    # a 30-second lease and a 1-second grace period at shutdown
    config = e2e.write_config("term.toml", lease=TERM_LEASE, shutdown_timeout=1)
    env = {"HUEYARD_QUEUES": "chaos"}
    payloads: list[dict[str, Any]] = [
        {"n": n, "ms": 50, **({"first_ms": 30_000} if n in TERM_LONG else {})}
        for n in range(TERM_JOBS)
    ]
    ids = e2e.app.enqueue_many("chaos", "work", payloads)
    long_ids = {ids[n] for n in TERM_LONG}
    first = e2e.start_consumer("-k", worker_type, env=env, config=config)

    # And the four long jobs hold its four workers while the rest of the jobs wait
    wait_until(
        lambda: long_ids <= set(e2e.records.by_id("chaos.work", "start")),
        timeout=15,
        what="the four long jobs to start",
    )
    busy = e2e.counts("chaos")
    assert (busy.active, busy.completed, busy.waiting) == (4, 15, TERM_JOBS - 19)

    # When the consumer gets SIGTERM and its grace period runs out
    first.send(signal.SIGTERM)
    assert first.wait_exit() == 0
    exited = time.time()

    # Then the four interrupted jobs are back in waiting at once, their attempt not
    # counted, before any other consumer (or a lease expiry) could have moved them
    stopped = e2e.counts("chaos")
    assert (stopped.active, stopped.completed, stopped.waiting) == (0, 15, TERM_JOBS - 15)
    for job_id in long_ids:
        info = e2e.job(job_id)
        assert info is not None
        assert (info.state, info.attempts, info.stalls) == ("waiting", 0, 0)
    assert e2e.records.by_id("chaos.work", "end").keys().isdisjoint(long_ids)

    # And the next consumer runs them first, at their old place, long before a lease
    e2e.start_consumer("-k", worker_type, env=env, config=config)
    e2e.wait_drained("chaos", TERM_JOBS, timeout=20)
    starts = e2e.records.by_id("chaos.work", "start")
    second_runs = sorted(
        (entry for runs in starts.values() for entry in runs if entry["pgid"] != first.pid),
        key=lambda entry: entry["t"],
    )
    # (in claim order, the records' `started`: on a loaded machine the handlers of four
    # worker processes may begin in another order than their jobs were claimed)
    claimed: dict[str, datetime.datetime] = {}
    for job_id in {entry["id"] for entry in second_runs}:
        info = e2e.job(job_id)
        assert info is not None and info.started is not None
        claimed[job_id] = info.started
    assert long_ids <= claimed.keys()
    last_long = max(claimed[job_id] for job_id in long_ids)
    assert all(at >= last_long for job_id, at in claimed.items() if job_id not in long_ids)
    restarted = max(entry["t"] for entry in second_runs if entry["id"] in long_ids) - exited
    print(f"interrupted jobs started again {restarted:.2f}s after the first consumer exited")
    assert restarted < TERM_LEASE / 3, f"interrupted jobs restarted {restarted:.1f}s later"

    # And nothing was lost: every job completed; the long ones ran twice, the others once
    ends = e2e.records.by_id("chaos.work", "end")
    assert set(ends) == set(ids)
    runs = {job_id: len(entries) for job_id, entries in starts.items()}
    assert runs == {job_id: 2 if job_id in long_ids else 1 for job_id in ids}
    assert {len(entries) for entries in ends.values()} == {1}


def retired(payload: dict[str, Any]) -> None:
    """A handler the producer still knows, but the consumer's code no longer has."""


def test_a_job_for_a_handler_that_no_longer_exists_fails_naming_it(e2e: E2E) -> None:
    # Given a producer that still knows the handler "gamma.retired", which the
    # consumer's code (tests.e2e.e2e_handlers) no longer has
    registry = HandlerRegistry()
    for spec in E2E_REGISTRY:
        registry.register(spec)
    handler("gamma", registry=registry)(retired)
    text = e2e.config_path.read_text(encoding="utf-8")
    producer = Hueyard(parse_settings(text, source=str(e2e.config_path), env={}), registry)
    try:
        gone = producer.enqueue("gamma", "retired", {"tag": "gone"})
    finally:
        producer.close()
    after = e2e.app.enqueue("gamma", "echo", {"tag": "after"})

    # When a consumer takes it
    consumer = e2e.start_consumer()

    # Then the job fails at once, on its first attempt, with an error naming the handler
    error = e2e.wait_final_error("gamma", gone)
    assert "no handler named 'gamma.retired'" in error
    info = e2e.job(gone)
    assert info is not None
    assert (info.state, info.attempts, info.name) == ("failed", 1, "gamma.retired")
    assert info.payload == {"tag": "gone"}
    assert gone in consumer.log()
    assert "gamma.retired" in consumer.log()

    # And the consumer goes on with the next job of the queue
    assert e2e.wait_result("gamma", after) == {"queue": "gamma", "tag": "after", "n": 0}
    counts = e2e.counts("gamma")
    assert (counts.failed, counts.completed, counts.waiting, counts.active) == (1, 1, 0, 0)


def test_a_consumer_recovers_the_jobs_of_a_dead_consumer_of_another_queue(e2e: E2E) -> None:
    # Given a beta job held by a "consumer" that died: claimed, never renewed (lease 2 s)
    config = e2e.write_config("short-lease.toml", lease=2)
    e2e.app.enqueue("beta", "echo", {"tag": "orphan"})
    storage = e2e.app.queue("beta").huey.storage
    storage.read_timeout = 0.2
    storage.lease_ms = 2000  # as in short-lease.toml
    held = storage.claim()
    assert held is not None
    assert e2e.job(held.id).state == "active"

    # When only a consumer of another queue runs
    e2e.start_consumer(env={"HUEYARD_QUEUES": "alpha"}, config=config)

    # Then it still puts the beta job back in waiting, within two leases
    started = time.monotonic()
    while (info := e2e.job(held.id)) is None or info.state != "waiting":
        assert time.monotonic() - started < 2 * 2 + 2, f"still {info.state if info else None}"
        time.sleep(0.1)
    assert info.stalls == 1
