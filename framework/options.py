"""The options of one enqueue, validated once, and the outcomes of one run.

Every enqueue path takes the same keyword options and builds one
:class:`EnqueueOptions` from them: ``handler.enqueue``, ``handler.enqueue_many``,
``framework.enqueue``, ``framework.enqueue_many``, ``Hueyard.enqueue``,
``Hueyard.enqueue_many`` and ``hueyard enqueue``::

    send_message.enqueue(payload, priority=1, delay=5, attempts=5, keep_completed=0)

An option left out is not stored on the job: the queue's current config
applies when the job runs (see :mod:`framework.policy`).
"""

from __future__ import annotations

import datetime
import difflib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, TypedDict

from framework import defaults
from framework.errors import OptionError
from framework.huey_names import huey_hint
from framework.textgrid import first_unsafe

__all__ = [
    "NO_OPTIONS",
    "OPTION_NAMES",
    "EnqueueArgs",
    "EnqueueManyArgs",
    "EnqueueOptions",
    "EnqueuedIds",
    "Outcome",
    "Stored",
    "check_key",
    "shown",
]


class Outcome(StrEnum):
    """How one run of a job ended; the release script files the job accordingly."""

    COMPLETED = "completed"
    """The handler returned: completed, with its result."""
    FAILED = "failed"
    """Failed for good: attempts spent, cancelled, or unrunnable."""
    RETRY = "retry"
    """Failed, runs again after a delay (delayed)."""
    REQUEUE = "requeue"
    """Interrupted (shutdown): back to waiting at its old place, the attempt not counted."""


class Stored(IntEnum):
    """What the release script did with an :class:`Outcome` (false: nothing)."""

    DROPPED = 0
    """Nothing: the job was no longer the worker's (lease lost, timed out, removed)."""
    AS_ASKED = 1
    """Stored as asked."""
    CANCELLED = 2
    """Failed as cancelled: its cancel was asked while it ran, and it asked to retry or
    to go back to waiting."""
    CORRUPT = 3
    """Failed: its record turned corrupt while it ran (the reason is its error)."""


class EnqueueArgs(TypedDict, total=False):
    """The keyword options every enqueue call takes (``**options: Unpack[EnqueueArgs]``)."""

    priority: int | None
    delay: float | datetime.timedelta | None
    eta: datetime.datetime | None
    attempts: int | None
    keep_completed: int | None
    keep_failed: int | None
    timeout: float | None
    key: str | None
    key_ttl: float | None


class EnqueueManyArgs(EnqueueArgs, total=False):
    """What ``enqueue_many`` takes besides: ``keys``, one per payload (``key=`` names one job)."""

    keys: Sequence[str | None] | None


