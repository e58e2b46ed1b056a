"""The app factory: options, auth on every request, security headers, error pages."""

from __future__ import annotations

import logging
import os
import secrets
import traceback
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, render_template, request
from flask_httpauth import HTTPBasicAuth
from werkzeug.exceptions import HTTPException

from dashboard import actions, api, csrf, pages
from dashboard.auth import credentials_from_env, current_user, environment_from_env, is_open
from dashboard.hosts import AllowedHosts
from dashboard.present import register_filters
from dashboard.state import EXTENSION, DashboardState
from framework.application import Hueyard
from framework.errors import RedisUnavailableError
from framework.jobs import Jobs
from framework.runtime import get_app

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
    flask_app.config.update(
        MAX_CONTENT_LENGTH=64 * 1024,  # forms here are a few fields
        JSON_SORT_KEYS=False,
    )
    if test_config:
        flask_app.config.update(test_config)
    secret = env.get("DASHBOARD_SECRET_KEY", "")
    state = DashboardState(
        app=hueyard,
        jobs=Jobs(hueyard),
        credentials=credentials_from_env(env),
        environment=environment_from_env(env),
        read_only=settings.read_only,
        open_endpoints=tuple(settings.open_endpoints),
        allowed_hosts=AllowedHosts.resolve(settings.allowed_hosts, host or settings.host),
        page_size=settings.page_size,
        search_limit=settings.search_limit,
        preview_chars=settings.payload_preview_bytes,
        csrf_secret=secret.encode() if secret else secrets.token_bytes(32),
    )
    flask_app.extensions[EXTENSION] = state
    flask_app.json.sort_keys = False  # type: ignore[attr-defined]
    _install_host_check(flask_app, state)
    _install_auth(flask_app, state)
    register_filters(flask_app)
    _install_template_globals(flask_app, state)
    flask_app.register_blueprint(api.blueprint)
    flask_app.register_blueprint(pages.blueprint)
    flask_app.register_blueprint(actions.blueprint)
    _install_headers(flask_app)
    _install_errors(flask_app)
    return flask_app


def _install_host_check(flask_app: Flask, state: DashboardState) -> None:
    warned: set[str] = set()  # each unknown host is logged once, so a scanner cannot flood

    @flask_app.before_request
    def check_host() -> Any:
        host = request.environ.get("HTTP_HOST")
        if state.allowed_hosts.allows_header(host):
            return None
        shown = repr(str(host)[:100])
        if shown not in warned and len(warned) < _WARNED_HOSTS:
            warned.add(shown)
            logger.warning(
                "dashboard: refused Host %s from %s: not in [dashboard] allowed_hosts (%s)",
                shown, request.remote_addr, state.allowed_hosts,
            )  # fmt: skip
        return _plain(_UNKNOWN_HOST, 400)


def _plain(text: str, status: int) -> Response:
    return Response(text, status=status, content_type="text/plain; charset=utf-8")


def _install_auth(flask_app: Flask, state: DashboardState) -> None:
    auth = HTTPBasicAuth(realm="hueyard dashboard")

    def verify(username: str, password: str) -> str | None:
        return username if state.credentials.check(username, password) else None

    def unauthorized(status: int) -> tuple[str, int]:
        return "Authentication required: sign in with the dashboard's credentials.\n", status

    auth.verify_password(verify)
    auth.error_handler(unauthorized)

    @flask_app.before_request
    def require_login() -> Any:
        if is_open(request.path, state.open_endpoints):
            return None
        return auth.login_required(lambda: None)()

    flask_app.extensions["hueyard.auth"] = auth


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
        if response.mimetype == "text/html":
            response.headers.setdefault("Cache-Control", "no-store")
        return response


def _install_errors(flask_app: Flask) -> None:
    # No exception text reaches a page: it could quote a payload (and its secrets).
    @flask_app.errorhandler(RedisUnavailableError)
    def redis_down(exc: RedisUnavailableError) -> tuple[str, int]:
        logger.error("dashboard: %s", exc)
        return render_template("error.html", status=503, message=_REDIS_DOWN), 503

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


_UNKNOWN_HOST = "Unknown host. Add it to [dashboard] allowed_hosts in config/queues.toml.\n"
_WARNED_HOSTS = 256
_REDIS_DOWN = "Redis does not answer. The page will work again once it is back."
_CRASH = "Something went wrong while building this page. The error was logged."
