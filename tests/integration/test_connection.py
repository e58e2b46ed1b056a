"""Per-thread clients on the shared pool: one connection per thread, never shared.

Enqueue and release run on them (``framework.connection.ThreadClients``), so
these are properties the hot paths rely on: threads do not share a socket, a
forked child never uses its parent's, and a finished thread gives its
connection back.
"""

from __future__ import annotations

import gc
import os
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from framework import defaults
from framework.connection import BoundedPool, ConnectionSpec, PoolSize, ThreadClients, build_pool
from framework.errors import RedisUnavailableError
from framework.handlers import HandlerRegistry, handler
from framework.jobs import Jobs
from tests.conftest import AppFactory
from tests.integration.redis_server import RedisServer


def client_id(client: redis.Redis) -> int:
    """The server-side id of the connection the client holds."""
    return int(client.client_id())


def test_a_thread_keeps_one_connection_and_threads_do_not_share_it(redis_url: str) -> None:
    clients = ThreadClients(redis.ConnectionPool.from_url(redis_url))
    main = clients.get()
    assert clients.get() is main
    assert client_id(clients.get()) == client_id(main)  # the same connection, every command

    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(client_id(clients.get())))
    thread.start()
    thread.join()
    assert seen and seen[0] != client_id(main)
    clients.pool.disconnect()


def test_a_finished_thread_gives_its_connection_back_to_the_pool(redis_url: str) -> None:
    # Given a pool of one connection
    pool = redis.ConnectionPool.from_url(redis_url, max_connections=1)
    clients = ThreadClients(pool)
    # When a thread uses its client and ends
    thread = threading.Thread(target=lambda: clients.get().ping())
    thread.start()
    thread.join()
    gc.collect()
    # Then the one connection is free again for anybody else
    assert redis.Redis(connection_pool=pool).ping()
    pool.disconnect()


def test_a_forked_child_makes_its_own_connection(redis_url: str, redis_conn: redis.Redis) -> None:
    # Given the parent holds a connection
    clients = ThreadClients(redis.ConnectionPool.from_url(redis_url))
    parent = clients.get()
    parent_id = client_id(parent)
    # When a forked child uses its client
    pid = os.fork()
    if pid == 0:  # the child: report through Redis, exit without pytest's teardown
        try:
            child = clients.get()
            redis_conn.set("child", f"{child is parent}:{client_id(child)}")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    # Then it did not reuse the parent's client or socket, and the parent's still works
    same_object, child_id = redis_conn.get("child").decode().split(":")
    assert same_object == "False"
    assert int(child_id) != parent_id
    assert client_id(clients.get()) == parent_id
    clients.pool.disconnect()


def test_dropping_the_clients_gives_their_connections_back(redis_url: str) -> None:
    # Given a pool of one connection, held by this thread's client
    pool = redis.ConnectionPool.from_url(redis_url, max_connections=1)
    clients = ThreadClients(pool)
    clients.get().ping()
    # When the clients are dropped (an app that is thrown away)
    del clients
    gc.collect()
    # Then the connection is free again
    assert redis.Redis(connection_pool=pool).ping()
    pool.disconnect()


# -- a bounded pool --------------------------------------------------------------------------


def test_threads_past_max_kept_share_lent_connections(redis_url: str) -> None:
    # Given a pool of 4 connections of which 2 threads may keep one
    pool = build_pool(ConnectionSpec(redis_url), max_connections=4)
    clients = ThreadClients(pool, max_kept=2)
    # When 8 threads each run commands at the same time
    ready, errors = threading.Barrier(8), []

    def work() -> None:
        try:
            ready.wait()
            for _ in range(20):
                clients.get().ping()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then all of them worked, on at most 4 connections, and 2 threads kept one
    assert errors == []
    assert isinstance(pool, BoundedPool)
    assert pool.opened <= 4
    gc.collect()
    assert clients.kept == 0  # the threads ended: their connections went back
    pool.disconnect()


def test_a_full_pool_makes_a_caller_wait_then_says_what_to_raise(redis_url: str) -> None:
    # Given a pool of 2 connections, both held
    pool = build_pool(ConnectionSpec(redis_url), max_connections=2)
    assert isinstance(pool, BoundedPool)
    pool.timeout = 0.3
    held = [pool.get_connection(), pool.get_connection()]
    # When another caller needs one, it waits; and one that comes back serves it
    released = threading.Timer(0.1, pool.release, args=(held.pop(),))
    released.start()
    assert redis.Redis(connection_pool=pool).ping()
    released.join()
    # But when none comes back in time, the error names the limit and the fix
    held.append(pool.get_connection())
    with pytest.raises(redis.ConnectionError) as caught:
        redis.Redis(connection_pool=pool).ping()
    assert str(caught.value) == (
        "all 2 connections of the pool were in use for 0.3 s; raise [redis] max_connections "
        "(or lower the concurrency of this process)"
    )
    for connection in held:
        pool.release(connection)
    pool.disconnect()


