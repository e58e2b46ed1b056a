"""The shape of ``config/queues.toml``, validated once by pydantic.

Every table forbids unknown fields, so a typo fails at start-up. ``[defaults]``
holds every queue policy; each ``[queues.<name>]`` may override any of them.
:func:`framework.config.load_settings` reads the file and the environment and
returns a :class:`Settings`; :meth:`Settings.queue` gives a queue's resolved
policy.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import zoneinfo
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from cronsim import CronSim, CronSimError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from framework import defaults
from framework.connection import ConnectionSpec, check_url, redact_url

__all__ = [
    "Backoff",
    "CacheSettings",
    "ConsumerSettings",
    "DashboardSettings",
    "HealthSettings",
    "QueueOverrides",
    "QueuePolicy",
    "RateLimit",
    "RedisSettings",
    "ScheduleSettings",
    "Settings",
]

QUEUE_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
TTL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,127}")
HANDLER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
SCHEDULE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}")


def _queue_name(name: str) -> str:
    if not QUEUE_NAME.fullmatch(name):
        raise ValueError(
            f"queue name {name!r} is not allowed; use a lowercase letter followed by "
            "up to 62 lowercase letters, digits or '_'"
        )
    return name


def _ttl_name(name: str) -> str:
    if not TTL_NAME.fullmatch(name):
        raise ValueError(f"TTL name {name!r} is not allowed; use letters, digits and '_'")
    return name


_HOST_ENTRY = re.compile(r"\*|\.?[a-z0-9_-]+(\.[a-z0-9_-]+)*|\[[0-9a-f:.]+\]")


def _allowed_host(entry: str) -> str:
    """An entry of ``[dashboard] allowed_hosts``, lowercased, IPv6 in brackets, no final dot."""
    value = entry.strip().lower()
    if "/" in value:
        raise ValueError("give the host name only, without scheme or path")
    if value.count(":") >= 2 and not value.startswith("["):
        value = f"[{value}]"  # a bare IPv6 address
    if value.count(":") == 1 or "]:" in value:
        raise ValueError("has a port; list host names only (ports are not compared)")
    if value != "." and value.endswith("."):
        value = value[:-1]
    if not _HOST_ENTRY.fullmatch(value):
        raise ValueError(
            "is not a host; use a name (dashboard.example.com), an address (10.0.0.5, "
            "[::1]), '.example.com' for a domain and its subdomains, or '*' for any host"
        )
    return value


def _mask_field(value: str) -> str:
    if not any(ch.isalnum() for ch in value):
        raise ValueError("needs a letter or digit: keys containing it are masked")
    return value


def _proxy_address(value: str) -> str:
    if value != "*":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(
                "must be the IP address the proxy connects from (e.g. 127.0.0.1), or '*'"
            ) from None
    return value


AllowedHost = Annotated[str, AfterValidator(_allowed_host)]

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(\.{_LABEL})*")


def _listen_host(value: str) -> str:
    """``[dashboard] host``: an IP address (IPv6 without brackets) or a host name."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        digits = value.replace(".", "")  # 999.1.1.1: an address that is not one
        if not _HOST_NAME.fullmatch(value) or (digits.isascii() and digits.isdigit()):
            raise ValueError(
                "is not an address or a host name to listen on; use 127.0.0.1 (this host "
                "only), 0.0.0.0 (every IPv4 address of this host), :: or a host name"
            ) from None
    return value


def _schedule_name(name: str) -> str:
    if not SCHEDULE_NAME.fullmatch(name):
        raise ValueError(
            f"schedule name {name!r} is not allowed; use a letter followed by up to 62 "
            "letters, digits or '_'"
        )
    return name


QueueName = Annotated[str, AfterValidator(_queue_name)]
ScheduleName = Annotated[str, AfterValidator(_schedule_name)]
TtlName = Annotated[str, AfterValidator(_ttl_name)]
ProviderName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
ProviderValue = str | int | float | bool | list[str]
"""A value of a ``[providers.<name>]`` table: the provider that reads it checks it."""
Priority = Annotated[int, Field(ge=defaults.PRIORITY_HIGHEST, le=defaults.PRIORITY_LOWEST)]
Attempts = Annotated[int, Field(ge=1, le=defaults.MAX_ATTEMPTS)]
Concurrency = Annotated[int, Field(ge=1, le=256)]
Keep = Annotated[int, Field(ge=0, le=defaults.MAX_KEEP)]
PayloadBytes = Annotated[int, Field(ge=defaults.MIN_PAYLOAD_LIMIT, le=defaults.MAX_PAYLOAD_LIMIT)]
Seconds = Annotated[float, Field(gt=0, le=defaults.MAX_TIMEOUT)]


