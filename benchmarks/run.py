"""hueyard vs raw Huey on the same Redis, in the same run, one command::

    .venv/bin/python -m benchmarks.run            # full: 5,000 jobs, 4 workers, 3 repeats
    .venv/bin/python -m benchmarks.run --quick    # about a minute

Prints a table (metric | raw Huey | hueyard | ratio | target) and writes it,
with every single run, to ``benchmarks/results/latest.json``. Everything is
written to one Redis database (default 8), which is FLUSHDB'd before every
measurement; no other database is touched. The start-up rows run real
consumer processes (:mod:`benchmarks.startup`). See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import redis

from benchmarks.measure import Bench, Enqueue, add_redis_url, check_redis_url, percentile
from benchmarks.report import (
    Row,
    format_profile,
    format_table,
    machine,
    median,
    ratio,
    write_json,
)
from benchmarks.sides import HueyardSide, RawSide, Side
from benchmarks.startup import import_times, startup_row
from benchmarks.startup import measure as measure_startup
from benchmarks.workload import Probe

RESULTS = Path(__file__).parent / "results" / "latest.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="hueyard vs raw Huey (PriorityRedisHuey), same Redis, same run.",
    )
    parser.add_argument("--jobs", type=int, help="jobs per enqueue / drain run (default 5000)")
    parser.add_argument("--workers", type=int, default=4, help="worker threads (default 4)")
    parser.add_argument("--repeats", type=int, help="runs per measurement (default 3)")
    parser.add_argument("--samples", type=int, help="latency samples per run (default 300)")
    parser.add_argument(
        "--memory-jobs", type=int, help="completed jobs kept for the memory row (default 2000)"
    )
    parser.add_argument(
        "--profile-jobs", type=int, help="jobs of the per-job cost profile (default 2000)"
    )
    parser.add_argument(
        "--startup-repeats", type=int, help="consumer start-ups per side (default 5)"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: done in about 60 s")
    parser.add_argument("--no-profile", action="store_true", help="skip the per-job cost table")
    add_redis_url(parser)
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args(argv)
    sizes = (
        {
            "jobs": 1000,
            "repeats": 3,
            "samples": 60,
            "memory_jobs": 500,
            "profile_jobs": 500,
            "startup_repeats": 3,
        }
        if args.quick
        else {
            "jobs": 5000,
            "repeats": 3,
            "samples": 300,
            "memory_jobs": 2000,
            "profile_jobs": 2000,
            "startup_repeats": 5,
        }
    )
    for name, value in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    check_redis_url(parser, args.redis_url)
    return args


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    conn = redis.Redis.from_url(args.redis_url)
    try:
        conn.ping()
    except redis.ConnectionError as exc:
        log(f"no Redis server at {args.redis_url}: {exc}")
        return 2
    probe = Probe(args.redis_url)
    bench = Bench(conn, probe)
    raw: Side = RawSide(args.redis_url, probe)
    hy = HueyardSide(args.redis_url, probe)
    started = time.monotonic()
    try:
        runs = measure(bench, raw, hy, args)
        log("consumer start to first job: real consumer processes")
        runs["startup"] = measure_startup(args.redis_url, args.startup_repeats, report=log)
        runs["import_ms"] = import_times()
        profiles = {}
        if not args.no_profile:
            for side_class in (RawSide, HueyardSide):
                side = side_class(args.redis_url, probe, counting=True)
                try:
                    log(f"profile: {side.name}")
                    profiles[side.name] = bench.profile(side, min(args.jobs, 2000), args.workers)
                finally:
                    side.close()
    finally:
        bench.flush()
        raw.close()
        hy.close()
        probe.close()
    rows = summarize(runs, args)
    table = format_table(rows)
    print()
    print(
        f"hueyard vs raw Huey: {args.jobs} jobs, {args.workers} worker threads, "
        f"median of {args.repeats} runs, {args.samples} x {args.repeats} latency samples, "
        f"{args.startup_repeats} consumer start-ups per side"
    )
    print()
    print(table)
    if profiles:
        print()
        print(f"Per-job costs (profile run, {args.profile_jobs} jobs, {args.workers} workers)")
        print()
        print(format_profile(profiles))
    document = {
        "meta": meta(conn, args, time.monotonic() - started),
        "rows": [row.as_dict() for row in rows],
        "runs": runs,
        "profile": profiles,
        "table": table,
    }
    write_json(args.output, document)
    print()
    print(f"written: {args.output}")
    conn.close()
    return 0


def enqueue_contenders(raw: Side, hy: HueyardSide) -> list[tuple[str, Enqueue, str]]:
    """The one-by-one enqueue calls raced against each other, as ``(label, call, handler)``.

    Raw Huey's ``task(payload)``; hueyard's ``framework.enqueue(queue, handler,
    payload)`` (the side's ``enqueue``), the same with a pydantic payload, and
    ``handler.enqueue(payload)``.
    """
    return [
        (raw.name, raw.enqueue, "noop"),
        (hy.name, hy.enqueue, "noop"),
        ("typed", hy.enqueue, "typed"),
        ("handler", hy.enqueue_by_handler, "noop"),
    ]


def measure(bench: Bench, raw: Side, hy: HueyardSide, args: argparse.Namespace) -> dict[str, Any]:
    """Every in-process measurement, ``args.repeats`` times, the two sides interleaved."""
    n, w = args.jobs, args.workers
    runs: dict[str, Any] = {
        key: {raw.name: [], hy.name: []} for key in ("enqueue", "drain", "pickup", "memory")
    }
    runs["bulk"] = {hy.name: []}
    runs["enqueue_typed"] = {hy.name: []}
    runs["enqueue_handler"] = {hy.name: []}
    contenders = enqueue_contenders(raw, hy)
    log("warm-up: connections, Lua scripts, code paths")
    bench.enqueue_rates(contenders, 50)
    for side in (raw, hy):
        bench.drain_rate(side, 50, w)
    for rep in range(args.repeats):
        order = (raw, hy) if rep % 2 == 0 else (hy, raw)
        label = f"run {rep + 1}/{args.repeats}"
        rates = bench.enqueue_rates(contenders if rep % 2 == 0 else contenders[::-1], n)
        for side in order:
            runs["enqueue"][side.name].append(rates[side.name])
            log(f"{label} enqueue one by one   {side.name:9} {rates[side.name]:9,.0f} jobs/s")
        runs["enqueue_typed"][hy.name].append(rates["typed"])
        log(f"{label} enqueue (pydantic)   {hy.name:9} {rates['typed']:9,.0f} jobs/s")
        runs["enqueue_handler"][hy.name].append(rates["handler"])
        log(f"{label} handler.enqueue      {hy.name:9} {rates['handler']:9,.0f} jobs/s")
        rate = bench.bulk_rate(hy, n)
        runs["bulk"][hy.name].append(rate)
        log(f"{label} enqueue_many         {hy.name:9} {rate:9,.0f} jobs/s")
        for side in order:
            drained = bench.drain(side, n, w)
            runs["drain"][side.name].append(drained)
            log(
                f"{label} drain x{w}             {side.name:9} {drained['rate']:9,.0f} jobs/s "
                f"(CPU per job: {drained['client_cpu_us']:,.0f} us here, "
                f"{drained['server_cpu_us']:,.0f} us Redis)"
            )
        for side in order:
            latencies = bench.pickup_latencies(side, args.samples, seed=rep)
            runs["pickup"][side.name].append([round(s * 1000, 4) for s in latencies])
            log(
                f"{label} pickup               {side.name:9} p50 "
                f"{percentile(latencies, 50) * 1000:.2f} ms, p99 "
                f"{percentile(latencies, 99) * 1000:.2f} ms"
            )
        for side in order:
            result = bench.memory(side, args.memory_jobs, w)
            runs["memory"][side.name].append(result)
            log(
                f"{label} memory               {side.name:9} "
                f"{result['retained_keys']:,.0f} B/job kept (keys), "
                f"{result['retained_used_memory_delta']:,.0f} B/job (used_memory)"
            )
    return runs


def summarize(runs: dict[str, Any], args: argparse.Namespace) -> list[Row]:
    raw_name, hy_name = RawSide.name, HueyardSide.name
    enqueue_raw = median(runs["enqueue"][raw_name])
    enqueue_hy = median(runs["enqueue"][hy_name])
    bulk = median(runs["bulk"][hy_name])
    typed = median(runs["enqueue_typed"][hy_name])
    by_handler = median(runs["enqueue_handler"][hy_name])

    def drain(name: str, key: str = "rate") -> float:
        return median([run[key] for run in runs["drain"][name]])

    drain_raw, drain_hy = drain(raw_name), drain(hy_name)
    cpu_raw, cpu_hy = drain(raw_name, "client_cpu_us"), drain(hy_name, "client_cpu_us")
    pickup = {
        name: [s for run in runs["pickup"][name] for s in run] for name in (raw_name, hy_name)
    }
    p50 = {name: percentile(samples, 50) for name, samples in pickup.items()}  # ms
    p99 = {name: percentile(samples, 99) for name, samples in pickup.items()}

    def mem(name: str, key: str) -> float:
        return median([run[key] for run in runs["memory"][name]])

    rows = [
        Row(
            "enqueue one by one",
            "jobs/s",
            enqueue_raw,
            enqueue_hy,
            ratio(enqueue_hy, enqueue_raw),
            target=0.95,
            note="raw Huey task(payload) vs framework.enqueue(queue, handler, payload)",
        ),
        Row(
            "enqueue one by one, handler.enqueue",
            "jobs/s",
            enqueue_raw,
            by_handler,
            ratio(by_handler, enqueue_raw),
            target=0.95,
            note="raw Huey task(payload) vs handler.enqueue(payload), in the same race",
        ),
        Row(
            "enqueue one by one, pydantic payload",
            "jobs/s",
            enqueue_raw,
            typed,
            ratio(typed, enqueue_raw),
            note="hueyard validates the payload against a pydantic model; raw Huey has none",
        ),
        Row(
            "bulk enqueue (enqueue_many)",
            "jobs/s",
            enqueue_raw,
            bulk,
            ratio(bulk, enqueue_raw),
            note="raw Huey has no bulk enqueue: its column is one by one",
        ),
        Row(
            "bulk enqueue vs hueyard one by one",
            "jobs/s",
            enqueue_hy,
            bulk,
            ratio(bulk, enqueue_hy),
            target=5.0,
            note="both columns are hueyard here: one by one, then enqueue_many",
        ),
        Row(
            f"drain, {args.workers} worker threads",
            "jobs/s",
            drain_raw,
            drain_hy,
            ratio(drain_hy, drain_raw),
            target=1.6,
        ),
        Row(
            "  drain, client CPU per job",
            "us",
            cpu_raw,
            cpu_hy,
            ratio(cpu_hy, cpu_raw),
            better="lower",
            note="CPU time of the benchmark process (all its threads) per drained job",
        ),
        Row(
            "pickup latency p50, idle worker",
            "ms",
            p50[raw_name],
            p50[hy_name],
            ratio(p50[hy_name], p50[raw_name]),
            better="lower",
        ),
        Row(
            "pickup latency p99, idle worker",
            "ms",
            p99[raw_name],
            p99[hy_name],
            ratio(p99[hy_name], p99[raw_name]),
            better="lower",
            target=1.1,
        ),
        startup_row(runs["startup"], runs["import_ms"]),
        Row(
            "Redis memory per waiting job",
            "bytes",
            mem(raw_name, "waiting_keys"),
            mem(hy_name, "waiting_keys"),
            ratio(mem(hy_name, "waiting_keys"), mem(raw_name, "waiting_keys")),
            better="lower",
            note="MEMORY USAGE summed over the benchmark DB's keys, divided by the jobs",
        ),
        Row(
            "Redis memory per retained completed job",
            "bytes",
            mem(raw_name, "retained_keys"),
            mem(hy_name, "retained_keys"),
            ratio(mem(hy_name, "retained_keys"), mem(raw_name, "retained_keys")),
            better="lower",
            limit=1024,
            note=f"after {args.memory_jobs} jobs with keep_completed = {args.memory_jobs}; "
            "raw Huey keeps only the pickled result (forever), hueyard the whole job record; "
            "the target is on the hueyard column (python -m benchmarks.memory_breakdown)",
        ),
        Row(
            "  same, INFO used_memory delta",
            "bytes",
            mem(raw_name, "retained_used_memory_delta"),
            mem(hy_name, "retained_used_memory_delta"),
            ratio(
                mem(hy_name, "retained_used_memory_delta"),
                mem(raw_name, "retained_used_memory_delta"),
            ),
            better="lower",
            note="server-wide: other clients' writes add noise",
        ),
    ]
    return rows


def meta(conn: redis.Redis, args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    import pydantic

    server: dict[str, Any] = conn.info("server")
    return {
        **machine("benchmarks.run"),
        "pydantic": pydantic.__version__,
        "redis_server": server.get("redis_version"),
        "redis_url": args.redis_url,
        "jobs": args.jobs,
        "workers": args.workers,
        "repeats": args.repeats,
        "latency_samples_per_run": args.samples,
        "memory_jobs": args.memory_jobs,
        "profile_jobs": args.profile_jobs,
        "startup_repeats": args.startup_repeats,
        "quick": args.quick,
        "seconds": round(seconds, 1),
    }


if __name__ == "__main__":
    raise SystemExit(main())
