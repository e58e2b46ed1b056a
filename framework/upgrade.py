"""Moving the keys of hueyard 0.1.0 to the per-queue layout: ``hueyard upgrade-keys``.

hueyard 0.1.0 tagged every key with the app's ``{p}`` (``{p}:q:<queue>:waiting``,
``{p}:job:<id>``); now each queue's keys carry the queue's own tag
``{p:<queue>}`` (:mod:`framework.keys`), so that a Redis Cluster spreads the
queues over its shards. A consumer refuses to start while a queue still has
0.1.0 keys (:func:`legacy_queues`): their jobs would wait where no one looks.

:func:`upgrade_keys` renames them in place, on the single Redis that holds
them, with every consumer stopped (a job that a 0.1.0 consumer runs while its
keys move would be released into keys no one reads). Each queue's jobs are
moved through its sorted sets, a batch at a time, record and logs with their
id; then the sets (merged into new ones that exist already: jobs enqueued by
producers that were upgraded first), then the queue's other keys. A record
that no set names is moved by the queue its ``handler`` names. Moving twice is
harmless: what moved is no longer at the old name. To move to a Cluster,
upgrade the single Redis first, then migrate its keys (``redis-cli --cluster
import``); docs/storage.md says how.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis

from framework import defaults
from framework.clock import server_ms
from framework.errors import HueyardError
from framework.keys import JOB_STATES, LOGS, Keys, LegacyKeys, QueueKeys, literal_pattern

__all__ = ["UpgradeReport", "check_single_redis", "legacy_queues", "live_consumers", "upgrade_keys"]

_SETS = (*JOB_STATES,)
_MARKERS = (*JOB_STATES, "paused", "seq")
"""Keys of a queue that every 0.1.0 queue that ever ran has one of."""


@dataclass
class UpgradeReport:
    """What :func:`upgrade_keys` moved, per queue, and what it left, with why."""

    jobs: dict[str, int] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)
    left: list[str] = field(default_factory=list)
    """Keys not moved: ``<key>: <why>`` (their new name is taken, or no queue owns them)."""

    @property
    def moved(self) -> int:
        return sum(self.jobs.values()) + sum(self.keys.values())


def legacy_queues(conn: redis.Redis, keys: Keys, queues: list[str]) -> list[str]:
    """The queues that still have keys of hueyard 0.1.0: one round trip."""
    old = keys.legacy
    with conn.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.exists(*[old.queue_prefix(queue) + name for name in _MARKERS])
        replies = pipe.execute()
    return [queue for queue, count in zip(queues, replies, strict=True) if count]


def upgrade_keys(
    conn: redis.Redis, keys: Keys, queues: list[str], *, batch: int = defaults.BULK_BATCH
) -> UpgradeReport:
    """Rename every 0.1.0 key of ``queues`` to its per-queue name (see the module)."""
    report = UpgradeReport()
    for queue in queues:
        q = keys.queue(queue)
        report.jobs[queue] = _move_jobs(conn, keys.legacy, queue, q, batch=batch, report=report)
        report.keys[queue] = _move_queue_keys(conn, keys, queue, q, report)
    for queue, moved in _move_orphans(conn, keys, queues, report).items():
        report.jobs[queue] = report.jobs.get(queue, 0) + moved
    return report


def _move_jobs(
    conn: redis.Redis,
    old: LegacyKeys,
    queue: str,
    q: QueueKeys,
    *,
    batch: int,
    report: UpgradeReport,
) -> int:
    """Move the record and logs of every job the queue's old sets name."""
    moved = 0
    for state in _SETS:
        key = old.queue_prefix(queue) + state
        if conn.type(key) not in (b"zset", "zset"):
            continue
        start = 0
        while True:
            members: list[bytes] = conn.zrange(key, start, start + batch - 1)  # type: ignore[assignment]
            ids = [member.decode() for member in members]
            if not ids:
                break
            pairs = [(old.job_prefix + i + end, q.job(i) + end) for i in ids for end in ("", LOGS)]
            moved += _rename_all(conn, pairs, report)
            start += batch
    return moved


