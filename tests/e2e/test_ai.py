"""The real ``pipelines.ai`` in a real ``huey_consumer`` process, talking to a fake
OpenAI-compatible API and media server on 127.0.0.1 (tests/fake_openai.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from framework.application import Hueyard
from framework.config import parse_settings
from framework.handlers import HandlerRegistry
from framework.jobs import Jobs
from pipelines import _openai, ai
from tests.e2e.conftest import E2E, wait_until
from tests.fake_openai import FakeOpenAI, openai_error

pytestmark = [pytest.mark.e2e, pytest.mark.untimed]

KEY = "sk-e2e-test-key-0123456789abcdef"
VOICE = b"OggS" + bytes(range(256)) * 64


def config(e2e: E2E) -> str:
    return e2e.pipeline_config(
        """
[queues.ai]
attempts = 2
backoff = { type = "exponential", delay = 0.5 }
concurrency = 3
""",
    )


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    yield server
    server.close()


@pytest.fixture
def ai_app(e2e: E2E) -> Iterator[Hueyard]:
    """The producer side: the ai handlers on the consumer's config."""
    registry = HandlerRegistry()
    registry.register(ai.generate_reply.spec)
    registry.register(ai.transcribe_voice.spec)
    app = Hueyard(parse_settings(config(e2e), env={}), registry)
    yield app
    app.close()


def test_replies_and_transcriptions_run_in_a_consumer_against_the_api(
    e2e: E2E, ai_app: Hueyard, fake: FakeOpenAI
) -> None:
    # Given a consumer of the ai queue configured for the API, which throttles once
    path: Path = e2e.tmp_path / "ai.toml"
    path.write_text(config(e2e), encoding="utf-8")
    env = dict.fromkeys(_openai.ENVIRONMENT.values(), "")  # none from the test's environment
    env.update(
        HUEYARD_HANDLER_MODULES="pipelines.ai",
        OPENAI_API_KEY=KEY,
        OPENAI_BASE_URL=f"{fake.url}/v1",
        HUEYARD_AI_MODEL="gpt-4.1-mini",
        HUEYARD_AI_TIMEOUT="5",
    )
    e2e.start_consumer(config=path, env=env)
    fake.script("chat", openai_error(429, "Rate limit reached", Retry_After="1"))
    url = fake.media("v-1.ogg", VOICE)

    # When a reply with its conversation and a voice note are enqueued
    reply_id = ai_app.enqueue(
        "ai",
        "generate_reply",
        {
            "conversationId": "conv-7",
            "system": "Be brief.",
            "history": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"}],
            "prompt": "Opening hours?",
        },
    )
    voice_id = ai_app.enqueue(
        "ai", "transcribe_voice", {"conversationId": "conv-7", "audio_url": url, "language": "en"}
    )

    # Then both complete with what the API answered
    jobs = Jobs(ai_app)
    wait_until(lambda: jobs.counts("ai").completed == 2, timeout=30, what="2 completed ai jobs")
    reply, voice = jobs.get(reply_id), jobs.get(voice_id)
    assert reply is not None and voice is not None
    # (the throttled reply was asked again once, after the second the API asked for)
    first, second = fake.of("chat")
    assert reply.attempts == 2
    assert second.at - first.at >= 1.0
    assert second.json == {
        "model": "gpt-4.1-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hey"},
            {"role": "user", "content": "Opening hours?"},
        ],
    }
    assert reply.result["reply"].endswith("to: Opening hours?")
    assert (reply.result["provider"], reply.result["dryRun"]) == ("openai", False)
    (upload,) = fake.of("transcriptions")
    assert upload.files["file"].data == VOICE
    assert upload.form["language"] == "en"
    assert voice.result == {
        "conversationId": "conv-7",
        "provider": "openai",
        "model": "whisper-1",
        "transcript": f"transcript of voice-note.ogg ({len(VOICE)} bytes)",
        "dryRun": False,
    }
    assert {r.headers["authorization"] for r in [*fake.of("chat"), upload]} == {f"Bearer {KEY}"}
    # And the key is not in the consumer's log
    assert KEY not in e2e.consumers[0].log()
