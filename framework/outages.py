"""Redis going away, as a consumer's logs tell it: a few lines, not one per worker.

When Redis stops answering, every worker of every queue meets the error.
:class:`Outage` turns that into one warning when it starts, one reminder
every :data:`REMIND_EVERY` seconds while it lasts, and one line when Redis
answers again, with how long it was away. The error itself is named (its
type and message), never a traceback: a connection refused is not a bug.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from redis.sentinel import MasterNotFoundError

from framework import defaults
from framework.connection import CREDENTIALS_FIX, refused_credentials
from framework.errors import StorageError

__all__ = ["REMIND_EVERY", "Outage", "pause_after"]

REMIND_EVERY = 30.0
"""Seconds between two "still no answer" lines of one outage."""


class Outage:
    """Whether Redis answers one part of a consumer (``what``: "queue messages")."""

    def __init__(
        self, what: str, logger: logging.Logger, *, recovered: str = "Redis works again"
    ) -> None:
        self.what = what
        self.logger = logger
        self.recovered = recovered
        self._lock = threading.Lock()
        self._since: float | None = None
        self._reminded = 0.0
        self._failures = 0

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException) -> None:
        """A call failed: Redis did not answer, answered too late, or with an error."""
        now = time.monotonic()
        with self._lock:
            self._failures += 1
            if self._since is None:
                self._since = self._reminded = now
                self.logger.warning(
                    "%s: %s (%s: %s); trying again",
                    self.what, _trouble(exc), type(exc).__name__, exc,
                )  # fmt: skip
            elif now - self._reminded >= REMIND_EVERY:
                self._reminded = now
                self.logger.warning(
                    "%s: still %s after %.0f s (%d failed calls; %s: %s)",
                    self.what, _trouble(exc), now - self._since, self._failures,
                    type(exc).__name__, exc,
                )  # fmt: skip

    def answered(self) -> None:
        """A call succeeded: ends the outage, if there was one."""
        if self._since is None:  # the usual case, without taking the lock
            return
        with self._lock:
            if self._since is None:
                return
            self.logger.warning(
                "%s: %s, %.1f s after the first failed call (%d failed calls)",
                self.what, self.recovered, time.monotonic() - self._since, self._failures,
            )  # fmt: skip
            self._since, self._failures = None, 0


def pause_after(exc: BaseException, usual: float) -> float:
    """Seconds a loop waits after ``exc`` before it calls Redis again: ``usual``, or the
    reconnection backoff's ceiling (:data:`~framework.defaults.RECONNECT_CAP`) when Redis
    refused the credentials, which only a config change fixes."""
    return max(usual, defaults.RECONNECT_CAP) if refused_credentials(exc) else usual


def _trouble(exc: BaseException) -> str:
    if isinstance(exc, MasterNotFoundError):
        return (
            "the sentinels name no master that is up (check [redis] master_name, "
            "REDIS_MASTER_NAME, and [redis] sentinels)"
        )
    if refused_credentials(exc):
        return (
            f"Redis refused the credentials ({CREDENTIALS_FIX}; calls are tried again every "
            f"{defaults.RECONNECT_CAP:g} s)"
        )
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return "Redis does not answer"
    if isinstance(exc, StorageError):  # says what is wrong and the fix
        return "Redis refuses the queue's calls"
    return "Redis answers with an error"
