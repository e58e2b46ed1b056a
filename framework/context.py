"""The job a worker thread is running: ``framework.current_job()``.

::

    from framework import current_job

    @handler("imports")
    def import_contacts(payload: ContactImport) -> dict:
        job = current_job()          # id, queue, attempt, max_attempts
        job.progress({"done": 10, "of": 200})
        job.log("batch 1: 50 rows")
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from framework.record import Claim
from framework.serializer import dumps_text
from framework.storage import JobStorage

__all__ = ["JobContext", "current_job", "job_context"]


@dataclass
class JobContext:
    """What a handler can ask about the job it runs."""

    id: str
    queue: str
    attempt: int
    max_attempts: int
    _storage: JobStorage = field(repr=False)
    _claim: Claim = field(repr=False)

    def progress(self, value: int | float | dict[str, Any]) -> None:
        """Report progress (a number, e.g. percent, or a small JSON object)."""
        self._storage.report(self._claim, "progress", dumps_text(value))

    def log(self, line: str) -> None:
        """Append a line to the job's log (the newest ``max_log_lines`` are kept)."""
        self._storage.report(self._claim, "log", str(line))


_local = threading.local()


def current_job() -> JobContext | None:
    """The job the calling thread is running, or None outside a job."""
    job: JobContext | None = getattr(_local, "job", None)
    return job


@contextlib.contextmanager
def job_context(storage: JobStorage, claim: Claim, max_attempts: int) -> Iterator[JobContext]:
    """Make ``claim`` this thread's :func:`current_job` while the block runs (then the
    job before it again: in test mode a job enqueued by a job runs inside it)."""
    outer = current_job()
    _local.job = JobContext(
        id=claim.id,
        queue=storage.policy.name,
        attempt=claim.attempts,
        max_attempts=max_attempts,
        _storage=storage,
        _claim=claim,
    )
    try:
        yield _local.job
    finally:
        _local.job = outer
