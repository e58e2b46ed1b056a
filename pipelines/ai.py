"""The ``ai`` queue: chatbot replies and voice-note transcription, 2 attempts.

The work is done by an AI provider from :data:`pipelines._providers.AI_PROVIDERS`:
the payload's ``provider`` when it names one, else ``HUEYARD_AI_PROVIDER``,
else ``openai`` (:mod:`pipelines._openai`, any OpenAI-compatible API) when
its settings are present, else ``echo`` (offline, ``"dryRun": true``)::

    from pipelines.ai import generate_reply, transcribe_voice

    generate_reply.enqueue({
        "conversationId": "conv-7",
        "system": "You answer for Ada's Bakery. Be brief.",
        "history": [{"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello! How can I help?"}],
        "prompt": "Opening hours?",
    })
    transcribe_voice.enqueue({"conversationId": "conv-7",
                              "audio_url": "https://media.example/v/123.ogg", "language": "en"})

A provider name that no module registered is refused at enqueue, and fails a
stored job at once (no retries): retrying would not make it appear. An unknown
``HUEYARD_AI_PROVIDER`` stops an app with these handlers being built, and fails a
job at once (``UnknownProviderError``, a ``ConfigError``) naming the variable.
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from framework import handler
from framework.settings import Settings
from pipelines._openai import openai_settings
from pipelines._providers import (
    AI_PROVIDERS,
    AIProvider,
    HttpUrl,
    Identifier,
    provider_config,
)

__all__ = [
    "AI_PROVIDERS",
    "MAX_CONTEXT",
    "MAX_HISTORY",
    "MAX_PROMPT",
    "AIProvider",
    "AIRequest",
    "ChatTurn",
    "VoiceTranscription",
    "generate_reply",
    "select_provider",
    "transcribe_voice",
]

MAX_PROMPT = 8000
"""Characters of the prompt, of the system prompt, and of each turn of the history."""
MAX_HISTORY = 50
"""Turns of the history a request carries: the most recent ones, oldest first."""
MAX_CONTEXT = 48000
"""Characters of the system prompt, the history and the prompt together."""

PROVIDER_ENV = "HUEYARD_AI_PROVIDER"


def _registered(name: str) -> str:
    if name not in AI_PROVIDERS:
        raise ValueError(AI_PROVIDERS.unknown(name))
    return name


ProviderName = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_registered)]
Text = Annotated[str, Field(min_length=1, max_length=MAX_PROMPT)]


class ChatTurn(BaseModel):
    """One earlier message of the conversation: the customer's (``user``) or the bot's."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: Text


class AIRequest(BaseModel):
    """A prompt (the customer's message) to answer in a conversation, with its context."""

    model_config = ConfigDict(extra="forbid")

    conversationId: Identifier
    prompt: Text
    system: Text | None = None
    """The system prompt: who the bot is, what it may say."""
    history: Annotated[list[ChatTurn], Field(max_length=MAX_HISTORY)] = []
    """The conversation so far, oldest first, without the prompt."""
    provider: ProviderName | None = None
    """A registered provider; None chooses one (:func:`select_provider`)."""

    @model_validator(mode="after")
    def _context_is_bounded(self) -> Self:
        size = len(self.prompt) + len(self.system or "") + sum(len(t.content) for t in self.history)
        if size > MAX_CONTEXT:
            raise ValueError(
                f"the conversation is {size} characters (system + history + prompt), more than "
                f"{MAX_CONTEXT}; send fewer, more recent history turns"
            )
        return self


class VoiceTranscription(BaseModel):
    """A voice note to turn into text; ``language`` is a BCP 47 tag, or None to detect it."""

    model_config = ConfigDict(extra="forbid")

    conversationId: Identifier
    audio_url: HttpUrl
    language: Annotated[str, Field(pattern=r"^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})*$")] | None = None
    provider: ProviderName | None = None
    """A registered provider; None chooses one (:func:`select_provider`)."""


def select_provider(named: str | None) -> tuple[str, AIProvider]:
    """The provider's name and the provider: ``named``, else ``HUEYARD_AI_PROVIDER``, else
    ``openai`` when its settings are present, else ``echo``. Half-configured settings
    raise :class:`~pipelines._providers.AIConfigError`; an unknown name
    ``UnknownProviderError``: both fail the job at once."""
    if named:
        return named, AI_PROVIDERS.get(named)
    name = os.environ.get(PROVIDER_ENV, "").strip()
    if name:
        return name, AI_PROVIDERS.chosen(PROVIDER_ENV, name, _DEFAULT_CHOICE)
    configured = openai_settings(config=provider_config("openai")) is not None
    name = "openai" if configured else "echo"
    return name, AI_PROVIDERS.get(name)


_DEFAULT_CHOICE = "openai when its settings are present, else echo"


@handler("ai")
def generate_reply(payload: AIRequest) -> dict[str, Any]:
    """Ask the provider for a reply; return ``{"conversationId", "provider", "model",
    "reply", "finishReason", "dryRun"}`` (``dryRun`` true when no model was asked)."""
    name, provider = select_provider(payload.provider)
    reply = provider.reply(payload)
    return {
        "conversationId": payload.conversationId,
        "provider": name,
        "model": reply.model,
        "reply": reply.text,
        "finishReason": reply.finish_reason,
        "dryRun": reply.dry_run,
    }


@handler("ai")
def transcribe_voice(payload: VoiceTranscription) -> dict[str, Any]:
    """Transcribe the voice note; return ``{"conversationId", "provider", "model",
    "transcript", "dryRun"}``."""
    name, provider = select_provider(payload.provider)
    transcript = provider.transcribe(payload)
    return {
        "conversationId": payload.conversationId,
        "provider": name,
        "model": transcript.model,
        "transcript": transcript.text,
        "dryRun": transcript.dry_run,
    }


@generate_reply.startup_check
@transcribe_voice.startup_check
def _check_provider(settings: Settings) -> None:
    """At start-up: a ``HUEYARD_AI_PROVIDER`` that names no registered provider stops the
    app being built (producers and consumers alike) instead of failing every ai job."""
    name = os.environ.get(PROVIDER_ENV, "").strip()
    if name:
        AI_PROVIDERS.chosen(PROVIDER_ENV, name, _DEFAULT_CHOICE)  # a ConfigError if unknown
