"""A 100,000-recipient campaign's fan-out, against raw Huey enqueueing as many tasks.

    .venv/bin/python -m benchmarks.campaign_fanout [--recipients N] [--batch-size B]
        [--redis-url redis://127.0.0.1:6379/8]

Contenders, one after the other on the same Redis database (FLUSHDB'd before
each and at the end), each making ``N`` message jobs of the same payload:

- hueyard campaign: a ``campaigns.run_campaign`` job with a ``recipients_file``
  (JSONL, written to a temporary campaign directory) run as a worker runs it:
  read the file, one ``enqueue_many`` of ``B`` keyed jobs per batch, progress
  after each batch. Timed from the start of the job to its result.
- hueyard campaign, run again: the same job once more: every key is held,
  nothing is stored; what a retry after a crash at the very end costs.
- hueyard one by one: ``send_message.enqueue(payload, key=...)`` per recipient
  (how the campaign fanned out before), same keys and options.
- raw Huey one by one: stock ``PriorityRedisHuey``, ``task(payload)`` per recipient.
- raw Huey ``task.map``: its closest to a bulk call (it still enqueues one
  task per item, one round trip each).

Raw Huey has no job keys: its tasks are not idempotent, so its rows do less
work than hueyard's. Prints seconds and jobs/s per contender and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from benchmarks.measure import add_redis_url, check_redis_url

ROOT = Path(__file__).resolve().parents[1]
QUEUE = "bench-raw"


def _phone(n: int) -> str:
    return f"+1415{n:07d}"


def _write_recipients(directory: Path, count: int) -> str:
    name = "benchmark.jsonl"
    with (directory / name).open("w", encoding="utf-8") as out:
        for n in range(count):
            out.write(json.dumps({"contactId": f"c-{n}", "phone": _phone(n)}) + "\n")
    return name


def _timed(label: str, count: int, run: Callable[[], Any]) -> tuple[str, float]:
    started = time.perf_counter()
    run()
    seconds = time.perf_counter() - started
    print(f"{label:<32} {seconds:8.2f} s {count / seconds:10,.0f} jobs/s", flush=True)
    return label, seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=500)
    add_redis_url(parser)
    args = parser.parse_args(argv)
    check_redis_url(parser, args.redis_url)
    count = args.recipients
    conn = redis.Redis.from_url(args.redis_url)

    with tempfile.TemporaryDirectory(prefix="hueyard-bench-campaign-") as directory:
        os.environ["HUEYARD_CAMPAIGN_DIR"] = directory
        os.environ["HUEYARD_MESSAGE_SENDER"] = "log"
        name = _write_recipients(Path(directory), count)
        try:
            rows = _run_all(conn, args.redis_url, name, count, args.batch_size)
        finally:
            conn.flushdb()
    seconds = dict(rows)
    base = seconds["hueyard campaign"]
    print()
    for label, value in rows:
        if label != "hueyard campaign":
            print(f"{label:<32} {value / base:5.2f} x the hueyard campaign's time")


def _run_all(
    conn: redis.Redis, url: str, name: str, count: int, batch_size: int
) -> list[tuple[str, float]]:
    from huey import PriorityRedisHuey

    from framework.application import Hueyard
    from framework.config import parse_settings
    from framework.handlers import REGISTRY, HandlerRegistry, discover
    from framework.runtime import reset_app, set_app
    from pipelines.campaigns import KEY_TTL, CampaignJob, run_campaign
    from pipelines.messages import send_message

    discover(env={})
    registry = HandlerRegistry()
    for spec in REGISTRY:
        if spec.module.startswith("pipelines."):
            registry.register(spec)
    text = (ROOT / "config" / "queues.toml").read_text(encoding="utf-8")
    app = Hueyard(parse_settings(text, env={"REDIS_URL": url}), registry)
    app.queue("campaigns").storage.read_timeout = 0.1
    set_app(app)
    campaign = {"campaignId": "bench", "recipients_file": name, "content": "Our sale starts"}
    campaign["batch_size"] = batch_size
    payload = CampaignJob.model_validate(campaign).message_for(_phone(0)).model_dump(mode="json")
    rows: list[tuple[str, float]] = []

    def run_campaign_job() -> None:
        run_campaign.enqueue(campaign)
        huey = app.queue("campaigns").huey
        task = huey.dequeue()
        assert task is not None
        huey.execute(task)

    def count_messages(expected: int) -> None:
        waiting = app.queue("messages").storage.conn.zcard(app.queue("messages").storage.q.waiting)
        if waiting != expected:
            raise SystemExit(f"expected {expected:,} message jobs waiting, found {waiting:,}")

    try:
        conn.flushdb()
        rows.append(_timed("hueyard campaign", count, run_campaign_job))
        count_messages(count)
        rows.append(_timed("hueyard campaign, run again", count, run_campaign_job))
        count_messages(count)

        conn.flushdb()

        def one_by_one() -> None:
            for n in range(count):
                send_message.enqueue(
                    {**payload, "to": _phone(n)}, key=f"bench:c-{n}", priority=8, key_ttl=KEY_TTL
                )

        rows.append(_timed("hueyard one by one", count, one_by_one))
        count_messages(count)
    finally:
        reset_app()
        app.close()

    raw = PriorityRedisHuey(QUEUE, connection_pool=redis.ConnectionPool.from_url(url))
    task = raw.task(name="messages.send_message")(lambda payload: None)
    conn.flushdb()
    rows.append(
        _timed("raw Huey one by one", count,
               lambda: [task({**payload, "to": _phone(n)}) for n in range(count)])
    )  # fmt: skip
    conn.flushdb()
    rows.append(
        _timed("raw Huey task.map", count,
               lambda: task.map([({**payload, "to": _phone(n)},) for n in range(count)]))
    )  # fmt: skip
    if raw.pending_count() != count:
        raise SystemExit(f"raw Huey: expected {count:,} tasks, found {raw.pending_count():,}")
    return rows


if __name__ == "__main__":
    main()
