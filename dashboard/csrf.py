"""CSRF tokens for every POST: small, stateless, bound to the signed-in user.

A token is ``<issued>.<HMAC-SHA256(secret, user, issued)>``; it is valid for
:data:`TOKEN_LIFETIME` seconds and only for the user it was made for. No
session cookie is needed (the dashboard has none: basic auth sends the
credentials with every request), unlike Flask-WTF's CSRF, which keeps its
token in Flask's session cookie and brings WTForms for forms that are single
buttons here. dramatiq_dashboard's double-submit cookie is the model; this one
is not readable from a cookie a sibling subdomain could set, and it is
compared in constant time.

A POST whose ``Origin`` (or, without one, ``Referer``) names a host that is not
on ``[dashboard] allowed_hosts`` is refused as well (:func:`trusted_source`).
"""

from __future__ import annotations

import hashlib
import hmac
import time

from dashboard.hosts import AllowedHosts, host_of

__all__ = ["FIELD", "TOKEN_LIFETIME", "make_token", "trusted_source", "valid_token"]

FIELD = "csrf_token"
"""The form field that carries the token."""

TOKEN_LIFETIME = 12 * 3600
"""Seconds a token stays valid: a page left open over a working day still works."""


def _sign(secret: bytes, user: str, issued: int) -> str:
    return hmac.new(secret, f"{user}\0{issued}".encode(), hashlib.sha256).hexdigest()


def make_token(secret: bytes, user: str, now: float | None = None) -> str:
    issued = int(time.time() if now is None else now)
    return f"{issued}.{_sign(secret, user, issued)}"


def valid_token(secret: bytes, user: str, token: str | None, now: float | None = None) -> bool:
    """Whether ``token`` was made by :func:`make_token` for ``user`` and has not expired."""
    if not token or token.count(".") != 1:
        return False
    issued_text, signature = token.split(".")
    if not (issued_text.isascii() and issued_text.isdigit()):  # not "²", which int() refuses
        return False
    issued = int(issued_text)
    now = time.time() if now is None else now
    if not issued <= now + 60 or now - issued > TOKEN_LIFETIME:
        return False
    return hmac.compare_digest(signature.encode(), _sign(secret, user, issued).encode())


def trusted_source(
    origin: str | None, referer: str | None, hosts: AllowedHosts, request_host: str | None
) -> bool:
    """Whether a POST comes from a page on an allowed host: its ``Origin``, else its
    ``Referer``, names one of ``hosts``, never merely the request's own ``Host`` (which
    a DNS-rebinding page controls). With ``*`` on the list (a proxy vouches for the
    host), it must name ``request_host``. Neither header (a script, not a browser) is
    fine: the token is still required. ``Origin: null`` (a sandboxed frame) is not.

    Schemes and ports are not compared: behind a TLS-terminating proxy the browser
    says ``https`` while the dashboard sees ``http``.
    """
    source = origin if origin is not None else referer
    if source is None:
        return True
    if not hosts.any_host:
        return hosts.allows_url(source)
    own = host_of(request_host or "")
    return own is not None and AllowedHosts((own,)).allows_url(source)
