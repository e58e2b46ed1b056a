"""Schedules: config validation, when ticks fall (DST, month ends), which ticks a round fires."""

from __future__ import annotations

import datetime
import time
import zoneinfo

import pytest

from framework.config import parse_settings
from framework.errors import ConfigError
from framework.schedules import Schedule, due, grace

UTC = datetime.UTC
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")

QUEUES = """
[queues.analytics]
"""


def schedule(table: str, name: str = "s") -> Schedule:
    settings = parse_settings(f"{QUEUES}\n[schedules.{name}]\n{table}", env={})
    return Schedule.from_settings(name, settings.schedules[name])


def at(text: str, tz: datetime.tzinfo = UTC) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=tz)


# -- config -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('handler = "analytics.snapshot"', "set either cron"),
        ('handler = "analytics.snapshot"\ncron = "* * * * *"\nevery = 60', "not both or neither"),
        ('handler = "analytics.snapshot"\ncron = "61 * * * *"', "'61 * * * *' is not a cron"),
        ('handler = "analytics.snapshot"\ncron = "5 0 * *"', "use five fields"),
        ('handler = "analytics.snapshot"\nevery = 0.5', "every = 0.5: must be at least 1"),
        ('handler = "snapshot"\nevery = 60', "use '<queue>.<handler>'"),
        ('handler = "reports.snapshot"\nevery = 60', "no queue 'reports' is declared"),
        ('handler = "analytics.snapshot"\nevery = 60\ntimezone = "Mars/Olympus"', "unknown time"),
        ('handler = "analytics.snapshot"\nevery = 60\ncatch_up = "all"', "catch_up = 'all'"),
        ('handler = "analytics.snapshot"\nevery = 60\nevry = 5', "evry: unknown field"),
        ('handler = "analytics.snapshot"\nevery = nan', "every = nan: must be a finite number"),
        ('handler = "analytics.snapshot"\nevery = inf', "every = inf: must be a finite number"),
        ('handler = "analytics.snapshot"\ncron = "@reboot"', "'@reboot' is not a cron"),
        (
            'handler = "analytics.snapshot"\nevery = 60\ntick_field = "p"\npayload = { p = 1 }',
            "also a key of payload",
        ),
    ],
)
def test_a_bad_schedule_is_refused_at_start_up_naming_it(table: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(f"{QUEUES}\n[schedules.daily]\n{table}", source="queues.toml", env={})
    text = str(caught.value)
    assert text.startswith("queues.toml: ")
    assert "schedules.daily" in text
    assert message in text


@pytest.mark.parametrize(
    ("alias", "fields"),
    [("@daily", "0 0 * * *"), ("@Hourly", "0 * * * *"), (" @weekly ", "0 0 * * 0"),
     ("@monthly", "0 0 1 * *"), ("@yearly", "0 0 1 1 *"), ("@midnight", "0 0 * * *")],
)  # fmt: skip
def test_crons_nicknames_stand_for_their_five_fields(alias: str, fields: str) -> None:
    assert schedule(f'handler = "analytics.snapshot"\ncron = "{alias}"').cron == fields


# -- ticks --------------------------------------------------------------------------------------


def test_every_ticks_fall_on_multiples_of_the_period_since_the_epoch() -> None:
    every = schedule('handler = "analytics.snapshot"\nevery = 300')
    now = at("2025-11-05T10:07:12")
    assert every.latest_tick(now) == at("2025-11-05T10:05:00")
    assert every.next_tick(now) == at("2025-11-05T10:10:00")
    assert every.latest_tick(at("2025-11-05T10:10:00")) == at("2025-11-05T10:10:00")
    assert every.next_tick(at("2025-11-05T10:10:00")) == at("2025-11-05T10:15:00")
    assert every.period(now) == 300


def test_cron_ticks_in_a_time_zone_across_daylight_saving_changes() -> None:
    daily = schedule(
        'handler = "analytics.snapshot"\ncron = "30 2 * * *"\ntimezone = "Europe/Berlin"'
    )
    # Spring forward (2025-03-30): 02:30 does not exist; it runs at 03:00, like cron
    ticks = daily.ticks_after(at("2025-03-29T12:00", BERLIN))
    assert [next(ticks) for _ in range(3)] == [
        at("2025-03-30T03:00", BERLIN),
        at("2025-03-31T02:30", BERLIN),
        at("2025-04-01T02:30", BERLIN),
    ]
    # Fall back (2025-10-26): 02:30 happens twice; it runs once
    ticks = daily.ticks_after(at("2025-10-25T12:00", BERLIN))
    autumn = [next(ticks) for _ in range(2)]
    assert [t.date().isoformat() for t in autumn] == ["2025-10-26", "2025-10-27"]
    assert autumn[1].astimezone(UTC) - autumn[0].astimezone(UTC) == datetime.timedelta(hours=25)
    # The tick is in the schedule's zone, whatever zone "now" is in
    assert daily.latest_tick(at("2025-11-05T12:00")).tzinfo == BERLIN


def test_the_repeated_hour_has_no_second_pass_ticks_whenever_a_round_runs() -> None:
    # */5 in Berlin on 2026-10-25: 02:00-02:59 happens twice (00:00Z-01:59Z); the docs
    # say its ticks run once, in the first pass, then 03:00 CET (02:00Z) is next
    five = schedule(
        'handler = "analytics.snapshot"\ncron = "*/5 * * * *"\ntimezone = "Europe/Berlin"'
    )
    first_pass_end = at("2026-10-25T00:55")
    for moment in ("2026-10-25T01:00", "2026-10-25T01:30", "2026-10-25T01:59:59"):
        # a round in the second pass: the latest tick is the first pass's last, and the
        # next is 03:00 CET, not a second-pass 02:xx
        # (compared in UTC: a time of the repeated hour is never equal to one of another zone)
        assert five.latest_tick(at(moment)).astimezone(UTC) == first_pass_end, moment
        assert five.next_tick(at(moment)) == at("2026-10-25T02:00"), moment
    assert five.next_tick(first_pass_end) == at("2026-10-25T02:00")
    # a consumer back at 02:29:30 CET (01:29:30Z) after an outage from 00:26Z catches up
    # 02:55 CEST once and fires no second-pass tick
    result = due(five, at("2026-10-25T00:25"), at("2026-10-25T01:29:30"), on_time=60)
    assert [tick.astimezone(UTC) for tick in result.fire] == [first_pass_end]
    assert due(five, result.last, at("2026-10-25T01:30:10"), on_time=60).fire == []
    # a daily 02:30 runs in the first pass only, an hourly :30 skips the second 02:30
    daily = schedule(
        'handler = "analytics.snapshot"\ncron = "30 2 * * *"\ntimezone = "Europe/Berlin"'
    )
    assert daily.latest_tick(at("2026-10-25T01:45")).astimezone(UTC) == at("2026-10-25T00:30")
    hourly = schedule(
        'handler = "analytics.snapshot"\ncron = "30 * * * *"\ntimezone = "Europe/Berlin"'
    )
    assert hourly.next_tick(at("2026-10-25T00:31")) == at("2026-10-25T02:30")


@pytest.mark.parametrize(
    ("cron", "after", "expected"),
    [
        ("0 0 1 * *", "2025-01-31T12:00", ["2025-02-01", "2025-03-01", "2025-04-01"]),  # monthly
        ("0 0 31 * *", "2025-01-31T12:00", ["2025-03-31", "2025-05-31", "2025-07-31"]),
        ("0 0 29 2 *", "2025-01-01T00:00", ["2028-02-29", "2032-02-29", "2036-02-29"]),
        ("0 6 * * 1", "2025-11-05T00:00", ["2025-11-10", "2025-11-17", "2025-11-24"]),  # Mondays
    ],
)
def test_cron_ticks_at_month_ends_and_on_weekdays(
    cron: str, after: str, expected: list[str]
) -> None:
    job = schedule(
        f'handler = "analytics.snapshot"\ncron = "{cron}"\ntimezone = "America/New_York"'
    )
    ticks = job.ticks_after(at(after, NEW_YORK))
    assert [next(ticks).date().isoformat() for _ in range(3)] == expected


def test_six_cron_fields_read_seconds_first_as_bull_and_node_cron_do() -> None:
    every_5_min = schedule('handler = "analytics.snapshot"\ncron = "0 */5 * * * *"')
    ticks = every_5_min.ticks_after(at("2025-11-05T10:00:00"))
    assert [next(ticks) for _ in range(2)] == [at("2025-11-05T10:05"), at("2025-11-05T10:10")]
    at_0900_30 = schedule('handler = "analytics.snapshot"\ncron = "30 0 9 * * *"')
    assert next(at_0900_30.ticks_after(at("2025-11-05T10:00"))) == at("2025-11-06T09:00:30")


def test_the_latest_cron_tick_includes_one_that_falls_right_now() -> None:
    daily = schedule('handler = "analytics.snapshot"\ncron = "5 0 * * *"')
    assert daily.latest_tick(at("2025-11-05T00:05:00")) == at("2025-11-05T00:05")
    assert daily.latest_tick(at("2025-11-05T00:04:59")) == at("2025-11-04T00:05")
    assert daily.period(at("2025-11-05T12:00")) == 86400


# -- which ticks a round fires ---------------------------------------------------------------


EVERY_10 = 'handler = "analytics.snapshot"\nevery = 10'


def test_a_round_fires_the_ticks_that_are_on_time() -> None:
    job = schedule(EVERY_10)
    now = at("2025-11-05T10:00:21")
    # last fired 10:00:10; 10:00:20 is due (1 s late)
    result = due(job, at("2025-11-05T10:00:10"), now, on_time=5)
    assert result.fire == [at("2025-11-05T10:00:20")]
    assert result.last == at("2025-11-05T10:00:20")
    # the next round, a moment later: nothing more
    assert due(job, result.last, at("2025-11-05T10:00:22"), on_time=5).fire == []


@pytest.mark.parametrize(("catch_up", "fired"), [("last", ["10:02:50"]), ("none", [])])
def test_ticks_missed_while_no_consumer_ran_are_fired_once_or_skipped(
    catch_up: str, fired: list[str]
) -> None:
    # Given the last tick fired at 10:00:10, and no consumer until 10:03:02
    job = schedule(f'{EVERY_10}\ncatch_up = "{catch_up}"')
    result = due(job, at("2025-11-05T10:00:10"), at("2025-11-05T10:03:02"), on_time=5)
    # Then the latest missed tick is fired once (or none), the on-time one as usual
    assert result.fire == [at(f"2025-11-05T{t}") for t in [*fired, "10:03:00"]]
    assert result.last == at("2025-11-05T10:03:00")


def test_a_schedule_that_never_fired_catches_nothing_up() -> None:
    job = schedule(EVERY_10)
    assert due(job, None, at("2025-11-05T10:03:02"), on_time=5).fire == [at("2025-11-05T10:03:00")]
    assert due(job, None, at("2025-11-05T10:03:07"), on_time=5).fire == []


def test_a_long_outage_of_a_one_second_schedule_costs_one_catch_up_and_no_time() -> None:
    job = schedule('handler = "analytics.snapshot"\nevery = 1')
    started = time.perf_counter()
    result = due(job, at("2025-11-01T00:00:00"), at("2025-11-05T00:00:00.3"), on_time=0.5)
    assert time.perf_counter() - started < 0.1
    assert result.fire == [at("2025-11-04T23:59:59"), at("2025-11-05T00:00:00")]


def test_grace_is_half_a_period_at_most_a_minute_at_least_two_rounds() -> None:
    now = at("2025-11-05T10:00:00")
    assert grace(schedule(EVERY_10), now, scheduler_interval=1) == 5
    assert grace(schedule('handler = "analytics.snapshot"\nevery = 3600'), now, 1) == 60
    assert grace(schedule('handler = "analytics.snapshot"\nevery = 1'), now, 1) == 2


@pytest.mark.parametrize(
    ("table", "moment", "limit"),
    [
        ('cron = "0 * * * *"', "2025-11-05T10:30:00", 3600),
        ('cron = "5 0 * * *"\ntimezone = "Europe/Berlin"', "2025-10-26T12:00:00", 90000),
        ("every = 60\noverdue_after = 600", "2025-11-05T10:30:00", 600),
        ('cron = "0 * * * *"\noverdue_after = 120', "2025-11-05T10:30:00", 120),
    ],
    ids=["one-period", "a-day-of-25-hours", "overdue-after", "overdue-after-under-cron"],
)
def test_a_schedule_is_overdue_after_its_overdue_after_else_one_period(
    table: str, moment: str, limit: float
) -> None:
    job = schedule(f'handler = "analytics.snapshot"\n{table}')
    assert job.overdue_limit(at(moment)) == limit
