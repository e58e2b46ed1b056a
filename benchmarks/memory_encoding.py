"""Memory per hueyard job at two settings of Redis's ``hash-max-listpack-value``.

    .venv/bin/python -m benchmarks.memory_encoding [--jobs K] [--values 64,1024]

For each value it sets ``hash-max-listpack-value`` on the server, runs the
memory measurement of ``benchmarks.run`` (K jobs waiting, then completed
with ``keep_completed = K``) and prints bytes per job. **It changes a
server-wide setting for the length of the run** and puts the old value back
at the end, even on error; it empties the benchmark database (default 8).
See docs/storage.md, "Memory per job".
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

import redis

from benchmarks.measure import Bench, add_redis_url, check_redis_url
from benchmarks.sides import HueyardSide
from benchmarks.workload import Probe

__all__ = ["SETTING", "listpack_value"]

SETTING = "hash-max-listpack-value"


@contextlib.contextmanager
def listpack_value(conn: redis.Redis, value: int | str) -> Iterator[None]:
    """Redis's ``hash-max-listpack-value`` at ``value`` for the block, then put back.

    **Server-wide**: every database and every client of the server sees it
    meanwhile. The old value is restored even on error.
    """
    original = str(conn.config_get(SETTING)[SETTING])
    conn.config_set(SETTING, value)
    try:
        yield
    finally:
        conn.config_set(SETTING, original)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory_encoding")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--values", default="64,1024", help="settings to try, comma-separated")
    parser.add_argument("--workers", type=int, default=4)
    add_redis_url(parser)
    args = parser.parse_args(argv)
    check_redis_url(parser, args.redis_url)

    conn = redis.Redis.from_url(args.redis_url)
    probe = Probe(args.redis_url)
    bench = Bench(conn, probe)
    side = HueyardSide(args.redis_url, probe)
    print(f"| `{SETTING}` | per waiting job | per retained completed job |")
    print("|---|---:|---:|")
    try:
        for value in args.values.split(","):
            with listpack_value(conn, value):
                result = bench.memory(side, args.jobs, args.workers)
            waiting, retained = result["waiting_keys"], result["retained_keys"]
            print(f"| {value} | {waiting:,.0f} B | {retained:,.0f} B |")
    finally:
        bench.flush()
        side.close()
        probe.close()


if __name__ == "__main__":
    main()
