"""Real Redis topologies on loopback ports, started by the tests that need them.

* :func:`make_ca`: a throwaway certificate authority (``openssl``) with a server
  certificate for 127.0.0.1 / localhost and a client certificate.
* :func:`tls_server`: a :class:`RedisServer` that speaks TLS only.
* :class:`SentinelGroup`: a master, a replica and three sentinels watching them.
* :class:`ClusterGroup`: a Redis Cluster of ``masters`` masters with
  ``replicas_per_master`` replicas each.

Every process is a real ``redis-server`` (sentinels too: ``--sentinel``; cluster
nodes: ``--cluster-enabled yes``); each is stopped when its test ends.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from tests.integration.redis_server import RedisServer, free_port

__all__ = ["CA", "ClusterGroup", "ClusterNode", "SentinelGroup", "make_ca", "tls_server"]

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


_LEAF_EXTENSIONS = (
    "basicConstraints=critical,CA:FALSE\n"
    "keyUsage=critical,digitalSignature,keyEncipherment\n"
    "subjectKeyIdentifier=hash\n"
    "authorityKeyIdentifier=keyid,issuer\n"
)
"""What every certificate the test CA signs carries, as a real CA's do: Python 3.13's
default TLS context (``VERIFY_X509_STRICT``) refuses a chain without them."""


def make_ca(directory: Path, name: str = "ca") -> CA:
    """A new CA in ``directory``, with a server certificate for 127.0.0.1 and localhost
    and a client certificate, each signed by it (2048-bit RSA, valid one day), with the
    extensions a strict verifier asks for (RFC 5280 key usage, key identifiers)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = f"{name}.key", f"{name}.crt"
    _openssl("genrsa", "-out", ca_key, "2048", cwd=directory)
    _openssl(
        "req", "-x509", "-new", "-key", ca_key, "-days", "1", "-subj", f"/CN=hueyard test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-out", ca_cert, cwd=directory,
    )  # fmt: skip
    for who, extension in (
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        (directory / f"{who}.ext").write_text(_LEAF_EXTENSIONS + extension + "\n")
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

    With a ``ca`` every process speaks TLS only: clients, replication, and the
    sentinels (to clients, to each other and to the master and replica).
    ``acl_user`` (name, password): a user of both data nodes that may do
    everything (the default user stays on, without a password, for the
    sentinels and replication). ``sentinel_password``: the sentinels'
    ``requirepass`` (they use it with each other too).
    """

    def __init__(
        self,
        directory: Path,
        *,
        down_after: int = 1000,
        ca: CA | None = None,
        acl_user: tuple[str, str] | None = None,
        sentinel_password: str | None = None,
    ) -> None:
        self.directory = directory
        self.ca = ca
        self.sentinel_password = sentinel_password
        master_port, replica_port = free_port(), free_port()
        extra = self._node_args(master_port, acl_user)
        self.master = RedisServer(master_port, *extra)
        self.replica = RedisServer(
            replica_port,
            "--replicaof", "127.0.0.1", str(master_port),
            *self._node_args(replica_port, acl_user),
        )  # fmt: skip
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.down_after = down_after
        self._sentinels: list[subprocess.Popen[bytes]] = []

    def _node_args(self, port: int, acl_user: tuple[str, str] | None) -> tuple[str, ...]:
        args: tuple[str, ...] = ("--repl-diskless-sync-delay", "0")  # the replica syncs at once
        if acl_user is not None:
            name, password = acl_user
            args += ("--user", name, "on", f">{password}", "~*", "&*", "+@all")
        if self.ca is not None:
            args += ("--port", "0", "--tls-port", str(port), *_tls_args(self.ca))
        return args

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
        if self.ca is not None:  # the admin connections below speak TLS to these
            for port in (self.master.port, self.replica.port, *self.sentinel_ports):
                _TLS[port] = self.ca
        self.master.start()
        self.replica.start()
        _wait(lambda: _role(self.replica.port) == ("slave", "up"), "replica in sync")
        # Each sentinel is told its own id, the replica and the other sentinels up front:
        # found on its own (INFO of the master, hello messages every 2 s) that takes 7 s.
        ids = {port: f"{port:040x}" for port in self.sentinel_ports}
        known = f"sentinel known-replica {MASTER_NAME} 127.0.0.1 {self.replica.port}\n"
        for port in self.sentinel_ports:
            conf = self.directory / f"sentinel-{port}.conf"
            others = "".join(
                f"sentinel known-sentinel {MASTER_NAME} 127.0.0.1 {other} {ids[other]}\n"
                for other in self.sentinel_ports
                if other != port
            )
            if self.ca is None:
                listen = f"port {port}\n"
            else:  # TLS only; tls-replication: TLS to the master and replica too
                pairs = zip(_tls_args(self.ca)[::2], _tls_args(self.ca)[1::2], strict=True)
                listen = f"port 0\ntls-port {port}\n" + "".join(
                    f"{name.removeprefix('--')} {value}\n" for name, value in pairs
                )
            if self.sentinel_password is not None:
                listen += f"requirepass {self.sentinel_password}\n"
            conf.write_text(
                f"{listen}bind 127.0.0.1\ndir {self.directory}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after}\n"
                f"sentinel failover-timeout {MASTER_NAME} 5000\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
                f"sentinel myid {ids[port]}\n{known}{others}"
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

    def client(self, port: int) -> redis.Redis:
        """An admin client (the default user) of the master or replica on ``port``,
        over TLS if the group has a ``ca``."""
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, **_tls_options(port))

    def role(self, port: int) -> tuple[str, str]:
        """``("master" | "slave" | "down", master_link_status)`` of the node on ``port``."""
        return _role(port)

    def wait_replicated(self, timeout: float = 10) -> None:
        """Wait until the replica has every write the master took so far (by replication
        offsets: ``WAIT`` on a fresh connection counts nothing, having written nothing)."""
        target = int(str(_info(self.master.port).get("master_repl_offset", 0)))

        def caught_up() -> bool:
            return int(str(_info(self.replica.port).get("slave_repl_offset", -1))) >= target

        _wait(caught_up, "the replica to catch up with the master", timeout)

    def master_port(self) -> int:
        """The master's port, as the first sentinel sees it now."""
        with self._sentinel(self.sentinel_ports[0], timeout=2) as client:
            _host, port = client.sentinel_get_master_addr_by_name(MASTER_NAME)  # type: ignore[no-untyped-call]
        return int(port)

    def failover(self) -> int:
        """Force a failover; wait until the old replica is the master. Its port."""
        old = self.master_port()
        with self._sentinel(self.sentinel_ports[0], timeout=5) as client:
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
        self.replica.terminate()
        self.master.terminate()
        self.replica.stop()
        self.master.stop()
        for port in (self.master.port, self.replica.port, *self.sentinel_ports):
            _TLS.pop(port, None)

    def _sentinel(self, port: int, timeout: float) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1",
            port=port,
            socket_timeout=timeout,
            password=self.sentinel_password,
            **_tls_options(port),
        )

    def _sentinels_agree(self) -> bool:
        for port in self.sentinel_ports:
            try:
                with self._sentinel(port, timeout=1) as client:
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


