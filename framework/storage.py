"""The job-state storage under every queue's Huey instance.

Every job is a record (a Redis hash, :mod:`framework.record`) and its id sits
in exactly one per-queue sorted set: ``waiting``, ``active``, ``delayed``,
``completed`` or ``failed`` (``paused`` is ``waiting`` of a paused queue).
Each transition is one Lua script (:mod:`framework.scripts`), so it is atomic
and one round trip:

=========== ===================================================================
enqueue     records + waiting or delayed; a batch in one call
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
task locks, its key-value store); results live in the job records, and
Huey's result reads (``Result.get()``, ``huey.get(job_id)``) read them there.
Huey's listing and flushing calls are refused with the hueyard way to do it:
a job is a record, not a Huey message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from huey.constants import EmptyData
from huey.storage import BaseStorage
from huey.utils import Error
from redis.exceptions import NoScriptError

from framework import defaults, forks
from framework.clients import RedisClients, pipeline
from framework.connection import never_sent, sent_once, written_once
from framework.errors import (
    HueyardError,
    JobActionError,
    NotReplicatedError,
    RedisUnavailableError,
    StorageError,
)
from framework.idle import IdleWorkers
from framework.ids import new_job_id
from framework.keys import Keys
from framework.options import NO_OPTIONS, EnqueuedIds, EnqueueOptions, Outcome, Stored
from framework.outages import Outage
from framework.policy import JobPolicy
from framework.record import Claim, claim_from_reply
from framework.scripts import Scripts, storage_error
from framework.settings import ConsumerSettings, QueuePolicy

__all__ = ["BLOCKING_READ_TIMEOUT", "ENQUEUE_BATCH", "EnqueueFailed", "JobStorage", "Replicas"]

logger = logging.getLogger("hueyard.storage")

ENQUEUE_BATCH = 500
"""Jobs per enqueue script call in a bulk enqueue."""

BLOCKING_READ_TIMEOUT = 1.0
"""Seconds an idle worker blocks in Redis before it checks its stop flag."""

TEXT_LIMIT = 16_384
"""Characters of a traceback, a log line or a progress report kept on a job."""

_JOB_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
"""A job id (a UUID, as :meth:`JobStorage.add` makes them): a key Huey may read a result by."""


class EnqueueFailed(Exception):
    """An enqueue failed; ``stored`` are the ids of the batches stored before (in order)."""

    def __init__(self, stored: tuple[str, ...], total: int, cause: Exception) -> None:
        super().__init__(str(cause))
        self.stored = stored
        self.total = total
        self.cause = cause


@dataclass(frozen=True)
class Replicas:
    """``[redis] wait_replicas`` / ``wait_timeout``: replicas that must confirm an enqueue."""

    count: int = 0
    timeout: float = 1.0

    @property
    def timeout_ms(self) -> int:
        return max(int(self.timeout * 1000), 1)

    def refusal(self, handler: str, stored: tuple[str, ...], confirmed: int) -> str:
        return (
            f"enqueue of {handler}: {len(stored)} job(s) stored on the master (ids in the "
            f"error's .stored), but {confirmed} of {self.count} replica(s) confirmed them "
            f"within {self.timeout:g} s ([redis] wait_replicas): a failover now could lose "
            "them. Enqueue again with the same key= to be sure, or check the replicas"
        )


class JobStorage(BaseStorage):  # type: ignore[misc]
    """One queue's jobs in Redis. Built by Huey from ``Huey(storage_class=...)``."""

    blocking = True
    priority = True

    def __init__(
        self,
        name: str = "huey",
        *,
        clients: RedisClients,
        keys: Keys,
        policy: QueuePolicy,
        consumer: ConsumerSettings,
        read_timeout: float = BLOCKING_READ_TIMEOUT,
        replicas: Replicas | None = None,
        **unused: Any,
    ) -> None:
        super().__init__(name)
        self.use_clients(clients)
        self.q = keys.queue(policy.name)
        self.policy = policy
        self.lease_ms = int(consumer.lease * 1000)
        self.max_stalls = consumer.max_stalls
        self.metrics_ttl = consumer.metrics_ttl
        self.max_log_lines = consumer.max_log_lines
        self.read_timeout = read_timeout
        self.replicas = replicas or Replicas()
        self.consumer_id = ""
        self._plain_args: dict[str, dict[str, Any]] = {}
        self._idle = IdleWorkers()
        self.outage = Outage(f"queue {policy.name}", logger)
        self._unsure: list[tuple[str, float]] = []  # claim tokens whose reply was lost, when
        self._unsure_lock = threading.Lock()
        self.on_told: Callable[[str, list[bytes]], None] | None = None
        """Given the notices a release posted to this queue's outbox (a child's outcome,
        a follow-up), to deliver them at once; the app sets it (framework/fanin.py)."""

    def use_clients(self, clients: RedisClients) -> None:
        """Keep this queue's jobs on ``clients`` from now on (the app's test mode switches
        to an in-memory store and back: :mod:`framework.immediate`)."""
        self.clients = clients
        self.conn = clients.client()
        # enqueue and release run on each thread's own connection (the app shares them)
        self.scripts = Scripts(self.conn, clients.threads)

    # -- the hot path ----------------------------------------------------------------------

    def add(
        self,
        handler: str,
        payloads: Sequence[bytes | str],
        options: EnqueueOptions,
        keys: Sequence[str] | None = None,
        links: Mapping[str, str] | None = None,
    ) -> EnqueuedIds:
        """Store one job per payload (JSON) for ``handler``; return their ids.

        ``keys`` (one per payload, ``""`` for none) make the enqueue idempotent:
        a payload whose key is held by a job of this queue stores nothing, and
        its id is that job's (its position is in the result's ``existing``).
        ``links`` are record fields of the chains and fan-in (``parent``,
        ``follows``, ``then``; :mod:`framework.fanin`); with a ``parent``, the
        result's ``children`` are the jobs that are its children: the new ones
        and the holders that name the same parent.
        One round trip per :data:`ENQUEUE_BATCH` jobs; each batch is atomic and
        checks before it writes, so a batch that fails stored nothing. Raises
        :class:`EnqueueFailed` with the ids of the batches stored before it.
        """
        ids = [new_job_id() for _ in payloads]
        row_keys = keys if keys is not None else [""] * len(ids)
        existing: list[int] = []
        parent = (links or {}).get("parent", "").encode()
        children: dict[str, str] = {}
        args = self._enqueue_args(handler, options, links)
        for start in range(0, len(ids), ENQUEUE_BATCH):
            end = start + ENQUEUE_BATCH
            rows = zip(ids[start:end], payloads[start:end], row_keys[start:end], strict=True)
            try:
                reply, confirmed = self._enqueue_batch(args, rows)
            except (StorageError, redis.RedisError) as exc:
                raise EnqueueFailed(tuple(ids[:start]), len(ids), exc) from None
            held: dict[int, tuple[bytes, bytes]] = {}
            for row, holder, holder_parent, state in zip(
                reply[1::4], reply[2::4], reply[3::4], reply[4::4], strict=True
            ):
                position = start + int(row) - 1
                ids[position] = holder.decode()
                existing.append(position)
                held[position] = holder_parent, state
            if parent:
                for position in range(start, min(end, len(ids))):
                    holder_parent, state = held.get(position, (parent, b""))
                    if holder_parent == parent:
                        children.setdefault(ids[position], state.decode() or "pending")
            if confirmed < self.replicas.count:
                stored = tuple(ids[: min(end, len(ids))])
                raise NotReplicatedError(self.replicas.refusal(handler, stored, confirmed), stored)
        return EnqueuedIds(ids, existing, children.items())

    def _enqueue_batch(self, args: dict[str, Any], rows: Any) -> tuple[Any, int]:
        """Run the enqueue script; with ``wait_replicas``, then ``WAIT`` on the same
        connection (one round trip): its reply and how many replicas confirmed it."""
        if not self.replicas.count:
            return self.scripts.call("enqueue", self.q, args=args, rows=rows), 0
        # WAIT counts the writes of its own connection: on a Cluster, the queue's node's
        try:
            with self.clients.node_client(self.q.waiting).pipeline(transaction=False) as pipe:
                self.scripts.call("enqueue", self.q, args=args, rows=rows, client=pipe)
                pipe.execute_command("WAIT", self.replicas.count, self.replicas.timeout_ms)  # type: ignore[no-untyped-call]
                reply, confirmed = pipe.execute()
        except redis.ResponseError as exc:
            self.clients.lost_node()  # MOVED: the slot has a new master
            raise storage_error(exc, "script 'enqueue'") from None
        except (redis.ConnectionError, redis.TimeoutError):
            self.clients.lost_node()
            raise
        return reply, int(confirmed)

    def _enqueue_args(
        self, handler: str, options: EnqueueOptions, links: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """The enqueue script's arguments; made once per handler when
        the producer set no option and no link (the usual case)."""
        plain = options is NO_OPTIONS and not links
        if plain and handler in self._plain_args:
            return self._plain_args[handler]
        stored: dict[str, Any] = {**options.stored(), **(links or {})}
        args = {
            "job_prefix": self.q.job_prefix,
            "key_prefix": self.q.key_prefix,
            "handler": handler,
            "priority": JobPolicy.of(self.policy, priority=options.priority).priority,
            "delay_ms": options.delay_ms(),
            "options": json.dumps(stored) if stored else "",
        }
        if plain:
            self._plain_args[handler] = args
        return args

    def claim(self) -> Claim | None:
        """Take the next job, or wait up to ``read_timeout`` for one and return None.

        Idle workers of this queue in this process take turns
        (:class:`~framework.idle.IdleWorkers`): only the worker whose turn it
        is asks Redis; the others wait here for their turn.
        """
        with self._idle.turn(self.read_timeout) as mine:
            if not mine:
                return None
            if self._unsure:
                self.give_back_unsure()
            token = forks.new_token()
            with self._unsure_if_lost(token):
                reply = self._claim_call(token)
            self.outage.answered()
            claim, wait = self._taken(reply, token)
            if claim is not None:
                return claim
            if wait is not None:  # rate limited: the window has room again in `wait` seconds
                time.sleep(min(wait, self.read_timeout))
                return None
            # Empty or paused: block until an enqueue, a promotion or a resume pushes a
            # token. The claim rides in the same pipeline: Redis runs it the moment the
            # BLPOP returns, so a woken worker gets its job without another round trip.
            # The claim goes by its SHA alone (no SCRIPT EXISTS round trip first).
            token = forks.new_token()
            if self.clients.cluster is not None:
                return self._claim_woken(token)
            with (
                self._unsure_if_lost(token),
                self.conn.pipeline(transaction=False) as pipe,
                sent_once(),
            ):
                pipe.blpop([self.q.wake], timeout=self.read_timeout)
                self.scripts.queue("claim", pipe, self.q, args=self._take_args(token))
                woken, reply = pipe.execute(raise_on_error=False)
            if isinstance(woken, redis.ResponseError):
                raise storage_error(woken, "BLPOP", key=self.q.wake, wanted="list", conn=self.conn)
            if isinstance(reply, NoScriptError):  # Redis restarted, or its scripts flushed:
                self.scripts.load("claim")  # load it; the next claim takes the job at once
                return None
            if isinstance(reply, Exception):
                if isinstance(reply, redis.ResponseError):
                    raise storage_error(reply, "script 'claim'")
                raise reply
            return self._taken(reply, token)[0]

    def _claim_woken(self, token: str) -> Claim | None:
        """On a Cluster, whose pipelines take no scripts: block, then claim, on the
        cluster client (which follows the queue's slot to its node across failovers)."""
        try:
            woken = self.conn.blpop([self.q.wake], timeout=self.read_timeout)
        except redis.ResponseError as exc:
            raise storage_error(
                exc, "BLPOP", key=self.q.wake, wanted="list", conn=self.conn
            ) from None
        if woken is None:
            return None
        with self._unsure_if_lost(token):
            reply = self._claim_call(token)
        return self._taken(reply, token)[0]

    def claim_now(self) -> Claim | None:
        """Take the next job at once, without waiting for one: None when none may be
        taken now (nothing waiting, the queue paused, its rate limit spent)."""
        token = forks.new_token()
        with self._unsure_if_lost(token):
            reply = self._claim_call(token)
        return self._taken(reply, token)[0]

    @contextlib.contextmanager
    def _unsure_if_lost(self, token: str) -> Iterator[None]:
        """Remember ``token`` if the call that claims with it gets no reply: Redis may
        have run the claim, and the job would then wait for its lease to run out."""
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError):
            with self._unsure_lock:
                self._unsure.append((token, time.monotonic()))
                del self._unsure[: -defaults.UNSURE_CLAIMS]
            raise

    def give_back_unsure(self) -> int:
        """Put back the jobs claimed by calls whose reply was lost (see ``giveback.lua``).

        Tokens older than a lease are forgotten: ``recover`` has those jobs.
        Returns how many jobs went back; on a Redis error the tokens are kept.
        """
        with self._unsure_lock:
            fresh = time.monotonic() - self.lease_ms / 1000
            tokens = [token for token, at in self._unsure if at > fresh]
            self._unsure.clear()
        if not tokens:
            return 0
        args = {"job_prefix": self.q.job_prefix, "key_prefix": self.q.key_prefix,
                "stats_prefix": self.q.stats_prefix, "metrics_ttl": self.metrics_ttl,
                "default_priority": self.policy.priority, "keep_failed": self.policy.keep_failed,
                "limit": defaults.GIVEBACK_SCAN}  # fmt: skip
        try:
            back = int(
                self.scripts.call("giveback", self.q, args=args, rows=[(t,) for t in tokens])
            )
        except (redis.ConnectionError, redis.TimeoutError):
            with self._unsure_lock:
                self._unsure.extend((token, time.monotonic()) for token in tokens)
            raise
        if back:
            logger.warning(
                "queue %s: %d job(s) claimed while the connection broke went back to waiting",
                self.policy.name, back,
            )  # fmt: skip
        return back

    def _claim_call(self, token: str) -> Any:
        with sent_once():  # run twice, it would take two jobs under one token
            return self.scripts.call("claim", self.q, args=self._take_args(token))

    def _take_args(self, token: str) -> dict[str, Any]:
        rate = self.policy.rate_limit
        return {
            "job_prefix": self.q.job_prefix,
            "key_prefix": self.q.key_prefix,
            "lease_ms": self.lease_ms,
            "token": token,
            "consumer": self.consumer_id,
            "rate_max": rate.max if rate else 0,
            "rate_per_ms": int(rate.per * 1000) if rate else 0,
        }

    @staticmethod
    def _taken(reply: list[Any], token: str) -> tuple[Claim | None, float | None]:
        """Read a ``take()`` reply: (the claim, or None and seconds to wait if limited)."""
        kind = reply[0]
        if kind == b"job":
            return claim_from_reply(reply, token), None
        if kind == b"limited":
            return None, int(reply[1]) / 1000
        return None, None

    def release(
        self,
        claim: Claim,
        outcome: Outcome | str,
        *,
        value: str = "",
        traceback: str = "",
        delay: float = 0.0,
        follow_up: str = "",
    ) -> Stored:
        """Finish a claim; what was stored, false (``Stored.DROPPED``) when the job was
        no longer ours (recovered, timed out, removed): its outcome is then dropped.

        ``value`` is the result's JSON (completed) or the error (failed, retry);
        ``delay`` the seconds before a retry; ``follow_up`` the follow-up to enqueue
        when it completes (:func:`framework.chains.follow_up`).
        """
        return self._release(
            claim, Outcome(outcome), value, traceback, delay, follow_up=follow_up, fetch=False
        )[0]

    def release_and_claim(
        self,
        claim: Claim,
        outcome: Outcome | str,
        *,
        value: str = "",
        traceback: str = "",
        delay: float = 0.0,
        follow_up: str = "",
    ) -> tuple[Stored, Claim | None]:
        """:meth:`release`, and in the same round trip take the next waiting job."""
        return self._release(
            claim, Outcome(outcome), value, traceback, delay, follow_up=follow_up, fetch=True
        )

    def _release(
        self, claim: Claim, outcome: Outcome, value: str, traceback: str, delay: float,
        *, follow_up: str, fetch: bool,
    ) -> tuple[Stored, Claim | None]:  # fmt: skip
        next_token = forks.new_token() if fetch else ""
        take = self._take_args(next_token)

        # With the next claim in it, the call is sent once (run twice, it would take two
        # jobs under one token): a lost answer reaches store_outcome, which releases again
        # without a claim and tells a stored outcome apart, and the token is given back.
        def call() -> Any:
            return self.scripts.call(
                "release",
                self.q,
                keys={"job": self.q.job(claim.id)},
                args={
                    "job_prefix": self.q.job_prefix,
                    "key_prefix": self.q.key_prefix,
                    "stats_prefix": self.q.stats_prefix,
                    "metrics_ttl": self.metrics_ttl,
                    "default_priority": self.policy.priority,
                    "keep_completed": self.policy.keep_completed,
                    "keep_failed": self.policy.keep_failed,
                    "id": claim.id,
                    "token": claim.token,
                    "outcome": outcome.value,
                    "value": value,
                    "traceback": traceback[-TEXT_LIMIT:],
                    "delay_ms": int(delay * 1000),
                    "duration_ms": int((time.monotonic() - claim.claimed_at) * 1000),
                    "fetch": 1 if next_token else 0,
                    "next_token": next_token,
                    "consumer": self.consumer_id,
                    "lease_ms": self.lease_ms,
                    "rate_max": take["rate_max"],
                    "rate_per_ms": take["rate_per_ms"],
                    "follow_up": follow_up,
                },
            )

        if fetch:
            with self._unsure_if_lost(next_token), sent_once():
                reply = call()
        else:
            reply = call()
        stored = Stored(reply[0])
        if not stored:
            return stored, None
        if reply[1] and self.on_told is not None:
            self.on_told(self.policy.name, list(reply[1]))
        if len(reply) == 2:
            return stored, None
        return stored, self._taken(reply[2:], next_token)[0]

    # -- maintenance (any consumer may run these; each is one atomic script) --------------

    def promote_due(self, limit: int = defaults.BULK_BATCH) -> int:
        """Move the delayed jobs that are due to waiting; returns how many."""
        args = {"job_prefix": self.q.job_prefix, "key_prefix": self.q.key_prefix,
                "default_priority": self.policy.priority, "limit": limit}  # fmt: skip
        return int(self.scripts.call("promote", self.q, args=args))

    def renew(self, claims: Iterable[Claim]) -> tuple[list[str], list[str]]:
        """Extend the leases of ``claims``; return (the ids no longer held, the ids held
        whose cancel was requested)."""
        rows = [(claim.id, claim.token) for claim in claims]
        if not rows:
            return [], []
        args = {"job_prefix": self.q.job_prefix, "lease_ms": self.lease_ms}
        lost, cancelled = self.scripts.call("renew", self.q, args=args, rows=rows)
        return [item.decode() for item in lost], [item.decode() for item in cancelled]

    def recover(self, limit: int = defaults.BULK_BATCH) -> tuple[int, int]:
        """Expired leases back to waiting (or failed as stalled): (recovered, failed)."""
        recovered, failed = self.scripts.call(
            "recover",
            self.q,
            args={
                "job_prefix": self.q.job_prefix,
                "key_prefix": self.q.key_prefix,
                "stats_prefix": self.q.stats_prefix,
                "metrics_ttl": self.metrics_ttl,
                "default_priority": self.policy.priority,
                "keep_failed": self.policy.keep_failed,
                "max_stalls": self.max_stalls,
                "limit": limit,
            },
        )
        return int(recovered), int(failed)

    def report(self, claim: Claim, kind: str, value: str) -> bool:
        """Record progress (``kind="progress"``) or a log line of a running job.

        Written once (:class:`~framework.connection.written_once`): a log line whose
        answer was lost is not appended a second time."""
        with written_once():
            return bool(
                self.scripts.call(
                    "update",
                    keys={"job": self.q.job(claim.id), "logs": self.q.logs(claim.id)},
                    args={
                        "token": claim.token,
                        "kind": kind,
                        "value": value[:TEXT_LIMIT],
                        "max_lines": self.max_log_lines,
                    },
                )
            )

    # -- Huey's storage interface ----------------------------------------------------------

    def enqueue(self, data: bytes, priority: float | None = None) -> None:
        raise HueyardError(
            "hueyard jobs are records, not Huey messages: enqueue with handler.enqueue(...) "
            "or framework.enqueue(queue, handler, payload)"
        )

    def dequeue(self) -> bytes | None:
        raise HueyardError("hueyard workers claim jobs through JobStorage.claim()")

    def queue_size(self) -> int:
        return int(self.conn.zcard(self.q.waiting))

    def enqueued_items(self, limit: int | None = None) -> list[bytes]:
        raise HueyardError(_READ_API.format(state="waiting"))

    def flush_queue(self) -> None:
        raise HueyardError(_ACT_API)

    def add_to_schedule(self, data: bytes, ts: Any) -> None:
        raise HueyardError(
            "hueyard jobs are records, not Huey messages: schedule one with "
            "handler.enqueue(payload, delay=seconds) or eta=datetime"
        )

    def read_schedule(self, ts: Any) -> list[bytes]:
        self.promote_due()
        return []  # promoted inside Redis; nothing for Huey to re-enqueue

    def schedule_size(self) -> int:
        return int(self.conn.zcard(self.q.delayed))

    def scheduled_items(self, limit: int | None = None) -> list[bytes]:
        raise HueyardError(_READ_API.format(state="delayed"))

    def flush_schedule(self) -> None:
        raise HueyardError(_ACT_API)

    def _kv(self, key: str | bytes) -> str:
        text = key.decode() if isinstance(key, bytes) else key
        return self.q.kv_prefix + text

    def put_data(self, key: str, value: bytes, is_result: bool = False) -> None:
        """Huey's ``huey.put(key, value)``: in this queue's key space, and expiring after
        ``[consumer] metrics_ttl`` (Huey's never expire): every Redis structure of
        hueyard is bounded. Data that must live longer belongs in the cache
        (``framework.get_cache()``, with its own TTLs)."""
        self.conn.set(self._kv(key), value, ex=self.metrics_ttl)

    def peek_data(self, key: str) -> Any:
        """The value of ``key`` in the key-value store; for a job id of this queue with
        none, the finished job's result (Huey's result store is the job's record)."""
        return self._data(key, pop=False)

    def peek_many(self, keys: list[str]) -> dict[str, Any]:
        values = self.conn.mget([self._kv(key) for key in keys]) if keys else []
        return {key: value for key, value in zip(keys, values, strict=True) if value is not None}

    def pop_data(self, key: str) -> Any:
        """As :meth:`peek_data`, deleting a key-value entry; a job's result stays on its
        record (read as often as asked while the job is retained: Huey's ``preserve``
        is always true here)."""
        return self._data(key, pop=True)

    def _data(self, key: str | bytes, *, pop: bool) -> Any:
        kv = self._kv(key)
        job_id = kv[len(self.q.kv_prefix) :]
        if not _JOB_ID.match(job_id):
            value = self.conn.getdel(kv) if pop else self.conn.get(kv)
            return EmptyData if value is None else value
        with pipeline(self.conn, transaction=True) as pipe:
            if pop:
                pipe.getdel(kv)
            else:
                pipe.get(kv)
            pipe.zscore(self.q.completed, job_id)
            pipe.zscore(self.q.failed, job_id)
            pipe.hmget(self.q.job(job_id), "result", "error", "traceback", "attempts")
            value, completed, failed, (result, error, trace, attempts) = pipe.execute()
        if value is not None:
            return value
        if completed is not None and result is not None:
            return result  # JSON text, as Huey's serializer (execution.JSONSerializer) reads
        if failed is not None:
            # What Huey stores for a task that failed for good: Result.get() raises
            # TaskException(metadata), whose str is the error.
            return Error(
                {
                    "error": (error or b"").decode(errors="replace") or "failed",
                    "retries": 0,
                    "traceback": (trace or b"").decode(errors="replace"),
                    "task_id": job_id,
                    "attempts": int(attempts or 0),
                }
            )
        return EmptyData

    def delete_data(self, key: str) -> bool:
        return bool(self.conn.delete(self._kv(key)))

    def has_data_for_key(self, key: str) -> bool:
        """Whether ``key`` holds a value, or names a finished job of this queue."""
        return self._result_state(key) == "ready"

    def wait_result(
        self, key: str, timeout: float | None = None, backoff: float = 1.15, max_delay: float = 1.0
    ) -> bool:
        """What ``Result.get(blocking=True)`` waits on: True once ``key`` has a value or
        names a finished job, False after ``timeout`` s. A job id of which this queue
        holds no record raises :class:`JobActionError` at once, as ``huey.result`` does:
        its result would never come (the job is another queue's, never existed, or its
        retention removed it). A key that is no job id waits as in Huey, for a
        ``huey.put`` of it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.05
        while True:
            state = self._result_state(key)
            if state == "ready":
                return True
            if state == "gone":
                raise JobActionError(
                    f"no job {key!r} on queue {self.name!r} to wait for: it is another "
                    "queue's, never existed, or its retention (keep_completed / "
                    "keep_failed) removed it. framework.result(job_id) finds a job in "
                    "any queue"
                )
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(min(delay, max_delay))
            delay *= backoff

    def _result_state(self, key: str) -> str:
        """``ready`` (a value, or a finished job), ``pending`` (a job not finished, or a
        key without a value yet) or ``gone`` (a job id with no record on this queue)."""
        kv = self._kv(key)
        job_id = kv[len(self.q.kv_prefix) :]
        if not _JOB_ID.match(job_id):
            return "ready" if self.conn.exists(kv) else "pending"
        with pipeline(self.conn, transaction=True) as pipe:
            pipe.exists(kv)
            pipe.zscore(self.q.completed, job_id)
            pipe.zscore(self.q.failed, job_id)
            pipe.exists(self.q.job(job_id))
            value, completed, failed, record = pipe.execute()
        if value or completed is not None or failed is not None:
            return "ready"
        return "pending" if record else "gone"

    def put_if_empty(self, key: str, value: bytes, ttl: int | None = None) -> bool:
        """Huey's ``lock_task`` lock: its own ``ttl``, else ``[consumer] metrics_ttl`` at
        the latest, so a lock whose worker died does not hold its task forever."""
        return bool(self.conn.set(self._kv(key), value, nx=True, ex=ttl or self.metrics_ttl))

    def incr(self, key: str, amount: int = 1) -> int:
        """Huey's counters (a chord's finished members): ``amount`` added at most once per
        call. Written once (:class:`~framework.connection.written_once`): a call whose
        answer was lost raises :class:`RedisUnavailableError` saying it may have counted,
        and is never sent again, so the count never runs ahead of what happened."""
        kv = self._kv(key)
        try:
            with written_once(), self.conn.pipeline() as pipe:
                pipe.incrby(kv, amount)
                pipe.expire(kv, self.metrics_ttl)
                value, _ = pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if never_sent(exc):
                raise
            raise RedisUnavailableError(
                f"Redis did not answer INCRBY {kv!r} ({type(exc).__name__}: {exc}); it was "
                "sent once and not again, so it may or may not have counted"
            ) from exc
        return int(value)

    def delete_counter(self, key: str) -> None:
        self.conn.delete(self._kv(key))

    def result_store_size(self) -> int:
        """Huey's ``huey.result_count()``: the finished jobs this queue keeps (completed and
        failed), whose records hold a result or an error; two O(1) reads."""
        with pipeline(self.conn, transaction=True) as pipe:
            pipe.zcard(self.q.completed)
            pipe.zcard(self.q.failed)
            completed, failed = pipe.execute()
        return int(completed) + int(failed)

    def result_items(self) -> dict[str, bytes]:
        raise HueyardError(
            "huey.all_results() is not available: results are on the job records, which "
            "hueyard reads a page at a time: `hueyard jobs QUEUE --state completed`, "
            "framework.jobs.Jobs(app).list_jobs(queue, 'completed'); one job's result: "
            "framework.result(job_id)"
        )

    def flush_results(self) -> None:
        raise HueyardError(_ACT_API)

    def flush_all(self) -> None:
        raise HueyardError(_ACT_API)


_READ_API = (
    "hueyard jobs are records, not Huey messages: list the {state} jobs with "
    "framework.jobs.get_jobs().list_jobs(queue, '{state}') or `hueyard jobs QUEUE --state {state}`"
)
_ACT_API = (
    "hueyard does not flush a queue through Huey: delete finished jobs with "
    "`hueyard clean QUEUE --state completed|failed --older-than SECONDS`, or one job with "
    "framework.jobs.get_jobs().remove(queue, job_id)"
)
