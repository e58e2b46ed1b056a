"""Who may see the dashboard: the environment, the credentials, the open endpoints.

Credentials come from ``DASHBOARD_USERNAME`` / ``DASHBOARD_PASSWORD`` (the
original system's ``BULL_BOARD_USERNAME`` / ``BULL_BOARD_PASSWORD`` are
accepted when those are unset).

Secure by default: unless the environment says ``development`` explicitly
(``HUEYARD_ENV``, else the original system's ``NODE_ENV``; case-insensitive,
spaces trimmed), production rules apply and the dashboard refuses to start
without credentials, with the default password ``admin123``, or with a
password shorter than :data:`~framework.defaults.MIN_DASHBOARD_PASSWORD_LENGTH`
characters. In development, missing credentials mean the spec's ``admin`` /
``admin123``, and a weak password is accepted; both with a warning.

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
    "DEVELOPMENT",
    "ENVIRONMENT_VARIABLES",
    "PRODUCTION",
    "Credentials",
    "Environment",
    "credentials_from_env",
    "environment_from_env",
    "is_open",
]

logger = logging.getLogger("hueyard.dashboard")

DEVELOPMENT = "development"
PRODUCTION = "production"

ENVIRONMENT_VARIABLES = ("HUEYARD_ENV", "NODE_ENV")
"""Where the environment's name is read, in order: the first one set (not blank) wins."""

_GENERATE = "python3 -c 'import secrets; print(secrets.token_urlsafe(24))'"
"""A command that prints a good password, for the error message."""


@dataclass(frozen=True)
class Environment:
    """The environment the dashboard runs in, and where that was read."""

    name: str
    """What ``/health`` reports: the variable's value, trimmed and lowercased;
    ``production`` when no variable is set."""
    variable: str | None = None
    """The variable it came from; None when neither is set."""

    @property
    def development(self) -> bool:
        """Whether the development defaults are allowed (only ``development`` allows them)."""
        return self.name == DEVELOPMENT

    @property
    def setting(self) -> str:
        """Where the name came from, for a message: ``HUEYARD_ENV=staging``."""
        if self.variable is None:
            return "neither HUEYARD_ENV nor NODE_ENV is set"
        return f"{self.variable}={self.name}"

    @property
    def why_strict(self) -> str:
        """Why production rules apply, for an error message."""
        return f"{self.setting}, so production rules apply"


def environment_from_env(env: Mapping[str, str]) -> Environment:
    """``HUEYARD_ENV``, else ``NODE_ENV``, trimmed and lowercased; ``production`` when unset.

    >>> environment_from_env({"HUEYARD_ENV": " Development "}).development
    True
    >>> environment_from_env({"NODE_ENV": "dev"}), environment_from_env({})
    (Environment(name='dev', variable='NODE_ENV'), Environment(name='production', variable=None))
    """
    for variable in ENVIRONMENT_VARIABLES:
        value = env.get(variable, "").strip().lower()
        if value:
            return Environment(value, variable)
    return Environment(PRODUCTION)


@dataclass(frozen=True)
class Credentials:
    """One username and password; the repr never shows the password."""

    username: str
    password: str = field(repr=False)
    source: str = "DASHBOARD_USERNAME / DASHBOARD_PASSWORD"
    password_variable: str = "DASHBOARD_PASSWORD"  # noqa: S105 - a variable name

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

    def weakness(self) -> str | None:
        """What makes the password unfit for production, or None."""
        if self.is_default:
            return f"is the development default {defaults.DEFAULT_DASHBOARD_PASSWORD!r}"
        minimum = defaults.MIN_DASHBOARD_PASSWORD_LENGTH
        if len(self.password) < minimum:
            return f"has {len(self.password)} characters, fewer than {minimum}"
        return None


def _configured(env: Mapping[str, str]) -> Credentials | None:
    """The first pair of variables that is set; :class:`DashboardError` for a username
    without a password. A password without a username is the spec's user ``admin``
    (the username is no secret; the password is checked as always)."""
    for user_var, password_var in (
        ("DASHBOARD_USERNAME", "DASHBOARD_PASSWORD"),
        ("BULL_BOARD_USERNAME", "BULL_BOARD_PASSWORD"),
    ):
        username, password = env.get(user_var, ""), env.get(password_var, "")
        if not username and not password:
            continue
        if not password:
            raise DashboardError(
                f"{password_var} is not set; set both {user_var} and {password_var}"
            )
        if not username:
            source = (
                f"{password_var} (user {defaults.DEFAULT_DASHBOARD_USERNAME!r}: {user_var} unset)"
            )
            return Credentials(defaults.DEFAULT_DASHBOARD_USERNAME, password, source, password_var)
        return Credentials(username, password, f"{user_var} / {password_var}", password_var)
    return None


def credentials_from_env(env: Mapping[str, str]) -> Credentials:
    """The dashboard's credentials, or :class:`DashboardError` outside development without
    good ones (the message names the variable and the fix, never the password)."""
    environment = environment_from_env(env)
    credentials = _configured(env)
    if credentials is None:
        if not environment.development:
            raise DashboardError(
                f"no dashboard credentials are set ({environment.why_strict}); set "
                f"DASHBOARD_USERNAME and DASHBOARD_PASSWORD (at least "
                f"{defaults.MIN_DASHBOARD_PASSWORD_LENGTH} characters), or HUEYARD_ENV=development "
                f"on a development machine to use {defaults.DEFAULT_DASHBOARD_USERNAME!r} / "
                f"{defaults.DEFAULT_DASHBOARD_PASSWORD!r}"
            )
        logger.warning(
            "dashboard credentials not set: %s, so the development default user %r is used; "
            "set DASHBOARD_USERNAME and DASHBOARD_PASSWORD",
            environment.setting,
            defaults.DEFAULT_DASHBOARD_USERNAME,
        )
        return Credentials(
            defaults.DEFAULT_DASHBOARD_USERNAME,
            defaults.DEFAULT_DASHBOARD_PASSWORD,
            source="development default",
        )
    weakness = credentials.weakness()
    if weakness is None:
        return credentials
    variable = credentials.password_variable
    if not environment.development:
        raise DashboardError(
            f"{variable} {weakness} ({environment.why_strict}); set a password of at least "
            f"{defaults.MIN_DASHBOARD_PASSWORD_LENGTH} characters, e.g. {_GENERATE}, "
            "or HUEYARD_ENV=development on a development machine"
        )
    logger.warning(
        "%s %s: accepted because %s; production rules refuse it",
        variable,
        weakness,
        environment.setting,
    )
    return credentials


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
    from flask import g

    return str(g.get("hueyard_user") or "")
