"""The ``ai`` queue's OpenAI-compatible provider, through the real framework, the real
Redis and a fake OpenAI API with a media server on 127.0.0.1 (tests/fake_openai.py).

Jobs run the way a worker runs them (``huey.dequeue()`` then ``huey.execute(task)``);
what the API received is what the fake server recorded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
import redis

from framework.application import Hueyard
from framework.config import parse_settings
from framework.handlers import REGISTRY, HandlerRegistry
from framework.jobs import JobInfo, Jobs
from framework.runtime import reset_app, set_app
from pipelines import _openai, ai
from tests.conftest import app_toml
from tests.fake_openai import OK, Answer, FakeOpenAI, openai_error

KEY = "sk-proj-test-key-do-not-leak-0123456789abcdef"
BACKOFF = 2
VOICE = b"OggS" + bytes(range(256)) * 16  # 4 KiB standing in for a voice note

QUEUES = f"""
[queues.ai]
attempts = 2
backoff = {{ type = "exponential", delay = {BACKOFF} }}
"""


def build_app(redis_url: str, extra: str = "") -> Hueyard:
    registry = HandlerRegistry()
    registry.register(REGISTRY.get("ai.generate_reply"))
    registry.register(REGISTRY.get("ai.transcribe_voice"))
    return Hueyard(
        parse_settings(app_toml(redis_url, QUEUES + extra, prefix="ai"), env={}), registry
    )


def clear_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in (*_openai.ENVIRONMENT.values(), ai.PROVIDER_ENV):
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    yield server
    server.close()


@pytest.fixture
def api(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    """The fake API, configured through the environment as a deployment would."""
    clear_environment(monkeypatch)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", f"{fake.url}/v1")
    monkeypatch.setenv("HUEYARD_AI_TIMEOUT", "1")
    yield fake
    _openai.PROVIDER.close()


@pytest.fixture
def app(redis_conn: redis.Redis, redis_url: str) -> Iterator[Hueyard]:
    app = build_app(redis_url)
    set_app(app)  # the handler finds the app (config) through framework.get_app()
    yield app
    reset_app()
    app.close()


def run_one(app: Hueyard) -> JobInfo:
    huey = app.queue("ai").huey
    task = huey.dequeue()
    assert task is not None, "nothing to run"
    huey.execute(task)
    info = Jobs(app).get(task.id)
    assert info is not None
    return info


def due_in(app: Hueyard, redis_conn: redis.Redis, job_id: str) -> float:
    """Seconds from now until the delayed job is due."""
    due = redis_conn.zscore(app.queue("ai").storage.q.delayed, job_id)
    assert due is not None, f"job {job_id} is not delayed"
    return due / 1000 - time.time()


def run_the_retry(app: Hueyard, redis_conn: redis.Redis, job_id: str) -> JobInfo:
    redis_conn.zadd(app.queue("ai").storage.q.delayed, {job_id: 0})
    app.queue("ai").storage.promote_due()
    return run_one(app)


REQUEST = {
    "conversationId": "conv-7",
    "system": "You answer for Ada's Bakery. Be brief.",
    "history": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
    ],
    "prompt": "Opening hours?",
}


def no_key_in(app: Hueyard, redis_conn: redis.Redis, job_id: str, text: str) -> None:
    stored = redis_conn.hgetall(app.keys.job("ai", job_id))
    assert all(KEY.encode() not in value for value in stored.values())
    assert KEY not in text
    assert KEY[-8:] not in text


# -- replies -----------------------------------------------------------------------------------


def test_a_reply_posts_the_system_prompt_the_history_and_the_prompt(
    api: FakeOpenAI, app: Hueyard, redis_conn: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # Given the API's settings in the environment
    # When a reply job with a conversation's context runs
    job_id = ai.generate_reply.enqueue(REQUEST)
    info = run_one(app)

    # Then the API got one chat completion, authenticated with the key, with the context
    (request,) = api.requests
    assert (request.method, request.path, request.query) == ("POST", "/v1/chat/completions", {})
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.json == {
        "model": _openai.DEFAULT_MODEL,
        "messages": [
            {"role": "system", "content": "You answer for Ada's Bakery. Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Opening hours?"},
        ],
    }
    # And the job completed with the model's reply, which is no dry run
    assert info.state == "completed"
    assert info.result == {
        "conversationId": "conv-7",
        "provider": "openai",
        "model": "gpt-4o-mini-2024-07-18",
        "reply": "reply 1 to: Opening hours?",
        "finishReason": "stop",
        "dryRun": False,
    }
    # And the key is nowhere: not in the job, not in the log
    no_key_in(app, redis_conn, job_id, caplog.text)


def test_the_model_and_a_local_server_without_a_key(
    fake: FakeOpenAI, app: Hueyard, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a local server (Ollama, vLLM, LM Studio): a base URL and a model, no key
    clear_environment(monkeypatch)
    monkeypatch.setenv("OPENAI_BASE_URL", f"{fake.url}/v1/")
    monkeypatch.setenv("HUEYARD_AI_MODEL", "llama3.2:3b")
    ai.generate_reply.enqueue({"conversationId": "c-1", "prompt": "Hi"})
    info = run_one(app)
    _openai.PROVIDER.close()
    (request,) = fake.requests
    assert request.path == "/v1/chat/completions"
    assert "authorization" not in request.headers
    assert request.json == {"model": "llama3.2:3b", "messages": [{"role": "user", "content": "Hi"}]}
    assert (info.result["provider"], info.result["dryRun"]) == ("openai", False)


def test_azure_openai_from_the_config_table(
    fake: FakeOpenAI, redis_conn: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given Azure OpenAI configured in [providers.openai], the key in the environment
    clear_environment(monkeypatch)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    table = f"""
