"""One consumer process for many queues.

``huey_consumer framework.app [-k thread|process]`` calls
``framework.app.create_consumer(...)`` and ``.run()``. The consumer built here
runs, in one process, ``concurrency`` Huey workers for each served queue (from
``config/queues.toml``), one scheduler for all of them, one signal handler, one
worker health check and one shutdown deadline.

- ``HUEYARD_QUEUES=imports,exports`` serves only those queues, so slow queues
  can run in their own ``-k process`` consumer. An unknown name, an empty entry
  (``alpha,,beta``) or a value that names no queue at all stops the consumer
  with one line naming the value and the declared queues (unset, it serves
  every queue).
- SIGTERM and SIGINT both stop gracefully: no new jobs are taken, running jobs
  get ``[consumer] shutdown_timeout`` seconds (``-t`` overrides) to finish; a job
  still running then is interrupted and put back in its queue. A second signal
  stops at once.
- ``-w`` is ignored: each queue's ``concurrency`` decides its worker count.
- A thread worker stuck outside Python in a job that timed out or was
  cancelled (:mod:`framework.leases`) is given up on and replaced, so its
  queue keeps its concurrency; past ``[consumer] max_abandoned_threads`` such
  threads the consumer stops and exits with status :data:`EXIT_ABANDONED`, for
  its supervisor to start a fresh process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import Any, Protocol, Unpack

import redis
from huey.constants import WORKER_PROCESS, WORKER_THREAD
from huey.consumer import (
    BaseProcess,
    ProcessEnvironment,
    ThreadEnvironment,
    Worker,
    WorkerRecycle,
)

from framework.clients import RedisClients
from framework.clock import server_ms
from framework.compiler import QueueRuntime
from framework.errors import ConfigError, QueueError, StorageError
from framework.execution import QueueHuey
from framework.handlers import HandlerRegistry
from framework.keys import Keys
from framework.leases import KeeperSettings, LeaseKeeper
from framework.metrics import CONSUMER_WINDOW
from framework.options import EnqueueArgs, shown
from framework.outages import Outage, pause_after
from framework.schedules import Schedule
from framework.scripts import storage_error
from framework.settings import Settings
from framework.storage import BLOCKING_READ_TIMEOUT
from framework.ticks import ScheduleRunner

__all__ = [
    "EXIT_ABANDONED",
    "ConsumerApp",
    "MultiQueueConsumer",
    "exit_despite_threads",
    "ignored_flags",
    "served_queues",
]

logger = logging.getLogger("hueyard.consumer")

HEARTBEAT_INTERVAL = 5.0
"""Seconds between two consumer heartbeats."""

HEARTBEAT_TTL = 30
"""Seconds after its last heartbeat that a consumer counts as gone."""

CONSUMERS_TTL = 86400
"""Seconds the registry of consumers (``{p}:consumers``) outlives the last heartbeat."""

EXIT_ABANDONED = 75
"""Exit status of a consumer that gave up on too many stuck threads (EX_TEMPFAIL)."""

EXIT_RECYCLED = 76
"""A worker process's exit status when it ran its ``-M`` jobs (a planned replacement)."""

_GRACEFUL = (signal.SIGTERM, signal.SIGINT)
_INTERRUPT = signal.SIGUSR1  # parent -> worker process: give up the running job now
_JOIN_SLICE = 0.1  # seconds between two looks for a second signal while stopping


class ConsumerApp(Protocol):
    """What a consumer needs of the app (:class:`framework.application.Hueyard`)."""

    settings: Settings
    registry: HandlerRegistry
    keys: Keys
    clients: RedisClients
    queues: dict[str, QueueRuntime]
    schedules: dict[str, Schedule]

    def queue(self, name: str) -> QueueRuntime: ...

    def enqueue(
        self, queue: str, handler: str, payload: Any, **options: Unpack[EnqueueArgs]
    ) -> str: ...


