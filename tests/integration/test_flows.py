"""Flows from YAML files run against the real config on the test Redis database.

The handler runs in this process (a ``Handler`` is callable); what it enqueues
lands in a real app: messages, webhooks, AI requests and the delayed
continuation of the run. ``hueyard check`` runs as a real process.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from framework.application import Hueyard
from framework.config import parse_settings
from framework.errors import PayloadError
from framework.handlers import REGISTRY, HandlerRegistry, discover
from framework.jobs import JobInfo, Jobs
from framework.runtime import reset_app, set_app
from framework.testing import drain
from pipelines import flows
from tests.integration.cli_runner import ROOT, run_process

PHONE = "+14155550123"
SECRET = "whsec-0123456789abcdef-TOPSECRET"

WELCOME = """\
    variables: {name: there}
    nodes:
      - id: greet
        type: send_template
        template:
          name: welcome_message
          components: [{type: body, parameters: [{type: text, text: $name}]}]
      - {id: offer, type: send_message, content: "Catalogue, $name? Reply YES"}
      - {id: pause, type: wait, seconds: 3600}
      - id: replied
        type: condition
        if: {var: reply, op: contains, value: "yes", ignore_case: true}
        else: nudge
      - {id: catalogue, type: send_message, content: "Here it is", next: done}
      - {id: nudge, type: ai_reply, prompt: "Follow up with $name", provider: echo}
      - {id: done, type: end}
