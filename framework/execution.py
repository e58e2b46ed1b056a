"""Running one job: claim, execute, release, with leases kept alive meanwhile.

Huey's workers call ``huey.dequeue()`` and ``huey.execute(task)``.
:class:`QueueHuey` answers them with the job-state storage: ``dequeue`` claims
a job (with a lease), ``execute`` runs it and hands the outcome to one
``release`` script. The outcome of a run decides the next state:

============================== =============================================
the handler returned           completed, with the result
it raised, attempts remain     delayed, retried after the queue's backoff
it raised, attempts spent      failed, with the error and traceback
it raised CancelExecution      failed at once (retry=True: retried as usual)
it timed out (process worker)  like an exception: "timed out after N s"
it ran past its timeout in a   failed by the watchdog, never retried while
thread worker                  the thread may still be running
the consumer shut down         back to waiting at once, attempt not counted
============================== =============================================

A :class:`LeaseKeeper` thread per process renews the leases of the jobs the
process runs and enforces timeouts in thread workers.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import threading
import time
import traceback as tb
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from huey import Huey
from huey import signals as huey_signals
from huey.api import Task
from huey.exceptions import CancelExecution, RetryTask, TaskTimeout
from huey.registry import Message

from framework.errors import HueyardError, SerializationError
from framework.serializer import dumps
from framework.storage import Claim, JobStorage

__all__ = ["JobContext", "LeaseKeeper", "QueueHuey", "current_job"]

logger = logging.getLogger("hueyard.execution")

_ERROR_LIMIT = 4096

TICK = 0.5
"""Seconds between two checks of the lease keeper (renewals and timeouts)."""


class QueueHuey(Huey):  # type: ignore[misc]
    """One queue's Huey: jobs are claimed, run and released through :class:`JobStorage`."""

    storage: JobStorage

    stop_flag: Any = None  # the consumer's; set while it stops

    def __init__(self, name: str, *, timeout: float | None, **kwargs: Any) -> None:
        super().__init__(name, results=False, utc=True, **kwargs)
        self.queue_timeout = timeout
        self.signal(huey_signals.SIGNAL_INTERRUPTED)(self._requeue_interrupted)
        self._local = threading.local()  # per worker thread: the job fetched with a release

    def _stopping(self) -> bool:
        return self.stop_flag is not None and bool(self.stop_flag.is_set())

    # -- dequeue ---------------------------------------------------------------------------

    def dequeue(self) -> Task | None:
        claim: Claim | None = getattr(self._local, "next", None)
        self._local.next = None
        if self._stopping():
            if claim is not None:
                self.storage.release(claim, "requeue")
            return None
        if claim is None:
            claim = self.storage.claim()
            if claim is None:
                return None
            if self._stopping():  # taken while the consumer began to stop: hand it back
                self.storage.release(claim, "requeue")
                return None
        try:
            task = self._task_for(claim)
        except Exception as exc:
            reason = f"cannot run this job: {type(exc).__name__}: {exc}"
            logger.error("job %s on %s: %s", claim.id, self.name, reason)
            self.storage.release(claim, "failed", value=reason[:_ERROR_LIMIT])
            return None
        LeaseKeeper.for_process().track(self.storage, claim, self.queue_timeout)
        return task

    def return_prefetched(self) -> None:
        """Give back the job this thread fetched with its last release (worker exit)."""
        claim: Claim | None = getattr(self._local, "next", None)
        self._local.next = None
        if claim is not None:
            self.storage.release(claim, "requeue")

    def _task_for(self, claim: Claim) -> Task:
        message = self.serializer.deserialize(claim.data)
        if not isinstance(message, Message) or not isinstance(message.name, str):
            raise SerializationError(f"stored message is not a hueyard job: {claim.data[:80]!r}")
        if message.name not in self._registry._registry:
            known = ", ".join(sorted(self._registry._registry)) or "none"
            raise HueyardError(
                f"no handler named {message.name!r} is registered (known: {known}); "
                "was it renamed or removed?"
            )
        task = self._registry.create_task(message)
        task.retries = max(claim.max_attempts - claim.attempts, 0)
        task._hueyard_claim = claim
        return task

    # -- execute ---------------------------------------------------------------------------

    def execute(self, task: Task, timestamp: datetime.datetime | None = None) -> Any:
        claim: Claim = task._hueyard_claim
        keeper = LeaseKeeper.for_process()
        self._emit(huey_signals.SIGNAL_EXECUTING, task)
        self._tasks_in_flight.add(task)
        outcome = "completed"
        value = ""
        trace = ""
        delay = 0.0
        started = time.monotonic()
        try:
            with _job_context(self.storage, claim, self.name), self._timeout_context(task):
                result = task.execute()
            value = dumps(result).decode()
        except KeyboardInterrupt:
            self._tasks_in_flight.discard(task)
            keeper.forget(claim)
            logger.warning("job %s interrupted by shutdown; back to waiting", claim.id)
            self._emit(huey_signals.SIGNAL_INTERRUPTED, task)
            return None
        except SerializationError as exc:
            outcome, value, trace = "failed", f"the result is not JSON: {exc}", ""
        except Exception as exc:
            outcome, value, trace, delay = self._failure(task, claim, exc)
        finally:
            self._tasks_in_flight.discard(task)
            keeper.forget(claim)
        if self._stopping():
            released, fetched = (
                self.storage.release(claim, outcome, value=value, traceback=trace, delay=delay),
                None,
            )
        else:
            released, fetched = self.storage.release_and_claim(
                claim, outcome, value=value, traceback=trace, delay=delay
            )
        self._local.next = fetched
        if not released:
            logger.warning(
                "job %s finished (%s) after it stopped being ours (lease lost, timed out "
                "or removed); this outcome is dropped",
                claim.id,
                outcome,
            )
            return None
        duration = time.monotonic() - started
        if outcome == "completed":
            logger.info("job %s (%s) completed in %.3fs", claim.id, task.name, duration)
            self._emit(huey_signals.SIGNAL_COMPLETE, task)
        elif outcome == "retry":
            self._emit(huey_signals.SIGNAL_RETRYING, task)
        return None

    def _failure(self, task: Task, claim: Claim, exc: Exception) -> tuple[str, str, str, float]:
        trace = "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
        if isinstance(exc, TaskTimeout):
            error = f"timed out after {task.timeout:g} s"
            self._emit(huey_signals.SIGNAL_TIMEOUT, task)
        else:
            error = f"{type(exc).__name__}: {exc}"
            self._emit(huey_signals.SIGNAL_ERROR, task, exc)
        error = error[:_ERROR_LIMIT]
        retry = claim.attempts < claim.max_attempts
        delay = self._backoff(claim.attempts)
        if isinstance(exc, CancelExecution):
            retry = retry and bool(exc.retry)
            self._emit(huey_signals.SIGNAL_CANCELED, task)
        elif isinstance(exc, RetryTask):
            retry = True
            if exc.delay is not None:
                delay = float(exc.delay)
            elif exc.eta is not None:
                delay = max((exc.eta - self._get_timestamp()).total_seconds(), 0.0)
        if retry:
            logger.warning(
                "job %s (%s) attempt %d of %d failed, retrying in %gs: %s",
                claim.id,
                task.name,
                claim.attempts,
                claim.max_attempts,
                delay,
                error,
            )
            return "retry", error, trace, delay
        logger.error(
            "job %s (%s) failed after %d attempt(s): %s", claim.id, task.name, claim.attempts, error
        )
        return "failed", error, trace, 0.0

    def _backoff(self, attempt: int) -> float:
        """Seconds before the retry after failed attempt ``attempt`` (1-based)."""
        policy = self.storage.policy
        return float(policy.backoff.delay_before_retry(attempt))

    def _requeue_interrupted(self, signal: str, task: Task, *args: Any) -> None:
        # Thread workers cut off at the shutdown deadline: their jobs go back now.
        claim: Claim | None = getattr(task, "_hueyard_claim", None)
        if claim is not None and self.storage.release(claim, "requeue"):
            logger.warning("job %s interrupted by shutdown; back to waiting", claim.id)

    def read_schedule(self, timestamp: datetime.datetime | None = None) -> list[Task]:
        self.storage.promote_due()
        return []