def served_queues(settings: Settings, env: Mapping[str, str]) -> list[str]:
    """The queues this consumer serves: those ``$HUEYARD_QUEUES`` names, or all when unset.

    Raises :class:`ConfigError` for a value with an empty entry (``"alpha,,beta"``,
    ``" "``, ``""``: a variable set from an empty one would otherwise serve every
    queue), :class:`QueueError` for a name the config does not declare.
    """
    raw = env.get("HUEYARD_QUEUES")
    if raw is None:
        return settings.queue_names
    declared = ", ".join(settings.queue_names)
    wanted = [name.strip() for name in raw.split(",")]
    if not all(wanted):
        problem = "is empty" if not raw.strip() else "has an empty entry"
        raise ConfigError(
            f"HUEYARD_QUEUES={shown(raw)} {problem}; name the queues to serve, separated "
            f"by commas (declared queues: {declared}), or unset it to serve them all"
        )
    unknown = [name for name in wanted if name not in settings.queues]
    if unknown:
        raise QueueError(
            f"HUEYARD_QUEUES={shown(raw)} names unknown queue(s) "
            f"{', '.join(shown(name) for name in unknown)}; declared queues: {declared}"
        )
    return list(dict.fromkeys(wanted))


_HUEY_DEFAULTS: dict[str, Any] = {
    "workers": 1,
    "scheduler_interval": 1,
    "flush_locks": False,
    "extra_locks": None,
    "graceful_signal": "INT",
}
"""What ``huey_consumer`` passes for the flags hueyard does not take from it."""

_HUEYARD_WAY = {
    "workers": "-w is ignored: each queue's concurrency in config/queues.toml decides "
    "(HUEYARD_QUEUES picks the queues of this consumer)",
    "scheduler_interval": "-s is ignored: [consumer] scheduler_interval in "
    "config/queues.toml decides",
    "flush_locks": "-f is ignored: hueyard flushes no lock_task lock at start; each "
    "expires by itself (its ttl, else [consumer] metrics_ttl); to clear one now, delete "
    "its key {<prefix>:<queue>}:kv:<queue>.lock.<name> (docs/storage.md)",
    "extra_locks": "-L is ignored: hueyard flushes no lock at start (see -f)",
    "graceful_signal": "-g is ignored: SIGTERM and SIGINT both stop a hueyard consumer "
    "gracefully; a second one hurries it",
}


_FLAGS: dict[str, tuple[str, float, float, str]] = {
    # option: (flag, lowest, highest, what it is)
    "shutdown_timeout": ("-t", 0, 3600, "seconds running jobs get to finish at shutdown"),
    "initial_delay": ("-d", 0, 3600, "seconds an idle worker first waits"),
    "max_delay": ("-m", 0, 3600, "seconds an idle worker waits at most"),
    "backoff": ("-b", 1, 100, "the factor of an idle worker's waits"),
    "health_check_interval": ("-c", 0.1, 3600, "seconds between worker health checks"),
    "max_tasks": ("-M", 1, 10**9, "jobs a worker runs before it is replaced"),
}
"""The numeric flags of ``huey_consumer`` and their bounds (Huey checks none but -b)."""


def _check_flags(**given: float | None) -> None:
    """Refuse a numeric flag that is not a finite number within its bounds: ``-t nan``
    would be taken, then end the shutdown in a ``ValueError`` with the jobs still
    active; ``-t -1`` would give running jobs no time at all."""
    for option, value in given.items():
        if value is None or (option == "max_tasks" and value == 0):  # -M 0: Huey's "no limit"
            continue
        flag, low, high, what = _FLAGS[option]
        if not (math.isfinite(value) and low <= value <= high):
            raise ConfigError(
                f"{flag} {value:g} is not allowed ({what}); use {low:g} to {high:,.10g}"
            )


def ignored_flags(**given: Any) -> list[str]:
    """One line per ``huey_consumer`` flag set to something hueyard does not honour,
    naming the hueyard way (``-n`` is honoured: the consumer fires no schedules)."""
    return [
        _HUEYARD_WAY[name]
        for name, default in _HUEY_DEFAULTS.items()
        if given.get(name, default) not in (default, None)
    ]


def logger_names(app: ConsumerApp) -> list[str]:
    """The loggers that log like huey: hueyard's, and the top-level package of each handler
    module (``pipelines`` for ``pipelines.notifications``), whose loggers are its children."""
    packages = {spec.module.partition(".")[0] for spec in app.registry}
    return ["hueyard", *sorted(packages - {"", "huey", "hueyard"})]


