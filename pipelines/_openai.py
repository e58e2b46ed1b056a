"""The ``openai`` AI provider: any OpenAI-compatible API (OpenAI, Azure OpenAI, a local server).

Replies: ``POST <base>/chat/completions`` with the request's system prompt,
history and prompt. Voice notes: the audio is downloaded from the payload's
URL (at most ``max_audio_bytes``, within ``timeout``), then posted as
``multipart/form-data`` to ``<base>/audio/transcriptions``.

Settings come from the environment, or from ``[providers.openai]`` in
``config/queues.toml`` (the environment wins, field by field)::

    OPENAI_API_KEY                  api_key              the key (a local server may need none)
    OPENAI_BASE_URL                 base_url             default DEFAULT_BASE_URL
    OPENAI_API_TYPE                 api_type             "openai" (default) or "azure"
    OPENAI_API_VERSION              api_version          Azure's api-version (required for azure)
    HUEYARD_AI_MODEL                model                DEFAULT_MODEL (Azure: the deployment)
    HUEYARD_AI_TRANSCRIPTION_MODEL  transcription_model  DEFAULT_TRANSCRIPTION_MODEL
    HUEYARD_AI_TIMEOUT              timeout              a request or a download, in all (60 s)
    HUEYARD_AI_MAX_AUDIO_BYTES      max_audio_bytes      the largest voice note (25 MiB)

The provider is configured when ``api_key`` or ``base_url`` is set. With
``api_type = "azure"`` the URL is
``<base>/openai/deployments/<model>/<path>?api-version=<api_version>`` and the
key goes in the ``api-key`` header (what Azure's classic API wants); otherwise
the key goes in ``Authorization: Bearer``. The key is never logged, returned
or quoted in an error: the API's own messages are scrubbed of it.

How the API's answers end a job (:func:`error_for`): 429 waits for its
``Retry-After`` (an attempt), except a spent quota which fails at once; 5xx,
408, 409, a timeout or an unreachable API is retried after the queue's
backoff; any other 4xx fails at once with the API's message. A reply asked
twice costs tokens but sends nothing to the customer, so unlike the WhatsApp
sender a lost answer is simply retried.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from framework.masking import MASK, validation_summary
from pipelines._audio import fetch_audio
from pipelines._http import (
    CONNECT_TIMEOUT,
    DEFAULT_RATE_LIMIT_WAIT,
    MAX_RETRY_AFTER,
    ThreadClients,
    deadline,
    hide_secrets,
    retry_after,
)
from pipelines._providers import (
    AI_PROVIDERS,
    AIConfigError,
    AIError,
    AIRefused,
    AIReply,
    AIRetryLater,
    AITranscript,
    HttpUrl,
    merged_settings,
    provider_config,
    redact_url,
)

if TYPE_CHECKING:
    from pipelines.ai import AIRequest, VoiceTranscription

__all__ = [
    "CONNECT_TIMEOUT",
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_AUDIO_BYTES",
    "DEFAULT_MODEL",
    "DEFAULT_RATE_LIMIT_WAIT",
    "DEFAULT_TIMEOUT",
    "DEFAULT_TRANSCRIPTION_MODEL",
    "ENVIRONMENT",
    "PROVIDER",
    "OpenAIProvider",
    "OpenAISettings",
    "chat_body",
    "error_for",
    "openai_settings",
]

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o-mini"
"""The chat model when ``HUEYARD_AI_MODEL`` is not set."""
DEFAULT_TRANSCRIPTION_MODEL = "whisper-1"
DEFAULT_TIMEOUT = 60.0
"""Seconds for a whole request to the API (connecting, sending, the answer), and for a whole
voice-note download."""
DEFAULT_MAX_AUDIO_BYTES = 25 * 1024 * 1024
"""OpenAI's limit on an uploaded audio file; WhatsApp's voice notes are at most 16 MB."""
MAX_API_MESSAGE = 500
"""Characters of the API's error message kept in the job's error."""

ENVIRONMENT = {
    "api_key": "OPENAI_API_KEY",
    "base_url": "OPENAI_BASE_URL",
    "api_type": "OPENAI_API_TYPE",
    "api_version": "OPENAI_API_VERSION",
    "model": "HUEYARD_AI_MODEL",
    "transcription_model": "HUEYARD_AI_TRANSCRIPTION_MODEL",
    "timeout": "HUEYARD_AI_TIMEOUT",
    "max_audio_bytes": "HUEYARD_AI_MAX_AUDIO_BYTES",
}
"""Each setting and the environment variable that sets it."""
CONFIG_TABLE = "[providers.openai]"

ModelName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,255}$")]
AZURE_DEPLOYMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class OpenAISettings(BaseModel):
    """Where the API is and how to authenticate. ``repr`` and errors never show the key."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    api_key: Annotated[SecretStr, Field(min_length=1)] | None = None
    base_url: HttpUrl = DEFAULT_BASE_URL
    api_type: Literal["openai", "azure"] = "openai"
    api_version: (
        Annotated[str, Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(-preview)?$")] | None
    ) = None
    model: ModelName = DEFAULT_MODEL
    transcription_model: ModelName = DEFAULT_TRANSCRIPTION_MODEL
    timeout: Annotated[float, Field(gt=0, le=600)] = DEFAULT_TIMEOUT
    max_audio_bytes: Annotated[int, Field(ge=1024, le=200 * 1024 * 1024)] = DEFAULT_MAX_AUDIO_BYTES

    @model_validator(mode="after")
    def _azure_needs_its_parts(self) -> Self:
        if self.api_type != "azure":
            if self.api_version is not None:
                raise ValueError("api_version is for api_type 'azure' only; leave it out")
            return self
        if self.api_key is None or self.api_version is None:
            raise ValueError(
                "api_type 'azure' needs api_key (the resource's key) and api_version "
                "(e.g. 2024-10-21)"
            )
        for name in (self.model, self.transcription_model):
            if not AZURE_DEPLOYMENT.fullmatch(name):
                raise ValueError(
                    f"with api_type 'azure' the models are deployment names (letters, "
                    f"digits, '.', '_', '-'); {name!r} is not one"
                )
        return self

    def url(self, path: str, model: str) -> str:
        """The endpoint for ``path`` (``/chat/completions``) and ``model``."""
        base = self.base_url.rstrip("/")
        if self.api_type == "azure":
            return f"{base}/openai/deployments/{model}{path}"
        return f"{base}{path}"

    def params(self) -> dict[str, str]:
        return {"api-version": self.api_version} if self.api_version else {}

    def headers(self) -> dict[str, str]:
        if self.api_key is None:
            return {}
        key = self.api_key.get_secret_value()
        return {"api-key": key} if self.api_type == "azure" else {"Authorization": f"Bearer {key}"}


def openai_settings(
    env: Mapping[str, str] | None = None, config: Mapping[str, Any] | None = None
) -> OpenAISettings | None:
    """The settings from ``config`` (``[providers.openai]``) overridden by ``env``.

    None when nothing is set: the API is not configured. Some settings but
    neither the key nor the base URL, or a bad value, raise
    :class:`AIConfigError` naming the variable and the fix.
    """
    env = os.environ if env is None else env
    merged = merged_settings(config, env, ENVIRONMENT)
    if not merged:
        return None
    if not any(str(merged.get(field, "")).strip() for field in ("api_key", "base_url")):
        named = ", ".join(ENVIRONMENT.get(field, field) for field in sorted(merged))
        raise AIConfigError(
            f"OpenAI-compatible API: {named} is set but neither {ENVIRONMENT['api_key']} nor "
            f"{ENVIRONMENT['base_url']} (nor api_key / base_url in {CONFIG_TABLE}); set the key "
            "(and the base URL for a server other than OpenAI's), or none of them to use the "
            "echo provider"
        )
    try:
        return OpenAISettings.model_validate(merged)
    except ValidationError as exc:
        raise AIConfigError(
            f"OpenAI-compatible API settings ({', '.join(ENVIRONMENT.values())} or "
            f"{CONFIG_TABLE}) are not valid: {validation_summary(exc)}"
        ) from None


# -- requests -----------------------------------------------------------------------------------


def chat_body(request: AIRequest, model: str) -> dict[str, Any]:
    """The chat completion request: the system prompt, the history, then the prompt.

    >>> from pipelines.ai import AIRequest
    >>> chat_body(AIRequest(conversationId="c", prompt="Hi", system="Be brief"), "m")
    {'model': 'm', 'messages': [{'role': 'system', 'content': 'Be brief'}, \
{'role': 'user', 'content': 'Hi'}]}
    """
    messages: list[dict[str, str]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.extend({"role": turn.role, "content": turn.content} for turn in request.history)
    messages.append({"role": "user", "content": request.prompt})
    return {"model": model, "messages": messages}


# -- the API's errors ---------------------------------------------------------------------------

_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_*\-]{4,}")


def scrub(text: str, settings: OpenAISettings) -> str:
    """``text`` without the key, nor anything shaped like one (OpenAI's 401 quotes a
    part of the key it was given)."""
    if settings.api_key is not None:
        text = hide_secrets(text, settings.api_key.get_secret_value())
    return _KEY_LIKE.sub(MASK, text)


def _describe(response: httpx.Response) -> tuple[str | None, str]:
    """The API's error code (or type) and its message, from an error answer."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, str):  # some compatible servers answer {"error": "..."}
        return None, error[:MAX_API_MESSAGE]
    if not isinstance(error, dict):
        return None, "no error message"
    code = error.get("code") or error.get("type")
    message = str(error.get("message") or "no error message")[:MAX_API_MESSAGE]
    return (str(code) if code is not None else None), message


def error_for(response: httpx.Response, where: str, settings: OpenAISettings) -> AIError:
    """The exception for an error answer: the API's status, code and message, and the verdict."""
    status = response.status_code
    code, message = _describe(response)
    text = f"OpenAI-compatible API {where}: HTTP {status}"
    text += f" {code}: {message}" if code else f": {message}"
    text = scrub(text, settings)
    if status == 429 and code != "insufficient_quota":
        asked = retry_after(response.headers.get("Retry-After"))
        if asked is None:
            asked = _retry_after_ms(response.headers.get("retry-after-ms"))
        delay = DEFAULT_RATE_LIMIT_WAIT if asked is None else asked
        return AIRetryLater(f"{text} [rate limited; retried after {delay:g} s]", delay=delay)
    if status >= 500 or status in (408, 409):
        return AIError(f"{text} [a temporary problem on the API's side; retried after the backoff]")
    if status == 429:
        hint = "the account's quota is spent: add credits or raise its limit"
    elif status in (401, 403):
        key, kind = ENVIRONMENT["api_key"], ENVIRONMENT["api_type"]
        hint = f"check {key} (and {kind}=azure for an Azure key)"
    elif status == 404:
        hint = (
            f"check {ENVIRONMENT['model']} and {ENVIRONMENT['base_url']} (for Azure: the "
            f"deployment name and {ENVIRONMENT['api_version']})"
        )
    else:
        hint = "the API refused the request"
    return AIRefused(f"{text} [{hint}; failed at once, not retried]")


def _retry_after_ms(value: str | None) -> float | None:
    try:
        return None if value is None else min(max(float(value) / 1000, 0.0), MAX_RETRY_AFTER)
    except ValueError:
        return None


# -- the provider -------------------------------------------------------------------------------


class OpenAIProvider:
    """Replies and transcribes through an OpenAI-compatible API, with the settings
    :func:`openai_settings` reads at each call. Thread-safe: one client per thread."""

    def __init__(self) -> None:
        self._clients = ThreadClients("hueyard-ai")

    def close(self) -> None:
        """Close every thread's client (at shutdown, or between tests)."""
        self._clients.close()

    def settings(self) -> OpenAISettings:
        settings = openai_settings(config=provider_config("openai"))
        if settings is None:
            raise AIConfigError(
                f"the openai provider needs {ENVIRONMENT['api_key']} or {ENVIRONMENT['base_url']} "
                f"(or {CONFIG_TABLE} in the config)"
            )
        return settings

    def reply(self, request: AIRequest) -> AIReply:
        settings = self.settings()
        url = settings.url("/chat/completions", settings.model)
        response = self._post(settings, url, json=chat_body(request, settings.model))
        try:
            choice = response.json()["choices"][0]
            message = choice["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise AIError(
                f"OpenAI-compatible API {redact_url(url)} answered HTTP {response.status_code} "
                "without choices[0].message; retried after the backoff"
            ) from None
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            refusal = message.get("refusal") if isinstance(message, dict) else None
            if refusal:
                said = scrub(str(refusal)[:MAX_API_MESSAGE], settings)
                raise AIRefused(f"the model refused to answer: {said}")
            raise AIError(f"OpenAI-compatible API {redact_url(url)} answered without a reply")
        model = response.json().get("model")
        logger.info(
            "openai: reply for conversation %s (%d characters)",
            request.conversationId,
            len(content),
        )
        return AIReply(
            text=content,
            model=model if isinstance(model, str) else settings.model,
            dry_run=False,
            finish_reason=choice.get("finish_reason") if isinstance(choice, dict) else None,
        )

    def transcribe(self, request: VoiceTranscription) -> AITranscript:
        settings = self.settings()
        # the whole download, its headers included (fetch_audio holds it to the limit)
        with deadline(settings.timeout, max_bytes=settings.max_audio_bytes + 64 * 1024):
            audio = fetch_audio(
                self._clients.get(),
                request.audio_url,
                timeout=settings.timeout,
                limit=settings.max_audio_bytes,
                limit_setting=ENVIRONMENT["max_audio_bytes"],
            )
        model = settings.transcription_model
        fields = {"model": model, "response_format": "json"}
        if request.language:
            fields["language"] = request.language.split("-")[0].lower()  # ISO 639-1
        url = settings.url("/audio/transcriptions", model)
        files = {"file": (audio.name, audio.data, audio.content_type)}
        response = self._post(settings, url, data=fields, files=files)
        try:
            text = response.json()["text"]
        except (ValueError, KeyError, TypeError):
            text = None
        if not isinstance(text, str):
            raise AIError(
                f"OpenAI-compatible API {redact_url(url)} answered HTTP {response.status_code} "
                "without a text; retried after the backoff"
            )
        logger.info(
            "openai: transcribed %d bytes for conversation %s (%d characters)",
            len(audio.data),
            request.conversationId,
            len(text),
        )
        return AITranscript(text=text, model=model, dry_run=False)

    def _post(self, settings: OpenAISettings, url: str, **content: Any) -> httpx.Response:
        where = redact_url(url)
        timeout = httpx.Timeout(settings.timeout, connect=CONNECT_TIMEOUT, pool=CONNECT_TIMEOUT)
        try:
            with deadline(settings.timeout):
                response = self._clients.get().post(
                    url,
                    params=settings.params(),
                    headers=settings.headers(),
                    timeout=timeout,
                    **content,
                )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise AIError(f"OpenAI-compatible API {where}: not reached ({exc!r})") from None
        except httpx.TimeoutException:
            raise AIError(
                f"OpenAI-compatible API {where}: no answer within {settings.timeout:g} s; "
                "retried after the backoff"
            ) from None
        except httpx.TransportError as exc:
            raise AIError(
                f"OpenAI-compatible API {where}: the connection failed ({type(exc).__name__}); "
                "retried after the backoff"
            ) from None
        if not response.is_success:
            raise error_for(response, where, settings)
        return response

    def __repr__(self) -> str:
        return "OpenAIProvider()"


PROVIDER = OpenAIProvider()
AI_PROVIDERS.register("openai", PROVIDER)
