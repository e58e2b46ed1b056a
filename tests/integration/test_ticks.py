"""Schedules firing against the real Redis server: once per tick, across consumers and restarts.

Rounds run at given times (``run_round(now)``), so each test is exact; the
same machinery under real ``huey_consumer`` processes and the wall clock is
in tests/e2e/test_schedules.py.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
import redis
from pydantic import BaseModel

from framework.application import Hueyard
from framework.errors import ConfigError, HueyardError, RedisUnavailableError
from framework.handlers import HandlerRegistry, handler
from framework.jobs import Jobs
from framework.ticks import ScheduleRunner, Schedules
from tests.conftest import AppFactory
from tests.integration.redis_server import RedisServer

UTC = datetime.UTC
CONFIG = """
[queues.analytics]
keep_completed = 1000

[schedules.every_ten]
handler = "analytics.snap"
every = 10
payload = {{ period = "daily" }}
tick_field = "tick"
catch_up = "{catch_up}"
"""


class Snap(BaseModel):
    period: str
    tick: datetime.datetime


def registry() -> HandlerRegistry:
    handlers = HandlerRegistry()

    @handler("analytics", registry=handlers)
    def snap(payload: Snap) -> None: ...

    return handlers


@pytest.fixture
def make(make_app: AppFactory) -> Any:
    def build(catch_up: str = "last") -> Hueyard:
        return make_app(CONFIG.format(catch_up=catch_up), registry(), prefix="tk")

    return build


def at(seconds: float) -> datetime.datetime:
    """A time ``seconds`` after 2025-11-05 10:00:00 UTC."""
    return datetime.datetime(2025, 11, 5, 10, 0, tzinfo=UTC) + datetime.timedelta(seconds=seconds)


def ticks_of(app: Hueyard) -> list[datetime.datetime]:
    """The tick of every job the schedule enqueued, in order."""
    jobs = Jobs(app)
    found = [
        job.payload["tick"] for job in jobs.list_jobs("analytics", "waiting", page_size=500).items
    ]
    found += [
        job.payload["tick"] for job in jobs.list_jobs("analytics", "paused", page_size=500).items
    ]
    return sorted(datetime.datetime.fromisoformat(tick) for tick in found)


def test_two_consumers_firing_the_same_ticks_make_one_job_each(make: Any) -> None:
    # Given two consumers of the queue (two runners), the schedule first seen at 10:00:00
    app = make()
    first, second = ScheduleRunner(app, ["analytics"]), ScheduleRunner(app, ["analytics"])
    assert len(first.run_round(at(0.5))) == 1  # the 10:00:00 tick
    assert second.run_round(at(0.6)) == []  # noted already
    # When both run their rounds through 30 s, interleaved, each a little late
    for seconds in (10.3, 10.4, 20.2, 20.9, 30.1, 30.1):
        (first if seconds * 10 % 2 else second).run_round(at(seconds))
        (second if seconds * 10 % 2 else first).run_round(at(seconds))
    # Then each tick made exactly one job
    assert ticks_of(app) == [at(s) for s in (0, 10, 20, 30)]


def test_a_restart_resumes_from_the_last_tick_and_catches_up_once(make: Any) -> None:
    app = make("last")
    ScheduleRunner(app, ["analytics"]).run_round(at(0.2))
    # When no consumer runs from 10:00:01 to 10:01:05, then one comes back
    fired = ScheduleRunner(app, ["analytics"]).run_round(at(65))
    # Then the latest missed tick (10:01:00) is fired once, late; none of the others
    assert len(fired) == 1
    assert ticks_of(app) == [at(0), at(60)]


def test_catch_up_none_skips_the_missed_ticks(make: Any) -> None:
    app = make("none")
    ScheduleRunner(app, ["analytics"]).run_round(at(0.2))
    assert ScheduleRunner(app, ["analytics"]).run_round(at(65)) == []
    # ... and goes on with the next tick on time
    ScheduleRunner(app, ["analytics"]).run_round(at(70.5))
    assert ticks_of(app) == [at(0), at(70)]


def test_a_paused_schedule_notes_its_ticks_without_firing_them(make: Any) -> None:
    app = make("last")
    runner, schedules = ScheduleRunner(app, ["analytics"]), Schedules(app)
    runner.run_round(at(0.2))
    assert schedules.pause("every_ten") and not schedules.pause("every_ten")
    for seconds in (10.2, 20.2, 30.2):
        assert runner.run_round(at(seconds)) == []
    assert schedules.resume("every_ten", now=at(35)) and not schedules.resume("every_ten")
    # resumed: the next tick fires; the paused ones are not caught up
    runner.run_round(at(40.2))
    assert ticks_of(app) == [at(0), at(40)]
    # pausing a queue pauses its jobs, not the ticks
    Jobs(app).pause("analytics")
    runner.run_round(at(50.2))
    assert len(ticks_of(app)) == 3 and Jobs(app).counts("analytics").paused == 3


def test_ticks_that_pass_while_paused_with_no_consumer_are_not_caught_up_on_resume(
    make: Any, redis_conn: redis.Redis
) -> None:
    # Given a schedule that fired, then was paused while no consumer ran (maintenance)
    app = make("last")
    runner, schedules = ScheduleRunner(app, ["analytics"]), Schedules(app)
    runner.run_round(at(0.2))
    assert schedules.pause("every_ten")
    # its pause holds however long no consumer runs (not the week the state lives)
    assert redis_conn.pttl("{tk}:schedule:every_ten") > 300 * 86400 * 1000
    # When it is resumed at 25 s, before any consumer runs again
    assert schedules.resume("every_ten", now=at(25))
    # Then the consumer that comes back fires from the next tick: 10 s and 20 s passed
    # while it was paused, and are not caught up
    runner.run_round(at(30.2))
    assert ticks_of(app) == [at(0), at(30)]


def test_a_schedule_paused_before_it_ever_ran_leaves_a_state_that_expires(
    make: Any, redis_conn: redis.Redis
) -> None:
    app = make()
    assert Schedules(app).pause("every_ten")
    assert 0 < redis_conn.pttl("{tk}:schedule:every_ten") <= 366 * 86400 * 1000


def test_run_now_enqueues_at_once_and_info_tells_the_last_job(
    make: Any, redis_conn: redis.Redis
) -> None:
    app = make()
    schedules = Schedules(app)
    job_id = schedules.run("every_ten")
    info = schedules.info("every_ten")
    assert (info.last_job, info.queue, info.handler) == (job_id, "analytics", "analytics.snap")
    assert info.spec == "every 10 s" and not info.paused
    assert info.next_tick > info.last_fired  # type: ignore[operator]
    assert Jobs(app).get(job_id).payload["period"] == "daily"  # type: ignore[union-attr]
    # the state is bounded: it expires a while after its last note
    assert 0 < redis_conn.pttl("{tk}:schedule:every_ten") <= 7 * 86400 * 1000
    with pytest.raises(
        HueyardError, match="unknown schedule 'nope'; declared schedules: every_ten"
    ):
        schedules.run("nope")


def test_a_schedule_not_noted_past_its_period_is_overdue(make: Any) -> None:
    app = make()
    ScheduleRunner(app, ["analytics"]).run_round(at(0.2))
    schedules = Schedules(app)
    assert schedules.info("every_ten", now=at(15)).overdue is None  # 10:00:10 is 5 s late
    assert schedules.info("every_ten", now=at(21)).overdue == 11  # 10:00:10, 11 s late
    assert schedules.info("every_ten", now=at(45)).overdue == 35  # the oldest tick not fired


def test_a_consumer_of_other_queues_fires_nothing(make: Any) -> None:
    app = make()
    assert ScheduleRunner(app, []).run_round(at(0.2)) == []
    assert ticks_of(app) == []


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('handler = "analytics.nope"\nevery = 10', "[schedules.bad] handler = 'analytics.nope'"),
        ('handler = "analytics.snap"\nevery = 10', "[schedules.bad] payload does not validate"),
        (
            'handler = "analytics.snap"\nevery = 10\npayload = { period = 1 }\ntick_field = "tick"',
            "period",
        ),
    ],
)
def test_a_schedule_whose_handler_or_payload_is_wrong_stops_the_app_at_start(
    make_app: AppFactory, table: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        make_app(f"[queues.analytics]\n[schedules.bad]\n{table}", registry(), prefix="tk")
    assert message in str(caught.value)


def test_a_redis_that_does_not_answer_is_a_redis_unavailable_error_with_the_fix(
    make_app: AppFactory,
) -> None:
    # Given schedules on a Redis that then stops
    with RedisServer() as server:
        app = make_app(
            CONFIG.format(catch_up="last"), registry(), prefix="tk", url=server.url,
            redis_lines="reconnect_attempts = 1",
        )  # fmt: skip
        schedules = Schedules(app)
        assert schedules.list()[0].name == "every_ten"
        server.stop()
        # When the CLI or the dashboard read or act, Then one error says what to check
        for call in (schedules.list, lambda: schedules.info("every_ten"),
                     lambda: schedules.pause("every_ten"), lambda: schedules.resume("every_ten"),
                     lambda: schedules.run("every_ten")):  # fmt: skip
            with pytest.raises(RedisUnavailableError, match="did not answer"):
                call()
        # ... while a consumer's round leaves the outage to its log, and fires nothing
        assert ScheduleRunner(app, ["analytics"]).run_round() == []


def test_garbage_in_a_schedules_state_is_logged_once_not_every_round_then_it_fires_again(
    make: Any, redis_conn: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # Given something else wrote a string where the schedule's state hash lives
    app = make()
    redis_conn.set("{tk}:schedule:every_ten", "not a hash")
    runner = ScheduleRunner(app, ["analytics"])
    caplog.set_level("INFO", logger="hueyard.schedules")

    # When the scheduler runs many rounds
    for seconds in (0.2, 1.2, 2.2, 3.2, 4.2):
        assert runner.run_round(at(seconds)) == []

    # Then the problem is told once, naming the key and what it holds
    told = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(told) == 1, told
    assert "schedule every_ten" in told[0] and "{tk}:schedule:every_ten" in told[0]

    # And once the key is gone, the schedule fires again and says so
    redis_conn.delete("{tk}:schedule:every_ten")
    assert len(runner.run_round(at(10.2))) == 1
    assert any("schedule every_ten: fires again" in r.getMessage() for r in caplog.records)


def test_schedules_go_by_the_redis_servers_clock_or_this_hosts_where_time_is_refused(
    make_app: AppFactory,
) -> None:
    # Given a Redis with a user whose ACL refuses TIME (a reader's), and the default user
    with RedisServer() as server:
        server.client().execute_command(
            "ACL", "SETUSER", "reader", "on", ">reader-password", "~*", "&*", "+@all", "-time"
        )
        url = server.url.replace("redis://", "redis://reader:reader-password@")
        for user_url, refused in ((server.url, False), (url, True)):
            app = make_app(CONFIG.format(catch_up="last"), registry(), prefix="tk", url=user_url)
            seconds, micros = server.client().time()
            redis_now = datetime.datetime.fromtimestamp(seconds + micros / 1e6, UTC)
            # When the schedules are read
            now = Schedules(app).now()
            [info] = Schedules(app).list()
            # Then they go by the server's clock (here the host's clock is the same, so
            # within a second either way), and a refused TIME is no error
            assert abs((now - redis_now).total_seconds()) < 1, (refused, now, redis_now)
            assert info.name == "every_ten"
            app.close()


def test_a_redis_clock_that_stepped_back_does_not_stop_the_schedule(
    make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a round that ran while the Redis clock read an hour ahead (an NTP step, a
    # failover to a server whose clock was wrong)
    app = make()
    runner = ScheduleRunner(app, ["analytics"])
    caplog.set_level("INFO", logger="hueyard.schedules")
    assert len(runner.run_round(at(3600.2))) == 1
    # When the clock is right again
    assert runner.run_round(at(10.2)) == []
    # Then the schedule goes on from now instead of waiting an hour, and says why
    for seconds in (20.2, 30.2):
        runner.run_round(at(seconds))
    assert ticks_of(app) == [at(20), at(30), at(3600)]
    told = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(told) == 1 and "is after the Redis server's time" in told[0], told
    assert Schedules(app).info("every_ten", now=at(31)).overdue is None


def test_a_schedule_no_consumer_fires_is_overdue_from_when_a_consumer_first_knew_it(
    make: Any, redis_conn: redis.Redis
) -> None:
    # Given a schedule of a queue no consumer serves (HUEYARD_QUEUES leaves it out),
    # known to a consumer of other queues from 10:00:00
    app = make()
    assert ScheduleRunner(app, ["elsewhere"]).run_round(at(0.2)) == []
    schedules = Schedules(app)
    # Then it is overdue once its first tick after that is late past a period
    assert schedules.info("every_ten", now=at(15)).overdue is None
    assert schedules.info("every_ten", now=at(25)).overdue == 15
    assert schedules.info("every_ten", now=at(3 * 86400)).overdue == 3 * 86400 - 10
    # and its state outlives the week a state lives: each consumer renews it
    redis_conn.pexpire("{tk}:schedule:every_ten", 5000)
    ScheduleRunner(app, ["elsewhere"]).run_round(at(8 * 86400))
    assert redis_conn.pttl("{tk}:schedule:every_ten") > 6 * 86400 * 1000
    assert schedules.info("every_ten", now=at(8 * 86400)).overdue == 8 * 86400 - 10
    # while with no consumer at all, nothing is known to judge it by
    redis_conn.delete("{tk}:schedule:every_ten")
    assert schedules.info("every_ten", now=at(25)).overdue is None


DAILY = """
[queues.analytics]

