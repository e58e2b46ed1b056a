"""``hueyard schedules`` and ``hueyard schedule run|pause|resume NAME`` (docs/configuration.md)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from framework.runtime import get_app
from framework.textgrid import grid, utc
from framework.ticks import Schedules

if TYPE_CHECKING:
    from framework.cli import Subcommands

__all__ = ["add_schedule_commands"]


def add_schedule_commands(commands: Subcommands) -> None:
    listing = commands.add_parser(
        "schedules", help="the schedules: next run, last run and its job, paused"
    )
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    listing.set_defaults(run=_list)
    one = commands.add_parser("schedule", help="run a schedule now, or pause or resume it")
    one.add_argument("action", choices=("run", "pause", "resume"))
    one.add_argument("name")
    one.set_defaults(run=_act)


def _list(args: argparse.Namespace) -> int:
    infos = Schedules(get_app()).list()
    if args.json:
        print(json.dumps([info.to_json() for info in infos], indent=2))
        return 0
    if not infos:
        print("no schedule is declared; add a [schedules.<name>] table to config/queues.toml")
        return 0
    headers = ["schedule", "queue", "handler", "when", "next run", "last run", "last job", "state"]
    body = [
        [
            info.name,
            info.queue,
            info.handler.partition(".")[2],
            info.spec,
            utc(info.next_tick) or "-",
            utc(info.last_fired) or "never",
            info.last_job or "-",
            "paused"
            if info.paused
            else (f"overdue {info.overdue:.0f} s" if info.overdue else "ok"),
        ]
        for info in infos
    ]
    print(grid(headers, body))
    return 0


def _state(paused: bool, overdue: float | None) -> str:
    if paused:
        return "paused"
    return f"overdue {overdue:.0f} s" if overdue else "ok"


def _act(args: argparse.Namespace) -> int:
    schedules = Schedules(get_app())
    if args.action == "run":
        print(schedules.run(args.name))
    elif args.action == "pause":
        done = schedules.pause(args.name)
        print(f"schedule {args.name!r} {'paused' if done else 'was paused already'}: its ticks "
              "are not enqueued until it is resumed")  # fmt: skip
    else:
        done = schedules.resume(args.name)
        print(f"schedule {args.name!r} {'resumed' if done else 'was not paused'}: it fires from "
              "its next tick")  # fmt: skip
    return 0
