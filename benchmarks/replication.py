"""What ``[redis] wait_replicas = 1`` costs an enqueue, against raw Huey, same run::

    .venv/bin/python -m benchmarks.replication            # 3 repeats of 2,000 enqueues
    .venv/bin/python -m benchmarks.replication --jobs 500 --repeats 1

Starts its own master and replica (``redis-server`` on loopback ports, no
persistence), so nothing else is touched. Each side enqueues ``--jobs`` jobs
one at a time from one thread; the table gives the median enqueues per second
and the median latency of one enqueue. The replica is on the same machine, so
WAIT costs about one extra replication round trip; across a network it costs
the network's round trip more.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

from huey import PriorityRedisHuey

from framework.application import Hueyard
from framework.config import parse_settings
from framework.handlers import HandlerRegistry, handler
from tests.integration.redis_server import RedisServer


def _rate(enqueue: Callable[[int], Any], jobs: int) -> tuple[float, float]:
    """Enqueues per second and the median latency (ms) of ``jobs`` enqueues."""
    latencies = []
    start = time.perf_counter()
    for n in range(jobs):
        t = time.perf_counter()
        enqueue(n)
        latencies.append(time.perf_counter() - t)
    return jobs / (time.perf_counter() - start), statistics.median(latencies) * 1000


def _app(url: str, wait: int) -> tuple[Hueyard, Callable[[int], Any]]:
    registry = HandlerRegistry()

    @handler("bench", registry=registry)
    def send(payload: dict[str, Any]) -> None: ...

    text = f'[redis]\nurl = "{url}"\nprefix = "rep{wait}"\nwait_replicas = {wait}\n[queues.bench]\n'
    app = Hueyard(parse_settings(text, env={}), registry)
    return app, lambda n: app.enqueue("bench", "send", {"to": "+14155550123", "n": n})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replication")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    logging.getLogger("hueyard").setLevel(logging.WARNING)

    with RedisServer() as master:
        replica = RedisServer(None, "--replicaof", "127.0.0.1", str(master.port)).start()
        try:
            while replica.client().info("replication").get("master_link_status") != "up":
                time.sleep(0.05)
            huey = PriorityRedisHuey("bench", url=master.url)
            raw = huey.task(name="bench.send")(lambda payload: None)
            sides: dict[str, Callable[[int], Any]] = {
                "raw Huey": lambda n: raw({"to": "+14155550123", "n": n}),
            }
            apps = []
            for wait in (0, 1):
                app, enqueue = _app(master.url, wait)
                apps.append(app)
                sides[f"hueyard, wait_replicas = {wait}"] = enqueue
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
            for _ in range(args.repeats):
                for name, enqueue in sides.items():  # interleaved: the machine's drift hits all
                    master.client().flushall()
                    results[name].append(_rate(enqueue, args.jobs))
            for app in apps:
                app.close()
        finally:
            replica.stop()

    base = statistics.median(rate for rate, _ in results["raw Huey"])
    print(f"{'side':34} {'enqueues/s':>11} {'p50 ms':>8} {'vs raw Huey':>12}")
    for name, runs in results.items():
        rate = statistics.median(rate for rate, _ in runs)
        p50 = statistics.median(ms for _, ms in runs)
        print(f"{name:34} {rate:11,.0f} {p50:8.3f} {rate / base:11.2f}x")


if __name__ == "__main__":
    main()
