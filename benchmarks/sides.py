"""The two contenders, behind one small interface.

``RawSide`` is stock ``huey.PriorityRedisHuey`` (pickle serializer, results
on, as users run it); ``HueyardSide`` is a :class:`framework.Hueyard` app with
one queue, ``bench``, at its default policy (keep 100 completed, 500 failed,
leases, metrics). Both write to the same Redis database, one at a time, and
both consume in-process with thread workers started from the main thread.

Each side offers:

- ``enqueue(handler, payload)`` / ``enqueue_many(handler, payloads)``
- ``consumer(workers, keep_completed=None)``: a context manager that starts a
  consumer with that many worker threads and stops it gracefully on exit
- ``round_trips``: a :class:`~benchmarks.redisstats.RoundTrips` when built with
  ``counting=True``
"""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import redis

from benchmarks.redisstats import RoundTrips, counting_connection_class
from benchmarks.workload import RESULT, Probe, WhatsAppMessage
from framework import Handler, enqueue

__all__ = ["HANDLERS", "HueyardSide", "RawSide", "Side"]

QUEUE = "bench"

HANDLERS = ("noop", "send", "typed")
"""``noop`` returns None; ``send`` returns :data:`RESULT`; ``typed`` takes a pydantic payload."""

_SIGNALS = tuple(
    s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None
)


@contextlib.contextmanager
def _signals_restored() -> Iterator[None]:
    """Consumers install their own signal handlers; put ours back afterwards."""
    saved = {signum: signal.getsignal(signum) for signum in _SIGNALS}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


class Side:
    name = ""
    has_bulk = False  # False: enqueue_many is a loop of single enqueues
    round_trips: RoundTrips | None = None

    def enqueue(self, handler: str, payload: Any) -> None:
        raise NotImplementedError

    def enqueue_many(self, handler: str, payloads: Sequence[Any]) -> None:
        raise NotImplementedError

    def consumer(
        self, workers: int, keep_completed: int | None = None
    ) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class RawSide(Side):
    """Stock Huey: ``PriorityRedisHuey``, ``@huey.task()``, ``huey.consumer.Consumer``."""

    name = "raw Huey"

    def __init__(self, url: str, probe: Probe, *, counting: bool = False) -> None:
        from huey import PriorityRedisHuey

        self.pool = redis.ConnectionPool.from_url(url)
        if counting:
            self.round_trips = RoundTrips()
            self.pool.connection_class = counting_connection_class(self.round_trips)
        self.huey = PriorityRedisHuey(QUEUE, connection_pool=self.pool)

        def noop(payload: Any) -> None:
            probe.hit()

        def send(payload: Any) -> dict[str, Any]:
            probe.hit()
            return RESULT

        self.tasks: dict[str, Callable[[Any], Any]] = {
            "noop": self.huey.task(name="bench.noop")(noop),
            "send": self.huey.task(name="bench.send")(send),
        }
        logging.getLogger("huey").setLevel(logging.WARNING)

    def enqueue(self, handler: str, payload: Any) -> None:
        self.tasks[handler](payload)

    def enqueue_many(self, handler: str, payloads: Sequence[Any]) -> None:
        task = self.tasks[handler]  # Huey has no bulk enqueue
        for payload in payloads:
            task(payload)

    @contextlib.contextmanager
    def consumer(self, workers: int, keep_completed: int | None = None) -> Iterator[None]:
        from huey.consumer import Consumer

        with _signals_restored():
            consumer = Consumer(self.huey, workers=workers, worker_type="thread")
            consumer.start()
            try:
                yield
            finally:
                consumer.stop(graceful=True)

    def close(self) -> None:
        self.pool.disconnect()


class HueyardSide(Side):
    """A hueyard app with one queue at its default policy; ``concurrency`` = workers."""

    name = "hueyard"
    has_bulk = True

    def __init__(self, url: str, probe: Probe, *, counting: bool = False) -> None:
        from framework.handlers import HandlerRegistry, handler

        self.url = url
        self.registry = HandlerRegistry()
        self._apps: dict[tuple[int, int | None], Any] = {}
        if counting:
            self.round_trips = RoundTrips()

        @handler(QUEUE, registry=self.registry)
        def noop(payload: dict[str, Any]) -> None:
            probe.hit()

        @handler(QUEUE, registry=self.registry)
        def send(payload: dict[str, Any]) -> dict[str, Any]:
            probe.hit()
            return RESULT

        @handler(QUEUE, registry=self.registry)
        def typed(payload: WhatsAppMessage) -> None:
            probe.hit()

        self.handlers: dict[str, Handler[Any]] = {"noop": noop, "send": send, "typed": typed}

        logging.getLogger("hueyard").setLevel(logging.WARNING)

    @functools.cached_property
    def producer(self) -> Any:
        """The app that enqueues: the process's app, as in a service.

        ``framework.enqueue`` reaches it through :func:`framework.runtime.set_app`,
        ``handler.enqueue`` through this side's registry, bound to it.
        """
        from framework.runtime import set_app

        app = self.app()
        set_app(app)
        self.registry.bind(app)
        return app

    def app(self, workers: int = 1, keep_completed: int | None = None) -> Any:
        """The app whose ``bench`` queue has ``concurrency = workers`` (built once)."""
        from framework.application import Hueyard
        from framework.config import parse_settings
        from framework.connection import build_pool

        key = (workers, keep_completed)
        if key not in self._apps:
            keep = "" if keep_completed is None else f"keep_completed = {keep_completed}\n"
            text = (
                f'[redis]\nurl = "{self.url}"\nprefix = "bench"\n\n'
                f"[consumer]\nshutdown_timeout = 30\n\n"
                f"[queues.bench]\nconcurrency = {workers}\n{keep}"
            )
            settings = parse_settings(text, source="<benchmark>", env={})
            pool = build_pool(settings.redis.connection)
            if self.round_trips is not None:
                pool.connection_class = counting_connection_class(self.round_trips)
            self._apps[key] = Hueyard(settings, self.registry, pool=pool)
            if "producer" in self.__dict__:
                # A new app binds the registry to itself; handler.enqueue stays on the producer.
                self.registry.bind(self.producer)
        return self._apps[key]

    def enqueue(self, handler: str, payload: Any) -> None:
        """``framework.enqueue(queue, handler, payload)``: the call a service makes."""
        self.producer  # noqa: B018 - the process's app is set once, before timing
        enqueue(QUEUE, handler, payload)

    def enqueue_on_app(self, handler: str, payload: Any) -> None:
        """``app.enqueue(queue, handler, payload)`` on this side's own app."""
        self.app().enqueue(QUEUE, handler, payload)

    def enqueue_by_handler(self, handler: str, payload: Any) -> None:
        """``handler.enqueue(payload)``: the other call a service makes."""
        self.producer  # noqa: B018
        self.handlers[handler].enqueue(payload)

    def enqueue_many(self, handler: str, payloads: Sequence[Any]) -> None:
        self.producer  # noqa: B018
        self.handlers[handler].enqueue_many(payloads)

    @contextlib.contextmanager
    def consumer(self, workers: int, keep_completed: int | None = None) -> Iterator[None]:
        from framework.consumer import MultiQueueConsumer

        app = self.app(workers, keep_completed)
        with _signals_restored():
            consumer = MultiQueueConsumer(app, [QUEUE], worker_type="thread")
            consumer.start()
            try:
                yield
            finally:
                consumer.stop(graceful=True)

    def close(self) -> None:
        from framework.runtime import reset_app

        if "producer" in self.__dict__:
            reset_app()
        for app in self._apps.values():
            app.close()
