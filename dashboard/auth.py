"""Who may see the dashboard: HTTP basic auth, credentials from the environment.

``DASHBOARD_USERNAME`` / ``DASHBOARD_PASSWORD`` (the original system's
``BULL_BOARD_USERNAME`` / ``BULL_BOARD_PASSWORD`` are accepted when those are
unset). Without any, development runs with the spec's ``admin`` /
``admin123`` and logs a warning; with ``HUEYARD_ENV=production`` the
dashboard refuses to start with missing or default credentials.

Both fields are compared in constant time (:func:`hmac.compare_digest`, as
flower does), and both comparisons always run, so a wrong username takes as
long as a wrong password.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from framework import defaults
from framework.errors import DashboardError

__all__ = [
    "Credentials",
    "current_user",
    "credentials_from_env",
    "environment_from_env",
    "is_open",
]

logger = logging.getLogger("hueyard.dashboard")

PRODUCTION = "production"


@dataclass(frozen=True)
class Credentials:
    """One username and password; the repr never shows the password."""

    username: str
    password: str = field(repr=False)
    source: str = "DASHBOARD_USERNAME / DASHBOARD_PASSWORD"

    def check(self, username: str | None, password: str | None) -> bool:
        """Whether both match, in time that does not depend on where they differ."""
        user_ok = hmac.compare_digest((username or "").encode(), self.username.encode())
        password_ok = hmac.compare_digest((password or "").encode(), self.password.encode())
        return user_ok & password_ok

    @property
    def is_default(self) -> bool:
        return hmac.compare_digest(
            self.password.encode(), defaults.DEFAULT_DASHBOARD_PASSWORD.encode()
        )


def environment_from_env(env: Mapping[str, str]) -> str:
    """``HUEYARD_ENV`` (``development`` when unset): what ``/health`` reports."""
    return env.get("HUEYARD_ENV", "").strip() or "development"


def credentials_from_env(env: Mapping[str, str]) -> Credentials:
    """The dashboard's credentials, or :class:`DashboardError` in production without good ones."""
    production = environment_from_env(env) == PRODUCTION
    for user_var, password_var in (
        ("DASHBOARD_USERNAME", "DASHBOARD_PASSWORD"),
        ("BULL_BOARD_USERNAME", "BULL_BOARD_PASSWORD"),
    ):
        username, password = env.get(user_var, ""), env.get(password_var, "")
        if not username and not password:
            continue
        if not username or not password:
            missing = password_var if username else user_var
            raise DashboardError(f"{missing} is not set; set both {user_var} and {password_var}")
        credentials = Credentials(username, password, source=f"{user_var} / {password_var}")
        if production and credentials.is_default:
            raise DashboardError(
                f"HUEYARD_ENV=production and {password_var} is the default "
                f"{defaults.DEFAULT_DASHBOARD_PASSWORD!r}; set a strong password"
            )
        return credentials
    if production:
        raise DashboardError(
            "HUEYARD_ENV=production and no dashboard credentials are set; set "
            "DASHBOARD_USERNAME and DASHBOARD_PASSWORD (the defaults are refused in production)"
        )
    logger.warning(
        "dashboard credentials not set: using the development default user %r; set "
        "DASHBOARD_USERNAME and DASHBOARD_PASSWORD",
        defaults.DEFAULT_DASHBOARD_USERNAME,
    )
    return Credentials(
        defaults.DEFAULT_DASHBOARD_USERNAME,
        defaults.DEFAULT_DASHBOARD_PASSWORD,
        source="development default",
    )


def is_open(path: str, open_endpoints: Iterable[str]) -> bool:
    """Whether ``path`` needs no credentials: an exact entry, or a ``prefix*`` entry.

    >>> is_open("/health", ["/health"]), is_open("/healthz", ["/health"])
    (True, False)
    >>> is_open("/api/v1/queues/health", ["/api/v1/*"])
    True
    """
    for entry in open_endpoints:
        if entry.endswith("*"):
            if path.startswith(entry[:-1]):
                return True
        elif path == entry:
            return True
    return False


def current_user() -> str:
    """The signed-in user of the current request ("" on an open endpoint)."""
    from flask import current_app

    auth = current_app.extensions["hueyard.auth"]
    return str(auth.current_user() or "")
