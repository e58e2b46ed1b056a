"""Serving the dashboard: waitress (pure-Python, production-grade WSGI), stopped gracefully.

``hueyard dashboard`` calls :func:`run_dashboard`; ``hueyard up`` calls
:func:`run_up`, which runs a consumer for every queue and the dashboard in one
process. Both follow the same credential rules (:mod:`dashboard.auth`): the
development defaults need ``HUEYARD_ENV=development``, said out loud.

On SIGTERM or SIGINT the server stops accepting connections, lets the
requests in progress finish and their answers go out, then exits: within
:data:`SHUTDOWN_GRACE` seconds whatever is still running.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, create_server

from framework.errors import DashboardError

if TYPE_CHECKING:
    from dashboard.state import DashboardState

__all__ = ["SHUTDOWN_GRACE", "DashboardServer", "run_dashboard", "run_up"]

logger = logging.getLogger("hueyard.dashboard")

SHUTDOWN_GRACE = 30.0
"""Seconds a stopping server gives the requests in progress."""

THREADS = 8
"""Requests served at once."""

_POLL = 0.2  # seconds between two looks at the stop flag


class DashboardServer:
    """A waitress server with a :meth:`stop` that drains instead of dropping requests.

    >>> server = DashboardServer(wsgi_app, "127.0.0.1", 0)   # doctest: +SKIP
    >>> threading.Thread(target=server.serve).start(); server.stop()  # doctest: +SKIP
    """

    def __init__(
        self,
        wsgi_app: Any,
        host: str,
        port: int,
        *,
        grace: float = SHUTDOWN_GRACE,
        trusted_proxy: str | None = None,
    ) -> None:
        self.grace = grace
        self._map: dict[int, Any] = {}
        # X-Forwarded-For names the client only when it comes from the trusted proxy;
        # otherwise waitress drops it, and REMOTE_ADDR (what the login throttle counts
        # by) is the peer's address.
        proxy: dict[str, Any] = {}
        if trusted_proxy is not None:
            proxy = {"trusted_proxy": trusted_proxy, "trusted_proxy_headers": {"x-forwarded-for"}}
        self._server = create_server(
            wsgi_app,
            map=self._map,
            host=host,
            port=port,
            threads=THREADS,
            ident="hueyard",
            clear_untrusted_proxy_headers=True,
            **proxy,
        )
        self._stop = threading.Event()
        self.stopped = threading.Event()

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every listening socket (port 0 becomes the real one)."""
        return [
            (obj.effective_host, int(obj.effective_port))
            for obj in self._map.values()
            if isinstance(obj, BaseWSGIServer)
        ]

    @property
    def port(self) -> int:
        return self.addresses[0][1]

    def serve(self) -> None:
        """Serve until :meth:`stop`, then drain and close."""
        try:
            while not self._stop.is_set():
                wasyncore.loop(timeout=_POLL, map=self._map, use_poll=True, count=1)
            self._drain()
        finally:
            self.stopped.set()

    def stop(self) -> None:
        """Ask :meth:`serve` to finish (safe from a signal handler or another thread)."""
        self._stop.set()

    def _busy(self) -> bool:
        return any(
            isinstance(obj, HTTPChannel) and (obj.requests or obj.total_outbufs_len)
            for obj in list(self._map.values())
        )

    def _drain(self) -> None:
        deadline = time.monotonic() + self.grace
        for obj in list(self._map.values()):
            if isinstance(obj, BaseWSGIServer):
                wasyncore.dispatcher.close(obj)  # stop accepting; keep the trigger
        while self._busy() and time.monotonic() < deadline:
            wasyncore.loop(timeout=0.05, map=self._map, use_poll=True, count=1)
        self._server.task_dispatcher.shutdown(
            cancel_pending=True, timeout=max(deadline - time.monotonic(), 0.1)
        )
        wasyncore.close_all(self._map)


def _build(host: str | None, port: int | None) -> tuple[Any, DashboardServer]:
    from dashboard import create_app
    from dashboard.state import EXTENSION
    from framework.runtime import get_app

    app = get_app()
    settings = app.settings.dashboard
    flask_app = create_app(app, host=host or settings.host)
    listen_host, listen_port = host or settings.host, settings.port if port is None else port
    try:
        server = DashboardServer(
            flask_app, listen_host, listen_port, trusted_proxy=settings.trusted_proxy
        )
    except (OSError, ValueError) as exc:  # in use, not this host's address, not an address
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DashboardError(
            f"the dashboard can not listen on {listen_host}:{listen_port}: {reason}. Choose "
            "another port (--port, or [dashboard] port) or stop what listens there (ss -ltnp "
            "shows it); --host (or [dashboard] host) is an address of this host, 0.0.0.0 for "
            "all of them, or a name that resolves to one"
        ) from None
    for listen_host, listen_port in server.addresses:
        shown = f"[{listen_host}]" if ":" in listen_host else listen_host
        print(f"hueyard dashboard: http://{shown}:{listen_port}/admin/queues", file=sys.stderr)
    state: DashboardState = flask_app.extensions[EXTENSION]
    rules = "development defaults allowed" if state.environment.development else "production rules"
    print(
        f"hueyard dashboard: environment {state.environment.name} "
        f"({state.environment.setting}; {rules}); credentials: {state.credentials.source}",
        file=sys.stderr,
    )
    return app, server


def run_dashboard(host: str | None = None, port: int | None = None) -> None:
    """``hueyard dashboard``: serve until SIGTERM or SIGINT, then stop gracefully."""
    _, server = _build(host, port)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logger.warning("dashboard: %s, finishing requests in progress", signal.Signals(signum).name)
        server.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    server.serve()
    print("hueyard dashboard: stopped", file=sys.stderr)


def run_up(host: str | None = None, port: int | None = None) -> None:
    """``hueyard up``: a consumer for every queue and the dashboard, in one process.

    The consumer owns the signals (SIGTERM / SIGINT stop it gracefully); the
    dashboard stops when the consumer has.
    """
    from framework.consumer import exit_despite_threads

    app, server = _build(host, port)
    thread = threading.Thread(target=server.serve, name="dashboard", daemon=True)
    thread.start()
    code: int | None = None  # the consumer's exit status; None: it ended in an error
    try:
        app.create_consumer().run(exit_process=False)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        raise
    finally:
        server.stop()
        thread.join(SHUTDOWN_GRACE + 5)
        print("hueyard up: stopped", file=sys.stderr)
        if code is not None:  # an error goes on up, with its traceback
            exit_despite_threads(code)
