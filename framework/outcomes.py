"""Storing a job's outcome, through a Redis blip.

A job whose handler has finished must not run again because Redis was away
for a few seconds when its worker went to store the outcome: that would send
a WhatsApp message twice, and a second blip would turn the work that
succeeded into "failed: stalled". So the worker keeps the outcome and tries
again, for as long as the job's lease may still hold (the lease keeper keeps
renewing it, :meth:`framework.leases.LeaseKeeper.releasing`). Trying again is
safe: the release script acts only for the claim's token, once.

Only when the lease may have run out (another consumer may then recover the
job and run it again) does the worker give up, with one log line that says
so. A release that claimed the worker's next job in the same call and got no
answer leaves that job to :meth:`JobStorage.give_back_unsure`.
"""

from __future__ import annotations

import logging
import time

import redis

from framework.leases import LeaseKeeper
from framework.options import Outcome, Stored
from framework.record import Claim
from framework.storage import JobStorage

__all__ = ["FIRST_PAUSE", "LONGEST_PAUSE", "store_outcome"]

logger = logging.getLogger("hueyard.execution")

FIRST_PAUSE = 0.2
"""Seconds before the second try of a release that Redis did not answer."""

LONGEST_PAUSE = 2.0
"""The pause doubles up to this between later tries."""


def store_outcome(
    storage: JobStorage,
    claim: Claim,
    outcome: Outcome,
    *,
    value: str,
    traceback: str,
    delay: float,
    fetch: bool,
    follow_up: str = "",
) -> tuple[Stored, Claim | None]:
    """Release ``claim`` with its outcome; with ``fetch``, also claim the next job.

    Returns (what was stored, the next claim). ``Stored.DROPPED`` (false) means the
    job stopped being this worker's before (lease lost, timed out, removed).
    ``follow_up``: what a completed job enqueues next (:mod:`framework.chains`).
    """
    try:
        if fetch:
            return storage.release_and_claim(
                claim, outcome, value=value, traceback=traceback, delay=delay, follow_up=follow_up
            )
        released = storage.release(
            claim, outcome, value=value, traceback=traceback, delay=delay, follow_up=follow_up
        )
        return released, None
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        failure: Exception = exc
    keeper = LeaseKeeper.for_process()
    began, pause, tries = time.monotonic(), FIRST_PAUSE, 1
    while True:
        storage.outage.failed(failure)
        if time.monotonic() + pause >= keeper.lease_until(claim):
            logger.error(
                "job %s: its outcome (%s) could not be stored: Redis did not answer "
                "%.0f s after the first try failed (%d tries), until the job's lease may have "
                "run out; it will run again when Redis is back (delivery is at-least-once)",
                claim.id, outcome, time.monotonic() - began, tries,
            )  # fmt: skip
            return Stored.DROPPED, None
        time.sleep(pause)  # not cut short by a shutdown: a stopping worker stores its outcome
        pause, tries = min(pause * 2, LONGEST_PAUSE), tries + 1
        try:
            released = storage.release(
                claim, outcome, value=value, traceback=traceback, delay=delay, follow_up=follow_up
            )
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            failure = exc
            continue
        storage.outage.answered()
        if released:
            logger.warning(
                "job %s: its outcome (%s) is stored, on try %d, %.1f s after the first try "
                "failed",
                claim.id, outcome, tries, time.monotonic() - began,
            )  # fmt: skip
        else:
            # Within the lease nobody else can have taken the job: a try whose answer
            # was lost stored it (or Redis lost its data while it was away).
            logger.warning(
                "job %s: its outcome (%s) was stored by a try whose answer was lost, or "
                "Redis lost the job while it was away (restarted without its data)",
                claim.id, outcome,
            )  # fmt: skip
        return released or Stored.AS_ASKED, None
