"""A fake WhatsApp Cloud API (Graph API) on 127.0.0.1, for the messages tests.

It answers ``POST /<version>/<phone-number-id>/messages`` like the real API:
by default ``200`` with a fresh ``wamid``; a test scripts other answers per
recipient (``to``, digits only), in order. It records every request (path,
``Authorization`` header, JSON body, client port, time, the id it answered)::

    api.script("14155550123", error(131047, "Re-engagement message"), OK)
    ...
    assert api.requests[0].body["text"] == {"body": "Hi", "preview_url": False}
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.local_http import LocalServer, send


@dataclass(frozen=True)
class Answer:
    """One scripted answer. ``body=None`` on a 2xx means "success with a new wamid"."""

    status: int = 200
    body: dict[str, Any] | str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering (past the client's timeout: a lost answer)."""


OK = Answer()


def error(
    code: int, message: str, *, status: int = 400, details: str = "", **headers: str
) -> Answer:
    """An error answer in the Graph API's shape."""
    body: dict[str, Any] = {
        "message": f"(#{code}) {message}",
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "AbCdEf123",
    }
    if details:
        body["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return Answer(status, {"error": body}, {k.replace("_", "-"): v for k, v in headers.items()})


@dataclass
class Request:
    path: str
    authorization: str
    body: dict[str, Any]
    port: int
    at: float
    answered_id: str | None = None


class FakeGraphAPI:
    """The server, its recorded requests and its scripted answers."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._script: dict[str, deque[Answer]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._count = 0
        self._http = LocalServer(self._answer)
        self.server = self._http.server

    @property
    def url(self) -> str:
        return self._http.url

    def script(self, to: str, *answers: Answer) -> None:
        """Answer the next requests for ``to`` (digits, no ``+``) with ``answers``, in order."""
        with self._lock:
            self._script[to].extend(answers)

    def to(self, number: str) -> list[Request]:
        """The requests that were for ``number`` (digits, no ``+``)."""
        with self._lock:
            return [r for r in self.requests if r.body.get("to") == number]

    def close(self) -> None:
        self._http.close()

    def _answer(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"unparsed": raw.decode(errors="replace")}
        to = str(body.get("to", ""))
        with self._lock:
            scripted = self._script[to]
            answer = scripted.popleft() if scripted else OK
            self._count += 1
            request = Request(
                path=handler.path,
                authorization=handler.headers.get("Authorization", ""),
                body=body,
                port=handler.client_address[1],
                at=time.time(),
            )
            self.requests.append(request)
            if answer.body is None and 200 <= answer.status < 300:
                request.answered_id = f"wamid.fake{self._count:06d}"
                payload: dict[str, Any] | str = {
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": to, "wa_id": to}],
                    "messages": [{"id": request.answered_id}],
                }
            else:
                payload = answer.body or ""
        if answer.delay:
            time.sleep(answer.delay)
        data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
        kind = "text/html" if isinstance(payload, str) else "application/json"
        send(handler, answer.status, data, kind, answer.headers)
