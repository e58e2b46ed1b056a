"""Schedules at work: each tick enqueued once, however many consumers run.

Every consumer that serves a schedule's queue runs :class:`ScheduleRunner`
in its scheduler thread, every ``[consumer] scheduler_interval``. A round
reads the schedule's state in Redis, asks :func:`framework.schedules.due`
which ticks to fire, enqueues each with the job key ``<schedule>:<tick>``
and notes the newest tick (``schedule_mark.lua``: it only ever grows). Two
consumers that fire one tick at the same moment make one job: the enqueue
script takes the key atomically, and the key stays taken
(:func:`tick_key_ttl`) long after the job finished. So each tick runs once,
and a restart resumes from the noted tick.

State, one hash per schedule (``{p}:schedule:<name>``, expires a while after
its last note, so a schedule taken out of the config leaves nothing)::

    last        the newest tick accounted for (epoch ms): fired, or skipped
    last_job    the job the latest tick (or run) enqueued
    last_fired  when (epoch ms)
    paused      "1" while paused: ticks are noted, not fired
    spec        its timing when a consumer last fired it (``cron ... (zone)``,
                ``every N s``): a change starts it afresh, with no catch-up
    seen        when a consumer first knew it (epoch ms): a schedule that never
                fired is overdue once its first tick after that is late

Every consumer keeps the state of every declared schedule alive
(:data:`STATE_KEEP`), so it expires only once no consumer declares it.

:class:`Schedules` is the read/act API the CLI and the dashboard use.
"""

from __future__ import annotations

import datetime
import functools
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, Unpack

import redis

from framework.clients import RedisClients
from framework.clock import server_now
from framework.errors import ConfigError, HueyardError, PayloadError, RedisUnavailableError
from framework.handlers import HandlerRegistry
from framework.keys import Keys
from framework.options import EnqueueArgs
from framework.outages import Outage
from framework.schedules import Schedule, due, grace, utc_now
from framework.scripts import Scripts, storage_error
from framework.settings import Settings


class ScheduleApp(Protocol):
    """What schedules need of the app (:class:`framework.application.Hueyard`)."""

    settings: Settings
    keys: Keys
    clients: RedisClients
    schedules: dict[str, Schedule]

    def enqueue(
        self, queue: str, handler: str, payload: Any, **options: Unpack[EnqueueArgs]
    ) -> str: ...


__all__ = [
    "ScheduleApp",
    "ScheduleInfo",
    "ScheduleRunner",
    "Schedules",
    "compile_schedules",
    "tick_key",
    "tick_key_ttl",
]

logger = logging.getLogger("hueyard.schedules")

UTC = datetime.UTC
STATE_TTL_MIN = 7 * 86400.0
"""A schedule's state lives at least this long (seconds) after its last note."""

STATE_KEEP = 600.0
"""Seconds between two renewals, by one consumer, of every declared schedule's state."""

PAUSED_TTL = 366 * 86400.0
"""A paused schedule's state lives at least this long (seconds) after the pause: the pause
holds until resumed, however long no consumer runs, and a schedule taken out of the
config while paused leaves nothing behind past that."""


def compile_schedules(settings: Settings, registry: HandlerRegistry) -> dict[str, Schedule]:
    """Every ``[schedules.<name>]``, checked against the handlers: the handler exists
    on its queue and the payload (with a tick) validates. Raises :class:`ConfigError`."""
    schedules: dict[str, Schedule] = {}
    for name, table in settings.schedules.items():
        schedule = Schedule.from_settings(name, table)
        where = f"[schedules.{name}]"
        try:
            spec = registry.get(schedule.handler, schedule.queue)
        except HueyardError as exc:
            raise ConfigError(f"{where} handler = {table.handler!r}: {exc}") from None
        sample = schedule.latest_tick(utc_now())
        try:
            limit = settings.queue(schedule.queue).max_payload_bytes
            spec.payload_json(tick_payload(schedule, sample), max_bytes=limit)
        except PayloadError as exc:
            raise ConfigError(
                f"{where} payload does not validate for {spec.name}: {exc}; fix payload "
                "(or tick_field) in the schedule's table"
            ) from None
        schedules[name] = schedule
    return schedules


def tick_payload(schedule: Schedule, tick: datetime.datetime) -> dict[str, Any]:
    """The payload one tick enqueues: the schedule's, plus the tick's time if asked."""
    payload = dict(schedule.payload)
    if schedule.tick_field is not None:
        payload[schedule.tick_field] = tick.astimezone(schedule.timezone).isoformat()
    return payload


