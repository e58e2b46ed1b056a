"""Charts drawn on the server as SVG geometry: no JavaScript, no build step.

The functions here only compute coordinates; ``templates/_charts.html``
turns a :class:`Chart` into ``<svg>`` markup (autoescaped like everything
else). Colours come from CSS classes, so the charts follow dark mode.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from dataclasses import dataclass

from framework.metrics import MetricPoint

__all__ = ["Chart", "Series", "counts_chart", "line_chart", "sparkline", "timing_chart"]

_LEFT, _RIGHT, _TOP, _BOTTOM = 44, 8, 10, 20  # plot margins of a full chart


@dataclass(frozen=True)
class Series:
    """One line: its polyline segments (a gap in the data breaks the line)."""

    name: str
    css: str
    segments: tuple[str, ...]
    latest: float | None
    peak: float | None


@dataclass(frozen=True)
class Chart:
    title: str
    width: int
    height: int
    series: tuple[Series, ...]
    y_max: float
    unit: str
    x_labels: tuple[tuple[float, str], ...] = ()
    y_labels: tuple[tuple[float, str], ...] = ()
    plot: tuple[float, float, float, float] = (0, 0, 0, 0)  # x, y, width, height

    @property
    def empty(self) -> bool:
        return all(s.peak in (None, 0) for s in self.series)


def _nice_max(value: float) -> float:
    """The next round number at or above ``value`` (1, 2, 5 x 10^n)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)  # pragma: no cover - the loop always returns


def _label(value: float, unit: str) -> str:
    if unit == "ms" and value >= 1000:
        return f"{value / 1000:g} s"
    return f"{value:g}{' ' + unit if unit else ''}"


def _segments(
    values: Sequence[float | None], plot: tuple[float, float, float, float], y_max: float
) -> tuple[str, ...]:
    x0, y0, w, h = plot
    count = len(values)
    step = w / max(count - 1, 1)
    segments: list[str] = []
    current: list[str] = []
    for index, value in enumerate(values):
        if value is None:
            if current:
                segments.append(" ".join(current))
            current = []
            continue
        x = x0 + index * step
        y = y0 + h - (min(value, y_max) / y_max) * h
        current.append(f"{x:.1f},{y:.1f}")
    if current:
        segments.append(" ".join(current))
    # A single point draws nothing as a polyline: widen it into a short dash.
    return tuple(s if " " in s else f"{s} {s}" for s in segments)


def line_chart(
    title: str,
    times: Sequence[datetime.datetime],
    lines: Sequence[tuple[str, str, Sequence[float | None]]],
    *,
    unit: str = "",
    width: int = 640,
    height: int = 180,
) -> Chart:
    """A chart of ``lines`` (name, css class, values) over ``times``, with axis labels."""
    x0, y0 = float(_LEFT), float(_TOP)
    w, h = float(width - _LEFT - _RIGHT), float(height - _TOP - _BOTTOM)
    peak = max((v for _, _, values in lines for v in values if v is not None), default=0.0)
    y_max = _nice_max(peak)
    series = tuple(
        Series(
            name=name,
            css=css,
            segments=_segments(values, (x0, y0, w, h), y_max),
            latest=next((v for v in reversed(values) if v is not None), None),
            peak=max((v for v in values if v is not None), default=None),
        )
        for name, css, values in lines
    )
    x_labels: tuple[tuple[float, str], ...] = ()
    if times:
        last = len(times) - 1
        picks = sorted({0, last // 2, last})
        step = w / max(last, 1)
        x_labels = tuple((x0 + i * step, times[i].strftime("%H:%M")) for i in picks)
    y_labels = tuple((y0 + h - frac * h, _label(y_max * frac, unit)) for frac in (0.0, 0.5, 1.0))
    return Chart(title, width, height, series, y_max, unit, x_labels, y_labels, (x0, y0, w, h))


def sparkline(points: Sequence[MetricPoint], *, width: int = 120, height: int = 28) -> Chart:
    """Completed and failed per minute, no labels: the overview's small chart."""
    completed = [float(p.completed) for p in points]
    failed = [float(p.failed) for p in points]
    y_max = _nice_max(max([*completed, *failed], default=0.0))
    w, h = float(width - 2), float(height - 2)
    series = tuple(
        Series(name, css, _segments(values, (1.0, 1.0, w, h), y_max),
               values[-1] if values else None, max(values, default=None))
        for name, css, values in (("completed", "ok", completed), ("failed", "bad", failed))
    )  # fmt: skip
    return Chart("completed / failed per minute", width, height, series, y_max, "/min",
                 plot=(1.0, 1.0, w, h))  # fmt: skip


def _buckets(points: Sequence[MetricPoint], size: int) -> list[list[MetricPoint]]:
    return [list(points[i : i + size]) for i in range(0, len(points), size)]


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def counts_chart(title: str, points: Sequence[MetricPoint], bucket: int = 1) -> Chart:
    """Completed and failed per minute (averaged over ``bucket`` minutes)."""
    groups = _buckets(points, bucket)
    return line_chart(
        title,
        [group[0].minute for group in groups],
        [
            ("completed", "ok", [_mean([float(p.completed) for p in g]) for g in groups]),
            ("failed", "bad", [_mean([float(p.failed) for p in g]) for g in groups]),
        ],
        unit="/min",
    )


def timing_chart(title: str, points: Sequence[MetricPoint], bucket: int = 1) -> Chart:
    """Processing time p50 and p95 (ms), averaged over ``bucket`` minutes."""
    groups = _buckets(points, bucket)
    return line_chart(
        title,
        [group[0].minute for group in groups],
        [
            ("p50", "p50", [_mean([p.p50_ms for p in g]) for g in groups]),
            ("p95", "p95", [_mean([p.p95_ms for p in g]) for g in groups]),
        ],
        unit="ms",
    )
