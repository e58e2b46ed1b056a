"""Handlers run by the end-to-end consumers; each one reports what it did to Redis.

The consumer subprocess imports this module through
``HUEYARD_HANDLER_MODULES=tests.e2e.e2e_handlers``. Every handler appends JSON
records to the Redis list named by ``$HUEYARD_E2E_RECORDS`` on the server at
``$HUEYARD_E2E_REDIS_URL``, so a test watches the consumer from outside the
process::

    {"job": "retry.always_fail", "tag": "a", "event": "start", "t": 1767.2, "pid": 4242}

``event`` is ``"start"`` when the handler is entered and ``"end"`` when it
returns; a handler that raises writes only ``"start"``, so the number of
``start`` records of a tag is the number of attempts.

The handlers of "chaos", "throttled" and "pausable" (``_tracked``) also record
``id`` (the job id, from ``framework.current_job()``), ``run`` (1, 2, ... per
job id, counted in Redis) and ``pgid`` (the process group, which is the
consumer's pid for thread and process workers alike), so a test tells every run
of every job apart and knows which consumer ran it.

Every queue named here must be declared in the e2e config (see conftest.py):
an app refuses to compile a handler for an undeclared queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from typing import Any

import redis
from huey.exceptions import CancelExecution, RetryTask
from huey.signals import SIGNAL_LOCKED
from pydantic import BaseModel

from framework import current_job, get_app, handler

REDIS_URL_ENV = "HUEYARD_E2E_REDIS_URL"
RECORDS_ENV = "HUEYARD_E2E_RECORDS"

QUEUES = (
    "alpha",
    "beta",
    "gamma",
    "ordered",
    "retry",
    "once",
    "slow",
    "spare",
    "wide",
    "chaos",
    "throttled",
    "pausable",
    "timed",
    "blip",
    "parents",
    "kids",
)
"""Every queue a handler below is registered on."""

_clients: dict[int, redis.Redis] = {}


def _redis() -> redis.Redis:
    # One client per process: a -k process worker must not reuse its parent's sockets.
    pid = os.getpid()
    client = _clients.get(pid)
    if client is None:
        # A bounded pool that makes threads wait: redis-py's default pool fails past
        # 100 connections, and a consumer may run more worker threads than that.
        pool = redis.BlockingConnectionPool.from_url(
            os.environ[REDIS_URL_ENV], max_connections=32, timeout=30
        )
        client = redis.Redis(connection_pool=pool)
        _clients[pid] = client
    return client


def record(job: str, tag: str, event: str, **extra: Any) -> None:
    entry = {"job": job, "tag": tag, "event": event, "t": time.time(), "pid": os.getpid()}
    entry.update(extra)
    _redis().rpush(os.environ[RECORDS_ENV], json.dumps(entry))


class Failure(Exception):
    """Raised on purpose by the failing handlers."""


# -- plain jobs on several queues ----------------------------------------------------------


def _echo(queue: str, payload: dict[str, Any]) -> dict[str, Any]:
    record(f"{queue}.echo", payload["tag"], "start")
    result = {"queue": queue, "tag": payload["tag"], "n": payload.get("n", 0) * 2}
    record(f"{queue}.echo", payload["tag"], "end")
    return result


@handler("alpha", name="echo")
def alpha_echo(payload: dict[str, Any]) -> dict[str, Any]:
    """Return ``{"queue": "alpha", "tag": tag, "n": 2 * n}``."""
    return _echo("alpha", payload)


@handler("beta", name="echo")
def beta_echo(payload: dict[str, Any]) -> dict[str, Any]:
    return _echo("beta", payload)


@handler("gamma", name="echo")
def gamma_echo(payload: dict[str, Any]) -> dict[str, Any]:
    return _echo("gamma", payload)


@handler("ordered", name="echo")
def ordered_echo(payload: dict[str, Any]) -> dict[str, Any]:
    return _echo("ordered", payload)


class Order(BaseModel):
    order_id: int
    email: str


@handler("alpha")
def place_order(payload: Order) -> dict[str, Any]:
    """A handler with a pydantic payload model: bad payloads are refused at enqueue."""
    record("alpha.place_order", str(payload.order_id), "start")
    return {"order_id": payload.order_id}


# -- blocking and sleeping jobs ------------------------------------------------------------


@handler("ordered")
def block_until(payload: dict[str, Any]) -> None:
    """Hold the queue's only worker until the Redis key ``payload["key"]`` exists."""
    record("ordered.block_until", payload["tag"], "start")
    deadline = time.monotonic() + payload.get("timeout", 30)
    while not _redis().exists(payload["key"]):
        if time.monotonic() > deadline:
            raise Failure(f"nobody set {payload['key']!r}")
        time.sleep(0.02)
    record("ordered.block_until", payload["tag"], "end")


