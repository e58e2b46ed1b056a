"""The compiled app against the real Redis server: compile, enqueue, refuse."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

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
from framework.handlers import Handler, HandlerRegistry, handler
from framework.jobs import Jobs
from tests.conftest import AppFactory, app_toml
from tests.integration.cli_runner import ROOT


class Outbound(BaseModel):
    to: str
    content: str


CONFIG = """
[defaults]
attempts = 3
backoff = { type = "exponential", delay = 5 }

[queues.messages]
priority = 5
timeout = 30

[queues.imports]
attempts = 1
backoff = { type = "fixed", delay = 2 }

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
def app(make_app: AppFactory, registry: HandlerRegistry) -> Hueyard:
    return make_app(CONFIG, registry, prefix="apptest")


def queued(app: Hueyard, queue: str) -> list[tuple[str, dict[bytes, bytes], float]]:
    """The waiting jobs of ``queue`` in run order: (id, record, score)."""
    storage = app.queue(queue).huey.storage
    entries = storage.conn.zrange(storage.q.waiting, 0, -1, withscores=True)
    return [
        (i.decode(), storage.conn.hgetall(storage.q.job(i.decode())), score) for i, score in entries
    ]


def test_each_handler_is_a_huey_task_named_by_its_stable_name(app: Hueyard) -> None:
    messages = app.queue("messages").tasks["messages.send_message"]
    # Huey's task name is the stable "<queue>.<handler>", not a module path,
    registry = app.queue("messages").huey._registry
    assert registry.task_to_string(messages) == "messages.send_message"
    # and the class carries no policy of its own: attempts, backoff and timeout are per job
    assert (messages.default_retries, messages.default_priority) == (0, None)
    assert messages.default_timeout is None


def test_a_claimed_job_becomes_a_huey_task_built_from_its_record(app: Hueyard) -> None:
    # Given a job on a queue with a 30 s timeout
    job_id = app.enqueue("messages", "send_message", {"to": "+1", "content": "hi"})
    huey = app.queue("messages").huey
    huey.storage.read_timeout = 0.1

    # When a worker dequeues it the way Huey's workers do
    task = huey.dequeue()

    # Then Huey gets its task, with the payload, the id and the queue's timeout
    assert task is not None
    assert (task.name, task.id, task.args) == (
        "send_message",
        job_id,
        ({"to": "+1", "content": "hi"},),
    )
    assert task.timeout == 30
    huey.execute(task)
    assert app.result("messages", job_id) == {"sent": True}


def test_a_queue_without_handlers_is_a_warning_not_a_crash(app: Hueyard) -> None:
    assert any("'idle' has no handler" in warning for warning in app.warnings)


def test_a_handler_for_an_undeclared_queue_stops_start_up(redis_url: str) -> None:
    registry = HandlerRegistry()

    @handler("mesages", registry=registry)
    def send(payload: object) -> None: ...

    with pytest.raises(UnknownHandlerError) as caught:
        Hueyard(parse_settings(app_toml(redis_url, CONFIG), env={}), registry)
    message = str(caught.value)
    assert "test_application" in message and "send" in message
    assert "'mesages'" in message
    assert "Declared queues: messages, imports, idle" in message


def test_enqueue_stores_a_readable_record_with_the_default_priority(app: Hueyard) -> None:
    before = int(time.time() * 1000)
    job_id = app.enqueue("messages", "send_message", {"to": "+1", "content": "hi"})
    [(queued_id, job, score)] = queued(app, "messages")
    assert queued_id == job_id
    # What an operator's HGETALL shows: the handler and the payload as JSON text.
    # Options the producer did not set are not stored: the queue's config applies.
    # When it was enqueued is in its id, a time-ordered UUID.
    assert set(job) == {b"handler", b"payload"}
    assert job[b"handler"] == b"messages.send_message"
    assert job[b"payload"] == b'{"to":"+1","content":"hi"}'
    assert uuid.UUID(job_id).version == 7
    assert before <= int(job_id[:8] + job_id[9:13], 16) <= time.time() * 1000
    info = Jobs(app).get(job_id)
    assert info is not None and info.created is not None
    assert before <= info.created.timestamp() * 1000 <= time.time() * 1000
    assert score // 2**40 == 5  # priority first (lower runs first), then enqueue order


