"""The WhatsApp Cloud API sender: ``POST <base>/<version>/<phone-number-id>/messages``.

Registered as the ``whatsapp`` message sender; ``pipelines.messages`` picks it
when its settings are present. Settings come from the environment, or from
``[providers.whatsapp]`` in ``config/queues.toml`` (the environment wins)::

    WHATSAPP_ACCESS_TOKEN      access_token       required: a system user's token
    WHATSAPP_PHONE_NUMBER_ID   phone_number_id    required: the sending number's id
    WHATSAPP_API_VERSION       api_version        default DEFAULT_API_VERSION
    WHATSAPP_API_BASE_URL      api_base_url       default DEFAULT_BASE_URL
    WHATSAPP_TIMEOUT           timeout            seconds for the whole request (15)

Each worker thread keeps one ``httpx.Client`` (its connections are reused
between sends); a request has ``timeout`` seconds in all, from connecting (at
most :data:`CONNECT_TIMEOUT` of them) to the answer's last byte
(:func:`pipelines._http.deadline`). The API's errors become :mod:`pipelines._providers`'
send exceptions by :func:`classify`: retry after the backoff, retry after the
delay the API asks for, or fail at once. The access token is sent in the
``Authorization`` header only: never logged, returned or put in an error (an
error answer that echoes it shows ``********``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from framework.masking import validation_summary
from pipelines._http import ThreadClients, deadline, hide_secrets, retry_after
from pipelines._providers import (
    MESSAGE_SENDERS,
    HttpUrl,
    Receipt,
    SenderConfigError,
    SendError,
    SendOutcomeUnknown,
    SendRefused,
    SendRetryLater,
    mask_phone,
    merged_settings,
    provider_config,
    redact_url,
)

if TYPE_CHECKING:
    from pipelines.messages import OutboundMessage

__all__ = [
    "CONNECT_TIMEOUT",
    "DEFAULT_API_VERSION",
    "DEFAULT_BASE_URL",
    "ENVIRONMENT",
    "ERRORS",
    "Action",
    "WhatsAppCloudSender",
    "WhatsAppSettings",
    "classify",
    "request_body",
    "whatsapp_settings",
]

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v23.0"
DEFAULT_TIMEOUT = 15.0
"""Seconds for the whole request: connecting, sending, and the API's answer."""
CONNECT_TIMEOUT = 5.0
"""Seconds to open a connection (and to wait for a free one of the thread's client)."""

ENVIRONMENT = {
    "access_token": "WHATSAPP_ACCESS_TOKEN",
    "phone_number_id": "WHATSAPP_PHONE_NUMBER_ID",
    "api_version": "WHATSAPP_API_VERSION",
    "api_base_url": "WHATSAPP_API_BASE_URL",
    "timeout": "WHATSAPP_TIMEOUT",
}
"""Each setting and the environment variable that sets it."""
CONFIG_TABLE = "[providers.whatsapp]"


