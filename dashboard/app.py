"""The app factory: options, the perimeter (dashboard.guard), security headers, error pages."""

from __future__ import annotations

import logging
import os
import secrets
import traceback
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, render_template, request
from werkzeug.exceptions import HTTPException

from dashboard import actions, api, csrf, guard, pages
from dashboard.auth import credentials_from_env, current_user, environment_from_env
from dashboard.hosts import AllowedHosts
from dashboard.present import register_filters
from dashboard.state import EXTENSION, DashboardState
from dashboard.throttle import LoginThrottle
from framework import defaults
from framework.application import Hueyard
from framework.errors import RedisUnavailableError, StorageError
from framework.jobs import Jobs
from framework.masking import Masker
from framework.runtime import get_app
from framework.ticks import Schedules

__all__ = ["CONTENT_SECURITY_POLICY", "create_app"]

logger = logging.getLogger("hueyard.dashboard")

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
"""No inline script or style anywhere: the refresh and theme code is a static file."""

_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def create_app(
    app: Hueyard | None = None,
    test_config: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    host: str | None = None,
) -> Flask:
    """Build the dashboard for ``app`` (default: :func:`framework.get_app`).

    ``host`` is the address the server listens on (default ``[dashboard] host``);
    unless ``[dashboard] allowed_hosts`` is set, it is one of the ``Host`` headers
    answered (:mod:`dashboard.hosts`).

    ``env`` (default ``os.environ``) gives the credentials and ``HUEYARD_ENV``
    (or ``NODE_ENV``); ``test_config`` is laid over Flask's config. Raises
    :class:`~framework.errors.DashboardError` without good credentials, unless the
    environment is ``development`` (see :mod:`dashboard.auth`).
    """
    env = os.environ if env is None else env
    hueyard = app if app is not None else get_app()
    settings = hueyard.settings.dashboard
    flask_app = Flask(__name__)
    # Every URL answers with a trailing slash too (/admin/queues/), as Bull Board's
    # Express routes do; an open endpoint is still only its exact path.
    flask_app.url_map.strict_slashes = False
    flask_app.config.update(
        MAX_CONTENT_LENGTH=64 * 1024,  # forms here are a few fields
        JSON_SORT_KEYS=False,
    )
    if test_config:
        flask_app.config.update(test_config)
    secret = env.get("DASHBOARD_SECRET_KEY", "")
    state = DashboardState(
        app=hueyard,
        jobs=Jobs(hueyard, masked=True),  # every job a view gets has its secrets hidden
        schedules=Schedules(hueyard),
        credentials=credentials_from_env(env),
        environment=environment_from_env(env),
        read_only=settings.read_only,
        open_endpoints=tuple(settings.open_endpoints),
        allowed_hosts=AllowedHosts.resolve(settings.allowed_hosts, host or settings.host),
        page_size=settings.page_size,
        search_limit=settings.search_limit,
        search_bytes=settings.search_bytes,
        preview_chars=settings.payload_preview_bytes,
        csrf_secret=secret.encode() if secret else secrets.token_bytes(32),
        throttle=LoginThrottle(
            max_failures=settings.max_failed_logins,
            window=settings.failed_login_window,
            lockout=settings.login_lockout,
            max_clients=defaults.MAX_THROTTLED_CLIENTS,
        ),
    )
    flask_app.extensions[EXTENSION] = state
    flask_app.json.sort_keys = False  # type: ignore[attr-defined]
    guard.install(flask_app, state)
    register_filters(flask_app)
    _install_template_globals(flask_app, state)
    flask_app.register_blueprint(api.blueprint)
    flask_app.register_blueprint(pages.blueprint)
    flask_app.register_blueprint(actions.blueprint)
    _install_headers(flask_app)
    _install_errors(flask_app, hueyard.masker)
    return flask_app


def _install_template_globals(flask_app: Flask, state: DashboardState) -> None:
    @flask_app.context_processor
    def template_globals() -> dict[str, Any]:
        return {
            "read_only": state.read_only,
            "environment": state.environment.name,
            "csrf_field": csrf.FIELD,
            "csrf_token": lambda: csrf.make_token(state.csrf_secret, current_user()),
        }


def _install_headers(flask_app: Flask) -> None:
    @flask_app.after_request
    def security_headers(response: Response) -> Response:
        for name, value in _HEADERS.items():
            response.headers.setdefault(name, value)
        if response.mimetype in ("text/html", "application/json"):  # pages and job data
            response.headers.setdefault("Cache-Control", "no-store")
        return response


def _install_errors(flask_app: Flask, masker: Masker) -> None:
    # No exception text reaches a page (it could quote a payload and its secrets), but
    # hueyard's own account of what Redis refused: the key, its type and the fix, masked.
    @flask_app.errorhandler(RedisUnavailableError)
    def redis_down(exc: RedisUnavailableError) -> tuple[str, int]:
        logger.error("dashboard: %s", exc)
        return render_template("error.html", status=503, message=_REDIS_DOWN), 503

    @flask_app.errorhandler(StorageError)
    def redis_refused(exc: StorageError) -> tuple[str, int]:
        told = masker.text(str(exc))
        logger.error("dashboard: %s on %s %s: %s", type(exc).__name__, request.method,
                     request.path, told)  # fmt: skip
        return render_template("error.html", status=500, message=f"{_REFUSED} {told}"), 500

    @flask_app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        if exc.code == 401:
            return exc
        return render_template("error.html", status=exc.code, message=exc.description), exc.code

    @flask_app.errorhandler(Exception)
    def crash(exc: Exception) -> tuple[str, int]:
        # The frames, not the message: a message may quote job data.
        frames = "".join(traceback.format_tb(exc.__traceback__))
        logger.error(
            "dashboard: %s on %s %s\n%s", type(exc).__name__, request.method, request.path, frames
        )
        return render_template("error.html", status=500, message=_CRASH), 500


_REDIS_DOWN = "Redis does not answer. The page will work again once it is back."
_CRASH = "Something went wrong while building this page. The error was logged."
_REFUSED = "Redis refused this page's reads:"
