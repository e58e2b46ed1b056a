"""Draining on a 1-master vs a 3-master Redis Cluster, same consumers, same run::

    .venv/bin/python -m benchmarks.cluster            # 3 repeats of 20,000 jobs
    .venv/bin/python -m benchmarks.cluster --quick    # 1 run of 2,000 jobs, a smoke check

Starts its own clusters (``redis-server`` in cluster mode on loopback ports, no
persistence, no replicas: tests/topology.py ``ClusterGroup``), so nothing else
is touched. Each run, on each cluster in turn (the order flips every repeat):

1. ``FLUSHALL`` on every master; the queues paused; ``--jobs`` no-op jobs
   enqueued, spread evenly over ``--queues`` queues (the CRM's queue names),
   with ``enqueue_many`` from this process;
2. ``--consumers`` real ``huey_consumer framework.app`` processes started with
   ``[redis] cluster = true``, every queue at ``concurrency = --concurrency``,
   and waited for;
3. every queue resumed, and timed until no queue holds a waiting, active or
   delayed job; then the per-minute metrics must count every job completed,
   none failed.

Measured: jobs/s of the enqueue and of the drain; Redis CPU per job (``INFO
cpu`` ``used_cpu_sys + used_cpu_user`` deltas summed over the masters, divided
by the jobs); the busiest master's CPU during the drain (% of one core: the
shard that limits first); the consumers' CPU per job (``/proc``). Each queue's
keys carry its hash tag ``{bench:<queue>}``, so a queue lives on one master:
the table says which master holds which queues. Prints a table of the medians
and writes every run to ``benchmarks/results/cluster.json``.

On a machine with few cores the consumers (Python) are the bottleneck long
before Redis: compare the Redis CPU per job and the busiest master's load,
which say how many jobs/s one shard carries, more than the jobs/s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from benchmarks import cluster_handlers
from benchmarks.report import machine, write_json
from tests.topology import ClusterGroup

RESULTS = Path(__file__).parent / "results" / "cluster.json"
ROOT = Path(__file__).resolve().parent.parent
PREFIX = "bench"
QUEUE_NAMES = tuple(tomllib.loads((ROOT / "config" / "queues.toml").read_text())["queues"])
"""The CRM's ten queues, as config/queues.toml declares them; ``--queues N`` takes the first N."""

READY_LINE = "hueyard consumer pid"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 40.0
POLL = 0.1
"""Seconds between two reads of the queues' counts while they drain."""
SETTLE = 0.5
"""Seconds the started consumers get to reach their blocking wait before the clock starts."""

_ENV_DROPPED = ("REDIS_", "HUEYARD_")
"""Variables that would point a consumer elsewhere than the benchmark's cluster."""

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cluster",
        description="Drain on a 1-master vs a 3-master Redis Cluster, same consumers.",
    )
    parser.add_argument("--jobs", type=int, help="jobs per drain (default 20000)")
    parser.add_argument("--repeats", type=int, help="runs per cluster (default 3)")
    parser.add_argument(
        "--queues", type=int, default=10, help="queues the jobs are spread over (1-10, default 10)"
    )
    parser.add_argument(
        "--consumers", type=int, default=2, help="huey_consumer processes (default 2)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=2, help="worker threads per queue (default 2)"
    )
    parser.add_argument(
        "--masters",
        type=int,
        nargs=2,
        default=(1, 3),
        metavar=("FEW", "MANY"),
        help="masters of the two clusters compared (default 1 3)",
    )
    parser.add_argument(
        "--base-port",
        type=int,
        help="first node port (the nodes take consecutive ports; default: free ports)",
    )
    parser.add_argument("--quick", action="store_true", help="2,000 jobs, one run: a smoke check")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args(argv)
    defaults = {"jobs": 2000, "repeats": 1} if args.quick else {"jobs": 20000, "repeats": 3}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if not 1 <= args.queues <= len(QUEUE_NAMES):
        parser.error(f"--queues {args.queues}: give 1 to {len(QUEUE_NAMES)}")
    if args.jobs < args.queues:
        parser.error(f"--jobs {args.jobs}: give at least one job per queue ({args.queues})")
    return args


# -- one cluster, its producer app and its consumers ------------------------------------------


def config_text(url: str, queues: Sequence[str], concurrency: int) -> str:
    tables = "".join(f"[queues.{queue}]\nconcurrency = {concurrency}\n\n" for queue in queues)
    return (
        f'[redis]\nurl = "{url}"\nprefix = "{PREFIX}"\ncluster = true\n\n'
        f"[consumer]\nshutdown_timeout = 30\n\n{tables}"
    )


