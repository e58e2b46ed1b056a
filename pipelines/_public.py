"""Connections to public addresses only: the webhooks' guard against server-side request
forgery.

A webhook's URL comes from a job's payload, so without a guard a job could make a
worker POST to Redis, the cloud's metadata service (``169.254.169.254``) or any
service on the internal network. :func:`opener` builds a ``urllib`` opener whose
connections:

- resolve the host once, and refuse it when any address it resolves to is not
  public: loopback, private, link-local, shared (CGNAT), reserved, multicast, or an
  IPv6 address that embeds such an IPv4 one (IPv4-mapped, IPv4-compatible, 6to4,
  NAT64 ``64:ff9b::/96``);
- connect to the very addresses they checked. Resolving again to connect would let
  a name server answer a public address to the check and an internal one to the
  connection (DNS rebinding).

``$HUEYARD_WEBHOOK_ALLOW_PRIVATE`` opens it up: ``1`` allows every address, a
comma-separated list of networks (``10.20.0.0/16,fd00:1::/64``) allows those besides
the public ones. Through a proxy (``$HTTPS_PROXY``, ``$HTTP_PROXY``) the proxy
connects, and is the egress control: the host is still resolved and checked before
the request, but the proxy resolves it again.

Inside :func:`pipelines._http.deadline`, every connect, TLS handshake, read and write
of these connections (direct or through a proxy) waits at most what is left of the
deadline, so a receiver that trickles its answer can not hold a worker past it.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import ssl
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from pipelines._http import time_left

__all__ = ["ALLOW_PRIVATE_ENV", "Refused", "allowed_networks", "check_host", "opener"]

ALLOW_PRIVATE_ENV = "HUEYARD_WEBHOOK_ALLOW_PRIVATE"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class Refused(OSError):
    """The host may not be connected to (or ``$HUEYARD_WEBHOOK_ALLOW_PRIVATE`` is wrong).

    An ``OSError``, so that ``urllib`` reports it as the reason of its ``URLError``."""


def allowed_networks(env: dict[str, str] | os._Environ[str] = os.environ) -> list[Network] | None:
    """The networks allowed besides the public ones; None when every address is."""
    value = env.get(ALLOW_PRIVATE_ENV, "").strip()
    if value == "1":
        return None
    networks: list[Network] = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            # "NAME=value" would read NAME=******** once masked (the name holds "private")
            raise Refused(
                f"{ALLOW_PRIVATE_ENV} is {value!r}, and {item!r} in it is not a network; set "
                f"{ALLOW_PRIVATE_ENV} to 1 (allow every address) or to networks separated by "
                "commas, e.g. 10.20.0.0/16,fd00:1::/64"
            ) from None
    return networks


def _embedded(address: Address) -> Address | None:
    """The IPv4 address an IPv6 one carries (mapped, compatible, 6to4, NAT64), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 0xFFFF):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _public(address: Address, allowed: Sequence[Network]) -> bool:
    if any(address in network for network in allowed if network.version == address.version):
        return True
    inner = _embedded(address)
    return address.is_global and (inner is None or _public(inner, allowed))


