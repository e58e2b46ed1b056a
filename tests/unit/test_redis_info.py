"""``RedisInfo``: the fields of INFO the doctor and /metrics use, and what they imply."""

from __future__ import annotations

from typing import Any

import pytest

from framework.redis_info import RedisInfo

PRIMARY = {
    "redis_version": "7.0.15",
    "role": "master",
    "used_memory": 900,
    "maxmemory": 1000,
    "maxmemory_policy": "noeviction",
    "connected_clients": 4,
}


def test_a_primary_under_its_limit_with_noeviction() -> None:
    info = RedisInfo.parse(PRIMARY)
    assert info == RedisInfo("7.0.15", "master", None, 900, 1000, "noeviction", 4)
    assert (info.is_replica, info.memory_ratio, info.may_evict) == (False, 0.9, False)


def test_a_replica_names_its_primary() -> None:
    info = RedisInfo.parse({**PRIMARY, "role": "slave", "master_host": "10.0.0.7",
                            "master_port": 6380})  # fmt: skip
    assert info.is_replica
    assert info.primary == "10.0.0.7:6380"


@pytest.mark.parametrize(
    ("fields", "ratio", "may_evict"),
    [
        ({"maxmemory": 0}, None, False),  # no limit: no share
        ({"maxmemory_policy": "allkeys-lru"}, 0.9, True),
        ({"maxmemory_policy": "volatile-ttl", "maxmemory": 0}, None, True),
        ({"used_memory": None}, None, False),
    ],
)
def test_the_share_of_memory_and_whether_it_may_evict(
    fields: dict[str, Any], ratio: float | None, may_evict: bool
) -> None:
    info = RedisInfo.parse({**PRIMARY, **fields})
    assert (info.memory_ratio, info.may_evict) == (ratio, may_evict)


def test_missing_or_odd_fields_are_none_never_an_error() -> None:
    info = RedisInfo.parse({"used_memory": "lots", "connected_clients": True})
    assert info == RedisInfo()
    assert (info.is_replica, info.memory_ratio, info.may_evict) == (False, None, False)


def test_what_a_policy_deletes_is_named_by_its_kind() -> None:
    assert RedisInfo(maxmemory_policy="allkeys-lru").evicts.startswith("any key: job records")
    volatile = RedisInfo(maxmemory_policy="volatile-ttl").evicts
    assert volatile.startswith("keys with a TTL") and "job records" not in volatile
