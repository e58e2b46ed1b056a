"""What the outbound calls share: a deadline for a whole request, one ``httpx.Client``
per thread, ``Retry-After``, and keeping a provider's own credential out of its errors.

Used by the WhatsApp Cloud API sender (:mod:`pipelines._whatsapp`), the
OpenAI-compatible AI provider (:mod:`pipelines._openai`), the Slack webhook
(:mod:`pipelines._slack`) and, for the deadline, the webhooks' ``urllib``
connections (:mod:`pipelines._public`)::

    clients = ThreadClients("hueyard-ai")
    with deadline(30):                    # connect, send, headers and body: 30 s in all
        response = clients.get().post(url, json=body, timeout=httpx.Timeout(30, connect=5))
    delay = retry_after(response.headers.get("Retry-After"))   # seconds, or None
    text = hide_secrets(response.text, token)                  # the token as ********

A socket timeout bounds each read and each write, not a request: a server that
trickles its answer (one header line every few seconds) would hold a worker for
as long as it likes. Inside :func:`deadline`, every connect, TLS handshake, read
and write of the clients made here (and of :mod:`pipelines._public`'s
connections) waits at most what is left of the deadline; past it, the request
fails as a timeout. Resolving the host name is not bounded (the system's
resolver has its own timeouts).
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import email.utils
import ssl
import threading
import time
import typing
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import httpcore
import httpx

from framework import forks
from framework.masking import MASK

__all__ = [
    "CONNECT_TIMEOUT",
    "DEFAULT_RATE_LIMIT_WAIT",
    "MAX_ANSWER_BYTES",
    "MAX_RETRY_AFTER",
    "DeadlinePassed",
    "ThreadClients",
    "deadline",
    "hide_secrets",
    "retry_after",
    "time_left",
]

MAX_RETRY_AFTER = 3600.0
"""The longest wait a ``Retry-After`` header can ask for; longer ones are cut to this."""
CONNECT_TIMEOUT = 5.0
"""Seconds to open a connection (and to wait for a free one of the thread's client)."""
DEFAULT_RATE_LIMIT_WAIT = 20.0
"""Seconds to wait after a 429 that names no ``Retry-After`` (the AI provider's default)."""


# -- the deadline of a whole request -----------------------------------------------------------


class DeadlinePassed(TimeoutError):
    """The request's :func:`deadline` passed: a ``TimeoutError`` (``socket.timeout``), so
    ``urllib`` and ``http.client`` treat it as the timeout it is."""


MAX_ANSWER_BYTES = 4 * 1024 * 1024
"""Bytes a connection may read inside one :func:`deadline` (the answer, its headers
included) unless the block names another bound: a JSON API's answer is a few kilobytes,
and one that never ends must not fill the worker's memory."""


@dataclass
class _Deadline:
    at: float
    """``time.monotonic()`` when it passes."""
    seconds: float
    max_bytes: int
    read: int = 0
    """Bytes read so far inside the block."""


_DEADLINE: contextvars.ContextVar[_Deadline | None] = contextvars.ContextVar(
    "hueyard_http_deadline", default=None
)


@contextlib.contextmanager
def deadline(seconds: float, *, max_bytes: int = MAX_ANSWER_BYTES) -> Iterator[None]:
    """Every request made inside the block ends within ``seconds`` of the block's start,
    in all: connecting, the TLS handshake, sending, the answer's headers and its body;
    and reads at most ``max_bytes`` (past them the read fails, as a connection broken
    after the request was sent would). An inner deadline never extends an outer one."""
    new = _Deadline(time.monotonic() + seconds, seconds, max_bytes)
    outer = _DEADLINE.get()
    token = _DEADLINE.set(new if outer is None or new.at < outer.at else outer)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def time_left(timeout: float | None) -> float | None:
    """``timeout`` (seconds for one socket operation; None: no limit) cut to what is left
    of the current :func:`deadline`; ``timeout`` itself outside one. Raises
    :class:`DeadlinePassed` when nothing is left."""
    current = _DEADLINE.get()
    if current is None:
        return timeout
    left = current.at - time.monotonic()
    if left <= 0:
        raise DeadlinePassed(
            f"no complete answer within {current.seconds:g} s (the deadline of the whole "
            "request: connecting, sending and the answer)"
        )
    return left if timeout is None else min(timeout, left)


def _cut(timeout: float | None, error: type[Exception]) -> float | None:
    try:
        return time_left(timeout)
    except DeadlinePassed as exc:
        raise error(str(exc)) from None


class _BoundedStream(httpcore.NetworkStream):
    """A connection whose every wait is cut to the deadline (:func:`time_left`)."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = self._stream.read(max_bytes, _cut(timeout, httpcore.ReadTimeout))
        current = _DEADLINE.get()
        if current is not None:
            current.read += len(data)
            if current.read > current.max_bytes:
                raise httpcore.ReadError(
                    f"the answer is larger than {current.max_bytes:,} bytes; it is not read further"
                )
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _cut(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        tls = self._stream.start_tls(
            ssl_context, server_hostname, _cut(timeout, httpcore.ConnectTimeout)
        )
        return _BoundedStream(tls)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._stream.get_extra_info(info)


class _BoundedBackend(httpcore.NetworkBackend):
    """httpcore's network backend, its connections bounded by the deadline."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        wait = _cut(timeout, httpcore.ConnectTimeout)
        return _BoundedStream(
            self._backend.connect_tcp(host, port, wait, local_address, socket_options)
        )

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        wait = _cut(timeout, httpcore.ConnectTimeout)
        return _BoundedStream(self._backend.connect_unix_socket(path, wait, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def _bounded(client: httpx.Client) -> httpx.Client:
    """``client`` with its transports' connections bounded by the deadline: the default
    one and those of the proxies the environment names. httpx offers no public way to
    give a client a network backend, so this reaches into its transports (the deadline's
    tests fail if a new httpx moves them)."""
    for transport in [client._transport, *client._mounts.values()]:
        if isinstance(transport, httpx.HTTPTransport):
            pool = transport._pool
            if not isinstance(pool._network_backend, _BoundedBackend):
                pool._network_backend = _BoundedBackend(pool._network_backend)
    return client


# -- a provider's credential out of its errors ---------------------------------------------------


def hide_secrets(text: str, *secrets: str | None) -> str:
    """``text`` with each secret (and its URL-encoded and base64 forms) as ``********``:
    for a provider's own words (an error message, an answer's body) before they go into
    an exception or a log line, as an API may echo the credential it was given.

    >>> hide_secrets("bad token Bearer EAAG123456", "EAAG123456")
    'bad token Bearer ********'
    """
    forms: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        encoded = secret.encode("utf-8")
        forms.update(
            {
                secret,
                urllib.parse.quote(secret, safe=""),
                urllib.parse.quote_plus(secret),
                base64.b64encode(encoded).decode("ascii"),
                base64.urlsafe_b64encode(encoded).decode("ascii"),
            }
        )
    # the longest first, so a secret that contains another is hidden whole
    for form in sorted(forms, key=len, reverse=True):
        if len(form) >= 4:
            text = text.replace(form, MASK)
    return text


# -- Retry-After ---------------------------------------------------------------------------------


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (seconds or an HTTP date), at most
    :data:`MAX_RETRY_AFTER`; None when absent or not understood.

    >>> retry_after("42")
    42.0
    """
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # not "²", which float() refuses
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
    request passes its own headers. Their connections honour :func:`deadline`."""

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
        client = _bounded(
            httpx.Client(
                headers={"User-Agent": self.user_agent},
                follow_redirects=False,
                limits=httpx.Limits(max_connections=4, max_keepalive_connections=1),
            )
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
