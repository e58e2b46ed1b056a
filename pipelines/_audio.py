"""Fetching a voice note for transcription: bounded in size and in time.

::

    audio = fetch_audio(client, "https://media.example/v/123.ogg", timeout=60,
                        limit=25 * 1024 * 1024, limit_setting="HUEYARD_AI_MAX_AUDIO_BYTES")
    audio.name            # "voice-note.ogg": an extension the transcription API accepts

A plain ``GET``: no credentials (a signed URL works), redirects followed. How
it fails says what the job does: :class:`~pipelines._providers.AIRefused`
(404, 403 and other 4xx, empty, over the limit), ``AIRetryLater`` (429),
``AIError`` (5xx, timeout, unreachable: the backoff).
"""

from __future__ import annotations

import posixpath
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from pipelines._http import CONNECT_TIMEOUT, DEFAULT_RATE_LIMIT_WAIT, retry_after
from pipelines._providers import AIError, AIRefused, AIRetryLater, redact_url

__all__ = ["AUDIO_EXTENSIONS", "AUDIO_TYPES", "Audio", "audio_name", "fetch_audio"]

AUDIO_EXTENSIONS = ("flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm")
"""The file types the transcription API accepts; it goes by the file name's extension."""
AUDIO_TYPES = {
    "audio/ogg": "ogg",
    "audio/opus": "ogg",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/mp4": "m4a",
    "audio/x-m4a": "m4a",
    "audio/aac": "m4a",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/webm": "webm",
    "audio/flac": "flac",
}
"""File types by ``Content-Type``, for URLs whose path has no usable extension."""


@dataclass(frozen=True)
class Audio:
    data: bytes
    name: str
    content_type: str


def audio_name(url: str, content_type: str) -> str:
    """A file name whose extension the API understands: the URL's, else one for the
    ``Content-Type``, else ``ogg``.

    >>> audio_name("https://cdn.example/v/7f3a9", "audio/mpeg")
    'voice-note.mp3'
    """
    name = posixpath.basename(urlsplit(url).path)
    extension = name.rpartition(".")[2].lower() if "." in name else ""
    if extension in AUDIO_EXTENSIONS:
        return f"voice-note.{extension}"
    # WhatsApp's voice notes are OGG/Opus: the likeliest guess when nothing says otherwise
    return f"voice-note.{AUDIO_TYPES.get(content_type, 'ogg')}"


def fetch_audio(
    client: httpx.Client, audio_url: str, *, timeout: float, limit: int, limit_setting: str
) -> Audio:
    """The voice note at ``audio_url``: at most ``limit`` bytes (``limit_setting`` names
    the setting in the error), within ``timeout`` seconds in all."""
    where = redact_url(audio_url)
    deadline = time.monotonic() + timeout
    timeouts = httpx.Timeout(timeout, connect=CONNECT_TIMEOUT, pool=CONNECT_TIMEOUT)
    chunks: list[bytes] = []
    size = 0
    try:
        with client.stream("GET", audio_url, timeout=timeouts, follow_redirects=True) as response:
            if not response.is_success:
                raise _status_error(response.status_code, where, response.headers)
            length = response.headers.get("Content-Length", "")
            if length.isascii() and length.isdigit() and int(length) > limit:
                raise _too_large(where, limit, limit_setting, int(length))
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > limit:
                    raise _too_large(where, limit, limit_setting, None)
                if time.monotonic() > deadline:
                    raise AIError(
                        f"the voice note at {where} took longer than {timeout:g} s to download; "
                        "retried after the backoff"
                    )
                chunks.append(chunk)
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
            final_url = str(response.url)
    except httpx.TooManyRedirects:
        raise AIRefused(f"the voice note at {where} redirects too many times") from None
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise AIError(f"the voice note at {where}: not reached ({exc!r})") from None
    except httpx.TimeoutException:
        raise AIError(
            f"the voice note at {where}: no answer within {timeout:g} s; retried after the backoff"
        ) from None
    except httpx.TransportError as exc:
        raise AIError(
            f"the voice note at {where}: the download failed ({type(exc).__name__}); "
            "retried after the backoff"
        ) from None
    if size == 0:
        raise AIRefused(f"the voice note at {where} is empty (0 bytes); check audio_url")
    return Audio(
        data=b"".join(chunks),
        name=audio_name(final_url, content_type),
        content_type=content_type or "application/octet-stream",
    )


def _too_large(where: str, limit: int, setting: str, size: int | None) -> AIRefused:
    told = f"{size} bytes" if size is not None else "more"
    return AIRefused(
        f"the voice note at {where} is {told}, over the {limit}-byte limit ({setting}); "
        "failed at once, not retried"
    )


def _status_error(status: int, where: str, headers: httpx.Headers) -> AIError:
    text = f"the voice note at {where}: HTTP {status}"
    if status == 429:
        asked = retry_after(headers.get("Retry-After"))
        delay = DEFAULT_RATE_LIMIT_WAIT if asked is None else asked
        return AIRetryLater(f"{text} [rate limited; retried after {delay:g} s]", delay=delay)
    if status >= 500 or status == 408:
        return AIError(f"{text} [a temporary problem of the media server; retried later]")
    return AIRefused(
        f"{text} [check audio_url: the file is not there, or a signed URL expired; "
        "failed at once, not retried]"
    )