[providers.openai]
api_type = "azure"
base_url = "{fake.url}"
api_version = "2024-10-21"
model = "crm-gpt4o"
transcription_model = "crm-whisper"
timeout = 2
"""
    app = build_app(redis_url, table)
    set_app(app)
    try:
        ai.generate_reply.enqueue({"conversationId": "c-1", "prompt": "Hi"})
        reply = run_one(app)
        url = fake.media("v.ogg", VOICE)
        ai.transcribe_voice.enqueue({"conversationId": "c-1", "audio_url": url})
        transcript = run_one(app)
    finally:
        reset_app()
        app.close()
        _openai.PROVIDER.close()

    # Then each request went to its deployment, with api-version and the api-key header
    chat, transcription = fake.of("chat")[0], fake.of("transcriptions")[0]
    assert chat.path == "/openai/deployments/crm-gpt4o/chat/completions"
    assert transcription.path == "/openai/deployments/crm-whisper/audio/transcriptions"
    for request in (chat, transcription):
        assert request.query == {"api-version": "2024-10-21"}
        assert request.headers["api-key"] == KEY
        assert "authorization" not in request.headers
    assert reply.state == transcript.state == "completed"
    assert transcript.result["model"] == "crm-whisper"


# -- transcription -----------------------------------------------------------------------------


def test_a_voice_note_is_downloaded_then_posted_for_transcription(
    api: FakeOpenAI, app: Hueyard, redis_conn: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = api.media("note-123.ogg", VOICE)
    job_id = ai.transcribe_voice.enqueue(
        {"conversationId": "conv-7", "audio_url": f"{url}?sig=abc", "language": "pt-BR"}
    )
    info = run_one(app)

    # Then the audio was fetched without the API's key
    download, upload = api.requests
    assert (download.kind, download.path, download.query) == (
        "media",
        "/media/note-123.ogg",
        {"sig": "abc"},
    )
    assert "authorization" not in download.headers and "api-key" not in download.headers
    # And posted as multipart with the model and the language's ISO 639-1 code
    assert (upload.kind, upload.path) == ("transcriptions", "/v1/audio/transcriptions")
    assert upload.headers["authorization"] == f"Bearer {KEY}"
    assert upload.form == {"model": "whisper-1", "response_format": "json", "language": "pt"}
    file = upload.files["file"]
    assert (file.filename, file.content_type, file.data) == ("voice-note.ogg", "audio/ogg", VOICE)
    assert info.state == "completed"
    assert info.result == {
        "conversationId": "conv-7",
        "provider": "openai",
        "model": "whisper-1",
        "transcript": f"transcript of voice-note.ogg ({len(VOICE)} bytes)",
        "dryRun": False,
    }
    no_key_in(app, redis_conn, job_id, caplog.text)


def test_the_file_type_comes_from_the_content_type_when_the_url_has_none(
    api: FakeOpenAI, app: Hueyard
) -> None:
    url = api.media("7f3a9", VOICE, content_type="audio/mpeg")
    ai.transcribe_voice.enqueue({"conversationId": "c-1", "audio_url": url})
    assert run_one(app).state == "completed"
    file = api.of("transcriptions")[0].files["file"]
    assert (file.filename, file.content_type) == ("voice-note.mp3", "audio/mpeg")
    assert "language" not in api.of("transcriptions")[0].form  # detected by the API


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (Answer(200, VOICE * 2), "is 8200 bytes, over the 6000-byte limit"),
        (Answer(200, VOICE * 2, no_length=True), "is more, over the 6000-byte limit"),
        (Answer(404, "gone"), "HTTP 404 [check audio_url"),
        (Answer(403, "expired"), "HTTP 403 [check audio_url"),
        (Answer(200, b""), "is empty (0 bytes)"),
    ],
    ids=["too-large", "too-large-no-length", "404", "403", "empty"],
)
def test_a_voice_note_that_cannot_be_used_fails_at_once_without_a_transcription(
    api: FakeOpenAI, app: Hueyard, monkeypatch: pytest.MonkeyPatch, answer: Answer, says: str
) -> None:
    monkeypatch.setenv("HUEYARD_AI_MAX_AUDIO_BYTES", "6000")
    api.script("media", answer)
    url = api.media("v.ogg", VOICE)
    ai.transcribe_voice.enqueue({"conversationId": "c-1", "audio_url": url})
    info = run_one(app)
    assert (info.state, info.attempts) == ("failed", 1)
    assert info.error is not None
    assert info.error.startswith(f"AIRefused: the voice note at {url}")
    assert says in info.error
    assert api.of("transcriptions") == []


def test_a_media_server_error_is_retried_after_the_backoff(
    api: FakeOpenAI, app: Hueyard, redis_conn: redis.Redis
) -> None:
    api.script("media", Answer(503, "busy"))
    url = api.media("v.ogg", VOICE)
    job_id = ai.transcribe_voice.enqueue({"conversationId": "c-1", "audio_url": url})
    info = run_one(app)
    assert (info.state, info.attempts) == ("delayed", 1)
    assert info.error is not None
    assert info.error.startswith(f"AIError: the voice note at {url}: HTTP 503")
    assert run_the_retry(app, redis_conn, job_id).state == "completed"
    assert len(api.of("media")) == 2


# -- the API's errors --------------------------------------------------------------------------

REFUSALS = [
    (
        openai_error(401, f"Incorrect API key provided: {KEY}.", code="invalid_api_key"),
        "HTTP 401 invalid_api_key: Incorrect API key provided: ********.",
        "check OPENAI_API_KEY",
    ),
    (
        openai_error(401, "Incorrect API key provided: sk-proj-****cdef.", code="invalid_api_key"),
        "Incorrect API key provided: ********.",
        "check OPENAI_API_KEY",
    ),
    (
        openai_error(400, "This model's maximum context length is 128000 tokens."),
        "HTTP 400 invalid_request_error: This model's maximum context length",
        "the API refused the request",
    ),
    (
        openai_error(403, "Project does not have access to model", code="model_not_found"),
        "HTTP 403 model_not_found: Project does not have access",
        "check OPENAI_API_KEY",
    ),
    (
        openai_error(404, "The model `gpt-9` does not exist", code="model_not_found"),
        "HTTP 404 model_not_found: The model `gpt-9` does not exist",
        "check HUEYARD_AI_MODEL and OPENAI_BASE_URL",
    ),
    (
        openai_error(429, "You exceeded your current quota", code="insufficient_quota"),
        "HTTP 429 insufficient_quota: You exceeded your current quota",
        "the account's quota is spent",
    ),
]


@pytest.mark.parametrize(
    ("answer", "message", "hint"),
    REFUSALS,
    ids=["401-full-key", "401-masked-key", "400", "403", "404", "429-quota"],
)
def test_a_refusal_fails_the_job_at_once_with_the_apis_message_and_never_the_key(
    api: FakeOpenAI,
    app: Hueyard,
    redis_conn: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    answer: Answer,
    message: str,
    hint: str,
) -> None:
    api.script("chat", answer)
    job_id = ai.generate_reply.enqueue({"conversationId": "c-1", "prompt": "Hi"})
    info = run_one(app)
    assert (info.state, info.attempts) == ("failed", 1)
    assert info.error is not None
    assert info.error.startswith(
        f"AIRefused: OpenAI-compatible API {api.url}/v1/chat/completions: "
    )
    assert message in info.error
    assert hint in info.error
    assert "failed at once, not retried" in info.error
    no_key_in(app, redis_conn, job_id, info.error + (info.traceback or "") + caplog.text)
    assert len(api.requests) == 1


@pytest.mark.parametrize(
    ("answer", "delay"),
    [
        (openai_error(429, "Rate limit reached for requests", Retry_After="7"), 7.0),
        (openai_error(429, "Rate limit reached", retry_after_ms="4500"), 4.5),
        (Answer(429, "slow down"), _openai.DEFAULT_RATE_LIMIT_WAIT),
    ],
    ids=["retry-after", "retry-after-ms", "no-header"],
)
def test_a_rate_limit_retries_after_the_delay_the_api_asks_for(
    api: FakeOpenAI, app: Hueyard, redis_conn: redis.Redis, answer: Answer, delay: float
) -> None:
    api.script("chat", answer)
    job_id = ai.generate_reply.enqueue({"conversationId": "c-1", "prompt": "Hi"})
    info = run_one(app)
    assert (info.state, info.attempts) == ("delayed", 1)
    assert info.error is not None
    assert info.error.startswith("AIRetryLater: OpenAI-compatible API")
    assert f"rate limited; retried after {delay:g} s" in info.error
    assert delay - 1.5 < due_in(app, redis_conn, job_id) <= delay


@pytest.mark.parametrize(
    "answer",
    [
        openai_error(
            500, "The server had an error while processing your request.", kind="server_error"
        ),
        openai_error(503, "The engine is currently overloaded", kind="server_error"),
        Answer(502, "<html>Bad Gateway</html>"),
    ],
    ids=["500", "503", "502-html"],
)
def test_a_server_error_retries_after_the_backoff_and_the_retry_answers(
    api: FakeOpenAI, app: Hueyard, redis_conn: redis.Redis, answer: Answer
) -> None:
    # Given an API that fails once, then answers
    api.script("chat", answer, OK)
    job_id = ai.generate_reply.enqueue({"conversationId": "c-1", "prompt": "Hi"})

    # When the job runs, it is delayed by the queue's backoff, with the API's answer as error
    info = run_one(app)
    assert (info.state, info.attempts) == ("delayed", 1)
    assert info.error is not None
    assert info.error.startswith(
        f"AIError: OpenAI-compatible API {api.url}/v1/chat/completions: HTTP {answer.status}"
    )
    assert "retried after the backoff" in info.error
    assert BACKOFF - 1.5 < due_in(app, redis_conn, job_id) <= BACKOFF

    # And the retry asks again and completes
    info = run_the_retry(app, redis_conn, job_id)
    assert (info.state, info.attempts) == ("completed", 2)
    assert info.result["reply"] == "reply 2 to: Hi"


def test_an_answer_slower_than_the_timeout_is_retried_after_the_backoff(
    api: FakeOpenAI, app: Hueyard, redis_conn: redis.Redis
) -> None:
    # Given an API that answers after the provider's 1 s timeout, then in time
    api.script("chat", Answer(delay=1.6), OK)
    job_id = ai.generate_reply.enqueue({"conversationId": "c-1", "prompt": "Hi"})

    # When the job runs, it is retried: asking again sends nothing to the customer
    info = run_one(app)
    assert (info.state, info.attempts) == ("delayed", 1)
    assert info.error is not None
    assert "no answer within 1 s; retried after the backoff" in info.error
    info = run_the_retry(app, redis_conn, job_id)
    assert info.state == "completed"
    assert len(api.of("chat")) == 2


def test_an_unreachable_api_is_retried_after_the_backoff(
    api: FakeOpenAI, app: Hueyard, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = FakeOpenAI()
    closed.close()  # its port now refuses connections
    monkeypatch.setenv("OPENAI_BASE_URL", closed.url)
    ai.generate_reply.enqueue({"conversationId": "c-1", "prompt": "Hi"})
    info = run_one(app)
    assert info.state == "delayed"
    assert info.error is not None
    assert info.error.startswith(
        f"AIError: OpenAI-compatible API {closed.url}/chat/completions: not reached"
    )


def test_a_model_that_refuses_fails_the_job_at_once(api: FakeOpenAI, app: Hueyard) -> None:
    message = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    api.script("chat", Answer(200, {"choices": [{"message": message, "finish_reason": "stop"}]}))
    ai.generate_reply.enqueue({"conversationId": "c-1", "prompt": "Hi"})
    info = run_one(app)
    assert (info.state, info.attempts) == ("failed", 1)
    assert info.error == "AIRefused: the model refused to answer: I can't help with that."


# -- choosing the provider, and its settings ---------------------------------------------------


def test_without_settings_the_echo_provider_answers_as_a_dry_run(
    app: Hueyard, monkeypatch: pytest.MonkeyPatch
) -> None:
    clear_environment(monkeypatch)
    ai.generate_reply.enqueue(REQUEST)
    info = run_one(app)
    assert info.result == {
        "conversationId": "conv-7",
        "provider": "echo",
        "model": None,
        "reply": "echo: Opening hours?",
        "finishReason": None,
        "dryRun": True,
    }


@pytest.mark.parametrize("how", ["environment", "payload"])
def test_the_echo_provider_can_be_chosen_over_the_settings(
    api: FakeOpenAI, app: Hueyard, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    payload = {"conversationId": "c-1", "prompt": "Hi"}
    if how == "environment":
        monkeypatch.setenv("HUEYARD_AI_PROVIDER", "echo")
    else:
        payload["provider"] = "echo"
    ai.generate_reply.enqueue(payload)
    info = run_one(app)
    assert (info.result["provider"], info.result["dryRun"]) == ("echo", True)
    assert api.requests == []


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        (
            {"HUEYARD_AI_MODEL": "gpt-4o"},
            "AIConfigError: OpenAI-compatible API: HUEYARD_AI_MODEL is set but neither "
            "OPENAI_API_KEY nor OPENAI_BASE_URL",
        ),
        (
            {
                "OPENAI_API_KEY": KEY,
                "OPENAI_API_TYPE": "azure",
                "OPENAI_BASE_URL": "https://x.example",
            },
            "api_type 'azure' needs api_key (the resource's key) and api_version",
        ),
        (
            {"OPENAI_API_KEY": KEY, "OPENAI_API_VERSION": "2024-10-21"},
            "api_version is for api_type 'azure' only",
        ),
        (
            {"OPENAI_API_KEY": KEY, "HUEYARD_AI_TIMEOUT": "soon"},
            "timeout: Input should be a valid number",
        ),
        (
            {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": "api.local"},
            "base_url: Value error, must be an absolute",
        ),
        (
            {"OPENAI_API_KEY": KEY, "OPENAI_API_TYPE": "claude"},
            "api_type: Input should be 'openai' or 'azure'",
        ),
    ],
    ids=["model-alone", "azure-without-version", "version-without-azure", "timeout", "url", "type"],
)
def test_bad_settings_fail_the_job_at_once_naming_them_without_the_key(
    app: Hueyard,
    redis_conn: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    settings: dict[str, str],
    says: str,
) -> None:
    clear_environment(monkeypatch)
    for variable, value in settings.items():
        monkeypatch.setenv(variable, value)
    job_id = ai.generate_reply.enqueue({"conversationId": "c-1", "prompt": "Hi"})
    info = run_one(app)
    assert (info.state, info.attempts) == ("failed", 1)
    assert info.error is not None
    assert info.error.startswith("AIConfigError: ")
    assert says in info.error
    no_key_in(app, redis_conn, job_id, info.error + (info.traceback or ""))
