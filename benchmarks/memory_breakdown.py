"""Where each byte of a retained completed hueyard job goes, in Redis.

    .venv/bin/python -m benchmarks.memory_breakdown [--jobs K] [--sample S] [--with-listpack]

It builds the state that the "Redis memory per retained completed job" row of
``benchmarks.run`` measures, with the same call (:meth:`Bench.memory`): K jobs
(default 2,000) of the ``send`` handler, which returns ``RESULT``, with the
WhatsApp payload, run by a real hueyard consumer with ``keep_completed = K``.
Then it attributes ``MEMORY USAGE ... SAMPLES 0`` to the parts of a job:

- the job record as a whole (all K records, per job);
- its key name and keyspace entry: ``MEMORY USAGE`` of a string key whose name
  is as long, holding an integer, minus the integer's 16-byte object;
- each field: a record copied to a scratch key (``DUMP`` / ``RESTORE``),
  measured with and without the field (``HDEL``); the mean over S records
  (default 20);
- the hash itself: the record minus its key and its fields (object, table,
  buckets; or a listpack's header and allocation rounding);
- the completed sorted set, per member;
- every other key of the database (counter, metrics, wake list), divided by K.

The parts add up to the memory row. ``--with-listpack`` measures again at
``hash-max-listpack-value 1024``, **a server-wide setting**, changed for that
run and restored afterwards (see ``benchmarks.memory_encoding``). It empties
the benchmark database (default 8).
"""

from __future__ import annotations

import argparse
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from benchmarks.measure import Bench, add_redis_url, check_redis_url
from benchmarks.memory_encoding import SETTING, listpack_value
from benchmarks.redisstats import memory_usages
from benchmarks.sides import QUEUE, HueyardSide
from benchmarks.workload import COUNTER_KEY, Probe
from framework.keys import LOGS, Keys

__all__ = ["Breakdown", "Part", "breakdown", "format_breakdown"]

PREFIX = "bench"
"""The key prefix of the benchmark's hueyard app (``benchmarks.sides``)."""

INT_OBJECT = 16
"""Bytes of the object of an integer string (Redis's ``robj``): all it takes besides its key."""

LISTPACK_VALUE = 1024
"""The ``hash-max-listpack-value`` of the ``--with-listpack`` run."""

FIELDS = {
    "handler": "the handler's stable name, `<queue>.<handler>`",
    "payload": "the payload, JSON text",
    "result": "the handler's return value, JSON text",
    "created": "when it was enqueued, epoch ms",
    "started": "when its latest run started, epoch ms",
    "attempts": "runs started",
    "consumer": "the consumer that ran it",
    "priority": "the producer's priority option",
    "max_attempts": "the producer's attempts option",
    "keep_completed": "the producer's keep_completed option",
    "keep_failed": "the producer's keep_failed option",
    "stalls": "times its consumer died while running it",
    "token": "the claim's token (while it runs)",
    "seq": "its enqueue sequence (while it runs)",
    "error": "why its latest run failed",
    "traceback": "that run's traceback",
    "progress": "progress the handler reported, JSON",
}
"""What each field of a record holds (framework/record.py)."""

OTHER_KEYS = {
    "seq": "enqueue counter (FIFO order within a priority)",
    "wake": "tokens that wake idle workers (bounded)",
    "stats:<minute>": "completed / failed / retried counts of one minute (expires)",
    "stats:<minute>:ms": "processing-time samples of one minute (bounded, expires)",
    "waiting": "waiting jobs",
    "active": "running jobs",
    "consumers": "live consumers' heartbeats",
}
"""What the other keys of the benchmark database are, by their name after the queue's."""


@dataclass(frozen=True)
class Part:
    """One line of the breakdown: bytes per job and what they are."""

    name: str
    bytes_per_job: float
    what: str
    level: int = 0
    """1 for a part of the job record."""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _usage(conn: redis.Redis, key: str) -> int:
    return int(conn.memory_usage(key, samples=0) or 0)


def scratch_name(length: int, kind: str = "record") -> str:
    """A scratch key name of exactly ``length`` bytes, in the benchmark's namespace."""
    name = f"bench:scratch:{kind}:"
    return (name + "x" * length)[:length] if length > len(name) else "k" * length


def key_overhead(conn: redis.Redis, length: int) -> int:
    """Bytes a key name of ``length`` bytes costs: its string and its entry in the keyspace.

    Measured on a scratch string key of that name length holding an integer,
    whose value is the 16-byte object alone.
    """
    name = scratch_name(length, "key")
    conn.set(name, 1)
    try:
        return _usage(conn, name) - INT_OBJECT
    finally:
        conn.delete(name)