@dataclass(frozen=True)
class ClusterNode:
    """One line of ``CLUSTER NODES``: who a node is, as one node of the cluster sees it."""

    id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    """The id of the master it replicates (None for a master)."""
    slots: tuple[tuple[int, int], ...]
    """The slot ranges it serves, first and last included (none for a replica)."""

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return "fail" in self.flags or "fail?" in self.flags

    @classmethod
    def parse(cls, line: str) -> ClusterNode:
        fields = line.split()
        node_id, address, flags, master = fields[:4]
        port = int(address.split("@")[0].rsplit(":", 1)[1])
        slots = []
        for entry in fields[8:]:
            if entry.startswith("["):  # a slot being migrated: none here
                continue
            first, _, last = entry.partition("-")
            slots.append((int(first), int(last or first)))
        return cls(
            id=node_id,
            port=port,
            flags=frozenset(flags.split(",")),
            master_id=None if master == "-" else master,
            slots=tuple(slots),
        )


class ClusterGroup:
    """A Redis Cluster on loopback ports: ``masters`` masters, ``replicas_per_master`` each.

    The nodes use ports ``base_port``, ``base_port + 1``, ... (masters first),
    cluster bus at port + 10000, or free ports (bus ports too) when no
    ``base_port`` is given. ``node_timeout`` ms without an answer and a master
    is failed: its replica takes over a second or two later
    (``cluster-replica-validity-factor 0``: whatever its replication lag).

    The cluster is built with the commands ``redis-cli --cluster create``
    sends (``CLUSTER ADDSLOTSRANGE``, ``MEET``, ``REPLICATE``), because
    ``redis-cli`` refuses fewer than three masters and a benchmark needs one.
    Slots are split evenly over the masters, in the order of their ports.
    """

    def __init__(
        self,
        directory: Path,
        masters: int = 3,
        replicas_per_master: int = 1,
        *,
        base_port: int | None = None,
        node_timeout: int = 1000,
        ca: CA | None = None,
    ) -> None:
        if masters < 1 or replicas_per_master < 0:
            raise ValueError(f"a cluster needs a master or more, not {masters}")
        self.directory = directory
        self.masters = masters
        self.replicas_per_master = replicas_per_master
        self.node_timeout = node_timeout
        count = masters * (1 + replicas_per_master)
        if base_port is not None:
            ports = [(base_port + n, base_port + n + 10000) for n in range(count)]
        else:
            ports = [(free_port(), free_port()) for _ in range(count)]
        self.nodes: dict[int, RedisServer] = {}
        self.ca = ca
        for port, bus in ports:
            node_dir = directory / f"node-{port}"
            node_dir.mkdir(parents=True, exist_ok=True)
            tls: tuple[str, ...] = ()
            if ca is not None:  # TLS only: clients, the cluster bus and replication
                _TLS[port] = ca
                tls = ("--port", "0", "--tls-port", str(port), "--tls-cluster", "yes",
                       *_tls_args(ca))  # fmt: skip
            self.nodes[port] = RedisServer(
                port,
                "--dir", str(node_dir),
                "--cluster-enabled", "yes",
                "--cluster-port", str(bus),
                "--cluster-config-file", str(node_dir / "nodes.conf"),
                "--cluster-node-timeout", str(node_timeout),
                "--cluster-replica-validity-factor", "0",
                "--repl-diskless-sync-delay", "0",
                *tls,
            )  # fmt: skip
        self.bus_ports = dict(ports)
        self._killed: dict[int, set[str]] = {}
        """Killed masters: their port -> the ids of their replicas when they died."""

    @property
    def ports(self) -> list[int]:
        return list(self.nodes)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<first port>``: the node a config names (any node will do)."""
        return f"redis://127.0.0.1:{self.ports[0]}"

    def live_ports(self) -> list[int]:
        return [port for port, node in self.nodes.items() if node.running]

    def start(self) -> ClusterGroup:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> ClusterGroup:
        for node in self.nodes.values():
            node.start()
        masters, replicas = self.ports[: self.masters], self.ports[self.masters :]
        for epoch, port in enumerate(self.ports, start=1):
            _command(port, "CLUSTER", "SET-CONFIG-EPOCH", epoch)
        share, extra = divmod(REDIS_CLUSTER_HASH_SLOTS, self.masters)
        first = 0
        for index, port in enumerate(masters):
            last = first + share + (1 if index < extra else 0) - 1
            _command(port, "CLUSTER", "ADDSLOTSRANGE", first, last)
            first = last + 1
        for port in self.ports[1:]:
            _command(self.ports[0], "CLUSTER", "MEET", "127.0.0.1", port, self.bus_ports[port])
        _wait(self._all_meet, f"the {len(self.nodes)} nodes to know each other")
        for index, port in enumerate(replicas):
            master = masters[index % self.masters]
            _command(port, "CLUSTER", "REPLICATE", self.node_id(master))
        _wait(self._healthy, "cluster_state:ok, every slot covered, every replica in sync")
        return self

    # -- reading the topology --------------------------------------------------------------

    def cluster_nodes(self, port: int | None = None) -> list[ClusterNode]:
        """``CLUSTER NODES`` as the node on ``port`` (default: the first live one) sees it."""
        text = _command(port or self.live_ports()[0], "CLUSTER", "NODES")
        return [ClusterNode.parse(line) for line in text.splitlines() if line.strip()]

    def node_id(self, port: int) -> str:
        return str(_command(port, "CLUSTER", "MYID"))

    def master_ports(self) -> list[int]:
        """The ports of the masters that serve slots now."""
        return sorted(node.port for node in self.cluster_nodes() if node.is_master and node.slots)

    def replicas_of(self, port: int) -> list[int]:
        """The ports of the replicas of the master on ``port``."""
        nodes = self.cluster_nodes()
        (master,) = [node for node in nodes if node.port == port]
        return sorted(node.port for node in nodes if node.master_id == master.id)

    def master_for_slot(self, slot: int) -> int:
        """The port of the master that serves ``slot`` now."""
        for node in self.cluster_nodes():
            serves = any(first <= slot <= last for first, last in node.slots)
            if node.is_master and not node.failed and serves:
                return node.port
        raise LookupError(f"no live master serves slot {slot}")

    def master_of_key(self, key: str | bytes) -> int:
        """The port of the master that holds ``key`` (its hash tag's slot)."""
        return self.master_for_slot(key_slot(key.encode() if isinstance(key, str) else key))

    @property
    def tls_url(self) -> str:
        """``rediss://127.0.0.1:<first port>``, for a cluster made with a ``ca``."""
        return f"rediss://127.0.0.1:{self.ports[0]}"

    def client(self) -> redis.RedisCluster:
        """A redis-py cluster client, started from a live node."""
        port = self.live_ports()[0]
        return redis.RedisCluster(host="127.0.0.1", port=port, **_tls_options(port))

    def wait_replicated(self, timeout: float = 10) -> None:
        """Wait until every live replica has every write its master took so far.

        (``WAIT`` on a fresh connection proves nothing: it counts the writes of
        its own connection, and a fresh one has none.)
        """
        targets = {}
        for node in self.cluster_nodes():
            if node.is_master and node.slots and not node.failed:
                info = _info(node.port)
                targets[node.id] = int(info.get("master_repl_offset", 0))

        def caught_up() -> bool:
            for node in self.cluster_nodes():
                if node.master_id in targets and node.port in self.live_ports():
                    offset = int(_info(node.port).get("slave_repl_offset", -1))
                    if offset < targets[node.master_id]:
                        return False
            return True

        _wait(caught_up, "every replica to catch up with its master", timeout)

    # -- failures --------------------------------------------------------------------------

    def kill_master(self, port: int) -> None:
        """SIGKILL the master on ``port``: no shutdown, no last write to its replicas."""
        nodes = self.cluster_nodes()
        (master,) = [node for node in nodes if node.port == port]
        if not master.is_master:
            raise ValueError(f"the node on port {port} is not a master")
        self._killed[port] = {node.id for node in nodes if node.master_id == master.id}
        self.nodes[port].kill()

    def wait_failover(self, timeout: float = 30) -> int:
        """Wait until a replica of each killed master took its slots and the cluster is
        ok again on every live node; the port of the (last killed master's) new master."""
        promoted: dict[int, int] = {}

        def done() -> bool:
            nodes = self.cluster_nodes()
            for dead, replica_ids in self._killed.items():
                serving = [n for n in nodes if n.id in replica_ids and n.is_master and n.slots]
                if not serving:
                    return False
                promoted[dead] = serving[0].port
            return self._healthy()

        _wait(done, "a replica to take over the killed master's slots", timeout)
        return promoted[list(self._killed)[-1]]

    def stop(self) -> None:
        for node in self.nodes.values():
            node.terminate()
        for node in self.nodes.values():
            node.stop()

    # -- health ----------------------------------------------------------------------------

    def _all_meet(self) -> bool:
        for port in self.live_ports():
            nodes = self.cluster_nodes(port)
            if len(nodes) < len(self.nodes) or any(
                "handshake" in node.flags or "noaddr" in node.flags for node in nodes
            ):
                return False
        return True

    def _healthy(self) -> bool:
        """On every live node: cluster_state ok, every slot ok, the same masters, and
        each live node a master serving slots or a replica, in sync, of a live master."""
        live = set(self.live_ports())
        views = set()
        for port in live:
            try:
                info = _command(port, "CLUSTER", "INFO")
                nodes = self.cluster_nodes(port)
            except redis.RedisError:
                return False
            fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
            if fields.get("cluster_state") != "ok":
                return False
            if int(fields.get("cluster_slots_ok", 0)) != REDIS_CLUSTER_HASH_SLOTS:
                return False
            serving = {node.id for node in nodes if node.is_master and node.slots}
            for node in nodes:
                if node.port not in live:
                    continue
                if node.failed or not (node.id in serving or node.master_id in serving):
                    return False
            views.add(
                tuple(sorted((node.port, node.slots) for node in nodes if node.id in serving))
            )
            (myself,) = [node for node in nodes if "myself" in node.flags]
            if myself.id not in serving and _role(port) != ("slave", "up"):
                return False
        return len(views) == 1

    def __enter__(self) -> ClusterGroup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _command(port: int, *args: object) -> str:
    """One command to the node on ``port``; its reply as text."""
    client = redis.Redis(
        host="127.0.0.1", port=port, socket_timeout=2, decode_responses=True, **_tls_options(port)
    )
    try:
        reply = client.execute_command(*args)
    finally:
        client.close()
    return reply if isinstance(reply, str) else str(reply)


def _info(port: int) -> dict[str, object]:
    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, **_tls_options(port)) as client:
        return dict(client.info("replication"))