"""


@pytest.fixture
def flows_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "flows"
    directory.mkdir()
    monkeypatch.setenv(flows.FLOWS_DIR_ENV, str(directory))
    return directory


def write(directory: Path, name: str, text: str) -> None:
    (directory / f"{name}.yaml").write_text(textwrap.dedent(text), encoding="utf-8")


@pytest.fixture
def app(redis_conn: redis.Redis, redis_url: str, flows_dir: Path) -> Iterator[Hueyard]:
    """The real config/queues.toml on the test database, installed as the process app."""
    write(flows_dir, "welcome", WELCOME)
    discover({})  # every module of pipelines/, as the real app has them
    registry = HandlerRegistry()
    for spec in REGISTRY:
        if spec.module.startswith("pipelines."):
            registry.register(spec)
    text = (ROOT / "config" / "queues.toml").read_text(encoding="utf-8")
    app = Hueyard(parse_settings(text, env={"REDIS_URL": redis_url}), registry)
    set_app(app)
    yield app
    reset_app()


def jobs_in(app: Hueyard, queue: str, state: str = "waiting") -> list[JobInfo]:
    return list(Jobs(app).list_jobs(queue, state, page_size=500).items)


def start(**changes: Any) -> flows.FlowRun:
    payload = {"flow": "welcome", "contactId": "c-42", "phone": PHONE, "trigger": "signup"}
    payload.update(changes)
    return flows.FlowRun.model_validate(payload)


def test_a_run_goes_to_the_wait_then_its_continuation_carries_the_state(app: Hueyard) -> None:
    # When the flow is triggered for Ada
    result = flows.execute_flow(start(variables={"name": "Ada"}, flow_run="run-1"))

    # Then it ran up to the wait, and enqueued the template and the text with their keys
    assert result["status"] == "waiting"
    assert result["executed"] == ["greet", "offer", "pause"]
    assert result["steps"] == 3
    messages = {job.key: job for job in jobs_in(app, "messages")}
    assert set(messages) == {"run-1:greet:1", "run-1:offer:2"}
    assert messages["run-1:greet:1"].payload["template"] == {
        "name": "welcome_message",
        "language": "en_US",
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ada"}]}],
    }
    assert messages["run-1:offer:2"].payload["content"] == "Catalogue, Ada? Reply YES"
    assert result["enqueued"] == {key.split(":")[1]: job.id for key, job in messages.items()}

    # And the continuation is a delayed flows job holding the run's state
    (continuation,) = jobs_in(app, "flows", "delayed")
    assert continuation.id == result["continuation"]
    assert continuation.key == "run-1:pause:3"
    assert continuation.due is not None and continuation.created is not None
    assert 3590 <= (continuation.due - continuation.created).total_seconds() <= 3610
    assert continuation.payload == {
        "flow": "welcome",
        "contactId": "c-42",
        "phone": PHONE,
        "trigger": "signup",
        "variables": {"name": "Ada"},
        "flow_run": "run-1",
        "node": "replied",
        "steps": 3,
        "previous_job": None,  # run here, outside a job
    }


@pytest.mark.parametrize(
    ("variables", "executed", "queue"),
    [
        ({"reply": "Yes please!"}, ["replied", "catalogue", "done"], "messages"),
        ({"reply": "no thanks"}, ["replied", "nudge", "done"], "ai"),
        ({}, ["replied", "nudge", "done"], "ai"),
    ],
    ids=["yes", "no", "no-reply"],
)
def test_the_condition_picks_the_branch(
    app: Hueyard, variables: dict[str, Any], executed: list[str], queue: str
) -> None:
    # Given a run that waited, and the contact's reply in its variables
    payload = start(flow_run="run-7", node="replied", steps=3, variables=variables)

    # When its continuation runs
    result = flows.execute_flow(payload)

    # Then the branch of the condition ran, and only its node enqueued a job
    assert result["status"] == "completed"
    assert result["executed"] == executed
    (job,) = jobs_in(app, queue)
    assert job.key == f"run-7:{executed[1]}:5"
    if queue == "ai":
        assert job.payload["conversationId"] == "c-42"
        assert job.payload["prompt"] == "Follow up with there"
        assert job.payload["provider"] == "echo"  # as the node names it
    else:
        assert job.payload["content"] == "Here it is"
        assert jobs_in(app, "ai") == []


def test_a_rerun_of_a_step_enqueues_nothing_twice(app: Hueyard) -> None:
    # Given a step of a run that already ran (its job is retried after a crash)
    payload = start(flow_run="run-2")
    first = flows.execute_flow(payload)

    # When it runs again
    again = flows.execute_flow(payload)

    # Then the same jobs are named, and no message or continuation was added
    assert again["enqueued"] == first["enqueued"]
    assert again["continuation"] == first["continuation"]
    assert len(jobs_in(app, "messages")) == 2
    assert len(jobs_in(app, "flows", "delayed")) == 1


def test_a_loop_without_a_wait_stops_at_max_steps(app: Hueyard, flows_dir: Path) -> None:
    # Given a flow whose node leads back to itself
    write(flows_dir, "loop", """\
        max_steps: 3
        nodes:
          - {id: ping, type: send_message, content: "ping", next: ping}
        """)  # fmt: skip
    flows._books.clear()  # the new file: as a restarted process would read it

    # When it runs, it fails for good naming the flow, the node and the fix
    with pytest.raises(flows.FlowError) as caught:
        flows.execute_flow(start(flow="loop", flow_run="run-3"))
    message = str(caught.value)
    assert "flow 'loop' run run-3 reached its limit of 3 steps at node 'ping'" in message
    assert f"raise max_steps in {flows_dir / 'loop.yaml'}" in message
    assert caught.value.retry is False
    # And each of the 3 steps enqueued its own message: a loop's visits are not duplicates
    assert sorted(job.key for job in jobs_in(app, "messages")) == [
        "run-3:ping:1", "run-3:ping:2", "run-3:ping:3"
    ]  # fmt: skip


def test_the_step_count_travels_with_the_continuations(app: Hueyard, flows_dir: Path) -> None:
    # Given a reminder loop with a wait in it, at most 4 steps a run
    write(flows_dir, "remind", """\
        max_steps: 4
        nodes:
          - {id: remind, type: send_message, content: "Reminder"}
          - {id: later, type: wait, seconds: 60, next: remind}
        """)  # fmt: skip
    flows._books.clear()

    # When each continuation runs in turn
    result = flows.execute_flow(start(flow="remind", flow_run="run-4"))
    assert result["steps"] == 2
    (second,) = jobs_in(app, "flows", "delayed")
    result = flows.execute_flow(flows.FlowRun.model_validate(second.payload))
    assert result["steps"] == 4

    # Then the third stops at the bound, before sending a third reminder
    third = next(j for j in jobs_in(app, "flows", "delayed") if j.id == result["continuation"])
    assert third.payload["steps"] == 4
    with pytest.raises(flows.FlowError, match="reached its limit of 4 steps at node 'remind'"):
        flows.execute_flow(flows.FlowRun.model_validate(third.payload))
    assert len(jobs_in(app, "messages")) == 2


def test_a_webhook_node_signs_with_the_secret_named_in_the_file(
    app: Hueyard, flows_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(flows_dir, "notify", """\
        nodes:
          - id: tell-crm
            type: webhook
            url: https://crm.example.com/hooks/flows
            event: flow.done
            secret_env: FLOW_TEST_SECRET
            data: {source: hueyard}
        """)  # fmt: skip
    flows._books.clear()
    payload = start(flow="notify", flow_run="run-5", variables={"plan": "pro"})

    # Without the variable the job fails at once, naming it
    monkeypatch.delenv("FLOW_TEST_SECRET", raising=False)
    with pytest.raises(flows.FlowError, match=r"secret in \$FLOW_TEST_SECRET, which is not set"):
        flows.execute_flow(payload)
    assert jobs_in(app, "webhooks") == []

    # With it, a delivery is enqueued on the webhooks queue, and the run's result
    # does not carry the secret
    monkeypatch.setenv("FLOW_TEST_SECRET", SECRET)
    result = flows.execute_flow(payload)
    (job,) = jobs_in(app, "webhooks")
    assert job.key == "run-5:tell-crm:1"
    assert job.payload["body"] == {
        "flow": "notify",
        "flowRun": "run-5",
        "node": "tell-crm",
        "contactId": "c-42",
        "trigger": "signup",
        "variables": {"plan": "pro"},
        "data": {"source": "hueyard"},
    }
    assert SECRET not in json.dumps(result)


def test_payloads_name_a_defined_flow(app: Hueyard) -> None:
    spec = flows.execute_flow.spec
    with pytest.raises(PayloadError, match=r"no flow 'nope' in .* \(defined: welcome\); add"):
        spec.payload_json({"flow": "nope", "contactId": "c-1"})
    with pytest.raises(PayloadError, match=r"sends messages \(node 'greet'\); add the contact's"):
        spec.payload_json({"flow": "welcome", "contactId": "c-1"})
    # The inline form of 0.1.0 is refused with the way to the new one
    with pytest.raises(PayloadError, match=r"put the nodes in config/flows/<flowId>.yaml"):
        spec.payload_json({"flowId": "welcome", "contactId": "c-1", "trigger": "x", "nodes": []})


# -- hueyard check ------------------------------------------------------------------------------


def check_env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    config = tmp_path / "queues.toml"
    text = (ROOT / "config" / "queues.toml").read_text(encoding="utf-8")
    config.write_text(text.replace('url = "redis://localhost:6379/0"', f'url = "{redis_url}"'))
    return {"HUEYARD_CONFIG": str(config)}


def test_hueyard_check_lists_the_flows_next_to_the_config(tmp_path: Path, redis_url: str) -> None:
    # Given the flows in flows/ next to the config file
    (tmp_path / "flows").mkdir()
    write(tmp_path / "flows", "welcome", WELCOME)
    write(tmp_path / "flows", "bye", "description: Says bye\nnodes: [{id: done, type: end}]\n")

    result = run_process(["check"], check_env(tmp_path, redis_url))

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[lines.index("flows:") + 1].split() == [
        "flow", "nodes", "start", "max", "steps", "node", "types", "file"
    ]  # fmt: skip
    bye = next(line for line in lines if line.startswith("bye "))
    assert bye.split() == ["bye", "1", "done", "100", "end", str(tmp_path / "flows" / "bye.yaml")]
    assert any(line.startswith("welcome ") and " 7 " in line for line in lines)
    assert f", 2 flows from {tmp_path / 'flows'}" in lines[-1]


def test_a_bad_flow_file_stops_hueyard_check(tmp_path: Path, redis_url: str) -> None:
    (tmp_path / "flows").mkdir()
    write(tmp_path / "flows", "broken", """\
        nodes:
          - id: greet
            type: send_message
            text: Hi
        """)  # fmt: skip

    result = run_process(["check"], check_env(tmp_path, redis_url))

    assert result.returncode == 1
    file = tmp_path / "flows" / "broken.yaml"
    assert f"{file}:4: node 'greet' (send_message), field 'text': unknown field" in result.stderr
    assert f"{file}:2: node 'greet' (send_message), field 'content': missing" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "changes", [{"flow_run": "run-of-someone-else"}, {"node": "send_welcome"}], ids=str
)
def test_a_trigger_job_that_names_a_run_or_a_node_fails_at_once_sending_nothing(
    app: Hueyard, changes: dict[str, Any]
) -> None:
    # Given a trigger enqueued with what only the flow sets on its continuations
    job_id = flows.execute_flow.enqueue(start(**changes).model_dump(exclude_none=True))
    # When it runs as a job
    drain("flows", app=app)
    # Then it fails at once, naming the fields, and enqueued nothing
    info = Jobs(app).get(job_id)
    assert info is not None and info.state == "failed", info
    assert info.error is not None and "given in a trigger" in info.error
    assert jobs_in(app, "messages") == []
