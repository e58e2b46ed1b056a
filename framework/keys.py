"""Every Redis key hueyard writes is spelled here, and only here.

The keys of one queue start with that queue's Redis Cluster hash tag
``{<prefix>:<queue>}``: on a Cluster each queue's keys sit on one slot (so
every script, which touches one queue, runs on one node), and the queues
spread over the shards. On a single Redis the tag changes nothing::

    {p:q}:job:<id>             hash: one job's record (framework/record.py)
    {p:q}:job:<id>:logs        list: its log lines (bounded)
    {p:q}:job:<id>:children    zset: a parent's children, "<queue>:<id>" -> state band + ms
                               (cut to CHILD_LINKS_KEPT when it finishes, deleted with it)
    {p:q}:waiting              zset: score = priority x 2^40 + enqueue sequence
    {p:q}:active               zset: score = lease deadline (ms)
    {p:q}:delayed              zset: score = due time (ms)
    {p:q}:completed            zset: score = finish time (ms), trimmed to keep_completed
    {p:q}:failed               zset: score = finish time (ms), trimmed to keep_failed
    {p:q}:waiting-children     zset: parents whose handler returned and whose children
                               have not all finished; score = since when (ms)
    {p:q}:outbox               zset: notices to deliver to other queues (a child's outcome
                               to its parent, a follow-up to enqueue); score = when (ms)
    {p:q}:paused               string: present while the queue is paused
    {p:q}:wake                 list: tokens that wake idle workers (at most 2 x WAKE_MAX)
    {p:q}:seq                  counter: enqueue order
    {p:q}:limiter              zset: claim times in the rate-limit window (expires)
    {p:q}:stats:<minute>       hash: completed / failed / retried counts (expires)
    {p:q}:stats:<minute>:ms    list: processing-time samples (bounded, expires)
    {p:q}:kv:<name>            Huey's locks and counters (task locks, chords)
    {p:q}:key:<key>            string: the id of the job enqueued with ``key=<key>``, while
                               it is unfinished (then deleted, or kept ``key_ttl`` s)

What belongs to no one queue has the app's own tag ``{p}``; nothing reads it
in the same script as a queue's keys::

    {p}:schedule:<name>        hash: a schedule's last tick, last job, paused (expires)
    {p}:consumers              zset: consumer id -> last heartbeat (ms), pruned by every
                               heartbeat and read; expires a day after the last heartbeat
    {p}:consumer:<id>          string: JSON about one consumer (expires)
    <p>:cache:<key>            the RedisClient cache (single-key, no tag needed)
    <p>:cache-lock:<key>       a cache loader's lock (expires)
    <p>:<name>                 a pub/sub channel (not a key: nothing is stored)

A job's id is unique in the app, but its keys are its queue's: reading a job
by id alone asks each queue (:meth:`framework.jobs.Jobs.find`). What one queue
must tell another (a child's outcome to its parent on another queue, a
follow-up to enqueue) goes through the sending queue's outbox, delivered by a
second script on the receiving queue (:mod:`framework.fanin`): no script
touches two queues.

The Lua scripts receive the keys they touch from here. Keys they derive from a
job id (``job_prefix .. id``, ``.. LOGS``, ``.. CHILDREN``) or from a minute (``stats_prefix ..
minute``, ``.. SAMPLES``) use the prefixes passed in and the suffixes below,
which :mod:`framework.scripts` writes into every script; no script spells one.

hueyard 0.1.0 tagged every key ``{p}`` (``{p}:job:<id>``,
``{p}:q:<queue>:waiting``): :class:`LegacyKeys` names them for ``hueyard
upgrade-keys`` (:mod:`framework.upgrade`), which renames them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CHILDREN",
    "JOB_STATES",
    "LOGS",
    "SAMPLES",
    "Keys",
    "LegacyKeys",
    "QueueKeys",
    "cache_lock_prefix",
]

JOB_STATES = ("waiting", "active", "delayed", "completed", "failed", "waiting-children")
"""The states that have a sorted set. ``paused`` is ``waiting`` of a paused queue;
``waiting-children`` holds the parents whose handler returned and whose children have
not all finished (BullMQ's name)."""

LOGS = ":logs"
"""Suffix of a job's log list: ``job key + LOGS``."""

CHILDREN = ":children"
"""Suffix of a parent's children set: ``job key + CHILDREN``."""

SAMPLES = ":ms"
"""Suffix of a minute's processing-time samples: ``stats key + SAMPLES``."""


@dataclass(frozen=True)
class QueueKeys:
    """The keys of one queue, and the prefixes of the keys derived from it."""

    waiting: str
    active: str
    delayed: str
    completed: str
    failed: str
    waiting_children: str
    paused: str
    wake: str
    seq: str
    limiter: str
    outbox: str
    job_prefix: str
    stats_prefix: str
    kv_prefix: str
    key_prefix: str

    def state(self, state: str) -> str:
        """The sorted set of ``state`` (one of :data:`JOB_STATES`)."""
        if state not in JOB_STATES:
            raise ValueError(f"unknown job state {state!r}; one of {', '.join(JOB_STATES)}")
        key: str = getattr(self, state.replace("-", "_"))
        return key

    def job(self, job_id: str) -> str:
        return self.job_prefix + job_id

    def logs(self, job_id: str) -> str:
        """A job's log lines."""
        return self.job_prefix + job_id + LOGS

    def children(self, job_id: str) -> str:
        """A parent's children set (framework/fanin.py)."""
        return self.job_prefix + job_id + CHILDREN

    def key(self, key: str) -> str:
        """The index of the job enqueued with ``key=key`` on this queue."""
        return self.key_prefix + key

    def stats(self, minute: int) -> str:
        return f"{self.stats_prefix}{minute}"

    def samples(self, minute: int) -> str:
        return f"{self.stats_prefix}{minute}{SAMPLES}"


def cache_lock_prefix(cache_prefix: str) -> str:
    """Where the cache's loader locks live, beside its ``cache_prefix`` (``p:cache:`` ->
    ``p:cache-lock:``): no cache key can be a lock's."""
    return f"{cache_prefix.rstrip(':')}-lock:"


def literal_pattern(text: str) -> str:
    """``text`` as a literal ``SCAN``/``KEYS`` pattern (its ``{``, ``*``, ``?``, ``[`` escaped).

    >>> print(literal_pattern("{p:q}:*"))
    \\{p:q\\}:\\*
    """
    return "".join("\\" + char if char in "*?[]\\{}" else char for char in text)


class Keys:
    """Key builder for one app (one ``[redis] prefix``)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.tag = "{" + prefix + "}"
        self.consumers = f"{self.tag}:consumers"

    def queue_tag(self, queue: str) -> str:
        """The hash tag every key of ``queue`` starts with: ``{<prefix>:<queue>}``."""
        return "{" + f"{self.prefix}:{queue}" + "}"

    def job(self, queue: str, job_id: str) -> str:
        return self.queue(queue).job(job_id)

    def job_logs(self, queue: str, job_id: str) -> str:
        return self.queue(queue).logs(job_id)

    def queue(self, queue: str) -> QueueKeys:
        base = self.queue_tag(queue) + ":"
        return QueueKeys(
            waiting=base + "waiting",
            active=base + "active",
            delayed=base + "delayed",
            completed=base + "completed",
            failed=base + "failed",
            waiting_children=base + "waiting-children",
            paused=base + "paused",
            wake=base + "wake",
            seq=base + "seq",
            limiter=base + "limiter",
            outbox=base + "outbox",
            job_prefix=base + "job:",
            stats_prefix=base + "stats:",
            kv_prefix=base + "kv:",
            key_prefix=base + "key:",
        )

    def schedule(self, name: str) -> str:
        """A schedule's state (framework/ticks.py)."""
        return f"{self.tag}:schedule:{name}"

    def consumer(self, consumer_id: str) -> str:
        return f"{self.tag}:consumer:{consumer_id}"

    def cache(self, key: str) -> str:
        """A cache entry of :class:`framework.redis_client.RedisClient`."""
        return f"{self.prefix}:cache:{key}"

    def channel(self, name: str) -> str:
        """A pub/sub channel of this app (``<p>:notifications``); PUBLISH stores nothing."""
        return f"{self.prefix}:{name}"

    @property
    def legacy(self) -> LegacyKeys:
        """The layout of hueyard 0.1.0, one ``{p}`` tag for all (for the upgrade)."""
        return LegacyKeys(self.tag)


@dataclass(frozen=True)
class LegacyKeys:
    """Where hueyard 0.1.0 kept a queue's keys: ``{p}:q:<queue>:...`` and
    ``{p}:job:<id>``. Only :mod:`framework.upgrade` reads these."""

    tag: str

    @property
    def job_prefix(self) -> str:
        return f"{self.tag}:job:"

    def queue_prefix(self, queue: str) -> str:
        """Every old key of ``queue`` but its jobs starts so (``{p}:q:<queue>:``)."""
        return f"{self.tag}:q:{queue}:"
