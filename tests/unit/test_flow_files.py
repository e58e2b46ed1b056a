"""Flow files (config/flows/*.yaml): safe loading, and errors naming file, line, node, field.

No Redis: these read YAML and evaluate conditions only.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from framework.errors import ConfigError
from pipelines._flowdefs import Condition, holds, load_flows, parse_flow

ROOT = Path(__file__).resolve().parents[2]
SOURCE = "config/flows/demo.yaml"


def problems(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_flow(textwrap.dedent(text), name="demo", source=SOURCE)
    return str(caught.value)


def test_the_shipped_welcome_flow_validates() -> None:
    book = load_flows(ROOT / "config" / "flows")
    flow = book.get("welcome")
    assert flow.first() == "greet"
    assert {node.type for node in flow.nodes} == {
        "send_template", "send_message", "wait", "condition", "ai_reply", "webhook", "end"
    }  # fmt: skip


# (the flow file, what the error says: file:line, the node, the field, the fix)
BAD_FILES = [
    pytest.param(
        """\
        nodes:
          - id: greet
            type: send_message
            contnt: Hi
        """,
        f"{SOURCE}:4: node 'greet' (send_message), field 'contnt': unknown field; "
        "did you mean 'content'?",
        id="typo",
    ),
    pytest.param(
        """\
        nodes:
          - id: greet
            type: send_message
        """,
        f"{SOURCE}:2: node 'greet' (send_message), field 'content': missing; add it",
        id="missing-field",
    ),
    pytest.param(
        """\
        nodes:
          - id: a
            type: end
          - id: b
            type: jump
        """,
        f"{SOURCE}:5: node 'b' (jump), field 'type' (one of send_message, send_template, wait, "
        "condition, webhook, ai_reply, set, end): unknown type 'jump'",
        id="unknown-type",
    ),
    pytest.param(
        """\
        nodes:
          - id: pause
            type: wait
            seconds: 0
          - {id: b, type: end}
        """,
        f"{SOURCE}:4: node 'pause' (wait), field 'seconds': Input should be greater than 0 (got 0)",
        id="bad-value",
    ),
    pytest.param(
        """\
        nodes:
          - id: check
            type: condition
            if: {var: reply, op: contains, value: yes}
        """,
        f"{SOURCE}:4: node 'check' (condition), field 'if': op 'contains' looks for text",
        id="yaml-boolean",
    ),
    pytest.param(
        """\
        nodes:
          - id: check
            type: condition
            if: {var: reply, op: exists, value: 1}
        """,
        "field 'if': op 'exists' takes no value; remove value",
        id="exists-with-value",
    ),
    pytest.param(
        """\
        nodes:
          - id: check
            type: condition
            if: {var: reply, op: gt}
        """,
        "field 'if': op 'gt' needs a value; add value: ...",
        id="gt-without-value",
    ),
    pytest.param(
        """\
        nodes:
          - id: check
            type: condition
            if: {var: reply, op: matches, value: x}
        """,
        f"{SOURCE}:4: node 'check' (condition), field 'if.op': Input should be 'equals'",
        id="unknown-op",
    ),
    pytest.param(
        """\
        nodes:
          - id: check
            type: condition
            if: {var: "__import__('os')", op: exists}
        """,
        "field 'if.var': String should match pattern",
        id="var-is-a-name-not-code",
    ),
    pytest.param(
        """\
        nodes:
          - id: greet
            type: send_message
            content: Hi
            next: nowhere
        """,
        f"{SOURCE}:5: node 'greet' (send_message), field 'next': no node 'nowhere' in this flow; "
        "use one of greet",
        id="dangling-next",
    ),
    pytest.param(
        """\
        nodes:
          - {id: a, type: end}
          - {id: a, type: end}
        """,
        f"{SOURCE}:3: node 'a' (end), field 'id': repeated (first at nodes[0])",
        id="repeated-id",
    ),
    pytest.param(
        """\
        nodes:
          - {id: a, type: wait, seconds: 5}
        """,
        f"{SOURCE}:2: node 'a' (wait): nothing runs after this wait",
        id="trailing-wait",
    ),
    pytest.param(
        """\
        max_step: 5
        nodes: [{id: a, type: end}]
        """,
        f"{SOURCE}:1: field 'max_step': unknown field; did you mean 'max_steps'?",
        id="top-level-typo",
    ),
    pytest.param(
        """\
        nodes:
          - id: hook
            type: webhook
            url: https://crm.example.com/hooks
            event: done
            secret: whsec-do-not-commit-me
        """,
        f"{SOURCE}:6: node 'hook' (webhook), field 'secret': unknown field; "
        "did you mean 'secret_env'?",
        id="no-secret-in-the-file",
    ),
    pytest.param(
        """\
        nodes:
          - id: bot
            type: ai_reply
            prompt: Hi
            provider: nobody
        """,
        "node 'bot' (ai_reply), field 'provider': unknown ai provider 'nobody'",
        id="unregistered-ai-provider",
    ),
    pytest.param(
        """\
        nodes:
          - id: a
            id: b
            type: end
        """,
        f"{SOURCE}:3: key 'id' is repeated (first on line 2)",
        id="duplicate-key",
    ),
    pytest.param(
        "nodes: [{id: a, type: end}\n",
        f"{SOURCE}:2: not valid YAML",
        id="syntax",
    ),
    pytest.param(
        "nodes: !!python/object/apply:os.system ['touch /tmp/pwned']\n",
        f"{SOURCE}:1: not allowed: could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object/apply:os.system'",
        id="python-tag-refused",
    ),
    pytest.param(
        "variables: &a {x: *a}\nnodes: [{id: a, type: end}]\n",
        f"{SOURCE}:1: an alias (*a) is not allowed in a flow file",
        id="alias-of-itself",
    ),
    pytest.param(
        "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "nodes: [{id: a, type: end}]\n",
        f"{SOURCE}:2: an alias (*a) is not allowed in a flow file",
        id="billion-laughs",
    ),
    pytest.param("", f"{SOURCE}:1: a flow file is a mapping with 'nodes'", id="empty"),
    pytest.param(
        "name: other\nnodes: [{id: a, type: end}]\n",
        f"{SOURCE}:1: 'name' is not a field of a flow file (the flow is named by its file",
        id="name-field",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_FILES)
def test_a_bad_flow_file_is_refused_naming_file_line_node_and_field(
    text: str, expected: str
) -> None:
    assert expected in problems(text)


def test_every_problem_of_a_file_is_reported_at_once() -> None:
    message = problems("""\
        nodes:
          - {id: a, type: send_message}
          - {id: b, type: wait, seconds: -1}
        """)
    lines = message.splitlines()
    assert lines[0].startswith(f"{SOURCE}:2: node 'a' (send_message), field 'content'")
    assert lines[1].startswith(f"{SOURCE}:3: node 'b' (wait), field 'seconds'")


def test_a_directory_reports_each_bad_file_and_loads_nothing(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text("nodes: [{id: a, type: end}]\n")
    (tmp_path / "bad.yaml").write_text("nodes: [{id: a, type: end}]\nextra: 1\n")
    (tmp_path / "good.yml").write_text("nodes: [{id: a, type: end}]\n")
    with pytest.raises(ConfigError) as caught:
        load_flows(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path}: the flows do not validate")
    assert f"{tmp_path / 'bad.yaml'}:2: field 'extra': unknown field" in message
    assert f"{tmp_path / 'good.yml'}: flow 'good' is also defined by" in message


def test_a_missing_directory_holds_no_flows(tmp_path: Path) -> None:
    book = load_flows(tmp_path / "absent")
    assert len(book) == 0
    with pytest.raises(LookupError, match=r"no flow 'welcome' in .*absent \(defined: none\)"):
        book.get("welcome")


# -- conditions ---------------------------------------------------------------------------------

SCOPE: dict[str, Any] = {
    "reply": "Yes please",
    "count": 3,
    "vip": True,
    "tags": ["new", "lead"],
    "nothing": None,
    "contact": {"city": "Lisbon"},
}


def cond(var: str, op: str, value: Any = ..., ignore_case: bool = False) -> Condition:
    data: dict[str, Any] = {"var": var, "op": op, "ignore_case": ignore_case}
    if value is not ...:
        data["value"] = value
    return Condition.model_validate(data)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (cond("reply", "contains", "Yes"), True),
        (cond("reply", "contains", "yes"), False),
        (cond("reply", "contains", "yes", ignore_case=True), True),
        (cond("tags", "contains", "lead"), True),
        (cond("count", "contains", "3"), False),
        (cond("reply", "equals", "Yes please"), True),
        (cond("reply", "equals", "yes please", ignore_case=True), True),
        (cond("count", "equals", 3.0), True),
        (cond("vip", "equals", 1), False),  # a boolean is not a number
        (cond("vip", "equals", True), True),
        (cond("missing", "equals", None), False),
        (cond("missing", "not_equals", "x"), True),
        (cond("reply", "not_equals", "Yes please"), False),
        (cond("count", "gt", 2), True),
        (cond("count", "lt", 2), False),
        (cond("reply", "gt", 2), False),  # text is never greater than a number
        (cond("vip", "gt", 0), False),
        (cond("missing", "lt", 10), False),
        (cond("reply", "exists"), True),
        (cond("nothing", "exists"), False),
        (cond("missing", "exists"), False),
        (cond("contact.city", "equals", "Lisbon"), True),
        (cond("contact.zip", "exists"), False),
        (cond("reply.length", "exists"), False),  # no attribute access, only object keys
    ],
)
def test_conditions_test_one_variable_without_running_code(
    condition: Condition, expected: bool
) -> None:
    assert holds(condition, SCOPE) is expected