def _sleep(queue: str, payload: dict[str, Any]) -> dict[str, Any]:
    job = f"{queue}.sleep"
    tag = payload["tag"]
    runs = _redis().incr(f"{os.environ[RECORDS_ENV]}:runs:{tag}")
    record(job, tag, "start", run=runs)
    # "first_seconds" lets an interrupted job run short when a later consumer retries it.
    seconds = payload.get("first_seconds", payload["seconds"]) if runs == 1 else payload["seconds"]
    time.sleep(seconds)
    record(job, tag, "end", run=runs)
    return {"tag": tag, "pid": os.getpid()}


@handler("slow", name="sleep")
def slow_sleep(payload: dict[str, Any]) -> dict[str, Any]:
    """Sleep ``seconds`` (``first_seconds`` on the first run), recording start and end."""
    return _sleep("slow", payload)


@handler("spare", name="sleep")
def spare_sleep(payload: dict[str, Any]) -> dict[str, Any]:
    return _sleep("spare", payload)


def _forever() -> None:
    while True:
        time.sleep(0.2)


@handler("slow")
def leaves_a_thread(payload: dict[str, Any]) -> str:
    """Start a thread that never ends and is not a daemon (as a ThreadPoolExecutor's)."""
    threading.Thread(target=_forever, name="left-behind", daemon=False).start()
    return "started"


@handler("slow")
def swallows(payload: dict[str, Any]) -> str:
    """Run ``seconds``, catching every interrupt (the shutdown's too)."""
    record("slow.swallows", payload["tag"], "start")
    deadline = time.monotonic() + payload["seconds"]
    while time.monotonic() < deadline:
        with contextlib.suppress(BaseException):  # the point: it swallows interrupts
            time.sleep(0.1)
    record("slow.swallows", payload["tag"], "end")
    return "done"


@handler("slow")
def forks(payload: dict[str, Any]) -> dict[str, Any]:
    """Fork; the child returns from the handler (it should have called os._exit)."""
    child = os.fork()
    if child == 0:
        return {"child": "returned"}
    os.waitpid(child, 0)
    return {"child": child}


@handler("wide", name="sleep")
def wide_sleep(payload: dict[str, Any]) -> dict[str, Any]:
    return _sleep("wide", payload)


# -- failing jobs --------------------------------------------------------------------------


@handler("retry")
def always_fail(payload: dict[str, Any]) -> None:
    record("retry.always_fail", payload["tag"], "start")
    raise Failure(f"always_fail {payload['tag']}")


@handler("retry")
def flaky(payload: dict[str, Any]) -> dict[str, Any]:
    """Fail the first ``failures`` attempts, then return the attempt number."""
    attempt = _redis().incr(f"{os.environ[RECORDS_ENV]}:attempts:{payload['tag']}")
    record("retry.flaky", payload["tag"], "start", attempt=attempt)
    if attempt <= payload["failures"]:
        raise Failure(f"flaky {payload['tag']} attempt {attempt}")
    record("retry.flaky", payload["tag"], "end", attempt=attempt)
    return {"attempt": attempt}


@handler("once", name="always_fail")
def once_always_fail(payload: dict[str, Any]) -> None:
    record("once.always_fail", payload["tag"], "start")
    raise Failure(f"once.always_fail {payload['tag']}")


# -- jobs that report their job id and their consumer (chaos, rate limit, pause) -----------


