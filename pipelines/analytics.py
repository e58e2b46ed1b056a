"""The ``analytics`` queue: daily, weekly and monthly snapshots, 2 attempts.

A snapshot names the calendar window it covers (the day, the ISO week
Monday to Sunday, or the month containing ``date``) and does one of two
things:

* **Given metrics** (``metrics`` in the payload: a number or a series per
  name), it aggregates each into count, sum, average, minimum and maximum.
  The same payload always gives the same result. A series whose sum is
  beyond a float (``[1e308, 1e308]``) is refused at enqueue, naming the metric.
* **Without metrics** (what the schedules in ``config/queues.toml`` enqueue),
  it reports the job system's own numbers for the window, per queue:
  completed, failed and retried jobs (so ``messages.completed`` is the
  WhatsApp messages sent that day). A daily snapshot reads the per-minute
  metrics hueyard keeps (``[consumer] metrics_ttl``, 25 hours by default) and
  stores its counts for :data:`KEEP_DAILY` seconds under the cache key
  ``analytics:daily:<date>``; weekly and monthly snapshots add up those daily
  records, and name the days they did not find. ``coverage`` says how much of
  the window the numbers saw: a snapshot never claims minutes it could not
  read. Without ``date``, the window is the last *complete* period before the
  tick (``tick``, which the schedule sets) or before now: the daily snapshot
  at 00:05 covers yesterday, the Monday one last week, the one on the 1st
  last month.

::

    from pipelines.analytics import snapshot

    snapshot.enqueue({"period": "weekly", "date": "2025-11-05",
                      "metrics": {"messages_sent": [120, 80, 95], "response_rate": 0.93}})
    snapshot.enqueue({"period": "daily"})   # yesterday's job counts, per queue
"""

from __future__ import annotations

import calendar
import datetime
import json
import math
import re
import zoneinfo
from typing import TYPE_CHECKING, Annotated, Any, Literal

import redis
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    model_validator,
)

from framework import handler
from framework.settings import time_zone

if TYPE_CHECKING:
    from framework.application import Hueyard

__all__ = [
    "KEEP_DAILY",
    "AnalyticsSnapshot",
    "aggregate",
    "daily_key",
    "exact_sum",
    "snapshot",
    "window",
]

MAX_METRICS = 500
MAX_SAMPLES = 100_000
KEEP_DAILY = 400 * 86400
"""Seconds a daily snapshot's counts are kept for the weekly and monthly ones (bounded)."""
COUNTS = ("completed", "failed", "retried")

_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_METRIC = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,127}\Z")

Period = Literal["daily", "weekly", "monthly"]
Samples = FiniteFloat | Annotated[list[FiniteFloat], Field(min_length=1, max_length=MAX_SAMPLES)]


def _iso_date(value: str) -> str:
    try:
        if not _ISO_DATE.match(value):
            raise ValueError
        datetime.date.fromisoformat(value)
    except ValueError:
        raise ValueError("must be a calendar date written YYYY-MM-DD, e.g. 2025-11-05") from None
    return value


def _metric_names(metrics: dict[str, Any]) -> dict[str, Any]:
    bad = [name for name in metrics if not _METRIC.match(name)]
    if bad:
        raise ValueError(
            f"metric names must start with a letter and use letters, digits, '_', '.', ':' "
            f"or '-' (at most 128); refused: {', '.join(repr(name) for name in bad[:5])}"
        )
    return metrics


def _sums_fit(metrics: dict[str, float | list[float]]) -> dict[str, float | list[float]]:
    """Refuse, at enqueue, a series whose sum no float holds: the job could never finish."""
    for name, samples in metrics.items():
        try:
            exact_sum(samples if isinstance(samples, list) else [samples])
        except OverflowError:
            raise ValueError(
                f"metric {name!r}: the sum of its samples is beyond the largest number a "
                "snapshot can hold (about 1.8e308); send them in a larger unit (thousands, "
                "millions) so that they add up to less"
            ) from None
    return metrics


