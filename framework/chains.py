"""Chains: a job's result starts its follow-up (Huey's pipelines, ``task.s().then()``).

::

    from pipelines.reports import build_report, email_report, tell_ops

    build_report.enqueue({"reportId": "r-1"}, then=email_report)   # the result IS the payload

    chain = (
        build_report.s({"reportId": "r-1"})
        .then(email_report, {"to": "ops@example.com"}, field="report")
        .then(tell_ops, priority=1)
    )
    job_id = chain.enqueue()

How a result reaches its follow-up:

- ``then(handler)``: the result is the follow-up's payload;
- ``then(handler, {"to": ...}, field="report")``: the fixed payload with the result
  under ``"report"``; a fixed payload without ``field=`` is refused (the result
  would be lost).

Either way the payload is checked against the follow-up handler's model when
the job completes, in its worker, before the job is released: a result that
does not make a valid payload fails the job (not retried) with an error that
names the follow-up and the fields. The follow-ups still to come are stored on
the job's record (``then``, JSON, at most :data:`~framework.defaults.MAX_CHAIN`
steps and :data:`~framework.defaults.MAX_CHAIN_BYTES` bytes, checked at enqueue),
and travel from job to job. A follow-up is enqueued once, by the post-release
step of :mod:`framework.fanin`, with the job key ``then:<queue>:<id>`` of the
job it follows; it may take ``priority``, ``delay``, ``attempts``, ``timeout``,
``keep_completed`` and ``keep_failed``. A failed job starts no follow-up.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Unpack, cast

from pydantic import BaseModel

from framework import defaults
from framework.errors import ChainError, HueyardError, OptionError, SerializationError
from framework.huey_names import huey_hint
from framework.options import OPTION_NAMES, EnqueueArgs, EnqueueOptions, shown
from framework.serializer import dumps, loads

if TYPE_CHECKING:
    from framework.handlers import HandlerSpec
    from framework.storage import JobStorage

__all__ = ["STEP_OPTIONS", "Chain", "Step", "encode_then", "follow_up", "steps_of"]

STEP_OPTIONS = ("priority", "delay", "attempts", "timeout", "keep_completed", "keep_failed")
"""The enqueue options a follow-up takes (its key is hueyard's, its time is its origin's end)."""

_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


class Enqueueable(Protocol):
    """What a follow-up names: a handler (:class:`framework.handlers.Handler`)."""

    @property
    def name(self) -> str: ...

    @property
    def queue(self) -> str: ...

    def enqueue(self, payload: Any, *, then: Any = None, **options: Unpack[EnqueueArgs]) -> str: ...


@dataclass(frozen=True)
class Step:
    """One follow-up: its handler (stable name), its fixed payload and the field the
    result goes under (or neither: the result is the payload), its options."""

    handler: str
    payload: Any = None
    field: str | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def queue(self) -> str:
        return self.handler.partition(".")[0]

    @classmethod
    def of(
        cls, handler: Enqueueable, payload: Any, field: str | None, options: Mapping[str, Any]
    ) -> Step:
        """A follow-up as declared, checked (:class:`ChainError` naming what is wrong)."""
        name = _follow_up_handler(handler).name
        if field is None and payload is not None:
            raise ChainError(
                f"follow-up {name}: a fixed payload needs field='...', the field its origin's "
                "result goes under; or give no payload, and the result is the payload"
            )
        if field is not None:
            if not isinstance(field, str) or not _FIELD.fullmatch(field):
                raise ChainError(
                    f"follow-up {name}: field={shown(field)} is not allowed; use a name of "
                    "letters, digits and '_' (at most 128), e.g. field='report'"
                )
            if isinstance(payload, BaseModel):
                payload = payload.model_dump(mode="json")
            payload = {} if payload is None else payload
            if not isinstance(payload, Mapping):
                raise ChainError(
                    f"follow-up {name}: with field={field!r} the fixed payload must be a dict "
                    f"(the result is put under {field!r}), not {type(payload).__name__}"
                )
            if field in payload:
                raise ChainError(
                    f"follow-up {name}: the fixed payload has a key {field!r} already; the "
                    "result goes there: pick another field="
                )
            payload = dict(payload)
        return cls(name, payload, field, _step_options(name, options))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"handler": self.handler}
        if self.field is not None:
            out["payload"], out["field"] = self.payload, self.field
        if self.options:
            out["options"] = dict(self.options)
        return out

    @classmethod
    def from_json(cls, data: Any) -> Step:
        if not isinstance(data, dict) or not isinstance(data.get("handler"), str):
            raise ChainError(f"a follow-up is not one hueyard wrote: {shown(data)}")
        options = data.get("options") or {}
        if not isinstance(options, dict) or set(options) - set(STEP_OPTIONS):
            raise ChainError(f"follow-up {data['handler']}: its options are not hueyard's")
        return cls(data["handler"], data.get("payload"), data.get("field"), options)


def _step_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        huey = huey_hint(unknown[0])
        way = (
            huey
            if huey is not None
            else "a fixed payload goes in the call: .then(handler, {'to': ...}, field='result')"
        )
        raise ChainError(
            f"follow-up {name}: {unknown[0]}= is not an enqueue option ({way}); a follow-up "
            f"takes {', '.join(f'{option}=' for option in STEP_OPTIONS)}"
        )
    refused = sorted(set(options) - set(STEP_OPTIONS))
    if refused:
        raise ChainError(
            f"follow-up {name} can not take {', '.join(refused)}: its job key is hueyard's "
            f"(then:<queue>:<id>) and it starts when its origin completes; it takes "
            f"{', '.join(STEP_OPTIONS)}"
        )
    try:
        EnqueueOptions(**{k: v for k, v in options.items() if v is not None})
    except OptionError as exc:
        raise ChainError(f"follow-up {name}: {exc}") from None
    stored = {k: v for k, v in options.items() if v is not None}
    if isinstance(stored.get("delay"), datetime.timedelta):
        stored["delay"] = stored["delay"].total_seconds()
    return stored


class Chain:
    """A job and the follow-ups its result starts: ``handler.s(payload).then(other)``.

    Immutable: :meth:`then` returns a longer chain. :meth:`enqueue` enqueues the
    first job, with the rest on its record; a chain is also what ``then=`` takes,
    its first step then being a follow-up (``other.s({"to": ...}, field="report")``).
    """

    def __init__(
        self,
        head: Enqueueable,
        payload: Any = None,
        *,
        field: str | None = None,
        options: Mapping[str, Any] | None = None,
        follow: tuple[Step, ...] = (),
    ) -> None:
        self.head = head
        self.payload = payload
        self.field = field
        self.options = dict(options or {})
        self.follow = follow

    def then(
        self,
        handler: Enqueueable | Chain,
        payload: Any = None,
        *,
        field: str | None = None,
        **options: Any,
    ) -> Chain:
        """This chain, then ``handler`` with the result of the step before it."""
        if isinstance(handler, Chain):
            if payload is not None or field is not None or options:
                raise ChainError(
                    "then(chain) takes the chain as it is; give the payload, field= and "
                    "options to its .s(...)"
                )
            added = steps_of(handler)
        else:
            added = (Step.of(handler, payload, field, options),)
        return Chain(
            self.head, self.payload, field=self.field, options=self.options,
            follow=self.follow + added,
        )  # fmt: skip

    def enqueue(self) -> str:
        """Enqueue the first job (its payload must be whole: no ``field=``); return its id."""
        if self.field is not None:
            raise ChainError(
                f"{self.head.name}.s(..., field={self.field!r}) is a follow-up: it has no "
                "result to take before it; enqueue a chain whose first job has a whole payload"
            )
        return self.head.enqueue(
            self.payload, then=self.follow or None, **cast(EnqueueArgs, self.options)
        )

    def error(self, *args: Any, **kwargs: Any) -> typing.NoReturn:
        """Refused: Huey's on-failure step has no counterpart (docs/coming-from-huey.md)."""
        raise HueyardError(
            "chain.error(handler) is Huey's on-failure step; hueyard chains have none: "
            "handle the failure in the job (try/except, then enqueue what should follow), "
            "or watch the failed state (/metrics, the dashboard, hueyard jobs QUEUE --state "
            "failed)"
        )

    def __repr__(self) -> str:
        names = " -> ".join([self.head.name, *(step.handler for step in self.follow)])
        return f"<Chain {names}>"


