"""``hueyard upgrade-keys [--force]``: move hueyard 0.1.0's keys to the per-queue layout.

Exit status 0 when everything moved (or nothing had to), 1 when a key was left
(its new name was taken, or no declared queue owns it: each is printed with
the reason) or when consumers still run and ``--force`` was not given.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

import redis

from framework.application import Hueyard
from framework.connection import connection_failure
from framework.errors import RedisUnavailableError
from framework.metrics import CONSUMER_WINDOW
from framework.runtime import get_app
from framework.upgrade import check_single_redis, legacy_queues, live_consumers, upgrade_keys

if TYPE_CHECKING:
    from framework.cli import Subcommands

__all__ = ["add_upgrade_command"]


def add_upgrade_command(commands: Subcommands) -> None:
    upgrade = commands.add_parser(
        "upgrade-keys",
        help="rename the Redis keys of hueyard 0.1.0 to the per-queue layout (consumers stopped)",
    )
    upgrade.add_argument(
        "--force",
        action="store_true",
        help="move even though a consumer sent a heartbeat in the last minute",
    )
    upgrade.set_defaults(run=_upgrade)


def _upgrade(args: argparse.Namespace) -> int:
    app = get_app()
    try:
        return _run(app, args)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        settings = app.settings.redis
        url = settings.connection.redacted_url
        raise RedisUnavailableError(
            f"Redis at {url} "
            f"{connection_failure(exc, settings.reconnect_attempts, url)}; nothing more was moved. "
            "Run hueyard upgrade-keys again when it answers: what moved stays moved"
        ) from None


def _run(app: Hueyard, args: argparse.Namespace) -> int:
    conn = app.clients.client()
    check_single_redis(conn)
    queues = list(app.queues)
    old = legacy_queues(conn, app.keys, queues)
    if not old:
        print("nothing to move: no queue has keys of hueyard 0.1.0")
        return 0
    running = live_consumers(conn, app.keys, CONSUMER_WINDOW)
    if running and not args.force:
        print(
            f"hueyard: error: {running} consumer(s) sent a heartbeat in the last "
            f"{CONSUMER_WINDOW:g} s; stop every consumer first (a job released while its "
            "keys move would be lost from view), or pass --force if they are gone",
            file=sys.stderr,
        )
        return 1
    report = upgrade_keys(conn, app.keys, queues)
    for queue in queues:
        jobs, keys = report.jobs.get(queue, 0), report.keys.get(queue, 0)
        if jobs or keys:
            print(
                f"{queue}: {jobs} job(s) and {keys} other key(s) moved to "
                f"{app.keys.queue_tag(queue)}"
            )
    for line in report.left:
        print(f"left: {line}", file=sys.stderr)
    return 1 if report.left else 0
