"""The ``@handler`` decorator, the registry it fills, and handler discovery.

A handler is a plain function of one argument, the payload::

    from pydantic import BaseModel
    from framework import handler

    class OutboundMessage(BaseModel):
        to: str
        content: str

    @handler("messages")
    def send_message(payload: OutboundMessage) -> dict:
        ...

    job_id = send_message.enqueue({"to": "+1234567890", "content": "Hello"}, priority=1)

It is registered under the stable name ``<queue>.<function name>`` (or
``<queue>.<name>`` with ``name=``), so moving its module never strands queued
jobs. When the payload parameter is annotated with a pydantic model, payloads
are validated at enqueue (nothing invalid is stored) and the handler receives
a model instance. Discovery imports every module of the handler packages
(``pipelines`` unless ``HUEYARD_HANDLER_PACKAGES`` says otherwise) and every
module named in ``HUEYARD_HANDLER_MODULES``.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import pkgutil
import re
import threading
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar, Unpack

from pydantic import BaseModel, ValidationError

from framework import defaults
from framework.chains import Chain
from framework.errors import (
    ChainError,
    HandlerError,
    HueyardError,
    PayloadError,
    SerializationError,
    StoredPayloadError,
    UnknownHandlerError,
)
from framework.huey_names import huey_hint
from framework.masking import validation_summary
from framework.options import OPTION_NAMES, EnqueueArgs, EnqueuedIds, EnqueueManyArgs
from framework.payloads import check_depth, check_finite, check_size, check_text
from framework.serializer import dumps, loads

__all__ = [
    "REGISTRY",
    "Handler",
    "HandlerRegistry",
    "HandlerSpec",
    "Producer",
    "discover",
    "handler",
]

R = TypeVar("R")
C = TypeVar("C", bound=Callable[..., Any])
_SHORT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


@dataclass
class HandlerSpec:
    """Everything the compile step needs to know about one handler."""

    queue: str
    short_name: str
    func: Callable[..., Any]
    module: str
    qualname: str
    _model: type[BaseModel] | None = field(default=None, repr=False)
    _model_resolved: bool = field(default=False, repr=False)
    checks: list[Callable[[Any], Any]] = field(default_factory=list, repr=False)
    """Start-up checks (:mod:`framework.checks`) run when an app is built with this handler."""

    @property
    def name(self) -> str:
        """The stable task name, ``<queue>.<short name>``."""
        return f"{self.queue}.{self.short_name}"

    @property
    def location(self) -> str:
        return f"{self.module}.{self.qualname}"

    @property
    def payload_model(self) -> type[BaseModel] | None:
        """The pydantic model of the payload parameter, if it is annotated with one."""
        if not self._model_resolved:
            self._model = _payload_model(self.func, self.location)
            self._model_resolved = True
        return self._model

    def payload_json(self, payload: Any, *, max_bytes: int = defaults.MAX_PAYLOAD_BYTES) -> bytes:
        """Validate ``payload`` (against the model, if any) and return it as JSON (UTF-8).

        The one encoding of a payload: what the job record stores, and the one
        place its limits are checked (:mod:`framework.payloads`): at most
        ``max_bytes`` bytes (the queue's ``max_payload_bytes``), at most
        :data:`~framework.defaults.MAX_PAYLOAD_DEPTH` levels deep, text that UTF-8
        can hold. Raises :class:`PayloadError` naming the handler and the problem.
        """
        model = self.payload_model
        if model is not None or isinstance(payload, BaseModel):
            check_depth(payload, self.name)  # before pydantic walks it
            given = payload
            try:
                payload = (
                    self._validated(model, payload)
                    if model is not None
                    else payload.model_dump(mode="json")
                )
            except (RecursionError, ValueError) as exc:  # a model's dump that can not end
                raise PayloadError(
                    f"payload for {self.name} can not be dumped as JSON: "
                    f"{type(exc).__name__}: {str(exc)[:200]}; nothing was enqueued"
                ) from None
            # the JSON dump wrote a NaN of an untyped (Any) field as null: refuse it
            check_finite(given.model_dump() if isinstance(given, BaseModel) else given, self.name)
        check_depth(payload, self.name, stored=True)
        try:
            encoded = dumps(payload)
        except SerializationError as exc:
            check_text(payload, self.name)  # names the field of a lone surrogate
            raise PayloadError(f"payload for {self.name} is not JSON: {exc}") from None
        check_size(encoded, self.name, limit=max_bytes, queue=self.queue)
        return encoded

    def _validated(self, model: type[BaseModel], payload: Any) -> Any:
        try:
            if isinstance(payload, model):
                instance = model.model_validate(payload.model_dump())
            else:
                instance = model.model_validate(payload)
        except ValidationError as exc:
            raise PayloadError(
                f"payload for {self.name} does not validate against "
                f"{model.__name__}: {validation_summary(exc)}; nothing was enqueued"
            ) from None
        return instance.model_dump(mode="json")

    def argument(self, payload: Any) -> Any:
        """What the function receives for a stored (JSON) payload: an instance of its model,
        or the payload itself. Raises :class:`StoredPayloadError` when it does not validate."""
        model = self.payload_model
        if model is None:
            return payload
        try:
            return model.model_validate(payload)
        except ValidationError as exc:
            raise StoredPayloadError(
                f"payload does not validate against {model.__name__}: "
                f"{validation_summary(exc)} (stored payload; not retried: enqueue the job "
                "again with a valid one)"
            ) from None

    def call(self, payload: Any) -> Any:
        """Run the handler on a stored payload; return a JSON-ready result.

        A payload that no longer validates against the model raises
        :class:`StoredPayloadError` (a ``CancelExecution(retry=False)``) naming the
        fields and their problems, never their values: it will never succeed.
        """
        result = self.func(self.argument(payload))
        if isinstance(result, BaseModel):
            return result.model_dump(mode="json")
        return result


class Producer(Protocol):
    """What a handler enqueues through: the app compiled from its registry."""

    def enqueue(
        self,
        queue: str,
        handler: str,
        payload: Any,
        *,
        then: Any = None,
        **options: Unpack[EnqueueArgs],
    ) -> str: ...

    def enqueue_many(
        self, queue: str, handler: str, payloads: Iterable[Any], **options: Unpack[EnqueueManyArgs]
    ) -> EnqueuedIds: ...


def _huey_way(name: str, way: str) -> Callable[..., typing.NoReturn]:
    """A method of Huey's task wrapper, refused on a :class:`Handler` naming the hueyard way."""

    def refused(self: Handler[Any], *args: Any, **kwargs: Any) -> typing.NoReturn:
        raise HueyardError(
            f"{self.spec.short_name}.{name}() is Huey's task wrapper's, not a handler's: {way} "
            "(docs/coming-from-huey.md)"
        )

    refused.__name__ = refused.__qualname__ = name
    return refused


class Handler(Generic[R]):
    """What ``@handler`` returns: still callable like the function, plus ``.enqueue``.

    The methods of Huey's task wrapper that a handler has no counterpart of, under
    their Huey names, raise :class:`HueyardError` naming the hueyard way, so code ported
    from Huey does not fail on an ``AttributeError``; ``is_revoked()`` is always False.
    """

    schedule = _huey_way(
        "schedule", "enqueue(payload, delay=seconds) or enqueue(payload, eta=aware_datetime)"
    )
    call_local = _huey_way("call_local", "call it, handler(payload), to run it here")
    map = _huey_way("map", "enqueue_many(payloads) enqueues one job per payload")
    revoke = _huey_way(
        "revoke",
        "cancel jobs one by one (hueyard cancel QUEUE JOB_ID, Jobs(app).cancel(queue, job_id)),"
        " or hold a whole queue with hueyard pause QUEUE",
    )
    restore = _huey_way(
        "restore", "a cancelled job is a failed one: hueyard retry QUEUE JOB_ID runs it again"
    )
    unregister = _huey_way(
        "unregister", "remove its @handler; a job left for a handler that is gone fails naming it"
    )

    @property
    def retries(self) -> typing.NoReturn:
        """Refused: Huey's ``task.retries`` is the queue's ``attempts`` - 1."""
        raise HueyardError(self._policy_way("retries", "attempts (runs in all, the first too)"))

    @property
    def retry_delay(self) -> typing.NoReturn:
        """Refused: Huey's ``task.retry_delay`` is the queue's ``backoff``."""
        raise HueyardError(self._policy_way("retry_delay", "backoff"))

    def _policy_way(self, name: str, field: str) -> str:
        return (
            f"{self.spec.short_name}.{name} is Huey's task wrapper's; on hueyard it is the "
            f"queue's {field}: framework.get_app().queue({self.spec.queue!r}).policy, set in "
            f"[queues.{self.spec.queue}] of config/queues.toml (docs/coming-from-huey.md)"
        )

    def is_revoked(self, *args: Any, **kwargs: Any) -> bool:
        """Huey's ``task.is_revoked()``: always False, nothing is revoked on hueyard."""
        return False

    def __init__(self, spec: HandlerSpec, registry: HandlerRegistry) -> None:
        self.spec = spec
        self.registry = registry
        self.__wrapped__ = spec.func
        self.__name__ = spec.func.__name__
        self.__qualname__ = spec.qualname
        self.__doc__ = spec.func.__doc__
        self.__module__ = spec.module

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def queue(self) -> str:
        return self.spec.queue

    def startup_check(self, check: C) -> C:
        """Attach ``check(settings)``, run by every app built with this handler, so a
        handler's own config (a ``[providers.<name>]`` table, flow files) fails at
        start-up. It raises :class:`ConfigError` naming the file or table, the field and
        the fix, and may return a :class:`framework.checks.CheckReport` for ``hueyard
        check`` (:mod:`framework.checks`)::

            @notify.startup_check
            def _check(settings: Settings) -> None: ...
        """
        self.spec.checks.append(check)
        return check

    def __call__(self, payload: Any, *args: Any, **kwargs: Any) -> R:
        """Run the function here and now, in this process: **nothing is enqueued**.

        Unlike a Huey task, whose call enqueues it, and like a dramatiq actor's
        direct call: a handler stays a plain function for tests and scripts, and
        enqueueing is always spelled ``.enqueue``. The payload goes through
        exactly what an enqueued job's goes through (validation against the
        model, the payload limits, the JSON encoding a worker would decode), so
        the function receives what a worker would give it, and a payload a job
        would refuse raises the same :class:`PayloadError`. Returns what the
        function returns.
        """
        if args or kwargs:
            raise HandlerError(self._one_payload(f"{self.spec.short_name}(...)"))
        stored = loads(self.spec.payload_json(payload))
        return typing.cast(R, self.spec.func(self.spec.argument(stored)))

    def enqueue(self, payload: Any, *, then: Any = None, **options: Unpack[EnqueueArgs]) -> str:
        """Enqueue one job on this handler's queue and return its id.

        Options (:class:`framework.options.EnqueueOptions`): ``priority`` 1
        (first) to 10 (last), ``delay`` seconds (or a timedelta) or an ``eta``
        datetime, ``attempts``, ``keep_completed``, ``keep_failed``; the queue's
        config for any left out. ``then``: the follow-up its result starts when it
        completes, a handler or a chain (:mod:`framework.chains`). Raises
        :class:`PayloadError` for a bad payload, :class:`OptionError` for a bad
        option, :class:`ChainError` for a bad ``then``; nothing is stored then.
        """
        return self.registry.producer().enqueue(
            self.spec.queue, self.spec.name, payload, then=then, **options
        )

    def s(self, payload: Any = None, *args: Any, field: str | None = None, **options: Any) -> Chain:
        """A chain that starts with this handler (Huey's ``task.s()``)::

            build_report.s({"reportId": "r-1"}).then(email_report, {"to": ...}, field="report")

        ``.enqueue()`` enqueues it. As a follow-up (``then=`` or ``.then(...)``),
        ``field=`` names where the result of the step before goes in ``payload``
        (none: the result is the payload). See :mod:`framework.chains`.
        """
        if args:
            raise HandlerError(self._one_payload(f"{self.spec.short_name}.s(...)"))
        return Chain(self, payload, field=field, options=options)

    def _one_payload(self, call: str) -> str:
        return (
            f"{call} takes one payload, not Huey's positional arguments: pass them as one "
            f"dict (or the handler's payload model), e.g. {self.spec.short_name}"
            "({'to': ..., 'content': ...})"
        )

    def then(self, handler: Any, payload: Any = None, *, field: str | None = None,
             **options: Any) -> Chain:  # fmt: skip
        """Refused: a handler has no payload yet; start the chain with ``.s(payload)``."""
        raise ChainError(
            f"{self.spec.name}.then(...) has no payload to start with; write "
            f"{self.spec.short_name}.s(payload).then(...), then .enqueue()"
        )

    def enqueue_many(
        self, payloads: Iterable[Any], **options: Unpack[EnqueueManyArgs]
    ) -> EnqueuedIds:
        """Enqueue one job per payload, with the same options; return their ids in order
        (:class:`~framework.options.EnqueuedIds`: ``.existing`` holds the positions
        whose key was held, so nothing new was stored for them).

        Every payload is validated first: nothing is stored when one is bad.
        """
        return self.registry.producer().enqueue_many(
            self.spec.queue, self.spec.name, payloads, **options
        )

    def __repr__(self) -> str:
        return f"<Handler {self.spec.name} ({self.spec.location})>"


class HandlerRegistry:
    """Handlers by stable name. Thread-safe; duplicates are refused."""

    def __init__(self) -> None:
        self._specs: dict[str, HandlerSpec] = {}
        self._lock = threading.Lock()
        self._app: Producer | None = None
        self._factory: Callable[[], Producer] | None = None

    # -- the app its handlers enqueue through ------------------------------------------------

    def bind(self, app: Producer) -> None:
        """Make ``app`` (compiled from this registry) the target of ``handler.enqueue``."""
        self._app = app

    @contextlib.contextmanager
    def bound(self, app: Producer) -> Iterator[None]:
        """``app`` the target of ``handler.enqueue`` for the block, the one before after."""
        before, self._app = self._app, app
        try:
            yield
        finally:
            self._app = before

    def unbind(self, app: Producer) -> None:
        """Forget ``app`` (closed) if it is the bound one."""
        if self._app is app:
            self._app = None

    def use_factory(self, factory: Callable[[], Producer]) -> None:
        """Build the app with ``factory`` when ``handler.enqueue`` finds none bound."""
        self._factory = factory

    def producer(self) -> Producer:
        """The app this registry's handlers enqueue through."""
        app = self._app
        if app is not None:
            return app
        if self._factory is None:
            raise HandlerError(
                "no app is built from this handler registry; build one with "
                "Hueyard(settings, registry) before calling handler.enqueue(...)"
            )
        return self._factory()

    def register(self, spec: HandlerSpec) -> None:
        with self._lock:
            existing = self._specs.get(spec.name)
            if existing is not None and existing.location != spec.location:
                raise HandlerError(
                    f"duplicate handler name {spec.name!r}: {spec.location} and "
                    f"{existing.location} both claim it; rename one function or pass "
                    "name='...' to @handler"
                )
            self._specs[spec.name] = spec

    def unregister(self, name: str) -> None:
        with self._lock:
            self._specs.pop(name, None)

    def get(self, name: str, queue: str | None = None) -> HandlerSpec:
        """Find by stable name, or by short name within ``queue``."""
        spec = self._specs.get(name)
        if spec is None and queue is not None:
            spec = self._specs.get(f"{queue}.{name}")
        if spec is None or (queue is not None and spec.queue != queue):
            where = f" on queue {queue!r}" if queue else ""
            known = ", ".join(sorted(self._specs)) or "none"
            raise UnknownHandlerError(f"no handler named {name!r}{where}; known handlers: {known}")
        return spec

    def for_queue(self, queue: str) -> list[HandlerSpec]:
        return [spec for spec in self._specs.values() if spec.queue == queue]

    def __iter__(self) -> Iterator[HandlerSpec]:
        return iter(list(self._specs.values()))

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs


REGISTRY = HandlerRegistry()
"""The process-wide registry that ``@handler`` fills."""


def handler(
    queue: str,
    *,
    name: str | None = None,
    registry: HandlerRegistry | None = None,
    **huey_options: Any,
) -> Callable[[Callable[..., R]], Handler[R]]:
    """Register a function as the handler of jobs on ``queue``.

    The queue must be declared in ``config/queues.toml``; that is checked when
    the app is compiled, so an unknown queue stops start-up. Huey's task options
    (``retries=``, ``priority=``, ...) are refused, naming where each one lives.
    """
    if not isinstance(queue, str) or not queue:
        raise HandlerError(f"@handler needs a queue name, got {queue!r}")
    if huey_options:
        option = next(iter(huey_options))
        where = huey_hint(option) or (
            f"an option of each enqueue: handler.enqueue(payload, {option}=...)"
            if option in OPTION_NAMES
            else "a queue's policy lives in its table of config/queues.toml"
        )
        raise HandlerError(
            f"@handler({queue!r}, {option}=...): @handler takes the queue, name= and "
            f"registry= only; {where}. The queue's attempts, backoff, timeout and priority "
            f"are in [queues.{queue}] of config/queues.toml (docs/configuration.md)"
        )

    def decorate(func: Callable[..., R]) -> Handler[R]:
        location = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', func)}"
        if isinstance(func, Handler):
            raise HandlerError(f"{location} is decorated with @handler twice")
        if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
            raise HandlerError(
                f"{location} is async; Huey runs plain functions. Wrap the coroutine: "
                "def f(payload): return asyncio.run(coro(payload))"
            )
        if inspect.isgeneratorfunction(func):
            # Calling it would run none of its body: the job would end with a generator.
            raise HandlerError(
                f"{location} is a generator function (it yields); a handler returns its "
                "result: return a list (return list(items)), or report progress with "
                "current_job().progress(...) as it goes"
            )
        _check_signature(func, location)
        short = name or func.__name__
        if not _SHORT_NAME.fullmatch(short):
            raise HandlerError(
                f"handler name {short!r} of {location} is not allowed; use letters, digits and '_'"
            )
        spec = HandlerSpec(
            queue=queue,
            short_name=short,
            func=func,
            module=func.__module__,
            qualname=func.__qualname__,
        )
        target = registry if registry is not None else REGISTRY
        target.register(spec)
        return Handler(spec, target)

    return decorate


def _check_signature(func: Callable[..., Any], location: str) -> None:
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return
    required = [
        p
        for p in signature.parameters.values()
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    positional = [
        p
        for p in signature.parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if "task" in signature.parameters and len(signature.parameters) > 1:
        raise HandlerError(
            f"{location} takes a parameter 'task', as a Huey task with context=True does; "
            "hueyard passes only the payload, so it would never be given: read the job with "
            "framework.current_job() inside the handler"
        )
    if len(required) > 1 or (
        not positional
        and not any(
            p.kind is inspect.Parameter.VAR_POSITIONAL for p in signature.parameters.values()
        )
    ):
        raise HandlerError(
            f"{location} must take exactly one argument, the payload (its signature is {signature})"
        )


def _payload_model(func: Callable[..., Any], location: str) -> type[BaseModel] | None:
    try:
        parameters = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return None
    if not parameters:
        return None
    try:
        hints = typing.get_type_hints(func)
    except Exception as exc:
        raise HandlerError(
            f"cannot resolve the type hints of {location}: {exc}; import the payload "
            "model at module level"
        ) from None
    annotation = hints.get(parameters[0].name)
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return annotation
    return None


def handler_modules(env: Mapping[str, str] | None = None) -> list[str]:
    """The modules discovery imports, in order, from the environment."""
    env = os.environ if env is None else env
    packages = [p.strip() for p in env.get("HUEYARD_HANDLER_PACKAGES", "pipelines").split(",")]
    modules: list[str] = []
    for package_name in filter(None, packages):
        try:
            package = importlib.import_module(package_name)
        except ImportError as exc:
            raise HandlerError(
                f"cannot import handler package {package_name!r} (HUEYARD_HANDLER_PACKAGES): {exc}"
            ) from exc
        modules.append(package_name)
        for info in pkgutil.iter_modules(getattr(package, "__path__", [])):
            if not info.name.startswith("_"):
                modules.append(f"{package_name}.{info.name}")
    extra = env.get("HUEYARD_HANDLER_MODULES", "")
    modules.extend(m.strip() for m in extra.split(",") if m.strip())
    return modules


def discover(env: Mapping[str, str] | None = None) -> list[str]:
    """Import every handler module; return their names. Raises :class:`HandlerError`."""
    modules = handler_modules(env)
    for module in modules:
        try:
            importlib.import_module(module)
        except HandlerError:
            raise
        except Exception as exc:
            raise HandlerError(
                f"cannot import handler module {module!r}: {type(exc).__name__}: {exc}"
            ) from exc
    return modules
