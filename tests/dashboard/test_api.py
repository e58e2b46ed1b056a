"""The JSON endpoints, /health and /metrics, against the real Redis with real jobs."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from dashboard import create_app
from framework.application import Hueyard
from framework.consumer import MultiQueueConsumer
from framework.health import REDIS_SCRIPTS
from tests.dashboard.conftest import ENV, USER, Dash, MakeApp, add, basic, finish
from tests.integration.redis_server import RedisServer

QUEUE_FIELDS = {"name", "waiting", "active", "completed", "failed", "delayed", "isPaused"}
TOTAL_FIELDS = {"waiting", "active", "completed", "failed", "delayed"}


def is_iso_utc(text: str) -> bool:
    return len(text) == 24 and text.endswith("Z") and text[10] == "T"


def live_consumer(app: Hueyard) -> MultiQueueConsumer:
    consumer = MultiQueueConsumer(app, list(app.queues))
    consumer.heartbeat()
    return consumer


# -- /api/v1/queues/health -------------------------------------------------------------------


def test_queue_health_has_exactly_the_spec_shape(app: Hueyard, dash: Dash) -> None:
    # Given 1 waiting, 1 active, 2 delayed, 1 completed and 1 failed job in "work"
    add(app, 4)
    add(app, 2, delay=60)
    finish(app, "completed")
    finish(app, "failed")
    app.queue("work").huey.storage.claim()
    live_consumer(app)
    # When
    response = dash.get("/api/v1/queues/health")
    # Then
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"success", "data"}
    assert body["success"] is True
    data = body["data"]
    assert set(data) == {"status", "redis", "queues", "totals", "timestamp"}
    assert data["status"] == "healthy"
    assert data["redis"] == {"connected": True}
    assert list(data["queues"]) == ["work", "hooks"]
    assert data["queues"]["work"] == {
        "name": "work",
        "waiting": 1,
        "active": 1,
        "completed": 1,
        "failed": 1,
        "delayed": 2,
        "isPaused": False,
    }
    for queue in data["queues"].values():
        assert set(queue) == QUEUE_FIELDS
    assert data["totals"] == {"waiting": 1, "active": 1, "completed": 1, "failed": 1, "delayed": 2}
    assert set(data["totals"]) == TOTAL_FIELDS
    assert is_iso_utc(data["timestamp"])


def test_queue_health_reports_a_paused_queue(app: Hueyard, dash: Dash) -> None:
    add(app, 3, queue="hooks")
    dash.post("/admin/queues/hooks/pause")
    queue = dash.get("/api/v1/queues/health").get_json()["data"]["queues"]["hooks"]
    assert queue["isPaused"] is True
    assert queue["waiting"] == 0  # held jobs are "paused", which the spec's shape does not list


# -- /health ---------------------------------------------------------------------------------


def test_health_has_the_spec_shape_and_is_open(app: Hueyard, flask_app: Flask) -> None:
    # Given a healthy system, and no credentials sent
    response = flask_app.test_client().get("/health")
    # Then
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"status", "timestamp", "uptime", "environment", "redis", "queues",
                         "reasons"}  # fmt: skip
    assert body["status"] == "ok"
    assert body["queues"] == "healthy"
    assert body["redis"] == {"connected": True}
    assert body["environment"] == "production"  # neither HUEYARD_ENV nor NODE_ENV is set
    assert isinstance(body["uptime"], int) and body["uptime"] >= 0
    assert is_iso_utc(body["timestamp"])
    assert body["reasons"] == []
    assert response.headers["Cache-Control"] == "no-store"


def test_health_goes_503_without_a_consumer_for_waiting_jobs_and_back(
    app: Hueyard, dash: Dash
) -> None:
    # Given a live consumer and waiting jobs
    consumer = live_consumer(app)
    add(app, 2)
    assert dash.get("/health").status_code == 200
    # When the consumer stops
    consumer.heartbeat(leaving=True)
    # Then
    response = dash.get("/health")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "error" and body["queues"] == "unhealthy"
    assert body["redis"] == {"connected": True}
    assert body["reasons"] == [
        "queue work: 2 jobs waiting and no live consumer serves it "
        "(start one: huey_consumer framework.app)"
    ]
    assert dash.get("/api/v1/queues/health").get_json()["data"]["status"] == "unhealthy"
    # When a consumer comes back
    live_consumer(app)
    # Then
    assert dash.get("/health").status_code == 200


@pytest.mark.parametrize("key", ["outbox", "wake", "waiting"])
def test_health_goes_503_while_a_key_of_a_queue_is_of_another_type(
    app: Hueyard, dash: Dash, redis_conn: redis.Redis, key: str
) -> None:
    # Given something else wrote a string where a queue keeps a set or its wake list:
    # its scripts refuse to move any job of it
    q = app.keys.queue("work")
    planted = {"outbox": q.outbox, "wake": q.wake, "waiting": q.state("waiting")}[key]
    live_consumer(app)
    redis_conn.set(planted, "garbage")
    # When the health is asked, Then it is unhealthy, naming the key
    response = dash.get("/health")
    assert response.status_code == 503
    assert response.get_json()["reasons"] == [
        f"queue work: key {planted} is not of the type hueyard keeps there, so the queue's "
        "jobs can not move (hueyard doctor work says what to do)"
    ]
    assert dash.get("/api/v1/queues/health").get_json()["data"]["status"] == "unhealthy"
    # And once the key is gone, healthy again
    redis_conn.delete(planted)
    assert dash.get("/health").status_code == 200


def test_health_goes_503_while_redis_runs_no_scripts(make_app: MakeApp) -> None:
    # Given a Redis whose EVAL and EVALSHA are renamed away: every enqueue is refused
    renamed = ("--rename-command", "EVALSHA", "", "--rename-command", "EVAL", "")
    with RedisServer(None, *renamed) as server:
        app = make_app(url=server.url)
        live_consumer(app)
        client = create_app(app, env=ENV).test_client()
        # When the health is asked
        response = client.get("/health")
        signed_in = client.get("/health", headers=basic())
        metrics = client.get("/metrics", headers=basic()).get_data(as_text=True)
    # Then it is unhealthy, saying why (the error itself only to those signed in)
    assert response.status_code == 503
    assert response.get_json()["redis"] == {"connected": True}
    assert response.get_json()["reasons"] == [REDIS_SCRIPTS]
    [detailed] = signed_in.get_json()["reasons"]
    assert detailed.startswith(REDIS_SCRIPTS) and "EVALSHA" in detailed
    assert "hueyard_healthy 0.0" in metrics


def test_health_goes_503_while_a_queues_enqueue_counter_holds_no_whole_number(
    app: Hueyard, dash: Dash, redis_conn: redis.Redis
) -> None:
    # Given something else wrote a string that is no count into a queue's enqueue counter
    seq = app.keys.queue("work").seq
    live_consumer(app)
    redis_conn.set(seq, "-5")
    # When the health is asked, Then it is unhealthy, naming the key
    response = dash.get("/health")
    assert response.status_code == 503
    assert response.get_json()["reasons"] == [
        f"queue work: key {seq} holds no whole number where hueyard counts enqueues, so no "
        "job can be enqueued (hueyard doctor work says what to do)"
    ]
    # And once it counts again, healthy again
    redis_conn.set(seq, "5")
    assert dash.get("/health").status_code == 200


def test_health_without_waiting_jobs_needs_no_consumer(dash: Dash) -> None:
    assert dash.get("/health").status_code == 200


def test_require_consumer_can_be_turned_off(make_app: MakeApp) -> None:
    app = make_app(health="require_consumer = false")
    add(app, 2)
    client = create_app(app, env=ENV).test_client()
    assert client.get("/health").status_code == 200


def test_health_goes_503_when_redis_stops_and_200_when_it_returns(make_app: MakeApp) -> None:
    with RedisServer() as server:
        app = make_app(url=server.url, health="require_consumer = false")
        client = create_app(app, env=ENV).test_client()
        assert client.get("/health").status_code == 200
        # When Redis stops
        server.stop()
        started = time.monotonic()
        response = client.get("/health")
        elapsed = time.monotonic() - started
        # Then: 503 with the reason, and fast (one probe, no reconnection loop)
        assert response.status_code == 503
        body = response.get_json()
        assert body["redis"] == {"connected": False}
        assert body["status"] == "error" and body["queues"] == "unknown"
        assert body["reasons"] == ["redis: not connected"]  # no host or port: not signed in
        assert elapsed < 5
        api = client.get("/api/v1/queues/health", headers=basic())
        assert api.status_code == 503
        assert api.get_json()["success"] is False
        assert set(api.get_json()["data"]) == {"status", "redis", "queues", "totals", "timestamp"}
        assert api.get_json()["data"]["redis"] == {"connected": False}
        metrics = client.get("/metrics", headers=basic())
        assert metrics.status_code == 200
        assert "hueyard_redis_up 0.0" in metrics.get_data(as_text=True)
        # When Redis returns
        server.start()
        # Then
        assert client.get("/health").status_code == 200


@pytest.mark.parametrize(
    ("health", "setup", "reason"),
    [
        (
            "max_waiting = 2",
            lambda app: add(app, 3),
            "queue work: 3 jobs waiting (max_waiting = 2)",
        ),
        (
            "max_failure_rate = 0.5",
            lambda app: (add(app, 3), finish(app, "failed", 2), finish(app, "completed")),
            "queue work: 67% of the jobs finished in the last 15 min failed "
            "(2 of 3; max_failure_rate = 0.5)",
        ),
        (
            "max_oldest_waiting_seconds = 0.001",
            lambda app: (add(app, 1), time.sleep(0.05)),
            "queue work: the oldest waiting job has waited 0 s "
            "(max_oldest_waiting_seconds = 0.001)",
        ),
    ],
)
def test_health_goes_503_past_a_threshold(
    make_app: MakeApp, health: str, setup: Any, reason: str
) -> None:
    # Given a live consumer and a threshold of [health]
    app = make_app(health=health)
    live_consumer(app)
    client = create_app(app, env=ENV).test_client()
    assert client.get("/health").status_code == 200
    # When the threshold is crossed
    setup(app)
    # Then
    response = client.get("/health")
    assert response.status_code == 503
    assert response.get_json()["reasons"] == [reason]


@pytest.mark.parametrize(
    ("health", "headers", "detailed"),
    [
        ("", {}, False),
        ("", basic(), True),
        ("", basic(USER, "wrong-password"), False),
        ("details = true", {}, True),
        ("details = false", basic(), True),
    ],
    ids=["anonymous", "signed-in", "wrong-credentials", "details-on", "details-off-signed-in"],
)
def test_health_names_no_internal_host_unless_signed_in_or_details_are_on(
    make_app: MakeApp, health: str, headers: dict[str, str], detailed: bool
) -> None:
    # Given a dashboard whose Redis is down
    with RedisServer() as server:
        app = make_app(url=server.url, health=f"require_consumer = false\n{health}")
        client = create_app(app, env=ENV).test_client()
        port = str(server.port)
        server.stop()
        # When /health is asked
        response = client.get("/health", headers=headers)
    # Then it says unhealthy and why, with the spec's keys
    body = response.get_json()
    assert response.status_code == 503
    assert set(body) == {"status", "timestamp", "uptime", "environment", "redis", "queues",
                         "reasons"}  # fmt: skip
    assert (body["status"], body["queues"], body["redis"]) == (
        "error", "unknown", {"connected": False},
    )  # fmt: skip
    text = response.get_data(as_text=True)
    if detailed:
        # And the reason spells out the Redis error
        assert body["reasons"][0].startswith("redis: not connected (")
        assert port in body["reasons"][0]
    else:
        # And nothing names a host, a port or a Redis URL
        assert body["reasons"] == ["redis: not connected"]
        for internal in (port, "127.0.0.1", "localhost", "redis://"):
            assert internal not in text


def test_health_reasons_about_queues_are_the_same_for_everyone(make_app: MakeApp) -> None:
    app = make_app(health="max_waiting = 1")
    add(app, 2)
    client = create_app(app, env=ENV).test_client()
    anonymous = client.get("/health").get_json()["reasons"]
    signed_in = client.get("/health", headers=basic()).get_json()["reasons"]
    assert anonymous == signed_in
    assert "queue work: 2 jobs waiting (max_waiting = 1)" in anonymous


def test_environment_comes_from_hueyard_env(app: Hueyard) -> None:
    env = {**ENV, "HUEYARD_ENV": "staging"}
    body = create_app(app, env=env).test_client().get("/health").get_json()
    assert body["environment"] == "staging"


# -- metrics and statistics ------------------------------------------------------------------


def test_metrics_give_a_summary_and_a_point_per_minute(app: Hueyard, dash: Dash) -> None:
    add(app, 3)
    finish(app, "completed", 2)
    finish(app, "failed")
    body = dash.get("/api/v1/queues/metrics?minutes=5").get_json()
    assert body["success"] is True
    work = body["data"]["queues"]["work"]
    assert body["data"]["minutes"] == 5
    assert len(work["series"]) == 5
    assert sum(point["completed"] for point in work["series"]) == 2
    assert work["summary"]["completed"] == 2 and work["summary"]["failed"] == 1
    assert work["summary"]["failure_rate"] == pytest.approx(1 / 3)
    assert set(work["summary"]) >= {"throughput_per_minute", "p50_ms", "p95_ms", "p99_ms",
                                    "oldest_waiting_age"}  # fmt: skip


def test_statistics_give_counts_and_summary_per_queue(app: Hueyard, dash: Dash) -> None:
    add(app, 2)
    finish(app, "failed")
    body = dash.get("/api/v1/queues/statistics?queue=work").get_json()
    assert list(body["data"]["queues"]) == ["work"]
    work = body["data"]["queues"]["work"]
    assert work["counts"]["failed"] == 1 and work["counts"]["waiting"] == 1
    assert work["failed"] == 1 and work["failure_rate"] == 1.0
    assert work["concurrency"] == 2
    assert work["oldest_waiting_age"] is not None


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("minutes=abc", "minutes must be a whole number of minutes"),
        ("minutes=0", "minutes=0 is not allowed"),
        ("queue=nope", "unknown queue 'nope'"),
    ],
)
def test_bad_metrics_queries_answer_400_with_the_fix(dash: Dash, query: str, message: str) -> None:
    for path in ("/api/v1/queues/metrics", "/api/v1/queues/statistics"):
        response = dash.get(f"{path}?{query}")
        assert response.status_code == 400
        assert response.get_json()["success"] is False
        assert message in response.get_json()["error"]


# -- /metrics --------------------------------------------------------------------------------


def test_prometheus_text_parses_and_counts_jobs(app: Hueyard, dash: Dash) -> None:
    add(app, 3)
    finish(app, "failed")
    finish(app, "completed")
    live_consumer(app)
    response = dash.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }
    assert samples[("hueyard_jobs", (("queue", "work"), ("state", "failed")))] == 1
    assert samples[("hueyard_jobs", (("queue", "work"), ("state", "waiting")))] == 1
    assert samples[("hueyard_queue_paused", (("queue", "hooks"),))] == 0
    assert samples[("hueyard_redis_up", ())] == 1
    assert samples[("hueyard_healthy", ())] == 1
    assert samples[("hueyard_consumers", ())] == 1
    assert samples[("hueyard_failure_ratio", (("queue", "work"),))] == 0.5


def test_prometheus_reports_each_consumers_abandoned_threads_and_connections(
    app: Hueyard, dash: Dash
) -> None:
    # Given a consumer that gave up on two worker threads stuck in jobs, in a process
    # that has talked to Redis
    add(app, 1)
    consumer = MultiQueueConsumer(app, list(app.queues))
    consumer.abandoned = 2
    consumer.heartbeat()
    # When
    text = dash.get("/metrics").get_data(as_text=True)
    # Then
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples[("hueyard_abandoned_threads", (("consumer", consumer.consumer_id),))] == 2
    opened = samples[("hueyard_redis_connections", (("consumer", consumer.consumer_id),))]
    assert 1 <= opened <= app.pool.max_connections
