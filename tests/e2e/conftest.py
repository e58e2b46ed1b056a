"""Fixtures that run real ``huey_consumer framework.app`` processes.

The :func:`e2e` fixture gives a test:

- a config TOML in ``tmp_path`` (every queue of ``e2e_handlers``, 1-second
  backoffs, the test Redis database, a key prefix unique to the test);
- ``e2e.app``, the test process's own :class:`Hueyard` built from the same
  config, which the handlers enqueue through, so ``handler.enqueue(...)`` works;
- ``e2e.start_consumer(...)``, which starts ``huey_consumer framework.app`` as
  a subprocess (``HUEYARD_HANDLER_MODULES=tests.e2e.e2e_handlers``), waits
  until it is ready and returns a :class:`ConsumerProcess`;
- ``e2e.records``, what the handlers reported to Redis.

Every consumer's whole process group is SIGKILLed at teardown and its log is
printed, which pytest shows when a test fails.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

import framework.runtime
from framework.application import Hueyard
from framework.config import parse_settings
from framework.handlers import REGISTRY, HandlerRegistry
from framework.jobs import MAX_PAGE_SIZE, JobInfo, Jobs, QueueCounts
from tests.conftest import app_toml
from tests.e2e import e2e_handlers

ROOT = Path(__file__).resolve().parents[2]
"""The checkout root: the consumer imports ``tests.e2e.e2e_handlers`` from here."""

READY_LINE = "hueyard consumer pid"

LIBFAKETIME = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
"""Debian's libfaketime (package faketime, ``bash .ci/ensure-faketime``)."""


def wrong_clock(offset: str) -> dict[str, str]:
    """The environment that sets a consumer's wall clock ``offset`` off (``"+1h"``,
    ``"-1h"``), as on a host whose clock is wrong: libfaketime, preloaded (the
    ``faketime`` command would run the consumer as its child, whose signal handlers a
    test could not see). Its monotonic clock, which timed waits use, stays right."""
    if not LIBFAKETIME:
        pytest.fail("no libfaketime under /usr/lib/*/faketime/; run: bash .ci/ensure-faketime")
    return {
        "LD_PRELOAD": LIBFAKETIME[0],
        "FAKETIME": offset,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


TICK = 0.1
"""[consumer] scheduler_interval of the e2e consumers: due jobs move within a tenth of a second."""
BACKOFF = 0.5
"""Seconds before the first retry on the e2e queues (exponential: 0.5 s, 1 s, ...)."""
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0

T = TypeVar("T")


def _e2e_registry() -> HandlerRegistry:
    # The handlers live in a private registry in this process, so that other
    # tests compiling an app from the global REGISTRY never meet e2e queues.
    registry = HandlerRegistry()
    for spec in list(REGISTRY):
        if spec.module == e2e_handlers.__name__:
            registry.register(spec)
            REGISTRY.unregister(spec.name)
    return registry


E2E_REGISTRY = _e2e_registry()


def config_text(
    redis_url: str,
    prefix: str,
    *,
    shutdown_timeout: float = 8,
    scheduler_interval: float = TICK,
    lease: float | None = None,
    max_stalls: int | None = None,
    abandon_after: float | None = None,
    max_abandoned_threads: int | None = None,
    concurrency: dict[str, int] | None = None,
    schedules: str = "",
    redis_lines: str = "",
) -> str:
    """The e2e config: every queue of ``e2e_handlers``, backoffs from :data:`BACKOFF`.

    ``lease``, ``max_stalls``, ``abandon_after`` and ``max_abandoned_threads``
    set ``[consumer]`` fields that are left at their defaults when not given;
    ``concurrency`` sets the concurrency of the queues it names; ``schedules``
    is TOML added at the end (``[schedules.<name>]`` tables); ``redis_lines`` more
    ``[redis]`` fields (``sentinels = [...]``).
    """
    extra = {
        "lease": lease,
        "max_stalls": max_stalls,
        "abandon_after": abandon_after,
        "max_abandoned_threads": max_abandoned_threads,
    }
    consumer_extra = "".join(
        f"{name} = {value}\n" for name, value in extra.items() if value is not None
    )
    text = app_toml(
        redis_url,
        prefix=prefix,
        redis_lines=redis_lines,
        body=f"""
[defaults]
attempts = 3
backoff = {{ type = "exponential", delay = {BACKOFF} }}

[consumer]
shutdown_timeout = {shutdown_timeout}
scheduler_interval = {scheduler_interval}
{consumer_extra}
[queues.alpha]
concurrency = 2

[queues.beta]

[queues.gamma]

[queues.ordered]
concurrency = 1

[queues.retry]
attempts = 3
backoff = {{ type = "exponential", delay = {BACKOFF} }}
concurrency = 3

[queues.once]
attempts = 1

[queues.slow]
concurrency = 1

[queues.spare]
concurrency = 3

[queues.wide]
concurrency = 3

[queues.chaos]
concurrency = 4
keep_completed = 10000

[queues.throttled]
concurrency = 4
rate_limit = {{ max = 5, per = 1 }}

[queues.pausable]
concurrency = 4
keep_completed = 1000

[queues.timed]
attempts = 1
timeout = 2
concurrency = 1

[queues.blip]
concurrency = 4
keep_completed = 10000

[queues.parents]
concurrency = 1

[queues.kids]
attempts = 1
concurrency = 2
keep_completed = 10000
""",
    )
    for queue, workers in (concurrency or {}).items():
        table = f"[queues.{queue}]\n"
        assert table in text, f"no queue {queue!r} in the e2e config"
        head, tail = text.split(table, 1)
        body, _, rest = tail.partition("\n[")
        lines = [line for line in body.splitlines() if not line.startswith("concurrency")]
        body = "\n".join([f"concurrency = {workers}", *lines])
        text = f"{head}{table}{body}\n" + (f"[{rest}" if rest else "")
    return text + textwrap.dedent(schedules)


def wait_until(
    probe: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.05
) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what} (last value {value!r})")
        time.sleep(interval)