class AnalyticsSnapshot(BaseModel):
    """One period: aggregate the given metrics, or report the job system's counts."""

    model_config = ConfigDict(extra="forbid")

    period: Period
    date: Annotated[str, AfterValidator(_iso_date)] | None = None
    """A day of the window; without it, the last complete period before ``tick`` (or now)."""
    metrics: (
        Annotated[
            dict[str, Samples],
            Field(min_length=1, max_length=MAX_METRICS),
            AfterValidator(_metric_names),
            AfterValidator(_sums_fit),
        ]
        | None
    ) = None
    """Numbers to aggregate; without them, the job counts of every queue."""
    tick: AwareDatetime | None = None
    """When the schedule's tick fell (its ``tick_field``)."""
    timezone: Annotated[str, AfterValidator(time_zone)] = "UTC"
    """Where days begin, for the window."""

    @model_validator(mode="after")
    def _date_with_metrics(self) -> AnalyticsSnapshot:
        if self.metrics is not None and self.date is None:
            raise ValueError("date is required with metrics: a day of the period they cover")
        return self


def window(period: Period, date: datetime.date) -> tuple[datetime.date, datetime.date]:
    """The first and last day of the ``period`` that contains ``date``."""
    if period == "daily":
        return date, date
    if period == "weekly":
        monday = date - datetime.timedelta(days=date.weekday())
        return monday, monday + datetime.timedelta(days=6)
    last = calendar.monthrange(date.year, date.month)[1]
    return date.replace(day=1), date.replace(day=last)


def previous_window(period: Period, today: datetime.date) -> tuple[datetime.date, datetime.date]:
    """The last complete ``period`` before the one that contains ``today``."""
    start, _ = window(period, today)
    return window(period, start - datetime.timedelta(days=1))


def exact_sum(values: list[float]) -> float:
    """The sum of ``values``, rounded once (``math.fsum``). Raises ``OverflowError`` only
    when the sum itself is beyond a float: ``fsum`` also gives up when a partial sum
    overflows (``[1e308, 1e308, -1e308]``), then the sum is taken as an exact fraction."""
    try:
        return math.fsum(values)
    except OverflowError:
        # every float is an integer multiple of 2**-1074: add those integers exactly, then
        # divide once (correctly rounded; OverflowError when the quotient does not fit)
        total = 0
        for value in values:
            numerator, denominator = value.as_integer_ratio()
            total += numerator << (_SMALLEST - denominator.bit_length() + 1)
        return total / (1 << _SMALLEST)


_SMALLEST = 1074
"""The smallest float is 2**-1074 (a subnormal)."""


def aggregate(samples: float | list[float]) -> dict[str, float | int]:
    """``{"count", "sum", "avg", "min", "max"}`` of the samples (:func:`exact_sum`). Raises
    ``OverflowError`` for a sum beyond a float, which :class:`AnalyticsSnapshot` refuses."""
    values = samples if isinstance(samples, list) else [samples]
    total = exact_sum(values)
    return {
        "count": len(values),
        "sum": total,
        "avg": total / len(values),
        "min": min(values),
        "max": max(values),
    }


def daily_key(day: datetime.date) -> str:
    """The cache key (under the app's cache prefix) of one day's job counts."""
    return f"analytics:daily:{day.isoformat()}"


@handler("analytics")
def snapshot(payload: AnalyticsSnapshot) -> dict[str, Any]:
    """``{"period", "date", "window", "metrics"}`` for given metrics (each name, sorted,
    to :func:`aggregate`'s result); else ``{"period", "date", "window", "source": "jobs",
    "queues", "total", "coverage"}`` (see the module's docstring)."""
    if payload.metrics is not None:
        assert payload.date is not None
        start, end = window(payload.period, datetime.date.fromisoformat(payload.date))
        return {
            "period": payload.period,
            "date": payload.date,
            "window": {"start": start.isoformat(), "end": end.isoformat()},
            "metrics": {name: aggregate(payload.metrics[name]) for name in sorted(payload.metrics)},
        }
    import framework  # the running app, at run time only

    return job_counts(framework.get_app(), payload, datetime.datetime.now(datetime.UTC))


