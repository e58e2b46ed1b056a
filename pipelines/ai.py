"""The ``ai`` queue: chatbot replies and voice-note transcription, 2 attempts.

The work is done by an AI provider from :data:`pipelines._providers.AI_PROVIDERS`,
chosen per job. The built-in ``echo`` provider is deterministic and offline;
register real ones under their own names::

    from pipelines.ai import AI_PROVIDERS, generate_reply

    AI_PROVIDERS.register("openai", MyOpenAIProvider())     # implements AIProvider
    generate_reply.enqueue({"conversationId": "conv-7", "prompt": "Opening hours?",
                            "provider": "openai"})

A provider name that no module registered is refused at enqueue, and fails a
stored job at once (no retries): retrying would not make it appear.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from framework import handler
from pipelines._providers import AI_PROVIDERS, AIProvider, HttpUrl, Identifier

__all__ = [
    "AI_PROVIDERS",
    "AIProvider",
    "AIRequest",
    "VoiceTranscription",
    "generate_reply",
    "transcribe_voice",
]

MAX_PROMPT = 8000


def _registered(name: str) -> str:
    if name not in AI_PROVIDERS:
        raise ValueError(AI_PROVIDERS.unknown(name))
    return name


ProviderName = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_registered)]


class AIRequest(BaseModel):
    """A prompt (the customer's message) to answer in a conversation."""

    model_config = ConfigDict(extra="forbid")

    conversationId: Identifier
    prompt: Annotated[str, Field(min_length=1, max_length=MAX_PROMPT)]
    provider: ProviderName = "echo"


class VoiceTranscription(BaseModel):
    """A voice note to turn into text; ``language`` is a BCP 47 tag, or None to detect it."""

    model_config = ConfigDict(extra="forbid")

    conversationId: Identifier
    audio_url: HttpUrl
    language: Annotated[str, Field(pattern=r"^[a-zA-Z]{2,3}(-[a-zA-Z0-9]{2,8})*$")] | None = None
    provider: ProviderName = "echo"


@handler("ai")
def generate_reply(payload: AIRequest) -> dict[str, Any]:
    """Ask the provider for a reply; return ``{"conversationId", "provider", "reply"}``."""
    provider = AI_PROVIDERS.get(payload.provider)
    reply = provider.reply(payload.prompt, conversation_id=payload.conversationId)
    return {"conversationId": payload.conversationId, "provider": payload.provider, "reply": reply}


@handler("ai")
def transcribe_voice(payload: VoiceTranscription) -> dict[str, Any]:
    """Transcribe the voice note; return ``{"conversationId", "provider", "transcript"}``."""
    provider = AI_PROVIDERS.get(payload.provider)
    transcript = provider.transcribe(payload.audio_url, language=payload.language)
    return {
        "conversationId": payload.conversationId,
        "provider": payload.provider,
        "transcript": transcript,
    }