@dataclass
class Consumer:
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def cpu_seconds(self) -> float:
        """User + system CPU of the consumer (all its threads) so far; NaN without /proc."""
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text(encoding="ascii")
        except OSError:
            return float("nan")
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Topology:
    """A running cluster of ``masters`` masters, with the app that enqueues and reads."""

    def __init__(
        self, directory: Path, masters: int, args: argparse.Namespace, base_port: int | None
    ) -> None:
        from framework.application import Hueyard
        from framework.config import parse_settings
        from framework.handlers import HandlerRegistry

        self.name = f"{masters} master" + ("s" if masters > 1 else "")
        self.directory = directory
        self.queues = list(QUEUE_NAMES[: args.queues])
        self.args = args
        self.cluster = ClusterGroup(
            directory / "nodes", masters=masters, replicas_per_master=0, base_port=base_port
        ).start()
        self.config = directory / "queues.toml"
        text = config_text(self.cluster.url, self.queues, args.concurrency)
        self.config.write_text(text, encoding="utf-8")
        registry = HandlerRegistry()
        cluster_handlers.register(self.queues, registry)
        self.app = Hueyard(parse_settings(text, source=str(self.config), env={}), registry)

    def placement(self) -> dict[int, list[str]]:
        """Master port -> the queues whose keys it holds."""
        where: dict[int, list[str]] = defaultdict(list)
        for queue in self.queues:
            where[self.cluster.master_of_key(f"{{{PREFIX}:{queue}}}")].append(queue)
        return dict(sorted(where.items()))

    def redis_cpu(self) -> dict[int, float]:
        """Master port -> its ``used_cpu_sys + used_cpu_user`` so far (seconds)."""
        readings = {}
        for port in self.cluster.master_ports():
            with redis.Redis(port=port) as node:
                info = node.info("cpu")
            readings[port] = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
        return readings

    def flush(self) -> None:
        for port in self.cluster.master_ports():
            with redis.Redis(port=port) as node:
                node.flushall()

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_ENV_DROPPED)}
        env.update(
            HUEYARD_CONFIG=str(self.config),
            HUEYARD_HANDLER_PACKAGES="",
            HUEYARD_HANDLER_MODULES=cluster_handlers.__name__,
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            PYTHONUNBUFFERED="1",
        )
        env[cluster_handlers.QUEUES_ENV] = ",".join(self.queues)
        return env

    @contextmanager
    def consumers(self, count: int, run: str) -> Iterator[list[Consumer]]:
        """``count`` consumer processes of every queue, ready; stopped (SIGTERM) at the end."""
        started: list[Consumer] = []
        try:
            for number in range(count):
                log_path = self.directory / f"{run}-consumer-{number + 1}.log"
                with log_path.open("wb") as output:
                    process = subprocess.Popen(
                        [sys.executable, "-m", "huey.bin.huey_consumer", "framework.app"],
                        cwd=ROOT,
                        env=self.env(),
                        stdin=subprocess.DEVNULL,
                        stdout=output,
                        stderr=subprocess.STDOUT,
                    )
                started.append(Consumer(process, log_path))
            deadline = time.monotonic() + READY_TIMEOUT
            for consumer in started:
                while READY_LINE not in consumer.log():
                    if consumer.process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"a consumer did not start; its log:\n{consumer.log()}")
                    time.sleep(0.05)
            yield started
        finally:
            for consumer in started:
                consumer.stop()

    def close(self) -> None:
        self.app.close()
        self.cluster.stop()


# -- one run ----------------------------------------------------------------------------------


def payloads(n: int) -> list[dict[str, Any]]:
    return [{"n": i, "to": "+4915112345678", "text": "Your order has shipped."} for i in range(n)]


def run_once(topology: Topology, args: argparse.Namespace, run: str) -> dict[str, Any]:
    """Enqueue (paused), start the consumers, resume, time the drain. One run's figures."""
    from framework.jobs import Jobs

    jobs = Jobs(topology.app)
    topology.flush()
    queues = topology.queues
    each, extra = divmod(args.jobs, len(queues))
    batches = {queue: payloads(each + (i < extra)) for i, queue in enumerate(queues)}
    for queue in queues:
        jobs.pause(queue)

    cpu = topology.redis_cpu()
    began = time.perf_counter()
    for queue, batch in batches.items():
        topology.app.enqueue_many(queue, "noop", batch)
    enqueue_seconds = time.perf_counter() - began
    enqueue_cpu = _delta(topology.redis_cpu(), cpu)

    with topology.consumers(args.consumers, run) as consumers:
        time.sleep(SETTLE)
        cpu, consumer_cpu = topology.redis_cpu(), [c.cpu_seconds() for c in consumers]
        began = time.perf_counter()
        for queue in queues:
            jobs.resume(queue)
        while not _drained(jobs, queues):
            time.sleep(POLL)
            for consumer in consumers:
                if consumer.process.poll() is not None:
                    raise RuntimeError(f"a consumer exited mid-drain; its log:\n{consumer.log()}")
        drain_seconds = time.perf_counter() - began
        drain_cpu = _delta(topology.redis_cpu(), cpu)
        consumer_seconds = sum(
            c.cpu_seconds() - before for c, before in zip(consumers, consumer_cpu, strict=True)
        )
    completed, failed = _outcomes(jobs, queues)
    if (completed, failed) != (args.jobs, 0):
        raise RuntimeError(
            f"{topology.name}: {completed} jobs completed and {failed} failed, of {args.jobs}"
        )
    n = args.jobs
    return {
        "enqueue_rate": n / enqueue_seconds,
        "enqueue_redis_cpu_us": sum(enqueue_cpu.values()) / n * 1e6,
        "drain_rate": n / drain_seconds,
        "drain_seconds": drain_seconds,
        "drain_redis_cpu_us": sum(drain_cpu.values()) / n * 1e6,
        "drain_redis_cpu_by_master_s": {str(port): s for port, s in drain_cpu.items()},
        "busiest_master_cpu_percent": max(drain_cpu.values()) / drain_seconds * 100,
        "consumer_cpu_us": consumer_seconds / n * 1e6,
    }


