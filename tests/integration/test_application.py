"""The compiled app against the real Redis server: compile, enqueue, refuse."""

from __future__ import annotations

import datetime
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import redis
from pydantic import BaseModel

from framework.application import Hueyard
from framework.config import parse_settings
from framework.errors import (
    OptionError,
    PayloadError,
    QueueError,
    RedisUnavailableError,
    UnknownHandlerError,
)
from framework.handlers import HandlerRegistry, handler
from framework.serializer import loads


class Outbound(BaseModel):
    to: str
    content: str


def config(url: str) -> str:
    return f"""
[redis]
url = "{url}"
prefix = "apptest"

[defaults]
attempts = 3
backoff = {{ type = "exponential", delay = 5 }}

[queues.messages]
priority = 5
timeout = 30

[queues.imports]
attempts = 1
backoff = {{ type = "fixed", delay = 2 }}

[queues.idle]

[cache.ttl]
SEGMENT_COUNTS = 300
"""


@pytest.fixture
def registry() -> HandlerRegistry:
    registry = HandlerRegistry()

    @handler("messages", registry=registry)
    def send_message(payload: Outbound) -> dict[str, bool]:
        return {"sent": True}

    @handler("imports", registry=registry)
    def import_contacts(payload: dict[str, object]) -> None: ...

    return registry


@pytest.fixture
def app(redis_conn: redis.Redis, redis_url: str, registry: HandlerRegistry) -> Iterator[Hueyard]:
    app = Hueyard(parse_settings(config(redis_url), env={}), registry)
    yield app
    app.close()


def queued(app: Hueyard, queue: str) -> list[tuple[str, dict[bytes, bytes], float]]:
    """The waiting jobs of ``queue`` in run order: (id, record, score)."""
    storage = app.queue(queue).huey.storage
    entries = storage.conn.zrange(storage.q.waiting, 0, -1, withscores=True)
    return [
        (i.decode(), storage.conn.hgetall(app.keys.job(i.decode())), score) for i, score in entries
    ]


def test_each_handler_becomes_a_task_with_its_queues_policy(app: Hueyard) -> None:
    messages = app.queue("messages").tasks["messages.send_message"]
    imports = app.queue("imports").tasks["imports.import_contacts"]
    # Huey counts retries after the first run; the config counts attempts.
    assert (messages.default_retries, messages.default_retry_delay) == (2, 5)
    assert messages.default_retry_backoff == 2  # exponential: 5 s, 10 s, 20 s
    assert messages.default_timeout == 30
    assert (imports.default_retries, imports.default_retry_backoff) == (0, 1)
    # Huey's task name is the stable "<queue>.<handler>", not a module path.
    registry = app.queue("messages").huey._registry
    assert registry.task_to_string(messages) == "messages.send_message"


def test_a_queue_without_handlers_is_a_warning_not_a_crash(app: Hueyard) -> None:
    assert any("'idle' has no handler" in warning for warning in app.warnings)


def test_a_handler_for_an_undeclared_queue_stops_start_up(redis_url: str) -> None:
    registry = HandlerRegistry()

    @handler("mesages", registry=registry)
    def send(payload: object) -> None: ...

    with pytest.raises(UnknownHandlerError) as caught:
        Hueyard(parse_settings(config(redis_url), env={}), registry)
    message = str(caught.value)
    assert "test_application" in message and "send" in message
    assert "'mesages'" in message
    assert "Declared queues: messages, imports, idle" in message


def test_enqueue_stores_one_json_message_with_the_default_priority(app: Hueyard) -> None:
    job_id = app.enqueue("send_message", {"to": "+1", "content": "hi"}, queue="messages")
    [(_, job, score)] = queued(app, "messages")
    message = loads(job[b"data"])
    assert message.id == job_id
    assert message.name == "messages.send_message"
    assert message.args == ({"to": "+1", "content": "hi"},)
    assert job[b"priority"] == b"5"
    assert score // 2**40 == 5  # priority first (lower runs first), then enqueue order


def test_priority_1_sorts_before_10_and_fifo_within_a_priority(app: Hueyard) -> None:
    ids = {}
    for label, priority in [("a", 10), ("b", 1), ("c", 5), ("d", 1), ("e", 10)]:
        ids[
            app.enqueue("messages.send_message", {"to": label, "content": "x"}, priority=priority)
        ] = label
    order = [ids[job_id] for job_id, _, _ in queued(app, "messages")]
    assert order == ["b", "d", "c", "a", "e"]


def test_attempts_override_is_stored_on_the_job(app: Hueyard) -> None:
    app.enqueue("send_message", {"to": "+1", "content": "x"}, queue="messages", attempts=5)
    [(_, job, _)] = queued(app, "messages")
    assert job[b"max_attempts"] == b"5"