# -- the running job's context ---------------------------------------------------------------


@dataclass
class JobContext:
    """What a handler can ask about the job it runs: ``framework.current_job()``."""

    id: str
    queue: str
    attempt: int
    max_attempts: int
    _storage: JobStorage = field(repr=False)
    _claim: Claim = field(repr=False)

    def progress(self, value: int | float | dict[str, Any]) -> None:
        """Report progress (a number, e.g. percent, or a small JSON object)."""
        self._storage.report(self._claim, "progress", dumps(value).decode())

    def log(self, line: str) -> None:
        """Append a line to the job's log (the newest ``max_log_lines`` are kept)."""
        self._storage.report(self._claim, "log", str(line))


_local = threading.local()


def current_job() -> JobContext | None:
    """The job the calling thread is running, or None outside a job."""
    job: JobContext | None = getattr(_local, "job", None)
    return job


@contextlib.contextmanager
def _job_context(storage: JobStorage, claim: Claim, queue: str) -> Iterator[JobContext]:
    _local.job = JobContext(
        id=claim.id,
        queue=storage.policy.name,
        attempt=claim.attempts,
        max_attempts=claim.max_attempts,
        _storage=storage,
        _claim=claim,
    )
    try:
        yield _local.job
    finally:
        _local.job = None


# -- leases and the timeout watchdog -------------------------------------------------------