def job_counts(app: Hueyard, payload: AnalyticsSnapshot, now: datetime.datetime) -> dict[str, Any]:
    """The job system's counts over the payload's window, as of ``now``."""
    zone = zoneinfo.ZoneInfo(payload.timezone)
    if payload.date is not None:
        start, end = window(payload.period, datetime.date.fromisoformat(payload.date))
    else:
        start, end = previous_window(payload.period, (payload.tick or now).astimezone(zone).date())
    conn = app.clients.client()
    if payload.period == "daily":
        queues, coverage = _day_counts(app, start, zone, now)
        if coverage["complete"]:
            record = json.dumps({"queues": queues, "coverage": coverage}, separators=(",", ":"))
            conn.set(app.keys.cache(daily_key(start)), record, ex=KEEP_DAILY)
    else:
        queues, coverage = _sum_of_days(app, conn, start, end)
    total = {count: sum(numbers[count] for numbers in queues.values()) for count in COUNTS}
    return {
        "period": payload.period,
        "date": start.isoformat(),
        "window": {"start": start.isoformat(), "end": end.isoformat()},
        "source": "jobs",
        "queues": queues,
        "total": total,
        "coverage": coverage,
    }


def _day_counts(
    app: Hueyard, day: datetime.date, zone: zoneinfo.ZoneInfo, now: datetime.datetime
) -> tuple[dict[str, dict[str, int]], dict[str, Any]]:
    """Per-queue counts of one day (in ``zone``) from the per-minute metrics still kept."""
    from framework.jobs import Jobs

    since = datetime.datetime.combine(day, datetime.time(), zone)
    until = datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time(), zone)
    day_minutes = round((until - since).total_seconds() / 60)  # 1380 to 1500 across DST
    kept = max(app.settings.consumer.metrics_ttl // 60, 1)
    wanted = math.ceil((now - since).total_seconds() / 60) + 1
    minutes = max(min(wanted, kept), 1)
    jobs = Jobs(app)
    queues: dict[str, dict[str, int]] = {}
    seen: set[datetime.datetime] = set()
    for queue in app.queues:
        points = [p for p in jobs.metrics(queue, minutes) if since <= p.minute < until]
        seen.update(p.minute for p in points)
        queues[queue] = {count: sum(getattr(p, count) for p in points) for count in COUNTS}
    read = len(seen)
    return queues, {
        "minutes": day_minutes,
        "minutes_read": read,
        "complete": read == day_minutes and until <= now,
    }


def _sum_of_days(
    app: Hueyard, conn: redis.Redis, start: datetime.date, end: datetime.date
) -> tuple[dict[str, dict[str, int]], dict[str, Any]]:
    """The stored daily counts of ``start`` .. ``end`` added up, and the days not found."""
    days = [start + datetime.timedelta(days=n) for n in range((end - start).days + 1)]
    with conn.pipeline(transaction=False) as pipe:  # GETs, not MGET: on a Cluster the
        for day in days:  # days' keys hash to different slots
            pipe.get(app.keys.cache(daily_key(day)))
        raw: list[bytes | None] = pipe.execute()
    queues: dict[str, dict[str, int]] = {q: dict.fromkeys(COUNTS, 0) for q in app.queues}
    missing = []
    for day, value in zip(days, raw, strict=True):
        record = _daily_record(value)
        if record is None:
            missing.append(day.isoformat())
            continue
        for queue, numbers in record.items():
            into = queues.setdefault(queue, dict.fromkeys(COUNTS, 0))
            for count in COUNTS:
                into[count] += numbers.get(count, 0)
    return queues, {
        "days": len(days),
        "days_found": len(days) - len(missing),
        "missing": missing,
        "complete": not missing,
    }


def _daily_record(value: bytes | None) -> dict[str, dict[str, int]] | None:
    """A stored day's ``queues``; None if missing or not what :func:`job_counts` wrote."""
    try:
        queues = json.loads(value)["queues"] if value is not None else None
        if not isinstance(queues, dict):
            return None
        return {
            str(queue): {count: int(numbers.get(count, 0)) for count in COUNTS}
            for queue, numbers in queues.items()
            if isinstance(numbers, dict)
        }
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