@dataclass(frozen=True, slots=True)
class EnqueueOptions:
    """One enqueue's options. Built from :class:`EnqueueArgs`; raises :class:`OptionError`.

    - ``priority``: 1 (runs first) to 10 (runs last); default the queue's.
    - ``delay``: seconds (or a timedelta) before the job may run; or
    - ``eta``: an aware datetime when it may run (a naive one is refused: its
      meaning would be a guess).
    - ``attempts``: runs in all, the first included; default the queue's.
    - ``keep_completed`` / ``keep_failed``: Bull's removeOnComplete / removeOnFail
      for this job: 0 deletes it when it finishes, N keeps the newest N.
    - ``timeout``: seconds one run may take; default the queue's.
    - ``key``: makes the enqueue idempotent: while a job of the queue enqueued
      with this key is unfinished (waiting, delayed, paused, active, or
      waiting for a retry), nothing is stored and its id is returned.
    - ``key_ttl``: seconds the key stays taken after that job finished, so a
      late duplicate is refused too (default: freed when it finishes).
    """

    priority: int | None = None
    delay: float | datetime.timedelta | None = None
    eta: datetime.datetime | None = None
    attempts: int | None = None
    keep_completed: int | None = None
    keep_failed: int | None = None
    timeout: float | None = None
    key: str | None = None
    key_ttl: float | None = None

    def __post_init__(self) -> None:
        _whole("priority", self.priority, defaults.PRIORITY_HIGHEST, defaults.PRIORITY_LOWEST,
               f"from {defaults.PRIORITY_HIGHEST} (runs first) to "
               f"{defaults.PRIORITY_LOWEST} (runs last)")  # fmt: skip
        _whole("attempts", self.attempts, 1, defaults.MAX_ATTEMPTS,
               f"from 1 to {defaults.MAX_ATTEMPTS}")  # fmt: skip
        keep = f"from 0 (delete when done) to {defaults.MAX_KEEP:,}"
        _whole("keep_completed", self.keep_completed, 0, defaults.MAX_KEEP, keep)
        _whole("keep_failed", self.keep_failed, 0, defaults.MAX_KEEP, keep)
        if self.timeout is not None:
            _positive_seconds("timeout", self.timeout, defaults.MAX_TIMEOUT)
        if self.key is not None:
            check_key(self.key)
        if self.key_ttl is not None:
            # Whether a key goes with it is the enqueue call's check: enqueue_many's
            # keys=[...] are not options of their own.
            _positive_seconds("key_ttl", self.key_ttl, defaults.MAX_DELAY)
        if self.delay is not None and self.eta is not None:
            raise OptionError("pass either delay= or eta=, not both")
        if self.delay is not None:
            _check_delay(self.delay)
        if self.eta is not None:
            _check_eta(self.eta)

    @classmethod
    def of(cls, options: Mapping[str, Any], also: Iterable[str] = ()) -> EnqueueOptions:
        """The options of an enqueue call's keywords; a name that is none of them (or of
        ``also``, what the call takes besides) is an :class:`OptionError` that names the
        options, and the one meant when it is a typo of one."""
        unknown = [name for name in options if name not in OPTION_NAMES]
        if unknown:
            names = [*OPTION_NAMES, *also]
            huey = huey_hint(unknown[0])
            meant = difflib.get_close_matches(unknown[0], names, n=1)
            if huey is not None:
                hint = f" ({huey})"
            else:
                hint = f" (did you mean {meant[0]}=?)" if meant else ""
            raise OptionError(
                f"{unknown[0]}= is not an enqueue option{hint}; the options are "
                f"{', '.join(f'{name}=' for name in names)}"
            )
        return cls(**options) if options else NO_OPTIONS

    def delay_ms(self, now: datetime.datetime | None = None) -> int:
        """Milliseconds from ``now`` until the job may run (0: at once)."""
        if self.eta is not None:
            now = now or datetime.datetime.now(datetime.UTC)
            return max(int((self.eta - now).total_seconds() * 1000), 0)
        if self.delay is None:
            return 0
        return int(_delay_seconds(self.delay) * 1000)

    def stored(self) -> dict[str, int | float]:
        """The options a job record keeps: those the producer set (record field -> value)."""
        fields = {
            "priority": self.priority,
            "max_attempts": self.attempts,
            "keep_completed": self.keep_completed,
            "keep_failed": self.keep_failed,
            "timeout": self.timeout,
            "key_ttl": self.key_ttl,
        }
        return {name: value for name, value in fields.items() if value is not None}


def check_key(key: object) -> str:
    """A job key as ``key=`` takes one: 1 to 256 characters, no control character, and
    valid UTF-8 text (no lone surrogate)."""
    if (
        not isinstance(key, str)
        or not 1 <= len(key) <= defaults.MAX_KEY_LENGTH
        or first_unsafe(key) is not None
    ):
        raise OptionError(
            f"key={shown(key)} is not allowed; use a string of 1 to {defaults.MAX_KEY_LENGTH} "
            "characters without control characters, line breaks or direction marks, e.g. "
            "'order-1234:confirmation'"
        )
    if not key.isascii():
        try:
            key.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise OptionError(
                f"key={shown(key)} is not valid UTF-8 text (a lone surrogate "
                f"{key[exc.start]!r} at character {exc.start}); build the key from text "
                "decoded with the right encoding"
            ) from None
    return key