def _follow_up_handler(value: Any) -> Enqueueable:
    """``value`` if it is a handler (what ``@handler`` returned), else a :class:`ChainError`
    naming the way: a follow-up is a registered handler, never a plain function or a name."""
    if hasattr(value, "name") and hasattr(value, "queue") and hasattr(value, "enqueue"):
        return cast(Enqueueable, value)
    if isinstance(value, str):
        raise ChainError(
            f"follow-up {value!r} is a name; pass the handler itself (the function "
            "@handler decorated, imported from its module), e.g. .then(send_email)"
        )
    raise ChainError(
        f"follow-up {shown(value)} is not a handler; a follow-up runs as a job, so it is "
        "a function decorated with @handler(queue), e.g. .then(send_email)"
    )


def steps_of(then: Any) -> tuple[Step, ...]:
    """The follow-ups ``then=`` names: a handler, a :class:`Chain` (its first job a
    follow-up), or steps already made."""
    if isinstance(then, Chain):
        return (Step.of(then.head, then.payload, then.field, then.options), *then.follow)
    if isinstance(then, tuple) and all(isinstance(step, Step) for step in then):
        return then
    if hasattr(then, "name") and hasattr(then, "queue") and hasattr(then, "enqueue"):
        return (Step.of(then, None, None, {}),)
    raise ChainError(
        f"then={shown(then)} is not a follow-up; pass a handler (then=send_email) or a "
        "chain (then=send_email.s({'to': ...}, field='report'))"
    )