class _Strict(BaseModel):
    # strict: TOML has real types, so "yes" is not a bool and "5" is not a number;
    # TOML also has nan and inf, which no field of ours means.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Backoff(_Strict):
    """Delay before retry ``n`` (1-based): ``delay`` (fixed) or ``delay x 2^(n-1)``."""

    type: Literal["exponential", "fixed"] = "exponential"
    delay: Annotated[float, Field(ge=0, le=86400)] = defaults.BACKOFF_DELAY

    def delay_before_retry(self, retry: int) -> float:
        """Seconds before retry number ``retry`` (1 = the first retry)."""
        if self.type == "fixed":
            return self.delay
        return self.delay * 2.0 ** (retry - 1)


class RateLimit(_Strict):
    """At most ``max`` jobs started in any ``per`` seconds, across all consumers."""

    max: Annotated[int, Field(ge=1, le=1_000_000)]
    per: Seconds


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not host:port; write e.g. '10.0.0.5:26379'")
    return value


HostPort = Annotated[str, AfterValidator(_host_port)]


class RedisSettings(_Strict):
    """``[redis]``: the connection, overridable from the environment."""

    url: str = defaults.REDIS_URL
    prefix: str = defaults.KEY_PREFIX
    socket_timeout: Seconds = defaults.SOCKET_TIMEOUT
    connect_timeout: Seconds = defaults.CONNECT_TIMEOUT
    reconnect_attempts: Annotated[int, Field(ge=0, le=100)] = defaults.RECONNECT_ATTEMPTS
    tls_ca_file: str | None = None
    """CA certificates that signed the server's (``rediss://``); unset: the system's."""
    tls_cert_file: str | None = None
    """A client certificate, for a server that asks for one (``tls-auth-clients``)."""
    tls_key_file: str | None = None
    """The client certificate's private key (unless it is in ``tls_cert_file``)."""
    sentinels: list[HostPort] = Field(default_factory=list)
    """Sentinels to ask for the master of ``master_name``; ``url`` then gives only the
    scheme (``rediss://`` for TLS), the credentials and the database."""
    master_name: str | None = None
    sentinel_password: str | None = Field(default=None, repr=False)
    """The sentinels' own password (``requirepass`` of sentinel), if they have one."""
    max_connections: Annotated[int, Field(ge=1, le=100_000)] | None = None
    """Connections per process; unset: one per worker thread of every queue + spare."""
    wait_replicas: Annotated[int, Field(ge=0, le=16)] = 0
    """Replicas that must confirm an enqueue (``WAIT``) before it returns; 0: none."""
    wait_timeout: Seconds = 1.0
    """Seconds an enqueue waits for ``wait_replicas`` replicas before it raises."""
    cluster: bool = False
    """A Redis Cluster: ``url`` names any one node; the client finds the others."""
    cluster_nodes: list[HostPort] = Field(default_factory=list)
    """More nodes of the Cluster to find it through when the one ``url`` names is down
    (the same scheme and credentials as ``url``)."""

    @field_validator("url")
    @classmethod
    def _url_checked(cls, value: str) -> str:
        check_url(value)
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix_chars(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
            raise ValueError("use 1 to 64 letters, digits, '_', '.' or '-'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RedisSettings:
        tls = [name for name in TLS_FIELDS if getattr(self, name) is not None]
        if tls and not self.url.startswith("rediss://"):
            raise ValueError(
                f"{', '.join(tls)} set, but url {redact_url(self.url)!r} is not TLS: "
                "use rediss://, or remove them"
            )
        if self.tls_key_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_key_file needs tls_cert_file (the certificate it belongs to)")
        if bool(self.sentinels) != (self.master_name is not None):
            raise ValueError(
                "sentinels and master_name go together: the sentinels to ask, and the "
                "name of the master they watch (sentinel monitor <name> ...)"
            )
        if self.sentinels and self.url.startswith("unix://"):
            raise ValueError("with sentinels, url gives redis:// or rediss://, not a unix socket")
        if self.cluster:
            self._check_cluster()
        elif self.cluster_nodes:
            raise ValueError(
                "cluster_nodes are nodes of a Redis Cluster: set cluster = true "
                "(REDIS_CLUSTER=1), or remove cluster_nodes (REDIS_CLUSTER_NODES)"
            )
        return self

    def _check_cluster(self) -> None:
        if self.sentinels:
            raise ValueError(
                "cluster = true and sentinels exclude each other: a Redis Cluster fails "
                "over by itself; remove sentinels and master_name, or set cluster = false"
            )
        if self.url.startswith("unix://"):
            raise ValueError("with cluster = true, url names a node as redis:// or rediss://")
        path = urlsplit(self.url).path.strip("/")
        if path not in ("", "0"):
            raise ValueError(
                f"url {redact_url(self.url)!r} selects database {path!r}, but a Redis "
                "Cluster has only database 0; drop the /<db> from the url (or REDIS_DB)"
            )

    @property
    def connection(self) -> ConnectionSpec:
        return ConnectionSpec(
            url=self.url,
            socket_timeout=self.socket_timeout,
            connect_timeout=self.connect_timeout,
            reconnect_attempts=self.reconnect_attempts,
            tls_ca_file=self.tls_ca_file,
            tls_cert_file=self.tls_cert_file,
            tls_key_file=self.tls_key_file,
            sentinels=tuple(_split_host_port(entry) for entry in self.sentinels),
            master_name=self.master_name,
            sentinel_password=self.sentinel_password,
            cluster=self.cluster,
            cluster_nodes=tuple(_split_host_port(entry) for entry in self.cluster_nodes),
        )

    def __repr_args__(self):  # type: ignore[no-untyped-def]
        for name, value in super().__repr_args__():
            yield name, (redact_url(value) if name == "url" else value)


TLS_FIELDS = ("tls_ca_file", "tls_cert_file", "tls_key_file")


def _split_host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


class QueueOverrides(_Strict):
    """Policy fields a queue may set; anything left out comes from ``[defaults]``."""

    attempts: Attempts | None = None
    backoff: Backoff | None = None
    timeout: Seconds | None = None
    priority: Priority | None = None
    concurrency: Concurrency | None = None
    rate_limit: RateLimit | None = None
    keep_completed: Keep | None = None
    keep_failed: Keep | None = None
    max_payload_bytes: PayloadBytes | None = None
    description: str | None = None


class Defaults(_Strict):
    """``[defaults]``: the policy of every queue that does not say otherwise."""

    attempts: Attempts = defaults.ATTEMPTS
    backoff: Backoff = Backoff()
    timeout: Seconds | None = None
    priority: Priority = defaults.PRIORITY
    concurrency: Concurrency = defaults.CONCURRENCY
    rate_limit: RateLimit | None = None
    keep_completed: Keep = defaults.KEEP_COMPLETED
    keep_failed: Keep = defaults.KEEP_FAILED
    max_payload_bytes: PayloadBytes = defaults.MAX_PAYLOAD_BYTES
    """Bytes a payload may take as JSON; a larger one is refused at enqueue (PayloadError)."""


class QueuePolicy(_Strict):
    """A queue's resolved policy: its overrides laid over ``[defaults]``."""

    name: str
    attempts: int
    backoff: Backoff
    timeout: float | None
    priority: int
    concurrency: int
    rate_limit: RateLimit | None
    keep_completed: int
    keep_failed: int
    max_payload_bytes: int
    description: str = ""


class CacheSettings(_Strict):
    """``[cache]``: TTLs by name (``[cache.ttl]``) for ``get_cached(ttl_name=...)``."""

    default_ttl: Annotated[int, Field(ge=1, le=defaults.CACHE_TTL_MAX)] = defaults.CACHE_TTL
    ttl: dict[TtlName, Annotated[int, Field(ge=1, le=defaults.CACHE_TTL_MAX)]] = Field(
        default_factory=dict
    )


class ConsumerSettings(_Strict):
    """``[consumer]``: how ``huey_consumer framework.app`` behaves."""

    shutdown_timeout: Annotated[float, Field(ge=0, le=3600)] = defaults.SHUTDOWN_TIMEOUT
    lease: Annotated[float, Field(ge=1, le=3600)] = defaults.LEASE
    max_stalls: Annotated[int, Field(ge=0, le=1000)] = defaults.MAX_STALLS
    metrics_ttl: Annotated[int, Field(ge=86400, le=90 * 86400)] = defaults.METRICS_TTL
    max_log_lines: Annotated[int, Field(ge=0, le=10_000)] = defaults.MAX_LOG_LINES
    abandon_after: Annotated[float, Field(gt=0, le=300)] = defaults.ABANDON_AFTER
    """Seconds a job told to stop (timed out, cancelled) has before its thread is given up."""
    max_abandoned_threads: Annotated[int, Field(ge=0, le=10_000)] = defaults.MAX_ABANDONED_THREADS
    """Worker threads given up on (stuck outside Python) past which the consumer exits."""
    scheduler_interval: Annotated[float, Field(ge=0.05, le=60)] = 1.0
    """Seconds between two promotions of due delayed jobs (and retries)."""


class DashboardSettings(_Strict):
    """``[dashboard]``: the web dashboard (credentials come from the environment)."""

    host: Annotated[str, AfterValidator(_listen_host)] = defaults.DASHBOARD_HOST
    port: Annotated[int, Field(ge=1, le=65535)] = defaults.DASHBOARD_PORT
    read_only: bool = False
    open_endpoints: list[str] = Field(default_factory=lambda: ["/health"])
    page_size: Annotated[int, Field(ge=1, le=500)] = 25
    search_limit: Annotated[int, Field(ge=1, le=100_000)] = 5000
    """Jobs a payload text search reads at most (it says "searched N of M")."""
    search_bytes: Annotated[int, Field(ge=256, le=1_048_576)] = defaults.SEARCH_BYTES
    """Bytes of each payload a search reads and searches; text past them is not found."""
    payload_preview_bytes: Annotated[int, Field(ge=1024, le=10_000_000)] = 65536
    """Characters of a payload or result the job page shows; the rest is behind a link."""
    allowed_hosts: Annotated[list[AllowedHost], Field(min_length=1)] | None = None
    """``Host`` headers the dashboard answers (ports ignored); None: the address it listens
    on, ``localhost``, ``127.0.0.1`` and ``[::1]``. ``.example.com`` covers subdomains."""
    max_failed_logins: Annotated[int, Field(ge=1, le=10_000)] = defaults.MAX_FAILED_LOGINS
    """Failed sign-ins of one address within ``failed_login_window`` that lock it out."""
    failed_login_window: Annotated[float, Field(gt=0, le=86400)] = defaults.FAILED_LOGIN_WINDOW
    login_lockout: Annotated[float, Field(gt=0, le=86400)] = defaults.LOGIN_LOCKOUT
    """Seconds a locked-out address gets 429 with ``Retry-After``."""
    mask_fields: list[Annotated[str, AfterValidator(_mask_field)]] = Field(default_factory=list)
    """More secret words (a key containing one, case and ``_``/``-`` aside, is masked), on
    top of :data:`framework.masking.SECRET_WORDS`; read by the CLI and the consumer too."""
    trusted_proxy: Annotated[str, AfterValidator(_proxy_address)] | None = None
    """The address of a reverse proxy whose ``X-Forwarded-For`` names the client (waitress'
    ``trusted_proxy``; ``*`` for any). None: the header is ignored."""


class HealthSettings(_Strict):
    """``[health]``: thresholds past which ``/health`` answers 503."""

    max_waiting: Annotated[int, Field(ge=1)] | None = None
    max_oldest_waiting_seconds: Seconds | None = None
    max_failure_rate: Annotated[float, Field(gt=0, le=1)] | None = None
    failure_window_minutes: Annotated[int, Field(ge=1, le=1440)] = 15
    """Minutes over which ``max_failure_rate`` is measured."""
    require_consumer: bool = True
    """503 when a queue has waiting jobs and no live consumer serves it."""
    check_schedules: bool = True
    """503 when a schedule is overdue: a due tick not enqueued past its ``overdue_after``
    (default: one period). Paused schedules never are."""
    details: bool = False
    """Whether ``/health`` spells out the Redis error (host, port) to clients that did not
    sign in; a signed-in client always gets it."""


def _handler_name(name: str) -> str:
    queue, _, handler = name.partition(".")
    if not (QUEUE_NAME.fullmatch(queue) and HANDLER_NAME.fullmatch(handler)):
        raise ValueError(
            f"{name!r} is not a handler's stable name; use '<queue>.<handler>', "
            "e.g. 'analytics.snapshot'"
        )
    return name


def time_zone(name: str) -> str:
    """``name`` if it is an IANA time zone; else a ValueError saying what to write."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name such as 'UTC' or 'Europe/Berlin'"
        ) from None
    return name


CRON_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""Cron's nicknames (``@reboot`` aside: a schedule has no boot)."""


class ScheduleSettings(_Strict):
    """``[schedules.<name>]``: a job enqueued on a calendar, once per tick."""

    handler: Annotated[str, AfterValidator(_handler_name)]
    """``<queue>.<handler>``: what each tick enqueues."""
    cron: str | None = None
    """A cron expression (minute hour day-of-month month day-of-week), in ``timezone``."""
    every: Annotated[float, Field(ge=1, le=defaults.MAX_DELAY)] | None = None
    """Or: a tick every this many seconds (ticks fall on multiples of it since the epoch)."""
    timezone: Annotated[str, AfterValidator(time_zone)] = "UTC"
    payload: dict[str, Any] = Field(default_factory=dict)
    catch_up: Literal["last", "none"] = "last"
    """A tick missed while no consumer ran: fired once when one comes back, or skipped."""
    tick_field: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")] | None = None
    """A payload field that receives the tick's time (ISO 8601, in ``timezone``)."""
    overdue_after: Seconds | None = None
    """``/health`` reports the schedule past this many seconds without a tick that was due
    (default: one period)."""
    description: str = ""

    @field_validator("cron")
    @classmethod
    def _cron_alias(cls, value: str | None) -> str | None:
        """``@daily`` and cron's other nicknames, as the five fields they stand for."""
        if value is None:
            return None
        return CRON_ALIASES.get(value.strip().lower(), value.strip())

    @model_validator(mode="after")
    def _cron_or_every(self) -> ScheduleSettings:
        if (self.cron is None) == (self.every is None):
            raise ValueError('set either cron = "..." or every = <seconds>, not both or neither')
        if self.cron is not None:
            try:
                CronSim(self.cron, datetime.datetime.now(zoneinfo.ZoneInfo(self.timezone)))
            except CronSimError as exc:
                raise ValueError(
                    f"cron {self.cron!r} is not a cron expression ({exc}); use five fields, "
                    "minute hour day-of-month month day-of-week, e.g. '5 0 * * *' (or six, "
                    "seconds first, as Bull reads them: '30 5 0 * * *')"
                ) from None
        if self.tick_field is not None and self.tick_field in self.payload:
            raise ValueError(
                f"tick_field {self.tick_field!r} is also a key of payload; the tick would "
                "overwrite it: rename one of them"
            )
        return self


class Settings(_Strict):
    """The whole of ``config/queues.toml``."""

    redis: RedisSettings = RedisSettings()
    defaults: Defaults = Defaults()
    queues: dict[QueueName, QueueOverrides] = Field(default_factory=dict)
    cache: CacheSettings = CacheSettings()
    consumer: ConsumerSettings = ConsumerSettings()
    dashboard: DashboardSettings = DashboardSettings()
    health: HealthSettings = HealthSettings()
    schedules: dict[ScheduleName, ScheduleSettings] = Field(default_factory=dict)
    providers: dict[ProviderName, dict[str, ProviderValue]] = Field(default_factory=dict)
    """Settings of the services the handlers talk to (``[providers.whatsapp]``), read and
    validated by the handler module that uses them, not by the framework."""

    @model_validator(mode="after")
    def _at_least_one_queue(self) -> Settings:
        if not self.queues:
            raise ValueError("no queue is declared; add a [queues.<name>] table")
        return self

    @model_validator(mode="after")
    def _schedules_on_declared_queues(self) -> Settings:
        for name, schedule in self.schedules.items():
            queue = schedule.handler.partition(".")[0]
            if queue not in self.queues:
                raise ValueError(
                    f"[schedules.{name}] handler = {schedule.handler!r}: no queue {queue!r} is "
                    f"declared (declared: {', '.join(self.queues)})"
                )
        return self

    @property
    def queue_names(self) -> list[str]:
        return list(self.queues)

    def queue(self, name: str) -> QueuePolicy:
        """The resolved policy of queue ``name`` (KeyError if it is not declared)."""
        overrides = self.queues[name].model_dump(exclude_unset=True)
        merged = self.defaults.model_dump()
        if "backoff" in overrides:
            # A queue's backoff table refines the default one field by field.
            merged["backoff"] = {**merged["backoff"], **overrides.pop("backoff")}
        merged.update(overrides)
        merged.setdefault("description", "")
        return QueuePolicy(name=name, **merged)

    def policies(self) -> list[QueuePolicy]:
        return [self.queue(name) for name in self.queues]
