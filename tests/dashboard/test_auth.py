"""Who may see what: basic auth on everything but the open endpoints, credentials from env."""

from __future__ import annotations

import logging

import pytest
from flask import Flask

import dashboard.auth
from dashboard import create_app
from dashboard.auth import credentials_from_env
from framework.application import Hueyard
from framework.errors import DashboardError
from tests.dashboard.conftest import ENV, PASSWORD, USER, MakeApp, basic

PROTECTED = [
    "/admin/queues",
    "/admin/queues/work",
    "/admin/queues/work?state=failed",
    "/admin/queues/work/jobs/some-id",
    "/admin/queues/work/jobs/some-id/raw",
    "/admin/queues/work/metrics",
    "/admin/search",
    "/admin/workers",
    "/api/v1/queues/health",
    "/api/v1/queues/metrics",
    "/api/v1/queues/statistics",
    "/metrics",
    "/static/app.js",
]


@pytest.mark.parametrize("path", PROTECTED)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic(USER, "wrong"),
        basic("wrong", PASSWORD),
        basic("", ""),
        {"Authorization": "Bearer x"},
    ],
    ids=["none", "wrong-password", "wrong-user", "empty", "not-basic"],
)
def test_everything_but_health_needs_credentials(
    flask_app: Flask, path: str, headers: dict[str, str]
) -> None:
    with flask_app.test_client().get(path, headers=headers) as response:
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic")
        assert PASSWORD not in response.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/admin/queues/work/pause", "/admin/queues/work/jobs/x/retry"])
def test_actions_need_credentials_before_anything_else(flask_app: Flask, path: str) -> None:
    response = flask_app.test_client().post(path, data={"confirm": "yes"})
    assert response.status_code == 401


def test_the_right_credentials_open_every_page(flask_app: Flask) -> None:
    client = flask_app.test_client()
    for path in ("/admin/queues", "/admin/workers", "/metrics", "/static/app.css"):
        with client.get(path, headers=basic()) as response:  # static files stream: close them
            assert response.status_code == 200, path


def test_health_is_open_by_default(flask_app: Flask) -> None:
    assert flask_app.test_client().get("/health").status_code == 200


def test_open_endpoints_are_config(make_app: MakeApp) -> None:
    # Given /metrics and the whole JSON API open, and /health not
    app = make_app(dashboard='open_endpoints = ["/metrics", "/api/v1/*"]')
    client = create_app(app, env=ENV).test_client()
    # Then
    assert client.get("/metrics").status_code == 200
    assert client.get("/api/v1/queues/health").status_code == 200
    assert client.get("/api/v1/queues/statistics").status_code == 200
    assert client.get("/health").status_code == 401
    assert client.get("/admin/queues").status_code == 401


