"""Leases of the jobs a process runs, renewed by one thread; the thread-worker timeout watchdog.

A claimed job is ours for ``[consumer] lease`` seconds. :class:`LeaseKeeper`
renews the leases of every job this process runs every third of the lease,
so two renewals may fail before another consumer may recover the job. It
also fails a job that runs past its timeout in a thread worker ("timed out
after N s"); in ``-k process`` workers Huey's alarm usually stops it first.
"""

from __future__ import annotations

import logging
import threading
import time

from framework import forks
from framework.options import Outcome
from framework.record import Claim
from framework.storage import JobStorage

__all__ = ["TICK", "LeaseKeeper"]

logger = logging.getLogger("hueyard.execution")

TICK = 0.5
"""Seconds between two checks of the lease keeper (renewals and timeouts)."""

TIMEOUT_GRACE = 1.0
"""Seconds past its timeout before the watchdog fails a thread worker's job."""


class LeaseKeeper:
    """One thread per process: renews leases of running jobs, fails overdue ones."""

    _instance: LeaseKeeper | None = None
    _instance_lock = threading.Lock()

    def __init__(self) -> None:
        self.pid = forks.pid()
        self._running: dict[str, tuple[JobStorage, Claim, float | None]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hueyard-leases", daemon=True)
        self._thread.start()

    @classmethod
    def for_process(cls) -> LeaseKeeper:
        keeper = cls._instance
        if keeper is None or keeper.pid != forks.pid():  # none yet, or inherited by fork
            with cls._instance_lock:
                keeper = cls._instance
                if keeper is None or keeper.pid != forks.pid():
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
                if timeout is not None and now - claim.claimed_at > timeout + TIMEOUT_GRACE
            ]
        for storage, claim, timeout in overdue:
            self.forget(claim)
            error = f"timed out after {timeout:g} s"
            if storage.release(claim, Outcome.FAILED, value=error):
                logger.error("job %s %s; failed by the watchdog", claim.id, error)
