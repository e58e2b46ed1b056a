"""Whatever is in Redis, every page and JSON endpoint of the dashboard answers, over real
HTTP, with what it could read: a large value cut with a marker, a record that is not
hueyard's with its problem; never a 500. And a page holds a bounded amount of it.

Garbage is written straight into Redis (a 50 MB payload, megabytes of result and error,
log lines by the thousand, JSON nested 100,000 levels, bytes that are not UTF-8, fields
and keys of the wrong type, heartbeats and metrics hueyard did not write).
"""

from __future__ import annotations

import html
import json
import time
import tracemalloc
from dataclasses import dataclass

import pytest
import redis

from framework.application import Hueyard
from framework.jobs import STATES
from tests.dashboard.conftest import Dash, MakeApp, Serve, Served, add, finish, storage_of

MB = 1024 * 1024
BIG = b'{"password":"hunter2","blob":"' + b"x" * (50 * MB) + b'"}'
BIG_MARK = f"[cut: {len(BIG):,} bytes, showing"


@dataclass
class Planted:
    app: Hueyard
    served: Served
    ids: dict[str, str]


@pytest.fixture
def planted(make_app: MakeApp, serve: Serve, redis_conn: redis.Redis) -> Planted:
    app = make_app(health="require_consumer = false")
    k = app.keys.queue("work").job
    ids: dict[str, str] = {}
    # completed, failed and active jobs first (each finish claims the oldest waiting job)
    add(app, 3)
    [ids["completed"]] = finish(app, "completed")
    [ids["failed"]] = finish(app, "failed")
    claimed = storage_of(app).claim()
    assert claimed is not None
    ids["active"] = claimed.id
    [ids["delayed"]] = add(app, delay=3600)
    ids["big"], ids["deep"], ids["bytes"], ids["fields"], ids["logs"], ids["wide"] = add(app, 6)
    [ids["paused"]] = add(app, queue="hooks")
    app.queue("hooks")  # declared
    redis_conn.set(app.keys.queue("hooks").paused, 1)

    redis_conn.hset(k(ids["big"]), "payload", BIG)
    redis_conn.hset(k(ids["deep"]), "payload", b"[" * 100_000 + b"]" * 100_000)
    redis_conn.hset(k(ids["bytes"]), mapping={"payload": b"\xff\xfe\x80", "error": b"\xc3\x28"})
    redis_conn.hset(
        k(ids["fields"]),
        mapping={"started": "yesterday", "priority": "9" * 5000, "handler": "h" * MB},
    )
    redis_conn.rpush(k(ids["logs"]) + ":logs", *[b"l" * 50_000] * 200, b"L" * (5 * MB))
    redis_conn.hset(k(ids["wide"]), mapping={f"f{n}": n for n in range(100_000)})
    redis_conn.hset(k(ids["logs"]), "progress", b"[" * 3000)
    redis_conn.hset(k(ids["completed"]), "result", b"r" * (5 * MB))
    redis_conn.hset(k(ids["failed"]), mapping={"error": "E" * 3 * MB, "traceback": "T" * 3 * MB})
    redis_conn.hset(k(ids["active"]), mapping={"payload": b"\x80\x04pickle", "consumer": "c" * MB})
    redis_conn.hset(k(ids["delayed"]), "payload", b"[" * 700 + b"]" * 700)
    redis_conn.hset(k(ids["paused"]), mapping={"payload": "not json", "attempts": "many"})
    # keys of the wrong type, ids without records
    redis_conn.set(k("a-string"), "x")
    redis_conn.zadd(app.keys.queue("work").waiting, {"a-string": 0, "ghost": 1})
    redis_conn.hset(k(ids["bytes"]) + ":logs", "not", "a list")
    # heartbeats and metrics hueyard did not write
    now_ms = int(time.time() * 1000)
    redis_conn.zadd(app.keys.consumers, {"huge": now_ms, "deep": now_ms, "odd": now_ms})
    redis_conn.set(app.keys.consumer("huge"), "{" + '"host": "h",' * MB + "}")
    redis_conn.set(app.keys.consumer("deep"), "[" * 100_000 + "]" * 100_000)
    redis_conn.set(app.keys.consumer("odd"), json.dumps({"host": [[1]], "queues": ["work", 5]}))
    q = app.keys.queue("work")
    minute = int(time.time() // 60)
    redis_conn.hset(q.stats(minute), mapping={"completed": "lots", "failed": "2"})
    redis_conn.rpush(q.samples(minute), "fast", "inf", "12")
    redis_conn.set(q.stats(minute - 1), "not a hash")
    return Planted(app, serve(app=app), ids)


def pages(planted: Planted) -> list[str]:
    """Every page and endpoint, in every state, and every planted job's page and JSON."""
    paths = [
        "/admin/queues",
        "/admin/workers",
        "/admin/search?job_id=no-such-job",
        "/health",
        "/metrics",
        "/api/v1/queues/health",
        "/api/v1/queues/metrics",
        "/api/v1/queues/statistics",
        "/api/v1/queues/metrics?queue=work&minutes=1440",
    ]
    for queue in ("work", "hooks"):
        paths += [f"/admin/queues/{queue}?state={state}&page_size=500" for state in STATES]
        paths += [f"/admin/queues/{queue}/metrics?range={name}" for name in ("hour", "day")]
        paths += [f"/admin/search?queue={queue}&state={state}&text=x" for state in STATES]
    for job_id in [*planted.ids.values(), "a-string", "ghost"]:
        queue = "hooks" if job_id == planted.ids["paused"] else "work"
        page = f"/admin/queues/{queue}/jobs/{job_id}"
        paths += [page, f"{page}/raw"]
    return paths


def test_every_page_and_endpoint_answers_whatever_redis_holds(planted: Planted) -> None:
    for path in pages(planted):
        answer = planted.served.get(path)
        assert answer.status == 200, f"{path}: {answer.status} {answer.body[:300]}"
        assert "hunter2" not in answer.body, path
        if "/api/" in path or path.endswith("/raw") or path == "/health":
            json.loads(answer.body)


def test_what_could_not_be_read_whole_is_marked(planted: Planted) -> None:
    ids, served = planted.ids, planted.served
    # The list pages show the start of each value, with a marker
    waiting = served.get("/admin/queues/work?state=waiting").body
    assert f"{BIG_MARK} 4,096]" in waiting
    assert "[cut: 200,000 bytes, showing 4,096]" in waiting  # the deep one, as text
    assert "its key is not a job record (not a hash): it is a string" in waiting
    assert "no job record: the id is listed as waiting" in waiting
    failed = served.get("/admin/queues/work?state=failed").body
    assert f"[cut: {3 * MB:,} bytes, showing 4,096]" in failed
    completed = served.get("/admin/queues/work?state=completed").body
    assert f"[cut: {5 * MB:,} bytes, showing 4,096]" in completed
    # The job page shows the payload's start as its preview allows, and the JSON more of it
    page = html.unescape(served.get(f"/admin/queues/work/jobs/{ids['big']}").body)
    assert f"Only the start is shown: … {BIG_MARK} 65,536]." in page
    assert '"password":"********"' in page
    raw = json.loads(served.get(f"/admin/queues/work/jobs/{ids['big']}/raw").body)
    assert raw["payload"].endswith(f"… {BIG_MARK} 1,048,576]")
    # Log lines: the newest [consumer] max_log_lines, each cut
    logs = served.get(f"/admin/queues/work/jobs/{ids['logs']}").body
    assert "… [cut: 201 lines, showing the newest 100]" in logs
    assert f"[cut: {5 * MB:,} bytes, showing 4,096]" in logs
    # A record that is not hueyard's says why
    fields = json.loads(served.get(f"/admin/queues/work/jobs/{ids['fields']}/raw").body)
    assert "started is not a whole number" in fields["problem"]
    assert fields["name"].endswith(f"… [cut: {MB:,} bytes, showing 1,024]")
    deep = json.loads(served.get(f"/admin/queues/work/jobs/{ids['delayed']}/raw").body)
    assert "stored JSON nests 700 levels deep" in deep["problem"]
    # Heartbeats hueyard did not write are listed with their problem
    workers = html.unescape(served.get("/admin/workers").body)
    assert "more than a heartbeat ever is" in workers
    assert "not hueyard's JSON" in workers


def test_a_page_holds_a_bounded_amount_whatever_redis_holds(planted: Planted) -> None:
    ids, served = planted.ids, planted.served
    heavy = [
        "/admin/queues/work?state=waiting&page_size=500",
        "/admin/search?queue=work&state=waiting&text=hunter",
        f"/admin/queues/work/jobs/{ids['big']}",
        f"/admin/queues/work/jobs/{ids['big']}/raw",
        f"/admin/queues/work/jobs/{ids['logs']}",
        f"/admin/queues/work/jobs/{ids['completed']}/raw",
        "/admin/workers",
    ]
    tracemalloc.start()
    try:
        for path in heavy:
            tracemalloc.reset_peak()
            answer = served.get(path)
            peak = tracemalloc.get_traced_memory()[1]
            assert answer.status == 200
            # never one whole 50 MB (or 5 MB) value: each field at most its cap
            assert peak < 40 * MB, f"{path}: {peak:,} bytes"
            assert len(answer.body) < 3 * MB, path
    finally:
        tracemalloc.stop()


def test_a_search_reads_at_most_search_limit_jobs_and_search_bytes_of_each(
    make_app: MakeApp, serve: Serve, redis_conn: redis.Redis
) -> None:
    # Given 30 jobs of 1 MB, "needle" near the start of job 3 and past 2 KB in job 5
    app = make_app(dashboard="search_limit = 20\nsearch_bytes = 2048")
    ids = add(app, 30)
    for n, job_id in enumerate(ids):
        head = "needle" if n == 3 else "hay"
        tail = "needle" if n == 5 else "hay"
        payload = json.dumps({"head": head, "blob": "y" * MB, "tail": tail})
        redis_conn.hset(app.keys.job("work", job_id), "payload", payload)
    served = serve(app=app)
    # When the waiting jobs are searched (oldest first: run order)
    tracemalloc.start()
    try:
        answer = served.get("/admin/search?queue=work&state=waiting&text=needle")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Then it read 20 of the 30, 2 KB of each: job 3 matches, job 5's needle is not reached
    assert answer.status == 200
    assert "Searched 20 of 30 job(s)" in answer.body
    assert ids[3] in answer.body and ids[5] not in answer.body
    assert "1 match(es)" in answer.body
    assert peak < 8 * MB


def test_a_consumers_registry_of_another_type_degrades_the_consumers_panels_only(
    app: Hueyard, dash: Dash, redis_conn: redis.Redis
) -> None:
    # Given something else wrote a string where the consumers' heartbeats are registered
    add(app, 1)
    registry = app.keys.consumers
    redis_conn.set(registry, "junk")

    # When the pages are opened, Then they render, the consumers panels saying why
    for path in ("/admin/queues", "/admin/queues/work", "/admin/workers"):
        page = dash.get(path)
        assert page.status_code == 200, path
        text = html.unescape(page.get_data(as_text=True))
        assert "WRONGTYPE" not in text, path
        if path != "/admin/queues/work":
            assert f"Redis key '{registry}' is a string, not the sorted set" in text, path
            assert "DEL or RENAME it" in text, path
    assert dash.get("/metrics").status_code == 200

    # And /health is unhealthy naming the key, not "refused the reads"
    health = dash.get("/health")
    assert health.status_code == 503
    assert health.get_json()["reasons"] == [
        f"consumers: key {registry} is not of the type hueyard keeps there, so no consumer "
        "is seen and their heartbeats fail (hueyard doctor says what to do)"
    ]
