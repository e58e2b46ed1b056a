"""Payload limits at enqueue: size, depth and text, refused the same way by every enqueue
path with one PayloadError naming the problem, and nothing stored. Options out of range
(``delay`` / ``eta`` of NaN, infinity, absurd size) are one clear OptionError.

Against the real Redis server; ``hueyard enqueue`` through the in-process runner, and as a
real process where its exit status and stderr are the point.
"""

from __future__ import annotations

import datetime
import json
import textwrap
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import BaseModel

import framework
from framework import defaults
from framework.application import Hueyard
from framework.errors import OptionError, PayloadError
from framework.handlers import Handler, HandlerRegistry, handler
from framework.jobs import Jobs
from framework.runtime import reset_app, set_app
from framework.testing import drain
from tests.conftest import AppFactory, app_toml
from tests.integration.cli_runner import run, run_process

CONFIG = """
[defaults]
max_payload_bytes = 2048

[queues.small]

[queues.roomy]
max_payload_bytes = 65536
"""


class Item(BaseModel):
    name: str


class Order(BaseModel):
    items: list[Item]
    note: Any = None


def nested(levels: int) -> list[Any]:
    """A list nested ``levels`` deep (``[[[]]]`` is 3), built without recursion."""
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


class Handlers:
    def __init__(self) -> None:
        self.registry = HandlerRegistry()

        @handler("small", registry=self.registry)
        def take(payload: dict[str, Any]) -> None: ...

        @handler("small", registry=self.registry)
        def order(payload: Order) -> None: ...

        @handler("roomy", registry=self.registry)
        def roomy_take(payload: dict[str, Any]) -> None: ...

        @handler("small", registry=self.registry)
        def repeat(payload: dict[str, Any]) -> str:
            return str(payload["text"]) * int(payload["times"])

        self.take: Handler[None] = take
        self.order: Handler[None] = order


@pytest.fixture
def handlers() -> Handlers:
    return Handlers()


@pytest.fixture
def app(make_app: AppFactory, handlers: Handlers) -> Iterator[Hueyard]:
    """The app on the test database, also the process's app (``framework.enqueue``)."""
    app = make_app(CONFIG, handlers.registry, prefix="pl")
    set_app(app)
    yield app
    reset_app()


Enqueue = Callable[[Hueyard, Handlers, Any], object]

PATHS: dict[str, Enqueue] = {
    "handler.enqueue": lambda app, h, payload: h.take.enqueue(payload),
    "handler.enqueue_many": lambda app, h, payload: h.take.enqueue_many([{"ok": 1}, payload]),
    "framework.enqueue": lambda app, h, payload: framework.enqueue("small", "take", payload),
    "framework.enqueue_many": lambda app, h, payload: framework.enqueue_many(
        "small", "take", [{"ok": 1}, payload]
    ),
    "Hueyard.enqueue": lambda app, h, payload: app.enqueue("small", "take", payload),
    "Hueyard.enqueue_many": lambda app, h, payload: app.enqueue_many(
        "small", "take", [{"ok": 1}, payload]
    ),
    "a model's handler": lambda app, h, payload: h.order.enqueue(
        {"items": [{"name": "a"}], "note": payload}
    ),
}


def too_big() -> dict[str, str]:
    return {"blob": "x" * 5000}


