"""CSRF tokens for every POST: small, stateless, bound to the signed-in user.

A token is ``<issued>.<HMAC-SHA256(secret, user, issued)>``; it is valid for
:data:`TOKEN_LIFETIME` seconds and only for the user it was made for. No
session cookie is needed (the dashboard has none: basic auth sends the
credentials with every request), unlike Flask-WTF's CSRF, which keeps its
token in Flask's session cookie and brings WTForms for forms that are single
buttons here. dramatiq_dashboard's double-submit cookie is the model; this one
is not readable from a cookie a sibling subdomain could set, and it is
compared in constant time.

A POST whose ``Origin`` header names another host is refused as well.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlsplit

__all__ = ["FIELD", "TOKEN_LIFETIME", "make_token", "same_origin", "valid_token"]

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
    if not issued_text.isdigit():
        return False
    issued = int(issued_text)
    now = time.time() if now is None else now
    if not issued <= now + 60 or now - issued > TOKEN_LIFETIME:
        return False
    return hmac.compare_digest(signature.encode(), _sign(secret, user, issued).encode())


def same_origin(origin: str | None, host_url: str) -> bool:
    """Whether an ``Origin`` header (absent is fine) names the dashboard's own host and port.

    The scheme is not compared: behind a TLS-terminating proxy the browser
    says ``https`` while the dashboard sees ``http``.
    """
    if not origin:
        return True
    return urlsplit(origin).netloc.lower() == urlsplit(host_url).netloc.lower()
