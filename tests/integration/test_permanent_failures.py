"""Failures that a retry can not mend fail the job at once, naming what to fix.

A webhook endpoint refused as non-public, a flow node that renders a payload its
handler refuses, a sender or AI provider variable naming nothing registered, an
analytics series whose sum no float holds: each used to be retried on every
attempt with the same outcome. Jobs run as a consumer runs them, on the test
Redis database, and the error is read as stored on the job's record (masked).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from framework.application import Hueyard
from framework.config import parse_settings
from framework.errors import ConfigError, PayloadError
from framework.handlers import REGISTRY, HandlerRegistry
from framework.jobs import JobInfo, Jobs
from framework.runtime import reset_app, set_app
from pipelines import ai, analytics, flows, messages, webhooks
from pipelines._providers import UnknownProviderError
from tests.conftest import app_toml

PHONE = "+14155550123"
HANDLERS = (
    "webhooks.deliver_webhook",
    "messages.send_message",
    "ai.generate_reply",
    "flows.execute_flow",
    "analytics.snapshot",
)
QUEUES = "\n".join(
    f"[queues.{queue}]\nattempts = 3"
    for queue in ("webhooks", "messages", "ai", "flows", "analytics")
)


@pytest.fixture
def flows_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    directory = tmp_path / "flows"
    directory.mkdir()
    monkeypatch.setenv(flows.FLOWS_DIR_ENV, str(directory))
    flows._books.clear()
    yield directory
    flows._books.clear()


def write(directory: Path, name: str, text: str) -> None:
    (directory / f"{name}.yaml").write_text(textwrap.dedent(text), encoding="utf-8")


def build(redis_url: str) -> Hueyard:
    registry = HandlerRegistry()
    for name in HANDLERS:
        registry.register(REGISTRY.get(name))
    return Hueyard(parse_settings(app_toml(redis_url, QUEUES, prefix="perm"), env={}), registry)


@pytest.fixture
def app(
    redis_conn: redis.Redis, redis_url: str, flows_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Hueyard]:
    for variable in (messages.SENDER_ENV, ai.PROVIDER_ENV, "WHATSAPP_ACCESS_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    app = build(redis_url)
    set_app(app)
    yield app
    reset_app()
    app.close()


def run_one(app: Hueyard, queue: str) -> JobInfo:
    huey = app.queue(queue).huey
    task = huey.dequeue()
    assert task is not None, "nothing to run"
    huey.execute(task)
    info = Jobs(app).get(task.id)
    assert info is not None
    return info


def failed_at_once(info: JobInfo) -> str:
    assert (info.state, info.attempts) == ("failed", 1), (info.state, info.error)
    assert info.error is not None
    return info.error


# -- webhooks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("allowed", [None, "yes"], ids=["non-public", "bad-allow-list"])
def test_a_refused_webhook_endpoint_fails_at_once_with_a_hint_that_survives_masking(
    app: Hueyard, monkeypatch: pytest.MonkeyPatch, allowed: str | None
) -> None:
    if allowed is None:
        monkeypatch.delenv(webhooks.ALLOW_PRIVATE_ENV, raising=False)
    else:
        monkeypatch.setenv(webhooks.ALLOW_PRIVATE_ENV, allowed)
    webhooks.deliver_webhook.enqueue(
        {"url": "http://10.1.2.3:9/hook", "event": "e", "body": {}, "secret": "s" * 20}
    )

    error = failed_at_once(run_one(app, "webhooks"))

    assert error.startswith("WebhookRefused: webhook http://10.1.2.3:9/hook: ")
    assert "failed at once, not retried" in error
    # the stored error is masked: the fix must read right after masking
    assert "********" not in error
    if allowed is None:
        assert "non-public address 10.1.2.3; refused" in error
        assert "set HUEYARD_WEBHOOK_ALLOW_PRIVATE to 1 or to the networks to allow" in error
    else:
        assert "HUEYARD_WEBHOOK_ALLOW_PRIVATE is 'yes', and 'yes' in it is not a network" in error
        assert "set HUEYARD_WEBHOOK_ALLOW_PRIVATE to 1 (allow every address)" in error


# -- flows -------------------------------------------------------------------------------------

RENDER = """\
    nodes:
      - {id: greet, type: send_message, content: "Hi $name"}
    """
AI = """\
    nodes:
      - {id: bot, type: ai_reply, prompt: "Answer $q", conversation: "$conv"}
    """
HOOK = """\
    nodes:
      - id: tell
        type: webhook
        url: https://crm.example.com/hook
        event: flow.done
        secret_env: FLOW_HOOK_SECRET
    """


@pytest.mark.parametrize(
    ("flow", "text", "variables", "named"),
    [
        ("render", RENDER, {"name": "x" * 5000}, "content: String should have at most 4096"),
        ("ai", AI, {"conv": "c1", "q": "y" * 9000}, "prompt: String should have at most 8000"),
        ("ai", AI, {"conv": "has space", "q": "x"}, "conversation: Value error, must be 1 to"),
        ("hook", HOOK, {}, "secret_env (the secret in $FLOW_HOOK_SECRET): Value error, must"),
    ],
    ids=["content", "prompt", "conversation", "secret"],
)
def test_a_node_that_renders_a_refused_payload_fails_the_run_at_once_naming_it(
    app: Hueyard,
    flows_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    flow: str,
    text: str,
    variables: dict[str, Any],
    named: str,
) -> None:
    # Given a flow whose node renders, with these variables, a payload its handler refuses
    write(flows_dir, flow, text)
    flows._books.clear()  # the new file: as a restarted process would read it
    monkeypatch.setenv("FLOW_HOOK_SECRET", "short")
    flows.execute_flow.enqueue(
        {"flow": flow, "contactId": "c-1", "phone": PHONE, "variables": variables}
    )

    # When the run's job runs, it fails at once with the flow's own error
    error = failed_at_once(run_one(app, "flows"))

    # Naming the flow, the node and its field
    node = {"render": "greet", "ai": "bot", "hook": "tell"}[flow]
    assert error.startswith(f"FlowError: node {node!r} ")
    assert f"of flow {flow!r} ({flows_dir / (flow + '.yaml')})" in error
    assert named in error
    assert "short" not in error.replace("shorten", "")  # never the secret
    # And nothing was enqueued for it
    for queue in ("messages", "ai", "webhooks"):
        assert app.queue(queue).huey.pending_count() == 0


# -- providers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "queue", "payload", "known"),
    [
        (messages.SENDER_ENV, "twilio", "messages", {"to": PHONE, "content": "x"}, "log, whatsapp"),
        (ai.PROVIDER_ENV, "claude", "ai", {"conversationId": "c", "prompt": "x"}, "echo, openai"),
    ],
    ids=["sender", "ai"],
)
def test_an_unknown_provider_variable_fails_the_job_at_once_and_stops_start_up(
    app: Hueyard,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    queue: str,
    payload: dict[str, Any],
    known: str,
) -> None:
    handler = messages.send_message if queue == "messages" else ai.generate_reply
    handler.enqueue(payload)

    # Given the variable set to a name nothing registered, after the app started
    monkeypatch.setenv(variable, value)

    # Then a job fails at once, naming the variable, its value and the known names
    error = failed_at_once(run_one(app, queue))
    assert error.startswith(f"UnknownProviderError: {variable} is {value!r}: ")
    assert f"registered: {known}. Set {variable} to one of them" in error

    # And an app built with it set does not start: the same error, a ConfigError
    with pytest.raises(ConfigError) as caught:
        build(redis_url)
    assert isinstance(caught.value, UnknownProviderError)
    assert f"{variable} is {value!r}" in str(caught.value)


# -- analytics ---------------------------------------------------------------------------------


@pytest.mark.parametrize("series", [[1e308, 1e308], [1.7e308, 1.7e308, -1e308], 1e308 * 1.7])
def test_a_series_whose_sum_overflows_is_refused_at_enqueue_naming_the_metric(
    app: Hueyard, series: Any
) -> None:
    samples = series if isinstance(series, list) else [series, series]
    with pytest.raises(PayloadError) as caught:
        analytics.snapshot.enqueue(
            {"period": "weekly", "date": "2025-11-05", "metrics": {"ok": 1, "revenue": samples}}
        )
    message = str(caught.value)
    assert "metric 'revenue': the sum of its samples is beyond" in message
    assert "'ok'" not in message
    assert app.queue("analytics").huey.pending_count() == 0


def test_a_series_whose_partial_sums_overflow_but_whose_sum_fits_is_aggregated(
    app: Hueyard,
) -> None:
    # math.fsum gives up on [1e308, 1e308, -1e308]; its sum, 1e308, is a float
    analytics.snapshot.enqueue(
        {"period": "daily", "date": "2025-11-05", "metrics": {"m": [1e308, 1e308, -1e308]}}
    )
    info = run_one(app, "analytics")
    assert info.state == "completed"
    assert info.result is not None
    assert info.result["metrics"]["m"] == {
        "count": 3,
        "sum": 1e308,
        "avg": 1e308 / 3,
        "min": -1e308,
        "max": 1e308,
    }
