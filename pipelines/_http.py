"""What the HTTP providers share: one ``httpx.Client`` per thread, and ``Retry-After``.

Used by the WhatsApp Cloud API sender (:mod:`pipelines._whatsapp`) and the
OpenAI-compatible AI provider (:mod:`pipelines._openai`)::

    clients = ThreadClients("hueyard-ai")
    response = clients.get().post(url, json=body, timeout=httpx.Timeout(30, connect=5))
    delay = retry_after(response.headers.get("Retry-After"))   # seconds, or None
"""

from __future__ import annotations

import email.utils
import threading
import time

import httpx

from framework import forks

__all__ = [
    "CONNECT_TIMEOUT",
    "DEFAULT_RATE_LIMIT_WAIT",
    "MAX_RETRY_AFTER",
    "ThreadClients",
    "retry_after",
]

MAX_RETRY_AFTER = 3600.0
"""The longest wait a ``Retry-After`` header can ask for; longer ones are cut to this."""
CONNECT_TIMEOUT = 5.0
"""Seconds to open a connection (and to wait for a free one of the thread's client)."""
DEFAULT_RATE_LIMIT_WAIT = 20.0
"""Seconds to wait after a 429 that names no ``Retry-After`` (the AI provider's default)."""


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (seconds or an HTTP date), at most
    :data:`MAX_RETRY_AFTER`; None when absent or not understood.

    >>> retry_after("42")
    42.0
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class ThreadClients:
    """One ``httpx.Client`` per thread (and per forked process), so a worker thread
    reuses its connection from job to job. Clients carry no credentials: each
    request passes its own headers."""

    def __init__(self, user_agent: str) -> None:
        self.user_agent = user_agent
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._lock = threading.Lock()

    def get(self) -> httpx.Client:
        """This thread's client, made on first use (and again after a fork)."""
        pid = forks.pid()
        kept: tuple[int, httpx.Client] | None = getattr(self._local, "client", None)
        if kept is not None and kept[0] == pid:
            return kept[1]
        client = httpx.Client(
            headers={"User-Agent": self.user_agent},
            follow_redirects=False,
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=1),
        )
        self._local.client = (pid, client)
        with self._lock:
            self._clients.append(client)
        return client

    def close(self) -> None:
        """Close every thread's client (at shutdown, or between tests)."""
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()
        self._local = threading.local()
