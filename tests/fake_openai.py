"""A fake OpenAI-compatible API, and a media server for voice notes, on 127.0.0.1.

It answers, wherever the base path puts them (``/v1/...``, Azure's
``/openai/deployments/<name>/...``):

- ``POST .../chat/completions``: by default ``200`` with a reply
  ``"reply <n> to: <the last message>"`` and ``finish_reason`` ``stop``;
- ``POST .../audio/transcriptions`` (multipart): by default ``200`` with
  ``{"text": "transcript of <file name> (<bytes> bytes)"}``;
- ``GET /media/<name>``: the bytes a test put there with :meth:`FakeOpenAI.media`.

A test scripts other answers per kind (``"chat"``, ``"transcriptions"``,
``"media"``), in order. Every request is recorded: method, path, query,
headers, JSON body or multipart fields and files::

    api.script("chat", openai_error(429, "Rate limit reached", Retry_After="7"))
    ...
    assert api.of("chat")[0].json["messages"][-1] == {"role": "user", "content": "Hi"}
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.local_http import LocalServer, send


@dataclass(frozen=True)
class Answer:
    """One scripted answer. ``body=None`` on a 2xx means "the default success"."""

    status: int = 200
    body: dict[str, Any] | str | bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering (past the client's timeout: a lost answer)."""
    no_length: bool = False
    """Send the body without ``Content-Length``, then close the connection."""


OK = Answer()


def openai_error(
    status: int, message: str, *, code: str | None = None, kind: str = "invalid_request_error",
    **headers: str,
) -> Answer:  # fmt: skip
    """An error answer in OpenAI's shape; ``Retry_After="7"`` sets the ``Retry-After`` header."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return Answer(status, body, {k.replace("_", "-"): v for k, v in headers.items()})


@dataclass
class Upload:
    filename: str
    content_type: str
    data: bytes


@dataclass
class Request:
    kind: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    """Lowercased names."""
    json: dict[str, Any] | None = None
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, Upload] = field(default_factory=dict)
    at: float = 0.0


def _kind(method: str, path: str) -> str:
    if method == "GET" and path.startswith("/media/"):
        return "media"
    if path.endswith("/chat/completions"):
        return "chat"
    if path.endswith("/audio/transcriptions"):
        return "transcriptions"
    return "unknown"


def _multipart(content_type: str, raw: bytes) -> tuple[dict[str, str], dict[str, Upload]]:
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw
    )
    form: dict[str, str] = {}
    files: dict[str, Upload] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is not None:
            files[str(name)] = Upload(filename, part.get_content_type(), data)
        else:
            form[str(name)] = data.decode()
    return form, files


class FakeOpenAI:
    """The server, its recorded requests, its scripted answers and its media files."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._script: dict[str, deque[Answer]] = defaultdict(deque)
        self._media: dict[str, tuple[bytes, str]] = {}
        self._lock = threading.Lock()
        self._count = 0
        self._http = LocalServer(self._answer)
        self.server = self._http.server

    @property
    def url(self) -> str:
        return self._http.url

    def media(self, name: str, data: bytes, content_type: str = "audio/ogg") -> str:
        """Serve ``data`` at ``/media/<name>``; returns its URL."""
        with self._lock:
            self._media[name] = (data, content_type)
        return f"{self.url}/media/{name}"

    def script(self, kind: str, *answers: Answer) -> None:
        """Answer the next requests of ``kind`` (chat, transcriptions, media) with ``answers``."""
        with self._lock:
            self._script[kind].extend(answers)

    def of(self, kind: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.kind == kind]

    def close(self) -> None:
        self._http.close()

    def _record(self, handler: BaseHTTPRequestHandler, raw: bytes) -> Request:
        parts = urlsplit(handler.path)
        request = Request(
            kind=_kind(handler.command, parts.path),
            method=handler.command,
            path=parts.path,
            query={k: v[-1] for k, v in parse_qs(parts.query).items()},
            headers={k.lower(): v for k, v in handler.headers.items()},
            at=time.time(),
        )
        content_type = handler.headers.get("Content-Type", "")
        if content_type.startswith("multipart/form-data"):
            request.form, request.files = _multipart(content_type, raw)
        elif raw:
            try:
                request.json = json.loads(raw)
            except ValueError:
                request.json = {"unparsed": raw.decode(errors="replace")}
        return request

    def _default(self, request: Request) -> tuple[int, dict[str, Any] | bytes, str]:
        if request.kind == "chat":
            messages = (request.json or {}).get("messages") or [{}]
            body = {
                "id": f"chatcmpl-fake{self._count}",
                "object": "chat.completion",
                "model": f"{(request.json or {}).get('model')}-2024-07-18",
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": f"reply {self._count} to: {messages[-1].get('content')}",
                        },
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
            }
            return 200, body, "application/json"
        if request.kind == "transcriptions":
            upload = request.files.get("file")
            described = f"{upload.filename} ({len(upload.data)} bytes)" if upload else "nothing"
            return 200, {"text": f"transcript of {described}"}, "application/json"
        if request.kind == "media":
            name = request.path.removeprefix("/media/")
            if name in self._media:
                data, content_type = self._media[name]
                return 200, data, content_type
        return 404, {"error": {"message": f"no route {request.path}"}}, "application/json"

    def _answer(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        request = self._record(handler, raw)
        with self._lock:
            self._count += 1
            self.requests.append(request)
            scripted = self._script[request.kind]
            answer = scripted.popleft() if scripted else OK
            if answer.body is None and 200 <= answer.status < 300:
                status, payload, content_type = self._default(request)
            else:
                status, payload = answer.status, answer.body or b""
                content_type = "application/json" if isinstance(payload, dict) else "text/plain"
        if answer.delay:
            time.sleep(answer.delay)
        data = json.dumps(payload).encode() if isinstance(payload, dict) else payload
        data = data.encode() if isinstance(data, str) else data
        send(handler, status, data, content_type, answer.headers, length=not answer.no_length)
