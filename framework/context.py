"""The job a worker thread is running: ``framework.current_job()``.

::

    from framework import current_job

    @handler("imports")
    def import_contacts(payload: ContactImport) -> dict:
        job = current_job()          # id, queue, attempt, max_attempts
        job.progress({"done": 10, "of": 200})
        job.log("batch 1: 50 rows")

    @handler("campaigns")
    def run_campaign(payload: Campaign) -> dict:
        ids = current_job().spawn_many(send_message, messages, keys=keys)
        return {"enqueued": len(ids)}   # the campaign completes when every message finished

A job that spawns children (:meth:`JobContext.spawn_many`) completes when its
handler has returned *and* every child has finished; see :mod:`framework.fanin`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Unpack

from framework import defaults
from framework.errors import SpawnError
from framework.options import EnqueuedIds, EnqueueManyArgs
from framework.record import Claim
from framework.serializer import dumps_text
from framework.storage import JobStorage

if TYPE_CHECKING:
    from framework.fanin import Relay
    from framework.handlers import Handler

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
    _relay: Relay | None = field(default=None, repr=False)
    _spawned: int = field(default=0, repr=False)

    def progress(self, value: int | float | dict[str, Any]) -> None:
        """Report progress (a number, e.g. percent, or a small JSON object)."""
        self._storage.report(self._claim, "progress", dumps_text(value))

    def log(self, line: str) -> None:
        """Append a line to the job's log (the newest ``max_log_lines`` are kept)."""
        self._storage.report(self._claim, "log", str(line))

    def spawn(self, handler: Handler[Any], payload: Any, **options: Any) -> str:
        """Enqueue one child of this job: see :meth:`spawn_many`. Returns its id."""
        key = options.pop("key", None)
        keys = None if key is None else [key]
        return self.spawn_many(handler, [payload], keys=keys, **options)[0]

    def spawn_many(
        self, handler: Handler[Any], payloads: Iterable[Any], **options: Unpack[EnqueueManyArgs]
    ) -> EnqueuedIds:
        """Enqueue ``handler``'s jobs as children of this job, which then completes only
        when its handler has returned *and* every child has finished (completed or
        failed: a failed child does not fail it). Its record counts them:
        ``children``, ``children_completed``, ``children_failed``.

        Takes what ``handler.enqueue_many`` takes (``keys=`` makes a run of this job
        again find the children it spawned before: a held key's job is still its
        child). Returns their ids, in order. Raises :class:`SpawnError` past
        :data:`~framework.defaults.MAX_CHILDREN` children in one run.
        """
        if self._relay is None:
            raise SpawnError(
                f"job {self.id} of {self.queue!r} can not spawn: its queue was not built by a "
                "hueyard app (Hueyard(settings, registry))"
            )
        payloads = list(payloads)
        if self._spawned + len(payloads) > defaults.MAX_CHILDREN:
            raise SpawnError(
                f"job {self.id} of {self.queue!r} spawned {self._spawned:,} children and asks "
                f"for {len(payloads):,} more; at most {defaults.MAX_CHILDREN:,} (MAX_CHILDREN) "
                "per job: let children spawn the rest"
            )
        self._spawned += len(payloads)
        return self._relay.spawn(
            self.queue, self.id, queue=handler.queue, handler=handler.name, payloads=payloads,
            options=options,
        )  # fmt: skip


_local = threading.local()


def current_job() -> JobContext | None:
    """The job the calling thread is running, or None outside a job."""
    job: JobContext | None = getattr(_local, "job", None)
    return job


@contextlib.contextmanager
def job_context(
    storage: JobStorage, claim: Claim, max_attempts: int, relay: Relay | None = None
) -> Iterator[JobContext]:
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
        _relay=relay,
    )
    try:
        yield _local.job
    finally:
        _local.job = outer
