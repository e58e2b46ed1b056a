"""When a schedule's ticks fall, and which of them a consumer fires now.

A ``[schedules.<name>]`` table (:class:`~framework.settings.ScheduleSettings`)
gives a cron expression in a time zone (parsed by `cronsim`_, which follows
cron's own rules across daylight-saving changes: a time that does not exist
that day runs at the next one that does, a time that happens twice runs
once) or a period in seconds (``every``; ticks fall on its multiples since
the epoch, so every consumer agrees on them).

:func:`due` decides, from the last tick fired (kept in Redis) and the time
now, which ticks to fire: every tick that is *on time* (at most
:func:`grace` old), and of the ticks missed while no consumer ran, the
latest one (``catch_up = "last"``) or none (``"none"``).

.. _cronsim: https://github.com/cuu508/cronsim
"""

from __future__ import annotations

import datetime
import math
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from cronsim import CronSim

from framework.settings import ScheduleSettings

__all__ = ["MAX_ON_TIME_TICKS", "Due", "Schedule", "due", "grace"]

UTC = datetime.UTC

MAX_ON_TIME_TICKS = 100
"""Ticks one round fires at most (a round is late by at most its grace)."""


@dataclass(frozen=True)
class Schedule:
    """One schedule of the config, with its time zone resolved."""

    name: str
    queue: str
    handler: str
    """The handler's short name on ``queue``."""
    cron: str | None
    every: float | None
    timezone: zoneinfo.ZoneInfo
    payload: dict[str, Any] = field(default_factory=dict)
    catch_up: Literal["last", "none"] = "last"
    tick_field: str | None = None
    overdue_after: float | None = None
    description: str = ""

    @classmethod
    def from_settings(cls, name: str, settings: ScheduleSettings) -> Schedule:
        queue, _, handler = settings.handler.partition(".")
        return cls(
            name=name,
            queue=queue,
            handler=handler,
            cron=settings.cron,
            every=settings.every,
            timezone=zoneinfo.ZoneInfo(settings.timezone),
            payload=dict(settings.payload),
            catch_up=settings.catch_up,
            tick_field=settings.tick_field,
            overdue_after=settings.overdue_after,
            description=settings.description,
        )

    @property
    def spec(self) -> str:
        """``cron 5 0 * * * (UTC)`` or ``every 300 s``: how it is shown."""
        if self.cron is not None:
            return f"cron {self.cron} ({self.timezone.key})"
        return f"every {self.every:g} s"

    def ticks_after(self, moment: datetime.datetime) -> Iterator[datetime.datetime]:
        """Its ticks strictly after ``moment``, in order, in its time zone."""
        if self.every is not None:
            step = self.every
            n = math.floor(moment.timestamp() / step) + 1
            while True:
                yield datetime.datetime.fromtimestamp(n * step, self.timezone)
                n += 1
        assert self.cron is not None
        # cronsim works in whole minutes and yields ticks at or after its start. Times
        # compare in UTC: two times of one zone compare as wall-clock times, blind to
        # which pass of a repeated hour they are in. cronsim started in the second pass
        # yields ticks of that pass, which never fire: it starts from the first.
        instant = moment.astimezone(UTC)
        start = instant.astimezone(self.timezone).replace(fold=0)
        for tick in CronSim(self.cron, start):
            if not _second_pass(tick) and tick.astimezone(UTC) > instant:
                yield tick

    def next_tick(self, after: datetime.datetime) -> datetime.datetime:
        return next(self.ticks_after(after))

    def latest_tick(self, at: datetime.datetime) -> datetime.datetime:
        """Its latest tick at or before ``at``."""
        if self.every is not None:
            n = math.floor(at.timestamp() / self.every)
            return datetime.datetime.fromtimestamp(n * self.every, self.timezone)
        assert self.cron is not None
        # cronsim yields ticks strictly before its start. Added in UTC (an addition to
        # a local time loses its pass of a repeated hour); a start in the second pass
        # moves an hour on, past the repeated hour, so that cronsim walks back through
        # both passes to the latest first-pass tick (see ticks_after).
        instant = at.astimezone(UTC)
        start = (instant + datetime.timedelta(microseconds=1)).astimezone(self.timezone)
        if _second_pass(start):
            start = (start + datetime.timedelta(hours=1)).replace(fold=0)
        for tick in CronSim(self.cron, start, reverse=True):
            if not _second_pass(tick) and tick.astimezone(UTC) <= instant:
                return tick
        raise AssertionError("cronsim's iteration back in time ended")  # it never does

    def period(self, at: datetime.datetime) -> float:
        """Seconds between the tick before ``at`` and the one after it."""
        if self.every is not None:
            return self.every
        before = self.latest_tick(at)
        # In UTC: two times of one zone subtract as wall-clock times, blind to a DST change.
        return (self.next_tick(before).astimezone(UTC) - before.astimezone(UTC)).total_seconds()

    def overdue_limit(self, at: datetime.datetime) -> float:
        """Seconds a due tick may go unfired before the schedule is overdue:
        ``overdue_after``, else one period (the one around ``at``)."""
        return self.overdue_after if self.overdue_after is not None else self.period(at)


def _second_pass(moment: datetime.datetime) -> bool:
    """Whether ``moment`` is a local time in the second pass of an hour the clocks went
    back over (the docs: a time that happens twice fires once, in its first pass)."""
    return moment.fold == 1 and moment.replace(fold=0).utcoffset() != moment.utcoffset()


def grace(schedule: Schedule, at: datetime.datetime, scheduler_interval: float) -> float:
    """Seconds a tick may be late and still count as on time (not missed).

    Half a period, at most a minute, and at least two scheduler rounds.
    """
    return max(min(schedule.period(at) / 2, 60.0), 2 * scheduler_interval)


@dataclass(frozen=True)
class Due:
    """What one round does for a schedule."""

    fire: list[datetime.datetime]
    """Ticks to enqueue now, oldest first."""
    last: datetime.datetime | None
    """The newest tick now accounted for (fired, or skipped as missed)."""


def due(
    schedule: Schedule,
    last: datetime.datetime | None,
    now: datetime.datetime,
    on_time: float,
) -> Due:
    """The ticks to fire at ``now``, the last tick fired being ``last``.

    A tick at most ``on_time`` seconds old is fired. Older ticks after
    ``last`` were missed (no consumer ran): the latest of them is fired with
    ``catch_up = "last"``, none with ``"none"``. A schedule that never fired
    (``last`` None) catches nothing up: its first tick is the next on-time one.
    """
    edge = now - datetime.timedelta(seconds=on_time)
    fire = list(_between(schedule, edge if last is None or last < edge else last, now))
    if last is not None and schedule.catch_up == "last":
        missed = schedule.latest_tick(edge)  # older than every on-time tick
        if missed > last:
            fire.insert(0, missed)
    latest = schedule.latest_tick(now)
    return Due(fire, latest if last is None else max(latest, last))


def _between(
    schedule: Schedule, after: datetime.datetime, until: datetime.datetime
) -> Iterator[datetime.datetime]:
    """Ticks in (after, until], at most :data:`MAX_ON_TIME_TICKS` of them."""
    for count, tick in enumerate(schedule.ticks_after(after)):
        if tick > until or count >= MAX_ON_TIME_TICKS:
            return
        yield tick


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(UTC)