def check_host(host: str, port: int, allowed: Sequence[Network] | None) -> list[tuple[Any, ...]]:
    """Resolve ``host`` once: its ``getaddrinfo`` entries, all of them allowed.

    Raises :class:`Refused` naming the address that is not, and ``OSError`` when the
    name does not resolve."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if allowed is None:
        return infos
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not _public(address, allowed):
            raise Refused(
                f"{host!r} resolves to the non-public address {address}; refused. To allow "
                f"internal endpoints, set {ALLOW_PRIVATE_ENV} to 1 or to the networks to "
                "allow, e.g. 10.20.0.0/16"
            )
    return infos


# -- the deadline ----------------------------------------------------------------------------


class _BoundedSocket(socket.socket):
    """A socket whose reads and writes wait at most what is left of the deadline
    (:func:`pipelines._http.time_left`): ``http.client`` sets one timeout per operation."""

    _per_operation: float | None

    def _bound(self) -> None:
        if not hasattr(self, "_per_operation"):
            self._per_operation = self.gettimeout()
        self.settimeout(time_left(self._per_operation))

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self._bound()
        return super().recv_into(buffer, nbytes, flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self._bound()
        return super().recv(bufsize, flags)

    def send(self, data: Any, flags: int = 0) -> int:
        self._bound()
        return super().send(data, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._bound()
        super().sendall(data, flags)


class _BoundedSSLSocket(ssl.SSLSocket):
    """:class:`_BoundedSocket` for TLS: the socket an ``SSLContext`` wraps a connection in."""

    _per_operation: float | None

    def _bound(self) -> None:
        if not hasattr(self, "_per_operation"):
            self._per_operation = self.gettimeout()
        self.settimeout(time_left(self._per_operation))

    def do_handshake(self, block: bool = False) -> None:
        self._bound()  # the whole handshake within the socket's timeout: cut to the deadline
        super().do_handshake(block)

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        self._bound()
        return super().recv_into(buffer, nbytes, flags)

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        self._bound()
        return super().recv(buflen, flags)

    def send(self, data: Any, flags: int = 0) -> int:
        self._bound()
        return super().send(data, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._bound()
        super().sendall(data, flags)


def _tls_context() -> ssl.SSLContext:
    """What ``http.client`` would use (the system's CAs, HTTP/1.1 by ALPN), its sockets
    bounded by the deadline."""
    context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    context.sslsocket_class = _BoundedSSLSocket
    return context


def _open(
    infos: list[tuple[Any, ...]], host: str, timeout: Any, source_address: Any
) -> socket.socket:
    """A connection to the first of ``infos`` that answers, within the deadline."""
    if timeout is socket._GLOBAL_DEFAULT_TIMEOUT:  # type: ignore[attr-defined]
        timeout = socket.getdefaulttimeout()
    error: OSError | None = None
    for family, kind, proto, _, sockaddr in infos:
        sock = _BoundedSocket(family, kind, proto)
        try:
            sock.settimeout(time_left(timeout))
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            sock.settimeout(timeout)  # each later operation cuts it to the deadline
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error or OSError(f"{host!r} resolves to no address")


def _connect(
    address: tuple[str, int], timeout: Any = None, source_address: Any = None
) -> socket.socket:
    """``socket.create_connection`` to the addresses :func:`check_host` allowed."""
    host, port = address
    return _open(check_host(host, port, allowed_networks()), host, timeout, source_address)


def _connect_unchecked(
    address: tuple[str, int], timeout: Any = None, source_address: Any = None
) -> socket.socket:
    """``socket.create_connection`` to a proxy (the egress control), within the deadline."""
    host, port = address
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return _open(infos, host, timeout, source_address)


Connect = Callable[..., socket.socket]


class _BoundedHTTPConnection(http.client.HTTPConnection):
    """A connection to a proxy: bounded by the deadline, its address not checked."""

    _connector: Connect = staticmethod(_connect_unchecked)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = self._connector


class _BoundedHTTPSConnection(http.client.HTTPSConnection):
    """A TLS connection through a proxy: bounded by the deadline, its address not checked."""

    _connector: Connect = staticmethod(_connect_unchecked)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = self._connector


class _CheckedHTTPConnection(_BoundedHTTPConnection):
    _connector: Connect = staticmethod(_connect)


class _CheckedHTTPSConnection(_BoundedHTTPSConnection):
    """TLS as usual (the certificate is checked against the host name, sent as SNI), over
    a connection to a checked address."""

    _connector: Connect = staticmethod(_connect)


def _proxied(request: urllib.request.Request) -> bool:
    """Whether a proxy connects for ``request``: then its target is checked here, before
    the request (the proxy resolves the name again), and the proxy's own address is not."""
    if not (request.has_proxy() or getattr(request, "_tunnel_host", None) is not None):
        return False
    target = urlsplit(request.full_url)
    port = target.port or (443 if target.scheme == "https" else 80)
    check_host(target.hostname or "", port, allowed_networks())
    return True


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        if _proxied(req):
            return self.do_open(_BoundedHTTPConnection, req)
        return self.do_open(_CheckedHTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self) -> None:
        super().__init__(context=_tls_context())

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        kind = _BoundedHTTPSConnection if _proxied(req) else _CheckedHTTPSConnection
        return self.do_open(kind, req, context=self._context)  # type: ignore[attr-defined]


def opener(
    *handlers: urllib.request.BaseHandler | type[urllib.request.BaseHandler],
) -> urllib.request.OpenerDirector:
    """A ``urllib`` opener whose direct connections go to checked public addresses only
    (and ``handlers``, e.g. one that refuses redirects)."""
    return urllib.request.build_opener(_HTTPHandler, _HTTPSHandler, *handlers)
