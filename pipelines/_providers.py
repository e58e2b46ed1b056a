"""What the CRM's handler modules share: payload field types, masking, providers.

Field types (each refuses bad input with a message that says what is allowed):

- :data:`PhoneNumber`: E.164, ``+`` then 7 to 15 ASCII digits (``+14155550123``).
- :data:`EmailAddress`: ``local@domain.tld`` in ASCII, a deliberately simple check.
- :data:`HttpUrl`: an absolute ``http://`` or ``https://`` URL, kept as a string.
- :data:`Identifier`: an id from the CRM (``camp-123``, a UUID, an ObjectId).

Providers are the seams to the services the handlers talk to (an AI API, the
WhatsApp API). Each kind has a :class:`Registry`. The built-in AI provider
(``echo``) and the ``log`` message sender are deterministic and offline; the
``whatsapp`` sender (:mod:`pipelines._whatsapp`) talks to the WhatsApp Cloud API,
the ``openai`` AI provider (:mod:`pipelines._openai`) to an OpenAI-compatible API::

    from pipelines._providers import AI_PROVIDERS

    class ClaudeProvider: ...              # implements AIProvider
    AI_PROVIDERS.register("claude", ClaudeProvider())

Register providers at import time of a handler module (or a module named in
``HUEYARD_HANDLER_MODULES``) so producers and workers know the same names.

A message sender says how a send failed by the exception it raises; the
``messages`` handler turns it into the job's fate (see docs/pipelines.md)::

    Exception                       any other error: not sent, retried after the backoff
     +-- SendError                  not sent; retried after the queue's backoff
          +-- SendRetryLater        not sent; retried after ``delay`` s (a Retry-After)
          +-- SendRefused           not sent, and never will be: failed at once
    SendOutcomeUnknown              the request may have been sent: failed at once, never
                                    sent again by this job (no duplicate message)
    SenderConfigError               the sender is misconfigured: failed at once
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Generic, Protocol, TypeVar
from urllib.parse import urlsplit

from huey.exceptions import CancelExecution, RetryTask
from pydantic import AfterValidator

from framework.errors import ConfigError

if TYPE_CHECKING:
    from pipelines.ai import AIRequest, VoiceTranscription
    from pipelines.messages import OutboundMessage

__all__ = [
    # field types
    "EmailAddress",
    "HttpUrl",
    "Identifier",
    "PhoneNumber",
    "is_e164",
    # masking for logs
    "mask_email",
    "mask_phone",
    "redact_url",
    # providers
    "AI_PROVIDERS",
    "MESSAGE_SENDERS",
    "AIProvider",
    "EchoProvider",
    # how an AI call ended
    "AIConfigError",
    "AIError",
    "AIRefused",
    "AIReply",
    "AIRetryLater",
    "AITranscript",
    "LogSender",
    "MessageSender",
    "Receipt",
    "Registry",
    "provider_config",
    "UnknownProviderError",
    # how a send failed
    "SendError",
    "SendOutcomeUnknown",
    "SendRefused",
    "SendRetryLater",
    "SenderConfigError",
]

logger = logging.getLogger(__name__)

# Use these with ``fullmatch``: Python's ``$`` also matches before a final "\n", so
# ``match`` would take "jane@example.com\n". Every class is spelled in ASCII: ``\d`` and
# ``\w`` also match other scripts' digits and letters (fullwidth, Arabic-Indic...).
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+$"
)
IDENTIFIER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def is_e164(value: str) -> bool:
    """True when ``value`` is an E.164 phone number: ``+``, then 7 to 15 ASCII digits."""
    return E164.fullmatch(value) is not None


def _phone(value: str) -> str:
    if not is_e164(value):
        raise ValueError(
            "must be an E.164 phone number: '+', the country code and 7 to 15 digits "
            "in all, no spaces (e.g. +14155550123)"
        )
    return value


def _email(value: str) -> str:
    if len(value) > 254 or not EMAIL.fullmatch(value):
        raise ValueError(
            "must be an email address like name@example.com (ASCII letters, digits and "
            "punctuation; no spaces or line breaks)"
        )
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(c.isspace() for c in value)
        or len(value) > 2048
    ):
        raise ValueError("must be an absolute http:// or https:// URL (at most 2048 characters)")
    if "@" in parts.netloc:  # user:password@ would sit in the job's record and its logs
        raise ValueError(
            "must not carry a user or password (user:pass@host): the URL is stored with the "
            "job and shown in its logs; a webhook receiver checks the X-Hueyard-Signature "
            "header instead, or takes a token in its path"
        )
    return value


def _identifier(value: str) -> str:
    if not IDENTIFIER.fullmatch(value):
        raise ValueError(
            "must be 1 to 128 letters, digits, '_', '.', ':' or '-', starting with a "
            "letter or digit"
        )
    return value


def _one_line(value: str) -> str:
    # str.splitlines() breaks at every line boundary Python (and the email package)
    # knows: CR, LF, VT, FF, FS, GS, RS, NEL, LINE and PARAGRAPH SEPARATOR
    if len((value + "x").splitlines()) > 1:  # + "x": a break at the end counts too
        raise ValueError(
            "must be one line (no line break: CR, LF, VT, FF, NEL, U+2028, U+2029 and the like)"
        )
    return value


OneLine = AfterValidator(_one_line)
"""Refuses every line break, not only CR and LF: for values that end up in a header or
a log line (the email package refuses a header with any of them, at send time)."""

PhoneNumber = Annotated[str, AfterValidator(_phone)]
EmailAddress = Annotated[str, AfterValidator(_email)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
Identifier = Annotated[str, AfterValidator(_identifier)]


def mask_phone(phone: str) -> str:
    """``+14155550123`` -> ``+*******0123``: enough to correlate logs, not to dial."""
    return phone[:1] + "*" * max(len(phone) - 5, 0) + phone[-4:]


def mask_email(address: str) -> str:
    """``jane.doe@example.com`` -> ``j***@example.com``."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def redact_url(url: str) -> str:
    """The URL without credentials, query or fragment: safe to log and to store in errors."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal needs its brackets back
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def provider_config(name: str) -> dict[str, Any]:
    """The ``[providers.<name>]`` table of the running app's config (``{}`` when it has
    none). Read inside a job only: outside one, no app is assumed, and it is ``{}``."""
    import framework

    if framework.current_job() is None:
        return {}
    return dict(framework.get_app().settings.providers.get(name, {}))


def merged_settings(
    config: Mapping[str, Any] | None, env: Mapping[str, str], variables: Mapping[str, str]
) -> dict[str, Any]:
    """A provider's settings: its ``[providers.<name>]`` table (``config``), each field
    replaced by its environment variable (``variables``: field -> name) when that is set
    and not blank. The environment wins, field by field."""
    merged: dict[str, Any] = dict(config or {})
    for field, variable in variables.items():
        value = env.get(variable, "").strip()
        if value:
            merged[field] = value
    return merged


class UnknownProviderError(ConfigError, LookupError, CancelExecution):  # type: ignore[misc]
    """A payload or the environment names a provider that no module registered: a
    misconfiguration, which retrying can not mend, so a job fails at once."""

    def __init__(self, message: str) -> None:
        CancelExecution.__init__(self, message, retry=False)


T = TypeVar("T")


class Registry(Generic[T]):
    """Providers of one kind by name. Thread-safe; a name can be registered once."""

    def __init__(self, kind: str, attribute: str) -> None:
        self.kind = kind
        self.attribute = attribute
        self._providers: dict[str, T] = {}
        self._lock = threading.Lock()

    def register(self, name: str, provider: T) -> None:
        """Make ``provider`` available as ``name``; refuses to replace another one."""
        with self._lock:
            existing = self._providers.get(name)
            if existing is not None and existing is not provider:
                raise ValueError(f"{self.kind} {name!r} is already registered ({existing!r})")
            self._providers[name] = provider

    def unregister(self, name: str) -> None:
        with self._lock:
            self._providers.pop(name, None)

    def get(self, name: str) -> T:
        """The provider called ``name``; :class:`UnknownProviderError` lists the known ones."""
        try:
            return self._providers[name]
        except KeyError:
            raise UnknownProviderError(self.unknown(name)) from None

    def unknown(self, name: str) -> str:
        known = ", ".join(sorted(self._providers)) or "none"
        return (
            f"unknown {self.kind} {name!r}; registered: {known}. Register one with "
            f"pipelines._providers.{self.attribute}.register(name, provider)"
        )

    def chosen(self, variable: str, name: str, default: str) -> T:
        """The provider the environment variable ``variable`` names (its value ``name``).
        An unknown name raises :class:`UnknownProviderError` naming the variable, its
        value, the registered names and ``default`` (what an unset variable chooses)."""
        if name in self._providers:
            return self._providers[name]
        known = ", ".join(sorted(self._providers)) or "none"
        raise UnknownProviderError(
            f"{variable} is {name!r}: unknown {self.kind} {name!r}; registered: {known}. "
            f"Set {variable} to one of them, or unset it ({default}), or register "
            f"{name!r} with pipelines._providers.{self.attribute}.register(name, provider) "
            "in a handler module"
        )

    def __contains__(self, name: object) -> bool:
        return name in self._providers

    def names(self) -> list[str]:
        return sorted(self._providers)


# -- AI providers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AIReply:
    """A provider's answer to one :class:`~pipelines.ai.AIRequest`."""

    text: str
    model: str | None
    """The model that answered, as the API named it (None for the echo provider)."""
    dry_run: bool
    """True when no model was asked (the ``echo`` provider)."""
    finish_reason: str | None = None
    """``stop``, ``length`` (cut at the token limit), ... as the API reported it."""


