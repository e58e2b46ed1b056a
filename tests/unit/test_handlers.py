"""@handler: registration, signatures, payload models, discovery."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from framework.errors import (
    ChainError,
    HandlerError,
    HueyardError,
    OptionError,
    PayloadError,
    UnknownHandlerError,
)
from framework.handlers import REGISTRY, HandlerRegistry, discover, handler, handler_modules
from framework.options import EnqueueOptions


class Outbound(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: str
    content: str
    priority_hint: int = 0


@pytest.fixture
def registry() -> HandlerRegistry:
    return HandlerRegistry()


def test_a_handler_gets_the_stable_name_queue_dot_function(registry: HandlerRegistry) -> None:
    @handler("messages", registry=registry)
    def send_message(payload: Outbound) -> dict[str, bool]:
        return {"sent": True}

    assert send_message.name == "messages.send_message"
    assert registry.get("messages.send_message").func is send_message.__wrapped__
    assert registry.get("send_message", queue="messages").queue == "messages"


def test_name_overrides_the_function_part(registry: HandlerRegistry) -> None:
    @handler("messages", name="send", registry=registry)
    def send_message_v2(payload: dict[str, str]) -> None:
        return None

    assert send_message_v2.name == "messages.send"


@pytest.mark.parametrize("name", ["send\n", "send me", "s\u00e9nd", "send.v2"])
def test_a_handler_name_that_is_not_letters_digits_and_underscores_is_refused(
    registry: HandlerRegistry, name: str
) -> None:
    with pytest.raises(HandlerError, match="is not allowed; use letters, digits and '_'"):

        @handler("messages", name=name, registry=registry)
        def send(payload: dict[str, str]) -> None:
            return None


@pytest.mark.parametrize(
    ("method", "way"),
    [
        ("schedule", "enqueue(payload, delay=seconds)"),
        ("call_local", "handler(payload), to run it here"),
        ("map", "enqueue_many(payloads)"),
        ("revoke", "hueyard cancel QUEUE JOB_ID"),
        ("restore", "hueyard retry QUEUE JOB_ID"),
        ("unregister", "remove its @handler"),
    ],
)
def test_hueys_task_wrapper_methods_name_the_hueyard_way_on_a_handler(
    registry: HandlerRegistry, method: str, way: str
) -> None:
    @handler("messages", registry=registry)
    def send(payload: dict[str, str]) -> None:
        return None

    with pytest.raises(HueyardError) as refused:
        getattr(send, method)({"to": "+1"}, delay=5)
    assert str(refused.value).startswith(f"send.{method}() is Huey's task wrapper's")
    assert way in str(refused.value)
    assert send.is_revoked() is False  # nothing is revoked on hueyard


def test_the_decorated_function_still_runs_locally(registry: HandlerRegistry) -> None:
    @handler("messages", registry=registry)
    def double(payload: int) -> int:
        return payload * 2

    assert double(21) == 42


def test_a_direct_call_checks_the_payload_as_an_enqueued_job_would(
    registry: HandlerRegistry,
) -> None:
    # A direct call runs here and now (nothing is enqueued: there is no app to reach),
    # and the function receives what a worker would give it
    seen: list[object] = []

    @handler("messages", registry=registry)
    def send(payload: Outbound) -> str:
        seen.append(payload)
        return payload.to

    assert send({"to": "+1", "content": "hi"}) == "+1"
    assert seen == [Outbound(to="+1", content="hi")]

    # and a payload an enqueue would refuse is refused the same way, before the function runs
    with pytest.raises(PayloadError, match="content: Field required"):
        send({"to": "+1"})
    assert len(seen) == 1

    @handler("messages", registry=registry)
    def untyped(payload: object) -> None:
        seen.append(payload)

    deep: list[object] = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(PayloadError, match="nests"):
        untyped(deep)
    with pytest.raises(PayloadError, match="not JSON"):
        untyped({"when": object()})
    assert len(seen) == 1


def test_a_duplicate_name_names_both_functions(registry: HandlerRegistry) -> None:
    def first(payload: object) -> None: ...

    def second(payload: object) -> None: ...

    handler("messages", name="send", registry=registry)(first)
    with pytest.raises(HandlerError) as caught:
        handler("messages", name="send", registry=registry)(second)
    message = str(caught.value)
    assert "duplicate handler name 'messages.send'" in message
    assert "second" in message
    assert "first" in message


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("async def f(payload): ...", "is async"),
        ("async def f(payload):\n    yield payload", "is async"),
        ("def f(payload):\n    yield payload", "is a generator function .* return a list"),
        ("def f(): ...", "exactly one argument"),
        ("def f(payload, other): ...", "exactly one argument"),
        ("def f(*, payload): ...", "exactly one argument"),
    ],
)
def test_bad_signatures_are_refused_at_decoration(
    registry: HandlerRegistry, source: str, fragment: str
) -> None:
    namespace: dict[str, object] = {}
    exec(source, namespace)
    with pytest.raises(HandlerError, match=fragment):
        handler("messages", registry=registry)(namespace["f"])  # type: ignore[arg-type]


def test_optional_extra_parameters_are_allowed(registry: HandlerRegistry) -> None:
    @handler("messages", registry=registry)
    def f(payload: object, retries: int = 3) -> None: ...

    assert f.name == "messages.f"


def test_an_unknown_handler_lists_the_known_ones(registry: HandlerRegistry) -> None:
    @handler("messages", registry=registry)
    def send(payload: object) -> None: ...

    with pytest.raises(UnknownHandlerError, match=r"no handler named 'sned'.*messages.send"):
        registry.get("sned", queue="messages")


def test_a_model_payload_is_validated_and_dumped_to_json(registry: HandlerRegistry) -> None:
    @handler("messages", registry=registry)
    def send(payload: Outbound) -> None: ...

    spec = send.spec
    assert spec.payload_model is Outbound
    # the one encoding of the payload: JSON (UTF-8 bytes), as the job record stores it
    assert spec.payload_json({"to": "+1", "content": "hi"}) == (
        b'{"to":"+1","content":"hi","priority_hint":0}'
    )
    assert json.loads(spec.payload_json(Outbound(to="+1", content="x")))["content"] == "x"


@pytest.mark.parametrize(
    ("payload", "fragments"),
    [
        ({"to": "+1"}, ["content: Field required"]),
        ({"to": "+1", "content": "x", "cc": "y"}, ["cc: Extra inputs are not permitted"]),
        ("just a string", ["payload: Input should be a valid dictionary"]),
        ({"to": 5, "content": []}, ["to:", "content:"]),
    ],
)
def test_a_bad_payload_names_the_handler_model_and_fields(
    registry: HandlerRegistry, payload: object, fragments: list[str]
) -> None:
    @handler("messages", registry=registry)
    def send(payload: Outbound) -> None: ...

    with pytest.raises(PayloadError) as caught:
        send.spec.payload_json(payload)
    message = str(caught.value)
    assert "payload for messages.send does not validate against Outbound" in message
    assert "nothing was enqueued" in message
    for fragment in fragments:
        assert fragment in message


def test_an_untyped_payload_must_still_be_json(registry: HandlerRegistry) -> None:
    @handler("messages", registry=registry)
    def send(payload: dict[str, object]) -> None: ...

    assert send.spec.payload_model is None
    with pytest.raises(PayloadError, match=r"messages.send is not JSON"):
        send.spec.payload_json({"when": {1, 2}})


def test_call_validates_the_stored_payload_into_the_model(registry: HandlerRegistry) -> None:
    seen: list[object] = []

    @handler("messages", registry=registry)
    def send(payload: Outbound) -> Outbound:
        seen.append(payload)
        return payload

    result = send.spec.call({"to": "+1", "content": "hi", "priority_hint": 0})
    assert isinstance(seen[0], Outbound)
    assert result == {"to": "+1", "content": "hi", "priority_hint": 0}  # models come back as JSON


# -- discovery ---------------------------------------------------------------------------------


def _write_module(tmp_path: Path, name: str, body: str) -> None:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))


def test_discovery_imports_the_listed_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_module(
        tmp_path,
        "disc_handlers_ok",
        """
        from framework import handler

        @handler("alpha")
        def ping(payload: dict) -> str:
            return "pong"
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        modules = discover(
            {"HUEYARD_HANDLER_PACKAGES": "", "HUEYARD_HANDLER_MODULES": "disc_handlers_ok"}
        )
        assert modules == ["disc_handlers_ok"]
        assert "alpha.ping" in REGISTRY
    finally:
        REGISTRY.unregister("alpha.ping")
        sys.modules.pop("disc_handlers_ok", None)


