"""A Slack incoming webhook (or any Slack-compatible one): ``POST <url>`` with ``{"text"}``.

The ``slack`` channel of :mod:`pipelines.notifications`. Settings come from the
environment, or from ``[providers.slack]`` in ``config/queues.toml`` (the
environment wins)::

    SLACK_WEBHOOK_URL    webhook_url    required: https://hooks.slack.com/services/T…/B…/…
    SLACK_TIMEOUT        timeout        seconds for the whole post (default 10)

The webhook URL is the credential (anyone holding it can post to the
channel): it is never logged, returned, put in an error or shown by ``repr``;
errors name only its host, and an answer that echoes it (or its path) shows
``********``. What an answer leads to (:func:`error_for`): 429
is retried after its ``Retry-After``, 5xx and 408 and an unreachable or silent
server after the queue's backoff, any other answer but 2xx fails at once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter, ValidationError

from framework.masking import validation_summary
from pipelines._http import ThreadClients, deadline, hide_secrets, retry_after
from pipelines._providers import (
    HttpUrl,
    SenderConfigError,
    SendError,
    SendRefused,
    SendRetryLater,
)

__all__ = [
    "CONFIG_TABLE",
    "DEFAULT_TIMEOUT",
    "ENVIRONMENT",
    "RATE_LIMIT_WAIT",
    "SlackSettings",
    "SlackWebhook",
    "error_for",
    "escape",
    "slack_settings",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
"""Seconds for the whole post: connecting, sending, and the webhook's answer."""
CONNECT_TIMEOUT = 5.0
"""Seconds to open a connection."""
RATE_LIMIT_WAIT = 30.0
"""Seconds to wait after a 429 that carries no ``Retry-After``."""

ENVIRONMENT = {"webhook_url": "SLACK_WEBHOOK_URL", "timeout": "SLACK_TIMEOUT"}
"""Each setting and the environment variable that sets it."""
CONFIG_TABLE = "[providers.slack]"
_URL: TypeAdapter[str] = TypeAdapter(HttpUrl)


class SlackSettings(BaseModel):
    """Where to post. ``repr`` and errors never show the URL."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    webhook_url: SecretStr
    timeout: Annotated[float, Field(gt=0, le=300)] = DEFAULT_TIMEOUT

    @property
    def host(self) -> str:
        """The webhook's host: what errors and logs may name."""
        return urlsplit(self.webhook_url.get_secret_value()).hostname or "?"

    @property
    def secrets(self) -> tuple[str, str]:
        """What an error may not show: the URL, and its path (``/services/T…/B…/…``)."""
        url = self.webhook_url.get_secret_value()
        return url, urlsplit(url).path.strip("/")


def slack_settings(
    env: Mapping[str, str] | None = None, config: Mapping[str, Any] | None = None
) -> SlackSettings | None:
    """The settings from ``config`` (``[providers.slack]``) overridden by ``env``; None when
    no webhook URL is set anywhere. A bad value raises :class:`SenderConfigError`."""
    env = os.environ if env is None else env
    merged: dict[str, Any] = dict(config or {})
    for setting, variable in ENVIRONMENT.items():
        value = env.get(variable, "").strip()
        if value:
            merged[setting] = value
    url = merged.get("webhook_url")
    if url is None or (isinstance(url, str) and not url.strip()):
        return None
    where = f"{ENVIRONMENT['webhook_url']} (or webhook_url in {CONFIG_TABLE})"
    try:
        _URL.validate_python(url)
    except ValidationError:
        raise SenderConfigError(
            f"{where} is not an http(s) URL; set it to the incoming webhook's URL, "
            "e.g. https://hooks.slack.com/services/T000/B000/XXXX"
        ) from None
    try:
        return SlackSettings.model_validate(merged)
    except ValidationError as exc:
        raise SenderConfigError(
            f"Slack webhook settings ({', '.join(ENVIRONMENT.values())} or {CONFIG_TABLE}) "
            f"are not valid: {validation_summary(exc)}"
        ) from None


def escape(text: str) -> str:
    """Text as Slack's ``mrkdwn`` shows it: ``&``, ``<`` and ``>`` escaped, so a title can
    not ping ``<!channel>`` or forge a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def error_for(response: httpx.Response, host: str, secrets: tuple[str, ...] = ()) -> SendError:
    """The exception for a non-2xx answer, with the webhook's own error text
    (``invalid_payload``, ``no_service``, ...), ``secrets`` in it as ``********``."""
    status = response.status_code
    said = " ".join(hide_secrets(response.text, *secrets).split())[:200] or "no body"
    text = f"Slack webhook on {host} answered HTTP {status} ({said})"
    if status == 429:
        asked = retry_after(response.headers.get("Retry-After"))
        delay = RATE_LIMIT_WAIT if asked is None else asked
        return SendRetryLater(f"{text}; retried after {delay:g} s", delay=delay)
    if status >= 500 or status == 408:
        return SendError(f"{text}; retried after the queue's backoff")
    return SendRefused(
        f"{text}; not retried: check the webhook URL (a removed app, an archived channel) "
        "and the message"
    )


class _HideWebhookUrls(logging.Filter):
    """httpx logs each request's URL at INFO ("HTTP Request: POST <url> ..."); the webhook
    URL is a secret, so a URL this module posted to is shown as its host only."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(str(a) in self.urls for a in record.args):
            record.args = tuple(
                f"{urlsplit(str(a)).scheme}://{urlsplit(str(a)).hostname}/<webhook>"
                if str(a) in self.urls
                else a
                for a in record.args
            )
        return True


_HIDE = _HideWebhookUrls()
logging.getLogger("httpx").addFilter(_HIDE)


class SlackWebhook:
    """Posts to the webhook :func:`slack_settings` names, one ``httpx.Client`` per thread."""

    def __init__(self) -> None:
        self._clients = ThreadClients("hueyard-notifications")

    def client(self) -> httpx.Client:
        """This thread's client, made on first use (and again after a fork)."""
        return self._clients.get()

    def close(self) -> None:
        """Close every thread's client (at shutdown, or between tests)."""
        self._clients.close()

    def post(self, settings: SlackSettings, text: str) -> None:
        """Post ``{"text": text}``; raise as :func:`error_for` says when it is not taken.

        A timeout or a connection lost after sending is retried too: the post may
        have arrived, and an alert seen twice beats one never seen.
        """
        timeout = httpx.Timeout(settings.timeout, connect=CONNECT_TIMEOUT, pool=CONNECT_TIMEOUT)
        _HIDE.urls.add(str(httpx.URL(settings.webhook_url.get_secret_value())))
        try:
            with deadline(settings.timeout):
                response = self.client().post(
                    settings.webhook_url.get_secret_value(), json={"text": text}, timeout=timeout
                )
        except httpx.TimeoutException:
            raise SendError(
                f"Slack webhook on {settings.host}: no answer within {settings.timeout:g} s; "
                "retried after the queue's backoff (the post may arrive twice)"
            ) from None
        except httpx.TransportError as exc:
            raise SendError(
                f"Slack webhook on {settings.host}: not reached ({type(exc).__name__}); "
                "retried after the queue's backoff"
            ) from None
        if not response.is_success:
            raise error_for(response, settings.host, settings.secrets)

    def __repr__(self) -> str:
        return "SlackWebhook()"


WEBHOOK = SlackWebhook()
