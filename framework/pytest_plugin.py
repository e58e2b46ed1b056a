"""hueyard's pytest fixtures, for testing your own handlers (docs/testing.md).

pytest loads this module by itself wherever hueyard is installed (the
``pytest11`` entry point ``hueyard``); ``-p no:hueyard`` leaves it out. With
plugin autoloading off (``PYTEST_DISABLE_PLUGIN_AUTOLOAD``), name it in your
``conftest.py``: ``pytest_plugins = ["framework.pytest_plugin"]``.

::

    def test_the_welcome_email_is_sent(immediate_app: Hueyard) -> None:
        job_id = send_welcome.enqueue({"email": "ada@example.com"})
        assert framework.result(job_id) == {"sent": True}
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from framework.application import Hueyard
from framework.testing import immediate

__all__ = ["immediate_app"]


@pytest.fixture
def immediate_app() -> Iterator[Hueyard]:
    """The process's app (``framework.get_app()``) in test mode for one test, its jobs kept
    in a fresh in-memory store: every enqueue runs its jobs before it returns
    (:func:`framework.testing.immediate`)."""
    with immediate() as app:
        yield app
