"""Which ``Host`` the dashboard answers to: an allow-list, so DNS rebinding cannot reach it.

A page on ``evil.example`` whose name is made to resolve to 127.0.0.1 sends
``Host: evil.example`` (and ``Origin: http://evil.example``); the dashboard
answers 400 to any host that is not on ``[dashboard] allowed_hosts``, and the
CSRF check trusts an ``Origin`` / ``Referer`` only when it names one of them.

Entries (normalised by :mod:`framework.settings`): a host name or address
(``dashboard.example.com``, ``10.0.0.5``, ``[::1]``), ``.example.com`` for
that domain and every subdomain, or ``*`` for any host. Ports are never
compared: rebinding changes the name, not the port, and a proxy may change
the port. Without the setting the list is the address the server listens on
(unless it is a wildcard such as ``0.0.0.0``), ``localhost``, ``127.0.0.1``
and ``[::1]``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["LOOPBACK_HOSTS", "AllowedHosts", "host_of"]

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
"""Always on the default list: the names a browser on the same machine uses."""

_WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "[::]"})  # noqa: S104 - compared, not bound

_HOST = re.compile(r"(?P<host>\[[0-9a-f:.]+\]|[a-z0-9_.-]+?)\.?(?::(?P<port>[0-9]{1,5}))?")


def host_of(value: str) -> str | None:
    """The host name of a ``Host`` header (``name[:port]``), lowercased, without its port
    or a final dot; None when it is not a host name.

    >>> host_of("Dashboard.Example.com.:8080"), host_of("[::1]:5000"), host_of("a b")
    ('dashboard.example.com', '[::1]', None)
    """
    match = _HOST.fullmatch(value.strip().lower())
    if match is None or not match["host"] or match["host"].startswith("."):
        return None
    if match["port"] is not None and not 0 < int(match["port"]) < 65536:
        return None
    return match["host"]


def _bound_address(host: str) -> str | None:
    """The listening address as a host entry; None for a wildcard (no client names it)."""
    value = host.strip().lower()
    if ":" in value and not value.startswith("["):
        value = f"[{value}]"
    return None if value in _WILDCARD_ADDRESSES else value


@dataclass(frozen=True)
class AllowedHosts:
    """The hosts the dashboard answers to; see the module's docstring."""

    entries: tuple[str, ...]

    @classmethod
    def resolve(cls, configured: Sequence[str] | None, bind_host: str) -> AllowedHosts:
        """``configured`` (``[dashboard] allowed_hosts``, already normalised), or the default."""
        if configured is not None:
            return cls(tuple(configured))
        bound = _bound_address(bind_host)
        entries = [bound] if bound is not None else []
        entries += [host for host in LOOPBACK_HOSTS if host not in entries]
        return cls(tuple(entries))

    @property
    def any_host(self) -> bool:
        """Whether ``*`` is on the list: every host is answered."""
        return "*" in self.entries

    def allows(self, host: str) -> bool:
        """Whether a host name (as :func:`host_of` gives it) is on the list."""
        for entry in self.entries:
            if entry in ("*", host):
                return True
            if entry.startswith(".") and (host == entry[1:] or host.endswith(entry)):
                return True
        return False

    def allows_header(self, value: str | None) -> bool:
        """Whether a ``Host`` header names an allowed host. No header at all is allowed:
        every browser sends one, so a request without it cannot be a rebinding attack."""
        if value is None:
            return True
        host = host_of(value)
        return host is not None and self.allows(host)

    def allows_url(self, url: str) -> bool:
        """Whether an ``Origin`` or ``Referer`` is an http(s) URL on an allowed host."""
        try:
            split = urlsplit(url.strip())
        except ValueError:
            return False
        if split.scheme.lower() not in ("http", "https"):
            return False
        host = host_of(split.netloc.rpartition("@")[2])
        return host is not None and self.allows(host)

    def __str__(self) -> str:
        return ", ".join(self.entries)