def test_priority_1_sorts_before_10_and_fifo_within_a_priority(app: Hueyard) -> None:
    ids = {}
    for label, priority in [("a", 10), ("b", 1), ("c", 5), ("d", 1), ("e", 10)]:
        ids[
            app.enqueue(
                "messages", "send_message", {"to": label, "content": "x"}, priority=priority
            )
        ] = label
    order = [ids[job_id] for job_id, _, _ in queued(app, "messages")]
    assert order == ["b", "d", "c", "a", "e"]


def test_the_options_a_producer_sets_are_stored_on_the_job(app: Hueyard) -> None:
    app.enqueue(
        "messages", "send_message", {"to": "+1", "content": "x"},
        attempts=5, priority=2, keep_completed=0, keep_failed=10,
    )  # fmt: skip
    [(_, job, _)] = queued(app, "messages")
    assert job[b"max_attempts"] == b"5"
    assert job[b"priority"] == b"2"
    assert (job[b"keep_completed"], job[b"keep_failed"]) == (b"0", b"10")


def test_a_delayed_job_waits_in_the_schedule_not_the_queue(app: Hueyard) -> None:
    huey = app.queue("messages").huey
    before = time.time()
    app.enqueue("messages", "send_message", {"to": "+1", "content": "x"}, delay=60)
    assert huey.pending_count() == 0
    assert huey.scheduled_count() == 1
    [eta_score] = [
        s for _, s in huey.storage.conn.zrange(huey.storage.q.delayed, 0, -1, withscores=True)
    ]
    assert (before + 59) * 1000 <= eta_score <= (time.time() + 61) * 1000
    eta = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    with pytest.raises(OptionError, match="has no time zone"):
        app.enqueue(
            "messages", "send_message", {"to": "+1", "content": "x"}, eta=eta.replace(tzinfo=None)
        )
    app.enqueue("messages", "send_message", {"to": "+1", "content": "x"}, eta=eta)
    assert huey.scheduled_count() == 2


def test_a_bad_payload_is_refused_and_nothing_is_stored(
    app: Hueyard, redis_conn: redis.Redis
) -> None:
    keys_before = set(redis_conn.keys("*"))
    with pytest.raises(PayloadError, match=r"messages.send_message.*content: Field required"):
        app.enqueue("messages", "send_message", {"to": "+1"})
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
        app.enqueue("messages", "send_message", {"to": "+1", "content": "x"}, **options)  # type: ignore[arg-type]
    assert app.queue("messages").huey.pending_count() == 0


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        ("enqueue", "atempts= is not an enqueue option (did you mean attempts=?)"),
        ("handler", "atempts= is not an enqueue option (did you mean attempts=?)"),
        ("many", "atempts= is not an enqueue option (did you mean attempts=?)"),
    ],
)
def test_a_misspelled_option_is_refused_naming_the_one_meant_and_nothing_is_stored(
    app: Hueyard, registry: HandlerRegistry, redis_conn: redis.Redis, call: str, fragment: str
) -> None:
    payload = {"to": "+1", "content": "x"}
    keys_before = set(redis_conn.keys("*"))
    with pytest.raises(OptionError) as refused:
        if call == "enqueue":
            app.enqueue("messages", "send_message", payload, atempts=3)  # type: ignore[call-arg]
        elif call == "handler":
            sender = Handler(registry.get("send_message", "messages"), registry)
            sender.enqueue(payload, atempts=3)  # type: ignore[call-arg]
        else:
            app.enqueue_many("messages", "send_message", [payload], atempts=3)  # type: ignore[call-arg]
    message = str(refused.value)
    assert message.startswith(fragment)
    assert "the options are priority=, delay=, eta=, attempts=" in message
    assert ("then=" in message) == (call != "many")  # what each call takes besides
    assert ("keys=" in message) == (call == "many")
    assert set(redis_conn.keys("*")) == keys_before


