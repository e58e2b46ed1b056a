"""Shared fixtures: a dedicated, cleaned database on the real Redis server, and apps on it.

The server is the one at 127.0.0.1:6379 (``.ci/run`` makes sure it answers).
Tests use database ``$HUEYARD_TEST_REDIS_DB`` (default 15) and flush only that
database, before and after each test that asks for it; under pytest-xdist
(``make test`` runs five workers) worker ``gwN`` uses that number minus N. A
missing server fails the run instead of skipping it.

The end-to-end tests and the browser test are dealt, in turn, into
``SERIAL_LANES`` serial groups (``xdist_group("serial0")``, ...): each group
runs one test after another in one worker. They time real processes, and
many at once on a small machine would measure each other; three at once is
what their margins are made for (most of their time is spent waiting for
consumers, so three lanes beside two workers of other tests keep a 2-core
machine busy without starving a timed test: docs/testing.md). An e2e test
marked ``untimed`` (no bound on how long anything takes, no race it must win
against a consumer) runs in any worker, beside the others.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from typing import Protocol

import pytest
import redis

from framework.application import Hueyard
from framework.config import parse_settings
from framework.handlers import HandlerRegistry
from framework.keys import QueueKeys
from tests.fake_graph import FakeGraphAPI


def _whole(name: str, default: int, least: int) -> int:
    """The whole number ``$name`` gives (``default`` unset); a clear error otherwise."""
    text = os.environ.get(name, str(default))
    if not text.isdigit() or int(text) < least:
        raise pytest.UsageError(f"{name}={text!r}: give a whole number, {least} or more")
    return int(text)


_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
TEST_DB = _whole("HUEYARD_TEST_REDIS_DB", 15, 0) - _WORKER
if TEST_DB < 0:
    raise pytest.UsageError(
        f"HUEYARD_TEST_REDIS_DB={TEST_DB + _WORKER} leaves xdist worker gw{_WORKER} no database "
        f"(worker gwN uses it minus N): give {_WORKER} or more, or run fewer workers"
    )
TEST_HOST = os.environ.get("HUEYARD_TEST_REDIS_HOST", "127.0.0.1")
TEST_PORT = _whole("HUEYARD_TEST_REDIS_PORT", 6379, 1)

SERIAL_LANES = 3
"""Serial groups the timed tests are dealt into, in turn (``$HUEYARD_TEST_SERIAL_LANES``)."""


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    lanes = _whole("HUEYARD_TEST_SERIAL_LANES", SERIAL_LANES, 1)
    timed = 0
    for item in items:
        timed_e2e = item.get_closest_marker("e2e") and not item.get_closest_marker("untimed")
        if timed_e2e or item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.xdist_group(f"serial{timed % lanes}"))
            timed += 1
    if getattr(config.option, "loadgroup", False):  # an xdist worker, --dist loadgroup
        _name_the_groups(items)


def _name_the_groups(items: list[pytest.Item]) -> None:
    """Give each test of an ``xdist_group`` the ``@group`` suffix by which the scheduler
    groups it, as xdist's own hook would.

    That hook runs before the one above (it would miss the ``serial`` marks), and it
    sets ``item._nodeid``, which pytest 9.2 no longer reads (pytest-xdist issue
    #1386): without this, no group holds, and the tests of one run in both workers.
    """
    try:
        from _pytest.nodeid import NodeId
    except ImportError:  # pytest before 9.2: ``_nodeid`` is what xdist reads
        NodeId = None

    for item in items:
        names = sorted({str(mark.args[0]) for mark in item.iter_markers("xdist_group")})
        suffix = "@" + "_".join(names)
        if not names or item.nodeid.endswith(suffix):
            continue
        nodeid = item.nodeid + suffix
        item._nodeid = nodeid  # type: ignore[attr-defined]  # pytest before 9.2
        if NodeId is not None and hasattr(item, "_id"):  # pytest 9.2: a parsed NodeId
            item._id = NodeId.parse(nodeid)


@pytest.fixture
def redis_url() -> str:
    return f"redis://{TEST_HOST}:{TEST_PORT}/{TEST_DB}"


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[redis.Redis]:
    """A client on the dedicated test database, flushed before and after."""
    conn = redis.Redis.from_url(redis_url)
    try:
        conn.ping()
    except redis.ConnectionError as exc:  # pragma: no cover - CI starts the server
        pytest.fail(f"no Redis server at {redis_url}: {exc}; start one (see .ci/run)")
    conn.flushdb()
    yield conn
    conn.flushdb()
    conn.close()


def app_toml(url: str, body: str = "", *, prefix: str = "test", redis_lines: str = "") -> str:
    """A ``config/queues.toml`` for a test: ``[redis]`` on ``url`` (plus
    ``redis_lines``), then ``body`` (the queues and any other table), dedented."""
    extra = textwrap.dedent(redis_lines).strip()
    table = f'[redis]\nurl = "{url}"\nprefix = "{prefix}"\n{extra}\n'
    return table + "\n" + textwrap.dedent(body)


class AppFactory(Protocol):
    def __call__(
        self,
        body: str,
        registry: HandlerRegistry,
        *,
        prefix: str = "test",
        url: str | None = None,
        redis_lines: str = "",
        pool: redis.ConnectionPool | None = None,
    ) -> Hueyard: ...


@pytest.fixture
def make_app(redis_conn: redis.Redis, redis_url: str) -> Iterator[AppFactory]:
    """Build apps on the test database from TOML (see :func:`app_toml`); closed at teardown.

    ::

        app = make_app("[queues.work]\\nattempts = 2", registry, prefix="st")
    """
    apps: list[Hueyard] = []

    def build(
        body: str,
        registry: HandlerRegistry,
        *,
        prefix: str = "test",
        url: str | None = None,
        redis_lines: str = "",
        pool: redis.ConnectionPool | None = None,
    ) -> Hueyard:
        text = app_toml(url or redis_url, body, prefix=prefix, redis_lines=redis_lines)
        app = Hueyard(parse_settings(text, env={}), registry, pool=pool)
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.close()


@pytest.fixture
def fake_graph() -> Iterator[FakeGraphAPI]:
    """A fake WhatsApp Cloud API on 127.0.0.1 (tests/fake_graph.py), closed at teardown."""
    api = FakeGraphAPI()
    yield api
    api.close()


def job_keys(conn: redis.Redis, q: QueueKeys, job_id: str) -> tuple[object, ...]:
    """What Redis holds of job ``job_id`` of queue ``q``: its record, its log lines and its
    children set (to check that an action changed none of them)."""
    return (
        conn.hgetall(q.job(job_id)),
        conn.lrange(q.logs(job_id), 0, -1),
        conn.zrange(q.children(job_id), 0, -1, withscores=True),
    )
