"""Flows defined in YAML (``config/flows/<name>.yaml``): the models, the conditions, loading.

A file is one flow, named by the file (``welcome.yaml`` is the flow
``welcome``)::

    description: Greets a new contact and asks what they need
    max_steps: 50                 # nodes one run may execute in all (a loop's bound)
    variables: {name: there}      # defaults; the trigger's variables win
    nodes:
      - {id: greet, type: send_message, content: "Hi $name!"}
      - {id: pause, type: wait, seconds: 3600}
      - id: replied
        type: condition
        if: {var: reply, op: contains, value: "yes", ignore_case: true}
        then: thanks              # default: the next node
        else: done                # default: the flow ends
      - {id: thanks, type: send_message, content: "Great!"}
      - {id: done, type: end}

Each node runs the one after it unless ``next`` names another. Conditions
are data, never code (no ``eval``): :func:`holds`. :func:`load_flows` reads a
directory and reports every problem with the file, the line, the node and the
field (:mod:`pipelines._flowyaml`).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from framework.config import read_config_file
from framework.errors import ConfigError
from pipelines._flowyaml import YamlDocument, describe, read_yaml
from pipelines._providers import AI_PROVIDERS, HttpUrl, Identifier
from pipelines.messages import MAX_CONTENT, Template

__all__ = [
    "DEFAULT_MAX_STEPS",
    "MAX_WAIT",
    "Condition",
    "Flow",
    "FlowBook",
    "FlowNode",
    "holds",
    "load_flows",
    "parse_flow",
]

MAX_NODES = 200
MAX_WAIT = 30 * 86400
"""The longest ``wait``: 30 days."""
DEFAULT_MAX_STEPS = 100
"""Nodes one flow run may execute in all, unless the flow's ``max_steps`` says otherwise."""
MAX_STEPS = 10_000

Scalar = str | int | float | bool | None
VAR_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_-]+)*$")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")
Target = Identifier


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    id: Identifier

    def targets(self) -> dict[str, str | None]:
        """The fields that name another node, and their values."""
        return {}


class _Chained(_Node):
    next: Target | None = None
    """The node to run after this one; default the next in the file."""

    def targets(self) -> dict[str, str | None]:
        return {"next": self.next}


class SetNode(_Chained):
    """``variables[key] = value``."""

    type: Literal["set"]
    key: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
    value: Scalar


class SendMessageNode(_Chained):
    """A text message to the contact; ``$name`` placeholders filled from the variables."""

    type: Literal["send_message"]
    content: Annotated[str, Field(min_length=1, max_length=MAX_CONTENT)]


class SendTemplateNode(_Chained):
    """An approved template; ``$name`` placeholders in its components' text are filled."""

    type: Literal["send_template"]
    template: Template


class WaitNode(_Chained):
    """Stop here; the run goes on ``seconds`` later, in a delayed continuation job."""

    type: Literal["wait"]
    seconds: Annotated[float, Field(gt=0, le=MAX_WAIT)]


class WebhookNode(_Chained):
    """Enqueue a signed webhook delivery (the ``webhooks`` queue) about this run."""

    type: Literal["webhook"]
    url: HttpUrl
    event: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]
    secret_env: Annotated[str, Field(pattern=ENV_NAME.pattern)]
    """The environment variable holding the signing secret: never the secret itself."""
    data: dict[str, Any] = Field(default_factory=dict)


def _registered_provider(name: str) -> str:
    if name not in AI_PROVIDERS:
        raise ValueError(AI_PROVIDERS.unknown(name))
    return name


class AIReplyNode(_Chained):
    """Enqueue a chatbot reply (the ``ai`` queue) to ``prompt``; the run does not wait for it."""

    type: Literal["ai_reply"]
    prompt: Annotated[str, Field(min_length=1, max_length=8000)]
    provider: Annotated[str, AfterValidator(_registered_provider)] | None = None
    """A registered AI provider; unset: the ai queue's choice (``HUEYARD_AI_PROVIDER``, else
    ``openai`` when configured, else ``echo``)."""
    conversation: Annotated[str, Field(min_length=1, max_length=256)] = "$contactId"


