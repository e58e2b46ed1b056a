"""Round trips per call of the read/act API, ``framework.jobs.Jobs``, against its promises.

    .venv/bin/python -m benchmarks.calls

On the benchmark database (FLUSHDB'd), an app with two queues gets jobs in
every state, put there through the storage (claim, then release), as the
integration tests do: ``work`` has 300 waiting, 200 active, 250 delayed, 255
completed (250 of them finished two hours ago) and 350 failed jobs; ``other``
300 jobs and is paused. :data:`framework.defaults.BULK_BATCH` is set to 100
for the run. Then each call runs once, on a connection pool that counts what
it sends (:class:`~benchmarks.redisstats.RoundTrips`): the reads first, then
``retry_all``, ``promote_all`` and ``clean``.

It prints call | round trips | commands | the design promises | kept. A round
trip is one request: a command alone or a pipeline. A connection's own
set-up and health checks (HELLO, CLIENT, SELECT, PING, AUTH) are not counted.
The counts are exact, not timings: the command exits with status 1 when a
call breaks its promise, so a script can check them.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from benchmarks.measure import add_redis_url, check_redis_url
from benchmarks.redisstats import CONNECTION_COMMANDS, RoundTrips, counting_connection_class
from framework import defaults
from framework.application import Hueyard
from framework.config import parse_settings
from framework.connection import build_pool
from framework.handlers import HandlerRegistry, handler
from framework.jobs import Jobs
from framework.scripts import SCRIPTS, source
from framework.storage import JobStorage

__all__ = ["Call", "Measured", "Promise", "build_app", "fill", "measure"]

CONFIG = """\
[redis]
url = "{url}"
prefix = "bench"

[queues.work]
attempts = 1
keep_completed = 100000
keep_failed = 100000