BAD_PAYLOADS: dict[str, tuple[Callable[[], Any], list[str]]] = {
    "too big": (too_big, ["bytes as JSON", "over the limit of 2,048 bytes", "max_payload_bytes"]),
    "nested 100,000 levels": (lambda: nested(100_000), ["levels deep", "the limit is 64 levels"]),
    "a lone surrogate": (
        lambda: {"items": [{"name": "a"}, {}, {}, {"name": "b\ud800c"}]},
        ["items[3].name is not valid UTF-8"],
    ),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("bad", BAD_PAYLOADS)
def test_every_enqueue_path_refuses_a_bad_payload_and_stores_nothing(
    app: Hueyard, handlers: Handlers, redis_conn: redis.Redis, path: str, bad: str
) -> None:
    # Given a payload over a limit
    make, fragments = BAD_PAYLOADS[bad]
    payload = make()
    # When any enqueue path is given it
    with pytest.raises(PayloadError) as caught:
        PATHS[path](app, handlers, payload)
    # Then the error names the handler and the problem, in one line
    message = str(caught.value)
    assert "small." in message
    for fragment in fragments:
        assert fragment in message
    assert "nothing was enqueued" in message
    assert "\n" not in message
    # And nothing was stored, not even the good payload of a batch
    assert redis_conn.dbsize() == 0


@pytest.mark.parametrize(
    ("queue", "limit"), [("small", 2048), ("roomy", 65536)], ids=["[defaults]", "[queues.roomy]"]
)
def test_the_limit_is_the_queues_own_and_its_bytes_count_exactly(
    app: Hueyard, redis_conn: redis.Redis, queue: str, limit: int
) -> None:
    # Given payloads whose JSON is exactly the limit, and one byte more
    handler_name = "take" if queue == "small" else "roomy_take"
    overhead = len(json.dumps({"blob": ""}, separators=(",", ":")))
    fits = {"blob": "x" * (limit - overhead)}
    over = {"blob": "x" * (limit - overhead + 1)}
    # When both are enqueued
    job_id = app.enqueue(queue, handler_name, fits)
    with pytest.raises(PayloadError) as caught:
        app.enqueue(queue, handler_name, over)
    # Then the first is stored whole, the second refused with its size and the limit
    stored = redis_conn.hget(app.keys.job(queue, job_id), "payload")
    assert stored is not None and len(stored) == limit
    message = str(caught.value)
    assert f"is {limit + 1:,} bytes as JSON, over the limit of {limit:,} bytes" in message
    assert f"max_payload_bytes (now {limit}, in [queues.{queue}] or [defaults])" in message
    assert f"to at least {limit + 1}" in message
    assert "pass a reference" in message
    assert redis_conn.zcard(app.keys.queue(queue).waiting) == 1


def test_the_default_limit_is_one_mebibyte(make_app: AppFactory, handlers: Handlers) -> None:
    app = make_app("[queues.small]\n[queues.roomy]\n", handlers.registry, prefix="pl1")
    assert app.queue("small").policy.max_payload_bytes == defaults.MAX_PAYLOAD_BYTES == 1048576
    app.enqueue("small", "take", {"blob": "x" * 1_000_000})
    with pytest.raises(PayloadError, match="over the limit of 1,048,576 bytes"):
        app.enqueue("small", "take", {"blob": "x" * 1_048_576})


@pytest.mark.parametrize(
    ("levels", "stored"), [(64, True), (65, False)], ids=["64 levels", "65 levels"]
)
def test_nesting_is_counted_in_levels_of_objects_and_arrays(
    app: Hueyard, redis_conn: redis.Redis, levels: int, stored: bool
) -> None:
    payload = {"tree": nested(levels - 1)}  # the outer object is a level too
    if stored:
        app.enqueue("roomy", "roomy_take", payload)
        assert redis_conn.zcard(app.keys.queue("roomy").waiting) == 1
        return
    with pytest.raises(PayloadError, match=f"nests {levels} levels deep; the limit is 64 levels"):
        app.enqueue("roomy", "roomy_take", payload)
    assert redis_conn.dbsize() == 0


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(nested(100_000), id="a list nested 100,000 levels"),
        pytest.param({"a": nested(100_000)}, id="inside an object"),
        pytest.param((nested(70),), id="inside a tuple"),
    ],
)
def test_a_deep_payload_is_a_payload_error_never_a_recursion_error(
    app: Hueyard, handlers: Handlers, redis_conn: redis.Redis, payload: Any
) -> None:
    for enqueue in (handlers.take.enqueue, handlers.order.enqueue):
        with pytest.raises(PayloadError, match="levels deep; the limit is 64 levels"):
            enqueue(payload)
    assert redis_conn.dbsize() == 0


def test_a_payload_that_holds_itself_is_refused(app: Hueyard, handlers: Handlers) -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(PayloadError, match="nests without end"):
        handlers.take.enqueue({"loop": loop})


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({"name": "\ud800"}, "payload.name is not valid UTF-8"),
        ({"items": [{"name": "ok"}, {"name": "x\udfffy"}]}, "payload.items[1].name is not"),
        ({"a": {"k\udc00ey": 1}}, "a key of payload.a is not valid UTF-8"),
        ({"tags": ("ok", "\ud83d")}, "payload.tags[1] is not valid UTF-8"),
        ({"weird key": ["\udbff"]}, "payload['weird key'][0] is not valid UTF-8"),
        ("\udc80", "payload is not valid UTF-8"),
    ],
)
def test_a_lone_surrogate_is_refused_naming_its_field(
    app: Hueyard, redis_conn: redis.Redis, payload: Any, where: str
) -> None:
    with pytest.raises(PayloadError) as caught:
        app.enqueue("small", "take", payload)
    assert where in str(caught.value)
    assert "lone surrogate" in str(caught.value)
    assert redis_conn.dbsize() == 0