def _move_queue_keys(
    conn: redis.Redis, keys: Keys, queue: str, q: QueueKeys, report: UpgradeReport
) -> int:
    """The sets (merged into new ones that exist) and every other key of the queue."""
    prefix = keys.legacy.queue_prefix(queue)
    new_prefix = keys.queue_tag(queue) + ":"
    moved = 0
    for state in _SETS:
        old, new = prefix + state, q.state(state)
        kind = _type(conn, old)
        if kind == "none":
            continue
        if kind != "zset" or _type(conn, new) not in ("none", "zset"):
            report.left.append(
                f"{old}: a {kind} where hueyard 0.1.0 kept a sorted set, or {new} is not "
                "one; look at both (redis-cli TYPE), then move or delete the odd one"
            )
            continue
        if conn.exists(new):  # producers that were upgraded first enqueued here already
            with conn.pipeline(transaction=True) as pipe:
                pipe.zunionstore(new, [new, old], aggregate="MIN")
                pipe.delete(old)
                pipe.execute()
        else:
            conn.rename(old, new)
        moved += 1
    if conn.exists(q.wake):  # tokens that wake idle workers: the new list's will do
        conn.delete(prefix + "wake")
    seq, current = _count(conn, prefix + "seq"), _count(conn, q.seq)
    if seq is None or current is None:
        report.left.append(
            f"{prefix}seq or {q.seq}: not the whole number hueyard counts with; delete the "
            "odd one (FIFO order within a priority starts again from it)"
        )
    elif conn.exists(prefix + "seq"):  # the newer count wins: FIFO order goes on from the higher
        with conn.pipeline(transaction=True) as pipe:
            pipe.set(q.seq, max(seq, current))
            pipe.delete(prefix + "seq")
            pipe.execute()
        moved += 1
    kept = {prefix + name for name in (*_SETS, "seq")}  # handled above: moved, or left
    rest = [
        name
        for name in (
            raw.decode() for raw in conn.scan_iter(match=literal_pattern(prefix) + "*", count=1000)
        )
        if name not in kept
    ]
    moved += _rename_all(conn, [(name, new_prefix + name[len(prefix) :]) for name in rest], report)
    return moved


def _move_orphans(
    conn: redis.Redis, keys: Keys, queues: list[str], report: UpgradeReport
) -> dict[str, int]:
    """Records no set names (and logs without a record): moved by their handler's queue."""
    prefix = keys.legacy.job_prefix
    moved: dict[str, int] = {}
    for raw in conn.scan_iter(match=literal_pattern(prefix) + "*", count=1000):
        name = raw.decode()
        job_id = name[len(prefix) :].removesuffix(LOGS)
        record = name[: len(name) - len(LOGS)] if name.endswith(LOGS) else name
        owner = _owner(conn, record)
        if owner not in queues:
            report.left.append(f"{name}: no declared queue owns it (handler {owner!r})")
            continue
        suffix = LOGS if name.endswith(LOGS) else ""
        count = _rename_all(conn, [(name, keys.queue(owner).job(job_id) + suffix)], report)
        moved[owner] = moved.get(owner, 0) + count
    return moved


def _type(conn: redis.Redis, key: str) -> str:
    kind = conn.type(key)
    return kind.decode() if isinstance(kind, bytes) else str(kind)


def _count(conn: redis.Redis, key: str) -> int | None:
    """The counter at ``key`` (0 when absent); None when it holds anything else."""
    try:
        value = conn.get(key)
    except redis.ResponseError:
        return None
    if value is None:
        return 0
    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return int(text) if text.isascii() and text.isdigit() else None


def _owner(conn: redis.Redis, record: str) -> str | None:
    try:
        values: Any = conn.hmget(record, ["handler", "name"])  # 0.1.0 kept Huey's name
    except redis.ResponseError:
        return None
    name = values[0] or values[1]
    return name.decode(errors="replace").partition(".")[0] if name else None


def _rename_all(conn: redis.Redis, pairs: list[tuple[str, str]], report: UpgradeReport) -> int:
    """RENAMENX each existing ``old`` to ``new``; a taken ``new`` is reported, not overwritten.
    Returns how many jobs moved (a record counts, its logs do not) or keys, for other keys."""
    if not pairs:
        return 0
    with conn.pipeline(transaction=False) as pipe:
        for old, _ in pairs:
            pipe.exists(old)
        present = pipe.execute()
    todo = [pair for pair, found in zip(pairs, present, strict=True) if found]
    if not todo:
        return 0
    with conn.pipeline(transaction=False) as pipe:
        for old, new in todo:
            pipe.renamenx(old, new)
        replies = pipe.execute(raise_on_error=False)
    moved = 0
    for (old, new), reply in zip(todo, replies, strict=True):
        if reply is True or reply == 1:
            moved += 0 if old.endswith(LOGS) else 1
        else:
            report.left.append(f"{old}: {new} exists already; compare the two, keep one")
    return moved


def live_consumers(conn: redis.Redis, keys: Keys, window: float) -> int:
    """Consumers (of any version) that sent a heartbeat in the last ``window`` seconds."""
    return int(conn.zcount(keys.consumers, server_ms(conn) - int(window * 1000), "+inf"))


def check_single_redis(conn: Any) -> None:
    """The upgrade renames keys in place; a Cluster never held 0.1.0 keys."""
    from framework.clients import is_cluster

    if is_cluster(conn):
        raise HueyardError(
            "hueyard upgrade-keys runs on the single Redis that holds hueyard 0.1.0's keys; "
            "upgrade it there first, then move the keys to the Cluster (docs/storage.md)"
        )