def test_a_delayed_job_waits_in_the_schedule_not_the_queue(app: Hueyard) -> None:
    huey = app.queue("messages").huey
    before = time.time()
    app.enqueue("send_message", {"to": "+1", "content": "x"}, queue="messages", delay=60)
    assert huey.pending_count() == 0
    assert huey.scheduled_count() == 1
    [eta_score] = [
        s for _, s in huey.storage.conn.zrange(huey.storage.q.delayed, 0, -1, withscores=True)
    ]
    assert (before + 59) * 1000 <= eta_score <= (time.time() + 61) * 1000
    eta = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    with pytest.raises(OptionError, match="has no time zone"):
        app.enqueue(
            "send_message",
            {"to": "+1", "content": "x"},
            queue="messages",
            eta=eta.replace(tzinfo=None),
        )
    app.enqueue("send_message", {"to": "+1", "content": "x"}, queue="messages", eta=eta)
    assert huey.scheduled_count() == 2


def test_a_bad_payload_is_refused_and_nothing_is_stored(
    app: Hueyard, redis_conn: redis.Redis
) -> None:
    keys_before = set(redis_conn.keys("*"))
    with pytest.raises(PayloadError, match=r"messages.send_message.*content: Field required"):
        app.enqueue("send_message", {"to": "+1"}, queue="messages")
    assert set(redis_conn.keys("*")) == keys_before
    assert app.queue("messages").huey.pending_count() == 0


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"priority": 0}, "priority=0 is not allowed"),
        ({"priority": 11}, "priority=11 is not allowed"),
        ({"priority": True}, "priority=True is not allowed"),
        ({"attempts": 0}, "attempts=0 is not allowed"),
        ({"delay": -1}, "delay=-1 is not allowed"),
        ({"delay": 1, "eta": datetime.datetime(2030, 1, 1)}, "either delay= or eta="),
    ],
)
def test_bad_options_are_refused_before_anything_is_stored(
    app: Hueyard, options: dict[str, object], fragment: str
) -> None:
    with pytest.raises(OptionError, match=fragment):
        app.enqueue("send_message", {"to": "+1", "content": "x"}, queue="messages", **options)  # type: ignore[arg-type]
    assert app.queue("messages").huey.pending_count() == 0


def test_unknown_queue_and_handler_are_named(app: Hueyard) -> None:
    with pytest.raises(QueueError, match="unknown queue 'nope'; declared queues: messages"):
        app.enqueue("send_message", {}, queue="nope")
    with pytest.raises(UnknownHandlerError, match="no handler named 'send' on queue 'messages'"):
        app.enqueue("send", {}, queue="messages")


def test_a_dead_redis_gives_a_clear_error_without_the_password(registry: HandlerRegistry) -> None:
    text = config("redis://:hunter2@127.0.0.1:1/0").replace(
        'prefix = "apptest"', 'prefix = "apptest"\nreconnect_attempts = 1\nconnect_timeout = 0.5'
    )
    app = Hueyard(parse_settings(text, env={}), registry)
    with pytest.raises(RedisUnavailableError) as caught:
        app.enqueue("send_message", {"to": "+1", "content": "x"}, queue="messages")
    message = str(caught.value)
    assert "could not enqueue messages.send_message" in message
    assert "redis://:***@127.0.0.1:1/0" in message
    assert "nothing was enqueued" in message
    assert "hunter2" not in message
    assert "hunter2" not in repr(app)


def test_importing_framework_reads_no_config_and_imports_no_flask() -> None:
    code = (
        "import sys, os\n"
        "os.environ['HUEYARD_CONFIG'] = '/nonexistent.toml'\n"
        "import framework\n"
        "from framework import handler, enqueue\n"
        "assert 'flask' not in sys.modules, 'framework imported flask'\n"
        "assert 'framework.application' not in sys.modules\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_app_cache_uses_the_configured_ttl_names_and_prefix(
    app: Hueyard, redis_conn: redis.Redis
) -> None:
    calls: list[int] = []

    def load() -> dict[str, int]:
        calls.append(1)
        return {"count": 3}

    assert app.cache.get_cached("segment:1", load, ttl_name="SEGMENT_COUNTS") == {"count": 3}
    assert app.cache.get_cached("segment:1", load, ttl_name="SEGMENT_COUNTS") == {"count": 3}
    assert len(calls) == 1
    assert redis_conn.exists("apptest:cache:segment:1")
    assert 0 < redis_conn.ttl("apptest:cache:segment:1") <= 300
