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
  ``analytics:daily:<zone>:<date>`` (:func:`daily_key`); weekly and monthly
  snapshots add up the daily records of their zone, and name the days they did
  not find. ``coverage`` says how much of the window the numbers saw: a
  snapshot never claims minutes it could not read. A minute without a metrics
  key is a quiet minute only when something proves the metrics were kept then
  (:func:`_observed_since`); otherwise (Redis emptied, metrics expired) it was
  not read. Without ``date``, the window is the last *complete* period before the
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
    "legacy_daily_key",
    "exact_sum",
    "snapshot",
    "window",
]

MAX_METRICS = 500
MAX_SAMPLES = 100_000
KEEP_DAILY = 400 * 86400
"""Seconds a daily snapshot's counts are kept for the weekly and monthly ones (bounded)."""
COUNTS = ("completed", "failed", "retried")
FIRST_DAY = datetime.date(1970, 1, 1)
LAST_DAY = datetime.date(9998, 12, 31)
"""The dates a payload's ``date`` and ``tick`` may name: a window reaches a month around
its date, which must stay within the calendar Python counts (years 1 to 9999)."""
OBSERVED_KEY = "analytics:metrics-observed-since"
"""The cache key of when the analytics jobs first found this Redis keeping metrics (epoch
seconds): emptied with the metrics (FLUSHDB, a new server), so it proves that a minute
after it without a metrics key had nothing to count."""

_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_METRIC = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,127}\Z")

Period = Literal["daily", "weekly", "monthly"]
Samples = FiniteFloat | Annotated[list[FiniteFloat], Field(min_length=1, max_length=MAX_SAMPLES)]


_BOUNDS = f"between {FIRST_DAY.isoformat()} and {LAST_DAY.isoformat()}"


def _iso_date(value: str) -> str:
    try:
        if not _ISO_DATE.match(value):
            raise ValueError
        day = datetime.date.fromisoformat(value)
    except ValueError:
        raise ValueError("must be a calendar date written YYYY-MM-DD, e.g. 2025-11-05") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"must be a date {_BOUNDS}")
    return value


def _bounded_tick(value: datetime.datetime) -> datetime.datetime:
    # its own date (converting first could overflow): any zone is within a day of it
    if not FIRST_DAY <= value.date() <= LAST_DAY:
        raise ValueError(f"must be a time {_BOUNDS}")
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
    tick: Annotated[AwareDatetime, AfterValidator(_bounded_tick)] | None = None
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


def daily_key(day: datetime.date, zone: str = "UTC") -> str:
    """The cache key (under the app's cache prefix) of one day's job counts in ``zone``
    (an IANA name): ``analytics:daily:Europe/Berlin:2025-11-05``. Each zone's days are
    other hours, so each has its own records."""
    return f"analytics:daily:{zone}:{day.isoformat()}"


