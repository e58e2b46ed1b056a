"""Compiling ``config/queues.toml`` and the registered handlers into Huey.

Each ``[queues.<name>]`` becomes one :class:`QueueRuntime`: its resolved
policy, its own Huey instance (a :class:`~framework.execution.QueueHuey`
on a :class:`~framework.storage.JobStorage`) and one Huey task class per
handler, named ``<queue>.<handler>``. A task class carries no policy of its
own: attempts, backoff, priority and timeout are decided per job by
:mod:`framework.policy`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from huey import Huey
from huey.api import Task

from framework.clients import RedisClients
from framework.config import config_path
from framework.errors import UnknownHandlerError
from framework.execution import QueueHuey
from framework.handlers import HandlerRegistry, HandlerSpec
from framework.keys import Keys
from framework.masking import Masker
from framework.settings import QueuePolicy, Settings
from framework.storage import BLOCKING_READ_TIMEOUT, JobStorage, Replicas

__all__ = ["QueueRuntime", "compile_queues"]

logger = logging.getLogger("hueyard")


@dataclass
class QueueRuntime:
    """One queue: its resolved policy, its Huey instance, its task classes."""

    policy: QueuePolicy
    huey: QueueHuey
    tasks: dict[str, type[Task]] = field(default_factory=dict)
    handlers: dict[str, HandlerSpec] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.policy.name

    @property
    def storage(self) -> JobStorage:
        return self.huey.storage


def compile_queues(
    settings: Settings,
    registry: HandlerRegistry,
    *,
    clients: RedisClients,
    keys: Keys,
) -> tuple[dict[str, QueueRuntime], list[str]]:
    """Every declared queue, with the handlers registered for it; and the warnings.

    Raises :class:`UnknownHandlerError` when a handler names a queue the
    config does not declare.
    """
    unknown = [spec for spec in registry if spec.queue not in settings.queues]
    if unknown:
        declared = ", ".join(settings.queue_names)
        lines = [
            f"{spec.location} is registered for queue {spec.queue!r}, which "
            f"the config ({config_path()}) does not declare"
            for spec in unknown
        ]
        raise UnknownHandlerError(
            "; ".join(lines) + f". Declared queues: {declared}. Add a "
            "[queues.<name>] table or fix the queue name in @handler(...)"
        )
    queues: dict[str, QueueRuntime] = {}
    warnings: list[str] = []
    masker = Masker.of(settings)
    for policy in settings.policies():
        huey = QueueHuey(
            policy.name,
            storage_class=JobStorage,
            clients=clients,
            keys=keys,
            policy=policy,
            consumer=settings.consumer,
            # a blocking read must end well within the socket's timeout, or an idle
            # worker's wait would read as Redis not answering
            read_timeout=min(BLOCKING_READ_TIMEOUT, settings.redis.socket_timeout / 2),
            replicas=Replicas(settings.redis.wait_replicas, settings.redis.wait_timeout),
            masker=masker,
        )
        runtime = QueueRuntime(policy=policy, huey=huey)
        for spec in registry.for_queue(policy.name):
            spec.payload_model  # noqa: B018 - resolve annotations now, not at 3 a.m.
            runtime.tasks[spec.name] = _task_class(huey, policy, spec)
            runtime.handlers[spec.name] = spec
        if not runtime.tasks:
            warnings.append(
                f"queue {policy.name!r} has no handler; its jobs wait until one is "
                "registered with @handler(" + repr(policy.name) + ")"
            )
        queues[policy.name] = runtime
    return queues, warnings


def _task_class(huey: Huey, policy: QueuePolicy, spec: HandlerSpec) -> type[Task]:
    """Huey's task class for one handler: it runs the handler on the job's payload."""

    def execute(task: Task) -> Any:
        (payload,) = task.args or (None,)
        return spec.call(payload)

    attributes: dict[str, Any] = {
        "__module__": policy.name,  # Huey's task name is "<module>.<class>": "<queue>.<handler>"
        "__doc__": spec.func.__doc__,
        "context": False,
        "execute": execute,
    }
    task_class = type(spec.short_name, (Task,), attributes)
    register: Callable[[type[Task]], Any] = huey._registry.register
    register(task_class)
    return task_class
