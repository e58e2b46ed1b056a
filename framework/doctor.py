"""Why does a queue not move? What ``hueyard doctor`` finds, without Flask.

::

    findings = diagnose(app)                  # the server and every queue
    findings = diagnose(app, ["imports"])     # the server and these queues
    exit_status(findings)                     # 0, 1 (an error found) or 2 (Redis unreachable)

Each :class:`Finding` has a severity, the queue it is about (None: the
Redis server), what is wrong, the evidence read from Redis and the fix.
They come worst first; when none is a warning or an error, the last one is
``everything looks fine`` (severity ``ok``).

What is looked at, in the order of ``docs/operations.md``:

- the server: unreachable (nothing else is looked at), a read-only replica,
  memory near ``maxmemory`` (:data:`~framework.defaults.DOCTOR_MEMORY_SHARE`),
  an eviction policy other than ``noeviction``, Lua scripts refused (EVAL /
  EVALSHA renamed: one read-only script is run), reads refused (a full Redis
  with ``noeviction`` refuses transactions: the queues are not checked then);
- each queue: paused, rate-limited until a time, waiting jobs without a
  handler or without a live consumer, every worker busy (and the
  longest-running job), delayed jobs due later (or due with no consumer to
  promote them), a failure rate over the last ``[health]
  failure_window_minutes`` above ``max_failure_rate``
  (:data:`~framework.defaults.DOCTOR_FAILURE_RATE` when unset);
- queues taken out of the config whose keys are still in Redis (a whole
  diagnosis only: one ``SCAN`` of the keyspace).

Everything is read through :class:`framework.jobs.Jobs` (masked) and one
``INFO``; no job or queue is changed (reading the consumers prunes stale
heartbeats, as every reader of them does), and no text holds a Redis password.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import redis

from framework import defaults
from framework.application import Hueyard
from framework.connection import ConnectionSpec, refused_credentials
from framework.consumer import HEARTBEAT_TTL
from framework.errors import (
    JobActionError,
    ReadOnlyReplicaError,
    RedisUnavailableError,
    StorageError,
    WrongKeyError,
)
from framework.jobs import Jobs
from framework.leftovers import undeclared_queues
from framework.metrics import ConsumerInfo
from framework.pulse import QueuePulse
from framework.records import QueueCounts
from framework.redis_info import NO_EVICTION, RedisInfo
from framework.textgrid import duration, size, utc
from framework.upgrade import legacy_queues

__all__ = ["Check", "Finding", "Severity", "diagnose", "exit_status"]


class Severity(StrEnum):
    """How bad a finding is; ``error``: the queue can not move until it is fixed."""

    OK = "ok"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


class Check(StrEnum):
    """What a finding is about: a stable name for scripts that read ``--json``."""

    REDIS_UNREACHABLE = "redis-unreachable"
    REDIS_INFO = "redis-info"
    REDIS_REPLICA = "redis-replica"
    REDIS_MEMORY = "redis-memory"
    REDIS_EVICTION = "redis-eviction"
    REDIS_REFUSED = "redis-refused"
    REDIS_SCRIPTS = "redis-scripts"
    WRONG_KEY = "wrong-key"
    PAUSED = "paused"
    RATE_LIMITED = "rate-limited"
    NO_HANDLER = "no-handler"
    NO_CONSUMER = "no-consumer"
    NO_LIVE_WORKER = "no-live-worker"
    WORKERS_BUSY = "workers-busy"
    DELAYED = "delayed"
    DUE_NOT_PROMOTED = "due-not-promoted"
    WAITING_CHILDREN = "waiting-children"
    FAILING = "failing"
    UNDECLARED_QUEUE = "undeclared-queue"
    LEGACY_KEYS = "legacy-keys"
    FINE = "fine"


@dataclass(frozen=True)
class Finding:
    """One thing ``hueyard doctor`` found."""

    check: Check
    severity: Severity
    queue: str | None  # None: about the Redis server
    what: str
    evidence: str
    fix: str

    def to_json(self) -> dict[str, str | None]:
        return {
            "check": self.check.value,
            "severity": self.severity.value,
            "queue": self.queue,
            "what": self.what,
            "evidence": self.evidence,
            "fix": self.fix,
        }


def exit_status(findings: Sequence[Finding]) -> int:
    """2 when Redis was unreachable (nothing could be looked at), 1 for any error, else 0."""
    if any(f.check is Check.REDIS_UNREACHABLE for f in findings):
        return 2
    return 1 if any(f.severity is Severity.ERROR for f in findings) else 0


def diagnose(app: Hueyard, queues: Sequence[str] | None = None) -> list[Finding]:
    """The findings about the Redis server and ``queues`` (default: every queue), worst first.

    Raises :class:`~framework.errors.QueueError` for a queue the config does not
    declare; a Redis that does not answer is a finding, not an exception.
    """
    wanted = dict.fromkeys(queues) if queues else app.queues
    names = [app.queue(name).name for name in wanted]
    spec = app.settings.redis.connection
    url = spec.redacted_url
    probe = app.cache.health()
    if not probe["connected"]:
        return [_unreachable(url, f"PING failed: {probe['error']}", spec)]
    info_reply = app.cache.server_info()
    info = RedisInfo.parse(info_reply or {})
    findings = _server(url, info, readable=info_reply is not None)
    jobs = Jobs(app, masked=True)
    try:
        refusal = jobs.refused_scripts()
        if refusal is not None:
            findings.append(_scripts(url, refusal))
        try:
            live, unseen = jobs.live_consumers()
            consumers: list[ConsumerInfo] | None = None if unseen else live
            if unseen is not None:
                findings.append(_consumers_key(unseen))
        except ReadOnlyReplicaError as exc:  # INFO did not say so (an ACL may forbid it)
            consumers = None
            if not info.is_replica:
                findings.append(_replica(url, f"a write was refused: {exc}", "the primary"))
        counts = jobs.counts_all()
        for name in names:
            findings += _QueueDoctor(app, jobs, name, counts[name], consumers).findings()
        findings += _legacy(app, names)
        if not queues:
            findings += _undeclared(app)
    except RedisUnavailableError as exc:
        return [_unreachable(url, str(exc), spec)]
    except StorageError as exc:  # it answers, but refuses: out of memory, a planted key
        findings.append(_refused(exc))
    findings.sort(key=lambda f: -f.severity.rank)
    if not any(f.severity.rank >= Severity.WARNING.rank for f in findings):
        findings.append(_fine(url, info, names, consumers))
    return findings


def _legacy(app: Hueyard, names: list[str]) -> list[Finding]:
    """Queues with keys of hueyard 0.1.0: written after ``hueyard upgrade-keys`` by a
    0.1.0 process still running (a producer, a dashboard), their jobs wait where no
    consumer looks, and the next consumer start refuses to run."""
    try:
        found = legacy_queues(app.clients.client(), app.keys, names)
    except redis.RedisError:
        return []
    return [
        Finding(
            Check.LEGACY_KEYS,
            Severity.ERROR,
            name,
            f"queue {name} has keys of hueyard 0.1.0: their jobs wait where no consumer "
            "looks, and a consumer (re)started now refuses to run",
            f"keys under {app.keys.legacy.queue_prefix(name)}",
            "A process of hueyard 0.1.0 still writes them (a web process enqueuing, a "
            "dashboard or CLI pausing a queue): upgrade or stop it first. Then stop every "
            "consumer, run hueyard upgrade-keys, and start them again (docs/storage.md, "
            "Upgrading from 0.1.0)",
        )
        for name in found
    ]


def _undeclared(app: Hueyard) -> list[Finding]:
    """Queues taken out of the config whose keys are still in Redis (none when the scan
    fails: the findings above say what is wrong with Redis)."""
    try:
        found = undeclared_queues(app.clients.client(), app.keys, app.queues)
    except redis.RedisError:
        return []
    return [
        Finding(
            Check.UNDECLARED_QUEUE,
            Severity.WARNING,
            name,
            f"queue {name} is not in the config, but Redis still holds its keys",
            f"{_many(count, 'key')} under {app.keys.queue_tag(name)} (jobs, sets, "
            "idempotency keys): nothing serves or expires them",
            f"declare [queues.{name}] again to run or inspect its jobs, or delete its keys "
            f"with hueyard forget-queue {name}",
        )
        for name, count in found.items()
    ]


# -- the Redis server ------------------------------------------------------------------------


def _unreachable(url: str, error: str, spec: ConnectionSpec) -> Finding:
    if refused_credentials(error):
        return Finding(
            Check.REDIS_UNREACHABLE,
            Severity.ERROR,
            None,
            f"Redis at {url} refused the credentials",
            error,
            "Give hueyard the password Redis asks for (REDIS_PASSWORD, or the password of "
            "REDIS_URL / [redis] url; percent-encoded there) and, with ACLs, a user that "
            "exists, is enabled and may run hueyard's commands (redis-cli ACL GETUSER NAME): "
            "+@all, or at least +@read +@write +@scripting +info on the app's keys.",
        )
    where = (
        "Check that Redis runs (redis-cli -h HOST -p PORT ping); that REDIS_URL (or "
        "REDIS_HOST, REDIS_PORT, REDIS_DB, [redis] url) names it"
        if not (spec.sentinels or spec.cluster)
        else spec.what_to_check[:1].upper() + spec.what_to_check[1:]  # not .capitalize():
        # it lowercases the rest, the variables' names too
    )
    return Finding(
        Check.REDIS_UNREACHABLE,
        Severity.ERROR,
        None,
        f"Redis at {url} does not answer",
        error,
        f"{where}; that REDIS_PASSWORD is its password when it asks for one; and that it "
        "accepts connections from this host (bind, protected-mode, firewall).",
    )


def _replica(url: str, evidence: str, primary: str) -> Finding:
    return Finding(
        Check.REDIS_REPLICA,
        Severity.ERROR,
        None,
        f"Redis at {url} is a read-only replica: consumers can not claim jobs, producers can "
        "not enqueue",
        evidence,
        f"Point REDIS_URL ([redis] url) of every consumer, producer and dashboard at {primary}; "
        "after a failover, at the new primary.",
    )


def _scripts(url: str, refusal: StorageError) -> Finding:
    return Finding(
        Check.REDIS_SCRIPTS,
        Severity.ERROR,
        None,
        f"Redis at {url} runs no Lua scripts: every enqueue, claim and job change is refused",
        str(refusal),
        "Un-rename EVAL and EVALSHA: drop their rename-command lines from redis.conf and "
        'restart Redis (redis-cli EVAL "return 1" 0 answers 1 then); an ACL: grant '
        "hueyard's user +@scripting. A managed Redis that disallows scripts is not supported: "
        "hueyard stores and moves every job with a script.",
    )


def _consumers_key(exc: WrongKeyError) -> Finding:
    return Finding(
        Check.WRONG_KEY,
        Severity.ERROR,
        None,
        "the consumers registry holds another type than hueyard keeps there: no consumer is "
        "seen, and every heartbeat fails",
        str(exc),
        f"Look at it (redis-cli TYPE {exc.key}): something else than hueyard wrote it under "
        f"its prefix. Delete it (redis-cli DEL {exc.key}): the consumers' next heartbeats "
        "(every few seconds) make it again. No job is lost.",
    )


def _refused(exc: StorageError) -> Finding:
    return Finding(
        Check.REDIS_REFUSED,
        Severity.ERROR,
        None,
        "Redis refused the doctor's reads: the queues were not checked",
        str(exc),
        "Out of memory: see the redis-memory finding (free memory or raise maxmemory). A key "
        "of the wrong type: the error names it; look at it (redis-cli TYPE KEY) and delete it.",
    )


def _server(url: str, info: RedisInfo, *, readable: bool) -> list[Finding]:
    if not readable:
        return [
            Finding(
                Check.REDIS_INFO,
                Severity.INFO,
                None,
                "INFO could not be read: replication and memory were not checked",
                f"Redis at {url} answers PING but not INFO (an ACL that forbids it, or a proxy)",
                "Allow INFO to the user hueyard connects as, or check memory and replication "
                "with redis-cli INFO on the server.",
            )
        ]
    findings = []
    if info.is_replica:
        primary = info.primary or "the primary"
        evidence = f"INFO replication: role:{info.role}, copying from {primary}"
        findings.append(_replica(url, evidence, primary))
    ratio = info.memory_ratio
    if ratio is not None and ratio >= defaults.DOCTOR_MEMORY_SHARE:
        findings.append(_memory(info, ratio))
    if info.may_evict:
        findings.append(_eviction(info))
    return findings


def _memory(info: RedisInfo, ratio: float) -> Finding:
    full = ratio >= 1
    effect = (
        "a full Redis with noeviction refuses the writes that add data (OOM): enqueues, "
        "pausing a queue and consumer heartbeats fail; claims, releases, retries and clean "
        "still work (their first write removes data), reads without a transaction"
        if not info.may_evict
        else f"at maxmemory, {info.maxmemory_policy} deletes keys to make room"
    )
    return Finding(
        Check.REDIS_MEMORY,
        Severity.ERROR if full else Severity.WARNING,
        None,
        "Redis memory is at maxmemory" if full else "Redis memory is near maxmemory",
        f"used_memory {size(info.used_memory)} of maxmemory {size(info.maxmemory)} "
        f"({ratio:.0%}), maxmemory-policy {info.maxmemory_policy}; {effect}",
        "Keep fewer finished jobs (keep_completed / keep_failed in [defaults] or "
        "[queues.<name>]), delete old ones (hueyard clean QUEUE --state completed "
        "--older-than 86400), shorten [cache] TTLs, or raise maxmemory (CONFIG SET maxmemory "
        "and redis.conf).",
    )


def _eviction(info: RedisInfo) -> Finding:
    policy = info.maxmemory_policy or "?"
    limit = (
        f"maxmemory {size(info.maxmemory)}"
        if info.maxmemory
        else "maxmemory 0 (no limit yet: it evicts once one is set)"
    )
    return Finding(
        Check.REDIS_EVICTION,
        Severity.WARNING,
        None,
        f"maxmemory-policy {policy} can drop job data",
        f"{limit}; at the limit Redis deletes {info.evicts}",
        f"CONFIG SET maxmemory-policy {NO_EVICTION}, and the same in redis.conf (or the "
        "provider's parameter group); keep a cache that must evict on a Redis of its own.",
    )


def _fine(
    url: str, info: RedisInfo, names: list[str], consumers: list[ConsumerInfo] | None
) -> Finding:
    server = f"Redis {info.version} ({info.role})" if info.version else "Redis"
    live = "?" if consumers is None else str(len(consumers))
    return Finding(
        Check.FINE,
        Severity.OK,
        None,
        "everything looks fine",
        f"{server} at {url} answers; queues checked: {', '.join(names)}; live consumers: {live}",
        "",
    )


# -- one queue -------------------------------------------------------------------------------


class _QueueDoctor:
    """The findings about one queue, from its counts, pulse, summary and the consumers."""

    def __init__(
        self,
        app: Hueyard,
        jobs: Jobs,
        name: str,
        counts: QueueCounts,
        consumers: list[ConsumerInfo] | None,
    ) -> None:
        self.app, self.jobs, self.name, self.counts = app, jobs, name, counts
        self.policy = app.queue(name).policy
        self.consumers = consumers
        self.serving = [c for c in consumers or () if name in c.queues]
        self.pulse: QueuePulse = jobs.pulse(name)
        health = app.settings.health
        self.window = min(health.failure_window_minutes, app.settings.consumer.metrics_ttl // 60)
        self.summary = jobs.summary(name, minutes=self.window)

    def findings(self) -> list[Finding]:
        found = [
            self._wrong_keys(),
            self._paused(),
            self._rate_limited(),
            self._no_handler(),
            self._no_consumer(),
            self._no_live_worker(),
            self._busy(),
            self._delayed(),
            self._parents(),
            self._failing(),
        ]
        return [finding for finding in found if finding is not None]

    def _wrong_keys(self) -> Finding | None:
        keys, counters = self.counts.unreadable, self.counts.not_counts
        if not keys and not counters:
            return None
        evidence = []
        if keys:
            evidence.append(
                f"{', '.join(keys)}: another type was written where hueyard keeps its sets, "
                "wake list or counter (a set of it counts as 0); its scripts refuse to run on it"
            )
        if counters:
            evidence.append(
                f"{', '.join(counters)}: holds a string that is no whole number (0 or more, "
                "as INCR counts) where hueyard counts the queue's enqueues; every enqueue "
                "refuses to run on it"
            )
        count = len(keys) + len(counters)
        what = (
            f"{_many(count, 'key')} of it {'hold' if count > 1 else 'holds'} another type than "
            "hueyard keeps there: its jobs can not move"
            if not counters
            else f"{_many(count, 'key')} of it {'hold' if count > 1 else 'holds'} what hueyard "
            "does not keep there (another type, or a counter that is no whole number): "
            + ("its jobs can not move" if keys else "no job of it can be enqueued")
        )
        return self._finding(
            Check.WRONG_KEY,
            Severity.ERROR,
            what,
            "; ".join(evidence),
            "Look at each (redis-cli TYPE KEY, then GET, HGETALL or LRANGE KEY 0 10): it was "
            "written by something else than hueyard, under its prefix. Move that data away "
            "and delete the key (redis-cli DEL KEY): hueyard starts an empty set there (a "
            "counter starts again from 0). The job ids it held are lost; their records stay "
            "until their TTL or retention.",
        )

    def _finding(
        self, check: Check, severity: Severity, what: str, evidence: str, fix: str
    ) -> Finding:
        return Finding(check, severity, self.name, what, evidence, fix)

    def _waiting(self) -> str:
        age = self.summary.oldest_waiting_age
        oldest = f", the oldest for {duration(age)}" if age is not None else ""
        return f"{_many(self.counts.waiting, 'job')} waiting{oldest}"

    def _paused(self) -> Finding | None:
        if not self.counts.is_paused:
            return None
        since = self.pulse.paused_since
        when = f" since {utc(since)} ({_ago(self.pulse, since)} ago)" if since else ""
        return self._finding(
            Check.PAUSED,
            Severity.WARNING,
            "paused: no job of it starts",
            f"paused{when}; {_many(self.counts.paused, 'job')} held, {self.counts.active} running",
            f"hueyard resume {self.name} (or Resume on /admin/queues/{self.name}).",
        )

    def _rate_limited(self) -> Finding | None:
        limit, until = self.policy.rate_limit, self.pulse.limited_until
        if limit is None or until is None or self.counts.is_paused or not self.counts.waiting:
            return None
        return self._finding(
            Check.RATE_LIMITED,
            Severity.INFO,
            f"rate-limited until {utc(until)}",
            f"{_many(self.pulse.window_starts, 'job')} started in the last {limit.per:g} s "
            f"(rate_limit = {{ max = {limit.max}, per = {limit.per:g} }}, across all "
            f"consumers); "
            f"{self._waiting()}",
            f"None needed: the next job starts at {utc(until)}. To go faster, raise rate_limit "
            f"in [queues.{self.name}] of config/queues.toml and restart the consumers.",
        )

    def _no_handler(self) -> Finding | None:
        if self.app.queue(self.name).tasks or not self.counts.waiting:
            return None
        return self._finding(
            Check.NO_HANDLER,
            Severity.ERROR,
            "no handler is registered for the queue: consumers start no worker for it",
            f"{self._waiting()}; this process discovered no @handler({self.name!r})",
            "Declare the queue's handlers in a module the consumers import "
            "(HUEYARD_HANDLER_PACKAGES / HUEYARD_HANDLER_MODULES); hueyard check lists them.",
        )

    def _no_consumer(self) -> Finding | None:
        if self.consumers is None or self.serving or not self.counts.waiting:
            return None
        others = sorted({queue for c in self.consumers for queue in c.queues})
        live = (
            f"live consumers: {len(self.consumers)}, serving {', '.join(others) or 'no queue'}"
            if self.consumers
            else f"no consumer sent a heartbeat in the last {HEARTBEAT_TTL} s"
        )
        return self._finding(
            Check.NO_CONSUMER,
            Severity.ERROR,
            "no live consumer serves the queue",
            f"{self._waiting()}; {live}",
            f"Start one: huey_consumer framework.app (every queue), or HUEYARD_QUEUES="
            f"{self.name} huey_consumer framework.app. One that should run: read its log "
            "(journalctl -u 'hueyard-consumer*' with the units of docs/operations.md); exit "
            "status 75 means it gave up on threads stuck in jobs.",
        )

    def _no_live_worker(self) -> Finding | None:
        """Consumers serve the queue, but say they have no worker alive for it (each died
        with the health check off, or every one is stuck): its jobs wait all the same."""
        said = [c for c in self.serving if c.live is not None and self.name in c.live]
        if not said or len(said) < len(self.serving) or not self.counts.waiting:
            return None  # some serving consumer runs workers, or does not say
        if any(c.live is not None and c.live[self.name] for c in said):
            return None
        who = ", ".join(f"{c.host or '?'} pid {c.pid}" for c in said[:5])
        return self._finding(
            Check.NO_LIVE_WORKER,
            Severity.ERROR,
            "its consumers are alive but run no worker for it",
            f"{self._waiting()}; {_many(len(said), 'consumer')} serving it ({who}) report 0 "
            f"live workers of queue {self.name} in their heartbeats",
            "Read those consumers' logs (worker ... died, stuck in a job): a worker that "
            "died is started again by the health check, which -C turns off. Restart them "
            "(their jobs come back by lease); exit status 75 means they gave up on threads "
            "stuck in jobs.",
        )

    def _busy(self) -> Finding | None:
        capacity = len(self.serving) * self.policy.concurrency
        if not self.counts.waiting or not capacity or self.counts.active < capacity:
            return None
        running = self.pulse.oldest_running
        longest = ""
        if running is not None and running.started is not None:
            timeout = self.policy.timeout
            limit = f"timeout {timeout:g} s" if timeout else "no timeout"
            longest = (
                f"; the longest-running job, {running.id}, started "
                f"{_ago(self.pulse, running.started)} ago ({limit})"
            )
        job = running.id if running is not None else "ID"
        return self._finding(
            Check.WORKERS_BUSY,
            Severity.WARNING,
            f"all {capacity} workers are busy" if capacity > 1 else "its only worker is busy",
            f"{_many(self.counts.active, 'job')} running on {_many(len(self.serving), 'consumer')} "
            f"x concurrency "
            f"{self.policy.concurrency}; {self._waiting()}{longest}",
            f"Raise concurrency in [queues.{self.name}] or start more consumers for it. Jobs "
            f"that run too long: look at one (hueyard job {job}), give the queue a timeout, "
            f"or cancel it (hueyard cancel {self.name} {job}).",
        )

    def _delayed(self) -> Finding | None:
        pulse = self.pulse
        if not self.counts.delayed or pulse.next_due is None:
            return None
        if pulse.due and self.consumers == []:
            return self._finding(
                Check.DUE_NOT_PROMOTED,
                Severity.ERROR,
                f"{_many(pulse.due, 'delayed job')} due, and no consumer moves them to waiting",
                f"the earliest was due at {utc(pulse.next_due)} "
                f"({_ago(pulse, pulse.next_due)} ago); any live consumer promotes the due "
                f"jobs of every queue, and none sent a heartbeat in the last "
                f"{HEARTBEAT_TTL} s",
                "Start a consumer: huey_consumer framework.app.",
            )
        if self.counts.waiting or pulse.next_due <= pulse.now:
            return None
        return self._finding(
            Check.DELAYED,
            Severity.INFO,
            f"{_many(self.counts.delayed, 'delayed job')}, the next due at {utc(pulse.next_due)}",
            f"nothing waiting; the next delayed job (a delay, an eta or a retry's backoff) is "
            f"due in {duration((pulse.next_due - pulse.now).total_seconds())}",
            "None needed: delayed jobs move to waiting when due. To run them now: Promote all "
            f"delayed on /admin/queues/{self.name}.",
        )

    def _parents(self) -> Finding | None:
        """Jobs whose handler returned and whose children have not all finished: where
        the oldest one's pending children are, and whether anyone serves those queues."""
        count = self.counts.waiting_children
        if not count:
            return None
        oldest = self.jobs.list_jobs(self.name, "waiting-children", page=count, page_size=1)
        if not oldest.items:
            return None  # the last one finished meanwhile
        try:
            parent = self.jobs.get(oldest.items[0].id, queue=self.name, field_bytes=0)
        except JobActionError:  # an entry planted by hand that can not name a job
            return None
        if parent is None:
            return None
        since = oldest.items[0].started
        when = (
            f", the oldest started at {utc(since)} ({_ago(self.pulse, since)} ago)" if since else ""
        )
        links = self.jobs.children(
            self.name, parent.id, page=max(-(-parent.children // 100), 1), page_size=100
        ).items  # the last page: pending children come last
        queues = sorted({link.queue for link in links if link.state == "pending" and link.queue})
        unserved = [
            queue
            for queue in queues
            if self.consumers is not None and not any(queue in c.queues for c in self.consumers)
        ]
        where = f"; pending on {', '.join(queues)}" if queues else ""
        nobody = f"; no live consumer serves {', '.join(unserved)}" if unserved else ""
        return self._finding(
            Check.WAITING_CHILDREN,
            Severity.WARNING if unserved else Severity.INFO,
            f"{_many(count, 'job')} waiting for children{when}",
            f"job {parent.id}: {parent.children} children, {parent.children_completed} "
            f"completed, {parent.children_failed} failed, {parent.children_pending} "
            f"pending{where}{nobody}",
            (f"Start a consumer for {', '.join(unserved)} (HUEYARD_QUEUES). " if unserved else "")
            + "A parent completes with its last child; if a child queue does not move, ask "
            + (f"hueyard doctor {' '.join(queues)}" if queues else "hueyard doctor")
            + f". Its children: hueyard job {parent.id}.",
        )

    def _failing(self) -> Finding | None:
        summary = self.summary
        configured = self.app.settings.health.max_failure_rate
        threshold = configured if configured is not None else defaults.DOCTOR_FAILURE_RATE
        if summary.failure_rate is None or summary.failure_rate <= threshold:
            return None
        finished = summary.failed + summary.completed
        above = (
            f"[health] max_failure_rate = {threshold:g}"
            if configured is not None
            else f"{threshold:g}, the doctor's default when [health] max_failure_rate is unset"
        )
        latest = self.jobs.list_jobs(self.name, "failed", page_size=1).items
        error = f"; the latest error: {_cut(latest[0].error)}" if latest and latest[0].error else ""
        return self._finding(
            Check.FAILING,
            Severity.WARNING,
            f"{summary.failure_rate:.0%} of its jobs failed in the last {self.window} min",
            f"{summary.failed} of {finished} finished jobs failed (over {above}); "
            f"{self.counts.failed} in failed (keep_failed = "
            f"{self.policy.keep_failed}){error}",
            f"Read the errors: hueyard jobs {self.name} --state failed, then hueyard job ID for "
            "the traceback; check the services the handler calls and the payloads. After the "
            f"fix: hueyard retry {self.name} --all. For transient failures, raise attempts in "
            f"[queues.{self.name}].",
        )


# -- text ------------------------------------------------------------------------------------


def _many(count: int, noun: str) -> str:
    """``1 job``, ``2 jobs``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _ago(pulse: QueuePulse, moment: datetime.datetime) -> str:
    return duration((pulse.now - moment).total_seconds())


def _cut(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
