"""From a consumer's start to its first job: raw Huey vs hueyard, real consumer processes.

    .venv/bin/python -m benchmarks.startup [--repeats 5]

Each run of a side: FLUSHDB, enqueue one job, start the real consumer as a
subprocess and time from just before ``subprocess.Popen`` to the start of the
job's handler, which pushes its ``time.time()`` to a Redis list that this
process BLPOPs. Then the consumer gets SIGTERM and is waited for. Both sides
start the same way, with this Python and Huey's consumer, one thread worker::

    python -m huey.bin.huey_consumer <target> -w 1 -k thread

- raw Huey: ``benchmarks.startup_apps.raw.huey`` (``PriorityRedisHuey`` and one task);
- hueyard: ``framework.app``, with ``HUEYARD_CONFIG`` a temporary TOML (one queue,
  ``bench``, concurrency 1, the benchmark database, prefix ``bench``),
  ``HUEYARD_HANDLER_PACKAGES=""`` and
  ``HUEYARD_HANDLER_MODULES=benchmarks.startup_apps.handlers``.

One unrecorded warm-up run per side first (the disk cache, and the ``.pyc``
files: the children may write bytecode even where this environment sets
``PYTHONDONTWRITEBYTECODE``, since an installed package is compiled and a
source checkout run once has its bytecode too), then ``--repeats`` runs each,
the order flipping every run. It prints the medians and the spread, and the
import time of ``huey`` and ``framework`` (``python -X importtime``) to show
where the start-up time goes. It empties the benchmark database (default 8).
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import redis

from benchmarks.measure import BenchmarkError, add_redis_url, check_redis_url
from benchmarks.report import Row, format_table, median, ratio
from benchmarks.sides import HueyardSide, RawSide
from benchmarks.startup_apps import RAW_QUEUE, RAW_TASK, STARTED_KEY, URL_ENV, raw_job

__all__ = ["import_time_ms", "import_times", "measure", "startup_row"]

ROOT = Path(__file__).resolve().parent.parent
"""The checkout root: the consumers run here, so ``benchmarks`` is importable."""

QUEUE = "bench"

HANDLER_MODULE = "benchmarks.startup_apps.handlers"

CONFIG = """\
[redis]
url = {url}
prefix = "bench"

[queues.bench]
concurrency = 1
"""
"""The hueyard consumer's config; ``url`` is filled in as a TOML string."""

FIRST_JOB_TIMEOUT = 60.0
"""Seconds a consumer gets to start its first job."""

STOP_TIMEOUT = 40.0
"""Seconds a consumer gets to exit after SIGTERM before it is killed."""

IMPORT_RUNS = 3
"""Fresh interpreters per ``python -X importtime`` reading (the median is kept)."""