_TLS: dict[int, CA] = {}
"""The ports of the TLS-only nodes (and sentinels) this process started, with their CA."""


def _tls_args(ca: CA) -> tuple[str, ...]:
    """A TLS-only node's certificate options; replication over TLS too."""
    return (
        "--tls-replication", "yes",
        "--tls-cert-file", str(ca.server_cert),
        "--tls-key-file", str(ca.server_key),
        "--tls-ca-cert-file", str(ca.ca_cert),
        "--tls-auth-clients", "no",
        # a node's own connections (cluster bus, replication, a sentinel's) present the client
        # certificate: the server's is for serverAuth only, and a peer refuses it
        "--tls-client-cert-file", str(ca.client_cert),
        "--tls-client-key-file", str(ca.client_key),
    )  # fmt: skip


def _tls_options(port: int) -> dict[str, object]:
    """redis-py's TLS options for the node on ``port``, if it speaks TLS only."""
    ca = _TLS.get(port)
    if ca is None:
        return {}
    return {"ssl": True, "ssl_ca_certs": str(ca.ca_cert), "ssl_cert_reqs": "required"}


def _role(port: int) -> tuple[str, str]:
    try:
        with redis.Redis(
            host="127.0.0.1", port=port, socket_timeout=1, **_tls_options(port)
        ) as client:
            info = client.info("replication")
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