@dataclass
class FieldCosts:
    """What :func:`field_costs` found, per field and per record copied."""

    bytes: dict[str, float]
    """Mean bytes the field adds to a record (0 for a record without it)."""
    lengths: dict[str, tuple[float, float]]
    """Mean length of the field's name and of its value."""
    copy_difference: float
    """Mean bytes a RESTOREd copy takes beyond its original (0: the copies are faithful)."""


def field_costs(conn: redis.Redis, records: Sequence[str]) -> FieldCosts:
    """Per field, the bytes it adds to a record: with and without it, on a copy.

    Each record is copied (``DUMP`` / ``RESTORE``) to a scratch key with a name
    as long, once per field; the field is deleted from the copy and the
    difference of ``MEMORY USAGE`` taken.
    """
    costs: dict[str, float] = defaultdict(float)
    lengths: dict[str, list[tuple[int, int]]] = defaultdict(list)
    copy_difference = 0
    for record in records:
        dump = conn.dump(record)
        if dump is None:
            raise SystemExit(f"record {record} disappeared while it was measured")
        original = _usage(conn, record)
        scratch = scratch_name(len(record.encode()))
        try:
            conn.restore(scratch, 0, dump, replace=True)
            copy_difference += _usage(conn, scratch) - original
            for raw_field in conn.hkeys(record):
                field = _text(raw_field)
                conn.restore(scratch, 0, dump, replace=True)
                whole = _usage(conn, scratch)
                conn.hdel(scratch, field)
                costs[field] += whole - _usage(conn, scratch)
                lengths[field].append((len(raw_field), int(conn.hstrlen(record, field))))
        finally:
            conn.delete(scratch)
    return FieldCosts(
        bytes={field: total / len(records) for field, total in costs.items()},
        lengths={
            field: (statistics.mean(n for n, _ in pairs), statistics.mean(v for _, v in pairs))
            for field, pairs in lengths.items()
        },
        copy_difference=copy_difference / len(records),
    )


