"""The ``flows`` queue: run a flow of ``config/flows/`` for one contact.

The payload names the flow and the contact; the flow itself is a YAML file
(:mod:`pipelines._flowdefs`), validated when the process starts::

    from pipelines.flows import execute_flow

    execute_flow.enqueue({"flow": "welcome", "contactId": "c-42", "phone": "+14155550123",
                          "trigger": "contact.created", "variables": {"name": "Ada"}})

A job runs the flow's nodes until a ``wait`` or the end. A ``wait`` enqueues
the continuation of the same run, delayed: a job of this handler whose payload
carries the run's state (``flow_run``, the next ``node``, the ``variables``,
the ``steps`` taken, the ``previous_job``); no worker sleeps. A run executes at
most the flow's ``max_steps`` nodes in all, so a loop ends.

Everything a node does is an enqueue with the job key
``<run id>:<node id>:<step>`` (kept :data:`KEY_TTL` after the job finished): a
re-run of the same step (a retry, a recovered job) finds the key and sends
nothing twice, while a node visited again by a loop (a later step) still runs.

A node whose payload, once its ``$name`` placeholders are filled, is not one its
handler takes (a text over 4096 characters, a prompt over 8000, a conversation id
with a space, a webhook secret under 16 characters) fails the job at once with a
:class:`FlowError` naming the flow, the node and the field: the same variables
would render the same payload on every retry.
"""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path
from string import Template
from typing import Annotated, Any, Self, TypeVar

from huey.exceptions import CancelExecution
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from framework import current_job, handler
from framework.checks import CheckReport
from framework.config import config_path
from framework.errors import PayloadError
from framework.handlers import Handler
from pipelines._flowdefs import (
    MAX_STEPS,
    AIReplyNode,
    ConditionNode,
    EndNode,
    Flow,
    FlowBook,
    SendMessageNode,
    SendTemplateNode,
    SetNode,
    WaitNode,
    WebhookNode,
    holds,
    load_flows,
)
from pipelines._providers import Identifier, PhoneNumber
from pipelines.ai import AIRequest, generate_reply
from pipelines.messages import OutboundMessage, send_message
from pipelines.webhooks import WebhookDelivery, deliver_webhook

__all__ = [
    "FLOWS_DIR_ENV",
    "KEY_TTL",
    "FlowError",
    "FlowRun",
    "execute_flow",
    "flow_book",
    "flows_dir",
]

FLOWS_DIR_ENV = "HUEYARD_FLOWS_DIR"
KEY_TTL = 7 * 24 * 3600
"""Seconds a node's job key stays taken after its job finished: a re-run of a flow step
within them enqueues nothing twice."""

_SENDS = (SendMessageNode, SendTemplateNode)

M = TypeVar("M", bound=BaseModel)

_NODE_FIELDS = {
    "content": "content",
    "template": "template",
    "conversationId": "conversation",
    "prompt": "prompt",
    "secret": "secret_env",
    "url": "url",
    "event": "event",
    "body": "data",
}
"""The field of a node each field of the payload it renders comes from."""


# -- the flows of this process ------------------------------------------------------------------


def flows_dir() -> Path:
    """``$HUEYARD_FLOWS_DIR``, else ``flows/`` next to the config file (``config/flows``)."""
    configured = os.environ.get(FLOWS_DIR_ENV, "").strip()
    return Path(configured) if configured else config_path().parent / "flows"


_books: dict[Path, FlowBook] = {}
_books_lock = threading.Lock()


def flow_book() -> FlowBook:
    """The flows of :func:`flows_dir`, read once per process (restart to reload them).

    Raises :class:`~framework.errors.ConfigError` naming every bad file, line and field.
    """
    directory = flows_dir()
    with _books_lock:
        book = _books.get(directory)
        if book is None:
            book = _books[directory] = load_flows(directory)
        return book


