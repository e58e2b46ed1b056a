"""A job's message, filled into a template, is exactly what Huey itself would write."""

from __future__ import annotations

import datetime
import enum
import math
import uuid

import pytest
from huey import MemoryHuey
from huey.api import Task

from framework.errors import HueyardError, SerializationError
from framework.messages import MessageTemplate, new_job_id
from framework.serializer import JSONSerializer


class Level(enum.IntEnum):
    HIGH = 1


PAYLOADS = [
    None,
    0,
    "plain text",
    'quotes " and \\ and ✓ and \u2028',
    [1, 2.5, None, True, "x"],
    {"to": "+4915112345678", "metadata": {"source": "campaign", "ids": [1, 2]}},
    {"tuple": (1, (2, 3)), "when": datetime.datetime(2025, 11, 6, 10, 0, 0)},
    {"__hy": "msg", "v": ["a user dict that looks like a tag"]},
    {"level": Level.HIGH, "delay": datetime.timedelta(seconds=90)},
    [{"deep": [{"deeper": [[[]]]}]}],
]


@pytest.fixture
def huey() -> MemoryHuey:
    return MemoryHuey("templates", serializer=JSONSerializer())


def task_class(huey: MemoryHuey, **defaults: object) -> type[Task]:
    attributes = {"__module__": "messages", "context": False, "execute": lambda task: None}
    attributes.update({f"default_{name}": value for name, value in defaults.items()})
    cls = type("send_message", (Task,), attributes)
    huey._registry.register(cls)
    return cls


@pytest.mark.parametrize("payload", PAYLOADS, ids=range(len(PAYLOADS)))
@pytest.mark.parametrize("priority", [-1, -5, -10, 0])
def test_the_rendered_message_is_byte_for_byte_what_huey_writes(
    huey: MemoryHuey, payload: object, priority: int
) -> None:
    # Given a task class with a queue's policy, and Huey's own serialization
    cls = task_class(huey, retries=2, retry_delay=5.0, retry_backoff=2, timeout=30)
    job_id = new_job_id()
    expected = huey.serialize_task(cls((payload,), {}, id=job_id, priority=priority))
    # When the template renders the same job
    rendered = MessageTemplate(huey, cls).render(job_id, priority, payload)
    # Then the bytes are the same, and Huey reads back the job
    assert rendered == expected
    task = huey.deserialize_task(rendered)
    assert (task.id, task.priority, task.retries, task.timeout) == (job_id, priority, 2, 30)
    assert task.args == (payload,)


def test_a_task_class_without_defaults_renders_too(huey: MemoryHuey) -> None:
    cls = task_class(huey)
    job_id = new_job_id()
    expected = huey.serialize_task(cls(({"n": 1},), {}, id=job_id, priority=-5))
    assert MessageTemplate(huey, cls).render(job_id, -5, {"n": 1}) == expected


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"when": {1, 2}}, "cannot store a value of type set as JSON"),
        ({"amount": math.nan}, "use null or a finite number"),
        ({1: "x"}, "non-string keys"),
    ],
)
def test_a_payload_that_is_not_json_is_refused(
    huey: MemoryHuey, payload: object, message: str
) -> None:
    template = MessageTemplate(huey, task_class(huey))
    with pytest.raises(SerializationError, match=message):
        template.render(new_job_id(), -5, payload)


def test_job_ids_are_random_version_4_uuids_in_their_text_form() -> None:
    ids = {new_job_id() for _ in range(1000)}
    assert len(ids) == 1000
    for job_id in ids:
        parsed = uuid.UUID(job_id)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == job_id


def test_a_huey_that_writes_another_message_layout_is_refused_at_start_up() -> None:
    # Given a Huey whose messages do not carry the task's priority
    class OtherHuey(MemoryHuey):
        def serialize_task(self, task: Task) -> bytes:
            return super().serialize_task(task).replace(b"@hueyard:priority@", b"0")

    huey = OtherHuey("other", serializer=JSONSerializer())
    # Then no template is made, and the error says what to install
    with pytest.raises(HueyardError, match=r"huey>=3.0,<4"):
        MessageTemplate(huey, task_class(huey))