@pytest.mark.parametrize(
    ("workers", "queues", "configured", "size"),
    [
        (128, 1, None, (128 + 1 + defaults.POOL_SPARE, 128)),
        (384, 6, None, (384 + 6 + defaults.POOL_SPARE, 384)),
        (10, 10, 50, (50, 50 - 10 - defaults.POOL_SPARE)),
        (10, 10, 5, (5, 0)),  # below what it needs: every thread borrows
    ],
)
def test_an_apps_pool_is_sized_from_its_workers_unless_configured(
    workers: int, queues: int, configured: int | None, size: tuple[int, int]
) -> None:
    pool_size = PoolSize.for_app(workers=workers, queues=queues, configured=configured)
    assert (pool_size.max_connections, pool_size.max_kept) == size


def _commands_while_idle_connections_are_closed(pool: redis.BlockingConnectionPool) -> list[str]:
    """Six threads send PINGs through ``pool`` while a seventh closes its idle
    connections over and over, as a Cluster client does to every node's pool when
    it re-reads the slot map. What the six got instead of PONG."""
    errors: list[str] = []
    done = threading.Event()

    def ping() -> None:
        for _ in range(1500):
            try:
                connection = pool.get_connection()
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            try:
                connection.send_command("PING")
                connection.read_response()
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                pool.release(connection)

    def close_idle() -> None:
        while not done.is_set():
            pool.disconnect_free_connections()

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns often: the race shows within a second
    closer = threading.Thread(target=close_idle)
    pingers = [threading.Thread(target=ping) for _ in range(6)]
    try:
        closer.start()
        for thread in pingers:
            thread.start()
        for thread in pingers:
            thread.join()
    finally:
        done.set()
        closer.join()
        sys.setswitchinterval(switch)
        pool.disconnect()
    return errors


def test_closing_idle_connections_never_closes_one_a_thread_just_took(redis_url: str) -> None:
    # redis-py's BlockingConnectionPool closes the connections it saw idle while
    # other threads take them: a command fails on a socket closed under it.
    pool = BoundedPool.from_url(redis_url, max_connections=4, timeout=10)
    assert _commands_while_idle_connections_are_closed(pool) == []


def test_a_redis_that_never_answers_fails_a_command_in_bounded_time(
    make_app: AppFactory,
) -> None:
    # Given a host that takes no more connections (a Redis stuck with its backlog full:
    # connecting times out), and a pool that tries 3 more times, 0.5 s each. redis-py
    # also tries the connection that many times inside each try of the command: 4 x 4 x
    # 0.5 s, and ~10 minutes with the defaults (10 tries, 5 s)
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(0)
        port = hole.getsockname()[1]
        filling = []
        for _ in range(4):  # the backlog takes a connection or two; then SYNs are dropped
            client = socket.socket()
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", port))
            filling.append(client)
        app = make_app(
            "[queues.work]\n", HandlerRegistry(), url=f"redis://127.0.0.1:{port}/0",
            redis_lines="reconnect_attempts = 3\nsocket_timeout = 0.5\nconnect_timeout = 0.5",
        )  # fmt: skip
        began = time.monotonic()
        with pytest.raises(RedisUnavailableError, match="Redis at "):
            Jobs(app).counts("work")
        took = time.monotonic() - began
        for client in filling:
            client.close()
    # Then it fails after the pool's tries, each connecting once
    assert took < 4.5, f"took {took:.1f} s"


def test_an_app_on_a_unix_socket_url_enqueues_runs_and_reads(
    make_app: AppFactory, tmp_path: Path
) -> None:
    # Given a Redis that listens on a unix socket (unix:///path?db=N, as documented): its
    # connections take no TCP keepalive, which the pool set on every connection
    socket_path = tmp_path / "redis.sock"
    server = RedisServer(None, "--unixsocket", str(socket_path), "--unixsocketperm", "700")
    registry = HandlerRegistry()

    @handler("work", registry=registry)
    def double(payload: dict[str, int]) -> int:
        return payload["n"] * 2

    with server:
        app = make_app("[queues.work]\n", registry, url=f"unix://{socket_path}?db=3")
        # When a job is enqueued and run, and the queue read
        job_id = app.enqueue("work", "double", {"n": 21})
        huey = app.queue("work").huey
        task = huey.dequeue()
        assert task is not None
        huey.execute(task)
        # Then it ran, through the socket, in database 3
        assert app.result("work", job_id) == 42
        assert Jobs(app).counts("work").completed == 1
        assert redis.Redis(unix_socket_path=str(socket_path), db=3).exists(
            app.keys.job("work", job_id)
        )