[schedules.daily]
handler = "analytics.snap"
cron = "{cron}"
payload = {{ period = "daily" }}
tick_field = "tick"
"""


def test_a_schedule_whose_time_changed_goes_on_from_its_next_tick_without_a_catch_up(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a daily schedule at 09:00 that fired today
    before = make_app(DAILY.format(cron="0 9 * * *"), registry(), prefix="tk")
    assert len(ScheduleRunner(before, ["analytics"]).run_round(at(-3600 + 0.5))) == 1
    # When at 10:00 its time is changed to 09:30 and the consumers restart
    after = make_app(DAILY.format(cron="30 9 * * *"), registry(), prefix="tk")
    caplog.set_level("INFO", logger="hueyard.schedules")
    runner = ScheduleRunner(after, ["analytics"])
    # Then 09:30 is not fired as a missed tick (the job ran today already) ...
    assert runner.run_round(at(5)) == []
    assert runner.run_round(at(6)) == []
    told = [r.getMessage() for r in caplog.records if "changed" in r.getMessage()]
    assert len(told) == 1 and "cron 0 9 * * * (UTC), now cron 30 9 * * * (UTC)" in told[0]
    # ... and the schedule fires at its new time tomorrow
    assert len(runner.run_round(at(86400 - 1800 + 0.5))) == 1
    assert ticks_of(after) == [at(-3600), at(86400 - 1800)]
    # while a restart with the same timing still catches up what it missed
    assert len(ScheduleRunner(after, ["analytics"]).run_round(at(2 * 86400 + 60))) == 1