def _sample(records: Sequence[str], size: int) -> list[str]:
    step = max(1, len(records) // max(size, 1))
    return list(records[::step][:size])


def _pattern(name: str) -> str:
    """A key's name with its minute replaced by ``<minute>``."""
    return re.sub(r":stats:\d+", ":stats:<minute>", name)


@dataclass
class Breakdown:
    """The parts of one state of the benchmark database, per job."""

    parts: list[Part]
    encoding: str
    """The records' ``OBJECT ENCODING``: ``hashtable`` or ``listpack``."""
    sampled: int
    """Records measured field by field."""
    copy_difference: float
    """See :attr:`FieldCosts.copy_difference`."""

    @property
    def total(self) -> float:
        return sum(part.bytes_per_job for part in self.parts if part.level == 0)


def breakdown(conn: redis.Redis, k: int, sample: int) -> Breakdown:
    """Where the bytes of the ``k`` jobs in the benchmark database go, per job."""
    keys = Keys(PREFIX)
    names = [_text(n) for n in conn.scan_iter(count=1000) if _text(n) != COUNTER_KEY]
    usage = dict(zip(names, memory_usages(conn, names), strict=True))
    records = sorted(
        n for n in names if n.startswith(keys.queue(QUEUE).job_prefix) and not n.endswith(LOGS)
    )
    if not records:
        raise SystemExit("no job records in the benchmark database; did the jobs run?")
    encoding = _text(conn.object("encoding", records[0]) or b"?")
    sampled = _sample(records, sample)
    fields = field_costs(conn, sampled)
    parts = record_parts(conn, keys, records, usage, fields, encoding, k)
    parts += queue_parts(conn, keys, set(records), usage, k)
    return Breakdown(parts, encoding, len(sampled), fields.copy_difference)


def record_parts(
    conn: redis.Redis,
    keys: Keys,
    records: Sequence[str],
    usage: dict[str, int],
    fields: FieldCosts,
    encoding: str,
    k: int,
) -> list[Part]:
    """The records as a whole, then their key, each field, and the hash around them."""
    record_bytes = sum(usage[n] for n in records) / k
    lengths = Counter(len(n.encode()) for n in records)
    key_bytes = sum(count * key_overhead(conn, length) for length, count in lengths.items()) / k
    parts = [
        Part(
            f"job record `{keys.job(QUEUE, '<id>')}`, whole",
            record_bytes,
            f"{len(records):,} hashes ({encoding}), MEMORY USAGE summed, per job",
        ),
        Part(
            "key name and keyspace entry",
            key_bytes,
            f"the {max(lengths)}-byte key name's string and its entry in the database's table",
            level=1,
        ),
    ]
    for field, cost in sorted(fields.bytes.items(), key=lambda item: -item[1]):
        name_length, value_length = fields.lengths[field]
        what = FIELDS.get(field, "see framework/record.py")
        parts.append(
            Part(
                f"field `{field}`",
                cost,
                f"{what}; name {name_length:.0f} B + value {value_length:.0f} B",
                level=1,
            )
        )
    around = "table and buckets" if encoding == "hashtable" else "listpack header, rounding"
    parts.append(
        Part(
            "the hash itself",
            record_bytes - key_bytes - sum(fields.bytes.values()),
            f"the record minus its key and fields: object, {around}",
            level=1,
        )
    )
    return parts


def queue_parts(
    conn: redis.Redis, keys: Keys, records: set[str], usage: dict[str, int], k: int
) -> list[Part]:
    """The completed set, per member; every other key, amortized over the ``k`` jobs."""
    q = keys.queue(QUEUE)
    parts = [
        Part(
            "completed sorted set, per member",
            usage.get(q.completed, 0) / k,
            f"`{q.completed}`: {conn.zcard(q.completed):,} ids, each in a skiplist node "
            "and a table entry",
        )
    ]
    queue_base = q.waiting.removesuffix("waiting")
    others: dict[str, list[int]] = defaultdict(list)
    for name, size in usage.items():
        if name not in records and name != q.completed:
            others[_pattern(name)].append(size)
    for pattern, sizes in sorted(others.items(), key=lambda item: -sum(item[1])):
        what = OTHER_KEYS.get(pattern.removeprefix(queue_base), "another key")
        count = f"{len(sizes)} keys, " if len(sizes) > 1 else ""
        parts.append(
            Part(f"`{pattern}`", sum(sizes) / k, f"{count}{sum(sizes):,} B in all: {what}")
        )
    return parts


def format_breakdown(found: Breakdown, k: int, retained: float) -> str:
    """The Markdown table: part | bytes per job | what it is, the total, then notes."""
    lines = ["| part | bytes per job | what it is |", "|---|---:|---|"]
    for part in found.parts:
        indent = "&nbsp;&nbsp;" * part.level
        lines.append(f"| {indent}{part.name} | {part.bytes_per_job:,.1f} | {part.what} |")
    lines.append(
        f"| **total** | **{found.total:,.1f}** | the memory row of benchmarks.run: "
        f"{retained:,.1f} B per retained completed job |"
    )
    lines += ["", f"- Fields: the mean over {found.sampled} of the {k:,} records."]
    if found.encoding == "listpack":
        lines.append(
            "- In a listpack, a field's bytes are a difference of allocator size classes: "
            "small fields can show 0, and the hash itself takes the rounding."
        )
    if found.copy_difference < 0:
        lines.append(
            f"- A fresh copy of a record (DUMP / RESTORE) takes {-found.copy_difference:,.1f} B "
            "less than the record: the record's table has more buckets than its fields need "
            "(it grew while the record had more fields at once). The fields are measured on "
            "copies; the hash itself holds the difference."
        )
    elif found.copy_difference > 0:
        lines.append(
            f"- A fresh copy of a record (DUMP / RESTORE) takes {found.copy_difference:,.1f} B "
            "more than the record; the fields are measured on copies."
        )
    return "\n".join(lines)


def run_once(bench: Bench, side: HueyardSide, args: argparse.Namespace, setting: str) -> None:
    """Build the memory row's state, then print where its bytes go."""
    result = bench.memory(side, args.jobs, args.workers)
    found = breakdown(bench.conn, args.jobs, args.sample)
    print()
    print(
        f"hueyard, {args.jobs:,} retained completed jobs (`send`, WhatsApp payload), "
        f"`{SETTING} {setting}`: records are {found.encoding}"
    )
    print()
    print(format_breakdown(found, args.jobs, result["retained_keys"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.memory_breakdown",
        description="Where each byte of a retained completed hueyard job goes.",
    )
    parser.add_argument("--jobs", type=int, default=2000, help="jobs kept (default 2000)")
    parser.add_argument("--workers", type=int, default=4, help="worker threads (default 4)")
    parser.add_argument(
        "--sample", type=int, default=20, help="records measured field by field (default 20)"
    )
    parser.add_argument(
        "--with-listpack",
        action="store_true",
        help=f"measure again at {SETTING} {LISTPACK_VALUE} (changes it server-wide meanwhile)",
    )
    add_redis_url(parser)
    args = parser.parse_args(argv)
    check_redis_url(parser, args.redis_url)

    conn = redis.Redis.from_url(args.redis_url)
    probe = Probe(args.redis_url)
    bench = Bench(conn, probe)
    side = HueyardSide(args.redis_url, probe)
    try:
        run_once(bench, side, args, str(conn.config_get(SETTING)[SETTING]))
        if args.with_listpack:
            with listpack_value(conn, LISTPACK_VALUE):
                run_once(bench, side, args, str(LISTPACK_VALUE))
    finally:
        bench.flush()
        side.close()
        probe.close()
        conn.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