def test_a_lone_surrogate_is_refused_through_a_model_too(
    app: Hueyard, handlers: Handlers, redis_conn: redis.Redis
) -> None:
    with pytest.raises(PayloadError, match=r"payload\.items\[1\]\.name is not valid UTF-8"):
        handlers.order.enqueue({"items": [{"name": "a"}, {"name": "b\ud800"}]})
    assert redis_conn.dbsize() == 0


def test_a_key_with_a_lone_surrogate_is_refused(
    app: Hueyard, handlers: Handlers, redis_conn: redis.Redis
) -> None:
    with pytest.raises(OptionError, match="key='order-\\\\ud800' is not valid UTF-8"):
        handlers.take.enqueue({"n": 1}, key="order-\ud800")
    with pytest.raises(OptionError, match=r"keys\[1\]: key=.* is not valid UTF-8"):
        handlers.take.enqueue_many([{"n": 1}, {"n": 2}], keys=["a", "b\udc00"])
    assert redis_conn.dbsize() == 0


# -- options -----------------------------------------------------------------------------------

NOW = datetime.datetime.now(datetime.UTC)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"delay": float("nan")}, "delay=nan is not allowed"),
        ({"delay": float("inf")}, "delay=inf is not allowed"),
        ({"delay": float("-inf")}, "delay=-inf is not allowed"),
        ({"delay": -0.5}, "delay=-0.5 is not allowed"),
        ({"delay": 1e300}, "delay=1e+300 is not allowed"),
        ({"delay": 10**400}, "delay=1000000"),
        ({"delay": 10**5000}, "delay=<an int of"),
        ({"delay": datetime.timedelta.max}, "delay=datetime.timedelta(days=999999999"),
        ({"delay": datetime.timedelta(seconds=-1)}, "is not allowed"),
        ({"delay": "5"}, "delay='5' is not allowed"),
        ({"delay": Decimal("sNaN")}, "delay=Decimal('sNaN') is not allowed"),
        ({"delay": object()}, "delay=<object object"),
        ({"eta": NOW + datetime.timedelta(days=400)}, "more than 366 days ahead"),
        ({"eta": datetime.datetime.max.replace(tzinfo=datetime.UTC)}, "more than 366 days"),
        (
            {
                "eta": datetime.datetime.max.replace(
                    tzinfo=datetime.timezone(-datetime.timedelta(hours=5))
                )
            },
            "is more than 366 days ahead",
        ),
        (
            {
                "eta": datetime.datetime.min.replace(
                    tzinfo=datetime.timezone(datetime.timedelta(hours=5))
                )
            },
            "is out of range",
        ),
        ({"eta": NOW - datetime.timedelta(days=400)}, "is out of range"),
        ({"eta": datetime.datetime(2030, 1, 1)}, "has no time zone"),
        ({"eta": 1767225600}, "eta=1767225600 is not allowed; use an aware datetime"),
        ({"keep_completed": 10**7}, "keep_completed=10000000 is not allowed"),
        ({"timeout": float("nan")}, "timeout=nan is not allowed"),
        ({"priority": 10**5000}, "priority=<an int of"),
    ],
)
def test_options_out_of_range_are_one_clear_error(
    app: Hueyard, redis_conn: redis.Redis, options: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(OptionError) as caught:
        app.enqueue("small", "take", {"n": 1}, **options)
    message = str(caught.value)
    assert fragment in message
    assert "\n" not in message and len(message) < 400
    assert redis_conn.dbsize() == 0


def test_a_past_eta_within_range_still_runs_at_once(app: Hueyard, redis_conn: redis.Redis) -> None:
    app.enqueue("small", "take", {"n": 1}, eta=NOW - datetime.timedelta(days=30))
    assert redis_conn.zcard(app.keys.queue("small").waiting) == 1


# -- hueyard enqueue ---------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, redis_url: str) -> dict[str, str]:
    (tmp_path / "pl_handlers.py").write_text(
        textwrap.dedent("""
        from framework import handler

        @handler("small")
        def take(payload: dict) -> None: ...

        @handler("roomy")
        def roomy_take(payload: dict) -> None: ...
    """)
    )
    (tmp_path / "q.toml").write_text(app_toml(redis_url, CONFIG, prefix="plcli"))
    return {
        "HUEYARD_CONFIG": str(tmp_path / "q.toml"),
        "HUEYARD_HANDLER_PACKAGES": "",
        "HUEYARD_HANDLER_MODULES": "pl_handlers",
        "PYTHONPATH": str(tmp_path),
    }


def enqueue_args(data: str, *options: str) -> list[str]:
    return ["enqueue", "small", "take", "--data", data, *options]


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--delay", "nan"], "--delay nan is not allowed"),
        (["--delay", "inf"], "--delay inf is not allowed"),
        (["--delay=-inf"], "--delay -inf is not allowed"),
        (["--delay", "1e999"], "--delay inf is not allowed"),
        (["--delay", "-1"], "--delay -1.0 is not allowed"),
        (["--delay", "1e12"], "--delay 1000000000000.0 is not allowed"),
        (["--eta", "9999-12-31T23:59:59+00:00"], "more than 366 days ahead"),
        (["--eta", "0001-01-01T00:00:00+05:00"], "is out of range"),
        (["--eta", "2030-01-01T09:00:00"], "has no time zone"),
        (["--eta", "tomorrow"], "--eta 'tomorrow' is not an ISO 8601 time"),
        (["--priority", "0"], "--priority 0 is not allowed"),
        (["--timeout", "nan"], "--timeout nan is not allowed"),
        (["--key", "a\u2028b"], "--key 'a\\u2028b' is not allowed"),
    ],
)
def test_hueyard_enqueue_refuses_a_bad_option_in_one_line_with_status_2(
    project: dict[str, str], redis_conn: redis.Redis, options: list[str], fragment: str
) -> None:
    result = run(enqueue_args('{"n": 1}', *options), project)
    assert result.returncode == 2
    assert result.stderr.startswith("hueyard: error: ")
    assert fragment in result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""
    assert redis_conn.dbsize() == 0