def tick_key(schedule: Schedule, tick: datetime.datetime) -> str:
    """The job key of one tick: ``<schedule>:<tick in UTC, ISO 8601, ms>``."""
    return f"{schedule.name}:{tick.astimezone(UTC).isoformat(timespec='milliseconds')}"


def tick_key_ttl(schedule: Schedule, at: datetime.datetime) -> float:
    """Seconds a tick's key outlives its job: two periods, at least an hour, at most a week."""
    return min(max(2 * schedule.period(at), 3600.0), 7 * 86400.0)


@dataclass(frozen=True)
class ScheduleInfo:
    """A schedule, its next tick and what it did last (for ``hueyard schedules``)."""

    name: str
    queue: str
    handler: str
    spec: str
    paused: bool
    next_tick: datetime.datetime
    last_tick: datetime.datetime | None
    last_job: str | None
    last_fired: datetime.datetime | None
    overdue: float | None
    """Seconds its oldest tick not yet fired is late, once that is more than
    ``overdue_after`` (default: a period); else None."""
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        def when(value: datetime.datetime | None) -> str | None:
            return None if value is None else value.isoformat(timespec="seconds")

        return {
            "name": self.name,
            "queue": self.queue,
            "handler": self.handler,
            "schedule": self.spec,
            "paused": self.paused,
            "next_run": when(self.next_tick),
            "last_tick": when(self.last_tick),
            "last_job": self.last_job,
            "last_run": when(self.last_fired),
            "overdue_seconds": self.overdue,
            "description": self.description,
        }


@dataclass(frozen=True)
class _State:
    last: datetime.datetime | None
    last_job: str | None
    last_fired: datetime.datetime | None
    paused: bool
    spec: str | None = None
    seen: datetime.datetime | None = None


