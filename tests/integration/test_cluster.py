"""hueyard on a real Redis Cluster (3 masters, a replica each, on loopback ports):
the per-queue hash tags spread the queues, and every API that reads or acts
across queues works by config alone (``[redis] cluster = true``); and on a
TLS-only cluster with an ACL user (a CA made by the test).

The drain across a master killed mid-way, with real consumers, is in
``tests/e2e/test_cluster.py``.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from framework import current_job
from framework.application import Hueyard
from framework.clients import LazyCluster
from framework.config import parse_settings
from framework.errors import ConfigError, HueyardError, JobActionError, RedisUnavailableError
from framework.handlers import HandlerRegistry, handler
from framework.jobs import JobLocation, Jobs
from framework.keys import JOB_STATES
from framework.results import result as read_result
from framework.upgrade import check_single_redis
from tests.integration.workers import run_all
from tests.topology import CA, ClusterGroup, make_ca

# one worker runs the module, so its module-scoped servers start once
pytestmark = [pytest.mark.topology, pytest.mark.xdist_group("cluster")]

ROOT = Path(__file__).resolve().parents[2]
CRM_QUEUES = list(tomllib.loads((ROOT / "config/queues.toml").read_text())["queues"])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterGroup]:
    with ClusterGroup(tmp_path_factory.mktemp("cluster"), masters=3) as running:
        yield running


def registry() -> HandlerRegistry:
    registry = HandlerRegistry()

    @handler("messages", registry=registry)
    def send(payload: dict[str, Any]) -> dict[str, Any]:
        if payload.get("fail"):
            raise ValueError(f"bad {payload['n']}")
        return {"sent": payload["n"]}

    @handler("emails", registry=registry)
    def mail(payload: dict[str, Any]) -> dict[str, Any]:
        return {"mailed": payload["n"]}

    @handler("webhooks", registry=registry)
    def hook(payload: dict[str, Any]) -> None:
        """Not run here."""

    @handler("campaigns", registry=registry)
    def fan_out(payload: dict[str, Any]) -> dict[str, Any]:
        """A parent: its children are jobs of messages, on another master."""
        job = current_job()
        assert job is not None
        children = [{"n": n, "fail": n in payload["fail"]} for n in range(payload["n"])]
        return {"spawned": len(job.spawn_many(send, children))}

    HANDLERS.update(send=send, mail=mail, fan_out=fan_out)
    return registry


HANDLERS: dict[str, Any] = {}
"""The handlers of the latest :func:`registry`, by name (to chain them)."""


def cluster_app(cluster: ClusterGroup, prefix: str, redis_lines: str = "") -> Hueyard:
    """An app on ``cluster`` (``[redis]`` plus ``redis_lines``) with the queues of
    :func:`registry`."""
    text = (
        f'[redis]\nurl = "{cluster.url}"\ncluster = true\nprefix = "{prefix}"\n{redis_lines}'
        "[queues.messages]\n[queues.emails]\n[queues.webhooks]\n[queues.campaigns]\n"
    )
    return Hueyard(parse_settings(text, env={}), registry())


@pytest.fixture
def app(cluster: ClusterGroup) -> Iterator[Hueyard]:
    cluster.client().flushall()
    queues = "\n".join(f"[queues.{name}]\nattempts = 1" for name in CRM_QUEUES)
    text = f'[redis]\nurl = "{cluster.url}"\ncluster = true\nprefix = "ct"\n{queues}\n'
    app = Hueyard(parse_settings(text, env={}), registry())
    yield app
    app.close()


def test_the_ten_queues_spread_over_the_masters_each_on_one_slot(
    app: Hueyard, cluster: ClusterGroup
) -> None:
    masters = {}
    for name in CRM_QUEUES:
        q = app.keys.queue(name)
        keys = [q.state(state) for state in JOB_STATES]
        keys += [q.paused, q.wake, q.seq, q.limiter, q.job("x"), q.logs("x"), q.key("k")]
        keys += [q.stats(1), q.samples(1), q.kv_prefix + "lock"]
        assert len({key_slot(key.encode()) for key in keys}) == 1, name  # one script, one node
        masters[name] = cluster.master_of_key(q.waiting)
    assert len(CRM_QUEUES) == 10
    assert len(set(masters.values())) > 1, masters


def test_jobs_run_and_read_across_queues_by_config_alone(
    app: Hueyard, cluster: ClusterGroup
) -> None:
    # Given jobs of three queues on different shards
    messages = app.enqueue_many("messages", "send", [{"n": n} for n in range(20)])
    failing = app.enqueue("messages", "send", {"n": 99, "fail": True})
    emails = app.enqueue_many("emails", "mail", [{"n": n} for n in range(5)])
    delayed = app.enqueue("webhooks", "hook", {"n": 1}, delay=3600)
    shards = {
        cluster.master_of_key(app.keys.queue(q).waiting) for q in ("messages", "emails", "webhooks")
    }
    assert len(shards) > 1
    # When they run
    assert (run_all(app, "messages"), run_all(app, "emails")) == (21, 5)

    # Then every read over the queues answers, in one call each
    jobs = Jobs(app)
    counts = jobs.counts_all()
    assert (counts["messages"].completed, counts["messages"].failed) == (20, 1)
    assert (counts["emails"].completed, counts["webhooks"].delayed) == (5, 1)
    assert read_result(app, emails[3]) == {"mailed": 3}
    job = jobs.get(messages[7])  # by id alone: each queue is asked
    assert job is not None and (job.queue, job.state, job.result) == (
        "messages",
        "completed",
        {"sent": 7},
    )
    assert jobs.get(messages[7], queue="emails") is None
    assert jobs.find(delayed) == JobLocation("webhooks", "delayed")
    page = jobs.list_jobs("messages", "completed", page_size=5)
    assert page.total == 20 and len(page.items) == 5 and page.items[0].result is not None
    failed = jobs.get(failing, queue="messages")
    assert failed is not None and failed.error == "ValueError: bad 99"
    assert jobs.summary("messages", minutes=5).completed == 20
    assert jobs.pulse("webhooks").next_due is not None

    # and every action on one queue
    assert jobs.promote("webhooks", delayed)
    with pytest.raises(JobActionError, match="belongs to queue 'webhooks', not 'emails'"):
        jobs.remove("emails", delayed)
    assert jobs.remove("webhooks", delayed)
    assert jobs.retry("messages", failing)
    assert jobs.pause("emails") and jobs.is_paused("emails") and jobs.resume("emails")


def test_the_cache_health_and_info_span_the_masters(app: Hueyard) -> None:
    assert app.cache.get_cached("report", lambda: {"rows": 3}, ttl=60) == {"rows": 3}
    assert app.cache.get("report") == {"rows": 3}
    assert app.cache.health()["connected"] is True
    info = app.cache.server_info()
    assert info is not None and info["cluster_masters"] == 3 and info["role"] == "master"
    assert app.clients.opened is not None and app.clients.opened >= 3


def test_wait_replicas_waits_on_the_queue_s_own_master(cluster: ClusterGroup) -> None:
    text = (
        f'[redis]\nurl = "{cluster.url}"\ncluster = true\nprefix = "cw"\n'
        "wait_replicas = 1\n[queues.messages]\n[queues.emails]\n[queues.webhooks]\n"
        "[queues.campaigns]\n"
    )
    app = Hueyard(parse_settings(text, env={}), registry())
    master = cluster.master_of_key(app.keys.queue("emails").waiting)
    for port in cluster.master_ports():
        with redis.Redis(port=port) as node:
            node.config_resetstat()
    try:
        ids = app.enqueue_many("emails", "mail", [{"n": n} for n in range(3)])
        # WAIT ran on the queue's own master, after the enqueue there (WAIT counts the
        # writes of its own connection: anywhere else it would confirm nothing)
        for port in cluster.master_ports():
            with redis.Redis(port=port) as node:
                stats = node.info("commandstats")
            waits = stats.get("cmdstat_wait", {}).get("calls", 0)
            assert waits == (1 if port == master else 0), (port, master)
        # and returned: the replica of the queue's master has the jobs already
        [replica] = cluster.replicas_of(master)
        with redis.Redis(port=replica) as node:
            node.execute_command("READONLY")
            assert all(node.exists(app.keys.job("emails", i)) for i in ids)
    finally:
        app.close()


def test_hueyard_upgrade_keys_is_refused_on_a_cluster(app: Hueyard) -> None:
    with pytest.raises(HueyardError, match=r"runs on the single Redis that holds hueyard 0\.1\.0"):
        check_single_redis(app.clients.client())


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ('url = "redis://n1:7000/3"', "a Redis Cluster has only database 0"),
        ('url = "unix:///tmp/r.sock"', "url names a node as redis:// or rediss://"),
        ('sentinels = ["s:26379"]\nmaster_name = "m"', "cluster = true and sentinels exclude"),
    ],
)
def test_a_cluster_config_that_can_not_work_is_refused(lines: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"\n  \[redis\]: .*{message}"):
        parse_settings(f"[redis]\ncluster = true\n{lines}\n[queues.work]\n", env={})


def test_redis_cluster_in_the_environment_turns_it_on_or_is_refused() -> None:
    on = parse_settings("[queues.work]\n", env={"REDIS_CLUSTER": "yes"})
    off = parse_settings("[redis]\ncluster = true\n[queues.work]\n", env={"REDIS_CLUSTER": "0"})
    assert (on.redis.cluster, off.redis.cluster) == (True, False)
    assert on.redis.connection.redacted_url.endswith("(cluster)")
    with pytest.raises(ConfigError, match="REDIS_CLUSTER='maybe' is not a yes or no"):
        parse_settings("[queues.work]\n", env={"REDIS_CLUSTER": "maybe"})


def test_cluster_nodes_come_from_the_file_or_the_environment_and_need_cluster() -> None:
    text = '[redis]\ncluster = true\ncluster_nodes = ["n2:7001", "[::1]:7002"]\n[queues.work]\n'
    spec = parse_settings(text, env={}).redis.connection
    assert spec.cluster_nodes == (("n2", 7001), ("::1", 7002))
    assert spec.redacted_url.endswith("(cluster; also n2:7001,[::1]:7002)")
    env = {"REDIS_CLUSTER": "1", "REDIS_CLUSTER_NODES": " n3:7003 , n4:7004 "}
    assert parse_settings("[queues.work]\n", env=env).redis.connection.cluster_nodes == (
        ("n3", 7003),
        ("n4", 7004),
    )
    # a list of nodes without cluster = true is a mistake, not ignored
    with pytest.raises(ConfigError, match=r"cluster_nodes are nodes of a Redis Cluster: set"):
        parse_settings('[redis]\ncluster_nodes = ["n2:7001"]\n[queues.work]\n', env={})
    # a bad entry names the variable that set it
    with pytest.raises(ConfigError, match=r"'n5' is not host:port.*set by REDIS_CLUSTER_NODES"):
        parse_settings("[queues.work]\n", env={**env, "REDIS_CLUSTER_NODES": "n5"})


# -- TLS and ACL users on a Cluster ------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ClusterGroup, CA]]:
    base = tmp_path_factory.mktemp("tls-cluster")
    ca = make_ca(base / "ca")
    with ClusterGroup(base / "nodes", masters=3, replicas_per_master=0, ca=ca) as running:
        for port in running.master_ports():  # ACL users are each node's own
            with redis.Redis(
                port=port, ssl=True, ssl_ca_certs=str(ca.ca_cert), ssl_cert_reqs="required"
            ) as node:
                node.acl_setuser("crm", enabled=True, passwords=["+s3cret-pass"], keys=["*"],
                                 channels=["*"], commands=["+@all"])  # fmt: skip
        yield running, ca


def tls_app(cluster: ClusterGroup, ca_file: Path, password: str = "s3cret-pass") -> Hueyard:
    port = cluster.master_ports()[0]
    text = (
        f'[redis]\nurl = "rediss://crm:{password}@127.0.0.1:{port}"\ncluster = true\n'
        f'tls_ca_file = "{ca_file}"\nreconnect_attempts = 0\nprefix = "tls"\n'
        "[queues.messages]\n[queues.emails]\n[queues.webhooks]\n[queues.campaigns]\n"
    )
    return Hueyard(parse_settings(text, env={}), registry())


def test_a_tls_cluster_with_an_acl_user_works_by_config_alone(
    tls_cluster: tuple[ClusterGroup, CA],
) -> None:
    cluster, ca = tls_cluster
    app = tls_app(cluster, ca.ca_cert)
    try:
        ids = app.enqueue_many("messages", "send", [{"n": n} for n in range(3)])
        mail = app.enqueue("emails", "mail", {"n": 9})
        assert (run_all(app, "messages"), run_all(app, "emails")) == (3, 1)
        assert read_result(app, ids[2]) == {"sent": 2}
        assert read_result(app, mail) == {"mailed": 9}
        assert Jobs(app).counts_all()["messages"].completed == 3
        info = app.cache.server_info()
        assert info is not None and info["cluster_masters"] == 3
    finally:
        app.close()


def test_a_tls_cluster_refuses_another_ca_and_a_wrong_password_saying_which(
    tls_cluster: tuple[ClusterGroup, CA], tmp_path: Path
) -> None:
    cluster, ca = tls_cluster
    other = make_ca(tmp_path / "other", name="other")
    for app, said in (
        (tls_app(cluster, other.ca_cert), "presented a TLS certificate that could not be verified"),
        (tls_app(cluster, ca.ca_cert, password="wrong-pass"), "refused the credentials"),
    ):
        try:
            with pytest.raises(RedisUnavailableError) as refused:
                Jobs(app).counts_all()
            assert said in str(refused.value)
            assert "s3cret-pass" not in str(refused.value)
            assert "wrong-pass" not in str(refused.value)
        finally:
            app.close()


def test_an_app_on_a_cluster_that_does_not_answer_is_built_and_says_so_at_its_first_call() -> None:
    # Given a Cluster URL where nothing listens (a consumer started before its Redis)
    text = (
        '[redis]\nurl = "redis://127.0.0.1:1"\ncluster = true\nreconnect_attempts = 0\n'
        "[queues.messages]\n[queues.emails]\n[queues.webhooks]\n[queues.campaigns]\n"
    )
    # When the app is built: no connection yet, so no error
    app = Hueyard(parse_settings(text, env={}), registry())
    try:
        # Then its first call says which cluster did not answer, as for one Redis
        with pytest.raises(RedisUnavailableError) as down:
            Jobs(app).counts_all()
        assert "no node of the Redis Cluster at redis://127.0.0.1:1 (cluster) answered" in str(
            down.value
        )
        health = app.cache.health()
        assert health["connected"] is False and "127.0.0.1:1" in str(health["error"])
        assert app.cache.server_info() is None
        assert app.clients.opened == 0
    finally:
        app.close()


def test_a_parent_waits_for_children_on_another_master_and_its_follow_up_starts(
    app: Hueyard, cluster: ClusterGroup
) -> None:
    # Given a parent on campaigns whose children are jobs of messages, on another master
    campaigns, messages = app.keys.queue("campaigns"), app.keys.queue("messages")
    assert cluster.master_of_key(campaigns.waiting) != cluster.master_of_key(messages.waiting)
    chain = HANDLERS["fan_out"].s({"n": 4, "fail": [2]})
    parent = chain.then(HANDLERS["mail"], {"n": 0}, field="summary").enqueue()
    # When the parent runs, then its children (their outcomes cross to its master)
    assert run_all(app, "campaigns") == 1
    jobs = Jobs(app)
    assert jobs.find(parent) == JobLocation("campaigns", "waiting-children")
    assert run_all(app, "messages") == 4
    # Then it completed once, counting its children, and its follow-up ran
    job = jobs.get(parent, queue="campaigns")
    assert job is not None and job.state == "completed", job
    assert (job.children, job.children_completed, job.children_failed) == (4, 3, 1)
    assert run_all(app, "emails") == 1
    assert jobs.counts("emails").completed == 1
    assert jobs.counts("campaigns").waiting_children == 0


def test_a_job_read_while_its_slot_is_being_moved_is_found(tmp_path: Path) -> None:
    # Given a queue whose slot is being moved to another master (a resharding), its first
    # job's record moved already, its sets not yet: the old master answers ASK for it
    with ClusterGroup(tmp_path / "reshard", masters=2, replicas_per_master=0) as cluster:
        app = cluster_app(cluster, "rs")
        try:
            ids = app.enqueue_many("messages", "send", [{"n": n} for n in range(3)])
            q = app.keys.queue("messages")
            slot = key_slot(q.waiting.encode())
            source = cluster.master_for_slot(slot)
            [target] = [port for port in cluster.master_ports() if port != source]
            _start_moving(cluster, slot, source, target, q.job(ids[0]))
            # When it is read, by queue and by id alone
            jobs = Jobs(app)
            by_queue, by_id = jobs.get(ids[0], queue="messages"), jobs.get(ids[0])
            # Then it is found where it is, whole, and the queue still counts it
            for job in (by_queue, by_id):
                assert job is not None
                assert (job.state, job.payload, job.problem) == ("waiting", {"n": 0}, None)
            assert jobs.counts("messages").waiting == 3
        finally:
            app.close()


def test_threads_moving_a_failed_node_and_reading_the_slot_map_never_collide(
    app: Hueyard,
) -> None:
    # redis-py moves a node that refused a connection to the end of its node lists; it did
    # so without its node manager's lock, so a worker re-reading the slot map at that
    # moment failed with "dictionary keys changed during iteration" (seen in a failover)
    cluster = app.clients.cluster
    assert isinstance(cluster, LazyCluster)
    manager = cluster.resolve().nodes_manager
    names = list(manager.nodes_cache)
    errors: list[BaseException] = []
    stop = threading.Event()

    def move() -> None:
        while not stop.is_set():
            for name in names:
                manager.move_node_to_end_of_cached_nodes(name)

    def read() -> None:
        try:
            while not stop.is_set():
                manager.get_nodes_by_server_type("primary")
        except RuntimeError as exc:
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as CPython can
    try:
        threads = [threading.Thread(target=move), threading.Thread(target=read)]
        for thread in threads:
            thread.start()
        stop.wait(1.0)
        stop.set()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    assert sorted(manager.nodes_cache) == sorted(names)


def test_a_claim_whose_answer_times_out_is_sent_once_on_a_cluster(
    cluster: ClusterGroup,
) -> None:
    # Given a cluster app that retries (as in production) with a short socket timeout,
    # and four waiting jobs on messages
    cluster.client().flushall()
    app = cluster_app(cluster, "so", "socket_timeout = 0.3\nreconnect_attempts = 5\n")
    try:
        q = app.keys.queue("messages")
        app.enqueue_many("messages", "send", [{"n": n} for n in range(4)])
        master = redis.Redis(port=cluster.master_of_key(q.waiting))
        storage = app.queue("messages").huey.storage
        first = storage.claim()  # the scripts loaded, the connection open
        assert first is not None
        storage.release(first, "completed", value="null")
        # When the queue's master is busy for longer than a try's timeout (a slow script
        # of another client): the claim's answer comes too late, and Redis runs it after
        busy = threading.Thread(target=master.eval, args=(_BUSY, 0, 500))
        busy.start()
        time.sleep(0.05)
        with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
            storage.claim()
        busy.join()
        deadline = time.monotonic() + 5
        while not master.zcard(q.active) and time.monotonic() < deadline:
            time.sleep(0.01)  # the claim runs once the script is done
        time.sleep(0.1)  # and any try of it sent after
        # Then Redis ran the claim once, not once a try of the cluster client's retry
        # (each would take a job under the same token, to stall after its lease)
        assert master.zcard(q.active) == 1
        # And the next claim gives that job back, then takes one
        claim = storage.claim()
        assert claim is not None and master.zcard(q.active) == 1
    finally:
        app.close()


_BUSY = """
local started = redis.call('TIME')
repeat
  local now = redis.call('TIME')