@dataclass
class Records:
    """What the handlers of ``e2e_handlers`` wrote to the Redis list ``key``."""

    conn: redis.Redis
    key: str

    def all(self) -> list[dict[str, Any]]:
        return [json.loads(raw) for raw in self.conn.lrange(self.key, 0, -1)]

    def of(
        self, job: str | None = None, tag: str | None = None, event: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            entry
            for entry in self.all()
            if (job is None or entry["job"] == job)
            and (tag is None or entry["tag"] == tag)
            and (event is None or entry["event"] == event)
        ]

    def starts(self, job: str | None = None, tag: str | None = None) -> list[dict[str, Any]]:
        return self.of(job, tag, "start")

    def ends(self, job: str | None = None, tag: str | None = None) -> list[dict[str, Any]]:
        return self.of(job, tag, "end")

    def wait_for(
        self,
        count: int,
        *,
        job: str | None = None,
        tag: str | None = None,
        event: str = "start",
        timeout: float = 15.0,
    ) -> list[dict[str, Any]]:
        """Wait until at least ``count`` matching records exist; return them all."""

        def probe() -> list[dict[str, Any]]:
            found = self.of(job, tag, event)
            return found if len(found) >= count else []

        return wait_until(
            probe, timeout=timeout, what=f"{count} {event!r} record(s) of {job or '*'}/{tag or '*'}"
        )

    def by_id(
        self, job: str | None = None, event: str | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        """Records of the tracked handlers (those that record ``id``), per job id, in order."""
        grouped: dict[str, list[dict[str, Any]]] = {}
        for entry in self.of(job, None, event):
            if "id" in entry:
                grouped.setdefault(entry["id"], []).append(entry)
        return grouped


@dataclass
class ConsumerProcess:
    """One ``huey_consumer framework.app`` subprocess and its log file."""

    process: subprocess.Popen[bytes]
    log_path: Path
    started: float
    """``time.time()`` just before the process was started."""
    _log_file: Any = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def running(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait for the start-up log line, then for the SIGTERM handler to be installed.

        The consumer logs its start-up line before it starts its workers and
        only then installs its signal handlers; a signal sent in between is
        not handled gracefully (see test_shutdown.py), so tests that signal a
        consumer wait until it catches SIGTERM.
        """
        deadline = time.monotonic() + timeout
        while READY_LINE not in self.log() or not self.catches(signal.SIGTERM):
            if not self.running():
                pytest.fail(
                    f"consumer exited with status {self.process.returncode} before it was "
                    f"ready; its log:\n{self.log()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"consumer not ready after {timeout}s; its log:\n{self.log()}")
            time.sleep(0.05)

    def catches(self, signum: int) -> bool:
        """Whether the consumer has a handler for ``signum`` (always True without /proc)."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text(encoding="ascii")
        except OSError:
            return True
        for line in status.splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & (1 << (signum - 1)))
        return True

    def wait_log(self, text: str, timeout: float = 5.0, interval: float = 0.05) -> None:
        """Wait until the consumer's log contains ``text``."""
        wait_until(
            lambda: text in self.log(),
            timeout=timeout,
            what=f"the consumer to log {text!r}",
            interval=interval,
        )

    def group_members(self) -> list[int]:
        """Live processes of the consumer's process group (its worker processes included)."""
        members = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                # Fields after the ")" closing the command name: state, ppid, pgrp, ...
                fields = stat.read_text(encoding="ascii", errors="replace").rsplit(")", 1)[1]
                state, _, pgrp = fields.split()[:3]
                if int(pgrp) == self.pid and state != "Z":
                    members.append(int(stat.parent.name))
        return sorted(members)

    def send(self, signum: int) -> float:
        """Send ``signum`` to the consumer process; return when (``time.time()``)."""
        sent = time.time()
        self.process.send_signal(signum)
        return sent

    def send_to_group(self, signum: int) -> float:
        """Send ``signum`` to the consumer and its workers, like Ctrl-C in a terminal."""
        sent = time.time()
        os.killpg(self.process.pid, signum)
        return sent

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"consumer still running {timeout}s later; its log:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL the whole process group, worker processes and any orphan included.

        Used at teardown, when what the consumer still does no longer matters
        (tests that check a graceful stop signal the consumer themselves).
        """
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._log_file.close()


def consumer_command(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("huey_consumer")
    if script.exists():
        return [str(script), "framework.app", *args]
    return [sys.executable, "-m", "huey.bin.huey_consumer", "framework.app", *args]


@dataclass
class E2E:
    """One test's world: config, app, records, and the consumers it started."""

    tmp_path: Path
    redis_url: str
    prefix: str
    conn: redis.Redis
    app: Hueyard
    config_path: Path
    records: Records
    consumers: list[ConsumerProcess] = field(default_factory=list)

    def pipeline_config(
        self, queues: str, *, lease: float | None = None, max_stalls: int | None = None
    ) -> str:
        """A config for the real pipelines' handlers: the test's Redis and prefix, the e2e
        scheduler tick, ``lease`` and ``max_stalls`` when given, then ``queues`` (the
        ``[queues.*]`` and any other tables, dedented)."""
        consumer = f"[consumer]\nscheduler_interval = {TICK}\n"
        if lease is not None:
            consumer += f"lease = {lease}\n"
        if max_stalls is not None:
            consumer += f"max_stalls = {max_stalls}\n"
        return app_toml(
            self.redis_url, consumer + "\n" + textwrap.dedent(queues), prefix=self.prefix
        )

    def write_config(self, name: str, **options: Any) -> Path:
        """Another config file for a consumer, e.g. ``shutdown_timeout=1``."""
        path = self.tmp_path / name
        path.write_text(config_text(self.redis_url, self.prefix, **options), encoding="utf-8")
        return path

    def consumer_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            # REDIS_* would override the config's URL; HUEYARD_* would change the app.
            if not key.startswith(("REDIS_", "HUEYARD_"))
        }
        env.update(
            HUEYARD_CONFIG=str(self.config_path),
            HUEYARD_HANDLER_PACKAGES="",
            HUEYARD_HANDLER_MODULES=e2e_handlers.__name__,
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            PYTHONUNBUFFERED="1",
        )
        env[e2e_handlers.REDIS_URL_ENV] = self.redis_url
        env[e2e_handlers.RECORDS_ENV] = self.records.key
        env.update(extra or {})
        return env

    def start_consumer(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        config: Path | None = None,
        wait: bool = True,
        command: list[str] | None = None,
    ) -> ConsumerProcess:
        """Start ``huey_consumer framework.app *args``; by default wait until it is ready.

        ``command``: what runs instead of ``huey_consumer``, given ``framework.app *args``."""
        number = len(self.consumers) + 1
        log_path = self.tmp_path / f"consumer-{number}.log"
        log_file = log_path.open("wb")
        full_env = self.consumer_env(env)
        if config is not None:
            full_env["HUEYARD_CONFIG"] = str(config)
        started = time.time()
        process = subprocess.Popen(
            consumer_command(*args) if command is None else [*command, "framework.app", *args],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=self.tmp_path,
            start_new_session=True,  # its own process group: teardown reaches worker processes
        )
        consumer = ConsumerProcess(process, log_path, started, log_file)
        self.consumers.append(consumer)
        if wait:
            consumer.wait_ready()
        return consumer

    def pending(self, queue: str) -> int:
        return int(self.app.queue(queue).huey.pending_count())

    def scheduled(self, queue: str) -> int:
        return int(self.app.queue(queue).huey.scheduled_count())

    @property
    def jobs(self) -> Jobs:
        """The read/act API on the test's app (counts, pause, resume, pages)."""
        return Jobs(self.app)

    def job(self, job_id: str) -> JobInfo | None:
        """The job's record, read through the read API."""
        return Jobs(self.app).get(job_id)

    def counts(self, queue: str) -> QueueCounts:
        """The queue's jobs per state, read through the read API."""
        return Jobs(self.app).counts(queue)

    def jobs_in(self, queue: str, state: str) -> list[JobInfo]:
        """Every job of ``queue`` in ``state``, read page by page through the read API."""
        jobs = Jobs(self.app)
        found: list[JobInfo] = []
        page = 1
        while True:
            chunk = jobs.list_jobs(queue, state, page=page, page_size=MAX_PAGE_SIZE)
            found += chunk.items
            if not chunk.has_next:
                return found
            page += 1

    def wait_drained(self, queue: str, completed: int, timeout: float = 30.0) -> QueueCounts:
        """Wait until ``completed`` jobs of ``queue`` completed and none is left to run."""
        deadline = time.monotonic() + timeout
        while True:
            counts = self.counts(queue)
            done = counts.completed >= completed
            idle = counts.waiting == counts.active == counts.delayed == counts.paused == 0
            if done and idle:
                return counts
            if time.monotonic() > deadline:
                pytest.fail(
                    f"timed out after {timeout}s waiting for {completed} completed job(s) on "
                    f"{queue!r} and nothing left to run; last counts: {counts}"
                )
            time.sleep(0.1)

    def wait_result(self, queue: str, job_id: str, timeout: float = 15.0) -> Any:
        """Wait until the job completed; return its result. A final failure fails the test."""

        def probe() -> tuple[Any] | None:
            info = self.job(job_id)
            if info is not None and info.state == "failed":
                pytest.fail(f"job {job_id} on {queue!r} failed for good: {info.error}")
            if info is not None and info.state == "completed":
                assert info.queue == queue
                return (info.result,)
            return None

        (result,) = wait_until(
            probe, timeout=timeout, what=f"the result of job {job_id} on {queue!r}"
        )
        return result

    def wait_final_error(self, queue: str, job_id: str, timeout: float = 15.0) -> str:
        """Wait until the job failed for good; return its error."""

        def probe() -> str | None:
            info = self.job(job_id)
            if info is not None and info.state == "failed":
                assert info.queue == queue
                return info.error or "(no error text)"
            return None

        return wait_until(
            probe, timeout=timeout, what=f"job {job_id} on {queue!r} to fail for good"
        )


