"""The perimeter over a real socket: the Host allow-list and where a POST may come from.

Each test serves the dashboard with the project's :class:`DashboardServer` on a
loopback port and talks to it with :mod:`http.client`, so the ``Host`` header
is exactly what a browser (or a DNS-rebinding page) would send.
"""

from __future__ import annotations

import http.client
import logging
import time

import pytest
from flask import Flask

from dashboard import create_app
from tests.dashboard.conftest import ENV, PASSWORD, USER, Dash, MakeApp, Serve, basic

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


# -- every method needs credentials ----------------------------------------------------------


@pytest.mark.parametrize("method", ["OPTIONS", "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize(
    "path", ["/admin/queues", "/admin/queues/work/pause", "/api/v1/queues/health", "/metrics"]
)
def test_every_method_needs_credentials_options_included(
    serve: Serve, method: str, path: str
) -> None:
    # Given a dashboard, and a request of any method without credentials
    served = serve()
    # When it is sent
    answer = served.request(method, path)
    # Then it is challenged, and says nothing of what the URL allows
    assert answer.status == 401
    assert answer.headers["WWW-Authenticate"].startswith("Basic ")
    assert "Allow" not in answer.headers


def test_options_with_credentials_and_on_an_open_endpoint_is_answered(serve: Serve) -> None:
    served = serve()
    signed_in = served.request("OPTIONS", "/admin/queues", headers=basic())
    assert signed_in.status == 200 and "GET" in signed_in.headers["Allow"]
    assert served.request("OPTIONS", "/health").status == 200


# -- failed sign-ins -------------------------------------------------------------------------

THROTTLE = "max_failed_logins = 3\nfailed_login_window = 60\nlogin_lockout = 1.5"

BAD_CREDENTIALS = [
    basic(USER, "wrong"),
    basic("intruder", PASSWORD),
    basic("", ""),
    {"Authorization": "Bearer some-token"},
    {"Authorization": "Basic not-base64!"},
]


@pytest.mark.parametrize(
    "bad", BAD_CREDENTIALS, ids=["password", "username", "empty", "bearer", "garbage"]
)
def test_failed_sign_ins_lock_the_address_out(serve: Serve, bad: dict[str, str]) -> None:
    # Given a dashboard that allows 3 failures a minute, then 1.5 s of lockout
    served = serve(dashboard=THROTTLE)
    # When an address fails to sign in 3 times
    answers = [served.request("GET", "/admin/queues", headers=bad) for _ in range(3)]
    # Then the third failure starts the lockout: 429 with Retry-After
    assert [a.status for a in answers] == [401, 401, 429]
    assert answers[2].headers["Retry-After"] == "2"
    assert answers[2].body == "Too many failed sign-ins from your address; try again in 2 s.\n"
    # And even the right credentials wait, any method, while open endpoints still answer
    locked = served.request("GET", "/admin/queues", headers=basic())
    assert locked.status == 429 and 1 <= int(locked.headers["Retry-After"]) <= 2
    assert served.request("OPTIONS", "/admin/queues", headers=basic()).status == 429
    assert served.request("GET", "/health").status == 200
    assert served.request("GET", "/health", headers=basic()).status == 200


def test_a_lockout_ends_after_its_time(serve: Serve) -> None:
    # Given an address locked out for 1.5 s after 3 failures
    served = serve(dashboard=THROTTLE)
    for _ in range(3):
        served.request("GET", "/admin/queues", headers=BAD_CREDENTIALS[0])
    assert served.request("GET", "/admin/queues", headers=basic()).status == 429
    # When the lockout is over
    time.sleep(1.6)
    # Then the right credentials sign in again
    assert served.request("GET", "/admin/queues", headers=basic()).status == 200


def test_a_request_without_credentials_is_not_a_failure(serve: Serve) -> None:
    # Given a browser that asks before it sends credentials, many times
    served = serve(dashboard=THROTTLE)
    for _ in range(5):
        assert served.request("GET", "/admin/queues").status == 401
    # Then it is not locked out
    assert served.request("GET", "/admin/queues", headers=basic()).status == 200


def test_a_success_forgets_the_failures_and_old_failures_expire(serve: Serve) -> None:
    # Given 3 failures a 0.5 s window
    served = serve(dashboard="max_failed_logins = 3\nfailed_login_window = 0.5")
    wrong = basic(USER, "wrong")
    # When two failures are followed by a success, then two more failures
    for _ in range(2):
        served.request("GET", "/admin/queues", headers=wrong)
    assert served.request("GET", "/admin/queues", headers=basic()).status == 200
    statuses = [served.request("GET", "/admin/queues", headers=wrong).status for _ in range(2)]
    # Then the count started again
    assert statuses == [401, 401]
    # When the window passes before the next failure
    time.sleep(0.6)
    # Then the old failures no longer count
    assert served.request("GET", "/admin/queues", headers=wrong).status == 401


def test_wrong_credentials_on_an_open_endpoint_count_too(serve: Serve) -> None:
    # Given /health, open, probed with wrong credentials 3 times
    served = serve(dashboard=THROTTLE)
    for _ in range(3):
        assert served.request("GET", "/health", headers=basic(USER, "guess")).status == 200
    # Then the address is locked out of the rest
    assert served.request("GET", "/admin/queues", headers=basic()).status == 429


def test_each_failure_is_logged_with_address_and_username_never_the_password(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    served = serve(dashboard=THROTTLE)
    with caplog.at_level(logging.WARNING, logger="hueyard.dashboard"):
        for _ in range(3):
            served.request("GET", "/admin/queues", headers=basic("intruder\nforged", "hunter2-pw"))
        served.request("GET", "/admin/queues", headers={"Authorization": "Bearer tok-123456"})
    failures = [r.getMessage() for r in caplog.records if "failed sign-in from" in r.getMessage()]
    assert failures[0] == (
        "dashboard: failed sign-in from 127.0.0.1 as 'intruder\\nforged' on GET /admin/queues "
        "(1 of 3 in 60 s)"
    )
    assert len(failures) == 3  # the 4th request came while locked out: not counted
    assert "127.0.0.1 locked out for 2 s after 3 failed sign-ins" in caplog.text
    assert "hunter2-pw" not in caplog.text and "tok-123456" not in caplog.text


# -- X-Forwarded-For -------------------------------------------------------------------------


def test_x_forwarded_for_is_ignored_by_default(serve: Serve) -> None:
    # Given no trusted_proxy, and failures that claim to come from 198.51.100.1
    served = serve(dashboard=THROTTLE)
    spoofed = {**basic(USER, "wrong"), "X-Forwarded-For": "198.51.100.1"}
    for _ in range(3):
        served.request("GET", "/admin/queues", headers=spoofed)
    # Then the real peer is locked out, whatever address it claims next
    other = {**basic(), "X-Forwarded-For": "203.0.113.9"}
    assert served.request("GET", "/admin/queues", headers=other).status == 429


def test_a_trusted_proxy_s_x_forwarded_for_names_the_client(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the proxy at 127.0.0.1 is trusted
    served = serve(dashboard=THROTTLE + '\ntrusted_proxy = "127.0.0.1"')
    wrong = {**basic(USER, "wrong"), "X-Forwarded-For": "203.0.113.5, 198.51.100.1"}
    # When one client behind it fails 3 times
    with caplog.at_level(logging.WARNING, logger="hueyard.dashboard"):
        for _ in range(3):
            served.request("GET", "/admin/queues", headers=wrong)
    # Then that client (the proxy's view: the last address) is locked out, another is not
    assert "failed sign-in from 198.51.100.1 as 'ops'" in caplog.text
    client = {**basic(), "X-Forwarded-For": "198.51.100.1"}
    assert served.request("GET", "/admin/queues", headers=client).status == 429
    other = {**basic(), "X-Forwarded-For": "198.51.100.2"}
    assert served.request("GET", "/admin/queues", headers=other).status == 200
