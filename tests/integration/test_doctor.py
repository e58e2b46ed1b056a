"""``framework.doctor.diagnose``: each finding produced for real, against real Redis servers.

Queue cases run on the shared test database, their jobs put in their states
through the storage (claim, release) and the read/act API (pause), the
consumers through their real heartbeats. Server cases (a replica, memory
limits, eviction policies, INFO forbidden) run on private ``redis-server``
processes, so the shared server's configuration is never touched.
"""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from framework import current_job
from framework.application import Hueyard
from framework.consumer import MultiQueueConsumer
from framework.doctor import Check, Finding, Severity, diagnose, exit_status
from framework.errors import QueueError, ReadOnlyReplicaError, StorageError
from framework.handlers import HandlerRegistry, handler
from framework.jobs import Jobs
from framework.storage import Claim, JobStorage
from framework.textgrid import utc
from tests.conftest import AppFactory
from tests.integration.redis_server import RedisServer, free_port

TOML = """
[queues.work]
attempts = 1
concurrency = 2

[queues.limited]
attempts = 1
rate_limit = { max = 2, per = 60 }

[queues.spare]
attempts = 1
"""

PER_MS = 60_000


def registry(*queues: str) -> HandlerRegistry:
    handlers = HandlerRegistry()
    for queue in queues:

        def job(payload: dict[str, Any]) -> None: ...

        handler(queue, name="job", registry=handlers)(job)
    return handlers


@pytest.fixture
def app(make_app: AppFactory) -> Hueyard:
    return make_app(TOML, registry("work", "limited", "spare"), prefix="doc")


def storage(app: Hueyard, queue: str = "work") -> JobStorage:
    found: JobStorage = app.queue(queue).huey.storage
    found.read_timeout = 0.1
    return found


def add(app: Hueyard, n: int, queue: str = "work", **options: Any) -> list[str]:
    return app.enqueue_many(queue, "job", [{"n": i} for i in range(n)], **options)


def claim(app: Hueyard, queue: str = "work") -> Claim:
    claimed = storage(app, queue).claim()
    assert claimed is not None, f"expected a job of {queue} to claim"
    return claimed


def consumer(app: Hueyard, *queues: str) -> MultiQueueConsumer:
    """A consumer of ``queues`` that sent its heartbeat (its storages claim in its name)."""
    live = MultiQueueConsumer(app, list(queues))
    live.heartbeat()
    return live


def about(findings: list[Finding], queue: str) -> list[Finding]:
    return [finding for finding in findings if finding.queue == queue]


def checks(findings: list[Finding]) -> list[Check]:
    return [finding.check for finding in findings]


