"""The test mode: a job runs when it is enqueued, through everything a consumer runs.

``framework.get_app().immediate = True`` (Huey's idiom; ``HUEYARD_IMMEDIATE=1``
when the process's app is built) makes every enqueue (``handler.enqueue``,
``framework.enqueue``, ``app.enqueue``, the ``_many`` calls, ``hueyard enqueue``)
run its jobs before it returns, in the calling thread: the enqueue script
stores them, the claim script takes each (pause, rate limit, lease), the
queue's Huey runs it as a worker does (attempts, timeout, hooks, signals,
``current_job()``), and the release script files its outcome. Afterwards
``framework.result(job_id)``, ``Jobs(app).get(job_id)`` and ``hueyard job``
tell what a consumer would have left. Nothing calls the function directly.

Where the jobs are kept: like Huey's ``immediate_use_memory``, by default a
fresh in-memory Redis (fakeredis, which runs the Lua scripts with lupa: ``pip
install 'hueyard[testing]'``), so a test needs no server and never touches
real data. ``app.immediate_use_memory = False`` (``HUEYARD_IMMEDIATE=redis``)
keeps them in the configured Redis instead. Switching the mode off puts the
configured Redis back; the memory store and its jobs are dropped.

What the mode does not do at once, and why:

- A job enqueued with ``delay=`` or ``eta=`` waits, as in Huey's immediate mode;
  :func:`drain` runs it once due, ``drain(queue, delayed=True)`` at once.
- A retry runs at once: the backoff (or ``RetryTask(delay=)``) is not waited
  for, but the attempts count, so a handler that always fails ends ``failed``
  after its attempts, with its last error.
- A paused queue runs nothing, and a spent rate limit runs nothing more, as
  with a consumer: the job stays ``waiting`` (``paused``) for :func:`drain`.
- An enqueue whose ``key=`` is held stores nothing and runs nothing.
- An enqueue made *by a job* (a job enqueued or spawned by a handler, a chain's
  follow-up) returns at once, as with a consumer, and its jobs run once the job
  that enqueued them has ended (its outcome stored, its hooks and signals
  fired), before the outermost enqueue (or :func:`drain`) returns. So the
  running job's timeout, its ``lock_task`` locks and the order of its signals
  are what they are under a consumer.

A consumer refuses to start on an app in test mode (it would serve nothing).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import redis

from framework.clients import RedisClients
from framework.errors import ConfigError, HueyardError
from framework.options import EnqueuedIds, EnqueueOptions, Outcome, shown

if TYPE_CHECKING:
    from framework.application import Hueyard

__all__ = ["ENV", "MAX_RUNS", "Drained", "ImmediateRunner", "drain", "memory_pool", "mode_of"]

ENV = "HUEYARD_IMMEDIATE"
"""The variable that starts the process's app in test mode (read by ``get_app()``)."""

MAX_RUNS = 10_000
"""Runs one :func:`drain` makes before it stops with an error (a job that enqueues
another on each run would never let it end)."""

_ON = frozenset({"1", "true", "yes", "on", "memory"})
_OFF = frozenset({"", "0", "false", "no", "off"})


def mode_of(env: Mapping[str, str]) -> str | None:
    """``$HUEYARD_IMMEDIATE``: ``"memory"`` (1, true, yes, on, memory), ``"redis"``, or None
    (unset, empty, 0, false, no, off). Raises :class:`ConfigError` for anything else."""
    raw = env.get(ENV)
    value = (raw or "").strip().lower()
    if value in _OFF:
        return None
    if value in _ON:
        return "memory"
    if value == "redis":
        return "redis"
    raise ConfigError(
        f"{ENV}={shown(raw or '')} is not a test mode; use 1 (jobs run at enqueue, kept in "
        "memory), redis (run at enqueue, kept in the configured Redis) or 0 (off)"
    )


def memory_pool() -> redis.ConnectionPool:
    """A pool on a fresh, empty in-memory Redis that runs Lua (fakeredis with lupa)."""
    try:
        import fakeredis
        import lupa  # noqa: F401 - fakeredis runs EVAL only with it
    except ImportError as exc:
        raise HueyardError(
            f"the test mode keeps jobs in memory with fakeredis and lupa ({exc}): pip install "
            "'hueyard[testing]'; or keep them in the configured Redis: "
            f"app.immediate_use_memory = False (or {ENV}=redis)"
        ) from None
    pool: redis.ConnectionPool = redis.ConnectionPool(
        connection_class=fakeredis.FakeRedisConnection, server=fakeredis.FakeServer()
    )
    return pool


def switch(app: Hueyard, on: bool) -> None:
    """Turn ``app``'s test mode on or off (``app.immediate = ...``)."""
    if on == (app.producer.runner is not None):
        return
    if on:
        if app.immediate_use_memory:
            app.use_clients(
                RedisClients(app.settings.redis.connection, app.pool_size, memory_pool())
            )
        app.producer.runner = ImmediateRunner(app)
        return
    app.producer.runner = None
    memory = app.clients
    if memory is not app.redis_clients:
        app.use_clients(app.redis_clients)
        memory.disconnect()


