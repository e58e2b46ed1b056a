"""The perimeter over a real socket: the Host allow-list and where a POST may come from.

Each test serves the dashboard with the project's :class:`DashboardServer` on a
loopback port and talks to it with :mod:`http.client`, so the ``Host`` header
is exactly what a browser (or a DNS-rebinding page) would send.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from flask import Flask

from dashboard import create_app
from dashboard.server import DashboardServer
from tests.dashboard.conftest import ENV, Dash, MakeApp, basic


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
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
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


Serve = Callable[..., Served]


@pytest.fixture
def serve(make_app: MakeApp) -> Iterator[Serve]:
    """``serve(dashboard=TOML lines, host=bind address)``: a dashboard on a free port."""
    servers: list[tuple[DashboardServer, threading.Thread]] = []

    def start(*, dashboard: str = "", host: str | None = None) -> Served:
        flask_app = create_app(make_app(dashboard=dashboard), env=ENV, host=host)
        server = DashboardServer(flask_app, "127.0.0.1", 0, grace=2)
        thread = threading.Thread(target=server.serve, daemon=True)
        thread.start()
        servers.append((server, thread))
        return Served(server.port)

    yield start
    for server, thread in servers:
        server.stop()
        thread.join(10)


# -- the Host allow-list ---------------------------------------------------------------------

ALLOWED_BY_DEFAULT = ["127.0.0.1:{port}", "127.0.0.1", "localhost:{port}", "LocalHost",
                      "localhost.", "[::1]:{port}", "[::1]", "localhost:1"]  # fmt: skip

UNKNOWN_HOST = "Unknown host. Add it to [dashboard] allowed_hosts in config/queues.toml.\n"
REFUSED_BY_DEFAULT = [
    "evil.example",
    "evil.example:{port}",
    "127.0.0.1.evil.example",
    "localhost.evil.example:{port}",
    "evil-localhost",
    "127.0.0.2",
    "[::2]:{port}",
    "0.0.0.0:{port}",
    "",
    "local host",
    "localhost:99999",
]


@pytest.mark.parametrize("host", ALLOWED_BY_DEFAULT)
def test_the_default_list_answers_the_loopback_names_whatever_the_port(
    serve: Serve, host: str
) -> None:
    # Given a dashboard with the default allowed_hosts
    served = serve()
    header = host.format(port=served.port)
    # When a request names a loopback host
    health = served.request("GET", "/health", host=header)
    page = served.request("GET", "/admin/queues", host=header, headers=basic())
    # Then it is answered
    assert (health.status, page.status) == (200, 200)


@pytest.mark.parametrize("host", REFUSED_BY_DEFAULT)
@pytest.mark.parametrize(
    ("method", "path", "credentials"),
    [("GET", "/health", False), ("GET", "/admin/queues", True), ("GET", "/static/app.js", True),
     ("POST", "/admin/queues/work/pause", True), ("OPTIONS", "/admin/queues", True)],
    ids=["health", "page", "static", "post", "options"],
)  # fmt: skip
def test_any_other_host_gets_400_before_anything_else(
    serve: Serve, host: str, method: str, path: str, credentials: bool
) -> None:
    # Given a dashboard with the default allowed_hosts
    served = serve()
    # When a request names another host (a DNS-rebinding page), even with credentials
    answer = served.request(
        method, path, host=host.format(port=served.port),
        headers=basic() if credentials else {}, body="confirm=yes" if method == "POST" else None,
    )  # fmt: skip
    # Then it gets a short plain 400, and nothing of the dashboard
    assert answer.status == 400
    assert answer.headers["Content-Type"].startswith("text/plain")
    assert (
        answer.body == "Unknown host. Add it to [dashboard] allowed_hosts in config/queues.toml.\n"
    )
    assert answer.headers["X-Frame-Options"] == "DENY"


def test_a_request_without_a_host_header_is_answered(serve: Serve) -> None:
    # Given HTTP/1.0 without Host (a probe, never a browser: no rebinding is possible)
    served = serve()
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    connection._http_vsn, connection._http_vsn_str = 10, "HTTP/1.0"  # type: ignore[attr-defined]
    connection.putrequest("GET", "/health", skip_host=True)
    connection.endheaders()
    # Then
    assert connection.getresponse().status == 200
    connection.close()


@pytest.mark.parametrize(
    ("setting", "bind", "allowed", "refused"),
    [
        ('allowed_hosts = [".example.com", "Dash.Internal."]', None,
         ["example.com", "a.b.example.com:8443", "dash.internal", "DASH.INTERNAL:1"],
         ["localhost", "127.0.0.1", "badexample.com", "example.com.evil", "internal"]),
        ('allowed_hosts = ["*"]', None, ["anything.example", "localhost", "10.0.0.9:80"], [""]),
        ('allowed_hosts = ["::1", "10.0.0.5"]', None, ["[::1]:80", "10.0.0.5"], ["localhost"]),
        ("", "10.1.2.3", ["10.1.2.3:5000", "localhost", "127.0.0.1"], ["10.1.2.4"]),
        ("", "0.0.0.0", ["localhost", "[::1]"], ["0.0.0.0:5000", "192.168.1.7"]),
        ("", "::", ["[::1]"], ["[::]:5000"]),
    ],
    ids=["domain-and-name", "star", "ipv6-and-ipv4", "bind-address", "wildcard-bind",
         "wildcard-bind-ipv6"],
)  # fmt: skip
def test_allowed_hosts_replaces_the_default_and_the_bind_address_joins_it(
    serve: Serve, setting: str, bind: str | None, allowed: list[str], refused: list[str]
) -> None:
    # Given [dashboard] allowed_hosts, or the default list for a bind address
    served = serve(dashboard=setting, host=bind)
    # Then exactly the listed hosts are answered
    for host in allowed:
        assert served.request("GET", "/health", host=host).status == 200, host
    for host in refused:
        assert served.request("GET", "/health", host=host).status == 400, host


# -- where a POST may come from --------------------------------------------------------------


DASH = "dash.example.com"


def _post(
    flask_app: Flask, token: str, host: str, headers: dict[str, str]
) -> int:  # the CSRF check does not depend on the transport: the test client is enough
    response = flask_app.test_client().post(
        "/admin/queues/work/pause",
        data={"csrf_token": token, "confirm": "yes"},
        headers={**basic(), "Host": host, **headers},
    )
    return response.status_code


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Origin": "http://localhost:5000"}, 303),
        ({"Origin": "https://127.0.0.1"}, 303),
        ({"Origin": "http://localhost:31337"}, 303),  # ports are not compared; the token is
        ({"Referer": "http://[::1]:5000/admin/queues/work"}, 303),
        ({}, 303),
        ({"Origin": "http://evil.example"}, 403),
        ({"Origin": "http://localhost.evil.example"}, 403),
        ({"Origin": "null"}, 403),
        ({"Origin": "file://localhost"}, 403),
        ({"Referer": "https://evil.example/admin/queues"}, 403),
        ({"Origin": "http://evil.example", "Referer": "http://localhost/"}, 403),
    ],
)
def test_a_post_must_come_from_a_page_on_an_allowed_host(
    flask_app: Flask, dash: Dash, headers: dict[str, str], status: int
) -> None:
    assert _post(flask_app, dash.token(), "localhost", headers) == status


def test_the_origin_is_checked_against_the_list_not_the_request_s_own_host(
    make_app: MakeApp,
) -> None:
    # Given a dashboard that answers dash.example.com only
    flask_app = create_app(make_app(dashboard='allowed_hosts = ["dash.example.com"]'), env=ENV)
    page = flask_app.test_client().get(
        "/admin/queues/work", headers={**basic(), "Host": "dash.example.com"}
    )
    token = page.get_data(as_text=True).split('name="csrf_token" value="')[1].split('"')[0]
    # Then a page on that host may post, and a loopback origin (not listed) may not
    assert (
        _post(flask_app, token, "dash.example.com", {"Origin": "https://dash.example.com"}) == 303
    )
    assert _post(flask_app, token, DASH, {"Origin": "http://localhost"}) == 403


def test_with_any_host_allowed_the_origin_must_be_the_request_s_host(make_app: MakeApp) -> None:
    # Given allowed_hosts = ["*"] (a proxy in front checks the host)
    flask_app = create_app(make_app(dashboard='allowed_hosts = ["*"]'), env=ENV)
    token = Dash(flask_app.test_client()).token()
    # Then a rebinding page's own origin is still refused, a same-host one accepted
    assert _post(flask_app, token, DASH, {"Origin": "http://evil.example"}) == 403
    assert (
        _post(flask_app, token, "dash.example.com", {"Origin": "https://dash.example.com"}) == 303
    )
