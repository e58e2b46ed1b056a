"""Dashboard latency with 1,000,000 retained jobs: ``/api/v1/queues/health`` and the overview.

::

    .venv/bin/python -m benchmarks.dashboard            # 1,000,000 jobs, 300 requests each
    .venv/bin/python -m benchmarks.dashboard --jobs 100000 --requests 100

Uses Redis database 3 only (``--redis``), flushes it before and after. The
config is the CRM's ten queues (``config/queues.toml``); the jobs are clones
of one real completed and one real failed job record, planted by a Lua script
in batches (90 % completed, 10 % failed, spread over the ten queues), so
every page reads records exactly as it would in production.

Each endpoint is measured twice: with no jobs, then with the planted ones,
through the Flask test client (the app's own cost) and over HTTP through the
waitress server ``hueyard dashboard`` runs. It prints p50 / p99 / max in ms.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from dashboard import create_app
from dashboard.server import DashboardServer
from framework.application import Hueyard
from framework.config import parse_settings
from framework.handlers import HandlerRegistry, handler

ROOT = Path(__file__).resolve().parents[1]
AUTH = {"DASHBOARD_USERNAME": "bench", "DASHBOARD_PASSWORD": "bench-password"}
HEADER = {"Authorization": "Basic YmVuY2g6YmVuY2gtcGFzc3dvcmQ="}  # bench:bench-password

# KEYS: the job prefix, the state set. ARGV: id prefix, first, last, score, then field/value pairs.
PLANT = """
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
local first, last, score = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
for n = first, last do
    local id = ARGV[1] .. n
    redis.call('HSET', KEYS[1] .. id, unpack(fields))
    redis.call('ZADD', KEYS[2], score + n, id)
end
return last - first + 1
"""


def build_app(url: str) -> Hueyard:
    text = (ROOT / "config" / "queues.toml").read_text()
    settings = parse_settings(text, env={"REDIS_URL": url})
    registry = HandlerRegistry()
    for name in settings.queue_names:
        handler(name, registry=registry, name=f"bench_{name}")(_noop)
    return Hueyard(settings, registry)


def _noop(payload: dict[str, Any]) -> dict[str, Any]:
    return payload


def template(app: Hueyard, outcome: str) -> list[bytes]:
    """One real job record of ``outcome``, as HSET arguments."""
    queue = "messages"
    storage = app.queue(queue).huey.storage
    job_id = app.enqueue(queue, f"bench_{queue}", {"to": "+15550000000", "content": "Hello " * 40})
    claimed = storage.claim()
    assert claimed is not None and claimed.id == job_id
    value = '{"sent": true}' if outcome == "completed" else "ValueError: provider said no"
    storage.release(claimed, outcome, value=value, traceback="Traceback (most recent call last):")
    conn = redis.Redis(connection_pool=app.pool)
    record = conn.hgetall(app.keys.job(queue, job_id))
    conn.delete(app.keys.job(queue, job_id), app.keys.job_logs(queue, job_id))
    conn.zrem(app.keys.queue(queue).state(outcome), job_id)
    return [item for pair in record.items() for item in pair]


def plant(app: Hueyard, total: int, batch: int = 20_000) -> float:
    conn = redis.Redis(connection_pool=app.pool)
    script = conn.register_script(PLANT)
    records = {outcome: template(app, outcome) for outcome in ("completed", "failed")}
    names = list(app.queues)
    per_queue = total // len(names)
    started = time.perf_counter()
    now_ms = int(time.time() * 1000) - 10 * per_queue
    for name in names:
        for outcome, share in (("completed", 0.9), ("failed", 0.1)):
            count = int(per_queue * share)
            for first in range(0, count, batch):
                last = min(first + batch, count) - 1
                script(
                    keys=[app.keys.queue(name).job_prefix, app.keys.queue(name).state(outcome)],
                    args=[f"{name}-{outcome}-", first, last, now_ms, *records[outcome]],
                )
    return time.perf_counter() - started


def measure(call: Callable[[], int], requests: int) -> dict[str, float]:
    for _ in range(5):
        call()  # warm up
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        status = call()
        times.append((time.perf_counter() - started) * 1000)
        assert status in (200, 503), status
    times.sort()
    return {
        "p50": statistics.median(times),
        "p99": times[min(int(len(times) * 0.99), len(times) - 1)],
        "max": times[-1],
    }


def run_all(app: Hueyard, requests: int) -> dict[str, dict[str, float]]:
    flask_app = create_app(app, env=AUTH)
    client = flask_app.test_client()
    server = DashboardServer(flask_app, "127.0.0.1", 0, grace=2)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.port}"

    def over_http(path: str) -> Callable[[], int]:
        def call() -> int:
            request = urllib.request.Request(base + path, headers=HEADER)
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    response.read()
                    return int(response.status)
            except urllib.error.HTTPError as exc:
                with exc:
                    return int(exc.code)

        return call

    def in_process(path: str) -> Callable[[], int]:
        return lambda: client.get(path, headers=HEADER).status_code

    paths = [
        "/api/v1/queues/health",
        "/admin/queues",
        "/health",
        "/metrics",
        "/admin/queues/messages?state=completed",
        "/admin/queues/messages?state=completed&page=3000",
    ]
    results = {}
    try:
        for path in paths:
            results[f"{path} (test client)"] = measure(in_process(path), requests)
            results[f"{path} (HTTP)"] = measure(over_http(path), requests)
    finally:
        server.stop()
        thread.join(10)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/3")
    options = parser.parse_args()

    app = build_app(options.redis)
    conn = redis.Redis(connection_pool=app.pool)
    conn.flushdb()
    try:
        empty = run_all(app, options.requests)
        took = plant(app, options.jobs)
        retained = sum(c.completed + c.failed for c in _counts(app).values())
        memory = conn.info("memory")["used_memory_human"]
        print(f"planted {retained:,} retained jobs in {took:.1f} s (Redis uses {memory})")
        full = run_all(app, options.requests)
    finally:
        conn.flushdb()
        app.close()
    print(f"\n{'endpoint':<62} {'0 jobs p50/p99':>16} {f'{retained:,} jobs p50/p99':>24}  max")
    for name, numbers in full.items():
        before = empty[name]
        print(
            f"{name:<62} {before['p50']:>7.2f}/{before['p99']:<7.2f}  "
            f"{numbers['p50']:>11.2f}/{numbers['p99']:<11.2f} {numbers['max']:>7.1f} ms"
        )


def _counts(app: Hueyard) -> dict[str, Any]:
    from framework.jobs import Jobs

    return Jobs(app).counts_all()


if __name__ == "__main__":
    main()