def shown(value: object, limit: int = 80) -> str:
    """``repr(value)`` for a message: at most ``limit`` characters, and never an error
    (an int of more than 4,300 digits has no repr)."""
    try:
        text = repr(value)
    except Exception:
        return f"<an int of {value.bit_length():,} bits>" if isinstance(value, int) else "<?>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _whole(name: str, value: object, low: int, high: int | None, allowed: str) -> None:
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        raise OptionError(f"{name}={shown(value)} is not allowed; use a whole number {allowed}")


def _delay_seconds(delay: float | datetime.timedelta) -> float:
    if isinstance(delay, datetime.timedelta):
        return delay.total_seconds()
    return float(delay)


def _check_delay(delay: object) -> None:
    """Seconds (an int or float) or a timedelta, finite, from 0 to ``MAX_DELAY``."""
    seconds = math.nan
    if isinstance(delay, datetime.timedelta):
        seconds = delay.total_seconds()
    elif isinstance(delay, int | float) and not isinstance(delay, bool):
        try:
            seconds = float(delay)
        except OverflowError:  # an int too large for a float
            seconds = math.inf
    if not math.isfinite(seconds) or not 0 <= seconds <= defaults.MAX_DELAY:
        raise OptionError(
            f"delay={shown(delay)} is not allowed; use seconds (or a timedelta) from 0 to "
            f"{defaults.MAX_DELAY:.0f} ({defaults.MAX_DELAY / 86400:.0f} days)"
        )


def _positive_seconds(name: str, value: object, high: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= high
    ):
        raise OptionError(
            f"{name}={shown(value)} is not allowed; use seconds above 0, at most {high:.0f}"
        )


def _check_eta(eta: object) -> None:
    """An aware datetime, at most ``MAX_DELAY`` ahead (one in the past runs at once)."""
    if not isinstance(eta, datetime.datetime):
        raise OptionError(f"eta={shown(eta)} is not allowed; use an aware datetime")
    if eta.tzinfo is None or eta.utcoffset() is None:
        raise OptionError(
            f"eta={eta!r} has no time zone; pass an aware datetime, e.g. "
            "datetime(2025, 11, 6, 10, 0, tzinfo=timezone.utc)"
        )
    try:
        ahead = (eta - datetime.datetime.now(datetime.UTC)).total_seconds()
    except (OverflowError, ValueError):  # its time in UTC is before year 1 or after 9999
        ahead = math.nan
    days = f"{defaults.MAX_DELAY / 86400:.0f} days"
    if not math.isfinite(ahead) or ahead < -defaults.MAX_DELAY:
        raise OptionError(
            f"eta={eta.isoformat()} is out of range; use a time from {days} ago (a past "
            f"time runs at once) to {days} ahead"
        )
    if ahead > defaults.MAX_DELAY:
        raise OptionError(f"eta={eta.isoformat()} is more than {days} ahead; use a nearer time")


class EnqueuedIds(list[str]):
    """What ``enqueue_many`` returns: the jobs' ids in the order of the payloads, and
    ``existing``, the positions whose key was held (by a job of an earlier call, or by
    an earlier payload of this one): nothing was stored for those, their id is the
    holder's. Compares equal to the plain list of ids::

        ids = send_message.enqueue_many(payloads, keys=keys)
        new = len(ids) - len(ids.existing)
    """

    def __init__(
        self,
        ids: Iterable[str] = (),
        existing: Iterable[int] = (),
        children: Iterable[tuple[str, str]] = (),
    ) -> None:
        super().__init__(ids)
        self.existing = frozenset(existing)
        self.children = tuple(children)
        """For a parent's spawn: ``(id, state)`` of each job that is the parent's child,
        new ones ``pending``, held ones ``pending``, ``completed`` or ``failed``."""


NO_OPTIONS = EnqueueOptions()
"""An enqueue without options: every policy is the queue's."""

OPTION_NAMES = tuple(EnqueueOptions.__dataclass_fields__)
"""The enqueue options, by name."""
"""The names of the options, in their order (what :meth:`EnqueueOptions.of` takes)."""