until (now[1] - started[1]) * 1000000 + (now[2] - started[2]) >= tonumber(ARGV[1]) * 1000
return 1
"""
"""A script that keeps its Redis busy for ARGV[1] milliseconds."""


def test_a_claim_refused_while_its_slot_is_not_served_is_tried_again_then_said_as_an_outage(
    cluster: ClusterGroup,
) -> None:
    # Given a cluster app and a waiting job, and its master no longer serving the queue's
    # slot for a moment (as during a failover: Redis answers CLUSTERDOWN and runs nothing)
    cluster.client().flushall()
    app = cluster_app(cluster, "cd", "reconnect_attempts = 8\n")
    q = app.keys.queue("messages")
    slot = key_slot(q.waiting.encode())
    master = redis.Redis(port=cluster.master_of_key(q.waiting))
    try:
        job_id = app.enqueue("messages", "send", {"n": 1})
        storage = app.queue("messages").huey.storage
        master.execute_command("CLUSTER", "DELSLOTS", slot)
        back = threading.Timer(0.3, master.execute_command, ("CLUSTER", "ADDSLOTS", slot))
        back.start()
        # When a worker claims (a call sent once: a lost answer is never sent again)
        claim = storage.claim()
        back.join()
        # Then the refusal was tried again, as the cluster client does outside a claim
        assert claim is not None and claim.id == job_id
        # And refused past the tries, it is an outage (Redis does not answer), not a
        # storage error that blames a key
        storage.release(claim, "completed", value="null")
        app.enqueue("messages", "send", {"n": 2})
        master.execute_command("CLUSTER", "DELSLOTS", slot)
        app.clients.cluster.retry.update_retries(0)
        with pytest.raises(redis.ConnectionError, match="Redis Cluster is down"):
            storage.claim()
    finally:
        with contextlib.suppress(redis.ResponseError):
            master.execute_command("CLUSTER", "ADDSLOTS", slot)
        app.close()


def _move_slot(cluster: ClusterGroup, slot: int, source: int, target: int) -> None:
    """Finish moving ``slot``: every key left, then the slot itself, on both masters."""
    with redis.Redis(port=source) as old, redis.Redis(port=target) as new:
        while keys := old.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            old.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
        for node in (new, old):
            node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", cluster.node_id(target))


def _start_moving(cluster: ClusterGroup, slot: int, source: int, target: int, key: str) -> None:
    """Set ``slot`` moving from master ``source`` to ``target``, and move ``key`` alone."""
    with redis.Redis(port=source) as old, redis.Redis(port=target) as new:
        new.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", cluster.node_id(source))
        old.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", cluster.node_id(target))
        old.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", key)


def test_a_release_while_its_slot_is_being_moved_waits_for_the_move(tmp_path: Path) -> None:
    # Given a running job of a queue whose slot starts moving to another master, its
    # record moved already, the queue's sets not yet (Redis answers TRYAGAIN for a script
    # whose keys are half moved, until redis-py's budget of redirects runs out)
    with ClusterGroup(tmp_path / "moving", masters=2, replicas_per_master=0) as cluster:
        app = cluster_app(cluster, "mv", "reconnect_attempts = 8\n")
        try:
            ids = app.enqueue_many("messages", "send", [{"n": n} for n in range(2)])
            storage = app.queue("messages").huey.storage
            claim = storage.claim()
            assert claim is not None and claim.id == ids[0]
            q = app.keys.queue("messages")
            slot = key_slot(q.waiting.encode())
            source = cluster.master_for_slot(slot)
            [target] = [port for port in cluster.master_ports() if port != source]
            _start_moving(cluster, slot, source, target, q.job(claim.id))
            done = threading.Timer(0.8, _move_slot, (cluster, slot, source, target))
            done.start()
            # When the worker releases it (its outcome stored in the script's one call)
            stored = storage.release(claim, "completed", value='{"sent": 0}')
            done.join()
            # Then the release waited for the move and stored it once, on the new master
            assert stored
            job = Jobs(app).get(ids[0], queue="messages")
            assert job is not None and job.state == "completed" and job.stalls == 0, job
            # And a move that does not settle within the tries is an outage, not bad data
            _start_moving(cluster, slot, target, source, q.job(ids[1]))
            app.clients.cluster.retry.update_retries(1)
            with pytest.raises(redis.ConnectionError, match="did not settle in time"):
                storage.claim()
        finally:
            app.close()


def test_a_process_started_while_the_url_s_node_is_down_finds_the_cluster_through_cluster_nodes(
    cluster: ClusterGroup,
) -> None:
    # Given a URL whose node is down as a process starts (a port freed again), and
    # the cluster's other nodes in cluster_nodes
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    nodes = ", ".join(f'"127.0.0.1:{port}"' for port in cluster.ports[1:])
    text = (
        f'[redis]\nurl = "redis://{dead}"\ncluster = true\nprefix = "seeds"\n'
        "reconnect_attempts = 0\n{nodes}[queues.messages]\n[queues.emails]\n"
        "[queues.webhooks]\n[queues.campaigns]\n"
    )
    app = Hueyard(
        parse_settings(text.format(nodes=f"cluster_nodes = [{nodes}]\n"), env={}), registry()
    )
    alone = Hueyard(parse_settings(text.format(nodes=""), env={}), registry())
    try:
        # Then its health probe, its enqueues and its reads reach the cluster
        assert app.cache.health()["connected"] is True
        job_id = app.enqueue("messages", "send", {"n": 1})
        assert Jobs(app).find(job_id) == JobLocation("messages", "waiting")
        # where the URL alone does not
        assert alone.cache.health()["connected"] is False
        with pytest.raises(
            RedisUnavailableError, match=f"no node of the Redis Cluster at redis://{dead}"
        ):
            Jobs(alone).counts_all()
    finally:
        app.close()
        alone.close()


def test_health_rides_through_the_death_of_the_node_the_url_names(tmp_path: Path) -> None:
    # Given a dashboard's view of a cluster (its health probe, as load balancers call
    # it) whose URL names a master, and nothing else asked of the cluster yet
    with ClusterGroup(tmp_path / "seed", masters=3) as cluster:
        app = cluster_app(cluster, "sd")
        try:
            assert app.cache.health()["connected"] is True
            # When that master dies and its replica takes over
            seed = cluster.ports[0]
            assert seed in cluster.master_ports()
            cluster.kill_master(seed)
            cluster.wait_failover()
            # Then the cluster still reads as up, and its queues can be read
            assert app.cache.health()["connected"] is True
            assert Jobs(app).counts("messages").waiting == 0
        finally:
            app.close()
