"""What the benchmark reads from Redis and from its own sockets.

- :class:`RoundTrips` counts, client-side, every request a connection pool
  sends (a pipeline is one round trip), by command; ``EVALSHA`` is named after
  the hueyard script it runs. Exact, and blind to other clients of the server.
- :func:`commandstats` / :func:`command_delta`: ``INFO commandstats`` deltas,
  which include the commands Lua scripts run inside Redis. They are
  server-wide, so traffic of other databases adds noise.
- :func:`used_memory` and :func:`keys_memory`: ``INFO memory`` (server-wide)
  and the sum of ``MEMORY USAGE`` over the benchmark database's keys (exact).
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from typing import Any, ClassVar

import redis

__all__ = [
    "RoundTrips",
    "command_delta",
    "commandstats",
    "counting_connection_class",
    "keys_memory",
    "script_names",
    "server_cpu",
    "used_memory",
]


def script_names() -> dict[str, str]:
    """SHA1 of each hueyard Lua script -> its name, to label ``EVALSHA`` calls.

    Reads ``framework.scripts`` internals; if they change, calls are just
    labelled ``EVALSHA other``.
    """
    try:
        from framework.scripts import SCRIPT_NAMES, _source

        return {hashlib.sha1(_source(n).encode()).hexdigest(): n for n in SCRIPT_NAMES}
    except Exception:
        return {}


class RoundTrips:
    """Requests sent on a pool's connections, by command (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_command: Counter[str] = Counter()
        self.total = 0
        self._names = script_names()

    def add_request(self) -> None:
        with self._lock:
            self.total += 1

    def add_command(self, args: tuple[Any, ...]) -> None:
        name = _text(args[0]).upper() if args else "?"
        if name == "EVALSHA" and len(args) > 1:
            name = f"EVALSHA {self._names.get(_text(args[1]), 'other')}"
        with self._lock:
            self.by_command[name] += 1

    def snapshot(self) -> tuple[int, Counter[str]]:
        with self._lock:
            return self.total, Counter(self.by_command)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def counting_connection_class(counter: RoundTrips) -> type[redis.Connection]:
    """A ``redis.Connection`` subclass that reports every request to ``counter``.

    Set it as a pool's ``connection_class`` before the pool makes a connection.
    Commands sent on their own are counted by name; a pipeline is counted as
    one request named ``(pipeline)``.
    """

    class CountingConnection(redis.Connection):
        rt: ClassVar[RoundTrips] = counter
        _in_command = threading.local()

        def send_command(self, *args: Any, **kwargs: Any) -> None:
            self.rt.add_command(args)
            self._in_command.flag = True
            try:
                super().send_command(*args, **kwargs)  # type: ignore[no-untyped-call]
            finally:
                self._in_command.flag = False

        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            self.rt.add_request()
            if not getattr(self._in_command, "flag", False):
                self.rt.add_command(("(pipeline)",))
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


def keys_memory(conn: redis.Redis, *, exclude: tuple[str, ...] = ()) -> tuple[int, int]:
    """(bytes, keys): ``MEMORY USAGE ... SAMPLES 0`` summed over the current DB's keys."""
    keys = [k for k in conn.scan_iter(count=1000) if _text(k) not in exclude]
    total = 0
    for start in range(0, len(keys), 500):
        with conn.pipeline(transaction=False) as pipe:
            for key in keys[start : start + 500]:
                pipe.memory_usage(key, samples=0)
            total += sum(int(size or 0) for size in pipe.execute())
    return total, len(keys)
