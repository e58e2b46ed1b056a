"""The real ``pipelines.flows`` in a real ``huey_consumer``: a flow with a wait runs as a
delayed continuation job, each one linked to the job before it.

The consumer serves only the ``flows`` queue, so what the flow enqueues on the
``messages`` queue stays there to be read, with its keys.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from framework.application import Hueyard
from framework.config import parse_settings
from framework.handlers import REGISTRY, HandlerRegistry
from framework.jobs import Jobs
from pipelines import flows
from tests.e2e.conftest import E2E, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.untimed]

PHONE = "+14155550123"
WAIT = 1.0

FLOW = f"""\
    nodes:
      - {{id: greet, type: send_message, content: "Hi $name"}}
      - {{id: pause, type: wait, seconds: {WAIT}}}
      - id: is-vip
        type: condition
        if: {{var: plan, op: equals, value: pro}}
        else: done
      - {{id: vip, type: send_message, content: "A gift for you, $name"}}
      - {{id: done, type: end}}
"""


def config(e2e: E2E) -> str:
    return e2e.pipeline_config(
        """
[queues.flows]
attempts = 3
backoff = { type = "exponential", delay = 0.5 }

[queues.messages]
[queues.webhooks]
[queues.ai]
""",
    )


@pytest.fixture
def flows_dir(e2e: E2E, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = e2e.tmp_path / "flows"
    directory.mkdir()
    (directory / "welcome.yaml").write_text(textwrap.dedent(FLOW), encoding="utf-8")
    monkeypatch.setenv(flows.FLOWS_DIR_ENV, str(directory))  # the producer reads them too
    return directory


@pytest.fixture
def flows_app(e2e: E2E, flows_dir: Path) -> Iterator[Hueyard]:
    """The producer side: the flows handler and what it enqueues, on the consumer's config."""
    registry = HandlerRegistry()
    for name in (
        "flows.execute_flow",
        "messages.send_message",
        "webhooks.deliver_webhook",
        "ai.generate_reply",
    ):
        registry.register(REGISTRY.get(name))
    app = Hueyard(parse_settings(config(e2e), env={}), registry)
    yield app
    app.close()


def result_of(jobs: Jobs, job_id: str) -> Any:
    """Wait until the flows job completed; return its result (a failure fails the test)."""

    def probe() -> tuple[Any] | None:
        info = jobs.get(job_id)
        if info is not None and info.state == "failed":
            pytest.fail(f"job {job_id} failed: {info.error}")
        return (info.result,) if info is not None and info.state == "completed" else None

    (result,) = wait_until(probe, timeout=15, what=f"the result of flows job {job_id}")
    return result


def start(e2e: E2E, flows_dir: Path, *, wait: bool = True) -> None:
    path = e2e.tmp_path / "flows.toml"
    path.write_text(config(e2e), encoding="utf-8")
    e2e.start_consumer(
        config=path,
        wait=wait,
        env={
            "HUEYARD_HANDLER_PACKAGES": "",
            "HUEYARD_HANDLER_MODULES": "pipelines.flows",
            "HUEYARD_QUEUES": "flows",
            flows.FLOWS_DIR_ENV: str(flows_dir),
        },
    )


def test_a_wait_is_a_delayed_continuation_job_that_runs_later(
    e2e: E2E, flows_app: Hueyard, flows_dir: Path
) -> None:
    # Given a consumer of the flows queue
    start(e2e, flows_dir)
    jobs = Jobs(flows_app)

    # When the flow is triggered for a contact on the pro plan
    first_id = flows_app.enqueue(
        "flows",
        "execute_flow",
        {"flow": "welcome", "contactId": "c-42", "phone": PHONE,
         "variables": {"name": "Ada", "plan": "pro"}},
    )  # fmt: skip

    # Then the first job greets and stops at the wait, naming its continuation
    first = result_of(jobs, first_id)
    assert first["status"] == "waiting"
    assert first["executed"] == ["greet", "pause"]
    assert first["flowRun"] == first_id
    next_id = first["continuation"]

    # And the continuation was enqueued delayed by the wait (seen delayed when looked at
    # before it was due), and ran only once due: never before the wait was over
    early = jobs.get(next_id)
    assert early is not None
    if early.state == "delayed":
        assert early.due is not None and early.created is not None
        assert WAIT - 0.01 <= (early.due - early.created).total_seconds() <= WAIT + 0.5
    second = result_of(jobs, next_id)
    info = jobs.get(next_id)
    assert info is not None and info.started is not None and info.created is not None
    assert (info.started - info.created).total_seconds() >= WAIT - 0.01
    assert info.key == f"{first_id}:pause:2"
    # It carries the run's state and links to the job before it
    assert info.payload["flow_run"] == first_id
    assert info.payload["previous_job"] == first_id
    assert info.payload["node"] == "is-vip"
    assert info.payload["steps"] == 2
    assert second["status"] == "completed"
    assert second["executed"] == ["is-vip", "vip", "done"]
    assert second["flowRun"] == first_id
    assert second["continuation"] is None

    # And each message was enqueued once, under the run's key for its node and step
    waiting = {
        job.key: job.payload["content"] for job in jobs.list_jobs("messages", "waiting").items
    }
    assert waiting == {
        f"{first_id}:greet:1": "Hi Ada",
        f"{first_id}:vip:4": "A gift for you, Ada",
    }
    assert jobs.counts("flows").completed == 2


def test_a_consumer_with_a_bad_flow_file_does_not_start(
    e2e: E2E, flows_app: Hueyard, flows_dir: Path
) -> None:
    # Given a flow file with a mistake
    (flows_dir / "broken.yaml").write_text("nodes:\n  - {id: a, type: wait, secs: 5}\n")

    # When a consumer starts, it exits naming the file, the line, the node and the field
    start(e2e, flows_dir, wait=False)
    consumer = e2e.consumers[0]
    assert consumer.wait_exit() != 0
    wait_until(lambda: "broken.yaml" in consumer.log(), timeout=5, what="the error in the log")
    log = consumer.log()
    assert f"{flows_dir / 'broken.yaml'}:2: node 'a' (wait), field 'secs': unknown field" in log
