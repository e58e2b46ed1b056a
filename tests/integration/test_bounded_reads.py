"""Whatever Redis holds, the read API reads a bounded amount of it and says what it cut:
a 50 MB payload, megabytes of error, a million log lines, JSON nested 100,000 levels,
bytes that are not UTF-8, fields of the wrong type. And ``hueyard job`` / ``hueyard jobs``
show it, cut with a marker, and exit 0.

Against the real Redis server. Memory is measured with tracemalloc (what this process
allocated), never time.
"""

from __future__ import annotations

import json
import textwrap
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis

from framework import defaults
from framework.application import Hueyard
from framework.cut import Cut, render
from framework.errors import JobActionError
from framework.handlers import HandlerRegistry, handler
from framework.jobs import Jobs
from framework.storage import JobStorage
from tests.conftest import AppFactory, app_toml
from tests.integration.cli_runner import run
from tests.integration.redis_server import RedisServer

MB = 1024 * 1024

CONFIG = """
[queues.work]
attempts = 1
keep_completed = 1000
keep_failed = 1000

[consumer]
max_log_lines = 50
"""

T = TypeVar("T")


def peak_of(call: Callable[[], T]) -> tuple[T, int]:
    """What ``call`` returns, and the most memory (bytes) it held at once."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        value = call()
        return value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture
def app(make_app: AppFactory) -> Hueyard:
    registry = HandlerRegistry()

    @handler("work", registry=registry)
    def job(payload: dict[str, object]) -> object:
        return payload

    return make_app(CONFIG, registry, prefix="br")


@pytest.fixture
def jobs(app: Hueyard) -> Jobs:
    return Jobs(app, masked=True)


@pytest.fixture
def storage(app: Hueyard) -> JobStorage:
    storage: JobStorage = app.queue("work").huey.storage
    storage.read_timeout = 0.1
    return storage


def new_job(app: Hueyard, n: int = 0) -> str:
    return app.enqueue("work", "job", {"n": n})


def fail(storage: JobStorage) -> str:
    claimed = storage.claim()
    assert claimed is not None
    storage.release(claimed, "failed", value="ValueError: boom", traceback="Traceback: here")
    return claimed.id


# -- one job -----------------------------------------------------------------------------------


def test_a_50_mb_payload_is_read_to_the_cap_and_marked(
    app: Hueyard, jobs: Jobs, redis_conn: redis.Redis
) -> None:
    # Given a job whose payload someone made 50 MB
    job_id = new_job(app)
    stored = b'{"blob":"' + b"x" * (50 * MB) + b'"}'
    redis_conn.hset(app.keys.job("work", job_id), "payload", stored)
    # When it is read, whole up to 64 KiB
    job, peak = peak_of(lambda: jobs.get(job_id, field_bytes=65536))
    # Then the payload is its first 64 KiB, with its size, and this process never held 50 MB
    assert job is not None and job.problem is None
    assert isinstance(job.payload, Cut)
    assert (job.payload.size, job.payload.shown) == (len(stored), 65536)
    assert job.payload.text.startswith('{"blob":"xxx') and len(job.payload.text) == 65536
    assert job.payload.marker == f"… [cut: {len(stored):,} bytes, showing 65,536]"
    assert peak < 4 * MB
    # And its JSON says so in the value
    shown = job.to_json()["payload"]
    assert shown.endswith("… [cut: 52,428,811 bytes, showing 65,536]")
    # And by default a read takes a field whole up to the largest max_payload_bytes
    default, peak = peak_of(lambda: jobs.get(job_id))
    assert default is not None and isinstance(default.payload, Cut)
    assert default.payload.shown == defaults.MAX_PAYLOAD_BYTES
    assert peak < 16 * MB


def test_text_fields_are_cut_with_the_marker_at_their_end(
    app: Hueyard, jobs: Jobs, storage: JobStorage, redis_conn: redis.Redis
) -> None:
    new_job(app)
    job_id = fail(storage)
    redis_conn.hset(
        app.keys.job("work", job_id),
        mapping={"error": "E" * (3 * MB), "traceback": "T" * (2 * MB), "result": "[" + "1," * MB},
    )
    job = jobs.get(job_id, field_bytes=1000)
    assert job is not None
    assert job.error == "E" * 1000 + f"… [cut: {3 * MB:,} bytes, showing 1,000]"
    assert job.traceback == "T" * 1000 + f"… [cut: {2 * MB:,} bytes, showing 1,000]"
    assert isinstance(job.result, Cut) and job.result.size == 2 * MB + 1


def test_log_lines_the_newest_of_them_each_cut(
    app: Hueyard, jobs: Jobs, redis_conn: redis.Redis
) -> None:
    # Given a million log lines, the newest of them 5 MB long
    job_id = new_job(app)
    logs = app.keys.job_logs("work", job_id)
    with redis_conn.pipeline(transaction=False) as pipe:
        for start in range(0, 1_000_000, 100_000):
            pipe.rpush(logs, *(f"line {n}" for n in range(start, start + 100_000)))
        pipe.rpush(logs, "L" * (5 * MB))
        pipe.execute()
    # When the job is read
    job, peak = peak_of(lambda: jobs.get(job_id))
    # Then it holds [consumer] max_log_lines of them, newest last, and says so first
    assert job is not None
    assert job.logs[0] == "… [cut: 1,000,001 lines, showing the newest 50]"
    assert job.logs[1:-1] == tuple(f"line {n}" for n in range(999_951, 1_000_000))
    assert (
        job.logs[-1] == "L" * defaults.LOG_LINE_BYTES + f"… [cut: {5 * MB:,} bytes, showing 4,096]"
    )
    assert peak < 4 * MB


def test_every_short_field_is_read_to_its_cap(
    app: Hueyard, jobs: Jobs, redis_conn: redis.Redis
) -> None:
    job_id = new_job(app)
    redis_conn.hset(
        app.keys.job("work", job_id),
        mapping={
            "handler": "work." + "h" * MB,
            "consumer": "c" * MB,
            "key": "k" * MB,
            "attempts": "9" * MB,
            "started": "1" * 5000,
            "timeout": "2" * 5000,
        },
    )
    job = jobs.get(job_id)
    assert job is not None and job.problem is not None
    cap = defaults.SHORT_FIELD_BYTES
    assert job.name == "work." + "h" * (cap - 5) + f"… [cut: {MB + 5:,} bytes, showing 1,024]"
    assert job.consumer == "c" * cap + f"… [cut: {MB:,} bytes, showing 1,024]"
    assert job.key is not None and job.key.endswith(f"… [cut: {MB:,} bytes, showing 1,024]")
    assert job.attempts == 0 and job.started is None and job.timeout is None
    assert f"attempts is not a whole number: a value of {MB:,} bytes" in job.problem
    assert "started is not a whole number: a value of 5,000 bytes" in job.problem
    assert "timeout is not a number of seconds: a value of 5,000 bytes" in job.problem


@pytest.mark.parametrize(
    ("stored", "problem"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "payload: stored data is not JSON written by hueyard"),
        (b"[" * 500 + b"]" * 500, "stored JSON nests 500 levels deep, more than the 64"),
        (b'{"a":' * 65 + b"1" + b"}" * 65, "stored JSON nests 65 levels deep"),
        (b"\xff\xfe\x80 not UTF-8", "payload: stored data is not JSON written by hueyard"),
        (b"\x80\x04\x95pickle", "payload: stored data is not JSON written by hueyard"),
        (b'"\\ud800"', "payload: stored data is not JSON written by hueyard"),
        (b'{"__hy": "evil", "v": 1}', "unknown or malformed tagged value"),
        (b"[" * 300 + b'{"__hy": "dt", "v": "x"}' + b"]" * 300, "stored JSON nests 301 levels"),
    ],
    ids=[
        "nested 100,000",
        "nested 500",
        "nested 65",
        "not UTF-8",
        "pickle",
        "a lone surrogate",
        "a forged tag",
        "tagged and deep",
    ],
)
def test_a_payload_that_can_not_be_shown_as_json_says_why(
    app: Hueyard, jobs: Jobs, redis_conn: redis.Redis, stored: bytes, problem: str
) -> None:
    job_id = new_job(app)
    redis_conn.hset(app.keys.job("work", job_id), "payload", stored)
    job = jobs.get(job_id)
    assert job is not None
    assert job.payload is None
    assert job.problem is not None and problem in job.problem
    json.dumps(job.to_json())  # and what there is is plain JSON
    [listed] = jobs.list_jobs("work", "waiting").items
    if len(stored) > defaults.LIST_FIELD_BYTES:  # a page reads its start only: it is cut
        assert isinstance(listed.payload, Cut) and listed.problem is None
    else:
        assert listed.problem is not None and problem in listed.problem


def test_a_result_or_progress_that_is_not_json_shows_as_its_text(
    app: Hueyard, jobs: Jobs, redis_conn: redis.Redis
) -> None:
    job_id = new_job(app)
    deep = "[" * 2000 + "]" * 2000
    redis_conn.hset(app.keys.job("work", job_id), mapping={"result": deep, "progress": b"\xff\xfe"})
    job = jobs.get(job_id)
    assert job is not None and job.problem is not None
    assert job.result == deep
    assert job.progress == "\ufffd\ufffd"
    assert "result: stored data is not JSON" in job.problem


def test_a_record_of_a_million_fields_costs_what_a_record_does(
    app: Hueyard, jobs: Jobs, redis_conn: redis.Redis
) -> None:
    job_id = new_job(app)
    with redis_conn.pipeline(transaction=False) as pipe:
        for start in range(0, 1_000_000, 100_000):
            pipe.hset(
                app.keys.job("work", job_id),
                mapping={f"f{n}": n for n in range(start, start + 100_000)},
            )
        pipe.execute()
    job, peak = peak_of(lambda: jobs.get(job_id))
    assert job is not None and job.payload == {"n": 0} and job.problem is None
    assert peak < 2 * MB


def test_keys_of_the_wrong_type_are_problems_not_errors(
    app: Hueyard, jobs: Jobs, redis_conn: redis.Redis
) -> None:
    job_id = new_job(app)
    redis_conn.hset(app.keys.job_logs("work", job_id), "not", "a list")
    redis_conn.rpush(app.keys.job("work", "a-list"), "x")
    redis_conn.zadd(app.keys.queue("work").waiting, {"a-list": 0})
    job = jobs.get(job_id)
    assert job is not None and job.problem == "its log key is not a list (it is a hash)"
    listed = jobs.get("a-list")
    assert listed is not None
    assert listed.problem == "its key is not a job record (not a hash): it is a list"


def test_reads_load_their_scripts_into_a_server_that_does_not_know_them(
    make_app: AppFactory,
) -> None:
    # Given an app on a fresh server, which has never seen the read scripts
    registry = HandlerRegistry()

    @handler("work", registry=registry)
    def job(payload: dict[str, object]) -> None: ...

    with RedisServer() as private:
        app = make_app(CONFIG, registry, prefix="br", url=private.url)
        jobs = Jobs(app)
        [job_id] = app.enqueue_many("work", "job", [{"n": 1}])
        for _ in range(2):
            # When a job and a page are read (the second time after SCRIPT FLUSH)
            found = jobs.get(job_id)
            [listed] = jobs.list_jobs("work", "waiting").items
            # Then both are read, as if the scripts had always been there
            assert found is not None and found.payload == {"n": 1} and found.problem is None
            assert listed.payload == {"n": 1}
            assert jobs.summary("work", minutes=1).oldest_waiting_age is not None
            redis.Redis.from_url(private.url).script_flush()


def test_field_bytes_out_of_range_is_refused(jobs: Jobs) -> None:
    with pytest.raises(JobActionError, match="field_bytes=-1 is not allowed"):
        jobs.get("x", field_bytes=-1)
    with pytest.raises(JobActionError, match="field_bytes=True is not allowed"):
        jobs.list_jobs("work", "waiting", field_bytes=True)


# -- pages -------------------------------------------------------------------------------------


def test_a_page_reads_at_most_field_bytes_of_each_value(
    app: Hueyard, jobs: Jobs, redis_conn: redis.Redis
) -> None:
    # Given 20 jobs of 2 MB each
    ids = [new_job(app, n) for n in range(20)]
    blob = b'{"blob":"' + b"y" * (2 * MB) + b'"}'
    with redis_conn.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hset(app.keys.job("work", job_id), mapping={"payload": blob, "error": blob})
        pipe.execute()
    # When a page of them is read
    page, peak = peak_of(lambda: jobs.list_jobs("work", "waiting", page_size=20))
    # Then each value is its first LIST_FIELD_BYTES, and the page never held one whole value
    assert len(page.items) == 20
    for item in page.items:
        assert isinstance(item.payload, Cut) and item.payload.shown == defaults.LIST_FIELD_BYTES
        assert item.error is not None and item.error.endswith("showing 4,096]")
    assert peak < 2 * MB
    # And a smaller cap holds less
    small = jobs.list_jobs("work", "waiting", page_size=20, field_bytes=10)
    assert all(
        isinstance(item.payload, Cut) and item.payload.text == '{"blob":"y' for item in small.items
    )


def test_secrets_in_the_start_of_a_cut_payload_are_masked(
    app: Hueyard, jobs: Jobs, redis_conn: redis.Redis
) -> None:
    job_id = new_job(app)
    stored = json.dumps({"password": "hunter2", "api_key": "k-123", "rows": ["r"] * 100_000})
    redis_conn.hset(app.keys.job("work", job_id), "payload", stored)
    for job in (jobs.get(job_id, field_bytes=200), jobs.list_jobs("work", "waiting").items[0]):
        assert job is not None and isinstance(job.payload, Cut)
        text = str(render(job.payload))
        assert "hunter2" not in text and "k-123" not in text
        assert '"password": "********"' in text
        assert "… [cut: " in text


# -- consumers and metrics ---------------------------------------------------------------------


def test_heartbeats_hueyard_did_not_write_are_listed_with_a_problem(
    app: Hueyard, jobs: Jobs, redis_conn: redis.Redis
) -> None:
    now_ms = int(time.time() * 1000)
    planted = {
        "huge": "{" + '"host": "h",' * MB + '"pid": 1}',
        "deep": "[" * 100_000 + "]" * 100_000,
        "odd": json.dumps({"host": [[["x"]]], "queues": ["work", {"a": 1}, "q" * 5000], "pid": -3}),
    }
    redis_conn.zadd(app.keys.consumers, {name: now_ms for name in planted})
    for name, record in planted.items():
        redis_conn.set(app.keys.consumer(name), record)
    redis_conn.zadd(app.keys.consumers, {"a-hash": now_ms})
    redis_conn.hset(app.keys.consumer("a-hash"), "x", "y")
    found, peak = peak_of(jobs.consumers)
    by_id = {consumer.id: consumer for consumer in found}
    assert set(by_id) == {"huge", "deep", "odd", "a-hash"}
    assert (
        by_id["huge"].problem is not None
        and "more than a heartbeat ever is" in by_id["huge"].problem
    )
    assert by_id["deep"].problem is not None and "not hueyard's JSON" in by_id["deep"].problem
    assert by_id["a-hash"].problem is not None
    odd = by_id["odd"]
    assert (odd.host, odd.pid) == ("", None)
    assert odd.queues == ("work", "q" * 256 + "…")
    assert peak < 4 * MB


def test_metrics_keys_hueyard_did_not_write_count_as_nothing(
    app: Hueyard, jobs: Jobs, redis_conn: redis.Redis
) -> None:
    q = app.keys.queue("work")
    minute = int(time.time() // 60)
    redis_conn.hset(q.stats(minute), mapping={"completed": "lots", "failed": "3", "x": "y"})
    redis_conn.rpush(q.samples(minute), "fast", "12.5", "inf", *["7"] * 5000)
    redis_conn.set(q.stats(minute - 1), "not a hash")
    redis_conn.hset(q.samples(minute - 1), "not", "a list")
    points = jobs.metrics("work", minutes=3)
    assert sum(point.completed for point in points) == 0
    assert sum(point.failed for point in points) == 3
    assert points[-1].samples == 2 * defaults.MAX_SAMPLES - 2  # the first 512, less 2 non-numbers
    assert jobs.summary("work", minutes=3).failed == 3


# -- hueyard job / hueyard jobs ----------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, redis_url: str) -> dict[str, str]:
    (tmp_path / "br_handlers.py").write_text(
        textwrap.dedent("""
        from framework import handler

        @handler("work")
        def job(payload: dict) -> dict:
            return payload
    """)
    )
    (tmp_path / "q.toml").write_text(app_toml(redis_url, CONFIG, prefix="br"))
    return {
        "HUEYARD_CONFIG": str(tmp_path / "q.toml"),
        "HUEYARD_HANDLER_PACKAGES": "",
        "HUEYARD_HANDLER_MODULES": "br_handlers",
        "PYTHONPATH": str(tmp_path),
    }


@pytest.fixture
def garbage(app: Hueyard, storage: JobStorage, redis_conn: redis.Redis) -> Iterator[dict[str, str]]:
    """A job of each kind of garbage, by name."""
    ids = {name: new_job(app, n) for n, name in enumerate(["big", "deep", "bytes", "fields"])}
    k = app.keys.queue("work").job
    redis_conn.hset(k(ids["big"]), "payload", b'{"blob":"' + b"x" * (50 * MB) + b'"}')
    redis_conn.hset(k(ids["deep"]), "payload", b"[" * 100_000 + b"]" * 100_000)
    redis_conn.hset(k(ids["bytes"]), mapping={"payload": b"\xff\xfe", "error": b"\xc3\x28" * 10})
    redis_conn.hset(k(ids["fields"]), mapping={"created": "yesterday", "priority": "9" * 5000})
    redis_conn.rpush(app.keys.job_logs("work", ids["big"]), *["l" * 100_000] * 60)
    ids["ghost"] = "ghost"
    redis_conn.zadd(app.keys.queue("work").waiting, {"ghost": 10**15})
    yield ids


@pytest.mark.parametrize("name", ["big", "deep", "bytes", "fields", "ghost"])
def test_hueyard_job_shows_garbage_cut_and_exits_0(
    project: dict[str, str], garbage: dict[str, str], name: str
) -> None:
    for args in (["job", garbage[name]], ["job", garbage[name], "--json"]):
        result = run(args, project)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        assert len(result.stdout) < 3 * MB
        if args[-1] == "--json":
            shown = json.loads(result.stdout)
            assert shown["id"] == garbage[name]
        if name == "big":
            assert "[cut: 52,428,811 bytes, showing 1,048,576]" in result.stdout
            assert "[cut: 60 lines, showing the newest 50]" in result.stdout
            assert "showing 4,096]" in result.stdout
        else:
            assert "problem" in result.stdout


def test_hueyard_jobs_lists_garbage_cut_and_exits_0(
    project: dict[str, str], garbage: dict[str, str]
) -> None:
    result = run(["jobs", "work", "--state", "waiting"], project)
    assert result.returncode == 0, result.stderr
    assert "waiting jobs of work: 1-5 of 5" in result.stdout
    assert result.stdout.count("! ") == 3  # three problems; the big and the deep one cut
    shown = run(["jobs", "work", "--state", "waiting", "--json"], project)
    assert shown.returncode == 0, shown.stderr
    items = {item["id"]: item for item in json.loads(shown.stdout)["items"]}
    big = items[garbage["big"]]["payload"]
    assert big.endswith("… [cut: 52,428,811 bytes, showing 4,096]")
    assert len(shown.stdout) < 100_000


def test_rendering_marks_what_it_cut() -> None:
    assert str(render({"a": "x" * 50}, 10)) == '{"a": "xxx… [cut: showing the first 10 characters]'
    assert str(render({"a": 1}, 10)) == '{"a": 1}'
    cut = Cut.of(b"abc\xc3", 100)  # the cut fell inside a character: it is dropped
    assert str(render(cut)) == "abc… [cut: 100 bytes, showing 4]"
    assert str(render(cut, 4)) == "abc… [cut: 100 bytes, showing 4]"
    assert str(render(cut, 2)) == "ab… [cut: 100 bytes, showing the first 2 characters]"
