"""Fixtures for the dashboard tests: a private app on the test database, a signed-in client,
and ``serve``: the dashboard on a loopback port, for tests over real HTTP.

Jobs are put in their states through the storage (claim, then release), as in
``tests/integration/test_jobs_api.py``, so no consumer runs unless a test
starts one.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from dashboard import create_app
from dashboard.server import DashboardServer
from framework import current_job
from framework.application import Hueyard
from framework.handlers import HandlerRegistry, handler
from framework.storage import JobStorage
from tests.conftest import AppFactory

USER, PASSWORD = "ops", "correct horse battery"
ENV = {"DASHBOARD_USERNAME": USER, "DASHBOARD_PASSWORD": PASSWORD}

CONFIG = """
[queues.work]
description = "Work for the tests"
attempts = 1
concurrency = 2
rate_limit = {{ max = 100, per = 60 }}
keep_completed = 10000
keep_failed = 10000
{work}

[queues.hooks]
description = "Webhook deliveries"
attempts = 1

[consumer]
{consumer}

[dashboard]
{dashboard}

[health]
{health}
"""


def basic(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def registry() -> HandlerRegistry:
    handlers = HandlerRegistry()

    @handler("work", registry=handlers)
    def job(payload: dict[str, Any]) -> Any:
        deadline = time.monotonic() + payload.get("spin", 0)
        while time.monotonic() < deadline:  # pure Python: stops at a cancel
            pass
        if payload.get("fail"):
            raise ValueError(f"asked to fail: {payload.get('n')}")
        return {"done": payload.get("n")}

    @handler("hooks", registry=handlers)
    def deliver(payload: dict[str, Any]) -> None: ...

    @handler("work", registry=handlers)
    def fan(payload: dict[str, Any]) -> dict[str, int]:
        """A parent: spawns ``n`` hooks.deliver children (framework/fanin.py)."""
        job = current_job()
        assert job is not None
        ids = job.spawn_many(deliver, [{"n": i} for i in range(payload["n"])])
        return {"spawned": len(ids)}

    return handlers


MakeApp = Callable[..., Hueyard]


@pytest.fixture
def make_app(make_app: AppFactory) -> MakeApp:
    """Build a Hueyard app on the test database; ``dashboard=`` / ``health=`` /
    ``consumer=`` are TOML lines of those tables, ``work=`` more lines of ``[queues.work]``,
    ``schedules=`` whole ``[schedules.<name>]`` tables (on the queues ``work`` and ``hooks``)."""

    def build(
        *,
        dashboard: str = "",
        health: str = "",
        consumer: str = "",
        schedules: str = "",
        work: str = "",
        url: str | None = None,
    ) -> Hueyard:
        body = (
            CONFIG.format(dashboard=dashboard, health=health, consumer=consumer, work=work)
            + schedules
        )
        return make_app(
            body, registry(), prefix="dt", url=url, redis_lines="reconnect_attempts = 1"
        )

    return build


@pytest.fixture
def app(make_app: MakeApp) -> Hueyard:
    return make_app()


@pytest.fixture
def flask_app(app: Hueyard) -> Flask:
    return create_app(app, {"TESTING": True}, env=ENV)


class Dash:
    """A Flask test client that signs in, and posts forms with a fresh CSRF token."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        return self.client.get(path, headers=basic(), **kwargs)

    def token(self, page: str = "/admin/queues/work") -> str:
        html = self.get(page).get_data(as_text=True)
        match = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert match, f"no CSRF token on {page}"
        return match.group(1)

    def post(self, path: str, data: dict[str, str] | None = None, *, confirm: bool = True,
             token: str | None = None) -> TestResponse:  # fmt: skip
        form = dict(data or {})
        form["csrf_token"] = token if token is not None else self.token()
        if confirm:
            form["confirm"] = "yes"
        return self.client.post(path, data=form, headers=basic())


@pytest.fixture
def dash(flask_app: Flask) -> Dash:
    return Dash(flask_app.test_client())


def storage_of(app: Hueyard, queue: str = "work") -> JobStorage:
    storage: JobStorage = app.queue(queue).huey.storage
    storage.read_timeout = 0.1
    return storage


def add(app: Hueyard, n: int = 1, queue: str = "work", **options: Any) -> list[str]:
    handler = "job" if queue == "work" else "deliver"
    return app.enqueue_many(queue, handler, [{"n": i} for i in range(n)], **options)


def finish(app: Hueyard, outcome: str, n: int = 1, queue: str = "work") -> list[str]:
    """Claim the next ``n`` jobs of ``queue`` and release them as ``outcome``."""
    storage = storage_of(app, queue)
    ids = []
    for _ in range(n):
        claimed = storage.claim()
        assert claimed is not None, "expected a job to claim"
        value = '{"ok":1}' if outcome == "completed" else f"ValueError: boom {claimed.id}"
        assert storage.release(claimed, outcome, value=value, traceback="Traceback: boom")
        ids.append(claimed.id)
    return ids


# -- the dashboard over real HTTP ------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: str


@dataclass
class Served:
    port: int

    def request(
        self,
        method: str,
        path: str,
        *,
        host: str | None = "default",
        headers: dict[str, str] | None = None,
        body: str | None = None,
    ) -> Answer:
        """One request; ``host=None`` sends no Host header, ``"default"`` the real one."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            if host == "default":
                host = f"127.0.0.1:{self.port}"
            if host is not None:
                connection.putheader("Host", host)
            for name, value in (headers or {}).items():
                connection.putheader(name, value)
            data = body.encode() if body is not None else None
            if data is not None:
                connection.putheader("Content-Type", "application/x-www-form-urlencoded")
                connection.putheader("Content-Length", str(len(data)))
            connection.endheaders(data)
            response = connection.getresponse()
            return Answer(response.status, response.headers, response.read().decode())
        finally:
            connection.close()

    def get(self, path: str) -> Answer:
        """A signed-in GET."""
        return self.request("GET", path, headers=basic())


Serve = Callable[..., Served]


@pytest.fixture
def serve(make_app: MakeApp) -> Iterator[Serve]:
    """``serve(dashboard=TOML lines, host=bind address)``, or ``serve(app=app)``: a dashboard
    on a free port."""
    servers: list[tuple[DashboardServer, threading.Thread]] = []

    def start(
        *, dashboard: str = "", host: str | None = None, app: Hueyard | None = None
    ) -> Served:
        app = app if app is not None else make_app(dashboard=dashboard)
        flask_app = create_app(app, env=ENV, host=host)
        proxy = app.settings.dashboard.trusted_proxy
        server = DashboardServer(flask_app, "127.0.0.1", 0, grace=2, trusted_proxy=proxy)
        thread = threading.Thread(target=server.serve, daemon=True)
        thread.start()
        servers.append((server, thread))
        return Served(server.port)

    yield start
    for server, thread in servers:
        stop_server(server, thread)


def stop_server(server: DashboardServer, thread: threading.Thread) -> None:
    """Stop ``server`` and wait for its ``serve`` thread to end.

    Its loop looks at the stop flag between two polls (up to 0.2 s apart): a
    connection wakes the poll, so a test's teardown does not wait for the timeout.
    """
    port = server.port
    server.stop()
    with contextlib.suppress(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    thread.join(10)
