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
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import urllib.request
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

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
            raise Refused(
                f"{ALLOW_PRIVATE_ENV}={value!r}: {item!r} is not a network; give 1 (allow every "
                "address) or networks separated by commas, e.g. 10.20.0.0/16,fd00:1::/64"
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
                f"{host!r} resolves to the non-public address {address}; refused. Set "
                f"{ALLOW_PRIVATE_ENV}=1 to allow internal endpoints (or the networks to "
                "allow, e.g. 10.20.0.0/16)"
            )
    return infos


def _connect(
    address: tuple[str, int], timeout: Any = None, source_address: Any = None
) -> socket.socket:
    """``socket.create_connection`` to the addresses :func:`check_host` allowed."""
    host, port = address
    infos = check_host(host, port, allowed_networks())
    error: OSError | None = None
    for family, kind, proto, _, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            if timeout is not None and timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:  # type: ignore[attr-defined]
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error or OSError(f"{host!r} resolves to no address")


class _CheckedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _connect


class _CheckedHTTPSConnection(http.client.HTTPSConnection):
    """TLS as usual (the certificate is checked against the host name, sent as SNI), over
    a connection to a checked address."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _connect


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
            return super().http_open(req)
        return self.do_open(_CheckedHTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        if _proxied(req):
            return super().https_open(req)
        return self.do_open(_CheckedHTTPSConnection, req, context=self._context)  # type: ignore[attr-defined]


def opener(
    *handlers: urllib.request.BaseHandler | type[urllib.request.BaseHandler],
) -> urllib.request.OpenerDirector:
    """A ``urllib`` opener whose direct connections go to checked public addresses only
    (and ``handlers``, e.g. one that refuses redirects)."""
    return urllib.request.build_opener(_HTTPHandler, _HTTPSHandler, *handlers)
