"""The measurements. Each starts from an empty benchmark database (FLUSHDB).

Every function takes a side (:mod:`benchmarks.sides`) and returns plain
numbers; :mod:`benchmarks.run` repeats them, interleaving the two sides, and
:mod:`benchmarks.report` turns them into the table.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import redis

from benchmarks.redisstats import (
    command_delta,
    commandstats,
    keys_memory,
    server_cpu,
    used_memory,
)
from benchmarks.sides import Side
from benchmarks.workload import COUNTER_KEY, Probe, whatsapp_message

__all__ = [
    "BenchmarkError",
    "Bench",
    "Enqueue",
    "percentile",
]

DEFAULT_URL = "redis://127.0.0.1:6379/8"
"""The benchmark database. Every benchmark command FLUSHDBs the one it uses."""


def add_redis_url(parser: argparse.ArgumentParser) -> None:
    """The ``--redis-url`` option every benchmark command takes (or ``$BENCH_REDIS_URL``)."""
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", DEFAULT_URL),
        help=f"the database to use; it is FLUSHDB'd (default {DEFAULT_URL})",
    )


def check_redis_url(parser: argparse.ArgumentParser, url: str) -> None:
    """Refuse a URL without a database number: the command would empty database 0."""
    if not urlsplit(url).path.strip("/").isdigit():
        parser.error(
            f"--redis-url {url!r} names no database; add one, e.g. "
            f"{DEFAULT_URL} (the benchmark FLUSHDBs it)"
        )


ENQUEUE_BLOCK = 250
"""Jobs per turn when one-by-one enqueue rates are measured side by side."""

Enqueue = Callable[[str, Any], None]
"""One enqueue call: ``enqueue(handler, payload)``."""

IDLE_SETTLE = 0.5
"""Seconds a fresh consumer gets to reach its blocking wait before latency samples."""

IDLE_GAP = (0.010, 0.030)
"""Seconds (uniform random) between two latency samples, so the worker is idle again."""


class BenchmarkError(RuntimeError):
    """A measurement could not complete (jobs missing, consumer stuck)."""


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Bench:
    """The shared state of one run: the benchmark database and the probe."""

    conn: redis.Redis
    probe: Probe

    def flush(self) -> None:
        """Empty the benchmark database (and only it) before a measurement."""
        self.conn.flushdb()

    def payloads(self, n: int) -> list[dict[str, Any]]:
        return [whatsapp_message(i) for i in range(n)]

    # -- 1. enqueue one by one, 2. bulk -----------------------------------------------------

    def enqueue_rate(self, side: Side, n: int, handler: str = "noop") -> float:
        """Jobs/s enqueueing ``n`` jobs one call at a time from this thread."""
        return self.enqueue_rates([(side.name, side.enqueue, handler)], n)[side.name]

    def enqueue_rates(
        self, contenders: Sequence[tuple[str, Enqueue, str]], n: int, block: int = ENQUEUE_BLOCK
    ) -> dict[str, float]:
        """Jobs/s of each ``(label, enqueue, handler)``, ``n`` jobs each, one call at a time.

        ``enqueue(handler, payload)`` is the call timed: a side's ``enqueue``, or
        another call of the same side (``HueyardSide.enqueue_by_handler``). The
        contenders take turns in blocks of ``block`` jobs (the order flips
        every block), so a burst of noise on the machine hits all of them.
        """
        payloads = self.payloads(n)
        self.flush()
        elapsed = dict.fromkeys((label for label, _, _ in contenders), 0.0)
        for index, start in enumerate(range(0, n, block)):
            chunk = payloads[start : start + block]
            order = contenders if index % 2 == 0 else list(reversed(contenders))
            for label, enqueue, handler in order:
                began = time.perf_counter()
                for payload in chunk:
                    enqueue(handler, payload)
                elapsed[label] += time.perf_counter() - began
        return {label: n / seconds for label, seconds in elapsed.items()}

    def bulk_rate(self, side: Side, n: int) -> float:
        """Jobs/s enqueueing ``n`` jobs in one ``enqueue_many`` call."""
        payloads = self.payloads(n)
        self.flush()
        started = time.perf_counter()
        side.enqueue_many("noop", payloads)
        return n / (time.perf_counter() - started)

    # -- 3. drain ---------------------------------------------------------------------------

    def drain_rate(self, side: Side, n: int, workers: int) -> float:
        """Jobs/s for ``workers`` threads to run ``n`` pre-enqueued no-op jobs."""
        return self.drain(side, n, workers)["rate"]

    def drain(self, side: Side, n: int, workers: int) -> dict[str, float]:
        """Drain ``n`` pre-enqueued no-op jobs with ``workers`` threads.

        Returns ``rate`` (jobs/s, from the consumer's start to the last job's
        ``INCR``), ``client_cpu_us`` (this process's CPU per job: workers,
        scheduler, lease keeper) and ``server_cpu_us`` (Redis CPU per job,
        server-wide, so other clients add noise).
        """
        self.flush()
        side.enqueue_many("noop", self.payloads(n))
        self.probe.arm(n)
        cpu, redis_cpu = time.process_time(), server_cpu(self.conn)
        started = time.perf_counter()
        with side.consumer(workers):
            finished = self.probe.done.wait(self._drain_timeout(n))
            elapsed = time.perf_counter() - started
            cpu, redis_cpu = time.process_time() - cpu, server_cpu(self.conn) - redis_cpu
        if not finished:
            raise BenchmarkError(
                f"{side.name}: drain of {n} jobs did not finish in {self._drain_timeout(n):.0f} s "
                f"({self.probe.count()} done)"
            )
        return {
            "rate": n / elapsed,
            "client_cpu_us": cpu / n * 1e6,
            "server_cpu_us": redis_cpu / n * 1e6,
        }

    @staticmethod
    def _drain_timeout(n: int) -> float:
        return max(60.0, n / 50)

    # -- 4. pickup latency ------------------------------------------------------------------

    def pickup_latencies(self, side: Side, samples: int, seed: int = 0) -> list[float]:
        """Seconds from the enqueue call to the handler's start, one idle worker."""
        rng = random.Random(seed)
        payload = whatsapp_message(0)
        latencies: list[float] = []
        self.flush()
        self.probe.arm(0)
        with side.consumer(1):
            time.sleep(IDLE_SETTLE)
            for _ in range(samples):
                self.probe.started.clear()
                started = time.perf_counter()
                side.enqueue("noop", payload)
                if not self.probe.started.wait(10):
                    raise BenchmarkError(f"{side.name}: a job did not start within 10 s")
                latencies.append(self.probe.started_at - started)
                time.sleep(rng.uniform(*IDLE_GAP))
        return latencies

    # -- 5. memory --------------------------------------------------------------------------

    def memory(self, side: Side, k: int, workers: int) -> dict[str, float]:
        """Bytes per job: waiting, then retained after completion (keep_completed = k).

        ``*_keys`` sums ``MEMORY USAGE`` over the benchmark DB (exact);
        ``used_memory_delta`` is the server-wide ``INFO memory`` difference.
        """
        self.flush()
        self.probe.arm(k)
        payloads = self.payloads(k)
        time.sleep(0.05)
        before = used_memory(self.conn)
        side.enqueue_many("send", payloads)
        waiting_bytes, _ = keys_memory(self.conn, exclude=(COUNTER_KEY,))
        with side.consumer(workers, keep_completed=k):
            if not self.probe.done.wait(self._drain_timeout(k)):
                raise BenchmarkError(f"{side.name}: {k} jobs did not finish")
        # The graceful stop waited for the last releases / result writes.
        after = used_memory(self.conn)
        retained_bytes, retained_keys = keys_memory(self.conn, exclude=(COUNTER_KEY,))
        return {
            "waiting_keys": waiting_bytes / k,
            "retained_keys": retained_bytes / k,
            "retained_used_memory_delta": (after - before) / k,
            "retained_key_count": retained_keys,
        }

    # -- where the time goes ----------------------------------------------------------------

    def profile(self, side: Side, n: int, workers: int) -> dict[str, Any]:
        """Per job: client round trips (by command), client CPU, Redis commands and CPU.

        ``side`` must be built with ``counting=True``. Redis-side numbers are
        server-wide deltas minus the ambient rate measured just before. The
        drain is read when the last job is done (plus 50 ms for its release),
        before the consumer's shutdown.
        """
        assert side.round_trips is not None, "build the side with counting=True"
        ambient = self._ambient_rate()
        payloads = self.payloads(n)
        phases: dict[str, Any] = {}

        self.flush()
        start = self._readings(side)
        for payload in payloads:
            side.enqueue("noop", payload)
        phases["enqueue"] = self._per_job(side, start, n, ambient)

        if side.has_bulk:
            self.flush()
            start = self._readings(side)
            side.enqueue_many("noop", payloads)
            phases["enqueue_many"] = self._per_job(side, start, n, ambient)

        self.probe.arm(n)
        start = self._readings(side)
        with side.consumer(workers):
            if not self.probe.done.wait(self._drain_timeout(n)):
                raise BenchmarkError(f"{side.name}: profile drain did not finish")
            time.sleep(0.05)
            phases["drain"] = self._per_job(side, start, n, ambient)
        return {"jobs": n, "workers": workers, "ambient_calls_per_s": ambient, "phases": phases}

    def _readings(self, side: Side) -> dict[str, Any]:
        assert side.round_trips is not None
        total, by_command = side.round_trips.snapshot()
        return {
            "round_trips": total,
            "by_command": by_command,
            "stats": commandstats(self.conn),
            "client_cpu": time.process_time(),
            "server_cpu": server_cpu(self.conn),
            "time": time.perf_counter(),
        }

    def _per_job(
        self, side: Side, start: dict[str, Any], n: int, ambient: dict[str, float]
    ) -> dict[str, Any]:
        end = self._readings(side)
        elapsed = end["time"] - start["time"]
        server = {}
        for command, (calls, usec) in command_delta(start["stats"], end["stats"]).items():
            own = calls - ambient.get(command, 0.0) * elapsed
            if command == "info":
                own -= 2  # our own readings
            if own > 0.5:
                server[command] = {"calls": own / n, "usec": usec / n}
        by0, by1 = start["by_command"], end["by_command"]
        return {
            "seconds": elapsed,
            "round_trips": (end["round_trips"] - start["round_trips"]) / n,
            "round_trips_by_command": {
                c: (by1[c] - by0.get(c, 0)) / n for c in sorted(by1) if by1[c] > by0.get(c, 0)
            },
            "client_cpu_us": (end["client_cpu"] - start["client_cpu"]) / n * 1e6,
            "server_cpu_us": (end["server_cpu"] - start["server_cpu"]) / n * 1e6,
            "server_calls": sum(v["calls"] for v in server.values()),
            "server_commands": server,
        }

    def _ambient_rate(self, seconds: float = 1.0) -> dict[str, float]:
        """Calls per second other clients of the server make while we are idle."""
        before = commandstats(self.conn)
        time.sleep(seconds)
        after = commandstats(self.conn)
        return {c: calls / seconds for c, (calls, _) in command_delta(before, after).items()}
