"""Private ``redis-server`` processes, for tests that need Redis to go away.

The shared server (127.0.0.1:6379, see ``tests/conftest.py``) is never
stopped: a test that stops Redis starts its own with :class:`RedisServer`.
"""

from __future__ import annotations

import itertools
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType

import redis

__all__ = ["RedisServer", "free_port"]


def _ephemeral_range() -> tuple[int, int]:
    """The ports the kernel gives outgoing connections (Linux's default elsewhere)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


_LOWEST = 10000
_SLICE = 1000


def _slice() -> range:
    """This process's ports: below the ephemeral range, one slice per xdist worker.

    Below the ephemeral range, because a port taken from it (``bind(("", 0))``)
    may be the one the kernel gives a client's outgoing connection before the
    server binds it: the server then fails to start, or a client that waits for
    it connects to itself (TCP's simultaneous open) and reads its own command
    back. One slice per worker, so two workers never hand out the same port.
    """
    low = _ephemeral_range()[0]
    slices = max((low - _LOWEST) // _SLICE, 1)
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    start = _LOWEST + (worker % slices) * _SLICE
    return range(start, start + _SLICE)


_handed_out = itertools.count(random.randrange(_SLICE))


def free_port() -> int:
    """A TCP port nothing listens on right now, outside the ephemeral range, never one
    this process handed out in its last thousand calls (see :func:`_slice`)."""
    ports = _slice()
    for _ in range(len(ports)):
        port = ports[next(_handed_out) % len(ports)]
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1}")


class RedisServer:
    """A private ``redis-server`` on ``port`` that a test may stop and start again.

    No persistence: a restarted server is empty. Its working directory is a
    private temporary one (unless ``--dir`` is given): a replica writes the
    master's data there as ``dump.rdb`` when it syncs, and a server started
    where such a file lies would load it.
    """

    def __init__(self, port: int | None = None, *extra_args: str) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.port = port or free_port()
        own_dir: list[str] = []
        if "--dir" not in extra_args:
            directory = tempfile.mkdtemp(prefix="redis-")
            own_dir = ["--dir", directory]
            # removed with this object, or at exit: it outlives a stop, for a restart
            weakref.finalize(self, shutil.rmtree, directory, ignore_errors=True)
        self._argv = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            *own_dir,
            *extra_args,
        ]  # fmt: skip
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 5.0) -> RedisServer:
        """Start the server and wait until it accepts connections."""
        assert self._process is None, "already running"
        self._process = subprocess.Popen(
            self._argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited at start")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not start in {timeout} s")

    def terminate(self) -> None:
        """Ask the server to stop (SIGTERM) without waiting: :meth:`stop` waits. Several
        servers stop at once when each is told first and then waited for."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()

    def stop(self) -> None:
        """Terminate the server and wait for it to exit (its port is free afterwards)."""
        if self._process is None:
            return
        self.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=5)
        self._process = None

    def kill(self) -> None:
        """SIGKILL the server, as a crash would: no shutdown, no last write."""
        if self._process is None:
            return
        self._process.kill()
        self._process.wait(timeout=5)
        self._process = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def client(self) -> redis.Redis:
        """A plain redis-py client to this server (for planting and checking data)."""
        return redis.Redis(host="127.0.0.1", port=self.port)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
