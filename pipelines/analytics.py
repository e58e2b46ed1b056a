"""The ``analytics`` queue: daily, weekly and monthly snapshots, 2 attempts.

A snapshot aggregates the samples of each metric (one number, or a series
such as hourly counts) into count, sum, average, minimum and maximum, and
names the calendar window it covers: the day, the ISO week (Monday to
Sunday) or the month containing ``date``. The same payload always gives the
same result.

::

    from pipelines.analytics import snapshot

    snapshot.enqueue({"period": "weekly", "date": "2025-11-05",
                      "metrics": {"messages_sent": [120, 80, 95], "response_rate": 0.93}})
"""

from __future__ import annotations

import calendar
import datetime
import math
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, FiniteFloat

from framework import handler

__all__ = ["AnalyticsSnapshot", "aggregate", "snapshot", "window"]

MAX_METRICS = 500
MAX_SAMPLES = 100_000

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_METRIC = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,127}$")

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


class AnalyticsSnapshot(BaseModel):
    """The metrics of one period; each value is a number or a non-empty list of numbers."""

    model_config = ConfigDict(extra="forbid")

    period: Period
    date: Annotated[str, AfterValidator(_iso_date)]
    metrics: Annotated[
        dict[str, Samples],
        Field(min_length=1, max_length=MAX_METRICS),
        AfterValidator(_metric_names),
    ]


def window(period: Period, date: datetime.date) -> tuple[datetime.date, datetime.date]:
    """The first and last day of the ``period`` that contains ``date``."""
    if period == "daily":
        return date, date
    if period == "weekly":
        monday = date - datetime.timedelta(days=date.weekday())
        return monday, monday + datetime.timedelta(days=6)
    last = calendar.monthrange(date.year, date.month)[1]
    return date.replace(day=1), date.replace(day=last)


def aggregate(samples: float | list[float]) -> dict[str, float | int]:
    """``{"count", "sum", "avg", "min", "max"}`` of the samples (``math.fsum``: exact sums)."""
    values = samples if isinstance(samples, list) else [samples]
    total = math.fsum(values)
    return {
        "count": len(values),
        "sum": total,
        "avg": total / len(values),
        "min": min(values),
        "max": max(values),
    }


@handler("analytics")
def snapshot(payload: AnalyticsSnapshot) -> dict[str, Any]:
    """Aggregate every metric; return ``{"period", "date", "window", "metrics"}``.

    ``window`` is ``{"start", "end"}`` (ISO dates); ``metrics`` maps each name,
    sorted, to :func:`aggregate`'s result.
    """
    start, end = window(payload.period, datetime.date.fromisoformat(payload.date))
    return {
        "period": payload.period,
        "date": payload.date,
        "window": {"start": start.isoformat(), "end": end.isoformat()},
        "metrics": {name: aggregate(payload.metrics[name]) for name in sorted(payload.metrics)},
    }