def _share_huey_logging(app: ConsumerApp) -> None:
    """huey_consumer sets up the "huey" logger (-v, -l, -q); hueyard and the handler
    modules log the same way: same handlers, same level (INFO unless -v or -q), so a
    handler's ``logger.info`` shows under ``huey_consumer``. A logger the application
    configured itself (one with handlers) is left alone."""
    theirs = logging.getLogger("huey")
    if not theirs.handlers:
        return
    for name in logger_names(app):
        ours = logging.getLogger(name)
        if ours.handlers:
            continue
        for log_handler in theirs.handlers:
            ours.addHandler(log_handler)
        ours.setLevel(theirs.level)
        ours.propagate = False


class _ProcessEnvironment(ProcessEnvironment):  # type: ignore[misc]
    """Worker processes ignore TERM/INT (the parent decides) and stop a job on USR1."""

    def __init__(self) -> None:
        super().__init__(signal.SIGTERM, _INTERRUPT)

    def init_child(self, process: BaseProcess) -> None:
        super().init_child(process)
        signal.signal(signal.SIGINT, signal.SIG_IGN)


class _ThreadEnvironment(ThreadEnvironment):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__(signal.SIGTERM, _INTERRUPT)


class _Scheduler(BaseProcess):  # type: ignore[misc]
    """Promotes due delayed jobs and retries, recovers jobs of dead consumers, and
    delivers the outbox notices their consumers did not (:mod:`framework.fanin`).

    Each is atomic or idempotent, so any number of consumers may run them at once,
    and each consumer runs them for every queue of the app.
    Recovery runs every half lease, so a dead consumer's job is back in
    ``waiting`` within two leases of its last renewal, and a notice older than
    half a lease is delivered by the next pass.
    """

    process_name = "Scheduler"

    def __init__(
        self,
        hueys: Sequence[QueueHuey],
        stop_flag: Any,
        interval: float,
        schedules: ScheduleRunner | None = None,
    ) -> None:
        super().__init__(hueys[0], stop_flag)
        self.hueys = list(hueys)
        self.interval = interval
        self.schedules = schedules
        self.recovery_interval = min(h.storage.lease_ms for h in self.hueys) / 2000
        self._next_recovery = 0.0
        self.outage = Outage("scheduler", logging.getLogger("hueyard.consumer"))

    def loop(self, now: Any = None) -> None:
        started = time.monotonic()
        interval = self.interval
        recover = started >= self._next_recovery
        if recover:
            self._next_recovery = started + self.recovery_interval
        for huey in self.hueys:
            try:
                huey.storage.promote_due()
                if recover:
                    recovered, stalled = huey.storage.recover()
                    if recovered or stalled:
                        self._logger.warning(
                            "queue %s: %d job(s) of dead consumers back to waiting, "
                            "%d failed as stalled",
                            huey.name,
                            recovered,
                            stalled,
                        )
                    if huey.relay is not None:
                        delivered = huey.relay.deliver_pending(
                            huey.name, older_than=self.recovery_interval
                        )
                        if delivered:
                            self._logger.warning(
                                "queue %s: %d outbox notice(s) delivered that their consumer "
                                "did not (a child's outcome, a follow-up)",
                                huey.name,
                                delivered,
                            )
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                # One Redis serves every queue: the next round tries them all again.
                self.outage.failed(exc)
                self._next_recovery = min(self._next_recovery, started)
                interval = pause_after(exc, self.interval)
                break
            except (redis.RedisError, StorageError) as exc:  # this queue's keys (a wrong type)
                if isinstance(exc, redis.ResponseError):  # said the way a script's is
                    exc = storage_error(exc, f"the maintenance of queue {huey.name}")
                huey.storage.outage.failed(exc)  # one line, then a reminder: not every round
            except Exception:
                self._logger.exception("maintenance of queue %s failed; retrying", huey.name)
        else:
            self.outage.answered()
            if self.schedules is not None:
                self.schedules.run_round()
        self.sleep_for_interval(started, interval)


