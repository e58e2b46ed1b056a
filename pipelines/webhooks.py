"""The ``webhooks`` queue: HMAC-signed outbound webhook deliveries.

Each delivery POSTs ``body`` as compact JSON with these headers::

    Content-Type: application/json
    X-Hueyard-Event: <event>
    X-Hueyard-Timestamp: <unix seconds>
    X-Hueyard-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>." + body, keyed by secret>

A receiver checks it with :func:`verify` (or the same few lines in its own
language) and refuses stale timestamps, so a captured request can not be
replayed later. A non-2xx answer, a redirect, a timeout or a refused
connection fails the attempt; the queue retries with exponential backoff.
:data:`TIMEOUT` bounds the whole delivery (connecting, sending, the answer), not
each read: a receiver that trickles its answer can not hold a worker past it.

Addresses that resolve to loopback, private, link-local or otherwise
non-public IPs are refused (server-side request forgery) unless
``HUEYARD_WEBHOOK_ALLOW_PRIVATE`` allows them (``1``: all; or networks,
``10.20.0.0/16,fd00:1::/64``): :class:`WebhookRefused`, at once and without
retries, as the same address is refused again. The connection goes to the very addresses that
were checked, so a name server can not answer a public address to the check and
an internal one to the connection (DNS rebinding): :mod:`pipelines._public`.

::

    from pipelines.webhooks import deliver_webhook

    deliver_webhook.enqueue({"url": "https://example.com/hooks/crm", "event": "contact.created",
                             "body": {"contactId": "c-42"}, "secret": "whsec_..."})
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from typing import Annotated, Any

from huey.exceptions import CancelExecution
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_serializer

from framework import handler
from pipelines import _public
from pipelines._http import deadline, hide_secrets
from pipelines._providers import HttpUrl, redact_url

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookDelivery",
    "WebhookError",
    "WebhookRefused",
    "deliver_webhook",
    "encode_body",
    "sign",
    "verify",
]

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hueyard-Signature"
TIMESTAMP_HEADER = "X-Hueyard-Timestamp"
EVENT_HEADER = "X-Hueyard-Event"
TIMEOUT = 10.0
"""Seconds for one whole delivery: connecting, sending, and the answer's status and headers."""
TOLERANCE = 300
"""Seconds a signature stays acceptable to :func:`verify` (either side of now)."""
ALLOW_PRIVATE_ENV = _public.ALLOW_PRIVATE_ENV


class WebhookError(Exception):
    """A delivery failed: the attempt fails and the queue's retry policy applies."""


class WebhookRefused(WebhookError, CancelExecution):  # type: ignore[misc]
    """The endpoint may not be reached (a non-public address, a wrong
    ``HUEYARD_WEBHOOK_ALLOW_PRIVATE``): a retry would be refused the same way, so the
    job fails at once."""

    def __init__(self, message: str) -> None:
        CancelExecution.__init__(self, message, retry=False)


def _secret_length(secret: SecretStr) -> SecretStr:
    if not 16 <= len(secret.get_secret_value()) <= 512:
        raise ValueError(
            "must be 16 to 512 characters; share a long random secret with the receiver"
        )
    return secret


class WebhookDelivery(BaseModel):
    """One event to one endpoint. ``secret`` is never logged, returned or shown in errors."""

    # Validation errors would otherwise quote the input, secret included.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    url: HttpUrl
    event: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]
    body: dict[str, Any]
    secret: Annotated[SecretStr, AfterValidator(_secret_length)]

    @field_serializer("secret", when_used="json")
    def _reveal_for_storage(self, secret: SecretStr) -> str:
        # The JSON dump is what enqueue stores for the worker, so it must carry the secret.
        return secret.get_secret_value()


def encode_body(body: dict[str, Any]) -> bytes:
    """The exact bytes that are signed and sent: compact JSON, keys sorted, UTF-8."""
    return json.dumps(
        body, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value: ``sha256=`` + hex HMAC-SHA256 of ``b"<timestamp>." + body``.

    >>> sign("s3cret-s3cret-s3cret", 1700000000, b'{"a":1}')[:7]
    'sha256='
    """
    message = f"{timestamp}.".encode("ascii") + body
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    secret: str,
    timestamp: int,
    body: bytes,
    signature: str,
    *,
    tolerance: int = TOLERANCE,
    now: float | None = None,
) -> bool:
    """True when ``signature`` is :func:`sign`'s for these bytes and ``timestamp`` is fresh.

    Fresh means within ``tolerance`` seconds of ``now`` (default: the clock),
    in either direction. The comparison takes constant time.
    """
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect could lead to an address the SSRF check never saw; treat it as a failure.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = _public.opener(_NoRedirects)


@handler("webhooks")
def deliver_webhook(payload: WebhookDelivery) -> dict[str, Any]:
    """POST the signed body; return ``{"status": <2xx code>}``. Raises :class:`WebhookError`
    (retried), or :class:`WebhookRefused` (failed at once) for an endpoint it may not reach."""
    target = redact_url(payload.url)
    secret = payload.secret.get_secret_value()
    body = encode_body(payload.body)
    timestamp = int(time.time())
    request = urllib.request.Request(  # noqa: S310 - the model allows http(s) URLs only
        payload.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "hueyard-webhooks",
            EVENT_HEADER: payload.event,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, timestamp, body),
        },
    )
    try:
        with deadline(TIMEOUT), _OPENER.open(request, timeout=TIMEOUT) as response:
            status: int = response.status
    except urllib.error.HTTPError as exc:
        exc.close()
        raise WebhookError(
            f"webhook {payload.event} to {target} answered HTTP {exc.code}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        said = hide_secrets(str(reason), secret)
        if isinstance(reason, _public.Refused):  # a non-public address, or a bad allow-list
            raise WebhookRefused(f"webhook {target}: {said}; failed at once, not retried") from None
        if isinstance(reason, TimeoutError):  # a socket's timeout, or the deadline's
            raise WebhookError(
                f"webhook {payload.event} to {target}: no complete answer within {TIMEOUT:g} s "
                "(connecting, sending and the answer's headers, in all)"
            ) from None
        raise WebhookError(f"webhook {payload.event} to {target} failed: {said}") from None
    if not 200 <= status < 300:
        raise WebhookError(f"webhook {payload.event} to {target} answered HTTP {status}")
    logger.info("webhook %s delivered to %s: HTTP %d", payload.event, target, status)
    return {"status": status}
