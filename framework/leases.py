"""The jobs a process runs: their leases, their timeouts, their cancels. One thread.

A claimed job is ours for ``[consumer] lease`` seconds. :class:`LeaseKeeper`
renews the leases of every job this process runs every third of the lease,
so two renewals may fail before another consumer may recover the job. The
same renewal tells it which of them were cancelled.

It also stops jobs:

- **A job past its timeout** (its own ``timeout=`` or its queue's): in a
  thread worker, :class:`~framework.errors.JobTimeout` is raised in the
  handler's thread, which stops Python code at once; the attempt fails and
  is retried while attempts remain. In ``-k process`` workers Huey's alarm
  (``SIGALRM``) does it.
- **A cancelled job**: :class:`~framework.errors.JobCancelled` is raised in
  its handler's thread (thread and process workers alike); the job fails,
  "cancelled", and is not retried.

A handler blocked in C (a socket read, ``time.sleep``) takes the exception
only when the call returns. If its job has not ended ``[consumer]
abandon_after`` seconds after it was told to stop, the keeper releases the
job as failed (not retried: its thread may still act) and gives up on the
thread: the consumer (``on_abandon``) starts a worker in its place, so the
queue keeps its concurrency, and the old thread exits when its call returns.
Whatever it does then can no longer change the job: its lease token is gone.

The exception is raised only while the thread runs the handler
(:meth:`LeaseKeeper.running_handler`): never in hueyard's own code, and
never in a job other than the one that timed out or was cancelled.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from framework import defaults, forks
from framework.errors import JobCancelled, JobTimeout
from framework.options import Outcome
from framework.record import Claim
from framework.storage import JobStorage

__all__ = ["TICK", "HandlerRun", "KeeperSettings", "LeaseKeeper"]

logger = logging.getLogger("hueyard.execution")

TICK = 0.25
"""Seconds between two rounds of the keeper: timeouts, abandonments, due renewals."""

AbandonHook = Callable[[str, int], None]
"""Called with the queue and the thread id of a worker thread given up on."""


@dataclass(frozen=True)
class KeeperSettings:
    """What a process's keeper does with jobs that must stop (set by the consumer)."""

    interrupt_timeouts: bool = True
    """Raise :class:`JobTimeout` in thread workers (process workers: Huey's alarm does)."""
    abandon_after: float = defaults.ABANDON_AFTER
    on_abandon: AbandonHook | None = None


@dataclass
class _Running:
    """One job this process runs."""

    storage: JobStorage
    claim: Claim
    timeout: float | None
    thread: int  # threading.get_ident() of the worker running it
    lease_until: float  # time.monotonic() until which its lease surely holds
    in_handler: bool = False
    releasing: bool = False  # its handler is done; its outcome is being stored
    stop: type[BaseException] | None = None  # JobTimeout or JobCancelled, once told to stop
    stop_reason: str = ""
    stop_since: float = 0.0
    raised: bool = False  # ``stop`` was set into its thread, which may not have taken it yet


