"""A TCP proxy in front of a real Redis server that can lose its replies.

A connection that breaks after Redis ran a command and before its reply
arrived is the one failure a client can not tell apart from "never ran".
:class:`FlakyProxy` makes it on loopback: while :attr:`FlakyProxy.losing`
is set, every reply is dropped and the client's connection closed, so the
command has run in Redis and the client sees a broken connection.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

__all__ = ["FlakyProxy"]


class FlakyProxy:
    """Forwards ``127.0.0.1:<port>`` to ``127.0.0.1:<target_port>``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.losing = threading.Event()
        self.lost = 0  # replies dropped so far
        self.passing: int | None = None  # replies to pass before losing the rest (lose_after)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def lose_after(self, replies: int) -> None:
        """Pass the next ``replies`` replies (a chunk read from Redis each: one reply a
        command, for commands sent one at a time), then lose the rest."""
        self.passing = replies

    def _pump(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        try:
            while data := source.recv(65536):
                if replies and self.passing is not None:
                    with self._lock:
                        if self.passing == 0:
                            self.passing = None
                            self.losing.set()
                        else:
                            self.passing -= 1
                if replies and self.losing.is_set():
                    self.lost += 1
                    break  # the command ran; its reply never arrives
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._server.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def __enter__(self) -> FlakyProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