@dataclass
class _Runs(threading.local):
    """This thread's runs: how many are under way (a job's enqueue made while its job
    runs waits for it), and the jobs enqueued meanwhile, to run after."""

    depth: int = 0
    pending: list[tuple[Hueyard, str, set[str]]] = field(default_factory=list)


_RUNS = _Runs()


class ImmediateRunner:
    """Runs the jobs an enqueue just stored, to their end (the producer's ``runner``)."""

    def __init__(self, app: Hueyard) -> None:
        self.app = app

    def __call__(self, queue: str, ids: EnqueuedIds, options: EnqueueOptions) -> None:
        if options.delay_ms() > 0:
            return  # waits, as in Huey's immediate mode: drain() runs it when due
        wanted = {job_id for index, job_id in enumerate(ids) if index not in ids.existing}
        if _RUNS.depth:  # enqueued by a running job: after it, as a consumer would
            _RUNS.pending.append((self.app, queue, wanted))
            return
        _run(self.app, queue, wanted, limit=None)


@dataclass(frozen=True)
class Drained:
    """What :func:`drain` did, and what it left."""

    completed: int
    """Jobs that completed."""
    failed: int
    """Jobs that failed for good (attempts spent, ``CancelExecution(retry=False)``, ...)."""
    retried: int
    """Runs that failed with attempts left: each was run again at once."""
    waiting: int
    """Jobs left waiting: the queue is paused (its ``paused`` jobs), or its rate limit
    is spent."""
    delayed: int
    """Jobs left delayed: not due yet (``delayed=True`` runs them too)."""


def drain(app: Hueyard, queue: str, *, delayed: bool = False, max_runs: int = MAX_RUNS) -> Drained:
    """Run every waiting and due job of ``queue`` to its end, here, one after the other,
    as a consumer's worker would (:mod:`framework.immediate`: retries at once); with
    ``delayed``, the jobs not due yet as well. Jobs the jobs enqueue on ``queue`` run
    too. Works on any app, in test mode or not, in memory or on Redis.

    Raises :class:`HueyardError` after ``max_runs`` runs.
    """
    from framework.jobs import Jobs

    runtime = app.queue(queue)
    jobs = Jobs(app)
    completed = failed = retried = 0
    while True:
        moved = jobs.promote_all(queue) if delayed else runtime.storage.promote_due()
        ran = _run(app, queue, None, limit=max_runs - completed - failed - retried)
        completed, failed, retried = completed + ran[0], failed + ran[1], retried + ran[2]
        if not moved and not any(ran):
            break
    counts = jobs.counts(queue)
    return Drained(
        completed, failed, retried, waiting=counts.waiting + counts.paused, delayed=counts.delayed
    )


def _run(
    app: Hueyard, queue: str, wanted: set[str] | None, *, limit: int | None
) -> tuple[int, int, int]:
    """Run jobs of ``queue`` until every ``wanted`` one has ended (None: until no job
    may be taken); a retry is promoted at once. Returns (completed, failed, retried)."""
    from framework.jobs import Jobs

    huey = app.queue(queue).huey
    jobs = Jobs(app)
    completed = failed = retried = 0
    while wanted is None or wanted:
        if limit is not None and completed + failed + retried >= limit:
            raise HueyardError(
                f"drain({queue!r}) stopped after {completed + failed + retried} runs with "
                "jobs left to run: do its jobs enqueue more jobs on it each time? Pass "
                "max_runs= to allow more"
            )
        _RUNS.depth += 1
        try:
            ran = huey.run_now()
        except BaseException:
            if _RUNS.depth == 1:  # (Ctrl-C): what it enqueued stays waiting, for drain()
                _RUNS.pending.clear()
            raise
        finally:
            _RUNS.depth -= 1
        if not _RUNS.depth:
            _run_pending()
        if ran is None:
            break  # nothing waiting, or the queue is paused or rate limited
        job_id, outcome = ran
        if outcome is Outcome.RETRY:
            retried += 1
            jobs.promote(queue, job_id)  # the backoff is not waited for in a test
            continue
        completed += outcome is Outcome.COMPLETED
        failed += outcome is Outcome.FAILED
        if wanted is not None:
            wanted.discard(job_id)
    return completed, failed, retried


def _run_pending() -> None:
    """Run the jobs the jobs just run enqueued (and theirs), oldest first."""
    pending = _RUNS.pending
    try:
        while pending:
            app, queue, wanted = pending.pop(0)
            _run(app, queue, wanted, limit=None)
    except BaseException:
        pending.clear()  # none is left for the next test's enqueue to run
        raise
