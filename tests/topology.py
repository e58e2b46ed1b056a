"""Real Redis topologies on loopback ports, started by the tests that need them.

* :func:`make_ca`: a throwaway certificate authority (``openssl``) with a server
  certificate for 127.0.0.1 / localhost and a client certificate.
* :func:`tls_server`: a :class:`RedisServer` that speaks TLS only.
* :class:`SentinelGroup`: a master, a replica and three sentinels watching them.

Every process is a real ``redis-server`` (sentinels too: ``--sentinel``); each
is stopped when its test ends.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.integration.redis_server import RedisServer, free_port

__all__ = ["CA", "SentinelGroup", "make_ca", "tls_server"]

MASTER_NAME = "hueyard-master"


@dataclass(frozen=True)
class CA:
    """Files of a throwaway CA: its certificate, a server's and a client's."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(
        [shutil.which("openssl") or "/usr/bin/openssl", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def make_ca(directory: Path, name: str = "ca") -> CA:
    """A new CA in ``directory``, with a server certificate for 127.0.0.1 and localhost
    and a client certificate, each signed by it (2048-bit RSA, valid one day)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = f"{name}.key", f"{name}.crt"
    _openssl("genrsa", "-out", ca_key, "2048", cwd=directory)
    _openssl(
        "req", "-x509", "-new", "-key", ca_key, "-days", "1", "-subj", f"/CN=hueyard test {name}",
        "-out", ca_cert, cwd=directory,
    )  # fmt: skip
    for who, extension in (
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        (directory / f"{who}.ext").write_text(extension + "\n")
        _openssl("genrsa", "-out", f"{name}-{who}.key", "2048", cwd=directory)
        _openssl(
            "req", "-new", "-key", f"{name}-{who}.key", "-subj", f"/CN={who}",
            "-out", f"{who}.csr", cwd=directory,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{who}.csr", "-CA", ca_cert, "-CAkey", ca_key,
            "-CAcreateserial", "-days", "1", "-extfile", f"{who}.ext",
            "-out", f"{name}-{who}.crt", cwd=directory,
        )  # fmt: skip
    return CA(
        ca_cert=directory / ca_cert,
        server_cert=directory / f"{name}-server.crt",
        server_key=directory / f"{name}-server.key",
        client_cert=directory / f"{name}-client.crt",
        client_key=directory / f"{name}-client.key",
    )


def tls_server(ca: CA, *extra: str, client_certs: bool = False) -> RedisServer:
    """A server with TLS only (``--port 0``); ``client_certs``: it asks for one."""
    port = free_port()
    server = RedisServer(
        port,
        "--port", "0",
        "--tls-port", str(port),
        "--tls-cert-file", str(ca.server_cert),
        "--tls-key-file", str(ca.server_key),
        "--tls-ca-cert-file", str(ca.ca_cert),
        "--tls-auth-clients", "yes" if client_certs else "no",
        *extra,
    )  # fmt: skip
    return server


class SentinelGroup:
    """A master, one replica and three sentinels (quorum 2) on loopback ports.

    ``down_after`` ms without an answer and the sentinels call the master down;
    :meth:`failover` forces a failover at once (``SENTINEL FAILOVER``).
    """

    def __init__(self, directory: Path, *, down_after: int = 1000) -> None:
        self.directory = directory
        self.master = RedisServer()
        self.replica = RedisServer(None, "--replicaof", "127.0.0.1", str(self.master.port))
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.down_after = down_after
        self._sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def sentinels(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.sentinel_ports]

    def start(self) -> SentinelGroup:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> SentinelGroup:
        self.master.start()
        self.replica.start()
        _wait(lambda: _role(self.replica.port) == ("slave", "up"), "replica in sync")
        for port in self.sentinel_ports:
            conf = self.directory / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after}\n"
                f"sentinel failover-timeout {MASTER_NAME} 5000\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            binary = shutil.which("redis-server") or "/usr/bin/redis-server"
            self._sentinels.append(
                subprocess.Popen(
                    [binary, str(conf), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        _wait(self._sentinels_agree, "three sentinels that see the master and its replica")
        return self

    def master_port(self) -> int:
        """The master's port, as the first sentinel sees it now."""
        client = redis.Redis(host="127.0.0.1", port=self.sentinel_ports[0], socket_timeout=2)
        _host, port = client.sentinel_get_master_addr_by_name(MASTER_NAME)  # type: ignore[no-untyped-call]
        return int(port)

    def failover(self) -> int:
        """Force a failover; wait until the old replica is the master. Its port."""
        old = self.master_port()
        client = redis.Redis(host="127.0.0.1", port=self.sentinel_ports[0], socket_timeout=5)
        client.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
        _wait(lambda: self.master_port() != old, "the sentinels to name a new master", 30)
        new = self.master_port()
        _wait(lambda: _role(new)[0] == "master", "the new master to take writes", 30)
        return new

    def stop(self) -> None:
        for process in self._sentinels:
            process.terminate()
        for process in self._sentinels:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
        self._sentinels.clear()
        self.replica.stop()
        self.master.stop()

    def _sentinels_agree(self) -> bool:
        for port in self.sentinel_ports:
            try:
                client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
                state = client.execute_command("SENTINEL", "MASTER", MASTER_NAME)
            except redis.RedisError:
                return False
            if not isinstance(state, dict):
                return False
            slaves, others = state.get(b"num-slaves", 0), state.get(b"num-other-sentinels", 0)
            if int(slaves) < 1 or int(others) < 2:
                return False
        return True

    def __enter__(self) -> SentinelGroup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _role(port: int) -> tuple[str, str]:
    try:
        info = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1).info("replication")
    except redis.RedisError:
        return ("down", "")
    return (str(info.get("role")), str(info.get("master_link_status", "")))


def _wait(condition: object, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise TimeoutError(f"waited {timeout} s for {what}")
