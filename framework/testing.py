"""Testing your own handlers, without a consumer and without a Redis server.

::

    import framework
    from framework.testing import drain, immediate
    from myapp.handlers import send_welcome

    def test_the_welcome_email_is_sent() -> None:
        with immediate():                         # the process's app, jobs kept in memory
            job_id = send_welcome.enqueue({"email": "ada@example.com"})
            assert framework.result(job_id) == {"sent": True}

    def test_a_delayed_reminder_runs_when_drained() -> None:
        with immediate():
            remind.enqueue({"user": 7}, delay=3600)   # waits: not due
            assert drain("reminders", delayed=True).completed == 1

:func:`immediate` is the test mode of :mod:`framework.immediate` for one block:
each enqueue runs its jobs through the enqueue, claim and release scripts and
the queue's Huey, before it returns. :func:`drain` (dramatiq's ``join``) runs
what a queue holds. With pytest, the fixture ``immediate_app`` does the same
for one test; hueyard registers it with pytest (:mod:`framework.pytest_plugin`).
This module does not import pytest.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from framework.application import Hueyard
from framework.immediate import MAX_RUNS, Drained
from framework.immediate import drain as drain_app
from framework.runtime import get_app

__all__ = ["Drained", "drain", "immediate"]


@contextlib.contextmanager
def immediate(app: Hueyard | None = None, *, memory: bool = True) -> Iterator[Hueyard]:
    """``app`` (default: the process's, ``framework.get_app()``) in test mode for the
    block, on a fresh, empty in-memory store (``memory=False``: the configured Redis);
    put back as it was afterwards (a memory store is then dropped, with its jobs).

    Its handlers enqueue through ``app`` for the block, whatever other app was built
    from their registry meanwhile (a test's own ``Hueyard(...)`` left open). Inside a
    block already in the same test mode (the ``immediate_app`` fixture), it changes
    nothing: the jobs of the outer block stay."""
    app = get_app() if app is None else app
    was, was_memory = app.immediate, app.immediate_use_memory
    if was and was_memory == memory:
        with app.registry.bound(app):
            yield app
        return
    app.immediate = False  # a store of its own: what an earlier test left is not seen
    app.immediate_use_memory = memory
    app.immediate = True
    try:
        with app.registry.bound(app):
            yield app
    finally:
        app.immediate = False
        app.immediate_use_memory = was_memory
        app.immediate = was


def drain(
    queue: str, *, app: Hueyard | None = None, delayed: bool = False, max_runs: int = MAX_RUNS
) -> Drained:
    """Run every waiting and due job of ``queue`` to its end, here, and say what ran
    and what is left (:class:`Drained`); ``delayed=True`` runs the jobs not due yet
    too. A retry runs at once. ``app``: default the process's."""
    return drain_app(get_app() if app is None else app, queue, delayed=delayed, max_runs=max_runs)