class WhatsAppSettings(BaseModel):
    """Where and as whom to send. ``repr`` and errors never show the token."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    access_token: Annotated[SecretStr, Field(min_length=1)]
    phone_number_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    api_version: Annotated[str, Field(pattern=r"^v[0-9]{1,3}\.[0-9]{1,3}$")] = DEFAULT_API_VERSION
    api_base_url: HttpUrl = DEFAULT_BASE_URL
    timeout: Annotated[float, Field(gt=0, le=300)] = DEFAULT_TIMEOUT

    @property
    def messages_url(self) -> str:
        """``<base>/<version>/<phone-number-id>/messages``."""
        base = self.api_base_url.rstrip("/")
        return f"{base}/{self.api_version}/{self.phone_number_id}/messages"


def whatsapp_settings(
    env: Mapping[str, str] | None = None, config: Mapping[str, Any] | None = None
) -> WhatsAppSettings | None:
    """The settings from ``config`` (``[providers.whatsapp]``) overridden by ``env``.

    None when neither the token nor the phone number id is set anywhere: the
    Cloud API is not configured. One without the other, or a bad value, raises
    :class:`SenderConfigError` naming the variable and the fix.
    """
    env = os.environ if env is None else env
    merged = merged_settings(config, env, ENVIRONMENT)
    has_token = bool(str(merged.get("access_token", "")).strip())
    has_phone = bool(str(merged.get("phone_number_id", "")).strip())
    if not has_token and not has_phone:
        return None
    if has_token != has_phone:
        present, missing = ("access_token", "phone_number_id")[:: 1 if has_token else -1]
        raise SenderConfigError(
            f"WhatsApp Cloud API: {ENVIRONMENT[present]} is set but {ENVIRONMENT[missing]} is "
            f"not (nor {missing} in {CONFIG_TABLE} of the config); set both to send through "
            "the Cloud API, or neither to use the log sender"
        )
    try:
        return WhatsAppSettings.model_validate(merged)
    except ValidationError as exc:
        raise SenderConfigError(
            f"WhatsApp Cloud API settings ({', '.join(ENVIRONMENT.values())} or "
            f"{CONFIG_TABLE}) are not valid: {validation_summary(exc)}"
        ) from None


# -- the request --------------------------------------------------------------------------------

MEDIA_TYPES = ("image", "document", "audio", "video")


def request_body(message: OutboundMessage) -> dict[str, Any]:
    """The JSON the Cloud API expects for ``message``.

    >>> from pipelines.messages import OutboundMessage
    >>> request_body(OutboundMessage(to="+14155550123", content="Hi"))["text"]
    {'body': 'Hi', 'preview_url': False}
    """
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": message.to.removeprefix("+"),
        "type": message.type,
    }
    if message.type == "text":
        # media_url on a text message asks for the preview of the link in the text
        body["text"] = {"body": message.content, "preview_url": message.media_url is not None}
    elif message.type == "template":
        if message.template is None:
            raise SendRefused(
                "a 'template' message needs template = {name, language[, components]} in its "
                "payload to go through the WhatsApp Cloud API; enqueue it again with one"
            )
        components = [dict(component) for component in message.template.components]
        if message.media_url is not None and not any(c["type"] == "header" for c in components):
            image = {"type": "image", "image": {"link": message.media_url}}
            components.insert(0, {"type": "header", "parameters": [image]})
        template: dict[str, Any] = {
            "name": message.template.name,
            "language": {"code": message.template.language},
        }
        if components:
            template["components"] = components
        body["template"] = template
    else:
        media: dict[str, Any] = {"link": message.media_url}
        if message.content and message.type != "audio":
            media["caption"] = message.content
        if message.filename and message.type == "document":
            media["filename"] = message.filename
        body[message.type] = media
    return body


# -- the API's errors ---------------------------------------------------------------------------


class Action(Enum):
    """What a failed send leads to."""

    BACKOFF = "retried after the queue's backoff"
    WAIT = "retried after the delay the API asks for"
    FAIL = "failed at once, not retried"


@dataclass(frozen=True)
class ErrorClass:
    action: Action
    hint: str
    wait: float = 0.0
    """For :attr:`Action.WAIT` without a ``Retry-After`` header: seconds to wait."""


def _fail(hint: str) -> ErrorClass:
    return ErrorClass(Action.FAIL, hint)


_BACKOFF = ErrorClass(Action.BACKOFF, "a temporary problem on the API's side")
_TEMPLATE = _fail("fix the template (name, language, parameters) or see WhatsApp Manager")
_ACCESS = _fail("renew the access token or grant it the whatsapp_business_messaging permission")

ERRORS: dict[int, ErrorClass] = {
    # throttling: the API answers the same request later
    4: ErrorClass(Action.WAIT, "the app's API call rate limit", 60.0),
    80007: ErrorClass(Action.WAIT, "the WhatsApp Business Account's rate limit", 60.0),
    130429: ErrorClass(Action.WAIT, "the phone number's throughput limit", 5.0),
    131056: ErrorClass(Action.WAIT, "the pair rate limit: too many messages to this number", 6.0),
    # temporary: retried after the backoff
    1: _BACKOFF,
    2: _BACKOFF,
    131000: _BACKOFF,
    131016: _BACKOFF,
    131053: ErrorClass(Action.BACKOFF, "the API could not fetch the media; check media_url"),
    131057: ErrorClass(Action.BACKOFF, "the business account is in maintenance mode"),
    133004: _BACKOFF,
    # permanent: the same request fails the same way
    0: _ACCESS,
    3: _ACCESS,
    10: _ACCESS,
    190: _ACCESS,
    33: _fail("check WHATSAPP_PHONE_NUMBER_ID"),
    100: _fail("a parameter of the request is not valid; check the payload"),
    368: _fail("the number is temporarily blocked for policy violations; see WhatsApp Manager"),
    130472: _fail("the recipient is part of a Meta marketing experiment"),
    131005: _ACCESS,
    131008: _fail("a required parameter is missing; check the payload"),
    131009: _fail("a parameter value is not valid; check the payload"),
    131021: _fail("the recipient is the sending number itself"),
    131026: _fail("the number cannot receive it (not on WhatsApp, old app, terms not accepted)"),
    131030: _fail("the recipient is not on the test number's allowed list"),
    131031: _fail("the business account is locked; see WhatsApp Manager"),
    131042: _fail("a payment problem with the business account; see its billing settings"),
    131045: _fail("the phone number's certificate is not valid; register it again"),
    131047: _fail("the 24-hour window is closed: send an approved template instead"),
    131048: _fail("the spam rate limit (low quality); check the number's quality rating"),
    131049: _fail("Meta held it to protect the ecosystem (per-user marketing limit)"),
    131051: _fail("the message type is not supported"),
    132000: _TEMPLATE,
    132001: _TEMPLATE,
    132005: _TEMPLATE,
    132007: _TEMPLATE,
    132012: _TEMPLATE,
    132015: _fail("the template is paused (low quality)"),
    132016: _fail("the template is disabled"),
    133010: _fail("the sending phone number is not registered with the Cloud API"),
}
"""The Cloud API's error codes and what a job does about them. Codes not listed
follow the HTTP status: 429 waits, 5xx and 408 back off, other 4xx fail."""


def _by_status(status: int) -> ErrorClass:
    if status == 429:
        return ErrorClass(Action.WAIT, "too many requests", 60.0)
    if status >= 500 or status == 408:
        return _BACKOFF
    if status in (401, 403):
        return _ACCESS
    return _fail("the API refused the request")


def classify(code: int | None, status: int) -> ErrorClass:
    """What to do about an error answer: by the API's ``code`` when it is known, else by
    the HTTP ``status``."""
    if code is not None and code in ERRORS:
        return ERRORS[code]
    return _by_status(status)


def _describe(response: httpx.Response) -> tuple[int | None, str]:
    """The API's error code and a one-line description from an error answer."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if not isinstance(error, dict):
        return None, f"HTTP {response.status_code} without a Graph API error"
    code = error.get("code")
    code = (
        int(code)
        if isinstance(code, int | str) and str(code).isascii() and str(code).isdigit()
        else None
    )
    parts = [str(error.get("message") or "no message")]
    data = error.get("error_data")
    if isinstance(data, dict) and data.get("details"):
        parts.append(str(data["details"]))
    if error.get("fbtrace_id"):
        parts.append(f"fbtrace_id {error['fbtrace_id']}")
    return code, f"code {code} (HTTP {response.status_code}): " + "; ".join(parts)