def _tracked(queue: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Record start and end with the job's id, run number and consumer; sleep ``ms``.

    ``first_ms`` replaces ``ms`` on the job's first run (counted per job id), so a
    job interrupted on its first run runs short when it is run again. Records
    carry ``id`` (the job id), ``run`` (1, 2, ... per job id) and ``pgid``: the
    process group, which is the consumer's pid for thread and process workers alike.
    """
    job = current_job()
    assert job is not None, "a tracked handler runs inside a job"
    tag = str(payload["n"])
    run = int(_redis().incr(f"{os.environ[RECORDS_ENV]}:runs:{job.id}"))
    info = {"id": job.id, "run": run, "pgid": os.getpgrp()}
    record(f"{queue}.work", tag, "start", **info)
    ms = payload.get("first_ms", payload.get("ms", 0)) if run == 1 else payload.get("ms", 0)
    if ms:
        time.sleep(ms / 1000)
    record(f"{queue}.work", tag, "end", **info)
    return {"n": payload["n"], "run": run}


@handler("chaos", name="work")
def chaos_work(payload: dict[str, Any]) -> dict[str, Any]:
    """Sleep ``ms`` (``first_ms`` on the first run), recording id, run and consumer."""
    return _tracked("chaos", payload)


@handler("throttled", name="work")
def throttled_work(payload: dict[str, Any]) -> dict[str, Any]:
    return _tracked("throttled", payload)


@handler("pausable", name="work")
def pausable_work(payload: dict[str, Any]) -> dict[str, Any]:
    return _tracked("pausable", payload)


# -- job control: timeouts, cancel, a retry at a given time ----------------------------------


@handler("timed")
def spin(payload: dict[str, Any]) -> dict[str, Any]:
    """Pure Python for ``seconds``: an exception raised in its thread stops it at once."""
    record("timed.spin", payload["tag"], "start")
    deadline = time.monotonic() + payload["seconds"]
    while time.monotonic() < deadline:
        pass
    record("timed.spin", payload["tag"], "end")
    return {"tag": payload["tag"]}


@handler("timed")
def block(payload: dict[str, Any]) -> dict[str, Any]:
    """Blocked in C (``time.sleep``) for ``seconds``: no exception reaches it meanwhile."""
    record("timed.block", payload["tag"], "start")
    time.sleep(payload["seconds"])
    record("timed.block", payload["tag"], "end")
    return {"tag": payload["tag"]}


class Unprintable(Exception):
    """An exception whose own ``__str__`` fails."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken")


@handler("timed")
def escapes(payload: dict[str, Any]) -> None:
    """Raises what a failure's description does not expect: ``"exit"`` (``sys.exit(3)``,
    as argparse does on a bad argument), ``"interrupt"`` (``KeyboardInterrupt``),
    ``"cancel"`` (``asyncio.CancelledError``, from code run with ``asyncio.run``), or
    ``"unprintable"`` (an exception that cannot be turned into text)."""
    record("timed.escapes", payload["tag"], "start")
    raised: dict[str, BaseException] = {
        "exit": SystemExit(3),
        "interrupt": KeyboardInterrupt(),
        "cancel": asyncio.CancelledError(),
        "unprintable": Unprintable(),
    }
    raise raised[payload["tag"]]


@handler("retry")
def later(payload: dict[str, Any]) -> dict[str, Any]:
    """Asks for its retry ``delay`` seconds later (a provider's Retry-After), once."""
    job = current_job()
    assert job is not None
    record("retry.later", payload["tag"], "start", attempt=job.attempt)
    if job.attempt == 1:
        raise RetryTask(delay=payload["delay"])
    return {"attempt": job.attempt}


# -- a Redis blip: handlers that do not need Redis themselves ----------------------------------


def _append_run(payload: dict[str, Any]) -> dict[str, Any]:
    """Append the job id to the file ``runs`` (one line per run), sleep ``ms``.

    It writes to a file, not to Redis, so that it runs the same while Redis is away
    (or while a Cluster fails over).
    """
    job = current_job()
    assert job is not None
    with open(payload["runs"], "a", encoding="utf-8") as runs:
        runs.write(f"{job.id}\n")
    time.sleep(payload.get("ms", 0) / 1000)
    return {"n": payload["n"]}


