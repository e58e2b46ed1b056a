"""The plumbing of the fake HTTP services the tests run on 127.0.0.1 (tests/fake_graph.py,
tests/fake_openai.py, tests/fake_slack.py): a threaded server on a free loopback port,
keep-alive like the real APIs, quiet, that hands every GET and POST to ``answer``."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["LocalServer", "send"]

Answer = Callable[[BaseHTTPRequestHandler, bytes], None]


class LocalServer:
    """Serves ``answer(handler, body)`` for each request until :meth:`close`."""

    def __init__(self, answer: Answer) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real APIs

            def do_POST(self) -> None:
                answer(self, self.rfile.read(int(self.headers.get("Content-Length", "0"))))

            def do_GET(self) -> None:
                answer(self, b"")

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # a client that gave up (a timeout) is not an error of the fake
        self.server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def send(
    handler: BaseHTTPRequestHandler,
    status: int,
    data: bytes,
    content_type: str,
    headers: Mapping[str, str],
    *,
    length: bool = True,
) -> None:
    """Write one response; ``length=False`` sends none and closes the connection after the
    body. A client that already gave up is ignored."""
    with contextlib.suppress(OSError):
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        if length:
            handler.send_header("Content-Length", str(len(data)))
        else:
            handler.send_header("Connection", "close")
            handler.close_connection = True
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)