def error_for(response: httpx.Response, token: str | None = None) -> SendError:
    """The send exception for an error answer: the API's code, message and the verdict;
    ``token`` (the sender's own, which an answer may echo) shows as ``********``."""
    code, described = _describe(response)
    described = hide_secrets(described, token)
    kind = classify(code, response.status_code)
    text = f"WhatsApp Cloud API {described} [{kind.hint}; {kind.action.value}]"
    if kind.action is Action.FAIL:
        return SendRefused(text)
    if kind.action is Action.WAIT:
        asked = retry_after(response.headers.get("Retry-After"))
        return SendRetryLater(text, delay=kind.wait if asked is None else asked)
    return SendError(text)


# -- the sender ---------------------------------------------------------------------------------


class WhatsAppCloudSender:
    """Sends through the WhatsApp Cloud API with the settings :func:`whatsapp_settings`
    reads at each send (the environment, then the running app's ``[providers.whatsapp]``).

    Thread-safe: each thread (and each forked process) uses its own ``httpx.Client``.
    """

    def __init__(self) -> None:
        self._clients = ThreadClients("hueyard-messages")

    def client(self) -> httpx.Client:
        """This thread's client, made on first use (and again after a fork)."""
        return self._clients.get()

    def close(self) -> None:
        """Close every thread's client (at shutdown, or between tests)."""
        self._clients.close()

    def send(self, message: OutboundMessage) -> Receipt:
        settings = whatsapp_settings(config=provider_config("whatsapp"))
        if settings is None:
            raise SenderConfigError(
                f"the whatsapp sender needs {ENVIRONMENT['access_token']} and "
                f"{ENVIRONMENT['phone_number_id']} (or {CONFIG_TABLE} in the config)"
            )
        body = request_body(message)
        url = settings.messages_url
        where = redact_url(url)
        timeout = httpx.Timeout(settings.timeout, connect=CONNECT_TIMEOUT, pool=CONNECT_TIMEOUT)
        token = settings.access_token.get_secret_value()
        try:
            with deadline(settings.timeout):
                response = self.client().post(
                    url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
                )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise SendError(f"WhatsApp Cloud API {where}: not reached ({exc!r})") from None
        except httpx.TimeoutException:
            raise SendOutcomeUnknown(
                f"WhatsApp Cloud API {where}: no answer within {settings.timeout:g} s; the "
                "message may have been sent, so it is not sent again: check the conversation, "
                "then enqueue a new job if it is missing"
            ) from None
        except httpx.TransportError as exc:
            why = hide_secrets(str(exc), token)[:300]
            raise SendOutcomeUnknown(
                f"WhatsApp Cloud API {where}: the connection failed after the request was sent "
                f"({type(exc).__name__}{': ' + why if why else ''}); the message may have been "
                "sent, so it is not sent again: check the conversation, then enqueue a new job "
                "if it is missing"
            ) from None
        if not response.is_success:
            raise error_for(response, token)
        message_id = _message_id(response)
        if message_id is None:
            raise SendOutcomeUnknown(
                f"WhatsApp Cloud API {where} answered HTTP {response.status_code} without a "
                "message id; the message may have been sent, so it is not sent again"
            )
        to = mask_phone(message.to)
        logger.info("whatsapp: %s message %s to %s accepted", message.type, message_id, to)
        return Receipt(message_id=message_id, sent=True)

    def __repr__(self) -> str:
        return "WhatsAppCloudSender()"


def _message_id(response: httpx.Response) -> str | None:
    try:
        messages = response.json()["messages"]
        message_id = messages[0]["id"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    # a WhatsApp message id is short printable ASCII ("wamid.HBgL..."); anything else is
    # not one (and would be stored, logged and cached as the job's result)
    if isinstance(message_id, str) and _MESSAGE_ID.fullmatch(message_id):
        return message_id
    return None


_MESSAGE_ID = re.compile(r"[!-~]{1,256}")


SENDER = WhatsAppCloudSender()
MESSAGE_SENDERS.register("whatsapp", SENDER)
