"""The job-state storage under every queue's Huey instance.

Every job is a record (a Redis hash) and sits in exactly one per-queue sorted
set: ``waiting``, ``active``, ``delayed``, ``completed`` or ``failed``
(``paused`` is ``waiting`` of a paused queue). Each transition is one Lua
script (``framework/lua/``), so it is atomic and one round trip:

=========== ===================================================================
enqueue     record + waiting or delayed; a batch in one call
claim       pause check, sliding-window rate limit, best job -> active + lease
release     active -> completed (result) | failed (error) | delayed (retry) |
            waiting (interrupted); retention and per-minute metrics
promote     due delayed -> waiting
renew       extend the leases of running jobs
recover     expired leases -> waiting (a stall), or failed past max_stalls
=========== ===================================================================

Idle workers block on a per-queue wake list (``BLPOP``) that enqueue and
promote push to, so they do not poll and wake within milliseconds.

Huey's own storage interface is implemented for the calls Huey makes (counts,
task locks); results live in the job records, and Huey's revocation is not
used (remove a job instead).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import redis
from huey.constants import EmptyData
from huey.storage import BaseStorage

from framework import defaults
from framework.connection import ThreadClients
from framework.keys import Keys
from framework.scripts import Scripts
from framework.settings import ConsumerSettings, QueuePolicy

__all__ = ["ENQUEUE_BATCH", "Claim", "JobStorage", "NewJob"]

logger = logging.getLogger("hueyard.storage")

ENQUEUE_BATCH = 500
"""Jobs per enqueue script call in a bulk enqueue."""

BLOCKING_READ_TIMEOUT = 1.0
"""Seconds an idle worker blocks in Redis before it checks its stop flag."""

_TEXT_LIMIT = 16_384


class NewJob(NamedTuple):
    """A job to add: its serialized Huey message and its options (a tuple: cheap to make)."""

    id: str
    name: str
    data: bytes
    priority: int
    delay_ms: int = 0
    max_attempts: int = defaults.ATTEMPTS
    keep_completed: int = -1  # -1: the queue's keep_completed
    keep_failed: int = -1


@dataclass(frozen=True)
class Claim:
    """A job this process holds: run it, then release it with ``token``."""

    id: str
    data: bytes
    attempts: int
    max_attempts: int
    token: str
    claimed_at: float  # time.monotonic()


class JobStorage(BaseStorage):  # type: ignore[misc]
    """One queue's jobs in Redis. Built by Huey from ``Huey(storage_class=...)``."""

    blocking = True
    priority = True

    def __init__(
        self,
        name: str = "huey",
        *,
        connection_pool: redis.ConnectionPool,
        keys: Keys,
        policy: QueuePolicy,
        consumer: ConsumerSettings,
        read_timeout: float = BLOCKING_READ_TIMEOUT,
        thread_clients: ThreadClients | None = None,
        **unused: Any,
    ) -> None:
        super().__init__(name)
        self.conn = redis.Redis(connection_pool=connection_pool)
        # enqueue and release run on each thread's own connection (the app shares them)
        self.scripts = Scripts(self.conn, thread_clients or ThreadClients(connection_pool))
        self.keys = keys
        self.q = keys.queue(policy.name)
        self.policy = policy
        self.lease_ms = int(consumer.lease * 1000)
        self.max_stalls = consumer.max_stalls
        self.metrics_ttl = consumer.metrics_ttl
        self.max_log_lines = consumer.max_log_lines
        self.read_timeout = read_timeout
        rate = policy.rate_limit
        self._rate = (rate.max, int(rate.per * 1000)) if rate else (0, 0)
        self.consumer_id = ""

    # -- the hot path ----------------------------------------------------------------------

    def add(self, jobs: Sequence[NewJob]) -> int:
        """Store new jobs, one round trip per :data:`ENQUEUE_BATCH`. Returns how many were added."""
        added = 0
        keys = [self.q.waiting, self.q.delayed, self.q.seq, self.q.wake]
        for start in range(0, len(jobs), ENQUEUE_BATCH):
            args: list[Any] = [self.keys.job_prefix]
            for job in jobs[start : start + ENQUEUE_BATCH]:
                args += (
                    job.id,
                    job.name,
                    job.data,
                    job.priority,
                    job.delay_ms,
                    job.max_attempts,
                    job.keep_completed,
                    job.keep_failed,
                )
            added += int(self.scripts.run("enqueue", keys, args))
        return added

    def claim(self) -> Claim | None:
        """Take the next job, or wait up to ``read_timeout`` for one and return None."""
        claim, wait = self._try_claim()
        if claim is not None:
            return claim
        if wait is not None:  # rate limited: the window has room again in `wait` seconds
            time.sleep(min(wait, self.read_timeout))
            return None
        # Empty or paused: block until an enqueue, a promotion or a resume pushes a
        # token. The claim rides in the same pipeline: Redis runs it the moment the
        # BLPOP returns, so a woken worker gets its job without another round trip.
        token = secrets.token_hex(8)
        with self.conn.pipeline(transaction=False) as pipe:
            pipe.blpop([self.q.wake], timeout=self.read_timeout)
            self._claim_call(token, client=pipe)
            _, reply = pipe.execute()
        return self._taken(reply, token)[0]

    def _try_claim(self) -> tuple[Claim | None, float | None]:
        token = secrets.token_hex(8)
        return self._taken(self._claim_call(token), token)

    def _claim_call(self, token: str, client: Any = None) -> Any:
        return self.scripts.claim(
            keys=[self.q.waiting, self.q.active, self.q.paused, self.q.limiter],
            args=[self.keys.job_prefix, self.lease_ms, token, self.consumer_id, *self._rate],
            client=client,
        )

    @staticmethod
    def _taken(reply: list[Any], token: str) -> tuple[Claim | None, float | None]:
        """Read a ``take()`` reply: (the claim, or None and seconds to wait if limited)."""
        kind = reply[0]
        if kind == b"job":
            claim = Claim(
                id=reply[1].decode(),
                data=reply[2],
                attempts=int(reply[3]),
                max_attempts=int(reply[4] or 1),
                token=token,
                claimed_at=time.monotonic(),
            )
            return claim, None
        if kind == b"limited":
            return None, int(reply[1]) / 1000
        return None, None

    def release(
        self,
        claim: Claim,
        outcome: str,
        *,
        value: str = "",
        traceback: str = "",
        delay: float = 0.0,
    ) -> bool:
        """Finish a claim: ``completed`` (value = result JSON), ``failed`` (value = error),
        ``retry`` (after ``delay`` seconds) or ``requeue`` (back to waiting, attempt not
        counted). False when the job was no longer ours (recovered, timed out, removed).
        """
        released, _ = self._release(claim, outcome, value, traceback, delay, fetch=False)
        return released

    def release_and_claim(
        self,
        claim: Claim,
        outcome: str,
        *,
        value: str = "",
        traceback: str = "",
        delay: float = 0.0,
    ) -> tuple[bool, Claim | None]:
        """:meth:`release`, and in the same round trip take the next waiting job."""
        return self._release(claim, outcome, value, traceback, delay, fetch=True)

    def _release(
        self, claim: Claim, outcome: str, value: str, traceback: str, delay: float, *, fetch: bool
    ) -> tuple[bool, Claim | None]:
        target = {
            "completed": self.q.completed,
            "failed": self.q.failed,
            "retry": self.q.delayed,
            "requeue": self.q.waiting,
        }[outcome]
        keep = self.policy.keep_failed if outcome == "failed" else self.policy.keep_completed
        duration_ms = int((time.monotonic() - claim.claimed_at) * 1000)
        token = secrets.token_hex(8) if fetch else ""
        reply = self.scripts.run(
            "release",
            [
                self.keys.job(claim.id), self.q.active, target, self.q.wake,
                self.q.waiting, self.q.paused, self.q.limiter,
            ],
            [
                claim.id, claim.token, outcome, value, traceback[-_TEXT_LIMIT:],
                int(delay * 1000), keep, self.keys.job_prefix, self.q.stats_prefix,
                self.metrics_ttl, duration_ms,
                1 if fetch else 0, token, self.consumer_id, *self._rate, self.lease_ms,
            ],
        )  # fmt: skip
        if not reply[0]:
            return False, None
        if len(reply) == 1:
            return True, None
        return True, self._taken(reply[1:], token)[0]

    # -- maintenance (any consumer may run these; each is one atomic script) --------------

    def promote_due(self, limit: int = defaults.BULK_BATCH) -> int:
        return int(
            self.scripts.promote(
                keys=[self.q.delayed, self.q.waiting, self.q.seq, self.q.wake],
                args=[self.keys.job_prefix, limit],
            )
        )

    def renew(self, claims: Iterable[Claim]) -> list[str]:
        """Extend the leases of ``claims``; return the ids no longer held."""
        args: list[Any] = [self.keys.job_prefix, self.lease_ms]
        for claim in claims:
            args += [claim.id, claim.token]
        if len(args) == 2:
            return []
        lost = self.scripts.renew(keys=[self.q.active], args=args)
        return [item.decode() for item in lost]

    def recover(self, limit: int = defaults.BULK_BATCH) -> tuple[int, int]:
        """Expired leases back to waiting (or failed as stalled): (recovered, failed)."""
        recovered, failed = self.scripts.recover(
            keys=[self.q.active, self.q.waiting, self.q.failed, self.q.wake],
            args=[
                self.keys.job_prefix,
                self.max_stalls,
                limit,
                self.policy.keep_failed,
                self.q.stats_prefix,
                self.metrics_ttl,
            ],
        )
        return int(recovered), int(failed)

    def report(self, claim: Claim, kind: str, value: str) -> bool:
        """Record progress (``kind="progress"``) or a log line of a running job."""
        return bool(
            self.scripts.update(
                keys=[self.keys.job(claim.id), self.keys.job_logs(claim.id)],
                args=[claim.token, kind, value[:_TEXT_LIMIT], self.max_log_lines],
            )
        )

    # -- Huey's storage interface ----------------------------------------------------------

    def enqueue(self, data: bytes, priority: float | None = None) -> None:
        raise NotImplementedError("hueyard stores jobs through JobStorage.add()")

    def dequeue(self) -> bytes | None:
        raise NotImplementedError("hueyard takes jobs through JobStorage.claim()")

    def queue_size(self) -> int:
        return int(self.conn.zcard(self.q.waiting))

    def enqueued_items(self, limit: int | None = None) -> list[bytes]:
        return self._data_of(self.conn.zrange(self.q.waiting, 0, (limit or 0) - 1))

    def flush_queue(self) -> None:
        self._delete_set(self.q.waiting)

    def add_to_schedule(self, data: bytes, ts: Any) -> None:
        raise NotImplementedError("hueyard schedules jobs through JobStorage.add(delay_ms=...)")

    def read_schedule(self, ts: Any) -> list[bytes]:
        self.promote_due()
        return []  # promoted inside Redis; nothing for Huey to re-enqueue

    def schedule_size(self) -> int:
        return int(self.conn.zcard(self.q.delayed))

    def scheduled_items(self, limit: int | None = None) -> list[bytes]:
        return self._data_of(self.conn.zrange(self.q.delayed, 0, (limit or 0) - 1))

    def flush_schedule(self) -> None:
        self._delete_set(self.q.delayed)

    def _kv(self, key: str | bytes) -> str:
        text = key.decode() if isinstance(key, bytes) else key
        return self.q.kv_prefix + text

    def put_data(self, key: str, value: bytes, is_result: bool = False) -> None:
        self.conn.set(self._kv(key), value, ex=self.metrics_ttl)

    def peek_data(self, key: str) -> Any:
        value = self.conn.get(self._kv(key))
        return EmptyData if value is None else value

    def peek_many(self, keys: list[str]) -> dict[str, Any]:
        values = self.conn.mget([self._kv(key) for key in keys]) if keys else []
        return {key: value for key, value in zip(keys, values, strict=True) if value is not None}

    def pop_data(self, key: str) -> Any:
        value = self.conn.getdel(self._kv(key))
        return EmptyData if value is None else value

    def delete_data(self, key: str) -> bool:
        return bool(self.conn.delete(self._kv(key)))

    def has_data_for_key(self, key: str) -> bool:
        return bool(self.conn.exists(self._kv(key)))

    def put_if_empty(self, key: str, value: bytes, ttl: int | None = None) -> bool:
        return bool(self.conn.set(self._kv(key), value, nx=True, ex=ttl))

    def incr(self, key: str, amount: int = 1) -> int:
        with self.conn.pipeline() as pipe:
            pipe.incrby(self._kv(key), amount)
            pipe.expire(self._kv(key), self.metrics_ttl)
            value, _ = pipe.execute()
        return int(value)

    def delete_counter(self, key: str) -> None:
        self.conn.delete(self._kv(key))

    def result_store_size(self) -> int:
        return 0  # results live in the job records

    def result_items(self) -> dict[str, bytes]:
        return {}

    def flush_results(self) -> None:
        return None

    def flush_all(self) -> None:
        for state in ("waiting", "active", "delayed", "completed", "failed"):
            self._delete_set(self.q.state(state))
        self.conn.delete(self.q.paused, self.q.wake, self.q.seq, self.q.limiter)

    # -- helpers ---------------------------------------------------------------------------

    def _data_of(self, ids: Any) -> list[bytes]:
        if not ids:
            return []
        with self.conn.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hget(self.keys.job(job_id.decode()), "data")
            return [data for data in pipe.execute() if data is not None]

    def _delete_set(self, key: str) -> None:
        while True:
            ids: Any = self.conn.zrange(key, 0, defaults.BULK_BATCH - 1)
            if not ids:
                return
            with self.conn.pipeline() as pipe:
                for job_id in ids:
                    job = self.keys.job(job_id.decode())
                    pipe.delete(job, job + ":logs")
                pipe.zrem(key, *ids)
                pipe.execute()
