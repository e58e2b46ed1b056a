"""Which channels carry a notification of each severity: ``[providers.notifications]``.

::

    [providers.notifications]
    info = ["log", "pubsub"]
    warning = ["log", "pubsub", "slack"]
    critical = ["log", "pubsub", "slack", "email"]
    pubsub_channel = "crm:notifications"     # default "<redis prefix>:notifications"
    alert_email = "oncall@example.com"       # HUEYARD_ALERT_EMAIL wins

A severity the table leaves out gets :func:`default_routes`. A route to
``slack`` needs a webhook URL (:mod:`pipelines._slack`), one to ``email`` a
recipient; :func:`routing` refuses the table otherwise, at start-up (the
``notifications`` handler's settings check) and again in each job.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from framework.config import config_path
from framework.masking import validation_summary
from pipelines._providers import EmailAddress, SenderConfigError
from pipelines._slack import ENVIRONMENT as SLACK_ENVIRONMENT
from pipelines._slack import SlackSettings, slack_settings

__all__ = [
    "ALERT_EMAIL_ENV",
    "CHANNELS",
    "CONFIG_TABLE",
    "DEFAULT_PUBSUB_CHANNEL",
    "SEVERITIES",
    "Routing",
    "Severity",
    "default_routes",
    "routing",
]

CHANNELS = ("log", "pubsub", "slack", "email")
"""Every channel, in the order a notification goes through them."""
SEVERITIES = ("info", "warning", "critical")
Severity = Literal["info", "warning", "critical"]
CONFIG_TABLE = "[providers.notifications]"
ALERT_EMAIL_ENV = "HUEYARD_ALERT_EMAIL"
DEFAULT_PUBSUB_CHANNEL = "notifications"
"""The pub/sub channel's name under the app's Redis prefix: ``<prefix>:notifications``."""

_EMAIL: TypeAdapter[str] = TypeAdapter(EmailAddress)


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    info: list[str] | None = None
    warning: list[str] | None = None
    critical: list[str] | None = None
    pubsub_channel: Annotated[str, Field(pattern=r"^[!-~]{1,256}$")] | None = None
    alert_email: EmailAddress | None = None

    @field_validator("info", "warning", "critical")
    @classmethod
    def _known_channels(cls, channels: list[str] | None) -> list[str] | None:
        if channels is None:
            return None
        if not channels:
            raise ValueError('no channel; name at least one, e.g. ["log"]')
        for channel in channels:
            if channel not in CHANNELS:
                raise ValueError(
                    f"unknown channel {channel!r} in {channels!r}; the channels are "
                    f"{', '.join(CHANNELS)}"
                )
        if len(set(channels)) != len(channels):
            raise ValueError(f"a channel is named twice in {channels!r}")
        return channels


@dataclass(frozen=True)
class Routing:
    """The validated notification settings."""

    routes: dict[str, tuple[str, ...]]
    """Severity -> its channels, in :data:`CHANNELS` order."""
    pubsub_channel: str | None
    """None: the default, ``<prefix>:notifications``."""
    alert_email: str | None
    slack: SlackSettings | None


def default_routes(*, slack: bool, email: bool) -> dict[str, tuple[str, ...]]:
    """``log`` and ``pubsub`` for every severity; ``slack`` for warning and critical when a
    webhook URL is set; ``email`` for critical when a recipient is set."""
    return {
        "info": ("log", "pubsub"),
        "warning": ("log", "pubsub", *(("slack",) if slack else ())),
        "critical": ("log", "pubsub", *(("slack",) if slack else ()), *(("email",) * email)),
    }


def _where() -> str:
    return f"{CONFIG_TABLE} of {config_path()}"


def routing(
    providers: Mapping[str, Mapping[str, Any]], env: Mapping[str, str] | None = None
) -> Routing:
    """The routes from ``providers`` (the config's ``[providers.*]`` tables) and ``env``.

    Raises :class:`SenderConfigError` (a ``ConfigError``) naming the table, the
    field, the value and the fix.
    """
    env = os.environ if env is None else env
    try:
        table = _Table.model_validate(dict(providers.get("notifications", {})))
    except ValidationError as exc:
        raise SenderConfigError(f"{_where()} is not valid: {validation_summary(exc)}") from None
    alert_email = env.get(ALERT_EMAIL_ENV, "").strip() or table.alert_email
    if alert_email:
        try:
            _EMAIL.validate_python(alert_email)
        except ValidationError:
            raise SenderConfigError(
                f"{ALERT_EMAIL_ENV}={alert_email!r} is not an email address; set it to the "
                "address that gets critical notifications, e.g. oncall@example.com"
            ) from None
    slack = slack_settings(env, providers.get("slack", {}))
    routes = default_routes(slack=slack is not None, email=bool(alert_email))
    for severity in SEVERITIES:
        chosen: list[str] | None = getattr(table, severity)
        if chosen is None:
            continue
        if "slack" in chosen and slack is None:
            raise SenderConfigError(
                f"{_where()}: {severity} = {chosen!r} routes to 'slack', but no webhook URL "
                f"is set; set {SLACK_ENVIRONMENT['webhook_url']} (or webhook_url in "
                "[providers.slack]), or take 'slack' out"
            )
        if "email" in chosen and not alert_email:
            raise SenderConfigError(
                f"{_where()}: {severity} = {chosen!r} routes to 'email', but no recipient is "
                f"set; set {ALERT_EMAIL_ENV} (or alert_email in {CONFIG_TABLE}), or take "
                "'email' out"
            )
        routes[severity] = tuple(channel for channel in CHANNELS if channel in chosen)
    return Routing(routes, table.pubsub_channel, alert_email or None, slack)
