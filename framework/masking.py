"""Secrets out of sight: the one place that decides what is a secret, and hides it.

Everything that shows job data goes through a :class:`Masker`: the dashboard's
pages and raw JSON, ``hueyard job`` / ``hueyard jobs``, and the consumer when it
stores a failed job's error and traceback and logs the error.

- **Keys.** A key is secret when, lowercased and stripped of everything but
  letters and digits, it *contains* one of the secret words (:data:`SECRET_WORDS`,
  extended by ``[dashboard] mask_fields``): ``apiKey``, ``X-Api-Key``,
  ``client_secret``, ``userPassword``, ``sessionCookie``, ``max_tokens`` (yes:
  safe beats pretty) all are. Its value becomes :data:`MASK`, whatever it holds
  (a string, a number, a whole dict), at any depth; ``true``, ``false`` and
  ``null`` stay, as they cannot hold a secret and tell whether one was given.
- **Text.** Free text (every string value of a payload, an error, a traceback,
  a log line) has the values after secret keys masked where it spells
  ``"key": value`` (JSON, Python reprs, JSON inside a string field),
  ``key=value`` without spaces (query strings, keyword arguments, ``k=v`` log
  fields), ``Authorization: Bearer ...`` or a header line (``X-Api-Key: ...``);
  also a URL's password (``redis://:pw@host``), anything that looks like a
  JWT, and every pydantic ``input_value=...``.

:meth:`Masker.exception` describes an exception for a job's error without any
input: a pydantic ``ValidationError`` becomes its fields and problems only.
"""

from __future__ import annotations

import functools
import re
import traceback as tb
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from framework.errors import PayloadError

if TYPE_CHECKING:
    from framework.settings import Settings

__all__ = ["DEFAULT_MASKER", "MASK", "SECRET_WORDS", "Masker", "validation_summary"]

MASK = "********"
"""What a secret shows as."""

SECRET_WORDS = (
    "key", "token", "secret", "password", "passwd", "passphrase", "pwd", "auth",
    "signature", "hmac", "dsn", "jwt", "credential", "cookie", "session", "private",
    "bearer", "salt",
)  # fmt: skip
"""A key containing one of these (case and ``_``/``-``/``.`` aside) is a secret.
``api_key``, ``access_key``, ``client_secret``, ``authorization`` and ``apikey``
are all covered by the substrings."""

_KEY_CHARS = r"[^\"'\\\n]{1,256}"  # a quoted key: any text up to its quote ("db/password", "ü")
_QUOTED_KEY = re.compile(r"(?P<q>\\?[\"'])(?P<key>" + _KEY_CHARS + r")(?P=q)\s*(?::|=>|=)\s*")
_KEY_CHARS_SET = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-[]/:"
)  # a bare key: also user[password]= (a form's), db/password=, auth:token=
_SCHEME_WORDS = ("bearer", "basic", "token", "digest", "bot")
_SCHEME = re.compile(
    r"(?<![A-Za-z0-9_\-])(?P<key>[A-Za-z][A-Za-z0-9_\-]{0,63})\s*[:=]\s*"
    r"(?P<scheme>Bearer|Basic|Token|Digest|Bot)\s+"
    r"(?P<value>[^\s\"',;]+)",
    re.IGNORECASE,
)
_HEADER_LINE = re.compile(
    r"^(?P<head>[ \t]*(?P<key>[A-Za-z0-9]+(?:-[A-Za-z0-9]+)+)[ \t]*:[ \t]*)(?P<value>\S.*)$",
    re.MULTILINE,
)
_URL_PASSWORD = re.compile(
    r"(?<![A-Za-z0-9+.\-])(?P<head>[A-Za-z][A-Za-z0-9+.\-]{0,30}://[^:/@\s]{0,256}:)[^@/\s]+@"
)
# A token starts where a run of its characters starts (not at every "eyJ" after a "-"
# inside one: "eyJ-eyJ-..." made each try scan to the run's end, quadratic in its length).
_JWT = re.compile(r"(?<![A-Za-z0-9_\-])eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*")
_INPUT_VALUE = re.compile(r"input_value=(?:.*?(?=, input_type=)|[^\n]*)")
_BARE_END = frozenset(" \t\r\n,;&)}]\"'")
_NOT_SECRET = frozenset({"true", "false", "null", "none", "True", "False", "None"})
_CLOSE = {"{": "}", "[": "]", "(": ")"}
_NOT_ALNUM = re.compile(r"[\W_]+")


def _squash(text: str) -> str:
    return _NOT_ALNUM.sub("", text.lower())


@functools.lru_cache(maxsize=4096)  # a payload's keys repeat from row to row
def _is_secret(words: tuple[str, ...], key: str) -> bool:
    squashed = _squash(key)
    return any(word in squashed for word in words)


