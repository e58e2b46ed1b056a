"""The test harness's Redis Cluster (tests/topology.py ``ClusterGroup``), checked with
plain redis-py before hueyard runs on it: real ``redis-server`` nodes in cluster mode
on loopback ports, a master SIGKILLed, its replica taking over."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from tests.topology import ClusterGroup

pytestmark = pytest.mark.topology

KEYS = 300


def on_node(port: int, *command: object) -> object:
    """One command to the node on ``port`` itself (no cluster client, no redirection)."""
    with redis.Redis(port=port) as node:
        return node.execute_command(*command)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterGroup]:
    with ClusterGroup(tmp_path / "cluster", masters=3, replicas_per_master=1) as running:
        yield running


def test_three_masters_each_with_a_replica_share_every_slot(cluster: ClusterGroup) -> None:
    masters = cluster.master_ports()
    assert len(masters) == 3
    assert sorted(port for master in masters for port in cluster.replicas_of(master)) == sorted(
        set(cluster.ports) - set(masters)
    )
    assert all(len(cluster.replicas_of(master)) == 1 for master in masters)
    owners = {cluster.master_for_slot(slot) for slot in (0, 6000, REDIS_CLUSTER_HASH_SLOTS - 1)}
    assert owners == set(masters)


def test_keys_spread_over_the_masters_and_survive_a_master_killed(cluster: ClusterGroup) -> None:
    # Given keys written through the cluster client, over every master
    client = cluster.client()
    keys = [f"key:{n}" for n in range(KEYS)]
    for key in keys:
        client.set(key, key)
    owners = {key: cluster.master_of_key(key) for key in keys}
    assert set(owners.values()) == set(cluster.master_ports())
    # (each key is on the master the harness names)
    for key in keys[:20]:
        assert on_node(owners[key], "GET", key) == key.encode()
    # and replicated before the kill (the test is about failover, not async replication)
    cluster.wait_replicated()

    # When the master of the first key is killed
    victim = owners[keys[0]]
    (replica,) = cluster.replicas_of(victim)
    cluster.kill_master(victim)
    new = cluster.wait_failover()

    # Then its replica serves its slots, and every key is read back through the same client
    assert new == replica
    assert cluster.master_of_key(keys[0]) == replica
    assert victim not in cluster.master_ports()
    assert cluster.master_for_slot(key_slot(keys[0].encode())) == replica

    deadline = time.monotonic() + 15
    while True:
        try:
            values = [client.get(key) for key in keys]
            break
        except redis.RedisError:
            # the client learns the new master on a retry
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert values == [key.encode() for key in keys]
    client.set("after", "1")
    assert client.get("after") == b"1"
    client.close()


def test_one_master_without_replicas_serves_every_slot(tmp_path: Path) -> None:
    with ClusterGroup(tmp_path / "one", masters=1, replicas_per_master=0) as cluster:
        (master,) = cluster.master_ports()
        assert cluster.ports == [master]
        assert cluster.master_for_slot(0) == cluster.master_for_slot(16383) == master
        client = cluster.client()
        client.mset_nonatomic({"a": "1", "b": "2", "c": "3"})
        assert client.mget_nonatomic(["a", "b", "c"]) == [b"1", b"2", b"3"]
        client.close()
