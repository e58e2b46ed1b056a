"""The hueyard command: in this process, and (where that is the point) as a real process."""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis

from tests.conftest import app_toml
from tests.integration.cli_runner import ROOT, project_env, run, run_process
from tests.integration.redis_server import RedisServer
from tests.local_http import LocalServer


@pytest.fixture
def project(tmp_path: Path, redis_url: str) -> dict[str, str]:
    (tmp_path / "cli_handlers.py").write_text(
        textwrap.dedent("""
        from pydantic import BaseModel
        from framework import handler

        class Ping(BaseModel):
            n: int

        @handler("alpha")
        def ping(payload: Ping) -> int:
            return payload.n
    """)
    )
    (tmp_path / "q.toml").write_text(
        app_toml(
            redis_url,
            """
            [queues.alpha]
            attempts = 4
            concurrency = 3
            rate_limit = { max = 5, per = 10 }
            [queues.beta]
            timeout = 60
            """,
            prefix="clitest",
        )
    )
    return {
        "HUEYARD_CONFIG": str(tmp_path / "q.toml"),
        "HUEYARD_HANDLER_PACKAGES": "",
        "HUEYARD_HANDLER_MODULES": "cli_handlers",
        "PYTHONPATH": str(tmp_path),
    }


def test_check_prints_the_compiled_queues_as_a_table(project: dict[str, str]) -> None:
    result = run(["check"], project)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "queue",
        "attempts",
        "backoff",
        "timeout",
        "priority",
        "concurrency",
        "rate",
        "limit",
        "keep",
        "ok/failed",
        "handlers",
    ]
    alpha = next(line for line in lines if line.startswith("alpha"))
    assert alpha.split() == [
        "alpha",
        "4",
        "exponential",
        "5s",
        "-",
        "5",
        "3",
        "5/10s",
        "100/500",
        "alpha.ping",
    ]
    assert "config OK: 2 queues, 1 handlers" in result.stdout
    assert "queue 'beta' has no handler" in result.stderr


def test_check_json_lists_every_field(project: dict[str, str]) -> None:
    result = run(["check", "--json"], project)
    assert result.returncode == 0, result.stderr
    queues = json.loads(result.stdout)
    assert [q["name"] for q in queues] == ["alpha", "beta"]
    alpha = queues[0]
    assert alpha == {
        "name": "alpha",
        "attempts": 4,
        "backoff": {"type": "exponential", "delay": 5.0},
        "timeout": None,
        "priority": 5,
        "concurrency": 3,
        "rate_limit": {"max": 5, "per": 10.0},
        "keep_completed": 100,
        "keep_failed": 500,
        "handlers": ["alpha.ping"],
    }
    assert queues[1]["timeout"] == 60


def test_check_exits_1_and_names_the_problem(project: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "q.toml").write_text("[queues.alpha]\nattempts = 0\n")
    result = run(["check"], project)
    assert result.returncode == 1
    assert "[queues.alpha] attempts = 0: must be at least 1" in result.stderr
    assert "q.toml" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_exits_1_for_a_handler_on_an_undeclared_queue(
    project: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "q.toml").write_text("[queues.beta]\n")
    result = run(["check"], project)
    assert result.returncode == 1
    assert "cli_handlers.ping is registered for queue 'alpha'" in result.stderr


def test_the_shipped_config_checks_clean() -> None:
    # A real process: the shipped config, with the handlers the pipelines package declares
    result = run_process(
        ["check", "--json"], {"HUEYARD_CONFIG": str(ROOT / "config" / "queues.toml")}
    )
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 10


