"""Sentinel over TLS with an ACL user: a master, a replica and three sentinels that all
speak TLS only (a CA made by the test), the sentinels with a password of their own.

An app configured by ``rediss://user:password@...``, ``sentinels``, ``master_name``,
``tls_ca_file`` and ``sentinel_password`` runs jobs (in this process) and follows a
forced failover by itself; another CA, a wrong password and a wrong sentinel password
are refused saying which, without showing a password. The drain across a failover
with real consumers (plain TCP) is in ``tests/e2e/test_sentinel.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from framework import defaults
from framework.application import Hueyard
from framework.config import parse_settings
from framework.errors import RedisUnavailableError
from framework.handlers import HandlerRegistry, handler
from framework.jobs import Jobs
from framework.results import result as read_result
from tests.integration.workers import run_all
from tests.topology import CA, MASTER_NAME, SentinelGroup, make_ca

# one worker runs the module, so its module-scoped servers start once
pytestmark = [pytest.mark.topology, pytest.mark.xdist_group("sentinel-tls")]

USER, PASSWORD, SENTINEL_PASSWORD = "crm", "s3cret-pass", "sentinel-pass"


def registry() -> HandlerRegistry:
    registry = HandlerRegistry()

    @handler("messages", registry=registry)
    def send(payload: dict[str, Any]) -> dict[str, Any]:
        return {"sent": payload["n"]}

    return registry


@pytest.fixture(scope="module")
def tls_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SentinelGroup, CA]]:
    base = tmp_path_factory.mktemp("tls-sentinel")
    ca = make_ca(base / "ca")
    (base / "group").mkdir()
    group = SentinelGroup(
        base / "group", ca=ca, acl_user=(USER, PASSWORD), sentinel_password=SENTINEL_PASSWORD
    )
    with group as running:
        yield running, ca


def tls_app(
    group: SentinelGroup,
    ca_file: Path,
    *,
    password: str = PASSWORD,
    sentinel_password: str = SENTINEL_PASSWORD,
    master: str = MASTER_NAME,
) -> Hueyard:
    sentinels = ", ".join(f'"{entry}"' for entry in group.sentinels)
    # The url's host is not used with sentinels: an address where no Redis runs proves it.
    text = (
        f'[redis]\nurl = "rediss://{USER}:{password}@127.0.0.1:1/0"\n'
        f'sentinels = [{sentinels}]\nmaster_name = "{master}"\n'
        f'sentinel_password = "{sentinel_password}"\ntls_ca_file = "{ca_file}"\n'
        'reconnect_attempts = 2\nprefix = "stls"\n[queues.messages]\nattempts = 1\n'
    )
    return Hueyard(parse_settings(text, env={}), registry())


def test_an_acl_user_over_tls_runs_jobs_and_follows_a_failover(
    tls_group: tuple[SentinelGroup, CA],
) -> None:
    group, ca = tls_group
    app = tls_app(group, ca.ca_cert)
    try:
        # Given jobs enqueued and run through TLS sentinels, on the replica too
        before = app.enqueue_many("messages", "send", [{"n": n} for n in range(3)])
        assert run_all(app, "messages") == 3
        assert read_result(app, before[2]) == {"sent": 2}
        old = group.master_port()
        group.wait_replicated()

        # When Sentinel moves the master to the replica
        new = group.failover()
        assert new != old
        time.sleep(defaults.SENTINEL_RECHECK)  # the next command asks Sentinel again

        # Then the same app enqueues, runs and reads on the new master by itself
        after = app.enqueue_many("messages", "send", [{"n": n} for n in range(10, 13)])
        assert run_all(app, "messages") == 3
        assert [read_result(app, job) for job in before + after] == [
            {"sent": n} for n in (0, 1, 2, 10, 11, 12)
        ]
        assert Jobs(app).counts_all()["messages"].completed == 6
        with group.client(new) as master:
            assert all(master.exists(app.keys.job("messages", job)) for job in after)
    finally:
        app.close()


def test_another_ca_and_wrong_passwords_are_refused_saying_which(
    tls_group: tuple[SentinelGroup, CA], tmp_path: Path
) -> None:
    group, ca = tls_group
    other = make_ca(tmp_path / "other", name="other")
    for app, said, fix in (
        (
            tls_app(group, other.ca_cert),  # refused by the sentinels first
            "presented a TLS certificate that could not be verified",
            "set [redis] tls_ca_file",
        ),
        (
            tls_app(group, ca.ca_cert, password="wrong-pass"),  # the sentinels answer; the master
            "refused the credentials",
            "check the user and password of [redis] url",
        ),
        (
            tls_app(group, ca.ca_cert, sentinel_password="wrong-sentinel"),
            "refused the credentials",
            "check [redis] sentinel_password",
        ),
        (
            tls_app(group, ca.ca_cert, master="no-such-master"),  # not REDIS_URL's fault
            "no master 'no-such-master' found",
            "name a master called [redis] master_name (REDIS_MASTER_NAME) that is up",
        ),
    ):
        try:
            with pytest.raises(RedisUnavailableError) as refused:
                Jobs(app).counts_all()
            message = str(refused.value)
            assert said in message and fix in message
            for secret in (PASSWORD, SENTINEL_PASSWORD, "wrong-pass", "wrong-sentinel"):
                assert secret not in message
        finally:
            app.close()
