"""Attempts, backoff, priority and timeout: decided here, and only here.

A job's record keeps only the options its producer set (``priority``,
``max_attempts``, ...). Everything else comes from its queue's config as it is
when the job runs, so tuning a queue in ``config/queues.toml`` also tunes the
jobs already waiting. :class:`JobPolicy` is that resolution for one job;
:func:`decide` turns the way a run ended into the job's next state:

======================================== ======================================
the handler ...                          the job
======================================== ======================================
returned                                 completed, with the result
raised, attempts remain                  delayed: retried after the backoff
raised ``RetryTask(delay=/eta=)``        delayed until then, if attempts remain
raised ``CancelExecution(retry=False)``  failed at once, never retried
was cancelled (``JobCancelled``)         failed at once ("cancelled"), never retried
timed out (``JobTimeout``, Huey's alarm)  "timed out after N s", like a raise
met a held lock (``TaskLockedException``) like a raise (no traceback kept: execution)
raised, attempts spent                   failed, with the error and traceback
======================================== ======================================

``CancelExecution()`` and ``CancelExecution(retry=True)`` keep Huey's meaning:
retried while attempts remain. No exception retries a job past its attempts.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable
from dataclasses import dataclass

from huey.exceptions import CancelExecution, RetryTask, TaskTimeout

from framework import defaults
from framework.errors import JobCancelled
from framework.masking import DEFAULT_MASKER
from framework.options import Outcome
from framework.settings import Backoff, QueuePolicy

__all__ = ["ERROR_LIMIT", "Decision", "JobPolicy", "decide"]

ERROR_LIMIT = 4096
"""Characters of an error message kept on the job."""


@dataclass(frozen=True, slots=True)
class JobPolicy:
    """What one job follows: its own options laid over its queue's current policy."""

    attempts: int
    priority: int
    timeout: float | None
    backoff: Backoff

    @classmethod
    def of(
        cls,
        queue: QueuePolicy,
        *,
        priority: int | None = None,
        attempts: int | None = None,
        timeout: float | None = None,
    ) -> JobPolicy:
        """``queue``'s policy, with the options the job's producer set."""
        return cls(
            attempts=queue.attempts if attempts is None else attempts,
            priority=queue.priority if priority is None else priority,
            timeout=queue.timeout if timeout is None else timeout,
            backoff=queue.backoff,
        )

    def retry_delay(self, attempt: int) -> float:
        """Seconds before the run after failed attempt ``attempt`` (1-based)."""
        return float(self.backoff.delay_before_retry(attempt))


@dataclass(frozen=True, slots=True)
class Decision:
    """What a failed run leads to: retry after ``delay`` seconds, or fail."""

    outcome: Outcome
    error: str
    delay: float = 0.0


def decide(
    policy: JobPolicy,
    attempt: int,
    exc: BaseException,
    now: datetime.datetime,
    *,
    describe: Callable[[BaseException], str] = DEFAULT_MASKER.exception,
) -> Decision:
    """The next state of a job whose run number ``attempt`` raised ``exc``.

    ``describe`` turns the exception into the job's error (default: ``Type: message``
    with secrets masked, :meth:`framework.masking.Masker.exception`).
    """
    if isinstance(exc, JobCancelled):
        return Decision(Outcome.FAILED, defaults.CANCELLED)
    if isinstance(exc, TaskTimeout):
        error = f"timed out after {policy.timeout:g} s" if policy.timeout else "timed out"
    else:
        error = describe(exc)
    error = error[:ERROR_LIMIT]
    retry = attempt < policy.attempts
    delay = policy.retry_delay(attempt)
    if isinstance(exc, CancelExecution) and exc.retry is False:
        retry = False
    elif isinstance(exc, RetryTask):
        if exc.args in ((), (None,)):  # Huey's RetryTask() says "None"
            error = "RetryTask: the handler asked to be run again"
        asked, wrong = _asked_delay(exc, now)
        if wrong:  # the attempt fails like any raise, and says why the delay was not taken
            error = f"{error} ({wrong}; the queue's backoff applies)"[:ERROR_LIMIT]
        elif asked is not None:
            delay = asked
    if retry:
        return Decision(Outcome.RETRY, error, delay)
    return Decision(Outcome.FAILED, error)


def _asked_delay(exc: RetryTask, now: datetime.datetime) -> tuple[float | None, str]:
    """The seconds a ``RetryTask`` asks to wait (None: it names no time), or why they
    can not be taken: a delay is seconds or a timedelta, an eta a datetime (naive is
    local time, as in Huey), and either at most ``MAX_DELAY`` ahead."""
    days = f"{defaults.MAX_DELAY / 86400:.0f} days"
    if exc.delay is not None:
        delay: object = exc.delay
        if isinstance(delay, datetime.timedelta):
            seconds = delay.total_seconds()
        elif isinstance(delay, int | float) and not isinstance(delay, bool):
            seconds = float(delay) if abs(delay) < 1e300 else math.inf
        else:
            return None, f"RetryTask(delay={delay!r:.80}) is not seconds nor a timedelta"
        if not math.isfinite(seconds) or seconds > defaults.MAX_DELAY:
            return None, f"RetryTask(delay={delay!r:.80}) is not from 0 to {days} ahead"
        return max(seconds, 0.0), ""
    if exc.eta is not None:
        eta: object = exc.eta
        if not isinstance(eta, datetime.datetime):
            return None, f"RetryTask(eta={eta!r:.80}) is not a datetime"
        try:
            ahead = ((eta if eta.tzinfo else eta.astimezone()) - now).total_seconds()
        except (OverflowError, ValueError):
            ahead = math.inf
        if ahead > defaults.MAX_DELAY:
            return None, f"RetryTask(eta={eta.isoformat()}) is more than {days} ahead"
        return max(ahead, 0.0), ""
    return None, ""