def test_credentials_are_compared_in_constant_time(
    flask_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a spy on hmac.compare_digest
    calls: list[tuple[bytes, bytes]] = []
    real = dashboard.auth.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(dashboard.auth.hmac, "compare_digest", spy)
    # When the username is wrong
    flask_app.test_client().get("/admin/queues", headers=basic("intruder", "guess"))
    # Then the password was compared too (no early exit)
    assert calls == [(b"intruder", USER.encode()), (b"guess", PASSWORD.encode())]


# -- where the credentials come from, and when they are refused ------------------------------

STRONG = "a-long-enough-pass"  # 18 characters
DEV = {"HUEYARD_ENV": "development"}


def test_dashboard_variables_win_over_bull_board_ones() -> None:
    env = {**ENV, "BULL_BOARD_USERNAME": "bull", "BULL_BOARD_PASSWORD": STRONG}
    credentials = credentials_from_env(env)
    assert (credentials.username, credentials.password) == (USER, PASSWORD)


def test_bull_board_variables_are_accepted(app: Hueyard) -> None:
    env = {"BULL_BOARD_USERNAME": "bull", "BULL_BOARD_PASSWORD": STRONG}
    client = create_app(app, env=env).test_client()
    assert client.get("/admin/queues", headers=basic("bull", STRONG)).status_code == 200
    assert client.get("/admin/queues", headers=basic()).status_code == 401


@pytest.mark.parametrize(
    "environment",
    [
        {"HUEYARD_ENV": "development"},
        {"HUEYARD_ENV": " Development\n"},
        {"HUEYARD_ENV": "DEVELOPMENT"},
        {"NODE_ENV": "development"},
        {"HUEYARD_ENV": "  ", "NODE_ENV": "Development"},
    ],
    ids=["exact", "padded-mixed-case", "upper", "node-env", "blank-hueyard-env"],
)
def test_development_said_explicitly_allows_the_spec_credentials_with_a_warning(
    app: Hueyard, caplog: pytest.LogCaptureFixture, environment: dict[str, str]
) -> None:
    # Given no credentials in an environment that says development
    with caplog.at_level(logging.WARNING, logger="hueyard.dashboard"):
        client = create_app(app, env=environment).test_client()
    # Then the spec's admin / admin123 sign in, and the log says why (without the password)
    assert client.get("/admin/queues", headers=basic("admin", "admin123")).status_code == 200
    assert "dashboard credentials not set" in caplog.text
    assert "=development" in caplog.text
    assert "admin123" not in caplog.text
    assert client.get("/health").get_json()["environment"] == "development"


@pytest.mark.parametrize(
    ("password", "weakness"),
    [
        ("admin123", "is the development default"),
        ("short-pass1", "has 11 characters, fewer than 12"),
        ("q7", "has 2 characters, fewer than 12"),
    ],
    ids=["default", "eleven", "two"],
)
def test_development_accepts_a_weak_password_with_a_warning(
    app: Hueyard, caplog: pytest.LogCaptureFixture, password: str, weakness: str
) -> None:
    # Given a weak password and HUEYARD_ENV=development
    env = {**DEV, "DASHBOARD_USERNAME": "ops", "DASHBOARD_PASSWORD": password}
    with caplog.at_level(logging.WARNING, logger="hueyard.dashboard"):
        client = create_app(app, env=env).test_client()
    # Then it signs in, and the log names the weakness, not the password
    assert client.get("/admin/queues", headers=basic("ops", password)).status_code == 200
    assert f"DASHBOARD_PASSWORD {weakness}" in caplog.text
    assert "production rules refuse it" in caplog.text
    if password != "admin123":  # the public default may be named; a real password never
        assert password not in caplog.text


NOT_DEVELOPMENT = [
    ({}, "neither HUEYARD_ENV nor NODE_ENV is set, so production rules apply"),
    ({"HUEYARD_ENV": "production"}, "HUEYARD_ENV=production, so production rules apply"),
    ({"HUEYARD_ENV": "Production"}, "HUEYARD_ENV=production"),
    ({"HUEYARD_ENV": " PRODUCTION "}, "HUEYARD_ENV=production"),
    ({"HUEYARD_ENV": "prod"}, "HUEYARD_ENV=prod"),
    ({"HUEYARD_ENV": "staging"}, "HUEYARD_ENV=staging"),
    ({"HUEYARD_ENV": "dev"}, "HUEYARD_ENV=dev"),
    ({"HUEYARD_ENV": ""}, "neither HUEYARD_ENV nor NODE_ENV is set"),
    ({"NODE_ENV": "production"}, "NODE_ENV=production"),
    ({"HUEYARD_ENV": "production", "NODE_ENV": "development"}, "HUEYARD_ENV=production"),
]
NOT_DEVELOPMENT_IDS = ["unset", "production", "capitalised", "padded-upper", "prod", "staging",
                       "dev", "empty", "node-env", "hueyard-env-wins"]  # fmt: skip


@pytest.mark.parametrize(("environment", "why"), NOT_DEVELOPMENT, ids=NOT_DEVELOPMENT_IDS)
@pytest.mark.parametrize(
    ("credentials", "message"),
    [
        ({}, "no dashboard credentials are set"),
        ({"DASHBOARD_USERNAME": "admin", "DASHBOARD_PASSWORD": "admin123"},
         "DASHBOARD_PASSWORD is the development default 'admin123'"),
        ({"DASHBOARD_USERNAME": "ops", "DASHBOARD_PASSWORD": "short-pass1"},
         "DASHBOARD_PASSWORD has 11 characters, fewer than 12"),
        ({"BULL_BOARD_USERNAME": "admin", "BULL_BOARD_PASSWORD": "admin123"},
         "BULL_BOARD_PASSWORD is the development default"),
        ({"BULL_BOARD_USERNAME": "bull", "BULL_BOARD_PASSWORD": "board-pass"},
         "BULL_BOARD_PASSWORD has 10 characters, fewer than 12"),
    ],
    ids=["missing", "default", "eleven-chars", "bull-board-default", "bull-board-short"],
)  # fmt: skip
def test_anything_but_development_refuses_missing_default_or_short_credentials(
    app: Hueyard,
    environment: dict[str, str],
    why: str,
    credentials: dict[str, str],
    message: str,
) -> None:
    # Given an environment that does not say development, and unfit credentials
    env = {**environment, **credentials}
    # When the dashboard is built
    with pytest.raises(DashboardError) as raised:
        create_app(app, env=env)
    # Then it refuses, in one line naming the variable, why, and the fix
    text = str(raised.value)
    assert message in text and why in text
    assert "\n" not in text
    assert "HUEYARD_ENV=development" in text
    assert "at least 12 characters" in text
    for value in credentials.values():
        if value not in ("admin", "admin123", "ops", "bull"):
            assert value not in text  # never the password


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DASHBOARD_USERNAME": "ops"}, "DASHBOARD_PASSWORD is not set"),
        ({**DEV, "BULL_BOARD_USERNAME": "bull"}, "BULL_BOARD_PASSWORD is not set"),
    ],
)
def test_a_username_without_a_password_is_refused_in_every_environment(
    app: Hueyard, env: dict[str, str], message: str
) -> None:
    with pytest.raises(DashboardError, match=message):
        create_app(app, env=env)