def _time(raw: bytes | None) -> datetime.datetime | None:
    try:
        return None if raw is None else datetime.datetime.fromtimestamp(int(raw) / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        return None


def _ms(moment: datetime.datetime) -> int:
    return round(moment.timestamp() * 1000)


P = ParamSpec("P")
R = TypeVar("R")


def _answered(
    method: Callable[Concatenate[Schedules, P], R],
) -> Callable[Concatenate[Schedules, P], R]:
    """A Redis that does not answer becomes a :class:`RedisUnavailableError` with the fix,
    as in :class:`framework.jobs.Jobs`: what the CLI and the dashboard report. Only the
    read/act methods: the runner's ``state`` and ``mark`` leave the error to its outage log."""

    @functools.wraps(method)
    def call(self: Schedules, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            settings = self.app.settings.redis
            raise RedisUnavailableError(
                f"schedules.{method.__name__}: Redis at {settings.connection.redacted_url} did "
                f"not answer after {settings.reconnect_attempts} reconnection attempts "
                f"({type(exc).__name__}: {exc}); {settings.connection.what_to_check}"
            ) from None

    return call


class Schedules:
    """The schedules of ``app``: their state, and run / pause / resume."""

    def __init__(self, app: ScheduleApp) -> None:
        self.app = app
        self.keys: Keys = app.keys
        self.conn = app.clients.client()
        self.scripts = Scripts(self.conn)
        self.interval = app.settings.consumer.scheduler_interval

    @_answered
    def now(self) -> datetime.datetime:
        """The Redis server's time (``TIME``): the one clock the schedules go by, so that
        every consumer fires a tick at the same moment whatever its host's clock says (a
        host a minute ahead would otherwise fire each tick a minute early); see
        :mod:`framework.clock`."""
        return server_now(self.conn)

    def get(self, name: str) -> Schedule:
        try:
            return self.app.schedules[name]
        except KeyError:
            known = ", ".join(self.app.schedules) or "none"
            raise HueyardError(f"unknown schedule {name!r}; declared schedules: {known}") from None

    def state(self, name: str) -> _State:
        key = self.keys.schedule(name)
        try:
            values: list[bytes | None] = self.conn.hmget(  # type: ignore[assignment]
                key, "last", "last_job", "last_fired", "paused", "spec", "seen"
            )
            last, job, fired, paused, spec, seen = values
        except redis.ResponseError as exc:
            raise storage_error(exc, "HMGET", key=key, wanted="hash", conn=self.conn) from None
        return _State(
            last=_time(last),
            last_job=job.decode(errors="replace") if job else None,
            last_fired=_time(fired),
            paused=bool(paused),
            spec=spec.decode(errors="replace") if spec else None,
            seen=_time(seen),
        )

    @_answered
    def info(self, name: str, now: datetime.datetime | None = None) -> ScheduleInfo:
        schedule, now = self.get(name), now or self.now()
        state = self.state(name)
        # The oldest tick not accounted for: the one after the last noted; for one never
        # fired, the first after a consumer first knew it (else the latest: no consumer
        # ever ran, which the consumers' own checks report).
        if state.last is not None:
            oldest = schedule.next_tick(state.last)
        elif state.seen is not None:
            oldest = schedule.next_tick(state.seen)
        else:
            oldest = schedule.latest_tick(now)
        late = (now - oldest).total_seconds()
        limit = schedule.overdue_limit(now)
        overdue = late if oldest <= now and not state.paused and late > limit else None
        return ScheduleInfo(
            name=name,
            queue=schedule.queue,
            handler=f"{schedule.queue}.{schedule.handler}",
            spec=schedule.spec,
            paused=state.paused,
            next_tick=schedule.next_tick(now),
            last_tick=state.last,
            last_job=state.last_job,
            last_fired=state.last_fired,
            overdue=overdue,
            description=schedule.description,
        )

    @_answered
    def list(self, now: datetime.datetime | None = None) -> list[ScheduleInfo]:
        now = now or self.now()
        return [self.info(name, now) for name in self.app.schedules]

    @_answered
    def run(self, name: str) -> str:
        """Enqueue the schedule's job now (its payload's tick: now); return its id.

        Its state key is checked first: one of another type would refuse the mark after
        the job was enqueued, and each try would enqueue one more."""
        schedule, now = self.get(name), self.now()
        key = self.keys.schedule(name)
        try:
            self.conn.hlen(key)
        except redis.ResponseError as exc:
            raise storage_error(exc, "HLEN", key=key, wanted="hash", conn=self.conn) from None
        job_id = self.app.enqueue(schedule.queue, schedule.handler, tick_payload(schedule, now))
        self.mark(schedule, None, job_id, now)
        logger.info("schedule %s run by hand: job %s", name, job_id)
        return job_id

    @_answered
    def pause(self, name: str) -> bool:
        """Stop firing ``name`` (its ticks are noted, not enqueued); False if it was paused."""
        self.get(name)
        return self._set_paused(name, True)

    @_answered
    def resume(self, name: str, *, now: datetime.datetime | None = None) -> bool:
        """Fire ``name`` again from its next tick; False if it was not paused.

        The ticks that passed while it was paused (up to ``now``, by default the Redis
        server's clock) are noted as accounted for, so none is caught up, also when no
        consumer ran during the pause to note them."""
        schedule = self.get(name)
        resumed = self._set_paused(name, False)
        if resumed:
            now = now or self.now()
            self.mark(schedule, schedule.latest_tick(now), None, now)
        return resumed

    def _set_paused(self, name: str, paused: bool) -> bool:
        key = self.keys.schedule(name)
        try:
            if not paused:
                return bool(self.conn.hdel(key, "paused"))
            done = bool(self.conn.hsetnx(key, "paused", "1"))
            if int(self.conn.pttl(key)) < PAUSED_TTL * 1000:  # -1: a state never noted
                self.conn.pexpire(key, int(PAUSED_TTL * 1000))
            return done
        except redis.ResponseError as exc:
            raise storage_error(exc, "HSET", key=key, wanted="hash", conn=self.conn) from None

    def mark(
        self,
        schedule: Schedule,
        tick: datetime.datetime | None,
        job_id: str | None,
        now: datetime.datetime,
        *,
        reset_above: datetime.datetime | None = None,
        keep_only: bool = False,
    ) -> None:
        """Note ``tick`` (if any) as accounted for, and ``job_id`` (if any) as the last job,
        with the schedule's timing as this process's config has it; a noted tick after
        ``reset_above`` is replaced by ``tick`` (the clock stepped back). ``keep_only``:
        only note that the schedule is known and renew its state's life."""
        ttl = max(STATE_TTL_MIN, 3 * schedule.period(now))
        self.scripts.call(
            "schedule_mark",
            keys={"schedule": self.keys.schedule(schedule.name)},
            args={
                "tick_ms": -1 if tick is None else _ms(tick),
                "job": job_id or "",
                "fired_ms": _ms(now),
                "ttl_ms": int(ttl * 1000),
                "reset_above_ms": "" if reset_above is None else _ms(reset_above),
                "spec": "" if keep_only else schedule.spec,
                "seen_ms": _ms(now),
            },
        )


class ScheduleRunner:
    """Fires the schedules of the queues one consumer serves (its scheduler thread)."""

    def __init__(self, app: ScheduleApp, queues: Iterable[str]) -> None:
        served = set(queues)
        self.schedules = Schedules(app)
        self.app = app
        self.mine: Mapping[str, Schedule] = {
            name: schedule for name, schedule in app.schedules.items() if schedule.queue in served
        }
        self.declared: Mapping[str, Schedule] = app.schedules
        self._changes_told: set[tuple[str, str]] = set()
        self._kept = -math.inf
        """When (monotonic) this runner last renewed every declared schedule's state."""
        self.outage = Outage("schedules", logger)
        self.trouble = {
            name: Outage(f"schedule {name}", logger, recovered="fires again") for name in self.mine
        }
        """Per schedule: an error that is not an outage (a key of the wrong type, a payload
        gone bad), logged when it starts, every 30 s while it lasts, and when it ends."""

    def run_round(self, now: datetime.datetime | None = None) -> list[str]:
        """Fire what is due ``now`` (default: the Redis server's time, read once a round);
        return the ids of the jobs enqueued (or found)."""
        fired: list[str] = []
        keep = time.monotonic() - self._kept >= STATE_KEEP
        if not self.mine and not (keep and self.declared):
            return fired
        try:
            now = now or self.schedules.now()
            if keep:
                self._keep(now)
        except (redis.ConnectionError, redis.TimeoutError, RedisUnavailableError) as exc:
            self.outage.failed(exc)
            return fired
        for schedule in self.mine.values():
            try:
                fired += self._round(schedule, now)
            except (redis.ConnectionError, redis.TimeoutError, RedisUnavailableError) as exc:
                self.outage.failed(exc)
                return fired  # one Redis: the next round tries every schedule again
            except HueyardError as exc:  # a key of the wrong type, a payload gone bad
                self.trouble[schedule.name].failed(exc)
            else:
                self.trouble[schedule.name].answered()
        self.outage.answered()
        return fired

    def _keep(self, now: datetime.datetime) -> None:
        """Renew the state of every declared schedule, served here or not, and note it as
        known: a schedule that no consumer fires is then reported overdue, and the state
        of one that fires rarely (or was held up for a week) does not expire."""
        for schedule in self.declared.values():
            try:
                self.schedules.mark(schedule, None, None, now, keep_only=True)
            except HueyardError as exc:  # a key of the wrong type: its round reports it
                logger.debug("schedule %s: state not renewed: %s", schedule.name, exc)
        self._kept = time.monotonic()

    def _round(self, schedule: Schedule, now: datetime.datetime) -> list[str]:
        state = self.schedules.state(schedule.name)
        on_time = grace(schedule, now, self.schedules.interval)
        last = state.last
        ahead = now + datetime.timedelta(seconds=on_time)
        if last is not None and last > ahead:
            # Every tick until the noted one would wait for it: go on from now.
            latest = schedule.latest_tick(now)
            self.schedules.mark(schedule, latest, None, now, reset_above=ahead)
            logger.warning(
                "schedule %s: its last tick noted, %s, is after the Redis server's time, "
                "%s: that clock stepped back (or ran ahead for a while); it goes on from "
                "now, with its next tick %s",
                schedule.name, last.isoformat(), now.isoformat(),
                schedule.next_tick(now).isoformat(),
            )  # fmt: skip
            return []
        if state.spec is not None and state.spec != schedule.spec:
            told = (schedule.name, state.spec)
            if told not in self._changes_told:  # once: consumers of both timings may overlap
                self._changes_told.add(told)
                logger.info(
                    "schedule %s changed (%s, now %s): it goes on from its next tick, "
                    "with no catch-up of the old timing's ticks",
                    schedule.name, state.spec, schedule.spec,
                )  # fmt: skip
            last = None
            self.schedules.mark(schedule, None, None, now)  # its new timing, noted
        plan = due(schedule, last, now, on_time)
        if last is not None and plan.last is not None and plan.last <= last:
            return []
        fired = []
        for tick in [] if state.paused else plan.fire:
            job_id = self.app.enqueue(
                schedule.queue,
                schedule.handler,
                tick_payload(schedule, tick),
                key=tick_key(schedule, tick),
                key_ttl=tick_key_ttl(schedule, now),
            )
            self.schedules.mark(schedule, tick, job_id, now)
            late = (now - tick).total_seconds()
            logger.info(
                "schedule %s: tick %s -> job %s%s",
                schedule.name, tick.isoformat(), job_id,
                f" (caught up, {late:.0f} s late)" if late > on_time else "",
            )  # fmt: skip
            fired.append(job_id)
        if plan.last is not None:
            self.schedules.mark(schedule, plan.last, None, now)
        return fired
