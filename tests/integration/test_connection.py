"""Per-thread clients on the shared pool: one connection per thread, never shared.

Enqueue and release run on them (``framework.connection.ThreadClients``), so
these are properties the hot paths rely on: threads do not share a socket, a
forked child never uses its parent's, and a finished thread gives its
connection back.
"""

from __future__ import annotations

import gc
import os
import threading

import redis

from framework.connection import ThreadClients


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