@dataclass(frozen=True)
class AITranscript:
    """The text of one voice note."""

    text: str
    model: str | None
    dry_run: bool


class AIError(Exception):
    """Not done; the queue retries the job after its backoff."""


class AIRetryLater(AIError, RetryTask):  # type: ignore[misc]
    """Not done; retry after ``delay`` seconds (the API asked to wait). Counts as an attempt."""

    def __init__(self, message: str, delay: float) -> None:
        RetryTask.__init__(self, message, delay=delay)


class AIRefused(AIError, CancelExecution):  # type: ignore[misc]
    """Not done, and a retry would fail the same way: the job fails at once."""

    def __init__(self, message: str) -> None:
        CancelExecution.__init__(self, message, retry=False)


class AIConfigError(ConfigError, CancelExecution):  # type: ignore[misc]
    """The AI provider's settings are missing or wrong: the job fails at once, naming the fix."""

    def __init__(self, message: str) -> None:
        CancelExecution.__init__(self, message, retry=False)


class AIProvider(Protocol):
    """What the ``ai`` queue needs from a chatbot / speech-to-text service.

    Say how a call failed by raising :class:`AIError` (retried after the
    backoff), :class:`AIRetryLater`, :class:`AIRefused` or :class:`AIConfigError`.
    """

    def reply(self, request: AIRequest) -> AIReply:
        """The chatbot's answer to ``request.prompt``, given its system prompt and history."""
        ...

    def transcribe(self, request: VoiceTranscription) -> AITranscript:
        """The text spoken in the voice note at ``request.audio_url``."""
        ...


