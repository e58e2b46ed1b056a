"""Failed sign-ins, counted per client address: past a limit, the address waits.

:class:`LoginThrottle` keeps, for each address that failed recently, the times
of its failures within the window. The ``max_failures``-th failure within
``window`` seconds locks the address out for ``lockout`` seconds (the
dashboard answers 429 with ``Retry-After``, whatever credentials it sends).
A successful sign-in forgets the address's failures.

Memory is bounded: at most ``max_clients`` addresses are tracked; past that
the one least recently seen is forgotten. An IPv6 client counts by its /64
network (one host usually holds a whole /64, so it cannot dodge the count by
changing its address). It is thread-safe: waitress serves 8 requests at once.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["LoginThrottle", "client_key"]


def client_key(address: str) -> str:
    """What failures are counted by: the address, or an IPv6 address's /64 network.

    >>> client_key("203.0.113.7"), client_key("2001:db8:1:2:aaaa::1")
    ('203.0.113.7', '2001:db8:1:2::/64')
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an IP (a Unix socket): counted as given
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass
class _Client:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


class LoginThrottle:
    """Failures per client address; see the module's docstring."""

    def __init__(
        self,
        *,
        max_failures: int,
        window: float,
        lockout: float,
        max_clients: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self.max_clients = max_clients
        self._clock = clock
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> int:
        """Whole seconds ``address`` must wait before it may sign in; 0 when it may now."""
        now = self._clock()
        with self._lock:
            client = self._clients.get(client_key(address))
            if client is None or client.locked_until <= now:
                return 0
            return max(math.ceil(client.locked_until - now), 1)

    def failed(self, address: str) -> tuple[int, int]:
        """Count a failure of ``address``: (failures in the window, seconds it must now wait).

        The failure that reaches ``max_failures`` starts the lockout and clears the count.
        """
        now = self._clock()
        key = client_key(address)
        with self._lock:
            client = self._clients.pop(key, None) or _Client()
            self._clients[key] = client  # the most recently seen, last
            while len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)
            failures = client.failures
            while failures and failures[0] <= now - self.window:
                failures.popleft()
            failures.append(now)
            count = len(failures)
            if count < self.max_failures:
                return count, 0
            failures.clear()
            client.locked_until = now + self.lockout
            return count, math.ceil(self.lockout)

    def succeeded(self, address: str) -> None:
        """Forget the failures of ``address``."""
        with self._lock:
            self._clients.pop(client_key(address), None)

    def __len__(self) -> int:
        """Addresses tracked now."""
        return len(self._clients)
