"""The ``hueyard`` command.

::

    hueyard check [--json]                  validate config and handlers, show the queues
    hueyard enqueue QUEUE HANDLER --data JSON [--priority N] [--delay S] [--attempts N]

Exit status 0 on success, 1 on any error (the message names the problem and
the fix), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from framework.errors import HueyardError

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hueyard", description="Declarative background jobs on Huey and Redis."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("check", help="validate config and handlers, list the queues")
    check.add_argument("--json", action="store_true", help="print the queues as a JSON list")

    enqueue = commands.add_parser("enqueue", help="enqueue one job and print its id")
    enqueue.add_argument("queue")
    enqueue.add_argument("handler", help="handler name, e.g. send_message")
    enqueue.add_argument("--data", required=True, help="the payload as JSON")
    enqueue.add_argument("--priority", type=int, help="1 (runs first) to 10 (runs last)")
    enqueue.add_argument("--delay", type=float, help="seconds to wait before the job may run")
    enqueue.add_argument("--attempts", type=int, help="override the queue's attempts")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "check":
            return _check(as_json=args.json)
        if args.command == "enqueue":
            return _enqueue(args)
    except HueyardError as exc:
        print(f"hueyard: error: {exc}", file=sys.stderr)
        return 1
    return 2  # pragma: no cover - argparse rejects unknown commands


def _check(*, as_json: bool) -> int:
    from framework.application import get_app

    app = get_app()
    rows = [_queue_row(app, name) for name in app.queues]
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        print(_table(rows))
        print(f"\nconfig OK: {len(rows)} queues, {len(app.registry)} handlers")
    return 0


def _queue_row(app: Any, name: str) -> dict[str, Any]:
    runtime = app.queue(name)
    policy = runtime.policy
    return {
        "name": name,
        "attempts": policy.attempts,
        "backoff": policy.backoff.model_dump(),
        "timeout": policy.timeout,
        "priority": policy.priority,
        "concurrency": policy.concurrency,
        "rate_limit": policy.rate_limit.model_dump() if policy.rate_limit else None,
        "keep_completed": policy.keep_completed,
        "keep_failed": policy.keep_failed,
        "handlers": sorted(runtime.handlers),
    }


def _table(rows: list[dict[str, Any]]) -> str:
    headers = [
        "queue",
        "attempts",
        "backoff",
        "timeout",
        "priority",
        "concurrency",
        "rate limit",
        "keep ok/failed",
        "handlers",
    ]

    def cells(row: dict[str, Any]) -> list[str]:
        backoff = row["backoff"]
        rate = row["rate_limit"]
        return [
            row["name"],
            str(row["attempts"]),
            f"{backoff['type']} {backoff['delay']:g}s",
            f"{row['timeout']:g}s" if row["timeout"] else "-",
            str(row["priority"]),
            str(row["concurrency"]),
            f"{rate['max']}/{rate['per']:g}s" if rate else "-",
            f"{row['keep_completed']}/{row['keep_failed']}",
            ", ".join(row["handlers"]) or "(none)",
        ]

    body = [cells(row) for row in rows]
    widths = [max(len(line[i]) for line in [headers, *body]) for i in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in [headers, *body]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def _enqueue(args: argparse.Namespace) -> int:
    from framework.application import get_app

    try:
        payload = json.loads(args.data)
    except json.JSONDecodeError as exc:
        raise HueyardError(f"--data is not valid JSON: {exc}") from None
    app = get_app()
    job_id = app.enqueue(
        args.handler,
        payload,
        queue=args.queue,
        priority=args.priority,
        delay=args.delay,
        attempts=args.attempts,
    )
    print(job_id)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
