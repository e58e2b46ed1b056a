"""The keys of a queue taken out of the config, found and deleted on request.

Removing ``[queues.<name>]`` is a config edit; its keys stay in Redis (records,
sets, idempotency keys), since nothing that serves the declared queues reads
them: a queue put back finds its jobs again. :func:`undeclared_queues` finds
such queues by their keys (``hueyard doctor`` shows them, ``undeclared-queue``)
and :func:`forget_queue` deletes every key of one (``hueyard forget-queue``).

A job of a forgotten queue whose parent (:mod:`framework.fanin`) waits in a
declared queue is named: that parent waits for a child that will never finish,
so ``forget_queue`` returns those parents for the operator to cancel or remove.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis

from framework.errors import QueueError
from framework.keys import Keys, literal_pattern
from framework.settings import QUEUE_NAME

__all__ = ["Forgotten", "check_forgettable", "forget_queue", "undeclared_queues"]

_BATCH = 500
"""Keys deleted per round trip."""


def _scan(conn: Any, match: str) -> Iterable[str]:
    for raw in conn.scan_iter(match=match, count=1000):
        yield raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


def undeclared_queues(conn: Any, keys: Keys, declared: Iterable[str]) -> dict[str, int]:
    """Queues with keys in Redis that ``declared`` does not name: how many keys each."""
    known = set(declared)
    opening = "{" + keys.prefix + ":"
    found: Counter[str] = Counter()
    for name in _scan(conn, literal_pattern(opening) + "*}:*"):
        queue, closed, _ = name[len(opening) :].partition("}:")
        if closed and queue and queue not in known:
            found[queue] += 1
    return dict(sorted(found.items()))


@dataclass
class Forgotten:
    """What :func:`forget_queue` deleted, and the parents left waiting."""

    keys: int = 0
    jobs: int = 0
    parents: list[str] = field(default_factory=list)
    """``<queue>:<id>`` of each parent in another queue that waited for a deleted job
    (one that had not finished: a finished child told its parent already)."""


def check_forgettable(queue: str, declared: Iterable[str]) -> None:
    """Raise :class:`QueueError` unless ``queue`` is a queue name the config does not declare."""
    if not QUEUE_NAME.fullmatch(queue):
        raise QueueError(
            f"{queue!r} is not a queue name (a lowercase letter, then letters, digits, _)"
        )
    if queue in set(declared):
        raise QueueError(
            f"queue {queue!r} is declared in the config; take [queues.{queue}] out first "
            "(hueyard clean deletes the finished jobs of a declared queue)"
        )


def forget_queue(conn: Any, keys: Keys, queue: str, declared: Iterable[str]) -> Forgotten:
    """Delete every key of ``queue``, which the config must not declare."""
    check_forgettable(queue, declared)
    q = keys.queue(queue)
    done = Forgotten()
    batch: list[str] = []
    for name in _scan(conn, literal_pattern(keys.queue_tag(queue) + ":") + "*"):
        if name.startswith(q.job_prefix) and name.count(":", len(q.job_prefix)) == 0:
            done.jobs += 1
            try:
                parent, finished = conn.hmget(name, ["parent", "finished"])
            except redis.ResponseError:  # not a record hueyard wrote: deleted all the same
                parent = finished = None
            if parent and not finished:  # a finished child told its parent already
                text = parent.decode(errors="replace") if isinstance(parent, bytes) else parent
                if not text.startswith(f"{queue}:"):
                    done.parents.append(text)
        batch.append(name)
        if len(batch) >= _BATCH:
            done.keys += int(conn.unlink(*batch))
            batch.clear()
    if batch:
        done.keys += int(conn.unlink(*batch))
    return done