Resolve = Callable[[str, str], "tuple[HandlerSpec, JobStorage]"]
"""The handler spec and the queue's storage of ``(queue, stable name)``; raises
:class:`~framework.errors.QueueError` or :class:`~framework.errors.UnknownHandlerError`."""


def encode_then(then: Any, resolve: Resolve) -> str:
    """The ``then`` field of a record: the follow-ups of ``then=``, checked (each handler
    compiled in the app, at most MAX_CHAIN of them, at most MAX_CHAIN_BYTES as JSON)."""
    steps = steps_of(then)
    if len(steps) > defaults.MAX_CHAIN:
        raise ChainError(
            f"a chain of {len(steps)} follow-ups is too long; at most {defaults.MAX_CHAIN} "
            "(MAX_CHAIN): split the work, or let the last job enqueue the rest"
        )
    for step in steps:
        resolve(step.queue, step.handler)
    try:
        text = dumps([step.to_json() for step in steps]).decode()
    except SerializationError as exc:
        raise ChainError(f"a follow-up's fixed payload is not JSON: {exc}") from None
    size = len(text.encode())
    if size > defaults.MAX_CHAIN_BYTES:
        raise ChainError(
            f"the follow-ups take {size:,} bytes as JSON, over the limit of "
            f"{defaults.MAX_CHAIN_BYTES:,} (MAX_CHAIN_BYTES): pass references in their fixed "
            "payloads, not data"
        )
    return text


def decode_then(raw: bytes | str) -> tuple[Step, ...]:
    """The follow-ups a record's ``then`` holds; :class:`ChainError` if it is not hueyard's."""
    try:
        data = loads(raw, max_depth=defaults.MAX_PAYLOAD_DEPTH + 4)
    except SerializationError as exc:
        raise ChainError(f"its follow-ups (then) are not JSON hueyard wrote: {exc}") from None
    if not isinstance(data, list) or not data:
        raise ChainError(f"its follow-ups (then) are not a list of steps: {shown(data)}")
    return tuple(Step.from_json(item) for item in data)


def follow_up(then: bytes | str, result: Any, resolve: Resolve) -> str:
    """The follow-up a completed job's ``result`` starts, ready to enqueue (JSON): the next
    step's queue, handler, payload (checked against its model and its queue's limits, as
    at enqueue), options, and the steps after it.

    Raises :class:`ChainError` naming the follow-up when the result does not make a
    valid payload: the job then fails, not retried (the same result would fail again).
    """
    first, *rest = decode_then(then)
    value = result if first.field is None else {**first.payload, first.field: result}
    try:
        spec, storage = resolve(first.queue, first.handler)
        payload = spec.payload_json(value, max_bytes=storage.policy.max_payload_bytes)
    except HueyardError as exc:
        how = "the result" if first.field is None else f"the result under {first.field!r}"
        raise ChainError(
            f"its result can not start its follow-up {first.handler} ({how} as its payload): {exc}"
        ) from None
    ready = {
        "queue": spec.queue,
        "handler": spec.name,
        "payload": payload.decode(),
        "options": dict(first.options),
        "then": [step.to_json() for step in rest],
    }
    return json.dumps(ready, separators=(",", ":"))