def test_hueyard_enqueue_delay_nan_as_a_real_process(
    project: dict[str, str], redis_conn: redis.Redis
) -> None:
    result = run_process(enqueue_args('{"n": 1}', "--delay", "nan"), project)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "hueyard: error: --delay nan is not allowed; use seconds (or a timedelta) from 0 to "
        "31622400 (366 days)"
    ]
    assert redis_conn.dbsize() == 0


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (json.dumps({"blob": "x" * 3000}), "is 3,011 bytes as JSON, over the limit of 2,048"),
        ("[" * 100_000 + "]" * 100_000, "--data nests deeper than JSON can be read here"),
        ("[" * 500 + "]" * 500, "nests 500 levels deep; the limit is 64 levels"),
        ('{"items": [{"name": "\\ud800"}]}', "payload.items[0].name is not valid UTF-8"),
    ],
    ids=["too big", "nested 100,000 levels", "nested 500 levels", "a lone surrogate"],
)
def test_hueyard_enqueue_refuses_a_bad_payload_in_one_line(
    project: dict[str, str], redis_conn: redis.Redis, data: str, fragment: str
) -> None:
    result = run(enqueue_args(data), project)
    assert result.returncode == 1
    assert fragment in result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert redis_conn.dbsize() == 0


@pytest.mark.parametrize(
    ("text", "times", "stored_bytes"),
    [("x", 2046, 2048), ("x", 2047, 2049), ("\u00e9", 1023, 2048), ("\u00e9", 1024, 2050)],
    ids=["ascii-at-limit", "ascii-over", "two-byte-at-limit", "two-byte-over"],
)
def test_a_result_is_kept_under_the_queues_payload_limit_or_fails_its_job(
    app: Hueyard, text: str, times: int, stored_bytes: int
) -> None:
    # Given a handler of "small" (max_payload_bytes = 2048) whose result is a JSON string
    # of `stored_bytes` bytes (its characters, in UTF-8, and two quotes)
    job_id = app.enqueue("small", "repeat", {"text": text, "times": times})

    # When it runs
    drained = drain("small", app=app)

    # Then a result within the limit completes the job; a larger one fails it, once,
    # saying how large it was and what to do, and is not stored
    info = Jobs(app).get(job_id)
    assert info is not None
    if stored_bytes <= 2048:
        assert drained.completed == 1
        assert app.result("small", job_id) == text * times
    else:
        assert drained.failed == 1
        assert (info.state, info.attempts) == ("failed", 1)
        assert info.error == (
            f"the result is {stored_bytes:,} bytes as JSON, over the limit of 2,048 bytes: "
            "return less, or store the data elsewhere (object storage, a table) and pass a "
            "reference; or raise max_payload_bytes (now 2048, in [queues.small] or "
            "[defaults])"
        )