def validation_summary(exc: ValidationError, limit: int = 10) -> str:
    """The first ``limit`` problems of ``exc``, one ``field: message`` each, without the
    input values (pydantic's own text quotes them, secrets included)."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    parts = []
    for error in errors[:limit]:
        where = ".".join(str(part) for part in error["loc"]) or "payload"
        parts.append(f"{where}: {error['msg']}")
    if len(errors) > limit:
        parts.append(f"... and {len(errors) - limit} more")
    return "; ".join(parts)


@dataclass(frozen=True)
class Masker:
    """Decides what is a secret (:meth:`is_secret`) and hides it in values and text."""

    words: tuple[str, ...] = SECRET_WORDS

    @classmethod
    def with_extra(cls, extra: Iterable[str]) -> Masker:
        """The default words and ``extra`` (``[dashboard] mask_fields``)."""
        words = dict.fromkeys(_squash(word) for word in (*SECRET_WORDS, *extra))
        return cls(tuple(word for word in words if word))

    @classmethod
    def of(cls, settings: Settings) -> Masker:
        """The masker of an app: the default words and ``[dashboard] mask_fields``."""
        return cls.with_extra(settings.dashboard.mask_fields)

    def is_secret(self, key: str) -> bool:
        """Whether ``key`` names a secret.

        >>> [DEFAULT_MASKER.is_secret(k) for k in ("webhookSecret", "X-Api-Key", "to")]
        [True, True, False]
        """
        return _is_secret(self.words, key)

    # -- values ------------------------------------------------------------------------------

    def value(self, value: Any) -> Any:
        """``value`` (JSON-like) with every secret-named key's value masked, at any depth,
        and every string through :meth:`text`. A new value: ``value`` is not changed.

        >>> DEFAULT_MASKER.value({"url": "https://x/?token=t1", "headers": [{"X-Api-Key": 5}]})
        {'url': 'https://x/?token=********', 'headers': [{'X-Api-Key': '********'}]}
        """
        if isinstance(value, dict):
            return {
                key: self._hidden(item) if self.is_secret(str(key)) else self.value(item)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    @staticmethod
    def _hidden(value: Any) -> Any:
        return value if value is None or isinstance(value, bool) else MASK

    # -- text --------------------------------------------------------------------------------

    def text(self, text: str) -> str:
        """``text`` with the secrets it spells out masked (see the module's docstring).

        >>> DEFAULT_MASKER.text("POST failed: {'password': 'hunter2', 'user': 'ada'}")
        "POST failed: {'password': '********', 'user': 'ada'}"
        """
        # Each pattern runs only when its mark is in the text: most strings have none.
        if "input_value=" in text:
            text = _INPUT_VALUE.sub(f"input_value={MASK}", text)
        if "://" in text:
            text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}@", text)
        if "eyJ" in text:
            text = _JWT.sub(MASK, text)
        squashed = _squash(text)
        if not any(word in squashed for word in self.words):
            return text  # no key in it can name a secret
        if ":" in text or "=" in text:  # Authorization: Basic xyz, auth=Bearer xyz
            lowered = text.lower()
            if any(word in lowered for word in _SCHEME_WORDS):
                text = _SCHEME.sub(self._scheme, text)
        if ":" in text:
            text = _HEADER_LINE.sub(self._header, text)
        if '"' in text or "'" in text:
            text = self._after_quoted_keys(text)
        if "=" in text:
            text = self._after_bare_keys(text)
        return text

    def _scheme(self, match: re.Match[str]) -> str:
        if not self.is_secret(match["key"]):
            return match[0]
        return match[0][: match.start("value") - match.start()] + MASK

    def _header(self, match: re.Match[str]) -> str:
        return match["head"] + MASK if self.is_secret(match["key"]) else match[0]

    def _after_quoted_keys(self, text: str) -> str:
        """``"key": value``, ``'key': value``, ``"key" => value``, ``'key'=value``."""
        out: list[str] = []
        done = position = 0
        while (match := _QUOTED_KEY.search(text, position)) is not None:
            position = match.end("key")  # a key's value may hold more keys: look inside
            if match.end() >= len(text) or not self.is_secret(match["key"]):
                continue
            end, replacement = _value_span(text, match.end(), quote=match["q"])
            if end > match.end():
                out += [text[done : match.end()], replacement]
                done = position = end
        out.append(text[done:])
        return "".join(out)

    def _after_bare_keys(self, text: str) -> str:
        """``key=value`` (no spaces): found from each ``=``, which is cheaper than a regex
        that tries every position of a long text."""
        out: list[str] = []
        done = 0
        index = text.find("=")
        while index != -1:
            start = index + 1
            key = _bare_key_before(text, index, done)
            if key and text[start : start + 1] not in ("=", "") and self.is_secret(key):
                end, replacement = _value_span(text, start, quote=None)
                if end > start:
                    out += [text[done:start], replacement]
                    done = end
            index = text.find("=", max(start, done))
        out.append(text[done:])
        return "".join(out)

    # -- exceptions --------------------------------------------------------------------------

    def exception(self, exc: BaseException) -> str:
        """``Type: message`` (``Type`` alone for an empty message) for a job's error and
        the log, secrets masked. A pydantic ``ValidationError`` gives its fields and
        problems without the inputs; a :class:`PayloadError` its own message (it says
        what it is)."""
        if isinstance(exc, ValidationError):
            count = exc.error_count()
            text = (
                f"ValidationError: {count} validation error{'s' if count != 1 else ''} for "
                f"{exc.title}: {validation_summary(exc)}"
            )
        elif isinstance(exc, PayloadError):
            text = str(exc)
        else:
            message = _message_of(exc)
            text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
        return self.text(text)

    def traceback(self, exc: BaseException) -> str:
        """The formatted traceback of ``exc`` (chained ones included), secrets masked."""
        return self.text("".join(tb.format_exception(type(exc), exc, exc.__traceback__)))


DEFAULT_MASKER = Masker()
"""The default secret words, for code that has no app (and its ``mask_fields``) at hand."""


def _bare_key_before(text: str, index: int, floor: int) -> str:
    """The key that ends just before ``index`` (a ``=``), or ""."""
    start = index
    lowest = max(floor, index - 64)
    while start > lowest and text[start - 1] in _KEY_CHARS_SET:
        start -= 1
    if start == index or (start > 0 and text[start - 1] in _KEY_CHARS_SET):
        return ""  # no key, or one longer than 64 characters
    key = text[start:index]
    return key if key[0].isalpha() or key[0] == "_" else ""


def _value_span(text: str, start: int, *, quote: str | None) -> tuple[int, str]:
    """Where the value that begins at ``start`` ends, and what replaces it."""
    first = text[start]
    prefix = _literal_prefix(text, start)
    if prefix:  # a Python literal: b'...', rb"...", u'...', f'...'
        mark = text[start + prefix]
        end = _quoted_end(text, start + prefix + 1, mark)
        return end, f"{text[start : start + prefix]}{mark}{MASK}{mark}"
    if first == "\\" and text[start + 1 : start + 2] in ('"', "'"):
        mark = text[start : start + 2]
        end = _quoted_end(text, start + 2, mark)
        return end, f"{mark}{MASK}{mark}"
    if first in "\"'":
        end = _quoted_end(text, start + 1, first)
        return end, f"{first}{MASK}{first}"
    if first in _CLOSE:
        end = _balanced_end(text, start)
        mark = (quote or "")[-1:] or '"'
        return end, f"{mark}{MASK}{mark}"
    end = start
    while end < len(text) and text[end] not in _BARE_END:
        end += 1
    if end == start or text[start:end] in _NOT_SECRET:
        return start, ""
    return end, MASK


_PREFIXES_OF_TWO = frozenset({"br", "rb", "fr", "rf"})


def _literal_prefix(text: str, start: int) -> int:
    """The length of a Python string literal's prefix at ``start`` (``b`` of ``b'x'``,
    ``rb`` of ``rb"x"``), 0 when none is there."""
    if text[start + 2 : start + 3] in ('"', "'") and text[start : start + 2].lower() in (
        _PREFIXES_OF_TWO
    ):
        return 2
    if text[start + 1 : start + 2] in ('"', "'") and text[start] in "bBrRuUfF":
        return 1
    return 0


def _quoted_end(text: str, start: int, mark: str) -> int:
    """The index just past the closing ``mark`` (a quote, maybe escaped) from ``start``."""
    index = start
    while index < len(text):
        if text.startswith(mark, index):
            return index + len(mark)
        if text[index] == "\\" and len(mark) == 1:
            index += 2
            continue
        index += 1
    return len(text)


def _balanced_end(text: str, start: int) -> int:
    """The index just past the bracket that closes the one at ``start`` (quote-aware)."""
    depth = 0
    index = start
    quote: str | None = None
    while index < len(text):
        char = text[index]
        if quote is not None:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char in _CLOSE:
            depth += 1
        elif char in _CLOSE.values():
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    return len(text)


def _message_of(exc: BaseException) -> str:
    """``str(exc)``, or what Python's tracebacks say when that raises or is not text
    (a handler's exception class may break its own ``__str__``)."""
    try:
        message = str(exc)
    except Exception:
        return "<exception str() failed>"
    return message
