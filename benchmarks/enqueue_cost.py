"""Where the time of a one-by-one enqueue goes: hueyard's client path vs its script.

    .venv/bin/python -m benchmarks.enqueue_cost [--jobs N] [--repeats R]

Four contenders enqueue the same payloads one call at a time, taking turns
every 250 jobs (as in ``benchmarks.run``):

- raw Huey: ``task(payload)``, one ZADD;
- hueyard: ``app.enqueue(...)`` (what ``framework.enqueue`` calls), one
  EVALSHA of the enqueue script;
- hueyard, empty script: the same call, the same arguments, but the script
  is ``return 1``: hueyard's whole client path and one EVALSHA round trip,
  with none of the writes;
- hueyard, ZADD only: the same client path, ending in raw Huey's single ZADD
  of the payload instead of a script.

So "hueyard" minus "empty script" is what the atomic state writes (the job
record, its sequence, its waiting entry, a wake token) cost, and "empty
script" minus "ZADD only" is what calling a script costs. It writes to the
benchmark database (default 8), which it FLUSHDBs. This is a diagnostic: the
two substituted contenders do not store usable jobs.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import redis

from benchmarks.measure import Bench, add_redis_url, check_redis_url
from benchmarks.sides import HueyardSide, RawSide, Side
from benchmarks.workload import Probe
from framework.keys import QueueKeys
from framework.scripts import SCRIPTS

EMPTY_SCRIPT = "return {0}"
"""The enqueue script's reply shape (``{added, held rows...}``), with nothing done."""


class _EmptyScript:
    """Stands in for the storage's scripts: the same EVALSHA call, an empty body."""

    def __init__(self, conn: redis.Redis) -> None:
        self.conn = conn
        self.sha = conn.script_load(EMPTY_SCRIPT)

    def call(self, name: str, queue: QueueKeys, *, args: dict[str, Any], rows: Any) -> Any:
        script = SCRIPTS[name]
        keys = script.key_values(queue, {})
        values = script.arg_values(args, rows)
        return self.conn.evalsha(self.sha, len(keys), *keys, *values)


class _ZaddOnly:
    """Stands in for the storage's scripts: raw Huey's ZADD of the payload."""

    def __init__(self, conn: redis.Redis) -> None:
        self.conn = conn

    def call(self, name: str, queue: QueueKeys, *, args: dict[str, Any], rows: Any) -> Any:
        for _, payload, _ in rows:
            self.conn.zadd(queue.waiting, {payload: args["priority"]})
        return [0]


class AppSide(HueyardSide):
    """hueyard, enqueueing on its own app (three of them are compared here)."""

    def enqueue(self, handler: str, payload: Any) -> None:
        self.enqueue_on_app(handler, payload)


class SubstitutedSide(AppSide):
    """A hueyard app whose enqueue ends in ``scripts`` instead of the real script."""

    def __init__(self, url: str, probe: Probe, name: str, scripts: type) -> None:
        super().__init__(url, probe)
        self.name = name
        storage = self.app().queue("bench").huey.storage
        storage.scripts = scripts(storage.conn)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.enqueue_cost")
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    add_redis_url(parser)
    args = parser.parse_args(argv)
    check_redis_url(parser, args.redis_url)

    conn = redis.Redis.from_url(args.redis_url)
    probe = Probe(args.redis_url)
    bench = Bench(conn, probe)
    sides: list[Side] = [
        RawSide(args.redis_url, probe),
        AppSide(args.redis_url, probe),
        SubstitutedSide(args.redis_url, probe, "hueyard, empty script", _EmptyScript),
        SubstitutedSide(args.redis_url, probe, "hueyard, ZADD only", _ZaddOnly),
    ]
    contenders = [(side.name, side.enqueue, "noop") for side in sides]
    bench.enqueue_rates(contenders, 500)  # warm-up: connections, scripts, code paths
    runs = [bench.enqueue_rates(contenders, args.jobs) for _ in range(args.repeats)]
    bench.flush()

    raw = statistics.median(run["raw Huey"] for run in runs)
    print(f"enqueue one by one: {args.jobs} jobs x {args.repeats} runs, median jobs/s\n")
    print("| contender | jobs/s | vs raw Huey | us per enqueue |")
    print("|---|---:|---:|---:|")
    for side in sides:
        rate = statistics.median(run[side.name] for run in runs)
        print(f"| {side.name} | {rate:,.0f} | {rate / raw:.2f}x | {1e6 / rate:.0f} |")
    for side in sides:
        side.close()
    probe.close()


if __name__ == "__main__":
    main()