class EchoProvider:
    """Deterministic and offline: answers with the prompt, names the audio it was given.

    The development provider: the default while no AI API is configured. Every
    answer says ``dry_run=True``: no model was asked.
    """

    def reply(self, request: AIRequest) -> AIReply:
        return AIReply(text=f"echo: {request.prompt}", model=None, dry_run=True)

    def transcribe(self, request: VoiceTranscription) -> AITranscript:
        language = request.language or "auto"
        text = f"echo transcript ({language}) of {redact_url(request.audio_url)}"
        return AITranscript(text=text, model=None, dry_run=True)

    def __repr__(self) -> str:
        return "EchoProvider()"


AI_PROVIDERS: Registry[AIProvider] = Registry("ai provider", "AI_PROVIDERS")
AI_PROVIDERS.register("echo", EchoProvider())


# -- message senders --------------------------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    """What a sender reports for one message: the provider's id, and whether it went out."""

    message_id: str
    sent: bool
    """False for a dry run (the ``log`` sender): recorded, not sent."""


class SendError(Exception):
    """The message was not sent; the queue retries it after its backoff."""


class SendRetryLater(SendError, RetryTask):  # type: ignore[misc]
    """The message was not sent; retry after ``delay`` seconds (the provider asked to wait).

    A Huey ``RetryTask``: it counts as an attempt, so the job's last attempt fails.
    """

    def __init__(self, message: str, delay: float) -> None:
        RetryTask.__init__(self, message, delay=delay)


class SendRefused(SendError, CancelExecution):  # type: ignore[misc]
    """The message was not sent and a retry would fail the same way: the job fails at once."""

    def __init__(self, message: str) -> None:
        CancelExecution.__init__(self, message, retry=False)


class SendOutcomeUnknown(CancelExecution):  # type: ignore[misc]
    """The request may have reached the provider (no answer came back): the job fails at
    once and is not sent again, so the customer never gets the message twice."""

    def __init__(self, message: str) -> None:
        CancelExecution.__init__(self, message, retry=False)


class SenderConfigError(ConfigError, CancelExecution):  # type: ignore[misc]
    """The sender's settings are missing or wrong: the job fails at once, naming the fix."""

    def __init__(self, message: str) -> None:
        CancelExecution.__init__(self, message, retry=False)


class MessageSender(Protocol):
    """What the ``messages`` queue needs from a WhatsApp API client."""

    def send(self, message: OutboundMessage) -> Receipt:
        """Send one message; return its :class:`Receipt`. Raise as the table above says."""
        ...


class LogSender:
    """Records each send in the log (masked number, never the content); sends nothing.

    The development sender: the default while no WhatsApp settings are present,
    or chosen with ``HUEYARD_MESSAGE_SENDER=log``. Its receipts say ``sent=False``.
    """

    def send(self, message: OutboundMessage) -> Receipt:
        message_id = f"msg-{uuid.uuid4().hex}"
        logger.info(
            "log sender (dry run): %s message %s to %s (%d characters) recorded, not sent",
            message.type,
            message_id,
            mask_phone(message.to),
            len(message.content or ""),
        )
        return Receipt(message_id=message_id, sent=False)

    def __repr__(self) -> str:
        return "LogSender()"


MESSAGE_SENDERS: Registry[MessageSender] = Registry("message sender", "MESSAGE_SENDERS")
MESSAGE_SENDERS.register("log", LogSender())
