"""TLS and ACL users against real ``redis-server`` processes that speak TLS only.

The CA, the server's and the client's certificates are made for each test
module with ``openssl`` (tests/topology.py); nothing is mocked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from framework.application import Hueyard
from framework.errors import ConfigError, HueyardError
from framework.handlers import HandlerRegistry, handler
from framework.jobs import Jobs
from tests.conftest import AppFactory
from tests.integration.redis_server import RedisServer
from tests.topology import CA, make_ca, tls_server

# one worker runs the module, so its module-scoped servers start once
pytestmark = pytest.mark.xdist_group("tls-and-acl")

QUEUES = "[queues.work]\nattempts = 1\n"


def registry() -> HandlerRegistry:
    handlers = HandlerRegistry()

    @handler("work", registry=handlers)
    def ping(payload: dict[str, Any]) -> None: ...

    return handlers


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CA:
    return make_ca(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> CA:
    return make_ca(tmp_path_factory.mktemp("other-tls"), name="other")


@pytest.fixture(scope="module")
def server(ca: CA) -> Iterator[RedisServer]:
    with tls_server(ca) as running:
        yield running


def tls_lines(ca_file: Path, *more: str) -> str:
    return "\n".join([f'tls_ca_file = "{ca_file}"', "reconnect_attempts = 0", *more])


def round_trip(app: Hueyard) -> None:
    """Enqueue a job and read it back: both directions over the connection."""
    job_id = app.enqueue("work", "ping", {"n": 1})
    info = Jobs(app).get(job_id)
    assert info is not None and info.payload == {"n": 1}


def test_rediss_with_the_servers_ca_works(
    make_app: AppFactory, server: RedisServer, ca: CA
) -> None:
    app = make_app(
        QUEUES, registry(), url=f"rediss://127.0.0.1:{server.port}/0",
        redis_lines=tls_lines(ca.ca_cert),
    )  # fmt: skip
    round_trip(app)


def test_a_certificate_signed_by_another_ca_is_refused_with_a_clear_error(
    make_app: AppFactory, server: RedisServer, other_ca: CA
) -> None:
    app = make_app(
        QUEUES, registry(), url=f"rediss://127.0.0.1:{server.port}/0",
        redis_lines=tls_lines(other_ca.ca_cert),
    )  # fmt: skip
    with pytest.raises(HueyardError) as caught:
        app.enqueue("work", "ping", {"n": 1})
    assert "certificate verify failed" in str(caught.value)
    assert "set [redis] tls_ca_file" in str(caught.value)


def test_plain_redis_to_a_tls_port_is_refused(make_app: AppFactory, server: RedisServer) -> None:
    app = make_app(
        QUEUES, registry(), url=f"redis://127.0.0.1:{server.port}/0",
        redis_lines="reconnect_attempts = 0\nsocket_timeout = 1",
    )  # fmt: skip
    with pytest.raises(HueyardError):
        app.enqueue("work", "ping", {"n": 1})


def test_a_server_that_asks_for_a_client_certificate(make_app: AppFactory, ca: CA) -> None:
    with tls_server(ca, client_certs=True) as server:
        url = f"rediss://127.0.0.1:{server.port}/0"
        without = make_app(QUEUES, registry(), url=url, redis_lines=tls_lines(ca.ca_cert))
        with pytest.raises(HueyardError) as caught:
            without.enqueue("work", "ping", {"n": 1})
        assert "tls_cert_file" in str(caught.value)

        cert = (f'tls_cert_file = "{ca.client_cert}"', f'tls_key_file = "{ca.client_key}"')
        app = make_app(QUEUES, registry(), url=url, redis_lines=tls_lines(ca.ca_cert, *cert))
        round_trip(app)


def test_an_acl_user_over_tls(make_app: AppFactory, ca: CA) -> None:
    # Given a server whose default user is off and whose user "crm" may do everything
    acl = ("--user", "default", "off", "--user", "crm", "on", ">s3cret-pass", "~*", "&*", "+@all")
    with tls_server(ca, *acl) as server:
        port = server.port
        lines = tls_lines(ca.ca_cert)
        # Then the user with its password works
        app = make_app(QUEUES, registry(), url=f"rediss://crm:s3cret-pass@127.0.0.1:{port}/0",
                       redis_lines=lines)  # fmt: skip
        round_trip(app)
        # and a wrong password is refused, without showing it
        wrong = make_app(QUEUES, registry(), url=f"rediss://crm:nope@127.0.0.1:{port}/0",
                         redis_lines=lines)  # fmt: skip
        with pytest.raises(HueyardError) as caught:
            wrong.enqueue("work", "ping", {"n": 1})
        assert "refused the credentials" in str(caught.value)
        assert "nope" not in str(caught.value)


@pytest.mark.parametrize(
    ("lines", "fragment"),
    [
        ('tls_ca_file = "/x/ca.crt"', "tls_ca_file set, but url 'redis://"),
        ('tls_key_file = "/x/k.pem"', "tls_key_file"),
    ],
)
def test_tls_files_with_a_plain_url_are_a_config_error(
    make_app: AppFactory, lines: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        make_app(QUEUES, registry(), url="redis://127.0.0.1:6379/0", redis_lines=lines)
    assert fragment in str(caught.value)
