"""``/metrics`` reports Redis' memory, clients and eviction policy; a Redis that can not be
read (INFO forbidden, out of memory) never makes it or ``/health`` answer 500.

Server settings are changed only on private ``redis-server`` processes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from dashboard import create_app
from framework.health import REDIS_FULL
from tests.dashboard.conftest import ENV, Dash, MakeApp, add, basic
from tests.integration.redis_server import RedisServer

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client: FlaskClient) -> Samples:
    response = client.get("/metrics", headers=basic())
    assert response.status_code == 200
    return samples(response.get_data(as_text=True))


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer() as private:
        yield private


@pytest.fixture
def client(make_app: MakeApp, server: RedisServer) -> FlaskClient:
    """The dashboard of an app on the private server."""
    app = make_app(url=server.url, health="require_consumer = false")
    return create_app(app, env=ENV).test_client()


def test_metrics_report_the_memory_clients_and_policy_of_the_shared_server(
    dash: Dash, redis_conn: redis.Redis
) -> None:
    # When
    found = samples(dash.get("/metrics").get_data(as_text=True))
    # Then the values are the server's (read, never changed, here)
    config = redis_conn.config_get("maxmemory*")
    assert found[("hueyard_redis_memory_used_bytes", ())] > 0
    assert found[("hueyard_redis_memory_max_bytes", ())] == float(config["maxmemory"])
    assert found[("hueyard_redis_connected_clients", ())] >= 1
    policy = config["maxmemory-policy"]
    assert found[("hueyard_redis_maxmemory_policy", (("policy", policy),))] == 1
    assert [key for key in found if key[0] == "hueyard_redis_maxmemory_policy"] == [
        ("hueyard_redis_maxmemory_policy", (("policy", policy),))
    ]


def test_metrics_follow_the_servers_limit_and_policy(
    client: FlaskClient, server: RedisServer
) -> None:
    # Given a private server with a 64 MiB limit and an evicting policy
    server.client().config_set("maxmemory", 64 * 1024 * 1024)
    server.client().config_set("maxmemory-policy", "allkeys-lru")
    # When
    found = scrape(client)
    # Then
    assert found[("hueyard_redis_memory_max_bytes", ())] == 64 * 1024 * 1024
    assert found[("hueyard_redis_maxmemory_policy", (("policy", "allkeys-lru"),))] == 1
    assert ("hueyard_redis_maxmemory_policy", (("policy", "noeviction"),)) not in found
    connected = server.client().info("clients")["connected_clients"]
    assert 1 <= found[("hueyard_redis_connected_clients", ())] <= connected


def test_a_redis_that_forbids_info_leaves_the_gauges_out_and_the_rest_in(
    client: FlaskClient, server: RedisServer
) -> None:
    # Given a server whose default user may run everything but INFO
    server.client().acl_setuser("default", enabled=True, nopass=True,
                                commands=["+@all", "-info"], keys=["*"],
                                channels=["*"])  # fmt: skip
    # When
    found = scrape(client)
    # Then
    assert found[("hueyard_redis_up", ())] == 1
    assert found[("hueyard_jobs", (("queue", "work"), ("state", "waiting")))] == 0
    assert not [key for key in found if key[0].startswith(("hueyard_redis_memory",
                                                           "hueyard_redis_maxmemory"))]  # fmt: skip


def test_a_full_redis_answers_503_on_health_and_200_with_its_memory_on_metrics(
    make_app: MakeApp, server: RedisServer
) -> None:
    # Given jobs, then a noeviction server over its maxmemory (it refuses transactions)
    app = make_app(url=server.url, health="require_consumer = false")
    add(app, 2)
    client = create_app(app, env=ENV).test_client()
    ballast = server.client()
    for index in range(50):
        ballast.set(f"ballast:{index}", b"x" * 100_000)
    used = ballast.info("memory")["used_memory"]
    ballast.config_set("maxmemory", used // 2)
    # When
    health = client.get("/health")
    found = scrape(client)
    # Then /health says Redis is full, and the jobs are still read (outside a transaction)
    assert health.status_code == 503
    assert health.get_json()["reasons"] == [REDIS_FULL]
    assert health.get_json()["redis"] == {"connected": True}
    # And /metrics shows Redis up, unhealthy, over its limit, and the job counts
    assert found[("hueyard_redis_up", ())] == 1
    assert found[("hueyard_healthy", ())] == 0
    limit = found[("hueyard_redis_memory_max_bytes", ())]
    assert limit == used // 2
    assert found[("hueyard_redis_memory_used_bytes", ())] > limit
    assert found[("hueyard_jobs", (("queue", "work"), ("state", "waiting")))] == 2
    # And every page of the dashboard answers, for the operator who opens it now
    for path in ("/admin/queues", "/admin/queues/work?state=waiting", "/admin/workers"):
        assert client.get(path, headers=basic()).status_code == 200, path