def _delta(after: dict[int, float], before: dict[int, float]) -> dict[int, float]:
    return {port: after[port] - before.get(port, 0.0) for port in after}


def _drained(jobs: Any, queues: Sequence[str]) -> bool:
    counts = jobs.counts_all()
    return all(
        counts[q].waiting == counts[q].active == counts[q].delayed == counts[q].paused == 0
        for q in queues
    )


def _outcomes(jobs: Any, queues: Sequence[str]) -> tuple[int, int]:
    """Jobs completed and failed, from the per-minute metrics of the last 10 minutes."""
    completed = failed = 0
    for queue in queues:
        for point in jobs.metrics(queue, 10):
            completed += point.completed
            failed += point.failed
    return completed, failed


# -- the table --------------------------------------------------------------------------------

ROWS = (
    ("enqueue_many", "enqueue_rate", "jobs/s", "{:,.0f}"),
    ("  Redis CPU per enqueued job, all masters", "enqueue_redis_cpu_us", "us", "{:.1f}"),
    ("drain", "drain_rate", "jobs/s", "{:,.0f}"),
    ("  Redis CPU per drained job, all masters", "drain_redis_cpu_us", "us", "{:.1f}"),
    (
        "  busiest master's CPU during the drain",
        "busiest_master_cpu_percent",
        "% of a core",
        "{:.0f}",
    ),
    ("  consumers' CPU per drained job", "consumer_cpu_us", "us", "{:,.0f}"),
)


def format_table(results: dict[str, list[dict[str, Any]]]) -> str:
    few, many = list(results)
    lines = [f"| metric | {few} | {many} | {many} / {few} |", "|---|---:|---:|---:|"]
    for label, key, unit, fmt in ROWS:
        a = statistics.median(run[key] for run in results[few])
        b = statistics.median(run[key] for run in results[many])
        ratio = f"{b / a:.2f}x" if a else "-"
        lines.append(f"| {label} ({unit}) | {fmt.format(a)} | {fmt.format(b)} | {ratio} |")
    return "\n".join(lines)


def meta(args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    return {
        **machine("benchmarks.cluster"),
        "redis_server": subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=False
        ).stdout.strip(),
        "jobs": args.jobs,
        "repeats": args.repeats,
        "queues": args.queues,
        "consumers": args.consumers,
        "concurrency": args.concurrency,
        "quick": args.quick,
        "seconds": round(seconds, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    results: dict[str, list[dict[str, Any]]] = {}
    placements: dict[str, dict[str, list[str]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp, ExitStack() as stack:
        topologies = []
        next_port = args.base_port
        for masters in args.masters:
            directory = Path(tmp) / f"masters-{masters}"
            directory.mkdir()
            log(f"starting a cluster of {masters} master(s)")
            topology = Topology(directory, masters, args, next_port)
            stack.callback(topology.close)
            topologies.append(topology)
            if next_port is not None:
                next_port += masters
            results[topology.name] = []
            placements[topology.name] = {
                str(port): queues for port, queues in topology.placement().items()
            }
            log(f"  queues per master: {json.dumps(placements[topology.name])}")
        for rep in range(args.repeats):
            order = topologies if rep % 2 == 0 else topologies[::-1]
            for topology in order:
                figures = run_once(topology, args, f"run{rep + 1}-{topology.cluster.masters}m")
                results[topology.name].append(figures)
                log(
                    f"run {rep + 1}/{args.repeats} {topology.name:9} drain "
                    f"{figures['drain_rate']:8,.0f} jobs/s, Redis CPU "
                    f"{figures['drain_redis_cpu_us']:.1f} us/job, busiest master "
                    f"{figures['busiest_master_cpu_percent']:.0f}%"
                )
    table = format_table(results)
    print()
    print(
        f"{args.jobs} jobs over {args.queues} queues, {args.consumers} consumers x "
        f"{args.concurrency} threads per queue, median of {args.repeats} run(s)"
    )
    print()
    print(table)
    print()
    for name, where in placements.items():
        print(f"- {name}: " + "; ".join(f"port {p}: {', '.join(q)}" for p, q in where.items()))
    write_json(
        args.output,
        {
            "meta": meta(args, time.monotonic() - started),
            "placement": placements,
            "runs": results,
            "table": table,
        },
    )
    print()
    print(f"written: {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