def exit_despite_threads(status: int) -> None:
    """End the process now, with ``status``, if threads a handler started and left running
    (not daemon threads: a ``ThreadPoolExecutor``'s, a ``threading.Thread``) are alive:
    Python would wait for them at exit, for ever, deaf to every further signal. Their
    work is cut short; a job put back or released is stored already. Return otherwise."""
    leftover = [
        thread
        for thread in threading.enumerate()
        if thread is not threading.main_thread() and not thread.daemon and thread.is_alive()
    ]
    if not leftover:
        return
    names = ", ".join(thread.name for thread in leftover[:10])
    logger.warning(
        "%d thread(s) a handler started still run (%s%s): the process exits without "
        "waiting for them",
        len(leftover), names, ", ..." if len(leftover) > 10 else "",
    )  # fmt: skip
    logging.shutdown()  # flushes every handler: os._exit flushes nothing
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


class MultiQueueConsumer:
    """Workers for several queues under one signal handler and one shutdown deadline."""

    _workers_started = False  # until start(): a heartbeat then says nothing of them

    def __init__(
        self,
        app: ConsumerApp,
        queues: Sequence[str],
        *,
        worker_type: str = WORKER_THREAD,
        shutdown_timeout: float | None = None,
        initial_delay: float = 0.1,
        backoff: float = 1.15,
        max_delay: float = 10.0,
        scheduler_interval: int | None = None,
        check_worker_health: bool = True,
        health_check_interval: float = 10,
        max_tasks: int | None = None,
        **ignored: Any,
    ) -> None:
        if worker_type not in (WORKER_THREAD, WORKER_PROCESS):
            raise ConfigError(
                f"-k {worker_type} is not supported: a job's timeout and cancel stop thread "
                "and process workers only; use -k thread (the default) or -k process"
            )
        if max_tasks and not check_worker_health:
            # Huey refuses the pair too: a worker that reached its count would never be
            # replaced, and its queue would lose that worker for good.
            raise ConfigError(
                f"-M {max_tasks} needs the worker health check, which -C turns off: a worker "
                "that ran its jobs exits and only the health check starts its replacement; "
                "drop -C (or -M)"
            )
        _check_flags(
            shutdown_timeout=shutdown_timeout, initial_delay=initial_delay, max_delay=max_delay,
            backoff=backoff, health_check_interval=health_check_interval, max_tasks=max_tasks,
        )  # fmt: skip
        _share_huey_logging(app)
        for line in ignored_flags(scheduler_interval=scheduler_interval, **ignored):
            logger.warning(line)
        self.fire_schedules = bool(ignored.get("periodic", True))
        if not self.fire_schedules and app.schedules:
            logger.info("-n: this consumer fires no schedule (the others of their queues do)")
        self.app = app
        self.queue_names = list(queues)
        self.worker_type = worker_type
        settings = app.settings.consumer
        self.shutdown_timeout = (
            settings.shutdown_timeout if shutdown_timeout is None else shutdown_timeout
        )
        # config/queues.toml decides; huey_consumer always passes its own default of 1.
        self.scheduler_interval = settings.scheduler_interval
        del scheduler_interval
        self._worker_options = {
            "default_delay": initial_delay,
            "max_delay": max_delay,
            "backoff": backoff,
            "max_tasks": max_tasks,
        }
        self._health_check = check_worker_health
        self._health_check_interval = float(health_check_interval)
        self.environment: Any = (
            _ProcessEnvironment() if worker_type == WORKER_PROCESS else _ThreadEnvironment()
        )
        self.stop_flag = self.environment.get_stop_flag()
        self._signum: int | None = None
        self._stopping = False
        self._hurry = False
        self.abandon_after = settings.abandon_after
        self.max_abandoned = settings.max_abandoned_threads
        # Worker threads given up on that still run, each leaving as it ends; Thread
        # objects, not idents: a later thread reuses an ident at once, and a replacement
        # with a given-up ident would leave its loop as it starts. ``abandoned`` counts
        # them: what max_abandoned_threads bounds (each costs memory, may hold sockets).
        self._abandoned: set[threading.Thread] = set()
        self.abandoned = 0
        self._workers_lock = threading.Lock()
        self._recycled: set[str] = set()
        """Thread workers that ran their ``-M`` jobs (a process says so by its exit status)."""
        self._beats = Outage("heartbeat", logger)
        self._exit_code = 0
        self._started = time.time() * 1000

        self.consumer_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.schedule_runner = ScheduleRunner(app, self.queue_names if self.fire_schedules else [])
        self.hueys: list[QueueHuey] = []
        self.workers: list[tuple[str, int, Any]] = []  # (queue, index, process/thread)
        for name in self.queue_names:
            runtime = app.queue(name)
            runtime.huey._timeout_handler = self.environment.timeout
            runtime.huey.storage.consumer_id = self.consumer_id
            runtime.huey.stop_flag = self.stop_flag
            self.hueys.append(runtime.huey)
            if not runtime.tasks:
                logger.warning("queue %r has no handler: no workers started for it", name)
                continue
            for index in range(runtime.policy.concurrency):
                self.workers.append((name, index, self._create_worker(name, index)))
        self.scheduler = self._create_process(
            _Scheduler(
                self._maintained(), self.stop_flag, self.scheduler_interval, self.schedule_runner
            ),
            "Scheduler",
        )

    # -- building --------------------------------------------------------------------------

    def _maintained(self) -> list[QueueHuey]:
        """Every queue of the app, not just the served ones: a consumer of `messages`
        also recovers the jobs of a dead `imports` consumer and promotes due jobs
        everywhere, so no queue depends on its own consumers being alive for that."""
        return [runtime.huey for runtime in self.app.queues.values()]

    def _create_worker(self, queue: str, index: int) -> Any:
        worker = Worker(self.app.queue(queue).huey, self.stop_flag, **self._worker_options)
        return self._create_process(worker, f"{queue}-{index + 1}")

    def _create_process(self, process: BaseProcess, name: str) -> Any:
        def run() -> None:
            self.environment.init_child(process)
            recycled = False
            try:
                process.initialize()
                while not self.stop_flag.is_set() and not self._given_up():
                    process.loop()
            except KeyboardInterrupt:
                pass
            except WorkerRecycle:
                recycled = True
            except Exception:
                logger.exception("worker %s died", name)
            finally:
                with contextlib.suppress(KeyboardInterrupt):
                    process.shutdown()
                with contextlib.suppress(Exception, KeyboardInterrupt):
                    process.huey.return_prefetched()
                self._left()
            if recycled:
                # planned (-M), not a death: the health check logs its replacement at INFO
                self._recycled.add(name)
                raise SystemExit(EXIT_RECYCLED)  # a process's status; a thread ends quietly

        return self.environment.create_process(run, name)

    def _live_workers(self) -> dict[str, int] | None:
        """Per served queue, its workers alive and not given up on (for the heartbeat: a
        consumer alive with none for a queue that has jobs is the doctor's concern);
        None before they were started."""
        if not self._workers_started:
            return None
        with self._workers_lock:
            live = {queue: 0 for queue, _, _ in self.workers}  # a queue it runs workers of
            for queue, _, process in self.workers:
                if process not in self._abandoned and self.environment.is_alive(process):
                    live[queue] = live.get(queue, 0) + 1
        return live

    def _ran_its_jobs(self, name: str, process: Any) -> bool:
        """Whether worker ``name`` ended because it ran its ``-M`` jobs."""
        with contextlib.suppress(KeyError):
            self._recycled.remove(name)
            return True
        return getattr(process, "exitcode", None) == EXIT_RECYCLED

    def _given_up(self) -> bool:
        """Whether the calling worker thread was given up on (and replaced)."""
        return threading.current_thread() in self._abandoned

    def _left(self) -> None:
        """The calling worker thread ends: one given up on is stuck no more."""
        if self._abandoned:
            with self._workers_lock:
                self._abandoned.discard(threading.current_thread())
                self.abandoned = len(self._abandoned)

    def _on_abandon(self, queue: str, thread: int) -> None:
        """The lease keeper gave up on ``thread``: start a worker in its place."""
        with self._workers_lock:
            position = next(
                (i for i, (_, _, p) in enumerate(self.workers) if getattr(p, "ident", 0) == thread),
                None,
            )
            if position is None:
                return
            _, index, stuck = self.workers[position]
            self._abandoned.add(stuck)
            self.abandoned = len(self._abandoned)
            if not self._stopping:
                replacement = self._create_worker(queue, index)
                replacement.start()
                self.workers[position] = (queue, index, replacement)
        logger.error(
            "worker %s-%d is stuck in a job that did not stop; a new worker takes its place "
            "(%d abandoned thread(s) still stuck in this consumer, at most %d)",
            queue, index + 1, self.abandoned, self.max_abandoned,
        )  # fmt: skip
        if self.abandoned > self.max_abandoned and not self._exit_code:
            logger.error(
                "more than %d worker threads are stuck: stopping, exit status %d, so that "
                "a supervisor starts a fresh consumer (its jobs come back by lease)",
                self.max_abandoned, EXIT_ABANDONED,
            )  # fmt: skip
            self._exit_code = EXIT_ABANDONED

    # -- running ---------------------------------------------------------------------------

    def start(self) -> None:
        self._started = time.time() * 1000
        threads = not self.environment.forks
        LeaseKeeper.configure(
            KeeperSettings(
                interrupt_timeouts=threads,  # process workers: Huey's alarm
                abandon_after=self.abandon_after,
                on_abandon=self._on_abandon if threads else None,
            )
        )
        # Handlers first: a signal that arrives while workers start is still graceful.
        for signum in _GRACEFUL:
            signal.signal(signum, self._on_signal)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, self._on_signal)
        if self.environment.forks:
            self.app.clients.disconnect()  # children must not share the parent's sockets
        # The first worker of every queue, then the second of every queue, ...: a job
        # waiting on the last queue of the config is not behind the others' workers
        # (a thread takes ~0.5 ms to start); the scheduler, which no first job waits
        # for, last.
        for _, _, process in sorted(self.workers, key=lambda worker: worker[1]):
            process.start()
        self._workers_started = True
        self.scheduler.start()
        counts: dict[str, int] = {}
        for queue, _, _ in self.workers:
            counts[queue] = counts.get(queue, 0) + 1
        logger.info(
            "hueyard consumer pid %s: %s workers (%s) on %s",
            os.getpid(),
            len(self.workers),
            self.worker_type,
            ", ".join(f"{q} x{n}" for q, n in counts.items()) or "no queue with handlers",
        )

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Never raises: an exception from a signal handler can land anywhere in stop().
        if self._stopping or self._signum is not None:
            self._hurry = True  # a second signal: stop waiting for running jobs
            return
        self._signum = signum

    def run(self, *, exit_process: bool = True) -> None:
        """Start, wait for a signal, shut down gracefully, return.

        With ``exit_process`` (``huey_consumer``; ``hueyard up`` exits by itself after
        its dashboard), a process that threads a handler started would keep alive
        after the consumer stopped exits anyway (:func:`exit_despite_threads`).
        """
        self.start()
        next_check = time.monotonic() + self._health_check_interval
        next_beat = 0.0
        while self._signum is None and not self._exit_code:
            if self.stop_flag.wait(0.1):
                break
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + HEARTBEAT_INTERVAL
                self.heartbeat()
            if self._health_check and time.monotonic() >= next_check:
                next_check = time.monotonic() + self._health_check_interval
                self.check_worker_health()
        name = signal.Signals(self._signum).name if self._signum else "stop"
        logger.info("received %s: finishing running jobs (up to %ss)", name, self.shutdown_timeout)
        self.stop(graceful=True)
        self.heartbeat(leaving=True)
        logger.info("consumer exiting")
        if exit_process:
            exit_despite_threads(self._exit_code)
        if self._exit_code:
            raise SystemExit(self._exit_code)

    def stop(self, graceful: bool = True) -> None:
        self._stopping = True
        self.stop_flag.set()
        finished = graceful and self._join(self.shutdown_timeout, hurry=True)
        if not finished:
            if self._hurry:
                logger.warning("second signal: interrupting running jobs now")
            elif graceful:
                logger.warning(
                    "jobs still running after %ss: interrupting them and putting them back",
                    self.shutdown_timeout,
                )
            self.environment.interrupt_workers([p for _, _, p in self.workers])
            for huey in self.hueys:
                huey.notify_interrupted_tasks()
            # Idle workers may still be inside one blocking read; let them hand back
            # whatever it returns before this process exits.
            self._join(BLOCKING_READ_TIMEOUT + 0.5)
            if self.worker_type == WORKER_PROCESS:
                self._kill_stuck_workers()
        sys.stdout.flush()

    def _kill_stuck_workers(self) -> None:
        """SIGKILL the worker processes still alive after their interrupt: a handler that
        caught it (``except BaseException``) would hold this consumer's exit for as long
        as it runs (multiprocessing joins its children at exit). Its job goes back to
        waiting once its lease runs out, as a crashed worker's does."""
        for queue, index, process in self.workers:
            if not self.environment.is_alive(process):
                continue
            logger.warning(
                "worker %s-%d (pid %s) still runs a job that did not stop when interrupted "
                "(its handler caught the interrupt): killed; its job goes back to waiting "
                "when its lease runs out",
                queue, index + 1, process.pid,
            )  # fmt: skip
            process.kill()
            process.join(1)

    def _join(self, timeout: float, *, hurry: bool = False) -> bool:
        """Wait up to ``timeout`` s for every worker and the scheduler to end (True if
        they did); with ``hurry``, give up as soon as a second signal comes."""
        deadline = time.monotonic() + timeout
        processes = [p for _, _, p in self.workers] + [self.scheduler]
        while True:
            alive = [p for p in processes if self.environment.is_alive(p)]
            remaining = deadline - time.monotonic()
            if not alive or remaining <= 0 or (hurry and self._hurry):
                return not alive
            alive[0].join(min(remaining, _JOIN_SLICE))

    def heartbeat(self, *, leaving: bool = False) -> None:
        """Tell Redis this consumer is alive (or leaving): what the workers page shows."""
        keys = self.app.keys
        conn = self.hueys[0].storage.conn if self.hueys else None
        if conn is None:
            return
        try:
            if leaving:
                conn.delete(keys.consumer(self.consumer_id))
                conn.zrem(keys.consumers, self.consumer_id)
                return
            info = {
                "id": self.consumer_id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "queues": self.queue_names,
                "worker_type": self.worker_type,
                "workers": len(self.workers),
                "started": self._started,
                "abandoned": self.abandoned,
                "live": self._live_workers(),
                "connections": self.app.clients.opened,
                "max_connections": self.app.clients.max_connections,
            }
            beat = server_ms(conn)  # readers judge it by the server's clock, not this host's
            with conn.pipeline() as pipe:
                pipe.set(keys.consumer(self.consumer_id), json.dumps(info), ex=HEARTBEAT_TTL)
                pipe.zadd(keys.consumers, {self.consumer_id: beat})
                # the registry stays bounded with no reader about: the consumers that
                # died (a crash loop adds one a restart) go with the next heartbeat, and
                # the set itself a day after the last consumer stopped
                pipe.zremrangebyscore(keys.consumers, "-inf", beat - CONSUMER_WINDOW * 1000)
                pipe.expire(keys.consumers, CONSUMERS_TTL)
                pipe.execute()
            self._beats.answered()
        except redis.ResponseError as exc:  # the registry of another type: named, with the fix
            self._beats.failed(
                storage_error(exc, "the heartbeat", key=keys.consumers, wanted="zset", conn=conn)
            )
        except redis.RedisError as exc:
            self._beats.failed(exc)
        except Exception as exc:
            logger.warning("heartbeat to Redis failed: %s: %s", type(exc).__name__, exc)

    def check_worker_health(self) -> None:
        with self._workers_lock:
            for position, (queue, index, process) in enumerate(self.workers):
                if not self.environment.is_alive(process):
                    name = f"{queue}-{index + 1}"
                    if self._ran_its_jobs(name, process):
                        logger.info(
                            "worker %s ran its %s jobs (-M); starting a new one",
                            name, self._worker_options.get("max_tasks"),
                        )  # fmt: skip
                    else:
                        logger.warning("worker %s died; starting a new one", name)
                    replacement = self._create_worker(queue, index)
                    replacement.start()
                    self.workers[position] = (queue, index, replacement)
        if not self.environment.is_alive(self.scheduler):
            logger.warning("scheduler died; starting a new one")
            self.scheduler = self._create_process(
                _Scheduler(
                    self._maintained(),
                    self.stop_flag,
                    self.scheduler_interval,
                    self.schedule_runner,
                ),
                "Scheduler",
            )
            self.scheduler.start()
