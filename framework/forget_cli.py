"""``hueyard forget-queue NAME --yes``: delete every key of a queue taken out of the config.

Exit status 0 when its keys are deleted (or it had none), 1 for a queue the
config declares, without ``--yes``, or when Redis stopped answering part way
(what was deleted stays deleted: run it again).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

import redis

from framework.connection import connection_failure
from framework.errors import RedisUnavailableError
from framework.leftovers import check_forgettable, forget_queue, undeclared_queues
from framework.runtime import get_app

if TYPE_CHECKING:
    from framework.cli import Subcommands

__all__ = ["add_forget_command"]


def add_forget_command(commands: Subcommands) -> None:
    forget = commands.add_parser(
        "forget-queue",
        help="delete every Redis key of a queue taken out of the config (its jobs too)",
    )
    forget.add_argument("queue")
    forget.add_argument("--yes", action="store_true", help="delete: the jobs can not come back")
    forget.set_defaults(run=_forget)


def _forget(args: argparse.Namespace) -> int:
    app = get_app()
    conn = app.clients.client()
    try:
        check_forgettable(args.queue, app.queues)
        if not args.yes:
            count = undeclared_queues(conn, app.keys, app.queues).get(args.queue, 0)
            print(
                f"queue {args.queue!r} has {count} key(s) in Redis; run again with --yes to "
                "delete them (its jobs can not come back)",
                file=sys.stderr,
            )
            return 1
        done = forget_queue(conn, app.keys, args.queue, app.queues)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        settings = app.settings.redis
        url = settings.connection.redacted_url
        raise RedisUnavailableError(
            f"Redis at {url} {connection_failure(exc, settings.reconnect_attempts, url)}; "
            "what was deleted stays deleted: run hueyard forget-queue again when it answers"
        ) from None
    print(f"queue {args.queue!r}: {done.keys} key(s) deleted, {done.jobs} of them job records")
    for parent in done.parents:
        queue, _, job_id = parent.partition(":")
        print(
            f"parent {job_id} of queue {queue!r} waited for one of them and will not complete: "
            f"hueyard cancel {queue} {job_id}",
            file=sys.stderr,
        )
    return 0
