"""The perimeter, run before every request (every method, ``OPTIONS`` included):

1. the ``Host`` header must be on ``[dashboard] allowed_hosts``
   (:mod:`dashboard.hosts`), else a plain 400;
2. basic auth, except on ``[dashboard] open_endpoints``: no credentials get a
   401 challenge; wrong ones count as a failed sign-in of the client's
   address (logged with the username, never the password), and past
   ``max_failed_logins`` within ``failed_login_window`` seconds the address
   gets 429 with ``Retry-After`` for ``login_lockout`` seconds
   (:mod:`dashboard.throttle`);
3. in read-only mode, any method but ``GET``, ``HEAD`` and ``OPTIONS`` gets 403,
   whatever the URL, before anything is read.

Credentials sent to an open endpoint are checked too (``/health`` shows more
to a signed-in client), and count the same way when wrong, so an open
endpoint is no way around the throttle; a locked-out client still gets the
open endpoint, as if it had sent no credentials.

The client's address is ``REMOTE_ADDR``: ``X-Forwarded-For`` is not trusted
unless ``[dashboard] trusted_proxy`` names the proxy (waitress then puts the
client's address in ``REMOTE_ADDR``; see :mod:`dashboard.server`).
"""

from __future__ import annotations

import logging

from flask import Flask, Response, abort, g, request

from dashboard.auth import is_open
from dashboard.state import DashboardState

__all__ = ["UNKNOWN_HOST", "install"]

logger = logging.getLogger("hueyard.dashboard")

UNKNOWN_HOST = "Unknown host. Add it to [dashboard] allowed_hosts in config/queues.toml.\n"
_SIGN_IN = "Authentication required: sign in with the dashboard's credentials.\n"
_CHALLENGE = 'Basic realm="hueyard dashboard", charset="UTF-8"'
_READS = frozenset({"GET", "HEAD", "OPTIONS"})
_READ_ONLY = "The dashboard is read-only ([dashboard] read_only = true): no action runs."
_WARNED_HOSTS = 256  # distinct refused hosts logged per process, so a scanner cannot flood


def install(flask_app: Flask, state: DashboardState) -> None:
    """Check the host, then the credentials, before every request of ``flask_app``."""
    warned: set[str] = set()

    @flask_app.before_request
    def check_host() -> Response | None:
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
        return _plain(UNKNOWN_HOST, 400)

    @flask_app.before_request
    def check_credentials() -> Response | None:
        return _sign_in(state, open_endpoint=is_open(request.path, state.open_endpoints))

    @flask_app.before_request
    def check_read_only() -> None:
        # every method that could change something, on any URL (a page's too: 403, not
        # the 405 of its route), before anything is read
        if state.read_only and request.method not in _READS:
            abort(403, _READ_ONLY)


def _sign_in(state: DashboardState, *, open_endpoint: bool) -> Response | None:
    """None to let the request through (``g.hueyard_user`` set when signed in), or the
    answer: 401 challenge, or 429 with ``Retry-After``."""
    g.hueyard_user = None
    sent = "Authorization" in request.headers
    if open_endpoint and not sent:
        return None
    address = request.remote_addr or "unknown"
    wait = state.throttle.retry_after(address)
    if wait:
        return None if open_endpoint else _too_many(wait)
    username = _username(state)
    if username is not None:
        state.throttle.succeeded(address)
        g.hueyard_user = username
        return None
    if sent:
        wait = _failed(state, address)
        if wait and not open_endpoint:
            return _too_many(wait)
    if open_endpoint:
        return None
    response = _plain(_SIGN_IN, 401)
    response.headers["WWW-Authenticate"] = _CHALLENGE
    return response


def _username(state: DashboardState) -> str | None:
    """The username of valid basic-auth credentials, or None."""
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return None
    username, password = auth.username, auth.password
    return username if state.credentials.check(username, password) else None


def _failed(state: DashboardState, address: str) -> int:
    """Count and log a failed sign-in; the seconds the address must now wait."""
    auth = request.authorization
    if auth is not None and auth.type == "basic":
        who = repr((auth.username or "")[:64])
    else:
        who = "(not basic auth)"
    count, wait = state.throttle.failed(address)
    logger.warning(
        "dashboard: failed sign-in from %s as %s on %s %s (%d of %d in %g s)",
        address, who, request.method, request.path[:200], count, state.throttle.max_failures,
        state.throttle.window,
    )  # fmt: skip
    if wait:
        logger.warning(
            "dashboard: %s locked out for %d s after %d failed sign-ins",
            address, wait, count,
        )  # fmt: skip
    return wait


def _too_many(wait: int) -> Response:
    response = _plain(f"Too many failed sign-ins from your address; try again in {wait} s.\n", 429)
    response.headers["Retry-After"] = str(wait)
    return response


def _plain(text: str, status: int) -> Response:
    return Response(text, status=status, content_type="text/plain; charset=utf-8")