@contextlib.contextmanager
def world_on(
    tmp_path: Path,
    redis_url: str,
    conn: redis.Redis,
    *,
    prefix: str | None = None,
    **options: Any,
) -> Iterator[E2E]:
    """An :class:`E2E` world on the Redis at ``redis_url``; ``options`` as for
    :func:`config_text`; ``prefix`` the app's key prefix (default: one unique to the
    test). Its consumers are killed, and their logs printed, at the end."""
    prefix = prefix or f"e2e-{uuid.uuid4().hex[:10]}"
    config_path = tmp_path / "queues.toml"
    text = config_text(redis_url, prefix, **options)
    config_path.write_text(text, encoding="utf-8")
    app = Hueyard(parse_settings(text, source=str(config_path), env={}), E2E_REGISTRY)
    # It is the process's app (framework.enqueue), and the one e2e_handlers' handlers,
    # declared on the global registry, enqueue through.
    framework.runtime.set_app(app)
    world = E2E(
        tmp_path=tmp_path,
        redis_url=redis_url,
        prefix=prefix,
        conn=conn,
        app=app,
        config_path=config_path,
        records=Records(conn, f"{prefix}:records"),
    )
    try:
        yield world
    finally:
        for number, consumer in enumerate(world.consumers, start=1):
            consumer.kill()
            print(
                f"----- consumer {number} (pid {consumer.pid}, exit {consumer.process.returncode})"
                f" log -----\n{consumer.log()}"
            )
        framework.runtime.reset_app()
        app.close()


@pytest.fixture
def e2e(tmp_path: Path, redis_conn: redis.Redis, redis_url: str) -> Iterator[E2E]:
    with world_on(tmp_path, redis_url, redis_conn) as world:
        yield world
