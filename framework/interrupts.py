"""Ctrl-C told apart from a ``KeyboardInterrupt`` a handler raises itself.

A job run in the calling thread (the test mode, :meth:`QueueHuey.run_now`)
may end in a ``KeyboardInterrupt`` of either kind. Ctrl-C must stop the test
(the job goes back to waiting); a handler's own raise fails its attempt, as
in a consumer. Only the main thread receives a signal, and only when Python
handles SIGINT does it become a ``KeyboardInterrupt``: there,
:class:`CtrlCWatch` notes a SIGINT before it passes it on to the handler that
was in place. Anywhere else a ``KeyboardInterrupt`` was raised by code.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["CtrlCWatch"]


class CtrlCWatch:
    """``with CtrlCWatch() as watch:``; after a ``KeyboardInterrupt``, ``watch.seen``
    says whether a SIGINT arrived meanwhile."""

    __slots__ = ("_previous", "seen")

    def __init__(self) -> None:
        self.seen = False
        self._previous: Callable[[int, FrameType | None], Any] | None = None

    def __enter__(self) -> CtrlCWatch:
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if callable(previous):  # SIG_DFL ends the process, SIG_IGN drops the signal
                self._previous = previous
                signal.signal(signal.SIGINT, self._noted)
        return self

    def _noted(self, signum: int, frame: FrameType | None) -> Any:
        self.seen = True
        assert self._previous is not None
        return self._previous(signum, frame)

    def __exit__(self, *exc: object) -> None:
        previous, self._previous = self._previous, None
        # a handler that put its own SIGINT handler in place keeps it
        if previous is not None and signal.getsignal(signal.SIGINT) == self._noted:
            signal.signal(signal.SIGINT, previous)