def test_enqueue_prints_the_job_id(project: dict[str, str], redis_conn: redis.Redis) -> None:
    result = run_process(
        ["enqueue", "alpha", "ping", "--data", '{"n": 7}', "--priority", "2", "--attempts", "2",
         "--keep-completed", "0", "--keep-failed", "9"],
        project,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    assert redis_conn.zrange("{clitest:alpha}:waiting", 0, -1) == [job_id.encode()]
    job = redis_conn.hgetall(f"{{clitest:alpha}}:job:{job_id}")
    assert (job[b"handler"], job[b"payload"]) == (b"alpha.ping", b'{"n":7}')
    assert (job[b"priority"], job[b"max_attempts"]) == (b"2", b"2")
    assert (job[b"keep_completed"], job[b"keep_failed"]) == (b"0", b"9")


def test_enqueue_with_a_delay_schedules_the_job(
    project: dict[str, str], redis_conn: redis.Redis
) -> None:
    result = run(["enqueue", "alpha", "ping", "--data", '{"n": 1}', "--delay", "30"], project)
    assert result.returncode == 0, result.stderr
    assert redis_conn.zcard("{clitest:alpha}:delayed") == 1
    soon = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)).isoformat()
    result = run(["enqueue", "alpha", "ping", "--data", '{"n": 2}', "--eta", soon], project)
    assert result.returncode == 0, result.stderr
    assert redis_conn.zcard("{clitest:alpha}:delayed") == 2
    result = run(["enqueue", "alpha", "ping", "--data", "{}", "--eta", "tomorrow"], project)
    assert result.returncode == 2  # an option's value: a usage error
    assert "--eta 'tomorrow' is not an ISO 8601 time" in result.stderr
    assert redis_conn.zcard("{clitest:alpha}:waiting") == 0


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["enqueue", "alpha", "ping", "--data", '{"n": "x"}'],
            "n: Input should be a valid integer",
        ),
        (["enqueue", "gamma", "ping", "--data", "{}"], "unknown queue 'gamma'"),
        (["enqueue", "alpha", "pong", "--data", "{}"], "no handler named 'pong'"),
    ],
)
def test_enqueue_refusals_exit_1_with_the_reason(
    project: dict[str, str], redis_conn: redis.Redis, args: list[str], fragment: str
) -> None:
    result = run(args, project)
    assert result.returncode == 1
    assert fragment in result.stderr
    assert redis_conn.dbsize() == 0


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["jobs", "alpha", "--state", "failed"],
        ["enqueue", "alpha", "ping", "--data", '{"n": 1}'],
        ["schedules"],
    ],
    ids=["status", "jobs", "enqueue", "schedules"],
)
def test_a_url_that_names_another_kind_of_server_is_one_line_naming_the_port(
    project: dict[str, str], args: list[str]
) -> None:
    # Given [redis] url's port is a web server's (REDIS_URL set by mistake to it)
    server = LocalServer(lambda handler, body: None)
    try:
        port = server.server.server_port
        result = run(args, {**project, "REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    finally:
        server.close()
    # Then the command says so in one line, not a traceback
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "answered in another protocol than Redis's" in result.stderr
    assert "check the port of [redis] url (or REDIS_URL / REDIS_PORT)" in result.stderr


# -- the command's own streams: an odd encoding, a closed or full output, Ctrl-C ---------------


def test_an_output_encoding_that_can_not_show_the_text_gets_escapes_not_a_traceback(
    tmp_path: Path, redis_url: str, redis_conn: redis.Redis
) -> None:
    # a payload of a 2-byte and a 4-byte character, long enough for the list to cut it
    # with its marker (U+2026)
    env = project_env(
        tmp_path, app_toml(redis_url, "[queues.notes]", prefix="clitest"), "note_handlers",
        """
        from framework import handler

        @handler("notes")
        def note(payload: dict) -> None: ...
        """,
    )  # fmt: skip
    data = json.dumps({"note": "caf\u00e9 \U0001f600 " + "x" * 80}, ensure_ascii=False)
    job_id = run(["enqueue", "notes", "note", "--data", data], env).stdout.strip()
    for encoding in ("ascii",):
        for args in (["job", job_id], ["jobs", "notes", "--state", "waiting"]):
            shown = run_process(args, {**env, "PYTHONIOENCODING": encoding})
            assert shown.returncode == 0, (encoding, args, shown.stderr)
            assert "Traceback" not in shown.stderr and job_id[:8] in shown.stdout
            assert "\\U0001f600" in shown.stdout  # shown as its escape


def test_a_closed_output_does_nothing_and_a_full_one_says_what_was_done(
    project: dict[str, str], tmp_path: Path, redis_conn: redis.Redis
) -> None:
    script = tmp_path / "closed.sh"
    script.write_text(
        f'exec "{sys.executable}" -m framework.cli enqueue alpha ping --data \'{{"n": 1}}\' >&-\n'
    )
    closed = subprocess.run(
        ["sh", str(script)], capture_output=True, text=True, timeout=60,
        env={**os.environ, **project, "PYTHONPATH": f"{project['PYTHONPATH']}:{ROOT}"},
    )  # fmt: skip
    # With its output closed, the job is not enqueued: its id could not be told
    assert closed.returncode == 1 and "standard output is closed" in closed.stderr
    assert "Traceback" not in closed.stderr
    assert json.loads(run(["status", "--json"], project).stdout)["alpha"]["waiting"] == 0
    # With a full disk, the job is stored and the error says which
    full = tmp_path / "full.sh"
    full.write_text(
        f'exec "{sys.executable}" -m framework.cli enqueue alpha ping --data \'{{"n": 1}}\' '
        "> /dev/full\n"
    )
    stored = subprocess.run(
        ["sh", str(full)], capture_output=True, text=True, timeout=60,
        env={**os.environ, **project, "PYTHONPATH": f"{project['PYTHONPATH']}:{ROOT}"},
    )  # fmt: skip
    assert stored.returncode == 1 and "Traceback" not in stored.stderr, stored.stderr
    assert "could not write to standard output (No space left on device)" in stored.stderr
    told = re.search(r"it would have said: job (\S+) was enqueued on alpha", stored.stderr)
    assert told is not None, stored.stderr
    assert json.loads(run(["job", told[1], "--json"], project).stdout)["state"] == "waiting"


def test_ctrl_c_ends_a_command_in_one_line_saying_how_far_a_bulk_action_got(
    project: dict[str, str], tmp_path: Path
) -> None:
    with RedisServer() as server:
        env = {**project, "REDIS_URL": server.url}
        app_conn = server.client()
        failed = run(["status", "--json"], env)
        assert failed.returncode == 0, failed.stderr
        # Given a bulk retry stuck on a Redis that holds every write (CLIENT PAUSE WRITE)
        conn = redis.Redis.from_url(server.url)
        for n in range(3):
            conn.zadd("{clitest:alpha}:failed", {f"0190000{n}-0000-7000-8000-000000000000": n})
        app_conn.execute_command("CLIENT", "PAUSE", "20000", "WRITE")
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "framework.cli", "retry", "alpha", "--all"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env={**os.environ, **env, "PYTHONPATH": f"{project['PYTHONPATH']}:{ROOT}"},
            )  # fmt: skip
            # it has sent its first batch and waits for the answer (a client blocked by the pause)
            deadline = time.monotonic() + 60
            while not any("b" in c["flags"] for c in app_conn.client_list()):
                assert time.monotonic() < deadline, "the retry never sent its first batch"
                assert process.poll() is None, process.communicate()
                time.sleep(0.05)
            # When the operator presses Ctrl-C
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=30)
        finally:
            app_conn.execute_command("CLIENT", "UNPAUSE")
        # Then it ends with one line, no traceback, saying how far it got
        assert process.returncode == 130, err
        assert "Traceback" not in err
        told = [line for line in err.splitlines() if not line.startswith("WARNING")]
        assert told == [
            "hueyard: interrupted; 0 of the 3 failed jobs were retried before it stopped (and "
            "the batch it was sending, if only its answer was lost); the others are still "
            "failed: run it again for them"
        ], err
