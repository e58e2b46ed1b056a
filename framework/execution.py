"""Running one job: claim it, let Huey run it, release it with its outcome.

Huey's workers call ``huey.dequeue()`` and ``huey.execute(task)``.
:class:`QueueHuey` answers them with the job-state storage: ``dequeue``
claims a job (with a lease) and builds Huey's ``Task`` from its record;
``execute`` runs the task in Huey's way (signals, timeouts, ``RetryTask``,
``CancelExecution``) and hands the outcome to one ``release`` script, which
also claims the worker's next job. What a failure leads to is decided in
:mod:`framework.policy`; leases are kept by :mod:`framework.leases`.

A job put back by a consumer that shuts down goes back to waiting at once,
without counting the attempt. The test mode (:mod:`framework.immediate`)
runs a job in the caller's thread the same way, through :meth:`QueueHuey.run_now`.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

import redis
from huey import Huey
from huey import signals as huey_signals
from huey.api import Task
from huey.exceptions import CancelExecution, RetryTask, TaskLockedException, TaskTimeout
from huey.serializer import Serializer
from huey.utils import Error

from framework import forks
from framework.context import job_context
from framework.errors import (
    ChainError,
    HueyardError,
    JobCancelled,
    SerializationError,
    StorageError,
)
from framework.fanin import Relay
from framework.interrupts import CtrlCWatch
from framework.leases import LeaseKeeper
from framework.masking import DEFAULT_MASKER, Masker
from framework.options import EnqueuedIds, EnqueueOptions, Outcome, Stored
from framework.outages import pause_after
from framework.outcomes import store_outcome
from framework.payloads import result_too_large
from framework.policy import ERROR_LIMIT, JobPolicy, decide
from framework.record import Claim
from framework.serializer import dumps_text, loads
from framework.storage import JobStorage
from framework.textgrid import one_line

__all__ = ["JSONSerializer", "QueueHuey"]

logger = logging.getLogger("hueyard.execution")

OUTAGE_PAUSE = 1.0
"""Seconds a worker waits after Redis failed it, before its next try."""


class JSONSerializer(Serializer):  # type: ignore[misc]
    """What Huey serializes itself (its key-value store) as JSON, never pickle.

    A failed job's result comes from the storage already as Huey's ``Error``
    (:meth:`~framework.storage.JobStorage.peek_data`): it is passed through.
    """

    def __init__(self) -> None:
        super().__init__(compression=False)

    def deserialize(self, data: Any) -> Any:
        if isinstance(data, Error):
            return data
        return super().deserialize(data)

    def _serialize(self, data: Any) -> bytes:
        return dumps_text(data).encode()

    def _deserialize(self, data: bytes) -> Any:
        return loads(data)


_REVOKE = (
    "revoking is not available on a hueyard queue (Huey would skip the task at dequeue; "
    "hueyard's jobs are cancelled instead): framework.jobs.Jobs(app).cancel(queue, job_id), "
    "`hueyard cancel QUEUE JOB_ID`, or the dashboard's Cancel; a running job is interrupted "
    "(docs/jobs.md). To run a job again (Huey's result.reschedule()): a failed one, "
    "`hueyard retry QUEUE JOB_ID`; a delayed one, now, Jobs(app).promote(queue, job_id)"
)
_TASK = (
    "{call} is not available on the Huey of queue {queue!r}: a Huey task declared here could "
    "never be enqueued (a hueyard job is a record, not a Huey message). Declare a handler "
    "instead, in a module of pipelines/: @handler({queue!r}) on a function of one payload "
    "(docs/handlers.md); retries, delays, priority and timeout are the queue's "
    "[queues.{queue}] in config/queues.toml{extra}"
)


class _Switch(Protocol):
    immediate: bool
    immediate_use_memory: bool


@dataclass(frozen=True, slots=True)
class _Ending:
    """How a run ended, as asked and as stored: what its log line and signals tell."""

    outcome: Outcome
    stored: Stored
    value: str  # the result's JSON, or the error
    delay: float  # seconds before a retry
    raised: str  # "failed" or "not run, its lock is held" for a raise; "" otherwise
    attempts: int  # the job's attempts


class QueueHuey(Huey):  # type: ignore[misc]
    """One queue's Huey: jobs are claimed, run and released through :class:`JobStorage`."""

    storage: JobStorage

    stop_flag: Any = None  # the consumer's; set while it stops
    relay: Relay | None = None  # the app's: fan-in and follow-ups (framework/fanin.py)

    owner: _Switch | None = None  # the app whose queue this is: its test mode is the app's

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
            except (redis.RedisError, StorageError) as exc:  # StorageError: a key's type
                # One worker's turn failed; the others wait for theirs (framework.idle), so
                # an outage costs a few log lines (framework.outages), not one per worker.
                self.storage.outage.failed(exc)
                self._wait(pause_after(exc, OUTAGE_PAUSE))
                return None
            if claim is None:
                return None
            if self._stopping():  # taken while the consumer began to stop: hand it back
                self.storage.release(claim, Outcome.REQUEUE)
                return None
        return self._prepared(claim)

    def _prepared(self, claim: Claim) -> Task | None:
        """Huey's task for ``claim``, its lease kept from now on; None when the job can
        not run (no such handler, a record that can not be read): it failed, saying why."""
        try:
            task = self._task_for(claim)
        except Exception as exc:
            reason = f"cannot run this job: {type(exc).__name__}: {exc}"
            logger.error("job %s on %s: %s", claim.id, self.name, one_line(reason))
            self.storage.release(claim, Outcome.FAILED, value=reason[:ERROR_LIMIT])
            return None
        LeaseKeeper.for_process().track(self.storage, claim, task.timeout)
        return task

    def run_now(self) -> tuple[str, Outcome] | None:
        """Claim this queue's next job without waiting and run it here, in the calling
        thread, as a worker would (claim, lease, timeout, hooks, signals, release), but
        without taking the next job with the release. Returns (its id, its outcome:
        COMPLETED, FAILED or RETRY, or REQUEUE when its outcome was dropped), or None when
        no job may be taken now. The test mode's runner (:mod:`framework.immediate`)."""
        claim = self.storage.claim_now()
        if claim is None:
            return None
        task = self._prepared(claim)
        if task is None:
            return claim.id, Outcome.FAILED
        nested = getattr(self._local, "here", None)  # a job enqueued by a job run here
        with CtrlCWatch() as watch:
            self._local.here = watch
            try:
                outcome = self.execute(task)
            finally:
                self._local.here = nested
        return claim.id, outcome if outcome is not None else Outcome.REQUEUE

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

    # -- Huey's enqueued and scheduled signals, sent by the producer -------------------------

    def hears_enqueues(self) -> bool:
        """Whether a receiver listens for ``enqueued`` or ``scheduled`` (or for every
        signal): only then does an enqueue build Huey's tasks to send them with."""
        receivers = self._signal.receivers
        return bool(
            receivers["any"]
            or receivers.get(huey_signals.SIGNAL_ENQUEUED)
            or receivers.get(huey_signals.SIGNAL_SCHEDULED)
        )

    def announce_enqueued(
        self,
        handler: str,
        ids: EnqueuedIds,
        payloads: Sequence[bytes | str],
        options: EnqueueOptions,
    ) -> None:
        """Send Huey's ``enqueued`` signal for each job just stored, then ``scheduled`` for
        a delayed one (as Huey's consumer does when it schedules a task with an ``eta``),
        with the ``Task`` a worker builds from the record (:meth:`_task_for`): the
        handler's task class, the payload as its argument, the job's id and timeout, and
        its ``eta`` (UTC, naive, as Huey's). A payload whose key was held stored nothing
        and is not announced."""
        task_class = self._registry._registry[handler]
        timeout = JobPolicy.of(self.storage.policy, timeout=options.timeout).timeout
        eta: datetime.datetime | None = None
        if options.eta is not None:
            eta = options.eta.astimezone(datetime.UTC).replace(tzinfo=None)
        elif delay_ms := options.delay_ms():
            now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
            eta = now + datetime.timedelta(milliseconds=delay_ms)
        for index, (job_id, payload) in enumerate(zip(ids, payloads, strict=True)):
            if index in ids.existing:
                continue
            task = task_class(args=(loads(payload),), id=job_id, timeout=timeout, eta=eta)
            self._emit(huey_signals.SIGNAL_ENQUEUED, task)
            if eta is not None:
                self._emit(huey_signals.SIGNAL_SCHEDULED, task)

    # -- execute ---------------------------------------------------------------------------

    def execute(self, task: Task, timestamp: datetime.datetime | None = None) -> Outcome | None:
        """Run a claimed job; return the outcome stored (None: dropped, or interrupted).

        However it ends, its lease is no longer renewed after (every way out of
        :meth:`_execute` forgets it, and a raise does here): a job whose outcome could not
        be stored (a hook that raised, Redis gone) is recovered once the lease runs out,
        never held active for as long as this consumer runs."""
        try:
            return self._execute(task)
        except BaseException:
            LeaseKeeper.for_process().forget(task.hueyard[0])
            raise

    def _execute(self, task: Task) -> Outcome | None:
        claim, policy = task.hueyard
        keeper = LeaseKeeper.for_process()
        if self._pre_execute and not self._pre_executed(task, claim, keeper):
            return Outcome.FAILED
        self._emit(huey_signals.SIGNAL_EXECUTING, task)
        self._tasks_in_flight.add(task)
        outcome, value, trace, delay, follow_up = Outcome.COMPLETED, "", "", 0.0, ""
        raised = ""  # how the handler's raise is told in the log: "failed", or its lock held
        result: Any = None
        failure: BaseException | None = None
        started = time.monotonic()
        run = keeper.running_handler(claim)
        try:
            with (
                run,
                job_context(self.storage, claim, policy.attempts, self.relay),
                self._timeout_context(task),
                _ForkGuard(claim),
            ):
                result = task.execute()
            if (stopped := run.outcome_of(None)) is not None:
                raise stopped  # the handler caught its JobTimeout or JobCancelled and returned
            outcome, value, failure = self._encoded(result)
        except KeyboardInterrupt as exc:
            here: CtrlCWatch | None = getattr(self._local, "here", None)
            if not (here.seen if here is not None else self._stopping()):
                # Not a shutdown (a worker is interrupted only once its consumer stops, and
                # a signal never reaches a worker thread), nor Ctrl-C of a job run here
                # (run_now): the handler raised it itself.
                ended = failure = run.outcome_of(exc) or exc
                outcome, value, trace, delay, raised = self._failure(task, ended, claim, policy)
            else:
                self._tasks_in_flight.discard(task)
                keeper.forget(claim)
                self._emit(huey_signals.SIGNAL_INTERRUPTED, task)  # puts it back, and says so
                if here is not None:
                    raise  # run_now: Ctrl-C stops the test, after the job went back to waiting
                return None
        except SerializationError as exc:
            outcome, value, failure = Outcome.FAILED, f"the result is not JSON: {exc}", exc
        except BaseException as exc:
            # Whatever the handler raised (SystemExit from sys.exit() or argparse,
            # asyncio.CancelledError, ...) fails the attempt: it never ends the worker,
            # nor leaves its job active with a lease renewed for as long as the consumer runs.
            ended = failure = run.outcome_of(exc) or exc
            outcome, value, trace, delay, raised = self._failure(task, ended, claim, policy)
        finally:
            self._tasks_in_flight.discard(task)
            keeper.releasing(claim)  # its lease is kept until the outcome is stored
        if outcome is Outcome.COMPLETED and claim.then is not None:
            outcome, value, failure, follow_up = self._follow_up(task, claim, result, value)
        # The next job is claimed with this release, unless post-execute hooks run after
        # it: a slow hook would hold that job unrenewed, and its lease could run out.
        fetch = not (self._stopping() or getattr(self._local, "here", None) or self._post_execute)
        try:
            stored, self._local.next = store_outcome(
                self.storage, claim, outcome, value=value, traceback=trace, delay=delay,
                fetch=fetch, follow_up=follow_up,
            )  # fmt: skip
        finally:
            keeper.forget(claim)
        if self._post_execute:  # Huey's @huey.post_execute() hooks: (task, value, exception)
            # after the outcome is stored, as in Huey: a hook reads the job's result or error
            self._run_post_execute(
                task, None if outcome is not Outcome.COMPLETED else result, failure
            )
        ending = _Ending(outcome, stored, value, delay, raised, policy.attempts)
        return self._told(task, claim, ending, started=started)

    def _encoded(self, result: Any) -> tuple[Outcome, str, BaseException | None]:
        """``result`` as stored, JSON (a :class:`SerializationError` when it is not), or
        the failure of a result over the queue's ``max_payload_bytes``: a result is kept
        like a payload, and a larger one fails its job (not retried: the same result
        would fail again)."""
        value = dumps_text(result)
        limit = self.storage.policy.max_payload_bytes
        # UTF-8 takes at most 4 bytes a character: most results need no encoding here
        if len(value) > limit // 4 and (
            refused := result_too_large(len(value.encode()), limit=limit, queue=self.name)
        ):
            return Outcome.FAILED, refused, HueyardError(refused)
        return Outcome.COMPLETED, value, None

    def _told(self, task: Task, claim: Claim, ending: _Ending, *, started: float) -> Outcome | None:
        """After the release: log what was stored and send Huey's signal of it (None: the
        outcome was dropped, the job no longer ours)."""
        outcome, stored = ending.outcome, ending.stored
        if not stored:
            logger.warning(
                "job %s finished (%s) after it stopped being ours (lease lost, timed out "
                "or removed); this outcome is dropped%s",
                claim.id,
                outcome,
                f" (its attempt {ending.raised}: {one_line(ending.value)})"
                if ending.raised
                else "",
            )
            return None
        if stored is Stored.CANCELLED:
            logger.warning(
                "job %s (%s) was cancelled while it ran: failed (cancelled), not %s%s",
                claim.id, task.name,
                "retried" if outcome is Outcome.RETRY else "put back in waiting",
                f"; its attempt {ending.raised}: {one_line(ending.value)}" if ending.raised else "",
            )  # fmt: skip
            self._emit(huey_signals.SIGNAL_CANCELED, task)
            return Outcome.FAILED
        if stored is Stored.CORRUPT:
            logger.error(
                "job %s (%s) failed: its record turned corrupt while it ran (hueyard job %s "
                "shows why)",
                claim.id, task.name, claim.id,
            )  # fmt: skip
            return Outcome.FAILED
        if outcome is Outcome.COMPLETED:
            logger.info(
                "job %s (%s) completed in %.3fs", claim.id, task.name, time.monotonic() - started
            )
            self._emit(huey_signals.SIGNAL_COMPLETE, task)
        elif outcome is Outcome.RETRY:
            logger.warning(
                "job %s (%s) attempt %d of %d %s, retrying in %gs: %s",
                claim.id, task.name, claim.attempts, ending.attempts, ending.raised,
                ending.delay, one_line(ending.value),
            )  # fmt: skip
            self._emit(huey_signals.SIGNAL_RETRYING, task)
            # Huey schedules the retry: its task, with the retry's eta, is the scheduled one
            task.eta = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) + (
                datetime.timedelta(seconds=ending.delay)
            )
            self._emit(huey_signals.SIGNAL_SCHEDULED, task)
        elif ending.raised:
            logger.error(
                "job %s (%s) failed after %d attempt(s)%s: %s",
                claim.id, task.name, claim.attempts,
                " (its lock is held)" if ending.raised != "failed" else "",
                one_line(ending.value),
            )  # fmt: skip
        return outcome

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
            logger.error("job %s (%s) failed: %s", claim.id, task.name, one_line(str(exc)))
            return Outcome.FAILED, str(exc)[:ERROR_LIMIT], exc, ""

    def _failure(
        self, task: Task, exc: BaseException, claim: Claim, policy: JobPolicy
    ) -> tuple[Outcome, str, str, float, str]:
        """The job's outcome after its handler raised ``exc``, with Huey's signal for it:
        timeout, locked, canceled, or error for anything else (``RetryTask`` fires none:
        the retrying signal follows). A ``TaskLockedException`` (``huey.lock_task`` held
        elsewhere) is not an error of the handler: its attempt keeps no traceback."""
        locked = isinstance(exc, TaskLockedException)
        trace = "" if locked else self.masker.traceback(exc)
        if isinstance(exc, TaskTimeout):
            self._emit(huey_signals.SIGNAL_TIMEOUT, task)
        elif locked:
            self._emit(huey_signals.SIGNAL_LOCKED, task)
        elif isinstance(exc, CancelExecution | JobCancelled):
            self._emit(huey_signals.SIGNAL_CANCELED, task)
        elif not isinstance(exc, RetryTask):
            self._emit(huey_signals.SIGNAL_ERROR, task, exc)
        now = datetime.datetime.now(datetime.UTC)
        decision = decide(policy, claim.attempts, exc, now, describe=self.masker.exception)
        what = "not run, its lock is held" if locked else "failed"  # logged once stored
        return decision.outcome, decision.error, trace, decision.delay, what

    def _requeue_interrupted(self, signal: str, task: Task, *args: Any) -> None:
        # Thread workers cut off at the shutdown deadline: their jobs go back now.
        claim: Claim | None = getattr(task, "hueyard", (None, None))[0]
        if claim is None:
            return
        stored = self.storage.release(claim, Outcome.REQUEUE)
        if stored is Stored.CANCELLED:
            logger.warning(
                "job %s interrupted by shutdown; it was cancelled while it ran: failed (cancelled)",
                claim.id,
            )
        elif stored:
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
        """Huey's ``huey.result(id, ...)``, reading the job's record (framework/results.py)
        in this queue's app (the process's app for a Huey that belongs to none):
        ``preserve`` is always true, ``revoke_on_timeout`` is refused (cancel instead)."""
        from framework.results import result
        from framework.runtime import get_app

        if revoke_on_timeout:
            raise HueyardError(_REVOKE)
        app: Any = self.owner if self.owner is not None else get_app()
        return result(
            app, id, blocking=blocking, timeout=timeout, backoff=backoff, max_delay=max_delay
        )

    def task(self, *args: Any, **kwargs: Any) -> Any:
        """Refused at the decorator: ``@handler(queue)`` declares what runs on a queue."""
        raise HueyardError(_TASK.format(call="@huey.task()", queue=self.name, extra=""))

    def context_task(self, *args: Any, **kwargs: Any) -> Any:
        """Refused at the decorator, as :meth:`task`."""
        extra = (
            "; open the context inside the handler (with obj: ...), or build a per-worker "
            "resource in an @huey.on_startup() hook"
        )
        raise HueyardError(_TASK.format(call="@huey.context_task()", queue=self.name, extra=extra))

    def put(self, key: str, data: Any) -> Any:
        """Huey's ``huey.put(key, value)``, with two differences: ``value`` is stored as
        JSON (anything else raises :class:`~framework.errors.SerializationError`), and
        the key expires after ``[consumer] metrics_ttl`` (25 h by default) where Huey's
        never expire, since every Redis structure of hueyard is bounded. Data that must
        live longer belongs in ``framework.get_cache()``."""
        return super().put(key, data)

    def enqueue(self, task: Any) -> Any:
        """Refused before anything happens: no ``SIGNAL_ENQUEUED`` (Huey sends it before it
        stores the message), whatever ``task`` is (a task of no handler, a group, a chord)."""
        raise HueyardError(
            f"huey.enqueue() is not available on the Huey of queue {self.name!r}: a hueyard "
            "job is a record of a registered handler, not a Huey task; enqueue with "
            "handler.enqueue(payload) or framework.enqueue(queue, handler, payload), a group "
            "with handler.enqueue_many(payloads), a pipeline with handler.s(payload).then(...)"
        )

    def add_schedule(self, task: Any) -> Any:
        """Refused before anything happens, as :meth:`enqueue`."""
        raise HueyardError(
            f"huey.add_schedule() is not available on the Huey of queue {self.name!r}: "
            "schedule a job with handler.enqueue(payload, delay=seconds) or eta=datetime"
        )

    def put_result(self, key: str, data: Any) -> None:
        """Refused: a job's result is what its handler returns, stored with its outcome."""
        raise HueyardError(
            "huey.put_result() is not available: a job's result is what its handler "
            "returns, stored on the job's record when it completes (read it with "
            "framework.result(job_id)); for data of your own, huey.put(key, value), which "
            "expires after [consumer] metrics_ttl"
        )

    def periodic_task(self, *args: Any, **kwargs: Any) -> Any:
        raise HueyardError(
            "@huey.periodic_task is not available: every consumer would run it; declare a "
            "[schedules.<name>] table in config/queues.toml (handler, cron or every), which "
            "fires each tick once however many consumers run (docs/configuration.md)"
        )

    def rate_limit(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: Huey retries a rate-limited task for free once its window resets;
        hueyard would count the ``RateLimitExceeded`` as a failed attempt."""
        raise HueyardError(
            f"huey.rate_limit() is not available on the Huey of queue {self.name!r}: its "
            "RateLimitExceeded would count as a failed attempt and wait the queue's backoff "
            "(Huey retries it for free when the window resets). Limit the queue instead: "
            f"rate_limit = {{ max = 20, per = 60 }} in [queues.{self.name}] of "
            "config/queues.toml holds across every consumer and costs no attempt "
            "(docs/storage.md#rate-limit); for a provider's Retry-After, raise "
            "RetryTask(delay=seconds)"
        )

    def create_consumer(self, **options: Any) -> Any:
        """Refused, as a usage error of ``huey_consumer`` (one line, exit status 1): Huey's
        stock consumer would run this queue without leases, recovery or schedules."""
        raise SystemExit(
            f"hueyard: error: the Huey of queue {self.name!r} has no consumer of its own (Huey's "
            "stock one would run its jobs without lease heartbeats, recovery of a dead "
            "consumer's jobs or schedules); run hueyard's: "
            f"HUEYARD_QUEUES={self.name} huey_consumer framework.app (docs/consumer.md)"
        )

    def revoke_by_id(self, *args: Any, **kwargs: Any) -> Any:
        raise HueyardError(_REVOKE)

    revoke = revoke_all = restore = restore_by_id = restore_all = revoke_by_id

    @property
    def immediate(self) -> bool:
        """Huey's test mode is its app's (:attr:`framework.Hueyard.immediate`): one switch
        for every queue, since a job may enqueue jobs of other queues."""
        return self.owner is not None and bool(self.owner.immediate)

    @immediate.setter
    def immediate(self, value: bool) -> None:
        if self.owner is None:
            raise HueyardError(
                f"huey.immediate: the Huey of queue {self.name!r} belongs to no app; set "
                "framework.get_app().immediate instead (docs/testing.md)"
            )
        self.owner.immediate = value

    @property
    def immediate_use_memory(self) -> bool:
        """Huey's ``immediate_use_memory`` is its app's too
        (:attr:`framework.Hueyard.immediate_use_memory`)."""
        return self.owner is None or bool(self.owner.immediate_use_memory)

    @immediate_use_memory.setter
    def immediate_use_memory(self, value: bool) -> None:
        if self.owner is not None:
            self.owner.immediate_use_memory = value
        elif value is not True:  # Huey's constructor sets its default, True
            raise HueyardError(
                f"huey.immediate_use_memory: the Huey of queue {self.name!r} belongs to no "
                "app; set framework.get_app().immediate_use_memory instead (docs/testing.md)"
            )

    def read_schedule(self, timestamp: datetime.datetime | None = None) -> list[Task]:
        self.storage.promote_due()
        return []


class _ForkGuard:
    """Around a handler's call: a process the handler forked that comes back out of it
    (:func:`_end_forked_child`) goes no further."""

    __slots__ = ("_claim", "_pid")

    def __init__(self, claim: Claim) -> None:
        self._claim = claim
        self._pid = forks.pid()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        if forks.pid() != self._pid:
            _end_forked_child(self._claim)


def _end_forked_child(claim: Claim) -> NoReturn:
    """A process the handler forked came back out of the handler (its child branch did
    not end with ``os._exit``): it would store the job's outcome with its parent's claim,
    then go on as a second worker of the consumer, deaf to its signals. It ends here."""
    logger.error(
        "job %s: a process its handler forked (pid %d) returned from the handler; it exits "
        "now (a forked child must end with os._exit)",
        claim.id, os.getpid(),
    )  # fmt: skip
    logging.shutdown()  # flushes every handler: os._exit flushes nothing
    os._exit(1)
