"""Running one job: claim it, let Huey run it, release it with its outcome.

Huey's workers call ``huey.dequeue()`` and ``huey.execute(task)``.
:class:`QueueHuey` answers them with the job-state storage: ``dequeue``
claims a job (with a lease) and builds Huey's ``Task`` from its record;
``execute`` runs the task in Huey's way (signals, timeouts, ``RetryTask``,
``CancelExecution``) and hands the outcome to one ``release`` script, which
also claims the worker's next job. What a failure leads to is decided in
:mod:`framework.policy`; leases are kept by :mod:`framework.leases`.

A job put back by a consumer that shuts down goes back to waiting at once,
without counting the attempt.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from typing import Any

import redis
from huey import Huey
from huey import signals as huey_signals
from huey.api import Task
from huey.exceptions import CancelExecution, TaskTimeout
from huey.serializer import Serializer

from framework.context import job_context
from framework.errors import ChainError, HueyardError, JobCancelled, SerializationError
from framework.fanin import Relay
from framework.leases import LeaseKeeper
from framework.masking import DEFAULT_MASKER, Masker
from framework.options import Outcome
from framework.outcomes import store_outcome
from framework.policy import ERROR_LIMIT, JobPolicy, decide
from framework.record import Claim
from framework.serializer import dumps_text, loads
from framework.storage import JobStorage

__all__ = ["JSONSerializer", "QueueHuey"]

logger = logging.getLogger("hueyard.execution")

OUTAGE_PAUSE = 1.0
"""Seconds a worker waits after Redis failed it, before its next try."""


class JSONSerializer(Serializer):  # type: ignore[misc]
    """What Huey serializes itself (its key-value store) as JSON, never pickle."""

    def __init__(self) -> None:
        super().__init__(compression=False)

    def _serialize(self, data: Any) -> bytes:
        return dumps_text(data).encode()

    def _deserialize(self, data: bytes) -> Any:
        return loads(data)


_REVOKE = (
    "revoking is not available on a hueyard queue (Huey would skip the task at dequeue; "
    "hueyard's jobs are cancelled instead): Jobs(app).cancel(job_id), hueyard cancel "
    "QUEUE JOB_ID, or the dashboard's Cancel; a running job is interrupted (docs/jobs.md)"
)


class QueueHuey(Huey):  # type: ignore[misc]
    """One queue's Huey: jobs are claimed, run and released through :class:`JobStorage`."""

    storage: JobStorage

    stop_flag: Any = None  # the consumer's; set while it stops
    relay: Relay | None = None  # the app's: fan-in and follow-ups (framework/fanin.py)

    def __init__(self, name: str, *, masker: Masker = DEFAULT_MASKER, **kwargs: Any) -> None:
        super().__init__(name, results=False, utc=True, serializer=JSONSerializer(), **kwargs)
        self.masker = masker  # a failed job's error, traceback and log line go through it
        self.signal(huey_signals.SIGNAL_INTERRUPTED)(self._requeue_interrupted)
        self._local = threading.local()  # per worker thread: the job fetched with a release
        self._queue_policy = JobPolicy.of(self.storage.policy)  # a job that set no option

    def _stopping(self) -> bool:
        return self.stop_flag is not None and bool(self.stop_flag.is_set())

    def _wait(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if the consumer stops meanwhile."""
        if self.stop_flag is not None:
            self.stop_flag.wait(seconds)
        else:
            time.sleep(seconds)

    # -- dequeue ---------------------------------------------------------------------------

    def dequeue(self) -> Task | None:
        claim: Claim | None = getattr(self._local, "next", None)
        self._local.next = None
        if self._stopping():
            if claim is not None:
                self.storage.release(claim, Outcome.REQUEUE)
            return None
        if claim is None:
            try:
                claim = self.storage.claim()
            except redis.RedisError as exc:
                # One worker's turn failed; the others wait for theirs (framework.idle), so
                # an outage costs a few log lines (framework.outages), not one per worker.
                self.storage.outage.failed(exc)
                self._wait(OUTAGE_PAUSE)
                return None
            if claim is None:
                return None
            if self._stopping():  # taken while the consumer began to stop: hand it back
                self.storage.release(claim, Outcome.REQUEUE)
                return None
        try:
            task = self._task_for(claim)
        except Exception as exc:
            reason = f"cannot run this job: {type(exc).__name__}: {exc}"
            logger.error("job %s on %s: %s", claim.id, self.name, reason)
            self.storage.release(claim, Outcome.FAILED, value=reason[:ERROR_LIMIT])
            return None
        LeaseKeeper.for_process().track(self.storage, claim, task.timeout)
        return task

    def return_prefetched(self) -> None:
        """Give back the job this thread fetched with its last release (worker exit)."""
        claim: Claim | None = getattr(self._local, "next", None)
        self._local.next = None
        if claim is not None:
            self.storage.release(claim, Outcome.REQUEUE)

    def _task_for(self, claim: Claim) -> Task:
        """Huey's task for a claimed job, built from its record."""
        handler, payload = claim.job()
        task_class = self._registry._registry.get(handler)
        if task_class is None:
            known = ", ".join(sorted(self._registry._registry)) or "none"
            raise HueyardError(
                f"no handler named {handler!r} is registered on queue {self.name!r} "
                f"(known: {known}); was it renamed or removed?"
            )
        policy = (
            self._queue_policy
            if claim.max_attempts is None and claim.timeout is None
            else JobPolicy.of(
                self.storage.policy, attempts=claim.max_attempts, timeout=claim.timeout
            )
        )
        task = task_class(args=(payload,), id=claim.id, timeout=policy.timeout)
        task.hueyard = (claim, policy)
        return task

    # -- execute ---------------------------------------------------------------------------

    def execute(self, task: Task, timestamp: datetime.datetime | None = None) -> Any:
        claim, policy = task.hueyard
        keeper = LeaseKeeper.for_process()
        if self._pre_execute and not self._pre_executed(task, claim, keeper):
            return None
        self._emit(huey_signals.SIGNAL_EXECUTING, task)
        self._tasks_in_flight.add(task)
        outcome, value, trace, delay, follow_up = Outcome.COMPLETED, "", "", 0.0, ""
        result: Any = None
        failure: BaseException | None = None
        started = time.monotonic()
        run = keeper.running_handler(claim)
        try:
            with (
                run,
                job_context(self.storage, claim, policy.attempts, self.relay),
                self._timeout_context(task),
            ):
                result = task.execute()
            if (stopped := run.outcome_of(None)) is not None:
                raise stopped  # the handler caught its JobTimeout or JobCancelled and returned
            value = dumps_text(result)
        except KeyboardInterrupt:
            self._tasks_in_flight.discard(task)
            keeper.forget(claim)
            logger.warning("job %s interrupted by shutdown; back to waiting", claim.id)
            self._emit(huey_signals.SIGNAL_INTERRUPTED, task)
            return None
        except SerializationError as exc:
            outcome, value, failure = Outcome.FAILED, f"the result is not JSON: {exc}", exc
        except (Exception, JobCancelled) as exc:
            ended = failure = run.outcome_of(exc) or exc
            outcome, value, trace, delay = self._failure(task, claim, policy, ended)
        finally:
            self._tasks_in_flight.discard(task)
            keeper.releasing(claim)  # its lease is kept until the outcome is stored
        if outcome is Outcome.COMPLETED and claim.then is not None:
            outcome, value, failure, follow_up = self._follow_up(task, claim, result, value)
        if self._post_execute:  # Huey's @huey.post_execute() hooks: (task, value, exception)
            self._run_post_execute(
                task, None if outcome is not Outcome.COMPLETED else result, failure
            )
        try:
            released, self._local.next = store_outcome(
                self.storage, claim, outcome, value=value, traceback=trace, delay=delay,
                fetch=not self._stopping(), follow_up=follow_up,
            )  # fmt: skip
        finally:
            keeper.forget(claim)
        if not released:
            logger.warning(
                "job %s finished (%s) after it stopped being ours (lease lost, timed out "
                "or removed); this outcome is dropped",
                claim.id,
                outcome,
            )
            return None
        if outcome is Outcome.COMPLETED:
            logger.info(
                "job %s (%s) completed in %.3fs", claim.id, task.name, time.monotonic() - started
            )
            self._emit(huey_signals.SIGNAL_COMPLETE, task)
        elif outcome is Outcome.RETRY:
            self._emit(huey_signals.SIGNAL_RETRYING, task)
        return None

    def _follow_up(
        self, task: Task, claim: Claim, result: Any, value: str
    ) -> tuple[Outcome, str, BaseException | None, str]:
        """A completed job's outcome with the follow-up its result starts
        (:mod:`framework.chains`): (completed, its result, None, the follow-up); or,
        when the result does not make the follow-up's payload, (failed, why, the
        error, ""): the job fails, not retried (the same result would fail again)."""
        try:
            if self.relay is None:
                raise ChainError(
                    f"job {claim.id} has follow-ups, and queue {self.name!r} was not built by "
                    "a hueyard app (Hueyard(settings, registry)), which enqueues them"
                )
            return Outcome.COMPLETED, value, None, self.relay.follow_up(claim, result)
        except ChainError as exc:
            logger.error("job %s (%s) failed: %s", claim.id, task.name, exc)
            return Outcome.FAILED, str(exc)[:ERROR_LIMIT], exc, ""

    def _failure(
        self, task: Task, claim: Claim, policy: JobPolicy, exc: BaseException
    ) -> tuple[Outcome, str, str, float]:
        trace = self.masker.traceback(exc)
        if isinstance(exc, TaskTimeout):
            self._emit(huey_signals.SIGNAL_TIMEOUT, task)
        else:
            self._emit(huey_signals.SIGNAL_ERROR, task, exc)
        if isinstance(exc, CancelExecution | JobCancelled):
            self._emit(huey_signals.SIGNAL_CANCELED, task)
        now = datetime.datetime.now(datetime.UTC)
        decision = decide(policy, claim.attempts, exc, now, describe=self.masker.exception)
        if decision.outcome is Outcome.RETRY:
            logger.warning(
                "job %s (%s) attempt %d of %d failed, retrying in %gs: %s",
                claim.id, task.name, claim.attempts, policy.attempts, decision.delay,
                decision.error,
            )  # fmt: skip
            return Outcome.RETRY, decision.error, trace, decision.delay
        logger.error(
            "job %s (%s) failed after %d attempt(s): %s",
            claim.id, task.name, claim.attempts, decision.error,
        )  # fmt: skip
        return Outcome.FAILED, decision.error, trace, 0.0

    def _requeue_interrupted(self, signal: str, task: Task, *args: Any) -> None:
        # Thread workers cut off at the shutdown deadline: their jobs go back now.
        claim: Claim | None = getattr(task, "hueyard", (None, None))[0]
        if claim is not None and self.storage.release(claim, Outcome.REQUEUE):
            logger.warning("job %s interrupted by shutdown; back to waiting", claim.id)

    def _pre_executed(self, task: Task, claim: Claim, keeper: LeaseKeeper) -> bool:
        """Run Huey's ``@huey.pre_execute()`` hooks; False when one cancelled the job (a
        ``CancelExecution``): Huey skips such a task, hueyard fails the job, never leaving
        it half-claimed."""
        try:
            self._run_pre_execute(task)
        except CancelExecution:
            self._emit(huey_signals.SIGNAL_CANCELED, task)
            store_outcome(
                self.storage, claim, Outcome.FAILED, traceback="", delay=0.0,
                value="CancelExecution: cancelled by a pre-execute hook", fetch=False,
            )  # fmt: skip
            keeper.forget(claim)
            return False
        return True

    # -- Huey's API where hueyard has its own way: refused, naming it --------------------

    def result(  # noqa: PLR0917 - Huey's signature, positional arguments included
        self,
        id: str,
        blocking: bool = False,
        timeout: float | None = None,
        backoff: float = 1.15,
        max_delay: float = 1.0,
        revoke_on_timeout: bool = False,
        preserve: bool = False,
    ) -> Any:
        """Huey's ``huey.result(id, ...)``, reading the job's record (framework/results.py):
        ``preserve`` is always true, ``revoke_on_timeout`` is refused (cancel instead)."""
        from framework.results import result
        from framework.runtime import get_app

        if revoke_on_timeout:
            raise HueyardError(_REVOKE)
        return result(
            get_app(), id, blocking=blocking, timeout=timeout, backoff=backoff,
            max_delay=max_delay,
        )  # fmt: skip

    def periodic_task(self, *args: Any, **kwargs: Any) -> Any:
        raise HueyardError(
            "@huey.periodic_task is not available: every consumer would run it; declare a "
            "[schedules.<name>] table in config/queues.toml (handler, cron or every), which "
            "fires each tick once however many consumers run (docs/configuration.md)"
        )

    def revoke_by_id(self, *args: Any, **kwargs: Any) -> Any:
        raise HueyardError(_REVOKE)

    revoke = revoke_all = restore = restore_by_id = restore_all = revoke_by_id

    @property
    def immediate(self) -> bool:
        return False

    @immediate.setter
    def immediate(self, value: bool) -> None:
        if value:
            raise HueyardError(
                "huey.immediate = True is not available: hueyard's storage is Redis, not "
                "Huey's memory storage; to run a handler in a test, call it directly, "
                "handler(payload), which checks the payload as an enqueue would "
                "(docs/handlers.md)"
            )

    def read_schedule(self, timestamp: datetime.datetime | None = None) -> list[Task]:
        self.storage.promote_due()
        return []