def legacy_daily_key(day: datetime.date) -> str:
    """Where a day's counts were stored before the per-zone keys, whatever its zone: read as UTC's
    (the default zone, and the CRM's schedules'), until those records expire."""
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
        queues, coverage = _day_counts(app, conn, start, zone, now)
        if coverage["complete"]:
            record = {"zone": payload.timezone, "queues": queues, "coverage": coverage}
            conn.set(
                app.keys.cache(daily_key(start, payload.timezone)),
                json.dumps(record, separators=(",", ":")),
                ex=KEEP_DAILY,
            )
    else:
        queues, coverage = _sum_of_days(app, conn, start, end, payload.timezone)
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
    app: Hueyard,
    conn: redis.Redis,
    day: datetime.date,
    zone: zoneinfo.ZoneInfo,
    now: datetime.datetime,
) -> tuple[dict[str, dict[str, int]], dict[str, Any]]:
    """Per-queue counts of one day (in ``zone``) from the per-minute metrics still kept.

    ``minutes_read`` counts the day's minutes that were read *and* observed: at or
    after the first proof that metrics were kept (:func:`_observed_since`, or the
    oldest minute with a metrics key). A day is complete when it is over and every
    one of its minutes was.
    """
    from framework.jobs import Jobs

    since = datetime.datetime.combine(day, datetime.time(), zone)
    until = datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time(), zone)
    day_minutes = round((until - since).total_seconds() / 60)  # 1380 to 1500 across DST
    # the whole span kept, not just the day: a key before the day proves it observed
    span = max(app.settings.consumer.metrics_ttl // 60, 1)
    marked = _observed_since(app, conn, now)
    jobs = Jobs(app)
    queues: dict[str, dict[str, int]] = {}
    read: set[datetime.datetime] = set()
    first_kept: datetime.datetime | None = None
    for queue in app.queues:
        points = jobs.metrics(queue, span)
        read.update(p.minute for p in points)
        kept = [p.minute for p in points if p.kept]
        if kept and (first_kept is None or kept[0] < first_kept):
            first_kept = kept[0]  # points are oldest first
        ours = [p for p in points if since <= p.minute < until]
        queues[queue] = {count: sum(getattr(p, count) for p in ours) for count in COUNTS}
    proofs = [proof for proof in (first_kept, marked) if proof is not None]
    observed = min(proofs) if proofs else None
    minutes_read = sum(
        1
        for minute in read
        if since <= minute < until and observed is not None and minute >= observed
    )
    return queues, {
        "minutes": day_minutes,
        "minutes_read": minutes_read,
        "complete": minutes_read == day_minutes and until <= now,
    }


def _observed_since(
    app: Hueyard, conn: redis.Redis, now: datetime.datetime
) -> datetime.datetime | None:
    """Since when this Redis is known to keep the metrics: the time :data:`OBSERVED_KEY`
    holds, set to ``now`` when missing (so the first run after a FLUSHDB or on a new
    server proves only what comes after it), its expiry renewed (bounded)."""
    key = app.keys.cache(OBSERVED_KEY)
    with conn.pipeline(transaction=False) as pipe:
        pipe.set(key, repr(now.timestamp()), nx=True)
        pipe.expire(key, KEEP_DAILY)
        pipe.get(key)
        value = pipe.execute()[-1]
    try:
        return datetime.datetime.fromtimestamp(float(value), datetime.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None  # planted by something else: proves nothing


def _sum_of_days(
    app: Hueyard, conn: redis.Redis, start: datetime.date, end: datetime.date, zone: str
) -> tuple[dict[str, dict[str, int]], dict[str, Any]]:
    """The stored daily counts of ``zone``'s days ``start`` .. ``end`` added up, and the days
    not found. For UTC, a day stored by an older hueyard (:func:`legacy_daily_key`) counts."""
    days = [start + datetime.timedelta(days=n) for n in range((end - start).days + 1)]
    legacy = zone == "UTC"
    with conn.pipeline(transaction=False) as pipe:  # GETs, not MGET: on a Cluster the
        for day in days:  # days' keys hash to different slots
            pipe.get(app.keys.cache(daily_key(day, zone)))
            if legacy:
                pipe.get(app.keys.cache(legacy_daily_key(day)))
        raw: list[bytes | None] = pipe.execute()
    step = 2 if legacy else 1
    queues: dict[str, dict[str, int]] = {q: dict.fromkeys(COUNTS, 0) for q in app.queues}
    missing = []
    for index, day in enumerate(days):
        record = _daily_record(raw[index * step], zone)
        if record is None and legacy:
            record = _daily_record(raw[index * step + 1], zone)
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


def _daily_record(value: bytes | None, zone: str) -> dict[str, dict[str, int]] | None:
    """A stored day's ``queues``; None if missing, of another zone than ``zone`` (a record
    without one is an older hueyard's: UTC's) or not what :func:`job_counts` wrote."""
    try:
        stored = json.loads(value) if value is not None else None
        if not isinstance(stored, dict) or stored.get("zone", "UTC") != zone:
            return None
        queues = stored["queues"]
        if not isinstance(queues, dict):
            return None
        return {
            str(queue): {count: int(numbers.get(count, 0)) for count in COUNTS}
            for queue, numbers in queues.items()
            if isinstance(numbers, dict)
        }
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