class LeaseKeeper:
    """One thread per process: renews leases of running jobs, fails overdue ones.

    Leases are renewed every third of the lease, so two renewals can fail before
    another consumer may recover the job. A job past its queue's timeout is
    failed here ("timed out after N s"); in ``-k process`` workers Huey's alarm
    usually stops it first.
    """

    _instance: LeaseKeeper | None = None
    _instance_lock = threading.Lock()

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._running: dict[str, tuple[JobStorage, Claim, float | None]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hueyard-leases", daemon=True)
        self._thread.start()

    @classmethod
    def for_process(cls) -> LeaseKeeper:
        keeper = cls._instance
        if keeper is None or keeper.pid != os.getpid():  # none yet, or inherited by fork
            with cls._instance_lock:
                keeper = cls._instance
                if keeper is None or keeper.pid != os.getpid():
                    keeper = cls._instance = LeaseKeeper()
        return keeper

    def track(self, storage: JobStorage, claim: Claim, timeout: float | None) -> None:
        with self._lock:
            self._running[claim.token] = (storage, claim, timeout)

    def forget(self, claim: Claim) -> None:
        with self._lock:
            self._running.pop(claim.token, None)

    def running(self) -> list[Claim]:
        with self._lock:
            return [claim for _, claim, _ in self._running.values()]

    def _run(self) -> None:
        renewed: dict[int, float] = {}  # id(storage) -> when its leases were last renewed
        while True:
            self._wake.wait(TICK)
            try:
                self._enforce_timeouts()
                self._renew_due(renewed)
            except Exception:
                logger.exception("lease keeper: renewal failed; retrying")

    def _renew_due(self, renewed: dict[int, float]) -> None:
        with self._lock:
            entries = list(self._running.values())
        by_storage: dict[int, tuple[JobStorage, list[Claim]]] = {}
        for storage, claim, _ in entries:
            by_storage.setdefault(id(storage), (storage, []))[1].append(claim)
        now = time.monotonic()
        for key, (storage, claims) in by_storage.items():
            # Renew every third of the lease, counted from the oldest claim's start
            # or the last renewal, so two renewals may fail before a lease expires.
            since = renewed.get(key, min(claim.claimed_at for claim in claims))
            if now - since < storage.lease_ms / 3000:
                continue
            renewed[key] = now
            for lost in storage.renew(claims):
                logger.warning("job %s is no longer held by this consumer (lease lost)", lost)

    def _enforce_timeouts(self) -> None:
        now = time.monotonic()
        with self._lock:
            overdue = [
                (storage, claim, timeout)
                for storage, claim, timeout in self._running.values()
                if timeout is not None and now - claim.claimed_at > timeout + 1.0
            ]
        for storage, claim, timeout in overdue:
            self.forget(claim)
            assert timeout is not None
            error = f"timed out after {timeout:g} s"
            if storage.release(claim, "failed", value=error):
                logger.error("job %s %s; failed by the watchdog", claim.id, error)