class LeaseKeeper:
    """One thread per process: renews leases, stops jobs past their timeout or cancelled.

    The consumer configures it (:class:`KeeperSettings`) before its workers start.
    """

    _instance: LeaseKeeper | None = None
    _instance_lock = threading.Lock()

    settings = KeeperSettings()

    def __init__(self) -> None:
        self.pid = forks.pid()
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
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

    @classmethod
    def configure(cls, settings: KeeperSettings) -> None:
        """What this process's keeper does with jobs that must stop (the consumer's call,
        before its workers start; a forked worker process inherits it)."""
        cls.settings = settings

    # -- the worker threads' side ----------------------------------------------------------

    def track(self, storage: JobStorage, claim: Claim, timeout: float | None) -> None:
        """Keep ``claim``'s lease from now on; the calling thread is the one that runs it."""
        lease_until = claim.claimed_at + storage.lease_ms / 1000
        with self._lock:
            self._running[claim.token] = _Running(
                storage, claim, timeout, threading.get_ident(), lease_until
            )

    def releasing(self, claim: Claim) -> None:
        """``claim``'s handler is done: keep its lease while its outcome is stored, but
        never stop or give up on it any more."""
        with self._lock:
            entry = self._running.get(claim.token)
            if entry is not None:
                entry.releasing = True

    def lease_until(self, claim: Claim) -> float:
        """``time.monotonic()`` until which ``claim``'s lease surely holds (as of its
        latest renewal that Redis answered)."""
        with self._lock:
            entry = self._running.get(claim.token)
        if entry is None:
            return claim.claimed_at
        return entry.lease_until

    def forget(self, claim: Claim) -> None:
        with self._lock:
            self._running.pop(claim.token, None)

    @classmethod
    def let_go(cls, storages: list[JobStorage]) -> list[Claim]:
        """Stop keeping the claims made through ``storages`` (their app is closing).

        Their leases are no longer renewed and their timeouts no longer watched, so
        another consumer recovers those jobs once their leases run out, as after a
        crash. A run still going on in a thread of this process may still store its
        outcome, as long as its lease holds. Returns the claims let go (none where
        this process has no keeper)."""
        keeper = cls._instance
        if keeper is None or keeper.pid != forks.pid():
            return []
        ours = {id(storage) for storage in storages}
        with keeper._lock:
            gone = [t for t, entry in keeper._running.items() if id(entry.storage) in ours]
            return [keeper._running.pop(token).claim for token in gone]

    def running_handler(self, claim: Claim) -> HandlerRun:
        """The block in which :class:`JobTimeout` or :class:`JobCancelled` may be raised."""
        with self._lock:
            entry = self._running.get(claim.token)
        return HandlerRun(self._lock, entry)

    def running(self) -> list[Claim]:
        with self._lock:
            return [entry.claim for entry in self._running.values()]

    # -- the keeper's thread ---------------------------------------------------------------

    def _run(self) -> None:
        renewed: dict[int, float] = {}  # id(storage) -> when its leases were last renewed
        while True:
            time.sleep(TICK)
            try:
                self._stop_overdue()
                self._abandon_stuck()
                self._renew_due(renewed)
            except Exception:
                logger.exception("lease keeper: a round failed; trying again")

    def _stop_overdue(self) -> None:
        now = time.monotonic()
        with self._lock:
            overdue = [
                entry
                for entry in self._running.values()
                if entry.stop is None
                and not entry.releasing
                and entry.timeout is not None
                and now - entry.claim.claimed_at > entry.timeout
            ]
        for entry in overdue:
            self._tell_to_stop(
                entry,
                JobTimeout,
                f"timed out after {entry.timeout:g} s",
                interrupt=self.settings.interrupt_timeouts,
            )

    def _tell_to_stop(
        self, entry: _Running, stop: type[BaseException], reason: str, *, interrupt: bool
    ) -> None:
        """Mark ``entry`` as to stop; raise ``stop`` in its thread if it runs its handler."""
        with self._lock:
            if (
                entry.stop is not None
                or entry.releasing
                or self._running.get(entry.claim.token) is not entry
            ):
                return
            entry.stop, entry.stop_reason, entry.stop_since = stop, reason, time.monotonic()
            if interrupt and entry.in_handler:
                _set_async_exc(entry.thread, stop)
                entry.raised = True
        logger.warning("job %s %s: stopping it", entry.claim.id, reason)

    def _abandon_stuck(self) -> None:
        now, settings = time.monotonic(), self.settings
        with self._lock:
            stuck = [
                entry
                for entry in self._running.values()
                if entry.stop is not None
                and not entry.releasing
                and now - entry.stop_since > settings.abandon_after
            ]
            for entry in stuck:
                del self._running[entry.claim.token]
        for entry in stuck:
            reason = entry.stop_reason
            if entry.stop is JobTimeout:
                reason += (
                    f"; it did not stop within {settings.abandon_after:g} s (blocked outside "
                    "Python), so it is not retried while its thread may still run"
                )
            released = entry.storage.release(entry.claim, Outcome.FAILED, value=reason)
            logger.error(
                "job %s on %s %s: its worker thread is abandoned%s",
                entry.claim.id,
                entry.storage.policy.name,
                entry.stop_reason,
                "" if released else " (the job was no longer ours)",
            )
            if settings.on_abandon is not None:
                settings.on_abandon(entry.storage.policy.name, entry.thread)

    def _renew_due(self, renewed: dict[int, float]) -> None:
        with self._lock:
            entries = list(self._running.values())
        by_storage: dict[int, tuple[JobStorage, list[_Running]]] = {}
        for entry in entries:
            by_storage.setdefault(id(entry.storage), (entry.storage, []))[1].append(entry)
        now = time.monotonic()
        for key, (storage, group) in by_storage.items():
            # Renew every third of the lease, counted from the oldest claim's start
            # or the last renewal, so two renewals may fail before a lease expires.
            since = renewed.get(key, min(entry.claim.claimed_at for entry in group))
            if now - since < storage.lease_ms / 3000:
                continue
            try:
                lost, cancelled = storage.renew([entry.claim for entry in group])
            except redis.RedisError as exc:
                storage.outage.failed(exc)  # tried again next round, not a third of a lease later
                continue
            renewed[key] = now
            with self._lock:
                for entry in group:
                    if entry.claim.id not in lost:
                        entry.lease_until = now + storage.lease_ms / 1000
            for entry in group:
                # A releasing job may have been released while the renewal ran.
                if entry.claim.id in lost and not entry.releasing:
                    logger.warning(
                        "job %s is no longer held by this consumer (lease lost)", entry.claim.id
                    )
            for entry in group:
                if entry.claim.id in cancelled:
                    self._tell_to_stop(entry, JobCancelled, defaults.CANCELLED, interrupt=True)