Op = Literal["equals", "not_equals", "contains", "exists", "gt", "lt"]


class Condition(BaseModel):
    """``{var, op, value}``: a test of one variable (a dotted path into nested objects)."""

    model_config = ConfigDict(extra="forbid")

    var: Annotated[str, Field(max_length=256, pattern=VAR_PATH.pattern)]
    op: Op
    value: Scalar = None
    ignore_case: bool = False

    @model_validator(mode="after")
    def _value_fits_the_op(self) -> Self:
        given = "value" in self.model_fields_set
        if self.op == "exists" and given:
            raise ValueError("op 'exists' takes no value; remove value")
        if self.op != "exists" and not given:
            raise ValueError(f"op {self.op!r} needs a value; add value: ...")
        if self.op in ("gt", "lt") and not _number(self.value):
            raise ValueError(f"op {self.op!r} compares numbers; value must be a number")
        if self.op == "contains" and not (isinstance(self.value, str) or _number(self.value)):
            raise ValueError(
                "op 'contains' looks for text (or a list item); value must be text or a number "
                "(write yes/no/on/off in quotes: YAML reads them as booleans)"
            )
        return self


class ConditionNode(_Node):
    """Go to ``then`` when the condition holds, else to ``else``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    type: Literal["condition"]
    when: Annotated[Condition, Field(alias="if")]
    then: Target | None = None
    """Default: the next node in the file."""
    otherwise: Annotated[Target | None, Field(alias="else")] = None
    """Default: the flow ends."""

    def targets(self) -> dict[str, str | None]:
        return {"then": self.then, "else": self.otherwise}


class EndNode(_Node):
    """The run ends here."""

    type: Literal["end"]


FlowNode = Annotated[
    SetNode
    | SendMessageNode
    | SendTemplateNode
    | WaitNode
    | ConditionNode
    | WebhookNode
    | AIReplyNode
    | EndNode,
    Field(discriminator="type"),
]
NODE_TYPES = [
    "send_message",
    "send_template",
    "wait",
    "condition",
    "webhook",
    "ai_reply",
    "set",
    "end",
]


class Flow(BaseModel):
    """One flow file. ``name`` and ``source`` come from the file, not from its text."""

    model_config = ConfigDict(extra="forbid")

    name: Identifier
    source: str
    description: Annotated[str, Field(max_length=500)] = ""
    start: Target | None = None
    max_steps: Annotated[int, Field(ge=1, le=MAX_STEPS)] = DEFAULT_MAX_STEPS
    variables: dict[str, Any] = Field(default_factory=dict)
    nodes: Annotated[list[FlowNode], Field(min_length=1, max_length=MAX_NODES)]

    def node(self, node_id: str) -> Any:
        """The node called ``node_id``, or None."""
        return next((node for node in self.nodes if node.id == node_id), None)

    def first(self) -> str:
        return self.start or self.nodes[0].id

    def after(self, node_id: str) -> str | None:
        """The id of the node after ``node_id`` in the file, or None for the last one."""
        ids = [node.id for node in self.nodes]
        position = ids.index(node_id)
        return ids[position + 1] if position + 1 < len(ids) else None


_FLOW = TypeAdapter(Flow)
_TOP_FIELDS = ["description", "start", "max_steps", "variables", "nodes"]
_NODE_FIELDS: dict[str, list[str]] = {
    "set": ["id", "type", "key", "value", "next"],
    "send_message": ["id", "type", "content", "next"],
    "send_template": ["id", "type", "template", "next"],
    "wait": ["id", "type", "seconds", "next"],
    "condition": ["id", "type", "if", "then", "else"],
    "webhook": ["id", "type", "url", "event", "secret_env", "data", "next"],
    "ai_reply": ["id", "type", "prompt", "provider", "conversation", "next"],
    "end": ["id", "type"],
}
_CONDITION_FIELDS = ["var", "op", "value", "ignore_case"]


# -- conditions ---------------------------------------------------------------------------------


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def lookup(scope: dict[str, Any], path: str) -> tuple[bool, Any]:
    """``(found, value)`` of a dotted path (``contact.city``) in nested objects."""
    current: Any = scope
    for part in path.split("."):
        if not isinstance(current, dict) or part not in current:
            return False, None
        current = current[part]
    return True, current


def holds(condition: Condition, scope: dict[str, Any]) -> bool:
    """Whether ``condition`` holds for ``scope``. Never raises: a missing variable, or one
    of the wrong type, makes every op but ``not_equals`` false.

    - ``exists``: the variable is there and not null;
    - ``equals`` / ``not_equals``: the same value (text compared case-blind with
      ``ignore_case``; ``1`` equals ``1.0``, ``true`` never equals ``1``);
    - ``contains``: text that contains ``value`` as text, or a list holding it;
    - ``gt`` / ``lt``: a number greater / less than ``value``.
    """
    found, actual = lookup(scope, condition.var)
    expected = condition.value
    op = condition.op
    if op == "exists":
        return found and actual is not None
    if op in ("equals", "not_equals"):
        same = found and _same(actual, expected, condition.ignore_case)
        return same if op == "equals" else not same
    if not found:
        return False
    if op == "contains":
        if isinstance(actual, str):
            needle = str(expected)
            if condition.ignore_case:
                return needle.casefold() in actual.casefold()
            return needle in actual
        if isinstance(actual, list):
            return any(_same(item, expected, condition.ignore_case) for item in actual)
        return False
    if not _number(actual):
        return False
    return bool(actual > expected) if op == "gt" else bool(actual < expected)


def _same(actual: Any, expected: Any, ignore_case: bool) -> bool:
    if isinstance(actual, bool) or isinstance(expected, bool):
        return type(actual) is type(expected) and actual == expected
    if ignore_case and isinstance(actual, str) and isinstance(expected, str):
        return actual.casefold() == expected.casefold()
    return bool(actual == expected)


# -- loading ------------------------------------------------------------------------------------


class FlowBook:
    """The flows of one directory, by name."""

    def __init__(self, directory: Path, flows: dict[str, Flow]) -> None:
        self.directory = directory
        self.flows = flows

    def get(self, name: str) -> Flow:
        """The flow called ``name``; :class:`LookupError` lists the defined ones."""
        try:
            return self.flows[name]
        except KeyError:
            raise LookupError(self.unknown(name)) from None

    def unknown(self, name: str) -> str:
        known = ", ".join(sorted(self.flows)) or "none"
        return (
            f"no flow {name!r} in {self.directory} (defined: {known}); add "
            f"{self.directory / (name + '.yaml')} or fix the name"
        )

    def __contains__(self, name: object) -> bool:
        return name in self.flows

    def __len__(self) -> int:
        return len(self.flows)


def load_flows(directory: Path) -> FlowBook:
    """Read and validate every ``*.yaml`` / ``*.yml`` file of ``directory``.

    A directory that does not exist holds no flows. Raises :class:`ConfigError`
    listing every problem of every file, each as ``<file>:<line>: <node and
    field>: <problem and fix>``; then no flow is loaded.
    """
    if not directory.is_dir():
        return FlowBook(directory, {})
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    flows: dict[str, Flow] = {}
    problems: list[str] = []
    for file in files:
        name = file.stem
        if name in flows:
            problems.append(
                f"{file}: flow {name!r} is also defined by {flows[name].source}; "
                "rename or remove one of the files"
            )
            continue
        try:
            text = read_config_file(file, "flow file")
            flows[name] = parse_flow(text, name=name, source=str(file))
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{file}: cannot read the flow file: {exc}")
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        heading = f"{directory}: the flows do not validate; fix these, then start again:"
        raise ConfigError("\n".join([heading, *problems]))
    return FlowBook(directory, flows)


def parse_flow(text: str, *, name: str, source: str) -> Flow:
    """Validate one flow file's text. Raises :class:`ConfigError` listing every problem."""
    document = read_yaml(text, source)
    data = document.data
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}:{document.line(())}: a flow file is a mapping with 'nodes' (a list of "
            f"nodes) and optionally {', '.join(repr(f) for f in _TOP_FIELDS[:-1])}; got "
            f"{type(data).__name__ if data is not None else 'an empty file'}"
        )
    if not re.fullmatch(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$", name):
        raise ConfigError(
            f"{source}: the file name {name!r} is the flow's name and must be 1 to 128 letters, "
            "digits, '_', '.', ':' or '-', starting with a letter or digit; rename the file"
        )
    for reserved in ("name", "source"):
        if reserved in data:
            raise ConfigError(
                f"{source}:{document.line((reserved,))}: {reserved!r} is not a field of a flow "
                f"file (the flow is named by its file, {name!r}); remove it"
            )
    try:
        flow = _FLOW.validate_python({**data, "name": name, "source": source})
    except ValidationError as exc:
        problems = [
            describe(document, error, _where(data), _allowed(data)) for error in exc.errors()
        ]
        raise ConfigError("\n".join(problems)) from None
    problems = _graph_problems(flow, document)
    if problems:
        raise ConfigError("\n".join(problems))
    return flow


def _node_label(data: dict[str, Any], index: int) -> str:
    nodes = data.get("nodes")
    raw = nodes[index] if isinstance(nodes, list) and index < len(nodes) else None
    if not isinstance(raw, dict):
        return f"nodes[{index}]"
    node_id = raw.get("id")
    kind = raw.get("type")
    label = f"node {node_id!r}" if isinstance(node_id, str) else f"nodes[{index}]"
    return f"{label} ({kind})" if isinstance(kind, str) else label


def _where(data: dict[str, Any]) -> Any:
    def where(path: tuple[str | int, ...], loc: tuple[str | int, ...]) -> str:
        if len(loc) >= 2 and loc[0] == "nodes" and isinstance(loc[1], int):
            label = _node_label(data, loc[1])
            field = [str(p) for p in loc[2:] if p not in NODE_TYPES]
            if not field:
                kinds = ", ".join(NODE_TYPES)
                return f"{label}, field 'type' (one of {kinds})"
            return f"{label}, field {'.'.join(field)!r}"
        return f"field {'.'.join(str(p) for p in loc)!r}" if loc else "the flow"

    return where


def _allowed(data: dict[str, Any]) -> Any:
    def allowed(path: tuple[str | int, ...]) -> list[str]:
        if len(path) >= 2 and path[0] == "nodes" and isinstance(path[1], int):
            nodes = data.get("nodes")
            raw = nodes[path[1]] if isinstance(nodes, list) else None
            kind = raw.get("type") if isinstance(raw, dict) else None
            if len(path) >= 3 and path[2] == "if":
                return _CONDITION_FIELDS
            return _NODE_FIELDS.get(str(kind), ["id", "type"])
        return _TOP_FIELDS

    return allowed


def _graph_problems(flow: Flow, document: YamlDocument) -> list[str]:
    """Node ids unique, every ``start``/``next``/``then``/``else`` naming a node, no wait
    with nothing after it."""
    source = document.source
    problems: list[str] = []
    seen: dict[str, int] = {}
    ids = [node.id for node in flow.nodes]
    for index, node in enumerate(flow.nodes):
        if node.id in seen:
            line = document.line(("nodes", index, "id"))
            problems.append(
                f"{source}:{line}: node {node.id!r} ({node.type}), field 'id': repeated (first "
                f"at nodes[{seen[node.id]}]); give every node its own id"
            )
        seen.setdefault(node.id, index)
        for field, target in node.targets().items():
            if target is not None and target not in ids:
                line = document.line(("nodes", index, field))
                problems.append(
                    f"{source}:{line}: node {node.id!r} ({node.type}), field {field!r}: no node "
                    f"{target!r} in this flow; use one of {', '.join(ids)}"
                )
        if isinstance(node, WaitNode) and node.next is None and index == len(ids) - 1:
            line = document.line(("nodes", index))
            problems.append(
                f"{source}:{line}: node {node.id!r} (wait): nothing runs after this wait; add the "
                "nodes that follow it, or remove it"
            )
    if flow.start is not None and flow.start not in ids:
        problems.append(
            f"{source}:{document.line(('start',))}: field 'start': no node {flow.start!r} in "
            f"this flow; use one of {', '.join(ids)}"
        )
    return problems
