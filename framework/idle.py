"""Idle workers of one queue in one process: one asks Redis, the others wait here.

A queue at concurrency 128 has, when it is idle, 128 threads that want a job.
If each blocked in Redis on its own (``BLPOP``, one second at a time) the
process would hold 128 more connections and make 128 claims a second for
nothing. Instead idle workers take turns: the worker whose turn it is claims
and, when there is nothing, blocks in Redis; the others wait on a condition
in this process, which costs no connection and no round trip. When a turn
ends the next waiting worker takes one at once, so a burst of jobs reaches
every idle worker, one claim after another, and a worker that finds nothing
hands the turn on after one blocking read.

A busy worker does not take turns: its release claims its next job in the
same round trip (:meth:`framework.storage.JobStorage.release_and_claim`).
"""

from __future__ import annotations

import threading
from types import TracebackType

from framework import forks

__all__ = ["IdleWorkers"]


class IdleWorkers:
    """Turns between the idle workers of one queue in one process.

    >>> idle = IdleWorkers()
    >>> with idle.turn(timeout=0.1) as mine:
    ...     mine
    True
    """

    def __init__(self) -> None:
        self._pid = forks.pid()
        self._cond = threading.Condition()
        self._taken = False

    def turn(self, timeout: float) -> _Turn:
        """Wait up to ``timeout`` s for this thread's turn; use as ``with ... as mine``.

        ``mine`` is False when another worker kept the turn all along: the
        caller asks nothing of Redis and goes round (checks its stop flag).
        """
        if self._pid != forks.pid():  # forked: the parent's threads are not here
            self._pid, self._cond, self._taken = forks.pid(), threading.Condition(), False
        cond = self._cond
        with cond:
            if self._taken:
                cond.wait(timeout)
                if self._taken:
                    return _Turn(self, mine=False)
            self._taken = True
        return _Turn(self, mine=True)

    def _end(self) -> None:
        with self._cond:
            self._taken = False
            self._cond.notify()


class _Turn:
    def __init__(self, idle: IdleWorkers, *, mine: bool) -> None:
        self._idle = idle
        self.mine = mine

    def __enter__(self) -> bool:
        return self.mine

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.mine:
            self._idle._end()
