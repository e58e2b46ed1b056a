"""Idle workers take turns: one asks Redis, the others wait in the process."""

from __future__ import annotations

import threading
import time

from framework.idle import IdleWorkers


def test_while_one_worker_has_the_turn_another_waits_and_goes_round() -> None:
    idle = IdleWorkers()
    with idle.turn(timeout=1) as first:
        assert first
        started = time.monotonic()
        with idle.turn(timeout=0.2) as second:
            assert not second  # asks nothing of Redis
        assert 0.15 < time.monotonic() - started < 1


def test_the_end_of_a_turn_hands_it_to_a_waiting_worker_at_once() -> None:
    # Given a worker with the turn and another waiting for one (up to 5 s)
    idle = IdleWorkers()
    got: list[tuple[bool, float]] = []
    turn = idle.turn(timeout=1)
    assert turn.mine

    def wait() -> None:
        started = time.monotonic()
        with idle.turn(timeout=5) as mine:
            got.append((mine, time.monotonic() - started))

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.1)
    # When the turn ends
    with turn:
        pass
    waiter.join(5)
    # Then the waiting worker has it, long before its 5 s
    [(mine, waited)] = got
    assert mine and waited < 1


def test_many_workers_never_hold_the_turn_together() -> None:
    idle = IdleWorkers()
    holding, most = [0], [0]
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(50):
            with idle.turn(timeout=0.5) as mine:
                if not mine:
                    continue
                with lock:
                    holding[0] += 1
                    most[0] = max(most[0], holding[0])
                time.sleep(0.0005)
                with lock:
                    holding[0] -= 1

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1