def test_discovery_walks_a_package_but_skips_private_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "disc_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "one.py").write_text("")
    (package / "_private.py").write_text("raise RuntimeError('must not be imported')")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert handler_modules({"HUEYARD_HANDLER_PACKAGES": "disc_pkg"}) == [
            "disc_pkg",
            "disc_pkg.one",
        ]
    finally:
        for name in ("disc_pkg", "disc_pkg.one"):
            sys.modules.pop(name, None)


def test_a_module_that_fails_to_import_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_module(tmp_path, "disc_broken", "import does_not_exist_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(HandlerError, match="cannot import handler module 'disc_broken'"):
        discover({"HUEYARD_HANDLER_PACKAGES": "", "HUEYARD_HANDLER_MODULES": "disc_broken"})


# -- Huey habits on a handler: refused naming the hueyard way, never a bare TypeError -----


@pytest.mark.parametrize(
    ("options", "way"),
    [
        ({"retries": 2}, r"retries=N is attempts = N \+ 1"),
        ({"retry_delay": 5}, r'backoff = \{ type = "fixed", delay = S \}'),
        ({"priority": 10}, r"an option of each enqueue: handler.enqueue\(payload, priority=...\)"),
        ({"context": True}, r"framework.current_job\(\)"),
        ({"queue_name": "x"}, r"a queue's policy lives in its table"),
    ],
)
def test_hueys_task_options_on_handler_are_refused_naming_where_they_live(
    registry: HandlerRegistry, options: dict[str, object], way: str
) -> None:
    with pytest.raises(HandlerError, match=rf"@handler\('messages', \w+=...\): .*{way}"):
        handler("messages", registry=registry, **options)


def test_a_parameter_huey_would_fill_with_context_true_is_refused(
    registry: HandlerRegistry,
) -> None:
    # def f(payload, task=None) was taken, and task was None at every run
    with pytest.raises(HandlerError, match=r"takes a parameter 'task'.*framework.current_job\(\)"):

        @handler("messages", registry=registry)
        def send(payload: object, task: object = None) -> None: ...


def test_hueys_positional_arguments_and_task_attributes_are_refused_naming_the_way(
    registry: HandlerRegistry,
) -> None:
    @handler("messages", registry=registry)
    def send(payload: dict[str, str]) -> dict[str, str]:
        return payload

    assert send({"to": "+1"}) == {"to": "+1"}
    one_payload = r"takes one payload, not Huey's positional arguments: pass them as one dict"
    with pytest.raises(HandlerError, match=rf"send\(\.\.\.\) {one_payload}"):
        send("+1", "Hi")  # type: ignore[call-arg]
    with pytest.raises(HandlerError, match=rf"send\.s\(\.\.\.\) {one_payload}"):
        send.s("+1", "Hi")
    with pytest.raises(HueyardError, match=r"queue's attempts .*queue\('messages'\).policy"):
        send.retries  # noqa: B018
    with pytest.raises(HueyardError, match=r"queue's backoff"):
        send.retry_delay  # noqa: B018


def test_a_chain_refuses_hueys_error_step_and_a_follow_up_that_is_no_handler(
    registry: HandlerRegistry,
) -> None:
    @handler("messages", registry=registry)
    def send(payload: dict[str, str]) -> None: ...

    chain = send.s({"to": "+1"})
    with pytest.raises(HueyardError, match=r"chain.error\(handler\) is Huey's on-failure step"):
        chain.error(send)
    with pytest.raises(ChainError, match=r"follow-up 'messages.send' is a name; pass the handler"):
        chain.then("messages.send")  # type: ignore[arg-type]
    with pytest.raises(ChainError, match=r"is not a handler; a follow-up runs as a job"):
        chain.then(lambda result: result)  # type: ignore[arg-type]
    # Huey's kwargs-to-the-next-task habit names the payload, not the job key
    with pytest.raises(ChainError, match=r"to= is not an enqueue option \(a fixed payload goes"):
        chain.then(send, to="x")
    with pytest.raises(ChainError, match=r"expires= is not an enqueue option \(a job does not"):
        chain.then(send, expires=60)
    # an enqueue option a follow-up can not take still says why
    with pytest.raises(ChainError, match=r"can not take key: its job key is hueyard's"):
        chain.then(send, key="k")


@pytest.mark.parametrize(
    ("option", "way"),
    [
        ("retries", r"Huey's retries=N is attempts = N \+ 1"),
        ("retry_delay", r"Huey's retry_delay=S is the queue's backoff = \{ type = \"fixed\""),
        ("expires", r"a job does not expire"),
        ("atempts", r"did you mean attempts=\?"),
    ],
)
def test_an_enqueue_option_of_huey_names_the_hueyard_way_and_a_typo_the_option_meant(
    option: str, way: str
) -> None:
    with pytest.raises(OptionError, match=rf"{option}= is not an enqueue option \({way}"):
        EnqueueOptions.of({option: 1})


class Untyped(BaseModel):
    rows: list[dict[str, object]]
    score: float = 0.0


@pytest.mark.parametrize(
    "payload",
    [
        {"rows": [{"x": float("nan")}]},
        Untyped.model_construct(rows=[{"x": float("nan")}], score=0.0),
    ],
)
def test_nan_in_an_untyped_field_of_a_model_is_refused_not_stored_as_null(
    registry: HandlerRegistry, payload: object
) -> None:
    # pydantic's JSON dump writes a NaN it has no type for as null: the job would have
    # run on null, silently
    @handler("messages", registry=registry)
    def export(payload: Untyped) -> None: ...

    with pytest.raises(PayloadError, match=r"payload.rows\[0\].x is nan, a number JSON can not"):
        export.spec.payload_json(payload)
    # a typed float field that takes infinity is refused the same way; a finite payload passes
    with pytest.raises(PayloadError, match=r"score is inf"):
        export.spec.payload_json({"rows": [], "score": float("inf")})
    assert export.spec.payload_json({"rows": [{"x": 1.5}]}) == b'{"rows":[{"x":1.5}],"score":0.0}'


def test_a_bare_retry_task_on_the_last_attempt_says_what_it_was_not_none() -> None:
    import datetime

    from huey.exceptions import RetryTask

    from framework.policy import JobPolicy, decide
    from framework.settings import Backoff

    policy = JobPolicy(attempts=2, priority=5, timeout=None, backoff=Backoff())
    now = datetime.datetime.now(datetime.UTC)
    assert decide(policy, 2, RetryTask(), now).error == (
        "RetryTask: the handler asked to be run again"
    )
    assert decide(policy, 2, RetryTask("rate limited"), now).error == "RetryTask: rate limited"
