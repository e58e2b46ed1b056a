"""The ``flows`` queue: run an automation flow's nodes for one contact.

A flow is the list of nodes the trigger carries, run in order against a
``context`` dict:

- ``set``: ``context[key] = value``.
- ``condition``: go on only if ``context[key] == equals``; otherwise the flow stops.
- ``send_message``: enqueue ``messages.send_message`` to the contact's ``phone``;
  ``$name`` placeholders in ``content`` are filled from the context.
- ``wait``: stop here and enqueue the rest of the flow ``seconds`` later.

::

    from pipelines.flows import execute_flow

    execute_flow.enqueue({
        "flowId": "welcome", "contactId": "c-42", "trigger": "contact.created",
        "phone": "+14155550123", "context": {"name": "Ada"},
        "nodes": [
            {"id": "greet", "type": "send_message", "content": "Hi $name!"},
            {"id": "pause", "type": "wait", "seconds": 86400},
            {"id": "follow-up", "type": "send_message", "content": "How is it going?"},
        ],
    })
"""

from __future__ import annotations

from string import Template
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from framework import handler
from pipelines._providers import Identifier, PhoneNumber
from pipelines.messages import MAX_CONTENT, OutboundMessage, send_message

__all__ = ["FlowNode", "FlowTrigger", "execute_flow"]

MAX_NODES = 200
MAX_WAIT = 30 * 86400

Scalar = str | int | float | bool | None
Key = Annotated[str, Field(min_length=1, max_length=128)]


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Identifier


class SetNode(_Node):
    type: Literal["set"]
    key: Key
    value: Scalar


class ConditionNode(_Node):
    type: Literal["condition"]
    key: Key
    equals: Scalar


class SendMessageNode(_Node):
    type: Literal["send_message"]
    content: Annotated[str, Field(min_length=1, max_length=MAX_CONTENT)]


class WaitNode(_Node):
    type: Literal["wait"]
    seconds: Annotated[float, Field(gt=0, le=MAX_WAIT)]


FlowNode = Annotated[
    SetNode | ConditionNode | SendMessageNode | WaitNode, Field(discriminator="type")
]


class FlowTrigger(BaseModel):
    """A flow triggered for one contact: what happened, the contact, the nodes to run."""

    model_config = ConfigDict(extra="forbid")

    flowId: Identifier
    contactId: Identifier
    trigger: Annotated[str, Field(min_length=1, max_length=128)]
    phone: PhoneNumber | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    nodes: Annotated[list[FlowNode], Field(max_length=MAX_NODES)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_nodes(self) -> Self:
        ids = [node.id for node in self.nodes]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"node ids must be unique; repeated: {', '.join(duplicates)}")
        if self.phone is None and any(isinstance(n, SendMessageNode) for n in self.nodes):
            raise ValueError("a send_message node needs the contact's phone (E.164)")
        return self


@handler("flows")
def execute_flow(payload: FlowTrigger) -> dict[str, Any]:
    """Run the nodes in order; return ``{"flowId", "contactId", "status", "executed"}``.

    ``status`` is ``completed``, ``stopped`` (a condition did not hold) or
    ``waiting`` (the rest was enqueued for later). ``executed`` lists the ids
    of the nodes run by this job. A failed attempt runs every node again on
    retry, so messages are sent at least once.
    """
    context = dict(payload.context)
    executed: list[str] = []
    status = "completed"
    for position, node in enumerate(payload.nodes):
        executed.append(node.id)
        if isinstance(node, SetNode):
            context[node.key] = node.value
        elif isinstance(node, ConditionNode):
            if context.get(node.key) != node.equals:
                status = "stopped"
                break
        elif isinstance(node, SendMessageNode):
            assert payload.phone is not None  # checked by FlowTrigger
            content = Template(node.content).safe_substitute(context)
            send_message.enqueue(OutboundMessage(to=payload.phone, content=content))
        elif position + 1 < len(payload.nodes):  # a wait before more nodes
            rest = payload.model_copy(
                update={"context": context, "nodes": payload.nodes[position + 1 :]}
            )
            execute_flow.enqueue(rest, delay=node.seconds)
            status = "waiting"
            break
    return {
        "flowId": payload.flowId,
        "contactId": payload.contactId,
        "status": status,
        "executed": executed,
    }
