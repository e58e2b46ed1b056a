"""The result table (stdout, Markdown) and its JSON twin (``benchmarks/results/``)."""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import socket
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["Row", "format_profile", "format_table", "machine", "median", "write_json"]


def machine(module: str) -> dict[str, Any]:
    """What every result file says of its run: the command, when, where, and the versions
    both sides run on."""
    import huey
    import redis

    return {
        "command": f"python -m {module} " + " ".join(sys.argv[1:]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "huey": huey.__version__,
        "redis_py": redis.__version__,
    }


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


@dataclass
class Row:
    """One line of the table. ``ratio`` is hueyard / raw unless ``note`` says otherwise.

    A row may carry two kinds of goal: ``target``, a bound on the ratio, and
    ``limit``, a bound on the hueyard column itself (e.g. bytes per job). Both
    point the way ``better`` says; a row meets its goals when it meets all it has.
    """

    metric: str
    unit: str
    raw: float | None
    hueyard: float | None
    ratio: float | None
    better: str = "higher"  # or "lower": which direction of the ratio is good
    target: float | None = None  # ratio bound: >= target if better is higher, else <=
    limit: float | None = None  # hueyard bound: > limit if better is higher, else <
    note: str = ""

    @property
    def met(self) -> bool | None:
        verdicts = [self._target_met(), self._limit_met()]
        if all(verdict is None for verdict in verdicts):
            return None
        return all(verdict is not False for verdict in verdicts)

    def _target_met(self) -> bool | None:
        if self.target is None or self.ratio is None or math.isnan(self.ratio):
            return None
        if self.better == "higher":
            return self.ratio >= self.target
        return self.ratio <= self.target

    def _limit_met(self) -> bool | None:
        if self.limit is None or self.hueyard is None or math.isnan(self.hueyard):
            return None
        if self.better == "higher":
            return self.hueyard > self.limit
        return self.hueyard < self.limit

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["met"] = self.met
        return data


def ratio(hueyard: float | None, raw: float | None) -> float | None:
    if hueyard is None or raw is None or raw == 0:
        return None
    return hueyard / raw


def _number(value: float | None, unit: str) -> str:
    if value is None or math.isnan(value):
        return "-"
    if unit == "ms":
        return f"{value:.2f}"
    if unit == "s":
        return f"{value:.3f}"
    return f"{value:,.0f}"


_UNIT_SYMBOLS = {"bytes": "B"}


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "MISSED", None: "?"}[met]


def _factor(value: float) -> str:
    """``0.95``, ``1.6``, ``1.0``: as written in the issue, with at least one decimal."""
    text = f"{value:g}"
    return text if "." in text or "e" in text else f"{text}.0"


def _target(row: Row) -> str:
    """``>= 0.95x: met``, ``< 1,024 B: MISSED``, or both, for the goals the row has."""
    goals = []
    if row.target is not None:
        sign = ">=" if row.better == "higher" else "<="
        goals.append(f"{sign} {_factor(row.target)}x: {_verdict(row._target_met())}")
    if row.limit is not None:
        sign = ">" if row.better == "higher" else "<"
        unit = _UNIT_SYMBOLS.get(row.unit, row.unit)
        goals.append(f"{sign} {_number(row.limit, row.unit)} {unit}: {_verdict(row._limit_met())}")
    return "; ".join(goals)


def format_table(rows: Sequence[Row]) -> str:
    """A Markdown table: metric | raw Huey | hueyard | ratio | target."""
    lines = [
        "| metric | raw Huey | hueyard | ratio | target |",
        "|---|---:|---:|---:|---|",
    ]
    for row in rows:
        ratio_text = "-" if row.ratio is None else f"{row.ratio:.2f}x"
        metric = f"{row.metric} ({row.unit})"
        lines.append(
            f"| {metric} | {_number(row.raw, row.unit)} | {_number(row.hueyard, row.unit)} "
            f"| {ratio_text} | {_target(row)} |"
        )
    notes = [f"- {row.metric}: {row.note}" for row in rows if row.note]
    return "\n".join(lines + (["", *notes] if notes else []))


def format_profile(profiles: dict[str, dict[str, Any]]) -> str:
    """Per-job costs side by side: round trips, client CPU, Redis commands and CPU."""
    names = list(profiles)
    lines = [
        "| per job | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    fields = (
        ("round trips", "round_trips", "{:.3f}"),
        ("client CPU (us)", "client_cpu_us", "{:.0f}"),
        ("Redis commands (EVALSHA and the calls inside)", "server_calls", "{:.1f}"),
        ("Redis CPU (us, server-wide)", "server_cpu_us", "{:.0f}"),
    )
    for phase in ("enqueue", "enqueue_many", "drain"):
        for label, key, fmt in fields:
            cells = []
            for name in names:
                value = profiles[name]["phases"].get(phase, {}).get(key)
                cells.append("-" if value is None else fmt.format(value))
            lines.append(f"| {phase}: {label} | " + " | ".join(cells) + " |")
    lines.append("")
    for name in names:
        for phase in ("enqueue", "drain"):
            data = profiles[name]["phases"][phase]
            trips = ", ".join(
                f"{c} {v:.2f}" for c, v in data["round_trips_by_command"].items() if v >= 0.005
            )
            lines.append(f"- {name}, {phase}, round trips by command: {trips}")
            commands = ", ".join(
                f"{c} {v['calls']:.2f}"
                for c, v in sorted(data["server_commands"].items(), key=lambda kv: -kv[1]["calls"])
                if v["calls"] >= 0.005
            )
            lines.append(f"- {name}, {phase}, Redis commands: {commands}")
    return "\n".join(lines)


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")