@handler("blip", name="work")
def blip_work(payload: dict[str, Any]) -> dict[str, Any]:
    return _append_run(payload)


# The same on two more queues that keep 1,000 completed jobs or more, for a drain
# over several queues (the Cluster test: queues on different masters).
for _queue in ("chaos", "pausable"):
    handler(_queue, name="append_run")(_append_run)


# -- fan-in and chains: a parent waits for its children, a follow-up gets its result ---------


@handler("parents", name="fan")
def parents_fan(payload: dict[str, Any]) -> dict[str, Any]:
    """Spawn ``n`` children (``kids.work``, keyed ``<tag>:<i>``) that sleep ``ms``; those
    whose index is in ``fail`` fail. Returns ``{"tag", "spawned"}``."""
    job = current_job()
    assert job is not None
    tag, n = payload["tag"], payload["n"]
    children = [
        {"tag": tag, "i": i, "ms": payload.get("ms", 0), "fail": i in payload.get("fail", [])}
        for i in range(n)
    ]
    ids = job.spawn_many(kids_work, children, keys=[f"{tag}:{i}" for i in range(n)], key_ttl=600)
    record("parents.fan", tag, "end", id=job.id, spawned=len(ids))
    return {"tag": tag, "spawned": len(ids)}


@handler("kids", name="work")
def kids_work(payload: dict[str, Any]) -> dict[str, Any]:
    """A child: records its start and end (with its index and its consumer), sleeps ``ms``."""
    job = current_job()
    assert job is not None
    info = {"id": job.id, "i": payload["i"], "pgid": os.getpgrp()}
    record("kids.work", payload["tag"], "start", **info)
    time.sleep(payload["ms"] / 1000)
    if payload["fail"]:
        raise Failure(f"child {payload['i']} fails")
    record("kids.work", payload["tag"], "end", **info)
    return {"i": payload["i"]}


@handler("beta", name="summary")
def beta_summary(payload: dict[str, Any]) -> dict[str, Any]:
    """A follow-up: records the result it was started with."""
    job = current_job()
    assert job is not None
    record("beta.summary", str(payload.get("tag")), "end", id=job.id, payload=payload)
    return {"summarised": payload}


# -- schedules: what fired, and when it was enqueued ---------------------------------------------


@handler("gamma", name="tick")
def gamma_tick(payload: dict[str, Any]) -> dict[str, Any]:
    """Record the tick a schedule enqueued this job for (``tick``), with the job id."""
    job = current_job()
    assert job is not None
    record("gamma.tick", str(payload["tick"]), "start", id=job.id)
    return {"tick": payload["tick"]}


# -- Huey's exceptions: CancelExecution, lock_task's TaskLockedException ----------------------


@handler("retry")
def cancel(payload: dict[str, Any]) -> None:
    """Raise ``CancelExecution(retry=payload["retry"])`` (``None``: Huey's default)."""
    record("retry.cancel", payload["tag"], "start")
    raise CancelExecution(retry=payload["retry"])


_watching_locks: set[int] = set()


def _record_locked(signal: str, task: Any, *args: Any) -> None:
    record("retry.locked_report", task.id, "locked")


@handler("retry")
def locked_report(payload: dict[str, Any]) -> dict[str, Any]:
    """Run under the ``lock_task`` lock ``payload["lock"]``; Huey's locked signal, sent when
    another holds it, is recorded (event ``"locked"``, tag: the job id)."""
    huey = get_app().queue("retry").huey
    if id(huey) not in _watching_locks:  # the app exists only once handler modules are imported
        _watching_locks.add(id(huey))
        huey.signal(SIGNAL_LOCKED)(_record_locked)
    record("retry.locked_report", payload["tag"], "start")
    with huey.lock_task(payload["lock"]):
        record("retry.locked_report", payload["tag"], "end")
        return {"tag": payload["tag"]}
