"""Serving: waitress drains requests in progress on stop; the CLI commands as real processes."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from dashboard.server import DashboardServer
from framework.application import Hueyard
from framework.config import parse_settings
from framework.handlers import HandlerRegistry, handler
from tests.conftest import app_toml
from tests.integration.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": "Basic " + base64.b64encode(b"ops:serve-test-pass").decode()}


def fetch(url: str, headers: dict[str, str] | None = None, timeout: float = 5) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


# -- the server ------------------------------------------------------------------------------


def slow_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    time.sleep(float(environ.get("QUERY_STRING") or 0))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"finished"]


def test_stop_lets_a_request_in_progress_finish_and_refuses_new_ones() -> None:
    # Given a server and a request that takes 1 s
    server = DashboardServer(slow_app, "127.0.0.1", 0, grace=10)
    serving = threading.Thread(target=server.serve)
    serving.start()
    url = f"http://127.0.0.1:{server.port}/"
    answers: list[tuple[int, bytes]] = []
    slow = threading.Thread(target=lambda: answers.append(fetch(url + "?1")))
    slow.start()
    time.sleep(0.3)
    # When the server is stopped during that request
    stopped_at = time.monotonic()
    server.stop()
    # Then the request still gets its answer, and the server exits soon after
    slow.join(10)
    serving.join(10)
    assert answers == [(200, b"finished")]
    assert not serving.is_alive()
    assert time.monotonic() - stopped_at < 5
    with pytest.raises(OSError):
        fetch(url, timeout=1)


def test_stop_gives_up_on_a_request_after_the_grace_period() -> None:
    server = DashboardServer(slow_app, "127.0.0.1", 0, grace=0.5)
    serving = threading.Thread(target=server.serve)
    serving.start()
    threading.Thread(target=lambda: _ignore(fetch, f"http://127.0.0.1:{server.port}/?5", timeout=8),
                     daemon=True).start()  # fmt: skip
    time.sleep(0.3)
    started = time.monotonic()
    server.stop()
    serving.join(10)
    assert not serving.is_alive()
    assert time.monotonic() - started < 3


def _ignore(call: Any, *args: Any, **kwargs: Any) -> None:
    with contextlib.suppress(OSError):
        call(*args, **kwargs)


# -- the commands ----------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, redis_url: str, redis_conn: redis.Redis) -> dict[str, str]:
    (tmp_path / "serve_handlers.py").write_text(
        textwrap.dedent("""
        from framework import handler

        @handler("alpha")
        def echo(payload: dict) -> dict:
            return {"echo": payload}
    """)
    )
    (tmp_path / "q.toml").write_text(
        app_toml(redis_url, "[queues.alpha]\nconcurrency = 1", prefix="servetest")
    )
    return {
        "HUEYARD_CONFIG": str(tmp_path / "q.toml"),
        "HUEYARD_HANDLER_PACKAGES": "",
        "HUEYARD_HANDLER_MODULES": "serve_handlers",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "DASHBOARD_USERNAME": "ops",
        "DASHBOARD_PASSWORD": "serve-test-pass",
    }


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    processes: list[subprocess.Popen[str]] = []

    def run(command: str, env: dict[str, str], port: int) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "framework.cli", command, "--port", str(port)],
            env={**os.environ, **env},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        processes.append(process)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[0]
            try:
                if fetch(f"http://127.0.0.1:{port}/health")[0] in (200, 503):
                    return process
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"hueyard {command} did not answer on port {port}")

    yield run
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=10)


def test_hueyard_dashboard_serves_and_stops_on_sigterm(project: dict[str, str], start: Any) -> None:
    port = free_port()
    process = start("dashboard", project, port)
    status, body = fetch(f"http://127.0.0.1:{port}/api/v1/queues/health", AUTH)
    assert status == 200 and json.loads(body)["data"]["queues"]["alpha"]["name"] == "alpha"
    assert fetch(f"http://127.0.0.1:{port}/admin/queues")[0] == 401
    # When
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=35)
    # Then
    assert process.returncode == 0, output
    assert time.monotonic() - started < 30
    assert f"http://127.0.0.1:{port}/admin/queues" in output
    assert "serve-test-pass" not in output


@pytest.mark.parametrize("command", ["dashboard", "up"])
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"DASHBOARD_PASSWORD": "admin123"},
         "DASHBOARD_PASSWORD is the development default 'admin123' (neither HUEYARD_ENV nor "
         "NODE_ENV is set, so production rules apply)"),
        ({"HUEYARD_ENV": "Production", "DASHBOARD_PASSWORD": "eleven-char"},
         "DASHBOARD_PASSWORD has 11 characters, fewer than 12 (HUEYARD_ENV=production"),
        ({"NODE_ENV": "staging", "DASHBOARD_USERNAME": "", "DASHBOARD_PASSWORD": ""},
         "no dashboard credentials are set (NODE_ENV=staging, so production rules apply)"),
    ],
    ids=["default-env-unset", "short-production", "missing-node-env"],
)  # fmt: skip
def test_the_commands_refuse_unfit_credentials_outside_development(
    project: dict[str, str], command: str, change: dict[str, str], message: str
) -> None:
    # Given credentials unfit for production, and no HUEYARD_ENV=development
    env = {k: v for k, v in os.environ.items() if k not in ("HUEYARD_ENV", "NODE_ENV")}
    env.update({**project, **change})
    # When the command starts
    result = subprocess.run(
        [sys.executable, "-m", "framework.cli", command, "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    # Then it exits 1 with one line that names the variable and the fix
    assert result.returncode == 1
    assert result.stderr.startswith(f"hueyard: error: {message}")
    assert result.stderr.count("\n") == 1
    assert "HUEYARD_ENV=development" in result.stderr
    assert "eleven-char" not in result.stderr


def test_hueyard_dashboard_says_which_environment_it_runs_in(
    project: dict[str, str], start: Any
) -> None:
    # Given HUEYARD_ENV=development said explicitly and no credentials
    env = {**project, "HUEYARD_ENV": "development", "DASHBOARD_USERNAME": "",
           "DASHBOARD_PASSWORD": ""}  # fmt: skip
    port = free_port()
    process = start("dashboard", env, port)
    # Then the development default signs in, and the output says so
    admin = {"Authorization": "Basic " + base64.b64encode(b"admin:admin123").decode()}
    assert fetch(f"http://127.0.0.1:{port}/admin/queues", admin)[0] == 200
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=35)
    assert "environment development (HUEYARD_ENV=development; development defaults allowed)" in (
        output
    )
    assert "credentials: development default" in output


def test_hueyard_up_runs_jobs_and_serves_the_dashboard(
    project: dict[str, str], start: Any, redis_url: str
) -> None:
    # Given `hueyard up`
    port = free_port()
    process = start("up", project, port)
    # When a job is enqueued (by this process, on the same config)
    registry = HandlerRegistry()

    @handler("alpha", registry=registry)
    def echo(payload: dict[str, Any]) -> None: ...

    settings = parse_settings(Path(project["HUEYARD_CONFIG"]).read_text(), env={})
    app = Hueyard(settings, registry)
    try:
        job_id = app.enqueue("alpha", "echo", {"hello": "up"})
        # Then the dashboard shows it completed
        deadline = time.monotonic() + 20
        state = None
        while time.monotonic() < deadline and state != "completed":
            status, body = fetch(f"http://127.0.0.1:{port}/admin/queues/alpha/jobs/{job_id}/raw",
                                 AUTH)  # fmt: skip
            state = json.loads(body)["state"] if status == 200 else None
            time.sleep(0.1)
        assert state == "completed"
        assert fetch(f"http://127.0.0.1:{port}/health")[0] == 200  # a live consumer
    finally:
        app.close()
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=40)
    assert process.returncode == 0, output
    assert "hueyard up: stopped" in output


@pytest.mark.parametrize("command", ["dashboard", "up"])
def test_a_port_in_use_or_out_of_range_is_one_line_not_a_traceback(
    project: dict[str, str], command: str
) -> None:
    env = {**os.environ, **project}
    with socket.socket() as taken:  # Given something listens on the port already
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "framework.cli", command, "--port", str(port)],
            env=env, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.splitlines()[-1].startswith(
        f"hueyard: error: the dashboard can not listen on 127.0.0.1:{port}: Address already in use"
    )
    # A port past 65535 (waitress would take 70000 as 70000 mod 65536) is a usage error
    wrapped = subprocess.run(
        [sys.executable, "-m", "framework.cli", command, "--port", "70000"],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert wrapped.returncode == 2
    assert "argument --port: '70000' is not a TCP port; use 1 to 65535" in wrapped.stderr