def text_of(findings: list[Finding]) -> str:
    return "\n".join(f"{f.what} | {f.evidence} | {f.fix}" for f in findings)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A private redis-server whose configuration a test may change."""
    with RedisServer() as private:
        yield private


@pytest.fixture
def private_app(server: RedisServer, make_app: AppFactory) -> Hueyard:
    return make_app(
        TOML, registry("work", "limited", "spare"), url=server.url, prefix="doc",
        redis_lines="reconnect_attempts = 1",
    )  # fmt: skip


# -- everything fine -------------------------------------------------------------------------


def test_a_quiet_system_on_a_noeviction_redis_without_limit_looks_fine(
    private_app: Hueyard, server: RedisServer
) -> None:
    # Given a server without maxmemory and with noeviction (redis-server's defaults)
    assert server.client().config_get("maxmemory") == {"maxmemory": "0"}
    assert server.client().config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    # And waiting jobs that a live consumer serves
    add(private_app, 3)
    consumer(private_app, "work", "limited", "spare")
    # When
    findings = diagnose(private_app)
    # Then
    assert checks(findings) == [Check.FINE]
    [fine] = findings
    assert fine.severity is Severity.OK and fine.queue is None
    assert fine.what == "everything looks fine"
    version = server.client().info("server")["redis_version"]
    assert f"Redis {version} (master) at redis://127.0.0.1:{server.port}/0 answers" in (
        fine.evidence
    )
    assert "queues checked: work, limited, spare; live consumers: 1" in fine.evidence
    assert exit_status(findings) == 0


def test_only_the_named_queues_are_looked_at(app: Hueyard) -> None:
    # Given waiting jobs on "work" and no consumer at all
    add(app, 2)
    # When only "spare" is looked at
    findings = diagnose(app, ["spare"])
    # Then nothing is said about "work"
    assert about(findings, "work") == []
    assert "queues checked: spare" in findings[-1].evidence


def test_an_unknown_queue_is_refused_naming_the_declared_ones(app: Hueyard) -> None:
    with pytest.raises(QueueError, match="unknown queue 'nope'; declared queues: work, limited"):
        diagnose(app, ["work", "nope"])


# -- consumers and handlers ------------------------------------------------------------------


def test_waiting_jobs_without_any_consumer_are_an_error(app: Hueyard) -> None:
    # Given three waiting jobs and no consumer heartbeat
    add(app, 3)
    # When
    findings = diagnose(app)
    # Then
    [finding] = about(findings, "work")
    assert finding.check is Check.NO_CONSUMER and finding.severity is Severity.ERROR
    assert finding.what == "no live consumer serves the queue"
    assert finding.evidence.startswith("3 jobs waiting, the oldest for ")
    assert "no consumer sent a heartbeat in the last 30 s" in finding.evidence
    assert "huey_consumer framework.app" in finding.fix
    assert "HUEYARD_QUEUES=work huey_consumer framework.app" in finding.fix
    assert Check.FINE not in checks(findings)
    assert exit_status(findings) == 1


def beat_as(app: Hueyard, redis_conn: Any, consumer_id: str, **record: Any) -> None:
    """A heartbeat as a consumer writes it (framework/consumer.py), with ``record``."""
    info = {"host": "h1", "pid": 7, "queues": ["work"], "worker_type": "thread", **record}
    redis_conn.set(app.keys.consumer(consumer_id), json.dumps(info), ex=30)
    redis_conn.zadd(app.keys.consumers, {consumer_id: int(time.time() * 1000)})


def test_consumers_alive_with_no_live_worker_for_the_queue_are_an_error(
    app: Hueyard, redis_conn: Any
) -> None:
    # Given waiting jobs, and the only consumer of "work" saying it has no worker alive
    # for it (each died with the health check off, or every one is stuck)
    add(app, 2)
    beat_as(app, redis_conn, "c1", live={"work": 0})
    [finding] = about(diagnose(app), "work")
    assert (finding.check, finding.severity) == (Check.NO_LIVE_WORKER, Severity.ERROR)
    assert "1 consumer serving it (h1 pid 7) report 0 live workers of queue work" in (
        finding.evidence
    )
    # Then one consumer with a live worker for it, or one that does not say (an older
    # hueyard, or not started yet), is enough
    beat_as(app, redis_conn, "c2", live={"work": 1})
    assert not about(diagnose(app), "work")
    redis_conn.delete(app.keys.consumer("c2"))
    beat_as(app, redis_conn, "c1")
    assert not about(diagnose(app), "work")


def test_consumers_of_other_queues_do_not_serve_it_and_one_of_its_own_does(app: Hueyard) -> None:
    # Given waiting jobs on "work" and a live consumer of "limited" and "spare" only
    add(app, 1)
    others = consumer(app, "limited", "spare")
    # Then "work" has no consumer, and the evidence names what the live ones serve
    [finding] = about(diagnose(app), "work")
    assert finding.check is Check.NO_CONSUMER
    assert "1 job waiting" in finding.evidence
    assert "live consumers: 1, serving limited, spare" in finding.evidence
    # When a consumer of "work" beats, and the other leaves
    consumer(app, "work")
    others.heartbeat(leaving=True)
    # Then
    assert about(diagnose(app), "work") == []


def test_waiting_jobs_of_a_queue_without_handler_are_an_error(make_app: AppFactory) -> None:
    # Given jobs enqueued on "spare" by an app that has its handler
    producer = make_app(TOML, registry("work", "limited", "spare"), prefix="doc")
    add(producer, 2, queue="spare")
    # When an app whose handlers do not include "spare" looks (as its consumers would run)
    app = make_app(TOML, registry("work", "limited"), prefix="doc")
    consumer(app, "work", "limited", "spare")
    findings = about(diagnose(app), "spare")
    # Then
    assert checks(findings) == [Check.NO_HANDLER]
    assert findings[0].severity is Severity.ERROR
    assert "2 jobs waiting" in findings[0].evidence
    assert "no @handler('spare')" in findings[0].evidence


# -- pause and rate limit --------------------------------------------------------------------


def test_a_paused_queue_is_a_warning_with_its_held_jobs_and_the_fix(app: Hueyard) -> None:
    # Given a served queue paused through the API, holding two jobs while one runs
    consumer(app, "work")
    add(app, 3)
    claim(app)
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    assert Jobs(app).pause("work")
    # When
    findings = diagnose(app)
    # Then
    [finding] = about(findings, "work")
    assert (finding.check, finding.severity) == (Check.PAUSED, Severity.WARNING)
    assert finding.what == "paused: no job of it starts"
    since = finding.evidence.removeprefix("paused since ")[: len("2025-11-05 10:00:00 UTC")]
    paused_at = datetime.datetime.strptime(since, "%Y-%m-%d %H:%M:%S UTC").replace(
        tzinfo=datetime.UTC
    )
    assert before <= paused_at <= datetime.datetime.now(datetime.UTC)
    assert "2 jobs held, 1 running" in finding.evidence
    assert finding.fix == "hueyard resume work (or Resume on /admin/queues/work)."
    assert exit_status(findings) == 0
    # When it is resumed
    Jobs(app).resume("work")
    # Then it is not paused any more
    assert Check.PAUSED not in checks(diagnose(app))


def test_a_spent_rate_limit_says_until_when_as_the_claim_script_does(app: Hueyard) -> None:
    # Given a served queue allowing 2 starts a minute, and 3 jobs
    consumer(app, "limited")
    add(app, 3, queue="limited")
    # When two of them start (and finish), spending the window
    first = claim(app, "limited")
    assert storage(app, "limited").release(first, "completed", value="null")
    second = claim(app, "limited")
    assert storage(app, "limited").release(second, "completed", value="null")
    assert storage(app, "limited").claim() is None  # the claim script refuses the third
    # Then the doctor says until when: a minute after the first start
    [finding] = about(diagnose(app), "limited")
    started = Jobs(app).get(first.id)
    assert started is not None and started.started is not None
    until = started.started + datetime.timedelta(milliseconds=PER_MS)
    assert (finding.check, finding.severity) == (Check.RATE_LIMITED, Severity.INFO)
    assert finding.what == f"rate-limited until {utc(until)}"
    assert finding.evidence.startswith(
        "2 jobs started in the last 60 s (rate_limit = { max = 2, per = 60 }, across all "
        "consumers); 1 job waiting"
    )
    assert "raise rate_limit in [queues.limited]" in finding.fix
    # And the pulse agrees with the claims Redis stamped
    pulse = Jobs(app).pulse("limited")
    assert pulse.window_starts == 2
    assert pulse.limited_until == until


def test_a_rate_limit_with_room_is_not_mentioned(app: Hueyard) -> None:
    consumer(app, "limited")
    add(app, 2, queue="limited")
    done = claim(app, "limited")
    assert storage(app, "limited").release(done, "completed", value="null")
    assert about(diagnose(app), "limited") == []
    pulse = Jobs(app).pulse("limited")
    assert (pulse.window_starts, pulse.limited_until) == (1, None)


# -- busy workers ----------------------------------------------------------------------------


def test_all_workers_busy_names_the_longest_running_job(app: Hueyard) -> None:
    # Given one consumer of "work" (concurrency 2) running two jobs, one more waiting
    live = consumer(app, "work")
    add(app, 3)
    oldest = claim(app)
    time.sleep(0.01)  # the two starts get distinct milliseconds
    claim(app)
    # When
    [finding] = about(diagnose(app), "work")
    # Then
    assert (finding.check, finding.severity) == (Check.WORKERS_BUSY, Severity.WARNING)
    assert finding.what == "all 2 workers are busy"
    assert finding.evidence.startswith(
        "2 jobs running on 1 consumer x concurrency 2; 1 job waiting, the oldest for "
    )
    assert f"the longest-running job, {oldest.id}, started " in finding.evidence
    assert finding.evidence.endswith("ago (no timeout)")
    assert f"hueyard job {oldest.id}" in finding.fix
    assert f"hueyard cancel work {oldest.id}" in finding.fix
    running = Jobs(app).pulse("work").oldest_running
    assert running is not None
    assert (running.id, running.consumer) == (oldest.id, live.consumer_id)
    # When a second consumer of "work" beats, there are four workers for two jobs
    consumer(app, "work")
    assert about(diagnose(app), "work") == []


# -- delayed jobs ----------------------------------------------------------------------------


def test_delayed_jobs_due_later_say_when(app: Hueyard) -> None:
    # Given a served queue with nothing waiting and two delayed jobs
    consumer(app, "work")
    add(app, 1, delay=600)
    add(app, 1, delay=900)
    # When
    [finding] = about(diagnose(app), "work")
    # Then the earliest due time is given
    job = Jobs(app).list_jobs("work", "delayed", page_size=2).items[-1]
    assert job.due is not None
    assert (finding.check, finding.severity) == (Check.DELAYED, Severity.INFO)
    assert finding.what == f"2 delayed jobs, the next due at {utc(job.due)}"
    assert finding.evidence.startswith("nothing waiting; the next delayed job")
    assert "due in 10 min" in finding.evidence
    assert "Promote all delayed on /admin/queues/work." in finding.fix


def test_due_delayed_jobs_with_no_consumer_to_promote_them_are_an_error(app: Hueyard) -> None:
    # Given a delayed job that is due, and no consumer at all
    add(app, 1, delay=0.05)
    time.sleep(0.1)
    # When
    findings = about(diagnose(app), "work")
    # Then
    assert checks(findings) == [Check.DUE_NOT_PROMOTED]
    assert findings[0].severity is Severity.ERROR
    assert findings[0].what == "1 delayed job due, and no consumer moves them to waiting"
    assert "any live consumer promotes the due jobs of every queue" in findings[0].evidence
    # When a consumer of another queue beats: it promotes every queue's due jobs
    consumer(app, "spare")
    assert about(diagnose(app), "work") == []


# -- failures --------------------------------------------------------------------------------


def fail_some(app: Hueyard, completed: int, failed: int) -> None:
    add(app, completed + failed)
    for _ in range(completed):
        done = claim(app)
        assert storage(app).release(done, "completed", value="null")
    for index in range(failed):
        done = claim(app)
        error = f"ConnectionError: provider down ({index}) token=abc123"
        assert storage(app).release(done, "failed", value=error, traceback="Traceback: ...")


def test_a_high_failure_rate_is_a_warning_with_the_latest_error(app: Hueyard) -> None:
    # Given a served queue where 3 of the 4 jobs finished lately failed
    consumer(app, "work")
    fail_some(app, completed=1, failed=3)
    # When
    [finding] = about(diagnose(app), "work")
    # Then
    assert (finding.check, finding.severity) == (Check.FAILING, Severity.WARNING)
    assert finding.what == "75% of its jobs failed in the last 15 min"
    assert finding.evidence.startswith(
        "3 of 4 finished jobs failed (over 0.1, the doctor's default when [health] "
        "max_failure_rate is unset); 3 in failed (keep_failed = 500)"
    )
    # the latest error, with its secret masked as everywhere the CLI shows job data
    assert "the latest error: ConnectionError: provider down (2) token=" in finding.evidence
    assert "abc123" not in finding.evidence
    assert "hueyard jobs work --state failed" in finding.fix
    assert "hueyard retry work --all" in finding.fix


@pytest.mark.parametrize(("health", "reported"), [("", True), ("max_failure_rate = 0.8", False)])
def test_the_failure_threshold_is_health_max_failure_rate_when_set(
    make_app: AppFactory, health: str, reported: bool
) -> None:
    app = make_app(TOML + f"\n[health]\n{health}\n", registry("work", "limited", "spare"))
    consumer(app, "work")
    fail_some(app, completed=1, failed=3)
    assert (Check.FAILING in checks(diagnose(app))) is reported


# -- the Redis server ------------------------------------------------------------------------


def test_an_unreachable_redis_is_one_finding_with_the_redacted_url(make_app: AppFactory) -> None:
    # Given an app whose Redis URL, with a password, names a closed port
    port = free_port()
    url = f"redis://:hunter2-secret@127.0.0.1:{port}/0"
    app = make_app(TOML, registry("work"), url=url, redis_lines="reconnect_attempts = 1")
    # When
    findings = diagnose(app)
    # Then
    [finding] = findings
    assert (finding.check, finding.severity, finding.queue) == (
        Check.REDIS_UNREACHABLE, Severity.ERROR, None,
    )  # fmt: skip
    assert finding.what == f"Redis at redis://:***@127.0.0.1:{port}/0 does not answer"
    assert finding.evidence.startswith("PING failed: ConnectionError")
    assert "REDIS_URL" in finding.fix and "REDIS_PASSWORD" in finding.fix
    assert "hunter2" not in text_of(findings)
    assert exit_status(findings) == 2


def test_a_wrong_password_is_a_finding_that_says_redis_refused_the_credentials(
    make_app: AppFactory,
) -> None:
    # Given a Redis that asks for a password, and an app that gives the wrong one
    with RedisServer(None, "--requirepass", "the-right-one") as server:
        url = f"redis://:hunter2-wrong@127.0.0.1:{server.port}/0"
        app = make_app(TOML, registry("work"), url=url, redis_lines="reconnect_attempts = 1")
        # When
        findings = diagnose(app)
    # Then it says the credentials were refused, as the runbook promises, not "no answer"
    [finding] = findings
    assert finding.check is Check.REDIS_UNREACHABLE and finding.severity is Severity.ERROR
    assert (
        finding.what == f"Redis at redis://:***@127.0.0.1:{server.port}/0 refused the credentials"
    )
    assert "AuthenticationError" in finding.evidence
    assert "REDIS_PASSWORD" in finding.fix and "ACL" in finding.fix
    assert "hunter2" not in text_of(findings)
    assert exit_status(findings) == 2


def test_sentinels_that_name_no_master_are_a_finding_that_names_their_settings(
    make_app: AppFactory,
) -> None:
    # Given an app whose sentinels do not answer (a closed port)
    sentinel = f"127.0.0.1:{free_port()}"
    lines = f'sentinels = ["{sentinel}"]\nmaster_name = "crm"\nreconnect_attempts = 0'
    app = make_app(TOML, registry("work"), redis_lines=lines)
    # When
    [finding] = diagnose(app)
    # Then the fix names where to look, the variables' names as they are spelled
    assert finding.check is Check.REDIS_UNREACHABLE
    assert finding.fix.startswith("Check that the sentinels of [redis] sentinels (REDIS_SENTINELS)")
    assert "[redis] master_name (REDIS_MASTER_NAME)" in finding.fix


def test_a_read_only_replica_is_an_error_naming_the_primary(make_app: AppFactory) -> None:
    # Given a private primary and a replica of it (started as --replicaof 127.0.0.1 PORT)
    with RedisServer() as primary:
        replica = RedisServer(None, "--replicaof", "127.0.0.1", str(primary.port))
        with replica:
            app = make_app(TOML, registry("work", "limited", "spare"), url=replica.url)
            # When
            findings = diagnose(app)
            # Then
            [finding] = [f for f in findings if f.queue is None]
            assert (finding.check, finding.severity) == (Check.REDIS_REPLICA, Severity.ERROR)
            assert finding.what == (
                f"Redis at {replica.url} is a read-only replica: consumers can not claim jobs, "
                "producers can not enqueue"
            )
            assert finding.evidence == (
                f"INFO replication: role:slave, copying from 127.0.0.1:{primary.port}"
            )
            assert f"at 127.0.0.1:{primary.port}" in finding.fix
            assert exit_status(findings) == 1
            # And a write through the read/act API names the replica too
            with pytest.raises(
                ReadOnlyReplicaError, match=r"it is a read-only replica.*Point REDIS_URL"
            ):
                Jobs(app).pause("work")
            # And so does an enqueue
            refused = re.escape("could not enqueue work.job: Redis refused script 'enqueue': it is")
            with pytest.raises(StorageError, match=f"{refused} a read-only replica"):
                add(app, 1)


def test_a_replica_that_hides_info_is_found_by_the_write_it_refuses(
    make_app: AppFactory,
) -> None:
    with RedisServer() as primary:
        replica = RedisServer(None, "--replicaof", "127.0.0.1", str(primary.port))
        with replica:
            # Given a replica whose default user may not run INFO
            replica.client().acl_setuser("default", enabled=True, nopass=True,
                                         commands=["+@all", "-info"], keys=["*"],
                                         channels=["*"])  # fmt: skip
            app = make_app(TOML, registry("work"), url=replica.url)
            # When
            findings = diagnose(app)
            # Then INFO is said to be unreadable, and the refused write tells the role
            assert checks([f for f in findings if f.queue is None]) == [
                Check.REDIS_REPLICA, Check.REDIS_INFO,
            ]  # fmt: skip
            assert "a write was refused" in findings[0].evidence
            assert exit_status(findings) == 1


def used_memory(server: RedisServer) -> int:
    """Used memory, after planting 10 MB (outside the app's keys) so that the memory
    of a few more connections does not move the share. Planted 100 kB at a time: Redis
    counts the input buffer of a large command until it frees it."""
    client = server.client()
    for index in range(100):
        client.set(f"ballast:{index}", b"x" * 100_000)
    memory: int = client.info("memory")["used_memory"]
    return memory


def test_memory_near_maxmemory_is_a_warning(private_app: Hueyard, server: RedisServer) -> None:
    # Given a noeviction Redis using 90 % of its maxmemory
    server.client().config_set("maxmemory", int(used_memory(server) / 0.9))
    # When
    findings = diagnose(private_app)
    # Then
    [finding] = [f for f in findings if f.queue is None]
    assert (finding.check, finding.severity) == (Check.REDIS_MEMORY, Severity.WARNING)
    assert finding.what == "Redis memory is near maxmemory"
    assert re.search(
        r"of maxmemory [\d.]+ MiB \((89|90|91)%\), maxmemory-policy noeviction; a full Redis "
        "with noeviction refuses the writes that add data",
        finding.evidence,
    ), finding.evidence
    assert "hueyard clean QUEUE --state completed" in finding.fix
    assert exit_status(findings) == 0


def test_a_full_noeviction_redis_is_an_error_and_the_queues_are_still_diagnosed(
    private_app: Hueyard, server: RedisServer
) -> None:
    # Given a noeviction Redis over its maxmemory (it refuses writes and transactions)
    add(private_app, 2)
    server.client().config_set("maxmemory", used_memory(server) // 2)
    # When
    findings = diagnose(private_app)
    # Then the memory is the first error, and the queues are read all the same (the
    # reads run outside a transaction): the waiting jobs without a consumer are found
    assert checks(findings)[0] == Check.REDIS_MEMORY
    memory = findings[0]
    assert (memory.severity, memory.what) == (Severity.ERROR, "Redis memory is at maxmemory")
    assert Check.NO_CONSUMER in checks(findings)
    assert Check.REDIS_REFUSED not in checks(findings)
    assert exit_status(findings) == 1
    # And an enqueue says why it was refused
    with pytest.raises(
        StorageError, match=r"it is out of memory .* Free memory or raise maxmemory"
    ):
        add(private_app, 1)
    # And what the evidence says works still works, what it says fails fails
    assert "enqueues, pausing a queue and consumer heartbeats fail" in memory.evidence
    assert "claims, releases, retries and clean still work" in memory.evidence
    claimed = claim(private_app)
    assert storage(private_app).release(claimed, "completed", value="1")
    time.sleep(0.01)  # finished longer than 0 s ago
    assert Jobs(private_app).clean("work", "completed", 0) == 1
    with pytest.raises(StorageError, match="out of memory"):
        Jobs(private_app).pause("work")


@pytest.mark.parametrize(
    ("policy", "deletes"),
    [
        ("allkeys-lru", "any key: job records, queue sets, pause flags"),
        ("volatile-ttl", "keys with a TTL: rate-limit windows"),
    ],
)
def test_an_eviction_policy_other_than_noeviction_is_a_warning(
    private_app: Hueyard, server: RedisServer, policy: str, deletes: str
) -> None:
    # Given an evicting policy, with no maxmemory yet
    server.client().config_set("maxmemory-policy", policy)
    # When
    findings = diagnose(private_app)
    # Then
    [finding] = [f for f in findings if f.queue is None]
    assert (finding.check, finding.severity) == (Check.REDIS_EVICTION, Severity.WARNING)
    assert finding.what == f"maxmemory-policy {policy} can drop job data"
    assert finding.evidence.startswith("maxmemory 0 (no limit yet: it evicts once one is set)")
    assert deletes in finding.evidence
    assert finding.fix.startswith("CONFIG SET maxmemory-policy noeviction")
    assert exit_status(findings) == 0
    # When a limit is set
    server.client().config_set("maxmemory", 512 * 1024 * 1024)
    [finding] = [f for f in diagnose(private_app) if f.queue is None]
    assert finding.evidence.startswith("maxmemory 512.0 MiB; at the limit Redis deletes ")


# -- parents waiting for their children ------------------------------------------------------


def test_a_parent_waiting_for_children_says_where_they_are_and_warns_when_no_one_serves_them(
    make_app: AppFactory,
) -> None:
    # Given a parent on "work" whose 3 children are jobs of "spare"
    handlers = registry("limited")

    @handler("spare", registry=handlers)
    def child(payload: dict[str, Any]) -> None: ...

    @handler("work", registry=handlers)
    def fan(payload: dict[str, Any]) -> None:
        job = current_job()
        assert job is not None
        job.spawn_many(child, [{"n": n} for n in range(3)])

    app = make_app(TOML, handlers, prefix="doc")
    parent = app.enqueue("work", "fan", {})
    huey = app.queue("work").huey
    task = huey.dequeue()
    assert task is not None
    huey.execute(task)
    # and one child ran
    storage(app, "spare")
    spare = app.queue("spare").huey
    first = spare.dequeue()
    assert first is not None
    spare.execute(first)

    # When the doctor looks with a consumer of "work" only
    consumer(app, "work")
    [found] = [
        f for f in about(diagnose(app, ["work"]), "work") if f.check is Check.WAITING_CHILDREN
    ]

    # Then it names the parent, the counts, where the children wait, and that no one serves it
    assert found.severity is Severity.WARNING
    assert found.what.startswith("1 job waiting for children, the oldest started at ")
    assert found.evidence == (
        f"job {parent}: 3 children, 1 completed, 0 failed, 2 pending; pending on spare; "
        "no live consumer serves spare"
    )
    assert found.fix.startswith("Start a consumer for spare (HUEYARD_QUEUES).")
    assert f"hueyard doctor spare. Its children: hueyard job {parent}." in found.fix

    # And with a consumer of "spare" too it is information, not a warning
    consumer(app, "spare")
    [again] = [f for f in diagnose(app, ["work"]) if f.check is Check.WAITING_CHILDREN]
    assert again.severity is Severity.INFO
    assert "no live consumer" not in again.evidence


# -- Redis that refuses what every enqueue needs -----------------------------------------------


def test_a_redis_that_runs_no_scripts_is_an_error_naming_the_fix(make_app: AppFactory) -> None:
    # Given a Redis whose EVAL and EVALSHA are renamed away: every enqueue is refused
    renamed = ("--rename-command", "EVALSHA", "", "--rename-command", "EVAL", "")
    with RedisServer(None, *renamed) as server:
        app = make_app(TOML, registry("work", "limited", "spare"), url=server.url, prefix="doc")
        with pytest.raises(StorageError) as refused:
            add(app, 1)
        assert "runs no Lua scripts" in str(refused.value)
        assert "Un-rename EVAL and EVALSHA" in str(refused.value)

        # When the doctor looks
        findings = diagnose(app)

        # Then it says so, with the fix, and does not say all is fine
        [scripts] = [f for f in findings if f.check is Check.REDIS_SCRIPTS]
        assert scripts.severity is Severity.ERROR and scripts.queue is None
        assert "runs no Lua scripts" in scripts.what
        assert "EVALSHA" in scripts.evidence
        assert "Un-rename EVAL and EVALSHA" in scripts.fix
        assert "managed Redis that disallows scripts is not supported" in scripts.fix
        assert Check.FINE not in checks(findings)
        assert exit_status(findings) == 1


@pytest.mark.parametrize(
    ("value", "counts"),
    [("abc", False), ("-5", False), ("007", False), ("1e3", False), ("0", True), ("41", True)],
)
def test_an_enqueue_counter_that_holds_no_whole_number_is_a_wrong_key(
    app: Hueyard, redis_conn: Any, value: str, counts: bool
) -> None:
    # Given something else wrote a string into a queue's enqueue counter
    seq = app.keys.queue("work").seq
    redis_conn.set(seq, value)

    # When the doctor looks, and a job is enqueued
    findings = about(diagnose(app, ["work"]), "work")
    try:
        add(app, 1)
        enqueued = True
    except StorageError as exc:
        enqueued = False
        assert seq in str(exc)

    # Then the doctor calls it a wrong key exactly when the enqueue refuses it
    assert enqueued is counts
    wrong = [f for f in findings if f.check is Check.WRONG_KEY]
    if counts:
        assert wrong == []
    else:
        [finding] = wrong
        assert finding.severity is Severity.ERROR
        assert "no job of it can be enqueued" in finding.what
        assert finding.evidence.startswith(f"{seq}: holds a string that is no whole number")
        assert "redis-cli DEL KEY" in finding.fix
        assert exit_status(findings) == 1


def test_a_consumers_registry_of_another_type_is_a_wrong_key_and_the_queues_are_diagnosed(
    app: Hueyard, redis_conn: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Given something else wrote a string where the consumers' heartbeats are registered,
    # and a paused queue
    registry = app.keys.consumers
    redis_conn.set(registry, "junk")
    Jobs(app).pause("work")

    # When the doctor looks
    findings = diagnose(app)

    # Then the key is a wrong-key error with its fix, and the queues are still looked at
    [wrong] = [f for f in findings if f.check is Check.WRONG_KEY]
    assert wrong.queue is None and wrong.severity is Severity.ERROR
    assert "consumers registry" in wrong.what
    assert f"Redis key '{registry}' is a string, not the sorted set" in wrong.evidence
    assert f"redis-cli DEL {registry}" in wrong.fix and "heartbeats" in wrong.fix
    assert Check.REDIS_REFUSED not in checks(findings)
    assert Check.PAUSED in checks(findings)

    # And a consumer's heartbeat says what is wrong with that key, not a bare WRONGTYPE
    consumer(app, "work")
    [warning] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("heartbeat")]
    assert f"Redis key '{registry}' is a string, not the sorted set" in warning
    assert "DEL or RENAME it" in warning
