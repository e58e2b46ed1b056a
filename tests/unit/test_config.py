"""config/queues.toml: what is accepted, and what every refusal says."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from framework.config import load_settings, parse_settings
from framework.connection import build_pool
from framework.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = "[queues.messages]\n"


def parse(text: str, env: dict[str, str] | None = None):
    return parse_settings(text, source="config/queues.toml", env=env or {})


# (TOML, fragments that the error must contain)
BAD_CONFIGS = [
    pytest.param(
        "[queues.messages]\nattempts = 0\n",
        ["config/queues.toml", "[queues.messages] attempts = 0", "must be at least 1"],
        id="attempts-too-low",
    ),
    pytest.param(
        "[queues.messages]\natempts = 2\n",
        ["[queues.messages] atempts: unknown field", "did you mean 'attempts'", "allowed:"],
        id="typo-in-queue",
    ),
    pytest.param(
        "[queues.messages]\nretries = 2\nretry_delay = 5\n",
        [
            "[queues.messages] retries: unknown field; Huey's retries=N is attempts = N + 1",
            "[queues.messages] retry_delay: unknown field; Huey's retry_delay=S is the queue's "
            'backoff = { type = "fixed", delay = S }',
            "Allowed: attempts, backoff,",
        ],
        id="hueys-task-options",
    ),
    pytest.param(
        "[defaults]\nbackof = 1\n" + MINIMAL,
        ["[defaults] backof: unknown field", "did you mean 'backoff'"],
        id="typo-in-defaults",
    ),
    pytest.param(
        "[queues.messages]\npriority = 11\n",
        ["[queues.messages] priority = 11", "must be at most 10"],
        id="priority-too-low",
    ),
    pytest.param(
        "[queues.messages]\npriority = 0\n",
        ["[queues.messages] priority = 0", "must be at least 1"],
        id="priority-zero",
    ),
    pytest.param(
        '[queues.messages]\nbackoff = { type = "linear", delay = 5 }\n',
        ["[queues.messages] backoff.type = 'linear'", "'exponential' or 'fixed'"],
        id="backoff-type",
    ),
    pytest.param(
        "[queues.messages]\nrate_limit = { max = 0, per = 60 }\n",
        ["[queues.messages] rate_limit.max = 0", "must be at least 1"],
        id="rate-limit-max",
    ),
    pytest.param(
        "[queues.messages]\nrate_limit = { max = 20 }\n",
        ["[queues.messages] rate_limit.per: missing"],
        id="rate-limit-per-missing",
    ),
    pytest.param(
        "[queues.messages]\nconcurrency = 1.5\n",
        ["[queues.messages] concurrency = 1.5", "whole number"],
        id="fractional-concurrency",
    ),
    pytest.param(
        '[queues.messages]\ntimeout = "ten minutes"\n',
        ["[queues.messages] timeout = 'ten minutes'", "must be a number"],
        id="timeout-string",
    ),
    pytest.param(
        "[queues.messages]\ntimeout = 0\n",
        ["[queues.messages] timeout = 0", "greater than 0"],
        id="timeout-zero",
    ),
    pytest.param(
        "[queues.Messages]\n",
        ["[queues.Messages]", "queue name 'Messages' is not allowed", "lowercase"],
        id="queue-name-case",
    ),
    pytest.param(
        MINIMAL + "[cache.ttl]\nUSER_PERMISSIONS = -5\n",
        ["[cache.ttl] USER_PERMISSIONS = -5", "must be at least 1"],
        id="negative-ttl",
    ),
    pytest.param(
        MINIMAL + '[dashboard]\nread_only = "yes"\n',
        ["[dashboard] read_only = 'yes'", "true or false"],
        id="string-bool",
    ),
    pytest.param(
        MINIMAL + "[dashbord]\n",
        ["dashbord: unknown field", "did you mean 'dashboard'"],
        id="unknown-table",
    ),
    pytest.param(
        '[redis]\nurl = "http://localhost:6379"\n' + MINIMAL,
        ["[redis] url", "is not a Redis URL", "rediss://"],
        id="url-scheme",
    ),
    pytest.param(
        MINIMAL + '[dashboard]\nallowed_hosts = ["dash.example.com:8080"]\n',
        [
            "[dashboard] allowed_hosts.0 = 'dash.example.com:8080'",
            "has a port",
            "ports are not compared",
        ],
        id="allowed-host-with-port",
    ),
    pytest.param(
        MINIMAL + '[dashboard]\nallowed_hosts = ["localhost", "https://dash.example.com/"]\n',
        ["[dashboard] allowed_hosts.1 = 'https://dash.example.com/'", "without scheme or path"],
        id="allowed-host-url",
    ),
    pytest.param(
        MINIMAL + '[dashboard]\nallowed_hosts = ["dash board"]\n',
        ["allowed_hosts.0 = 'dash board'", "is not a host", "'.example.com'", "'*'"],
        id="allowed-host-space",
    ),
    pytest.param(
        MINIMAL + "[cache]\ndefault_ttl = 99999999999\n",
        ["[cache] default_ttl = 99999999999", "must be at most 2592000"],
        id="default-ttl-past-30-days",
    ),
    pytest.param(
        MINIMAL + '[dashboard]\nhost = "999.1.1.1"\n',
        ["[dashboard] host = '999.1.1.1'", "is not an address or a host name to listen on"],
        id="listen-host",
    ),
    pytest.param(
        MINIMAL + "[dashboard]\nallowed_hosts = []\n",
        ["[dashboard] allowed_hosts = []", "must not be empty", "leave the field out"],
        id="allowed-hosts-empty",
    ),
    pytest.param(
        MINIMAL + '[dashboard]\nallowed_hosts = "localhost"\n',
        ["[dashboard] allowed_hosts = 'localhost'", "must be a list"],
        id="allowed-hosts-string",
    ),
    pytest.param(
        MINIMAL + "[dashboard]\nmax_failed_logins = 0\n",
        ["[dashboard] max_failed_logins = 0", "must be at least 1"],
        id="max-failed-logins-zero",
    ),
    pytest.param(
        MINIMAL + "[dashboard]\nlogin_lockout = 0\n",
        ["[dashboard] login_lockout = 0", "greater than 0"],
        id="lockout-zero",
    ),
    pytest.param(
        MINIMAL + '[dashboard]\ntrusted_proxy = "proxy.internal"\n',
        ["[dashboard] trusted_proxy = 'proxy.internal'", "IP address the proxy connects from"],
        id="trusted-proxy-name",
    ),
    pytest.param("", ["no queue is declared", "[queues.<name>]"], id="no-queues"),
    pytest.param(
        "[queues.messages]\nattempts = \n",
        ["config/queues.toml: malformed TOML", "line 2, column 12"],
        id="malformed-toml",
    ),
    pytest.param(
        "queues = 3\n",
        ["queues = 3", "must be a table"],
        id="queues-not-a-table",
    ),
]


@pytest.mark.parametrize(("text", "fragments"), BAD_CONFIGS)
def test_bad_config_is_refused_with_a_message_naming_place_value_and_fix(
    text: str, fragments: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_every_problem_of_a_file_is_reported_together() -> None:
    # Given a file with four unrelated mistakes
    text = (
        "[defaults]\nattempts = 0\n"
        "[queues.messages]\natempts = 2\npriority = 20\n"
        "[queues.emails]\nconcurrency = 0\n"
    )
    # When it is parsed
    with pytest.raises(ConfigError) as caught:
        parse(text)
    # Then one error lists all four, each on its own line
    lines = str(caught.value).splitlines()
    assert lines[0] == "config/queues.toml: 4 problems"
    assert len(lines) == 5


def test_the_shipped_config_has_the_ten_queues_of_the_spec() -> None:
    settings = load_settings(ROOT / "config" / "queues.toml", env={})
    expected = {
        # queue: (attempts, timeout)
        "messages": (3, None),
        "campaigns": (2, None),
        "flows": (3, None),
        "emails": (5, None),
        "webhooks": (3, None),
        "ai": (2, None),
        "imports": (1, 600),
        "exports": (2, 300),
        "analytics": (2, None),
        "notifications": (3, None),
    }
    assert settings.queue_names == list(expected)
    for name, (attempts, timeout) in expected.items():
        policy = settings.queue(name)
        assert (policy.attempts, policy.timeout) == (attempts, timeout), name
        assert policy.backoff.type == "exponential"
        assert policy.backoff.delay == 5
        assert (policy.keep_completed, policy.keep_failed) == (100, 500)
    messages = settings.queue("messages")
    assert messages.rate_limit is not None
    assert (messages.rate_limit.max, messages.rate_limit.per) == (20, 60)
    assert messages.concurrency == 10
    assert settings.cache.ttl == {
        "USER_PERMISSIONS": 300,
        "CONTACT_DETAILS": 60,
        "CAMPAIGN_STATS": 30,
        "ANALYTICS_DASHBOARD": 300,
        "SEGMENT_COUNTS": 300,
    }


def test_queue_policy_lays_overrides_over_defaults() -> None:
    settings = parse(
        "[defaults]\nattempts = 4\nbackoff = { type = 'fixed', delay = 2 }\nkeep_failed = 7\n"
        "[queues.a]\nbackoff = { delay = 9 }\n"
        "[queues.b]\nattempts = 1\n"
    )
    a, b = settings.queue("a"), settings.queue("b")
    assert (a.attempts, a.backoff.type, a.backoff.delay, a.keep_failed) == (4, "fixed", 9, 7)
    assert (b.attempts, b.backoff.delay) == (1, 2)


def test_exponential_backoff_doubles_from_the_base_delay() -> None:
    backoff = parse(MINIMAL).queue("messages").backoff
    assert [backoff.delay_before_retry(n) for n in (1, 2, 3, 4)] == [5, 10, 20, 40]


# -- environment -----------------------------------------------------------------------------


def test_redis_url_from_the_environment_wins_over_the_file() -> None:
    settings = parse(
        '[redis]\nurl = "redis://file:6379/0"\n' + MINIMAL,
        env={"REDIS_URL": "rediss://cache.internal:6380/3", "REDIS_HOST": "ignored"},
    )
    assert settings.redis.url == "rediss://cache.internal:6380/3"


def test_the_specs_redis_variables_change_parts_of_the_url() -> None:
    settings = parse(
        '[redis]\nurl = "redis://file:6379/0"\n' + MINIMAL,
        env={
            "REDIS_HOST": "db.internal",
            "REDIS_PORT": "6390",
            "REDIS_DB": "4",
            "REDIS_PASSWORD": "p@ss:word",
        },
    )
    assert settings.redis.url == "redis://:p%40ss%3Aword@db.internal:6390/4"


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"REDIS_PORT": "sixty"}, "REDIS_PORT='sixty' is not a TCP port"),
        ({"REDIS_PORT": "70000"}, "REDIS_PORT='70000' is not a TCP port"),
        ({"REDIS_DB": "x"}, "REDIS_DB='x' is not a database number"),
        # str.isdigit() takes these, and int() or the URL would not
        ({"REDIS_PORT": "\u00b2"}, "REDIS_PORT='\u00b2' is not a TCP port"),
        ({"REDIS_PORT": "\uff16\uff13\uff17\uff19"}, "is not a TCP port"),
        ({"REDIS_DB": "\u00b2"}, "REDIS_DB='\u00b2' is not a database number"),
        ({"REDIS_HOST": "10.0.0.5:6380"}, "put the port in REDIS_PORT"),
        # values the environment set are blamed on it, not on the file
        ({"REDIS_URL": "http://cache:6379/0"}, "(set by REDIS_URL in the environment, not by"),
        ({"REDIS_SENTINELS": "a"}, "(set by REDIS_SENTINELS in the environment, not by the"),
        ({"REDIS_PORT": "6390", "REDIS_DB": "x1"}, "REDIS_DB='x1' is not a database number"),
    ],
)
def test_bad_redis_variables_are_named(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        parse(MINIMAL, env=env)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        # redis-py would take these silently: database 0, port 6379, its own pool settings
        ("redis://cache/crm", "database 'crm' is not a number; write redis://host:port/0"),
        ("redis://cache:0/1", "has port 0"),
        ("redis://cache/0?max_connections=1", "has query arguments (max_connections)"),
        ("unix:///run/redis.sock?db=two", "database 'two' is not a number"),
        ("redis:///0", "names no host"),
        ("redis://cache/0#x", "has a '#' part"),
        # and these it raises as a bare ValueError at the first connection
        ("redis://cache:99999/0", "can not be parsed (the port is not a number from 1 to 65535)"),
        ("redis://cache:port/0", "can not be parsed"),
        ("redis://[::1/0", "can not be parsed"),
    ],
)
def test_a_redis_url_that_redis_py_would_misread_is_refused_naming_the_fix(
    url: str, fragment: str
) -> None:
    for where in ("config", "env"):
        with pytest.raises(ConfigError) as caught:
            if where == "config":
                parse(f"[redis]\nurl = {json.dumps(url)}\n" + MINIMAL)
            else:
                parse(MINIMAL, env={"REDIS_URL": url})
        assert "[redis] url = " in str(caught.value) and fragment in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://admin:Hunter2#x@cache:6379/0",
        "redis://admin:Hun/ter2@cache/0",
        "redis://admin:Hun?ter2@cache/0",
        "redis://admin:Hun@ter2@cache/0",
    ],
)
def test_a_password_a_url_can_not_carry_as_it_is_is_refused_and_never_shown(url: str) -> None:
    for source in ("config", "env"):
        with pytest.raises(ConfigError) as caught:
            if source == "config":
                parse(f"[redis]\nurl = {json.dumps(url)}\n" + MINIMAL)
            else:
                parse(MINIMAL, env={"REDIS_URL": url})
        told = str(caught.value)
        assert "Hun" not in told and "ter2" not in told, told
        assert "redis://admin:***@cache" in told and "percent-encode it: '#' as %23" in told


def test_a_unix_socket_url_keeps_its_database_and_query_values_are_never_shown() -> None:
    assert parse(MINIMAL, env={"REDIS_URL": "unix:///run/redis.sock?db=3"}).redis.url.endswith(
        "?db=3"
    )
    with pytest.raises(ConfigError) as caught:
        parse(MINIMAL, env={"REDIS_URL": "redis://cache/0?password=hunter2"})
    assert "hunter2" not in str(caught.value) and "password=***" in str(caught.value)


@pytest.mark.parametrize(
    "toml",
    [
        '[queues."messages\\n"]\n',
        MINIMAL + '[cache.ttl]\n"CONTACTS\\n" = 5\n',
        MINIMAL + '[schedules."daily\\n"]\nhandler = "messages.send"\nevery = 60\n',
        MINIMAL + '[schedules.daily]\nhandler = "messages.send\\n"\nevery = 60\n',
    ],
    ids=["queue", "ttl", "schedule", "schedule-handler"],
)
def test_a_name_ending_in_a_newline_is_refused(toml: str) -> None:
    # Python's "$" matches before a final newline: a name is checked whole
    with pytest.raises(ConfigError, match=r"not allowed|not a handler's stable name"):
        parse(toml)


def test_the_redis_password_never_appears_in_repr_or_errors() -> None:
    settings = parse(MINIMAL, env={"REDIS_URL": "redis://:hunter2@cache:6379/0"})
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in repr(settings.redis)
    assert "hunter2" not in repr(settings.redis.connection)
    assert "hunter2" not in str(settings.redis.connection.redacted_url)
    with pytest.raises(ConfigError) as caught:
        parse(MINIMAL, env={"REDIS_URL": "http://:hunter2@cache:6379/0"})
    assert "hunter2" not in str(caught.value)
    assert "***" in str(caught.value)


def test_sentinels_from_the_environment() -> None:
    settings = parse(
        MINIMAL,
        env={
            "REDIS_SENTINELS": " 10.0.0.1:26379, [::1]:26380 ",
            "REDIS_MASTER_NAME": "crm",
            "REDIS_SENTINEL_PASSWORD": "sentinel-secret",
        },
    )
    spec = settings.redis.connection
    assert spec.sentinels == (("10.0.0.1", 26379), ("::1", 26380))
    assert spec.master_name == "crm"
    assert spec.sentinel_password == "sentinel-secret"
    assert "sentinel-secret" not in repr(settings) + repr(spec) + spec.redacted_url
    assert spec.redacted_url.startswith("sentinel://10.0.0.1:26379,[::1]:26380/crm")


@pytest.mark.parametrize(
    ("redis_lines", "fragment"),
    [
        ('sentinels = ["10.0.0.1:26379"]', "sentinels and master_name go together"),
        ('master_name = "crm"', "sentinels and master_name go together"),
        ('sentinels = ["10.0.0.1"]\nmaster_name = "crm"', "'10.0.0.1' is not host:port"),
        ('sentinels = ["a:0"]\nmaster_name = "crm"', "'a:0' is not host:port"),
        ('tls_ca_file = "/ca.pem"', "tls_ca_file set, but url 'redis://x:6379/0' is not TLS"),
        ('url = "rediss://x/0"\ntls_key_file = "/k.pem"', "tls_key_file needs tls_cert_file"),
        ("wait_replicas = -1", "wait_replicas = -1: must be at least 0"),
        ("sentinel_password = 7", "sentinel_password = '***'"),
    ],
)
def test_bad_redis_topology_settings_are_named(redis_lines: str, fragment: str) -> None:
    text = f'[redis]\nurl = "redis://x:6379/0"\n{redis_lines}\n{MINIMAL}'
    with pytest.raises(ConfigError) as caught:
        parse(text.replace('url = "redis://x:6379/0"\nurl', "url"))
    assert fragment in str(caught.value)


def test_a_bad_sentinel_password_is_never_shown() -> None:
    with pytest.raises(ConfigError) as caught:
        parse('[redis]\nsentinel_password = ["hunter2"]\n' + MINIMAL)
    assert "hunter2" not in str(caught.value)


def test_hueyard_config_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "q.toml"
    path.write_text("[queues.only]\n")
    assert load_settings(env={"HUEYARD_CONFIG": str(path)}).queue_names == ["only"]


def test_a_missing_file_says_how_to_point_at_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"HUEYARD_CONFIG": str(tmp_path / "nope.toml")})
    assert "nope.toml: configuration file not found" in str(caught.value)
    assert "HUEYARD_CONFIG" in str(caught.value)


def test_tls_files_that_are_missing_or_not_pem_are_named_before_a_connection(
    tmp_path: Path,
) -> None:
    # A wrong one would read, at the first connection, as Redis not answering after every
    # reconnection attempt. The config loads (hueyard check may run where they are not)
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate")
    for field, path, told in (
        ("tls_ca_file", tmp_path / "missing.pem", "[redis] tls_ca_file = '{path}' is not a file"),
        ("tls_ca_file", garbage, "[redis] tls_ca_file can not be loaded (SSLError"),
        ("tls_cert_file", garbage, "[redis] tls_cert_file / tls_key_file can not be loaded"),
    ):
        toml = f'[redis]\nurl = "rediss://cache:6380/0"\n{field} = "{path}"\n' + MINIMAL
        spec = parse(toml).redis.connection
        with pytest.raises(ConfigError) as caught:
            build_pool(spec)
        assert told.format(path=path) in str(caught.value)


def test_a_file_starting_with_a_bom_loads_and_a_schedules_typo_names_the_field(
    tmp_path: Path,
) -> None:
    # A Windows editor's byte order mark is no TOML error; a misspelled field of a schedule
    # gets the did-you-mean every other table gets
    path = tmp_path / "queues.toml"
    path.write_bytes(
        b'\xef\xbb\xbf[queues.analytics]\n[schedules.nightly]\nhandler = "analytics.snap"\n'
        b'crn = "5 0 * * *"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    assert "[schedules.nightly] crn: unknown field; did you mean 'cron'?" in str(caught.value)
    path.write_bytes(b"\xef\xbb\xbf[queues.analytics]\n")
    assert list(load_settings(path, env={}).queues) == ["analytics"]


def test_a_config_path_that_is_no_regular_file_or_is_huge_is_one_error_not_a_hang(
    tmp_path: Path,
) -> None:
    # a FIFO would block the read forever, /dev/zero would be read without end
    fifo = tmp_path / "queues.toml"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero"), tmp_path):
        with pytest.raises(ConfigError, match=r"is (not a regular file|a directory)"):
            load_settings(path, env={})
    big = tmp_path / "big.toml"
    big.write_bytes(b"# " + b"x" * (4 * 1024 * 1024) + b"\n[queues.work]\n")
    with pytest.raises(ConfigError, match=r"big.toml: the configuration file is over 4,194,304"):
        load_settings(big, env={})