[queues.other]
"""
"""Two queues; ``work`` keeps every finished job, so the states hold what :func:`fill` puts."""

BATCH = 100
"""``BULK_BATCH`` during the run: the bulk actions take several script calls."""

WAITING, ACTIVE, DELAYED, FAILED, OLD, RECENT, PAUSED = 300, 200, 250, 350, 250, 5, 300
"""Jobs per state (``OLD`` and ``RECENT`` are the completed ones, ``PAUSED`` on ``other``)."""

PAGE_SIZE = 25

OLD_AGE = 7200.0
"""Seconds since the ``OLD`` completed jobs finished; ``clean`` deletes those over an hour."""

_ENVELOPE = frozenset({"MULTI", "EXEC"})


@dataclass(frozen=True)
class Promise:
    """What the design says a call costs: round trips, and counts of some commands in them."""

    round_trips: int
    commands: dict[str, int]
    text: str


@dataclass(frozen=True)
class Call:
    """One call of the API, with its promise."""

    label: str
    run: Callable[[], Any]
    promise: Promise
    show_result: bool = False
    """Print what the call returned (the bulk actions: how many jobs they moved)."""


@dataclass
class Measured:
    """One call as it went: the requests it sent, and what it returned."""

    call: Call
    trips: list[tuple[str, ...]]
    result: Any = field(repr=False)

    @property
    def commands(self) -> Counter[str]:
        """Commands over all its round trips (a transaction's MULTI and EXEC left out)."""
        return Counter(name for trip in self.trips for name in trip if name not in _ENVELOPE)

    @property
    def kept(self) -> bool:
        promise = self.call.promise
        return len(self.trips) == promise.round_trips and all(
            self.commands[name] == count for name, count in promise.commands.items()
        )


def build_app(url: str, round_trips: RoundTrips) -> Hueyard:
    """The two-queue app, on a pool whose connections report to ``round_trips``."""
    settings = parse_settings(CONFIG.format(url=url), source="<benchmarks.calls>", env={})
    registry = HandlerRegistry()

    @handler("work", registry=registry)
    def job(payload: dict[str, Any]) -> None: ...

    @handler("other", registry=registry)
    def other_job(payload: dict[str, Any]) -> None: ...

    pool = build_pool(settings.redis.connection)
    pool.connection_class = counting_connection_class(round_trips)
    return Hueyard(settings, registry, pool=pool)


def _finish(storage: JobStorage, outcome: str, n: int) -> list[str]:
    """Claim the next ``n`` waiting jobs and release them with ``outcome``; their ids."""
    ids = []
    for _ in range(n):
        claim = storage.claim()
        if claim is None:
            raise RuntimeError(f"no waiting job to claim on queue {storage.q.waiting!r}")
        value = '{"ok":1}' if outcome == "completed" else f"ValueError: boom {claim.id}"
        storage.release(claim, outcome, value=value, traceback="Traceback: ...")
        ids.append(claim.id)
    return ids


def fill(app: Hueyard, conn: redis.Redis) -> dict[str, list[str]]:
    """Jobs in every state (see the module's docstring); ids by state."""
    storage = app.queue("work").storage
    storage.read_timeout = 0.1
    total = FAILED + OLD + RECENT + ACTIVE + WAITING
    app.enqueue_many("work", "job", [{"n": i} for i in range(total)])
    ids = {
        "failed": _finish(storage, "failed", FAILED),
        "old": _finish(storage, "completed", OLD),
        "recent": _finish(storage, "completed", RECENT),
    }
    ids["active"] = [claim.id for claim in (storage.claim() for _ in range(ACTIVE)) if claim]
    ids["delayed"] = app.enqueue_many("work", "job", [{"n": i} for i in range(DELAYED)], delay=3600)
    finished = (time.time() - OLD_AGE) * 1000
    conn.zadd(storage.q.completed, dict.fromkeys(ids["old"], finished), xx=True)
    ids["paused"] = app.enqueue_many("other", "other_job", [{"n": i} for i in range(PAUSED)])
    Jobs(app).pause("other")
    return ids


def _batches(jobs: int) -> int:
    """Script calls a bulk action needs for ``jobs`` jobs at :data:`BATCH` a call."""
    return math.ceil(jobs / BATCH)


def calls(jobs: Jobs, ids: dict[str, list[str]]) -> list[Call]:
    """The calls measured, in order: the reads, then the bulk actions that change state."""
    failed = ids["failed"][0]
    return [
        Call(
            'counts("work")',
            lambda: jobs.counts("work"),
            Promise(1, {"ZCARD": 5, "EXISTS": 1}, "1 round trip: a ZCARD per state + EXISTS"),
        ),
        Call(
            "counts_all()",
            jobs.counts_all,
            Promise(
                1,
                {"ZCARD": 10, "EXISTS": 2},
                "1 round trip for all the queues (2 here): a ZCARD per state + EXISTS each",
            ),
        ),
        Call(
            f'list_jobs("work", "failed", page=2, page_size={PAGE_SIZE})',
            lambda: jobs.list_jobs("work", "failed", page=2, page_size=PAGE_SIZE),
            Promise(
                2,
                {"EVALSHA peek": PAGE_SIZE},
                "2 round trips (the page's ids, then its records); one bounded read (the "
                "peek script) per job of the page, no more",
            ),
        ),
        Call(
            "get(id)",
            lambda: jobs.get(failed),
            Promise(1, {}, "1 round trip: the record, its logs, its place in every queue"),
        ),
        Call(
            "find(id)",
            lambda: jobs.find(failed),
            Promise(1, {}, "1 round trip: its place in every queue"),
        ),
        Call(
            'metrics("work", minutes=60)',
            lambda: jobs.metrics("work", minutes=60),
            Promise(1, {"HMGET": 60, "LRANGE": 60}, "1 round trip for all 60 minutes"),
        ),
        Call(
            'summary("work", minutes=60)',
            lambda: jobs.summary("work", minutes=60),
            Promise(
                2,
                {},
                "2 round trips: the minutes and the head of each priority band, then "
                "their enqueue times",
            ),
        ),
        Call(
            f'retry_all("work"), {FAILED} failed',
            lambda: jobs.retry_all("work"),
            Promise(
                1 + _batches(FAILED),
                {"EVALSHA retry": _batches(FAILED)},
                f"1 ZCARD, then 1 script call per {BATCH} jobs: {_batches(FAILED)} script calls",
            ),
            show_result=True,
        ),
        Call(
            f'promote_all("work"), {DELAYED} delayed',
            lambda: jobs.promote_all("work"),
            Promise(
                1 + 2 * _batches(DELAYED),
                {"EVALSHA promote": _batches(DELAYED)},
                f"1 ZCARD, then per {BATCH} jobs a ZRANGE and 1 script call: "
                f"{_batches(DELAYED)} script calls",
            ),
            show_result=True,
        ),
        Call(
            f'clean("work", "completed", older_than=3600), {OLD} of {OLD + RECENT} old',
            lambda: jobs.clean("work", "completed", older_than=3600),
            Promise(
                1 + _batches(OLD),
                {"EVALSHA clean": _batches(OLD)},
                f"1 ZCARD, then 1 script call per {BATCH} jobs until a batch is short: "
                f"{_batches(OLD)} script calls",
            ),
            show_result=True,
        ),
    ]


def count(round_trips: RoundTrips, call: Call) -> Measured:
    """Run ``call`` once; keep the requests it sent, but a connection's own."""
    start = len(round_trips.trips)
    result = call.run()
    sent = round_trips.trips[start:]
    trips = [trip for trip in sent if not set(trip) <= CONNECTION_COMMANDS]
    return Measured(call, trips, result)


def measure(url: str) -> tuple[list[Measured], str]:
    """Every call of :func:`calls`, counted; and what the queues held before them."""
    conn = redis.Redis.from_url(url)
    round_trips = RoundTrips(keep_trips=True)
    app = build_app(url, round_trips)
    saved = defaults.BULK_BATCH
    try:
        conn.flushdb()
        for name in SCRIPTS:  # loaded beforehand: no NOSCRIPT retry is counted
            conn.script_load(source(name))
        defaults.BULK_BATCH = BATCH
        jobs = Jobs(app)
        ids = fill(app, conn)
        state = describe(jobs)
        return [count(round_trips, call) for call in calls(jobs, ids)], state
    finally:
        defaults.BULK_BATCH = saved
        app.close()
        conn.flushdb()
        conn.close()


def describe(jobs: Jobs) -> str:
    """What every queue holds, in words."""
    parts = []
    for name, counts in jobs.counts_all().items():
        held = {
            state: getattr(counts, state)
            for state in ("waiting", "active", "delayed", "completed", "failed", "paused")
        }
        parts.append(f"{name}: " + ", ".join(f"{n} {state}" for state, n in held.items() if n))
    return "; ".join(parts)


def _commands_text(commands: Counter[str]) -> str:
    return ", ".join(f"{n} {name}" for name, n in sorted(commands.items(), key=lambda kv: -kv[1]))


def format_calls(measured: Sequence[Measured]) -> str:
    """call | round trips | commands | the design promises | kept."""
    lines = [
        "| call | round trips | commands | the design promises | kept |",
        "|---|---:|---|---|---|",
    ]
    for item in measured:
        label = item.call.label
        if item.call.show_result:
            label += f" -> {item.result}"
        kept = "yes" if item.kept else "**NO**"
        lines.append(
            f"| `{label}` | {len(item.trips)} | {_commands_text(item.commands)} "
            f"| {item.call.promise.text} | {kept} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.calls",
        description="Round trips per call of framework.jobs.Jobs, and what the design promises.",
    )
    add_redis_url(parser)
    args = parser.parse_args(argv)
    check_redis_url(parser, args.redis_url)
    try:
        redis.Redis.from_url(args.redis_url).ping()
    except redis.ConnectionError as exc:
        print(f"no Redis server at {args.redis_url}: {exc}", file=sys.stderr)
        return 2
    measured, state = measure(args.redis_url)
    print(f"Round trips per call of framework.jobs.Jobs; {state}; BULK_BATCH = {BATCH}")
    print()
    print(format_calls(measured))
    broken = [item.call.label for item in measured if not item.kept]
    if broken:
        print()
        print(f"promises broken: {', '.join(broken)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