_ENV_DROPPED = (
    "REDIS_URL",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_PASSWORD",
    "REDIS_DB",
    "HUEYARD_CONFIG",
    "HUEYARD_QUEUES",
    "HUEYARD_HANDLER_PACKAGES",
    "HUEYARD_HANDLER_MODULES",
)
"""Variables of this environment that would point a consumer elsewhere than the benchmark DB."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def consumer_command(target: str) -> list[str]:
    """The same command for both sides: this Python, Huey's consumer, one thread worker.

    ``-w`` is ignored by hueyard (the queue's ``concurrency`` decides); it is
    passed to both so that the commands differ only in their target.
    """
    return [sys.executable, "-m", "huey.bin.huey_consumer", target, "-w", "1", "-k", "thread"]


def child_env(url: str, **extra: str) -> dict[str, str]:
    """This environment, without what could redirect a consumer, plus the benchmark DB's URL.

    Bytecode may be written, so that no side compiles its modules from source
    on every start (Huey's were compiled when pip installed it; hueyard's, in a
    checkout installed in editable mode, would not be).
    """
    env = {name: value for name, value in os.environ.items() if name not in _ENV_DROPPED}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env[URL_ENV] = url
    env.update(extra)
    return env


def _ignore(payload: Any) -> None:
    """The handler as this process knows it: it only enqueues, never runs it."""


class Starter(Protocol):
    """One side: its job, enqueued from here, and the consumer that runs it."""

    name: str
    target: str
    env: dict[str, str]

    def enqueue(self) -> None: ...

    def close(self) -> None: ...


class RawStarter:
    """Raw Huey: the task of ``startup_apps.raw``, enqueued here; its consumer."""

    name = RawSide.name
    target = "benchmarks.startup_apps.raw.huey"

    def __init__(self, url: str) -> None:
        from huey import PriorityRedisHuey

        self.huey = PriorityRedisHuey(RAW_QUEUE, url=url)
        self.task = self.huey.task(name=RAW_TASK)(raw_job)  # the consumer's task, by name
        self.env = child_env(url)

    def enqueue(self) -> None:
        self.task({})

    def close(self) -> None:
        self.huey.storage.conn.connection_pool.disconnect()


class HueyardStarter:
    """hueyard: ``huey_consumer framework.app`` on a one-queue config written to ``directory``."""

    name = HueyardSide.name
    target = "framework.app"

    def __init__(self, url: str, directory: Path) -> None:
        from framework.application import Hueyard
        from framework.config import load_settings
        from framework.handlers import HandlerRegistry, handler

        config = directory / "queues.toml"
        config.write_text(CONFIG.format(url=json.dumps(url)), encoding="utf-8")
        registry = HandlerRegistry()
        handler(QUEUE, name="started", registry=registry)(_ignore)
        self.app = Hueyard(load_settings(config, env={}), registry)
        self.env = child_env(
            url,
            HUEYARD_CONFIG=str(config),
            HUEYARD_HANDLER_PACKAGES="",
            HUEYARD_HANDLER_MODULES=HANDLER_MODULE,
        )

    def enqueue(self) -> None:
        self.app.enqueue(QUEUE, "started", {})

    def close(self) -> None:
        self.app.close()


def first_job(conn: redis.Redis, starter: Starter, log_path: Path) -> float:
    """Seconds from just before ``Popen`` to the start of the consumer's first job.

    The database is emptied and one job enqueued before the clock starts; the
    consumer is stopped with SIGTERM (and waited for) before this returns.
    """
    conn.flushdb()
    starter.enqueue()
    with log_path.open("wb") as output:
        began = time.time()
        process = subprocess.Popen(
            consumer_command(starter.target),
            cwd=ROOT,
            env=starter.env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            started = _wait_started(conn, process)
        finally:
            _stop(process)
    if started is None:
        output_text = log_path.read_text(encoding="utf-8", errors="replace")
        raise BenchmarkError(
            f"{starter.name}: the consumer ran no job within {FIRST_JOB_TIMEOUT:.0f} s "
            f"(exit status {process.returncode}); its output:\n{output_text}"
        )
    return started - began


def _wait_started(conn: redis.Redis, process: subprocess.Popen[bytes]) -> float | None:
    """The handler's start time, or None if the consumer exited or took too long."""
    deadline = time.monotonic() + FIRST_JOB_TIMEOUT
    while time.monotonic() < deadline:
        reply = conn.blpop([STARTED_KEY], timeout=1)
        if reply is not None:
            return float(reply[1])
        if process.poll() is not None:
            return None
    return None


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def measure(
    url: str, repeats: int, *, report: Callable[[str], None] = log
) -> dict[str, list[float]]:
    """Seconds to the first job, ``repeats`` runs per side, after one warm-up run each.

    The sides alternate and the order flips every run. Empties the database.
    """
    conn = redis.Redis.from_url(url)
    runs: dict[str, list[float]] = {RawStarter.name: [], HueyardStarter.name: []}
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        directory = Path(tmp)
        starters: list[Starter] = [RawStarter(url), HueyardStarter(url, directory)]
        try:
            for starter in starters:
                first_job(conn, starter, directory / "warm-up.log")
            for rep in range(repeats):
                order = starters if rep % 2 == 0 else starters[::-1]
                for starter in order:
                    seconds = first_job(conn, starter, directory / f"run-{rep}.log")
                    runs[starter.name].append(seconds)
                    report(
                        f"run {rep + 1}/{repeats} consumer start to first job "
                        f"{starter.name:9} {seconds:.3f} s"
                    )
        finally:
            for starter in starters:
                starter.close()
            conn.flushdb()
            conn.close()
    return runs


def import_time_ms(module: str, runs: int = IMPORT_RUNS) -> float:
    """``python -X importtime -c "import <module>"``: the top-level line's cumulative time.

    In milliseconds, the median of ``runs`` fresh interpreters.
    """
    values = []
    for _ in range(runs):
        completed = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
            capture_output=True,
            text=True,
            check=True,
        )
        values.append(_top_level_us(completed.stderr, module) / 1000)
    return statistics.median(values)


