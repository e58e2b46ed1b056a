"""A job's result, the way Huey's ``huey.result(id, blocking=True, timeout=...)`` gives a
task's: ``framework.result(job_id)``, and ``result()`` on each queue's Huey.

The job's record is the result store (hueyard keeps no separate one): a completed
job's ``result`` field is returned; a failed or cancelled job raises
:class:`~framework.errors.JobFailedError` with its error; an unfinished one gives
None, or with ``blocking=True`` is waited for, polling with Huey's backoff
(``backoff`` x the last wait, at most ``max_delay`` s), until ``timeout`` s pass:
then :class:`~framework.errors.ResultTimeoutError` (also Huey's ``ResultTimeout``).
A result is read as often as asked, while the job is retained (``keep_completed``):
Huey's ``preserve`` is always true here.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from framework.errors import JobActionError, JobFailedError, ResultTimeoutError

if TYPE_CHECKING:
    from framework.application import Hueyard

__all__ = ["result"]


def result(
    app: Hueyard,
    job_id: str,
    *,
    blocking: bool = False,
    timeout: float | None = None,
    backoff: float = 1.15,
    max_delay: float = 1.0,
) -> Any:
    """The result of job ``job_id`` (see the module's docstring)."""
    from framework.jobs import Jobs

    jobs = Jobs(app, masked=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.05
    while True:
        place = jobs.find(job_id)
        if place is None:
            raise JobActionError(
                f"no job {job_id!r} in any queue: it never existed, or its retention "
                "(keep_completed / keep_failed) removed it"
            )
        if place.state == "completed":
            return app.result(place.queue, job_id)
        if place.state == "failed":
            info = jobs.get(job_id, queue=place.queue)
            error = info.error if info is not None else None
            raise JobFailedError(
                f"job {job_id} on queue {place.queue} failed: {error or '(no error text)'}",
                job_id=job_id,
                error=error,
            )
        if not blocking:
            return None
        if deadline is None and app.immediate:  # nothing else will run it: no wait forever
            raise JobActionError(
                f"job {job_id} on queue {place.queue} is {place.state}, and in test mode "
                "nothing runs it while this waits: framework.testing.drain("
                f"{place.queue!r}) runs it (delayed=True for a delayed job; a paused queue "
                "must be resumed first)"
            )
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise ResultTimeoutError(
                f"job {job_id} on queue {place.queue} is still {place.state} after {timeout:g} s"
            )
        time.sleep(delay if left is None else min(delay, left))
        delay = min(delay * backoff, max_delay)