@pytest.mark.parametrize(
    ("payloads", "keys", "error", "fragment"),
    [
        (
            {"a": 1, "b": 2},
            None,
            PayloadError,
            "not a dict, whose keys would each count as one",
        ),
        ("abc", None, PayloadError, "not a str, whose characters would each count as one"),
        (b"abc", None, PayloadError, "not a bytes"),
        ([{}, {}], "ab", OptionError, r"keys= must be a list \(or another iterable\)"),
    ],
)
def test_enqueue_many_of_a_dict_or_text_is_refused_not_a_job_per_key_or_character(
    app: Hueyard, redis_conn: redis.Redis, payloads: object, keys: object, error: type[Exception],
    fragment: str,
) -> None:  # fmt: skip
    keys_before = set(redis_conn.keys("*"))
    with pytest.raises(error, match=fragment):
        app.enqueue_many("imports", "import_contacts", payloads, keys=keys)  # type: ignore[arg-type]
    assert set(redis_conn.keys("*")) == keys_before


def test_unknown_queue_and_handler_are_named(app: Hueyard) -> None:
    with pytest.raises(QueueError, match="unknown queue 'nope'; declared queues: messages"):
        app.enqueue("nope", "send_message", {})
    with pytest.raises(UnknownHandlerError, match="no handler named 'send' on queue 'messages'"):
        app.enqueue("messages", "send", {})


def test_a_dead_redis_gives_a_clear_error_without_the_password(
    registry: HandlerRegistry, make_app: AppFactory
) -> None:
    app = make_app(
        CONFIG, registry, url="redis://:hunter2@127.0.0.1:1/0",
        redis_lines="reconnect_attempts = 1\nconnect_timeout = 0.5",
    )  # fmt: skip
    with pytest.raises(RedisUnavailableError) as caught:
        app.enqueue("messages", "send_message", {"to": "+1", "content": "x"})
    message = str(caught.value)
    assert "could not enqueue messages.send_message" in message
    assert "redis://:***@127.0.0.1:1/0" in message
    assert "nothing was stored" in message
    assert "hunter2" not in message
    assert "hunter2" not in repr(app)


def test_importing_framework_reads_no_config_and_imports_no_flask() -> None:
    code = (
        "import sys, os\n"
        "os.environ['HUEYARD_CONFIG'] = '/nonexistent.toml'\n"
        "import framework\n"
        "from framework import handler, enqueue\n"
        "assert 'flask' not in sys.modules, 'framework imported flask'\n"
        "assert framework.runtime._app is None, 'framework built its app on import'\n"
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


def test_a_handler_module_that_asks_for_the_app_at_import_fails_at_once(
    tmp_path: Path, redis_url: str
) -> None:
    # Given a handler module that reaches for the app at module level
    (tmp_path / "eager_handlers.py").write_text(
        "import framework\n"
        "from framework import handler\n\n"
        "APP = framework.get_app()\n\n"
        "@handler('messages')\n"
        "def send(payload: dict) -> None: ...\n"
    )
    (tmp_path / "q.toml").write_text(app_toml(redis_url, "[queues.messages]"))
    env = {
        **os.environ,
        "HUEYARD_CONFIG": str(tmp_path / "q.toml"),
        "HUEYARD_HANDLER_PACKAGES": "",
        "HUEYARD_HANDLER_MODULES": "eager_handlers",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
    }
    # When a process builds the app (as huey_consumer framework.app does)
    result = subprocess.run(
        [sys.executable, "-c", "import framework; framework.get_app()"],
        capture_output=True, text=True, timeout=30, env=env, check=False,
    )  # fmt: skip
    # Then it fails at once, saying why, instead of waiting for itself forever
    assert result.returncode == 1
    assert "HandlerError: framework.get_app() was called while the app is being built" in (
        result.stderr
    )
    assert "from handler module 'eager_handlers' imported by that build" in result.stderr
