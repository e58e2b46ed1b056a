"""The job commands of ``hueyard`` (status, jobs, job, retry, pause, resume, clean), run
in this process against the real Redis server.

Jobs are put into their states in this process, through the storage of an app
built from the same TOML file the command reads.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from framework import current_job
from framework.application import Hueyard
from framework.handlers import HandlerRegistry, handler
from framework.jobs import STATES, Jobs
from framework.storage import JobStorage
from tests.conftest import AppFactory, app_toml
from tests.integration.cli_runner import ROOT, project_env, run

TOML = """
[queues.alpha]
attempts = 1
[queues.beta]
"""


@pytest.fixture
def project(tmp_path: Path, redis_url: str) -> dict[str, str]:
    handlers = """
        from framework import handler

        @handler("alpha")
        def ping(payload: dict) -> int:
            return 1
    """
    toml = app_toml(redis_url, TOML, prefix="clijobs")
    return project_env(tmp_path, toml, "cli_job_handlers", handlers)


@pytest.fixture
def app(make_app: AppFactory) -> Hueyard:
    """The same queues, in this process, to put jobs into their states."""
    registry = HandlerRegistry()

    @handler("alpha", registry=registry)
    def ping(payload: dict[str, object]) -> int:
        return 1

    @handler("beta", registry=registry)
    def pong(payload: dict[str, object]) -> int:
        return 2

    @handler("alpha", registry=registry)
    def fan(payload: dict[str, object]) -> int:
        job = current_job()
        assert job is not None
        return len(job.spawn_many(pong, [{"n": 1}, {"n": 2}]))

    return make_app(TOML, registry, prefix="clijobs")


@pytest.fixture
def storage(app: Hueyard) -> JobStorage:
    storage: JobStorage = app.queue("alpha").huey.storage
    storage.read_timeout = 0.1
    return storage


def fail(storage: JobStorage, n: int = 1) -> list[str]:
    ids = []
    for _ in range(n):
        claimed = storage.claim()
        assert claimed is not None
        storage.release(claimed, "failed", value="ValueError: boom", traceback="Traceback: here")
        ids.append(claimed.id)
    return ids


def complete(storage: JobStorage) -> str:
    claimed = storage.claim()
    assert claimed is not None
    storage.release(claimed, "completed", value='{"ok":1}')
    return claimed.id


def add(app: Hueyard, n: int, **options: object) -> list[str]:
    return app.enqueue_many("alpha", "ping", [{"n": i} for i in range(n)], **options)  # type: ignore[arg-type]


# -- status -----------------------------------------------------------------------------------


def test_status_json_gives_every_queue_with_the_spec_keys(
    app: Hueyard, storage: JobStorage, project: dict[str, str]
) -> None:
    add(app, 4)
    add(app, 1, delay=60)
    fail(storage)
    complete(storage)
    result = run(["status", "--json"], project)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "alpha": {
            "waiting": 2,
            "active": 0,
            "delayed": 1,
            "completed": 1,
            "failed": 1,
            "paused": 0,
            "waiting-children": 0,
            "isPaused": False,
        },
        "beta": {
            "waiting": 0,
            "active": 0,
            "delayed": 0,
            "completed": 0,
            "failed": 0,
            "paused": 0,
            "waiting-children": 0,
            "isPaused": False,
        },
    }


def test_status_prints_a_table(app: Hueyard, project: dict[str, str]) -> None:
    add(app, 3)
    Jobs(app).pause("alpha")
    result = run(["status"], project)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "queue", "waiting", "active", "delayed", "completed", "failed", "paused",
        "waiting-children", "state",
    ]  # fmt: skip
    assert lines[2].split() == ["alpha", "0", "0", "0", "0", "0", "3", "0", "paused"]
    assert lines[3].split() == ["beta", "0", "0", "0", "0", "0", "0", "0", "running"]


def test_a_set_of_another_type_is_named_by_status_jobs_and_the_doctor_not_counted_as_0(
    app: Hueyard, project: dict[str, str], redis_conn: redis.Redis
) -> None:
    # Given something else wrote a string where alpha's failed jobs are kept
    key = app.keys.queue("alpha").state("failed")
    redis_conn.set(key, "not a set")
    # When the status is asked: the table still shows every queue, and the key is named
    status = run(["status"], project)
    assert status.returncode == 1
    assert status.stdout.splitlines()[2].split()[0] == "alpha"
    assert f"queue alpha: key {key} is not of the type hueyard keeps there" in status.stderr
    # When its failed jobs are listed: an error naming the key, not "none"
    listed = run(["jobs", "alpha", "--state", "failed"], project)
    assert listed.returncode == 1 and "none" not in listed.stdout
    assert f"key {key} is not the sorted set hueyard keeps there" in listed.stderr
    # And the doctor makes it a finding of the queue, with the fix
    doctor = run(["doctor", "--json", "alpha"], project)
    [wrong] = [f for f in json.loads(doctor.stdout) if f["check"] == "wrong-key"]
    assert (wrong["severity"], wrong["queue"]) == ("error", "alpha")
    assert wrong["evidence"].startswith(f"{key}: another type was written")
    assert "redis-cli DEL KEY" in wrong["fix"]


# -- jobs and job -----------------------------------------------------------------------------


def test_jobs_lists_a_page_of_one_state(
    app: Hueyard, storage: JobStorage, project: dict[str, str]
) -> None:
    add(app, 3)
    failed = fail(storage, 3)
    result = run(["jobs", "alpha", "--state", "failed", "--page", "2", "--page-size", "2"], project)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "failed jobs of alpha: 3-3 of 3 (page 2 of 2)"
    assert lines[2].split()[:5] == ["id", "handler", "priority", "attempts", "finished"]
    [row] = lines[4:]
    assert row.split()[:4] == [failed[0], "ping", "5", "1/1"]  # newest first: the oldest is last
    assert row.endswith("ValueError: boom")


def test_jobs_json_is_the_page_with_every_field(
    app: Hueyard, storage: JobStorage, project: dict[str, str]
) -> None:
    ids = add(app, 3, priority=2)
    result = run(["jobs", "alpha", "--state", "waiting", "--json"], project)
    assert result.returncode == 0, result.stderr
    page = json.loads(result.stdout)
    assert {key: page[key] for key in ("queue", "state", "page", "pages", "total")} == {
        "queue": "alpha", "state": "waiting", "page": 1, "pages": 1, "total": 3,
    }  # fmt: skip
    assert [item["id"] for item in page["items"]] == ids
    first = page["items"][0]
    assert (first["payload"], first["priority"], first["name"]) == ({"n": 0}, 2, "alpha.ping")


def test_an_empty_list_says_so(project: dict[str, str], redis_conn: redis.Redis) -> None:
    result = run(["jobs", "alpha", "--state", "delayed"], project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "delayed jobs of alpha: none (page 1 of 1)"


def test_job_shows_payload_error_traceback_and_logs(
    app: Hueyard, storage: JobStorage, project: dict[str, str]
) -> None:
    [job_id] = add(app, 1)
    claimed = storage.claim()
    assert claimed is not None
    storage.report(claimed, "log", "fetched 3 contacts")
    storage.release(claimed, "failed", value="ValueError: boom", traceback="Traceback: here")
    result = run(["job", job_id], project)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.splitlines()[0] == f"job {job_id}"
    for fragment in [
        "  queue     alpha",
        "  state     failed",
        "  handler   alpha.ping",
        "  attempts  1 of 1 (stalls: 0)",
        '  payload   {"n": 0}',
        "  error     ValueError: boom",
        "traceback:\n  Traceback: here",
        "logs (1):\n  fetched 3 contacts",
    ]:
        assert fragment in out
    assert " UTC" in out and "due" not in out

    as_json = run(["job", job_id, "--json"], project)
    assert as_json.returncode == 0, as_json.stderr
    job = json.loads(as_json.stdout)
    assert (job["id"], job["state"], job["logs"]) == (job_id, "failed", ["fetched 3 contacts"])


def test_job_and_jobs_show_escape_sequences_in_redis_data_instead_of_sending_them(
    app: Hueyard, storage: JobStorage, project: dict[str, str], redis_conn: redis.Redis
) -> None:
    # Given a failed job whose payload, error, traceback and log line carry what a
    # terminal acts on (a handler's error often quotes a remote API, or a message's text)
    evil = "\x1b]52;c;ZXZpbA==\x07\x1b[2J\r\u202e\x9b"
    [job_id] = app.enqueue_many("alpha", "ping", [{"text": evil}])
    claimed = storage.claim()
    assert claimed is not None
    storage.report(claimed, "log", f"log {evil}")
    storage.release(claimed, "failed", value=f"ValueError: {evil}", traceback=f"Trace {evil}")

    # When an operator looks at it, and at the failed jobs
    outputs = [run(["job", job_id], project), run(["jobs", "alpha", "--state", "failed"], project)]
    outputs.append(run(["cancel", "alpha", evil], project))

    # Then every line shows them as escapes, and none of them reaches the terminal
    controls = {"\x1b", "\x07", "\r", "\u202e", "\x9b"}
    for result in outputs:
        for stream in (result.stdout, result.stderr):
            assert not set(stream) & controls, repr(stream)
    shown = "\\x1b]52;c;ZXZpbA==\\x07\\x1b[2J\\r\\u202e\\x9b"
    job = outputs[0].stdout
    assert f"  error     ValueError: {shown}" in job
    before_cr = shown.partition("\\r")[0]  # the indent takes a carriage return for a line end
    assert f"traceback:\n  Trace {before_cr}\\r" in job
    assert f"logs (1):\n  log {shown}" in job
    assert "\\u202e" in job.split("payload", 1)[1].splitlines()[0]
    assert "ValueError: \\x1b]52" in outputs[1].stdout
    assert outputs[2].stderr.endswith(f"hueyard: error: no job '{shown}' in queue 'alpha'\n")


# -- actions ----------------------------------------------------------------------------------


def test_retry_one_and_all(app: Hueyard, storage: JobStorage, project: dict[str, str]) -> None:
    add(app, 3)
    first, *_ = fail(storage, 3)
    one = run(["retry", "alpha", first], project)
    assert one.returncode == 0, one.stderr
    assert one.stdout.strip() == f"job {first} of queue 'alpha': failed -> waiting"
    again = run(["retry", "alpha", first], project)
    assert again.returncode == 1
    assert f"job {first!r} is not a failed job of queue 'alpha'; it is waiting" in again.stderr
    every = run(["retry", "alpha", "--all"], project)
    assert every.returncode == 0, every.stderr
    assert every.stdout.strip() == "retried 2 failed job(s) of queue 'alpha'"
    counts = Jobs(app).counts("alpha")
    assert (counts.failed, counts.waiting) == (0, 3)


def test_retry_on_a_paused_queue_says_the_job_is_held(
    app: Hueyard, storage: JobStorage, project: dict[str, str]
) -> None:
    add(app, 1)
    [job_id] = fail(storage, 1)
    assert Jobs(app).pause("alpha")
    one = run(["retry", "alpha", job_id], project)
    assert one.stdout.strip() == (
        f"job {job_id} of queue 'alpha': failed -> paused (the queue is paused: it runs once "
        "resumed)"
    )
    assert Jobs(app).find(job_id).state == "paused"  # type: ignore[union-attr]


def test_cancel_a_waiting_job_a_running_one_and_not_a_finished_one(
    app: Hueyard, storage: JobStorage, project: dict[str, str]
) -> None:
    running, waiting = add(app, 2)
    assert storage.claim() is not None  # `running` now runs
    result = run(["cancel", "alpha", waiting], project)
    assert (result.returncode, result.stdout.strip()) == (
        0, f"job {waiting} of queue 'alpha': cancelled (failed, not retried)",
    )  # fmt: skip
    result = run(["cancel", "alpha", running], project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"job {running} of queue 'alpha' is running: its consumer stops it within 10 s "
        "(one lease renewal) and fails it as cancelled"
    )
    again = run(["cancel", "alpha", waiting], project)
    assert again.returncode == 1
    assert f"job {waiting!r} of queue 'alpha' has finished already" in again.stderr


def test_enqueue_with_a_key_prints_the_holders_id_and_job_shows_the_key(
    app: Hueyard, project: dict[str, str]
) -> None:
    args = ["enqueue", "alpha", "ping", "--data", "{}", "--key", "invoice-42", "--key-ttl", "600"]
    first = run(args, project)
    assert first.returncode == 0, first.stderr
    job_id = first.stdout.strip()
    again = run(args, project)
    assert (again.returncode, again.stdout.strip()) == (0, job_id)  # the job that holds it
    assert Jobs(app).counts("alpha").waiting == 1
    shown = run(["job", job_id], project).stdout
    assert "  key       invoice-42 (kept 600 s after the job finishes)" in shown
    assert json.loads(run(["job", job_id, "--json"], project).stdout)["key"] == "invoice-42"


def test_pause_and_resume(app: Hueyard, storage: JobStorage, project: dict[str, str]) -> None:
    add(app, 2)
    paused = run(["pause", "alpha"], project)
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout.strip() == "queue 'alpha' paused: 2 job(s) held; running jobs finish"
    assert storage.claim() is None
    assert run(["pause", "alpha"], project).stdout.strip() == "queue 'alpha' was already paused"
    resumed = run(["resume", "alpha"], project)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "queue 'alpha' resumed: 2 job(s) waiting"
    assert storage.claim() is not None
    assert run(["resume", "alpha"], project).stdout.strip() == "queue 'alpha' was not paused"


def test_clean_deletes_old_finished_jobs(
    app: Hueyard, storage: JobStorage, project: dict[str, str]
) -> None:
    add(app, 2)
    complete(storage)
    complete(storage)
    time.sleep(0.05)
    result = run(["clean", "alpha", "--state", "completed", "--older-than", "0.01"], project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "deleted 2 completed job(s) of queue 'alpha' that finished over 0.01 s ago"
    )
    assert Jobs(app).counts("alpha").completed == 0


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["jobs", "gamma", "--state", "failed"],
            "unknown queue 'gamma'; declared queues: alpha, beta",
        ),
        (["pause", "gamma"], "declared queues: alpha, beta"),
        (["job", "no-such-job"], "no job 'no-such-job' in any queue"),
        (
            ["retry", "alpha", "no-such-job"],
            "is not a failed job of queue 'alpha'; no queue has it",
        ),
    ],
)
def test_refusals_exit_1_with_the_reason(
    project: dict[str, str], redis_conn: redis.Redis, args: list[str], fragment: str
) -> None:
    result = run(args, project)
    assert result.returncode == 1
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["jobs", "alpha", "--state", "done"], "unknown job state 'done' here; use one of waiting"),
        (["jobs", "alpha", "--state", "failed", "--page", "0"], "'0' is not allowed; use a whole"),
        (
            ["jobs", "alpha", "--state", "failed", "--page", "10000000000000000000"],
            "from 1 to 1,000,000,000",
        ),
        (["jobs", "alpha", "--state", "failed", "--page-size", "501"], "from 1 to 500"),
        (
            ["clean", "alpha", "--state", "waiting", "--older-than", "5"],
            "unknown job state 'waiting' here; use one of completed, failed",
        ),
        (
            ["clean", "alpha", "--state", "failed", "--older-than", "1e306"],
            "'1e306' is not allowed; use seconds from 0 to 1,000,000,000",
        ),
        (["clean", "alpha", "--state", "failed", "--older-than", "nan"], "'nan' is not allowed"),
        (["enqueue", "alpha", "ping", "--data", "{n: 1}"], "--data is not valid JSON"),
        # named as the command line names them, not as the Python API does (eta=, key_ttl=)
        (
            ["enqueue", "alpha", "ping", "--data", "{}", "--eta", "2030-01-01T00:00:00"],
            "--eta '2030-01-01T00:00:00' has no time zone, so its moment would be a guess; "
            "add one: 2030-01-01T00:00:00+00:00",
        ),
        (
            ["enqueue", "alpha", "ping", "--data", "{}", "--key-ttl", "5"],
            "--key-ttl keeps a job key taken after its job: give --key with it",
        ),
    ],
)
def test_a_bad_argument_value_is_a_usage_error_in_every_command(
    project: dict[str, str], redis_conn: redis.Redis, args: list[str], fragment: str
) -> None:
    # exit status 2, as argparse's own and --delay nan: the command line is wrong
    result = run(args, project)
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert fragment in result.stderr
    assert redis_conn.dbsize() == 0


@pytest.mark.parametrize("command", ["job", "retry alpha", "cancel alpha"])
@pytest.mark.parametrize("suffix", [":logs", ":children"])
def test_an_id_naming_a_jobs_own_key_is_a_usage_error_and_changes_nothing(
    app: Hueyard,
    storage: JobStorage,
    redis_conn: redis.Redis,
    project: dict[str, str],
    command: str,
    suffix: str,
) -> None:
    # Given a failed job with a log line
    add(app, 1)
    [job_id] = fail(storage)
    logs = app.keys.job_logs("alpha", job_id)
    redis_conn.rpush(logs, "a line it logged")
    # When a command is given "<id>:logs" or "<id>:children"
    result = run([*command.split(), job_id + suffix], project)
    # Then it is refused as a usage error, saying why, and nothing changed
    assert result.returncode == 2, result.stderr
    assert f"'{job_id}{suffix}' is not a job id: a job id never contains ':'" in result.stderr
    assert "Traceback" not in result.stderr
    assert redis_conn.lrange(logs, 0, -1) == [b"a line it logged"]
    assert Jobs(app).find(job_id).state == "failed"  # type: ignore[union-attr]


def test_retry_needs_a_job_id_or_all(project: dict[str, str]) -> None:
    result = run(["retry", "alpha"], project)
    assert result.returncode == 2
    assert "one of the arguments JOB_ID --all is required" in result.stderr


def test_job_shows_a_parents_children_and_a_childs_parent(
    app: Hueyard, project: dict[str, str]
) -> None:
    # Given a parent that spawned two children, one of which completed
    parent = app.enqueue("alpha", "fan", {})
    for queue in ("alpha", "beta"):
        huey = app.queue(queue).huey
        huey.storage.read_timeout = 0.1
        task = huey.dequeue()
        assert task is not None
        huey.execute(task)
    # When each is shown, Then the parent counts its children, and a child names its parent
    shown = run(["job", parent], project).stdout
    assert "state     waiting-children" in shown
    assert "children  2 (1 completed, 0 failed, 1 pending)" in shown
    [child] = Jobs(app).list_jobs("beta", "completed").items
    assert f"parent    alpha:{parent}" in run(["job", child.id], project).stdout
    status = json.loads(run(["status", "--json"], project).stdout)
    assert status["alpha"]["waiting-children"] == 1
    # And every state lists, the parents waiting for their children included
    for state in STATES:
        listed = run(["jobs", "alpha", "--state", state], project)
        assert listed.returncode == 0, (state, listed.stderr)
    waiting_parents = run(["jobs", "alpha", "--state", "waiting-children"], project).stdout
    assert "started (UTC)" in waiting_parents and parent in waiting_parents


def test_output_piped_to_a_reader_that_stops_early_ends_quietly(
    app: Hueyard, project: dict[str, str]
) -> None:
    # Given a job whose payload prints far more than a pipe holds (64 KiB)
    job_id = app.enqueue("alpha", "ping", {"text": "x" * 400_000})
    # When `hueyard job ID | head -1` reads one line and closes the pipe
    process = subprocess.Popen(
        [sys.executable, "-m", "framework.cli", "job", job_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **project, "PYTHONPATH": f"{project['PYTHONPATH']}:{ROOT}"},
        cwd=ROOT,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.readline()
    process.stdout.close()
    # Then the command stops as a command killed by SIGPIPE would: no traceback
    status = process.wait(timeout=30)
    with process.stderr:
        stderr = process.stderr.read().decode()
    assert status == 128 + signal.SIGPIPE, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