def check_flows(settings: Any) -> CheckReport:
    """The start-up check (:mod:`framework.checks`): load the flows; list them."""
    book = flow_book()
    rows = [
        [
            flow.name,
            str(len(flow.nodes)),
            flow.first(),
            str(flow.max_steps),
            ", ".join(sorted({node.type for node in flow.nodes})),
            flow.source,
        ]
        for flow in sorted(book.flows.values(), key=lambda flow: flow.name)
    ]
    count = f"{len(book)} flow{'s' if len(book) != 1 else ''}"
    headers = ["flow", "nodes", "start", "max steps", "node types", "file"]
    return CheckReport("flows", headers, rows, f"{count} from {book.directory}")


# -- the payload --------------------------------------------------------------------------------


def _defined_flow(name: str) -> str:
    book = flow_book()
    if name not in book:
        raise ValueError(book.unknown(name))
    return name


class FlowRun(BaseModel):
    """A flow to run for one contact: a trigger (the first job of a run) or a continuation.

    A producer sets ``flow``, ``contactId``, ``phone`` (when the flow sends
    messages), ``trigger`` and ``variables``. The flow sets the rest on the
    continuations it enqueues.
    """

    model_config = ConfigDict(extra="forbid")

    flow: Annotated[Identifier, AfterValidator(_defined_flow)]
    contactId: Identifier
    phone: PhoneNumber | None = None
    trigger: Annotated[str, Field(min_length=1, max_length=128)] = "manual"
    variables: dict[str, Any] = Field(default_factory=dict)
    flow_run: Identifier | None = None
    """The run's id: the id of its first job."""
    node: Identifier | None = None
    """Where the run goes on: default the flow's ``start``."""
    steps: Annotated[int, Field(ge=0, le=MAX_STEPS)] = 0
    """Nodes the run has executed so far."""
    previous_job: Identifier | None = None
    """The job that enqueued this continuation (the dashboard links to it)."""

    @model_validator(mode="before")
    @classmethod
    def _not_inline(cls, data: Any) -> Any:
        if isinstance(data, dict) and ("nodes" in data or "flowId" in data):
            raise ValueError(
                "inline flows (flowId + nodes + context) are no longer run: put the nodes in "
                "config/flows/<flowId>.yaml and enqueue {'flow': '<flowId>', 'contactId': ..., "
                "'phone': ..., 'variables': {...}} (docs/pipelines.md, flows)"
            )
        return data

    @model_validator(mode="after")
    def _phone_for_sends(self) -> Self:
        flow = flow_book().flows.get(self.flow)
        sends = [node.id for node in flow.nodes if isinstance(node, _SENDS)] if flow else []
        if sends and self.phone is None:
            raise ValueError(
                f"flow {self.flow!r} sends messages (node {sends[0]!r}); add the contact's "
                "phone (E.164, e.g. +14155550123)"
            )
        return self


class FlowError(CancelExecution):  # type: ignore[misc]
    """The run can not go on, and a retry would fail the same way: the job fails at once."""

    def __init__(self, message: str) -> None:
        CancelExecution.__init__(self, message, retry=False)


# -- running ------------------------------------------------------------------------------------


