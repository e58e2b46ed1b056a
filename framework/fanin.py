"""Fan-in and follow-ups across queues: a parent waits for the children it spawned, and
a completed job's follow-up is enqueued (BullMQ's flows, Celery's chords).

A parent and its children (``campaigns`` and ``messages``) may live on different
Redis Cluster servers, so no script touches both. Each step is one script on one
queue, and the hand-over between queues goes through the sending queue's outbox:

1. **spawn** (in the parent's handler, :meth:`framework.context.JobContext.spawn_many`):
   the children are enqueued on their queue with ``parent = "<queue>:<id>"`` on
   their records, then linked to the parent on its queue (the ``children``
   script: ``pending`` rows in the parent's children set).
2. **a child finishes** (``release``, or ``cancel``, ``recover``, ``remove``...):
   atomically with its completion or failure, the script posts the notice
   ``c|<parent>|<child id>|<outcome>`` to the child queue's outbox.
3. **delivery** (:meth:`Relay.deliver`): right after the release, the consumer
   applies the notice to the parent with the ``children`` script on the parent's
   queue, then takes it out of the outbox. Applying is idempotent: a child counts
   once, with its first outcome, so a notice delivered twice (the consumer died
   between the two steps) changes nothing. A child that finishes before its
   parent linked it counts all the same.
4. **the parent completes** in the same ``children`` script when its handler has
   returned (it waits in ``waiting-children``) and no child is pending; a parent
   whose children all finished before its handler returned completes in its own
   ``release``. A failed child does not fail its parent: the parent's record
   counts ``children_completed`` and ``children_failed``.
5. **follow-ups**: a job with follow-ups (:mod:`framework.chains`) posts
   ``t|<id>|<follow-up>`` to its queue's outbox when it completes; delivering it
   enqueues the follow-up on its queue with the job key ``then:<queue>:<id>``, so
   a notice delivered twice enqueues one job.

A notice its consumer did not deliver (it was killed between the steps, Redis
did not answer) stays in the outbox; every consumer's recovery pass delivers the
notices older than half a lease (:meth:`Relay.deliver_pending`). So nothing is
lost and nothing counts twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import redis

from framework import defaults
from framework.chains import follow_up
from framework.clock import server_ms
from framework.errors import HueyardError, SpawnError, StorageError
from framework.options import EnqueuedIds, EnqueueManyArgs, EnqueueOptions
from framework.scripts import storage_error
from framework.storage import EnqueueFailed
from framework.textgrid import one_line

if TYPE_CHECKING:
    from framework.producer import Producer
    from framework.record import Claim

__all__ = ["CHILD_STATES", "Relay", "child_ref", "follow_up_key"]

logger = logging.getLogger("hueyard.fanin")

CHILD_STATES = ("pending", "completed", "failed")
"""A child's state in its parent's children set."""

LINK_BATCH = 1000
"""Children linked per ``children`` script call."""


def child_ref(queue: str, job_id: str) -> str:
    """How a parent names a child, and a child its parent: ``<queue>:<id>``."""
    return f"{queue}:{job_id}"


def follow_up_key(queue: str, job_id: str) -> str:
    """The job key of the follow-up of job ``job_id`` of ``queue``."""
    return f"then:{queue}:{job_id}"


class Relay:
    """Links children to parents, delivers outbox notices, prepares follow-ups: the
    steps of fan-in and chains that span queues. One per app; every call is one
    script (or one command) on one queue's keys."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.storages = producer.storages

    # -- chains ----------------------------------------------------------------------------

    def follow_up(self, claim: Claim, result: Any) -> str:
        """The follow-up a completed job's result starts (:func:`framework.chains.follow_up`)."""
        assert claim.then is not None
        return follow_up(claim.then, result, self.producer.target)

    # -- fan-in ----------------------------------------------------------------------------

    def spawn(
        self, parent_queue: str, parent_id: str, *, queue: str, handler: str,
        payloads: Iterable[Any], options: Mapping[str, Any],
    ) -> EnqueuedIds:  # fmt: skip
        """Enqueue the children, then link them to the parent (two steps, two queues).

        A crash between the two leaves children that name the parent and are not
        linked: each counts when it finishes (its notice), and a run of the parent
        again links the ones its keys find.
        """
        ids = self.producer.enqueue_many(
            queue, handler, payloads, links={"parent": child_ref(parent_queue, parent_id)},
            **cast(EnqueueManyArgs, options),
        )  # fmt: skip
        rows = [(child_ref(queue, child), state) for child, state in ids.children]
        for start in range(0, len(rows), LINK_BATCH):
            status, count = self._children(
                parent_queue, parent_id, rows[start : start + LINK_BATCH]
            )
            if status == "full":
                raise SpawnError(
                    f"job {parent_id} of queue {parent_queue!r} waits for {count:,} children "
                    f"already; at most {defaults.MAX_CHILDREN:,} (MAX_CHILDREN). The children "
                    "enqueued now run, and count when they finish; spawn fewer, or let a "
                    "child spawn the rest"
                )
            if status in ("gone", "finished"):
                logger.warning(
                    "job %s of %s spawned children after it %s; they run, unlinked",
                    parent_id, parent_queue, "was removed" if status == "gone" else "finished",
                )  # fmt: skip
                break
        return ids

    def _children(
        self, queue: str, job_id: str, rows: Sequence[tuple[str, str]]
    ) -> tuple[str, int]:
        """Run the ``children`` script on job ``job_id`` of ``queue``; (status, added)."""
        storage = self.storages[queue]
        q = storage.q
        status, count, told = storage.scripts.call(
            "children",
            q,
            keys={"job": q.job(job_id)},
            args={
                "job_prefix": q.job_prefix,
                "key_prefix": q.key_prefix,
                "stats_prefix": q.stats_prefix,
                "metrics_ttl": storage.metrics_ttl,
                "keep_completed": storage.policy.keep_completed,
                "id": job_id,
                "max_children": defaults.MAX_CHILDREN,
            },
            rows=rows,
        )
        status = status.decode()
        if status == "completed":
            logger.info("job %s of %s completed: all its children finished", job_id, queue)
        if told:
            self.deliver(queue, list(told))
        return status, int(count)

    # -- delivering notices ------------------------------------------------------------------

    def deliver(self, queue: str, notices: Sequence[bytes | str]) -> int:
        """Apply notices of ``queue``'s outbox, then take them out of it; return how many.

        Children's outcomes go to their parents (one ``children`` call per parent),
        follow-ups are enqueued. A notice that names a queue this app does not
        declare, or that is not hueyard's, is dropped with a log line; one whose
        parent's keys Redis refuses (a key of the wrong type) stays, with a log
        line, and the others are delivered. Raises when Redis does not answer: the
        notices not yet taken out stay for the recovery pass.
        """
        storage = self.storages[queue]
        by_parent: dict[tuple[str, str], list[tuple[str, str]]] = {}
        raws: dict[tuple[str, str], list[bytes | str]] = {}
        done = 0
        for raw in notices:
            text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
            kind, _, rest = text.partition("|")
            if kind == "c":
                parent, child, outcome = [*rest.split("|"), "", ""][:3]
                parent_queue, _, parent_id = parent.partition(":")
                if parent_queue in self.storages and parent_id and outcome in CHILD_STATES[1:]:
                    key = (parent_queue, parent_id)
                    by_parent.setdefault(key, []).append((child_ref(queue, child), outcome))
                    raws.setdefault(key, []).append(raw)
                    continue
            elif kind == "t":
                job_id, _, ready = rest.partition("|")
                try:
                    done += self._fire(queue, job_id, ready)
                except StorageError as exc:  # its queue's keys only: the others go on
                    logger.error(
                        "outbox of %s: the follow-up of job %s stays undelivered: %s",
                        queue, job_id, exc,
                    )  # fmt: skip
                    continue
                storage.conn.zrem(storage.q.outbox, raw)
                continue
            logger.error(
                "outbox of %s: dropping a notice hueyard did not write: %r", queue, text[:200]
            )
            storage.conn.zrem(storage.q.outbox, raw)
        for (parent_queue, parent_id), rows in by_parent.items():
            try:
                self._children(parent_queue, parent_id, rows)
            except StorageError as exc:  # that parent's keys only: the others go on
                logger.error(
                    "outbox of %s: %d notice(s) for job %s of %s stay undelivered: %s",
                    queue, len(rows), parent_id, parent_queue, exc,
                )  # fmt: skip
                continue
            storage.conn.zrem(storage.q.outbox, *raws[(parent_queue, parent_id)])
            done += len(rows)
        return done

    def _fire(self, queue: str, job_id: str, ready: str) -> bool:
        """Enqueue the follow-up of job ``job_id`` of ``queue``; False (and a log line) if it
        can not be: a queue this app does not declare, a notice hueyard did not write."""
        try:
            data = json.loads(ready)
            storage = self.storages[data["queue"]]
            options = EnqueueOptions(
                **data["options"], key=follow_up_key(queue, job_id),
                key_ttl=defaults.FOLLOW_UP_KEY_TTL,
            )  # fmt: skip
            links = {"follows": child_ref(queue, job_id)}
            if data["then"]:
                links["then"] = json.dumps(data["then"], separators=(",", ":"))
            payload = data["payload"].encode()
            handler = data["handler"]
        except (ValueError, KeyError, TypeError, HueyardError) as exc:
            why = one_line(str(exc))
            logger.error("follow-up of job %s of %s can not be enqueued: %s", job_id, queue, why)
            return False
        try:
            ids = storage.add(handler, [payload], options, [options.key or ""], links)
        except EnqueueFailed as failed:  # what Redis said: a StorageError, or no answer
            raise failed.cause from None
        if not ids.existing:
            logger.info("job %s of %s: its follow-up %s is job %s", job_id, queue, handler, ids[0])
        runner = self.producer.runner
        if runner is not None:  # the test mode: it runs now, as any job enqueued there
            runner(data["queue"], ids, options)
        return True

    def deliver_quietly(self, queue: str, notices: Sequence[bytes | str]) -> None:
        """:meth:`deliver`, logging instead of raising: what is not delivered now stays in
        the outbox, and the recovery pass delivers it (a worker's release must not fail
        because another queue did not answer)."""
        try:
            self.deliver(queue, notices)
        except (redis.RedisError, HueyardError) as exc:
            logger.warning(
                "queue %s: %d outbox notice(s) not delivered now (%s: %s); the recovery "
                "pass delivers them",
                queue, len(notices), type(exc).__name__, exc,
            )  # fmt: skip
        except Exception:  # a bug must not fail the release that is stored already
            logger.exception(
                "queue %s: delivering %d outbox notice(s) failed; the recovery pass tries "
                "them again", queue, len(notices),
            )  # fmt: skip

    def deliver_now(self, queue: str) -> None:
        """Deliver what ``queue``'s outbox holds now (after a cancel or a remove, which
        are not a worker's release), logging what can not be: the recovery pass has it."""
        storage = self.storages[queue]
        try:
            notices = storage.conn.zrange(storage.q.outbox, 0, defaults.DELIVER_BATCH - 1)
        except redis.RedisError as exc:
            logger.warning("queue %s: its outbox can not be read now: %s", queue, exc)
            return
        if notices:
            self.deliver_quietly(queue, cast(list[bytes], notices))

    def deliver_pending(
        self, queue: str, *, older_than: float, limit: int = defaults.DELIVER_BATCH
    ) -> int:
        """Deliver the notices of ``queue``'s outbox posted more than ``older_than``
        seconds ago (their consumer should have delivered them: it died, or Redis did
        not answer it). What the recovery pass of every consumer runs."""
        storage = self.storages[queue]
        before = server_ms(storage.conn) - older_than * 1000  # the outbox's scores' clock
        try:
            notices = storage.conn.zrangebyscore(
                storage.q.outbox, "-inf", before, start=0, num=limit
            )
        except redis.ResponseError as exc:  # another type planted there: named, with the fix
            raise storage_error(
                exc, "ZRANGEBYSCORE", key=storage.q.outbox, wanted="zset", conn=storage.conn
            ) from None
        if not notices:
            return 0
        return self.deliver(queue, cast(list[bytes], notices))
