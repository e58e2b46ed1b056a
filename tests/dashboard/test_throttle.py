"""The login throttle's bookkeeping: windows, lockouts, bounded memory, IPv6 networks.

Driven by a clock the test moves (the throttle takes any ``() -> float``), so
no test sleeps; the HTTP behaviour is in ``test_perimeter.py``.
"""

from __future__ import annotations

import pytest

from dashboard.throttle import LoginThrottle, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttle(clock: Clock, *, max_clients: int = 100) -> LoginThrottle:
    return LoginThrottle(
        max_failures=3, window=60, lockout=300, max_clients=max_clients, clock=clock
    )


def test_the_failure_that_reaches_the_limit_locks_out_for_the_lockout() -> None:
    # Given 3 failures a minute allowed, then 300 s of lockout
    clock = Clock()
    guard = throttle(clock)
    # When an address fails 3 times
    outcomes = [guard.failed("203.0.113.1") for _ in range(3)]
    # Then the third starts the lockout, which ends after 300 s
    assert outcomes == [(1, 0), (2, 0), (3, 300)]
    clock.now += 299.5
    assert guard.retry_after("203.0.113.1") == 1
    clock.now += 0.5
    assert guard.retry_after("203.0.113.1") == 0
    # And the count starts again from nothing
    assert guard.failed("203.0.113.1") == (1, 0)


def test_failures_older_than_the_window_do_not_count() -> None:
    clock = Clock()
    guard = throttle(clock)
    guard.failed("203.0.113.1")
    guard.failed("203.0.113.1")
    clock.now += 60
    assert guard.failed("203.0.113.1") == (1, 0)


def test_memory_is_bounded_the_least_recently_seen_address_goes_first() -> None:
    # Given room for 3 addresses
    clock = Clock()
    guard = throttle(clock, max_clients=3)
    for _ in range(3):
        guard.failed("198.51.100.1")  # locked out
    # When 5 other addresses fail, the first one seen again in between
    for n in range(2, 7):
        guard.failed(f"198.51.100.{n}")
        if n == 3:
            guard.failed("198.51.100.2")
    # Then only the 3 most recently seen are remembered
    assert len(guard) == 3
    assert guard.retry_after("198.51.100.1") == 0  # forgotten, lockout and all
    assert guard.failed("198.51.100.6") == (2, 0)
    assert guard.failed("198.51.100.2") == (1, 0)  # seen before 4, 5 and 6: forgotten


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9", True),
        ("2001:db8:1:2::1", "2001:db8:1:3::1", False),
        ("::ffff:203.0.113.1", "203.0.113.1", True),
        ("203.0.113.1", "203.0.113.2", False),
        ("unix-socket", "unix-socket", True),
    ],
)
def test_an_ipv6_client_counts_by_its_64_network(one: str, other: str, same: bool) -> None:
    assert (client_key(one) == client_key(other)) is same
    clock = Clock()
    guard = throttle(clock)
    for _ in range(3):
        guard.failed(one)
    assert (guard.retry_after(other) > 0) is same


def test_a_success_forgets_the_address() -> None:
    clock = Clock()
    guard = throttle(clock)
    guard.failed("203.0.113.1")
    guard.failed("203.0.113.1")
    guard.succeeded("203.0.113.1")
    assert len(guard) == 0
    assert guard.failed("203.0.113.1") == (1, 0)