class _Run:
    """One job's share of a flow run: the nodes from ``payload.node`` to a wait or the end."""

    def __init__(self, flow: Flow, payload: FlowRun, job_id: str | None) -> None:
        self.flow = flow
        self.payload = payload
        self.job_id = job_id
        self.run_id = payload.flow_run or job_id or uuid.uuid4().hex
        self.variables = {**flow.variables, **payload.variables}
        self.steps = payload.steps
        self.executed: list[str] = []
        self.enqueued: dict[str, str] = {}
        self.continuation: str | None = None

    def scope(self) -> dict[str, Any]:
        """What conditions and ``$name`` placeholders read: the run's facts, then the
        variables (which win)."""
        facts = {
            "contactId": self.payload.contactId,
            "phone": self.payload.phone,
            "trigger": self.payload.trigger,
            "flow": self.flow.name,
            "flowRun": self.run_id,
        }
        return {**facts, **self.variables}

    def render(self, text: str) -> str:
        values = {k: v if isinstance(v, str) else str(v) for k, v in self.scope().items()}
        return Template(text).safe_substitute(values)

    def execute(self) -> str:
        """Run the nodes; return ``"completed"`` or ``"waiting"``."""
        node_id: str | None = self.payload.node or self.flow.first()
        while node_id is not None:
            node = self.flow.node(node_id)
            if node is None:
                raise FlowError(
                    f"flow {self.flow.name!r} ({self.flow.source}) has no node {node_id!r} any "
                    f"more (the file changed while run {self.run_id} waited); start the run "
                    "again, or restore the node"
                )
            if self.steps >= self.flow.max_steps:
                raise FlowError(
                    f"flow {self.flow.name!r} run {self.run_id} reached its limit of "
                    f"{self.flow.max_steps} steps at node {node_id!r}: a loop that never "
                    f"ends? Give the loop an exit, or raise max_steps in {self.flow.source}"
                )
            self.steps += 1
            self.executed.append(node.id)
            if isinstance(node, WaitNode):
                self._wait(node)
                return "waiting"
            if isinstance(node, EndNode):
                return "completed"
            node_id = self._step(node)
        return "completed"

    def _key(self, node_id: str) -> dict[str, Any]:
        return {"key": f"{self.run_id}:{node_id}:{self.steps}", "key_ttl": KEY_TTL}

    def _following(self, node: Any) -> str | None:
        return node.next if node.next is not None else self.flow.after(node.id)

    def _step(self, node: Any) -> str | None:
        """Do what ``node`` does; return the id of the node to run next (None: the end)."""
        if isinstance(node, ConditionNode):
            if holds(node.when, self.scope()):
                return node.then if node.then is not None else self.flow.after(node.id)
            return node.otherwise
        if isinstance(node, SetNode):
            self.variables[node.key] = node.value
        elif isinstance(node, SendMessageNode | SendTemplateNode):
            self._enqueue(node, send_message, self._message(node))
        elif isinstance(node, WebhookNode):
            self._enqueue(node, deliver_webhook, self._webhook(node))
        elif isinstance(node, AIReplyNode):
            request = {
                "conversationId": self.render(node.conversation),
                "prompt": self.render(node.prompt),
            }
            if node.provider is not None:
                request["provider"] = node.provider
            self._enqueue(node, generate_reply, self._rendered(node, AIRequest, request))
        return self._following(node)

    def _enqueue(self, node: Any, handler: Handler[Any], payload: BaseModel) -> None:
        try:
            self.enqueued[node.id] = handler.enqueue(payload, **self._key(node.id))
        except PayloadError as exc:  # too large once rendered, not JSON: the same next time
            raise FlowError(
                f"{self._where(node)} renders a payload {handler.name} refuses: {exc}"
            ) from None

    def _where(self, node: Any) -> str:
        return f"node {node.id!r} ({node.type}) of flow {self.flow.name!r} ({self.flow.source})"

    def _rendered(
        self, node: Any, model: type[M], data: dict[str, Any], labels: dict[str, str] | None = None
    ) -> M:
        """``data`` (a node's fields, ``$name`` filled in) as ``model``; a :class:`FlowError`
        naming the node's fields it does not take (``labels``: how to name a field)."""
        names = {**_NODE_FIELDS, **(labels or {})}
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            problems = []
            for error in exc.errors(include_input=False, include_url=False):
                location = [str(part) for part in error["loc"]]
                field = names.get(location[0], location[0]) if location else "?"
                inner = ".".join(location[1:])
                problems.append(f"{field}{'.' + inner if inner else ''}: {error['msg']}")
            raise FlowError(
                f"{self._where(node)}: once its $name placeholders are filled, "
                f"{'; '.join(problems)}. Failed at once: the same variables fail the same "
                f"way on every retry; fix the node in {self.flow.source} or the variables "
                f"the run was given ({', '.join(sorted(self.variables)) or 'none'})"
            ) from None

    def _message(self, node: SendMessageNode | SendTemplateNode) -> OutboundMessage:
        assert self.payload.phone is not None  # FlowRun refuses a sending flow without one
        if isinstance(node, SendMessageNode):
            data: dict[str, Any] = {"to": self.payload.phone, "content": self.render(node.content)}
        else:
            template = self._filled(node.template.model_dump())
            data = {"to": self.payload.phone, "type": "template", "template": template}
        return self._rendered(node, OutboundMessage, data)

    def _filled(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.render(value)
        if isinstance(value, list):
            return [self._filled(item) for item in value]
        if isinstance(value, dict):
            return {key: self._filled(item) for key, item in value.items()}
        return value

    def _webhook(self, node: WebhookNode) -> WebhookDelivery:
        secret = os.environ.get(node.secret_env, "")
        if not secret:
            raise FlowError(
                f"node {node.id!r} of flow {self.flow.name!r} ({self.flow.source}) signs its "
                f"webhook with the secret in ${node.secret_env}, which is not set; set it in "
                "the consumer's environment (16 to 512 characters shared with the receiver)"
            )
        body = {
            "flow": self.flow.name,
            "flowRun": self.run_id,
            "node": node.id,
            "contactId": self.payload.contactId,
            "trigger": self.payload.trigger,
            "variables": self.variables,
            "data": node.data,
        }
        data = {"url": node.url, "event": node.event, "body": body, "secret": secret}
        where = {"secret": f"secret_env (the secret in ${node.secret_env})"}
        return self._rendered(node, WebhookDelivery, data, where)

    def _wait(self, node: WaitNode) -> None:
        after = self._following(node)
        assert after is not None  # a wait with nothing after it is refused at load
        state = self.payload.model_copy(
            update={
                "flow_run": self.run_id,
                "node": after,
                "variables": self.variables,
                "steps": self.steps,
                "previous_job": self.job_id,
            }
        )
        try:
            self.continuation = execute_flow.enqueue(
                state, delay=node.seconds, **self._key(node.id)
            )
        except PayloadError as exc:  # the variables grew past the payload limit
            raise FlowError(
                f"{self._where(node)} can not enqueue the run's continuation: {exc}"
            ) from None


@handler("flows")
def execute_flow(payload: FlowRun) -> dict[str, Any]:
    """Run the flow from ``payload.node`` to a wait or the end.

    Returns ``{"flow", "flowRun", "contactId", "status", "executed", "steps",
    "enqueued", "continuation"}``: ``status`` is ``completed`` or ``waiting``;
    ``executed`` the node ids this job ran; ``enqueued`` the job each node
    enqueued, by node id; ``continuation`` the delayed job that goes on after
    a wait. Raises :class:`FlowError` (failed at once) when the run hits
    ``max_steps`` or names a node the flow no longer has.
    """
    flow = flow_book().get(payload.flow)
    job = current_job()
    continued = [
        name for name in ("flow_run", "node", "steps") if getattr(payload, name) not in (None, 0)
    ]
    if job is not None and continued and payload.previous_job is None:
        # a trigger that names another run's id would find that run's keys held and
        # report its jobs as this one's, messaging nobody
        raise FlowError(
            f"{', '.join(continued)} given in a trigger: the flow sets them (with "
            "previous_job) on the continuations it enqueues; leave them out (a run's id "
            "is its first job's)"
        )
    run = _Run(flow, payload, job.id if job is not None else None)
    status = run.execute()
    return {
        "flow": flow.name,
        "flowRun": run.run_id,
        "contactId": payload.contactId,
        "status": status,
        "executed": run.executed,
        "steps": run.steps,
        "enqueued": run.enqueued,
        "continuation": run.continuation,
    }


execute_flow.startup_check(check_flows)