def _top_level_us(report: str, module: str) -> float:
    """The cumulative microseconds of ``module``'s own line (not indented: imported first-hand)."""
    for line in report.splitlines():
        parts = line.split("|")
        if (
            line.startswith("import time:")
            and len(parts) == 3
            and parts[2].rstrip() == f" {module}"
        ):
            return float(parts[1])
    raise BenchmarkError(f"python -X importtime printed no top-level line for {module!r}")


def import_times() -> dict[str, float]:
    """Milliseconds to import ``huey`` and ``framework`` in a fresh interpreter."""
    return {module: import_time_ms(module) for module in ("huey", "framework")}


def startup_row(runs: dict[str, list[float]], imports: dict[str, float]) -> Row:
    """The summary row: median seconds to the first job, target <= 1.0x raw Huey."""
    raw, hy = median(runs[RawSide.name]), median(runs[HueyardSide.name])
    return Row(
        "consumer start to first job",
        "s",
        raw,
        hy,
        ratio(hy, raw),
        better="lower",
        target=1.0,
        note=f"real consumer processes, median of {len(runs[RawSide.name])} runs each "
        f"(raw Huey {_spread(runs[RawSide.name])}, hueyard {_spread(runs[HueyardSide.name])}); "
        f"import huey {imports['huey']:.0f} ms, import framework {imports['framework']:.0f} ms "
        "(python -X importtime, cumulative)",
    )


def _spread(values: Sequence[float]) -> str:
    return f"{min(values):.3f}-{max(values):.3f} s" if values else "no runs"


def format_runs(runs: dict[str, list[float]]) -> str:
    """Per side: median, min, max and every run, in seconds."""
    lines = [
        "| side | median (s) | min (s) | max (s) | every run (s) |",
        "|---|---:|---:|---:|---|",
    ]
    for name, values in runs.items():
        every = ", ".join(f"{value:.3f}" for value in values)
        lines.append(
            f"| {name} | {median(values):.3f} | {min(values):.3f} | {max(values):.3f} | {every} |"
        )
    return "\n".join(lines)


def format_imports(imports: dict[str, float]) -> str:
    lines = ["| import | ms |", "|---|---:|"]
    lines += [f"| import {module} | {ms:,.0f} |" for module, ms in imports.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.startup",
        description="Seconds from a consumer's start to its first job, raw Huey vs hueyard.",
    )
    parser.add_argument("--repeats", type=int, default=5, help="runs per side (default 5)")
    add_redis_url(parser)
    args = parser.parse_args(argv)
    check_redis_url(parser, args.redis_url)
    try:
        redis.Redis.from_url(args.redis_url).ping()
    except redis.ConnectionError as exc:
        log(f"no Redis server at {args.redis_url}: {exc}")
        return 2
    runs = measure(args.redis_url, args.repeats)
    imports = import_times()
    print()
    print(
        f"consumer start to first job: {args.repeats} runs per side, order flipping every run; "
        f"`{' '.join(consumer_command('<target>')[1:])}`"
    )
    print()
    print(format_table([startup_row(runs, imports)]))
    print()
    print(format_runs(runs))
    print()
    print(
        f"Where start-up time goes: python -X importtime, cumulative time of the top-level "
        f"import, median of {IMPORT_RUNS} fresh interpreters"
    )
    print()
    print(format_imports(imports))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
