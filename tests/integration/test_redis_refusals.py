"""Errors Redis answers that are not about hueyard's keys say what they are about.

A database number the server does not have, against the real server (16
databases); an ACL refusal and an unknown command, as redis-py raises them.
"""

from __future__ import annotations

import pytest
import redis

from framework.errors import StorageError
from framework.handlers import HandlerRegistry
from framework.jobs import Jobs
from framework.scripts import storage_error
from tests.conftest import TEST_HOST, TEST_PORT, AppFactory


def test_a_database_the_server_does_not_have_is_named_as_the_problem(
    make_app: AppFactory,
) -> None:
    # Given an app whose URL names database 99 of a server with 16
    app = make_app("[queues.work]", HandlerRegistry(), url=f"redis://{TEST_HOST}:{TEST_PORT}/99")

    # When a command reads the queues
    with pytest.raises(StorageError) as caught:
        Jobs(app).counts("work")

    # Then the error names the database number and where it is set, not a key
    message = str(caught.value)
    assert "DB index is out of range" in message
    assert "The database number of [redis] url (or REDIS_DB)" in message
    assert "did not write" not in message


@pytest.mark.parametrize(
    ("reply", "names"),
    [
        ("NOPERM User crm has no permissions to run the 'evalsha' command", "(ACL)"),
        ("ERR unknown command 'FCALL', with args beginning with: ", "lacks a command"),
        ("ERR value is not an integer or out of range", "did not write"),
    ],
    ids=["acl", "unknown-command", "data"],
)
def test_each_refusal_gets_the_hint_of_its_kind(reply: str, names: str) -> None:
    error = storage_error(redis.ResponseError(reply), "jobs.counts")
    assert str(error).startswith(f"Redis answered jobs.counts with an error: {reply}. ")
    assert names in str(error)