class HandlerRun:
    """One run of a handler, as a ``with`` block; then what stopped it, if anything.

    A job told to stop before its handler started stops on entry. On the way
    out, an exception the keeper raised too late to land is dropped: after the
    block the thread runs hueyard's code, and then the next job. A stop that
    was raised into the handler wins over whatever the handler did with it
    (:meth:`outcome_of`): a timed-out handler that caught ``JobTimeout`` and
    returned still failed "timed out", a cancelled one that turned
    ``JobCancelled`` into another error is still "cancelled", never retried.
    """

    def __init__(self, lock: threading.Lock, entry: _Running | None) -> None:
        self._lock = lock
        self._entry = entry
        self.stopped: BaseException | None = None

    def __enter__(self) -> HandlerRun:
        entry = self._entry
        if entry is None:
            return self
        with self._lock:
            entry.in_handler = True
            stop = entry.stop
        if stop is not None:
            self.__exit__(None, None, None)
            raise self.stopped or stop(entry.stop_reason)
        return self

    def __exit__(self, *exc_info: object) -> None:
        entry = self._entry
        if entry is None:
            return
        try:
            stop, reason = self._leave(entry)
        except (JobTimeout, JobCancelled):
            # The keeper's exception arrived on the way out (it is raised at any call);
            # it was the one pending, so leaving again takes nothing.
            stop, reason = self._leave(entry)
        if stop is not None:
            self.stopped = stop(reason)

    def _leave(self, entry: _Running) -> tuple[type[BaseException] | None, str]:
        """Mark the handler as left (the keeper raises nothing into this thread after),
        and take here the keeper's exception if the handler has not taken it.

        Never by dropping it with ``PyThreadState_SetAsyncExc(thread, NULL)``: CPython
        then leaves the interpreter's eval breaker set for good, which puts every thread
        of the process on the interpreter's slow path from the first job on, and which
        spins a thread forever at its next call under a tracer or a profiler
        (``sys.settrace``, ``sys.setprofile``: coverage, pdb, debuggers, cProfile).
        """
        with self._lock:
            entry.in_handler = False
            stop, reason, raised = entry.stop, entry.stop_reason, entry.raised
        if raised:
            _checkpoint()  # a Python call: a pending asynchronous exception is raised here
        return stop, reason

    def outcome_of(self, raised: BaseException | None) -> BaseException | None:
        """What ended the run: the stop if one was raised into it, else ``raised``."""
        if self.stopped is None or isinstance(raised, type(self.stopped)):
            return raised
        if raised is not None and self.stopped.__cause__ is None:
            self.stopped.__cause__ = raised  # the traceback shows what the handler raised
        return self.stopped


def _set_async_exc(thread: int, exc: type[BaseException]) -> None:
    """Raise ``exc`` in ``thread`` at its next call or loop (``PyThreadState_SetAsyncExc``)."""
    import ctypes  # loaded when a job is first stopped, not before the consumer's first claim

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread), ctypes.py_object(exc))


def _checkpoint() -> None:
    """Do nothing, in Python: entering it is where CPython raises a pending exception."""
