"""Redis Cluster: three masters, each with a replica, all real, on loopback ports.

The queues' keys spread over the masters (each queue has its own hash tag).
Two real consumers drain 3,000 jobs over three queues that sit on three
different masters; one master is SIGKILLed mid-drain, its replica takes over
(``cluster-node-timeout`` 1 s), and the consumers and a dashboard process
carry on by themselves. What ran, what ran twice and what was lost is counted.

Every job was enqueued, and replicated, before the kill, so none may be lost.
A SIGKILLed master takes with it the writes its replica had not received yet
(replication is asynchronous): a claim or a completion of the last moments is
undone on the replica, and that job runs again (at-least-once); so do the jobs
that were running on the dead master's queue, once their lease expires, and
any job whose outcome could not be stored while the cluster was down (every
node refuses commands from the moment the master is declared failed until its
replica took over). Only jobs that started around the kill, or during the
failover, may run twice.
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from framework.keys import Keys
from tests.e2e import e2e_handlers
from tests.e2e.conftest import E2E, ROOT, wait_until, world_on
from tests.integration.redis_server import free_port
from tests.topology import ClusterGroup

pytestmark = [pytest.mark.e2e, pytest.mark.topology]

DRAINED = {"blip": "work", "chaos": "append_run", "pausable": "append_run"}
"""The queues drained, and their handler: each appends the job id to a file per run."""
PER_QUEUE = 1000
JOBS = PER_QUEUE * len(DRAINED)
LEASE = 3.0
WORKERS = 2 * 4 * len(DRAINED)
"""Two consumers of three queues of concurrency 4."""
DASHBOARD_AUTH = {"Authorization": "Basic " + base64.b64encode(b"ops:cluster-test-pass").decode()}


def spread_prefix(cluster: ClusterGroup) -> str:
    """A key prefix that puts each drained queue on another master: the first of
    ``e2e-cluster-0``, ``e2e-cluster-1``, ... that does (the slots are split evenly)."""
    for number in range(1000):
        prefix = f"e2e-cluster-{number}"
        masters = {cluster.master_of_key(Keys(prefix).queue_tag(queue)) for queue in DRAINED}
        if len(masters) == len(DRAINED):
            return prefix
    raise AssertionError("no prefix spreads the drained queues over the masters")


def fetch(url: str, timeout: float = 5) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=DASHBOARD_AUTH)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterGroup]:
    """One cluster for the module, emptied before each test (:func:`world`); the test
    that kills a master comes last."""
    directory = tmp_path_factory.mktemp("cluster")
    with ClusterGroup(directory, masters=3, replicas_per_master=1) as running:
        yield running


@pytest.fixture
def world(tmp_path: Path, cluster: ClusterGroup) -> Iterator[E2E]:
    for port in cluster.master_ports():
        with redis.Redis(port=port) as node:
            node.flushall()
    # The handlers of this test write to a file, not to Redis: nothing uses this client.
    conn = redis.Redis(port=cluster.ports[0])
    with world_on(
        tmp_path,
        cluster.url,
        conn,
        prefix=spread_prefix(cluster),
        lease=LEASE,
        redis_lines="cluster = true\nsocket_timeout = 2",
    ) as running:
        yield running
    conn.close()


@pytest.fixture
def dashboard(world: E2E) -> Iterator[str]:
    """``hueyard dashboard`` as a process on the world's config; its base URL."""
    port = free_port()
    env = world.consumer_env(
        {"DASHBOARD_USERNAME": "ops", "DASHBOARD_PASSWORD": "cluster-test-pass"}
    )
    log_path = world.tmp_path / "dashboard.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "framework.cli", "dashboard", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert process.poll() is None, log_path.read_text()
        with contextlib.suppress(OSError):
            return fetch(f"{base}/health")[0] in (200, 503)
        return False

    try:
        wait_until(answers, timeout=20, what="the dashboard to answer", interval=0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        print(f"----- dashboard log -----\n{log_path.read_text(errors='replace')}")


def test_queues_spread_over_the_masters(world: E2E, cluster: ClusterGroup) -> None:
    # Every key of a queue is on one master (its hash tag's slot, asked of the server)
    keys = Keys(world.prefix)
    client = cluster.client()
    where = {}
    for queue in e2e_handlers.QUEUES:
        named = keys.queue(queue)
        slots = {
            client.cluster_keyslot(key)
            for key in (named.waiting, named.active, named.delayed, named.completed, named.failed,
                        named.paused, named.wake, named.job("x"), named.stats(1))
        }  # fmt: skip
        assert len(slots) == 1, f"the keys of {queue!r} are on several slots: {slots}"
        where[queue] = cluster.master_for_slot(slots.pop())
    # and the queues land on more than one master: all three here
    assert set(where.values()) == set(cluster.master_ports())
    assert len({where[queue] for queue in DRAINED}) == len(DRAINED)
    # A job enqueued through the app is stored on its queue's master, and nowhere else
    for queue, name in DRAINED.items():
        job_id = world.app.enqueue(queue, name, {"n": 0, "runs": "/dev/null"})
        for port in cluster.master_ports():
            with redis.Redis(port=port) as node:  # KEYS: this node's own keys
                held = node.keys(keys.job(queue, "*"))
            assert held == ([keys.job(queue, job_id).encode()] if port == where[queue] else [])
    client.close()


def test_two_consumers_drain_across_a_master_killed_losing_nothing(
    world: E2E, cluster: ClusterGroup, dashboard: str, tmp_path: Path
) -> None:
    # Given 3,000 jobs over three queues on three masters, replicated
    runs = tmp_path / "runs.txt"
    runs.touch()
    queue_of: dict[str, str] = {}
    for queue, name in DRAINED.items():
        payloads = [{"n": n, "ms": 10, "runs": str(runs)} for n in range(PER_QUEUE)]
        queue_of.update(dict.fromkeys(world.app.enqueue_many(queue, name, payloads), queue))
    ids = set(queue_of)
    cluster.wait_replicated()
    keys = Keys(world.prefix)
    victim = cluster.master_of_key(keys.queue_tag("blip"))
    (replica,) = cluster.replicas_of(victim)

    # And two consumers draining them
    consumers = [world.start_consumer(env={"HUEYARD_QUEUES": ",".join(DRAINED)}) for _ in range(2)]
    wait_until(lambda: len(runs.read_text().split()) >= 500, timeout=30, what="500 runs")

    # When the master of "blip" is killed mid-drain
    before = len(runs.read_text().split())
    started = time.monotonic()
    cluster.kill_master(victim)
    new = cluster.wait_failover()
    failover_seconds = time.monotonic() - started
    recovered = len(runs.read_text().split())
    assert new == replica

    # Then the consumers carry on by themselves, and every job completes
    def completed() -> int:
        try:
            return sum(world.counts(queue).completed for queue in DRAINED)
        except redis.RedisError:
            return 0

    wait_until(lambda: completed() == JOBS, timeout=120, what="every job completed", interval=0.5)
    order = runs.read_text().split()
    counts = Counter(order)
    lost = set(ids) - set(counts)
    twice = [job for job, n in counts.items() if n > 1]
    first_run = {job: order.index(job) for job in twice}
    print(
        f"cluster failover in {failover_seconds:.1f} s: {len(counts)} jobs ran, "
        f"{len(twice)} ran twice, {len(lost)} lost, {len(order)} runs; the kill after run "
        f"{before}, the cluster ok again after run {recovered}; ran twice (queue, first run): "
        + ", ".join(f"{queue_of[job]} {first_run[job]}" for job in sorted(twice, key=first_run.get))
    )
    assert lost == set()
    assert set(counts) == ids
    # only jobs that first ran around the kill, or while the cluster was failing over,
    # ran again: a job runs for 10 ms, but its release can wait behind the others of a
    # loaded machine's consumers; 4 x WORKERS runs before the kill is room for that
    stray = [job for job, at in first_run.items() if not before - 4 * WORKERS <= at < recovered]
    assert stray == []
    for queue in DRAINED:
        assert world.counts(queue).failed == 0
    # and the consumers ran on, without a traceback
    for consumer in consumers:
        assert consumer.process.poll() is None
        assert "Traceback" not in consumer.log()

    # And the dashboard, started before the kill, answers from the new topology
    status, health = fetch(f"{dashboard}/health")
    assert (status, health["status"], health["redis"]) == (200, "ok", {"connected": True})
    status, stats = fetch(f"{dashboard}/api/v1/queues/statistics?queue=blip")
    assert status == 200
    assert stats["data"]["queues"]["blip"]["counts"]["completed"] == PER_QUEUE