@pytest.mark.parametrize("variable", ["DASHBOARD_PASSWORD", "BULL_BOARD_PASSWORD"])
def test_a_password_without_a_username_is_the_spec_s_user_admin(
    app: Hueyard, variable: str
) -> None:
    # Given only a strong password, in production (the spec: "Username: admin")
    flask_app = create_app(app, env={variable: STRONG})
    client = flask_app.test_client()
    # Then admin signs in with it, and no other user does
    assert client.get("/admin/queues", headers=basic("admin", STRONG)).status_code == 200
    assert client.get("/admin/queues", headers=basic("ops", STRONG)).status_code == 401
    # And a weak password alone is refused as with a username
    with pytest.raises(DashboardError, match=f"{variable} has 5 characters"):
        create_app(app, env={variable: "short"})


@pytest.mark.parametrize(
    ("environment", "shown"),
    [
        ({}, "production"),
        ({"HUEYARD_ENV": " Staging "}, "staging"),
        ({"NODE_ENV": "production"}, "production"),
        ({"HUEYARD_ENV": "production", "NODE_ENV": "test"}, "production"),
    ],
)
def test_twelve_characters_start_anywhere_and_health_names_the_environment(
    app: Hueyard, environment: dict[str, str], shown: str
) -> None:
    # Given a password of exactly the minimum length
    env = {**environment, "DASHBOARD_USERNAME": "ops", "DASHBOARD_PASSWORD": "twelve-chars"}
    # When the dashboard is built outside development
    client = create_app(app, env=env).test_client()
    # Then it starts, signs in, and /health reports the resolved environment
    assert client.get("/admin/queues", headers=basic("ops", "twelve-chars")).status_code == 200
    assert client.get("/health").get_json()["environment"] == shown


def test_the_password_is_never_in_a_repr() -> None:
    assert PASSWORD not in repr(credentials_from_env(ENV))
