"""What the benchmark reads from Redis and from its own sockets.

- :class:`RoundTrips` counts, client-side, every request a connection pool
  sends (a pipeline is one round trip), by command; ``EVALSHA`` is named after
  the hueyard script it runs. Exact, and blind to other clients of the server.
  With ``keep_trips=True`` it also keeps each request's command names, in order.
- :func:`commandstats` / :func:`command_delta`: ``INFO commandstats`` deltas,
  which include the commands Lua scripts run inside Redis. They are
  server-wide, so traffic of other databases adds noise.
- :func:`used_memory` and :func:`keys_memory`: ``INFO memory`` (server-wide)
  and the sum of ``MEMORY USAGE`` over the benchmark database's keys (exact);
  :func:`memory_usages`: ``MEMORY USAGE`` of given keys, one by one.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar

import redis

__all__ = [
    "CONNECTION_COMMANDS",
    "RoundTrips",
    "command_delta",
    "commandstats",
    "counting_connection_class",
    "keys_memory",
    "memory_usages",
    "script_names",
    "server_cpu",
    "used_memory",
]


def script_names() -> dict[str, str]:
    """SHA1 of each hueyard Lua script -> its name, to label ``EVALSHA`` calls.

    Reads ``framework.scripts`` (``SCRIPTS`` and ``source``); if they change,
    calls are just labelled ``EVALSHA other``.
    """
    try:
        from framework.scripts import SCRIPTS, source

        return {hashlib.sha1(source(n).encode()).hexdigest(): n for n in SCRIPTS}
    except Exception:
        return {}


CONNECTION_COMMANDS = frozenset({"HELLO", "CLIENT", "SELECT", "PING", "AUTH"})
"""Commands a connection sends for itself (set-up, health checks), not for an operation."""


class RoundTrips:
    """Requests sent on a pool's connections, by command (thread-safe).

    ``by_command`` counts a command sent on its own under its name and a
    pipeline once, as ``(pipeline)``. With ``keep_trips``, ``trips`` holds the
    command names of every request (a pipeline's ``MULTI`` and ``EXEC`` too).
    """

    def __init__(self, *, keep_trips: bool = False) -> None:
        self._lock = threading.Lock()
        self.by_command: Counter[str] = Counter()
        self.total = 0
        self.keep_trips = keep_trips
        self.trips: list[tuple[str, ...]] = []
        self._names = script_names()

    def name(self, args: Sequence[Any]) -> str:
        """A command's name; ``EVALSHA <script>`` for a hueyard script."""
        name = _text(args[0]).upper() if args else "?"
        if name == "EVALSHA" and len(args) > 1:
            name = f"EVALSHA {self._names.get(_text(args[1]), 'other')}"
        return name

    def add_request(self, commands: tuple[str, ...], *, pipeline: bool) -> None:
        with self._lock:
            self.total += 1
            self.by_command["(pipeline)" if pipeline else commands[0]] += 1
            if self.keep_trips:
                self.trips.append(commands)

    def snapshot(self) -> tuple[int, Counter[str]]:
        with self._lock:
            return self.total, Counter(self.by_command)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def counting_connection_class(counter: RoundTrips) -> type[redis.Connection]:
    """A ``redis.Connection`` subclass that reports every request to ``counter``.

    Set it as a pool's ``connection_class`` before the pool makes a connection.
    A command sent on its own is one request; a pipeline is one request, its
    commands named from ``pack_commands``.
    """

    class CountingConnection(redis.Connection):
        rt: ClassVar[RoundTrips] = counter
        _pending = threading.local()  # (names, pipeline) of the request about to be sent

        def send_command(self, *args: Any, **kwargs: Any) -> None:
            self._pending.request = ((self.rt.name(args),), False)
            super().send_command(*args, **kwargs)  # type: ignore[no-untyped-call]

        def pack_commands(self, commands: Any) -> Any:
            names = tuple(self.rt.name(command) for command in commands)
            self._pending.request = (names, True)
            return super().pack_commands(commands)  # type: ignore[no-untyped-call]

        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            names, pipeline = getattr(self._pending, "request", None) or (("?",), False)
            self._pending.request = None  # a health check PING sent next is its own request
            self.rt.add_request(names, pipeline=pipeline)
            super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]

    return CountingConnection


def commandstats(conn: redis.Redis) -> dict[str, tuple[int, int]]:
    """(calls, usec) per command since the server started (server-wide).

    Commands run by a Lua script are counted under their own names as well as
    inside ``evalsha``'s time.
    """
    stats: dict[str, Any] = conn.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): (int(value["calls"]), int(value["usec"]))
        for name, value in stats.items()
        if isinstance(value, dict)
    }


def command_delta(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> dict[str, tuple[int, int]]:
    """(calls, usec) between two :func:`commandstats` readings; idle commands dropped."""
    delta = {}
    for name, (calls, usec) in sorted(after.items()):
        calls0, usec0 = before.get(name, (0, 0))
        if calls > calls0:
            delta[name] = (calls - calls0, usec - usec0)
    return delta


def server_cpu(conn: redis.Redis) -> float:
    """Seconds of CPU the Redis server has used (user + sys, main thread and all)."""
    info: dict[str, Any] = conn.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def used_memory(conn: redis.Redis) -> int:
    """``INFO memory`` ``used_memory``: the whole server's, in bytes."""
    return int(conn.info("memory")["used_memory"])


def memory_usages(conn: redis.Redis, keys: Sequence[Any]) -> list[int]:
    """``MEMORY USAGE ... SAMPLES 0`` of each key, in order (0 for a key that is gone)."""
    sizes: list[int] = []
    for start in range(0, len(keys), 500):
        with conn.pipeline(transaction=False) as pipe:
            for key in keys[start : start + 500]:
                pipe.memory_usage(key, samples=0)
            sizes += [int(size or 0) for size in pipe.execute()]
    return sizes


def keys_memory(conn: redis.Redis, *, exclude: tuple[str, ...] = ()) -> tuple[int, int]:
    """(bytes, keys): ``MEMORY USAGE ... SAMPLES 0`` summed over the current DB's keys."""
    keys = [k for k in conn.scan_iter(count=1000) if _text(k) not in exclude]
    return sum(memory_usages(conn, keys)), len(keys)
