"""Job ids: version-7 UUIDs whose first 48 bits say when the job was enqueued."""

from __future__ import annotations

import time
import uuid

import pytest

from framework.errors import JobActionError
from framework.ids import check_job_id, created_ms, new_job_id


def test_a_new_id_is_a_version_7_uuid_that_says_when_it_was_made() -> None:
    before = time.time_ns() // 1_000_000
    job_id = new_job_id()
    after = time.time_ns() // 1_000_000
    parsed = uuid.UUID(job_id)
    assert str(parsed) == job_id and parsed.version == 7 and parsed.variant == uuid.RFC_4122
    ms = created_ms(job_id)
    assert ms is not None and before <= ms <= after


def test_ids_made_one_after_another_sort_in_the_order_they_were_made() -> None:
    ids = [new_job_id() for _ in range(2000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


@pytest.mark.parametrize(
    "job_id",
    [
        "f47fb240-216d-40d7-9d39-e184aadffd74",  # version 4: an older hueyard's random id
        "01a22dc8-b794-7457-c1fb-1eea4233b50f",  # not the RFC variant
        "01a22dc8xb794-7457-91fb-1eea4233b50f",
        "0ga22dc8-b794-7457-91fb-1eea4233b50f",
        "01A22DC8-B794-7457-91FB-1EEA4233B50F",  # not how ids are written
        "a-string",
        "",
    ],
)
def test_an_id_that_is_not_a_version_7_uuid_says_nothing(job_id: str) -> None:
    assert created_ms(job_id) is None


@pytest.mark.parametrize(
    "job_id",
    [
        "01a22dc8-b794-7457-91fb-1eea4233b50f",  # what hueyard makes
        "f47fb240-216d-40d7-9d39-e184aadffd74",  # an older hueyard's: its records remain
        "ghost",  # an entry planted in a set by hand: it can be read and removed
    ],
)
def test_every_id_a_set_can_hold_as_a_job_is_a_job_id(job_id: str) -> None:
    assert check_job_id(job_id) == job_id


@pytest.mark.parametrize(
    ("job_id", "message"),
    [
        (
            "01a22dc8-b794-7457-91fb-1eea4233b50f:logs",
            "'01a22dc8-b794-7457-91fb-1eea4233b50f:logs' is not a job id: a job id never "
            "contains ':' (hueyard's ids are UUIDs); '<id>:logs' and '<id>:children' name a "
            "job's log list and children set, which are not jobs",
        ),
        ("01a22dc8-b794-7457-91fb-1eea4233b50f:children", "never contains ':'"),
        ("a:b", "never contains ':'"),
        (":", "never contains ':'"),
        ("", "'' is not a job id; give the id of a job, a UUID"),
        (None, "None is not a job id"),
        (b"01a22dc8-b794-7457-91fb-1eea4233b50f", "is not a job id"),
    ],
)
def test_an_id_that_would_name_another_key_is_refused_saying_why(
    job_id: object, message: str
) -> None:
    with pytest.raises(JobActionError) as refused:
        check_job_id(job_id)
    assert message in str(refused.value)
