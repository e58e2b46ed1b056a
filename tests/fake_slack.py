"""A fake Slack incoming webhook on 127.0.0.1, for the notifications tests.

It answers ``POST <path>`` like Slack: ``200 ok`` by default; a test scripts other
answers, in order, and reads what was posted::

    hook.script(Reply(429, "rate_limited", {"Retry-After": "7"}), OK)
    ...
    assert hook.posts[0].body == {"text": "*[warning]* Disk full\\n..."}
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.local_http import LocalServer, send

PATH = "/services/T0001/B0002/s3cr3tW3bh00kT0k3n"
"""The webhook's path: the secret part of its URL, as Slack's are."""


@dataclass(frozen=True)
class Reply:
    status: int = 200
    text: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)


OK = Reply()


@dataclass
class Post:
    path: str
    content_type: str
    body: Any


class FakeSlack:
    """The server, the posts it received and its scripted replies."""

    def __init__(self) -> None:
        self.posts: list[Post] = []
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._http = LocalServer(self._answer)
        self.server = self._http.server

    @property
    def url(self) -> str:
        """The webhook URL (a secret, like a real one)."""
        return f"{self._http.url}{PATH}"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def close(self) -> None:
        self._http.close()

    def _answer(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        with self._lock:
            reply = self._script.popleft() if self._script else OK
            self.posts.append(Post(handler.path, handler.headers.get("Content-Type", ""), body))
        data = reply.text.encode()
        send(handler, reply.status, data, "text/plain", reply.headers)
