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


# -- where the credentials come from ---------------------------------------------------------


def test_dashboard_variables_win_over_bull_board_ones() -> None:
    env = {**ENV, "BULL_BOARD_USERNAME": "bull", "BULL_BOARD_PASSWORD": "board-pass"}
    credentials = credentials_from_env(env)
    assert (credentials.username, credentials.password) == (USER, PASSWORD)


def test_bull_board_variables_are_accepted(app: Hueyard) -> None:
    env = {"BULL_BOARD_USERNAME": "bull", "BULL_BOARD_PASSWORD": "board-pass"}
    client = create_app(app, env=env).test_client()
    assert client.get("/admin/queues", headers=basic("bull", "board-pass")).status_code == 200
    assert client.get("/admin/queues", headers=basic()).status_code == 401


def test_development_defaults_to_the_spec_credentials_with_a_warning(
    app: Hueyard, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="hueyard.dashboard"):
        client = create_app(app, env={}).test_client()
    assert client.get("/admin/queues", headers=basic("admin", "admin123")).status_code == 200
    assert "dashboard credentials not set" in caplog.text
    assert "admin123" not in caplog.text


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "no dashboard credentials are set"),
        ({"DASHBOARD_USERNAME": "admin", "DASHBOARD_PASSWORD": "admin123"},
         "DASHBOARD_PASSWORD is the default 'admin123'"),
        ({"DASHBOARD_USERNAME": "ops", "DASHBOARD_PASSWORD": "admin123"},
         "DASHBOARD_PASSWORD is the default"),
        ({"BULL_BOARD_USERNAME": "admin", "BULL_BOARD_PASSWORD": "admin123"},
         "BULL_BOARD_PASSWORD is the default"),
        ({"DASHBOARD_USERNAME": "ops"}, "DASHBOARD_PASSWORD is not set"),
        ({"DASHBOARD_PASSWORD": "long-password"}, "DASHBOARD_USERNAME is not set"),
    ],
)  # fmt: skip
def test_production_refuses_missing_or_default_credentials(
    app: Hueyard, env: dict[str, str], message: str
) -> None:
    with pytest.raises(DashboardError, match=message):
        create_app(app, env={**env, "HUEYARD_ENV": "production"})


def test_production_starts_with_real_credentials(app: Hueyard) -> None:
    client = create_app(app, env={**ENV, "HUEYARD_ENV": "production"}).test_client()
    assert client.get("/admin/queues", headers=basic()).status_code == 200
    assert client.get("/health").get_json()["environment"] == "production"


def test_the_password_is_never_in_a_repr() -> None:
    assert PASSWORD not in repr(credentials_from_env(ENV))
