"""The Lua sources Redis runs: each script carries exactly the library functions it calls."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from framework.scripts import SCRIPTS, _library, source


def _calls(text: str, name: str) -> bool:
    return re.search(rf"\b{name}\(", text) is not None


def _needed(body: str) -> list[str]:
    """The library functions ``body`` calls, with the ones those call, in library order:
    one search per function, until nothing new is found."""
    library = _library()
    texts = [body]
    wanted: set[str] = set()
    while True:
        found = {name for name in library if any(_calls(text, name) for text in texts)}
        if found <= wanted:
            return [name for name in library if name in wanted]
        wanted |= found
        texts = [body, *(library[name] for name in wanted)]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_a_script_defines_the_library_functions_it_calls_and_no_other(name: str) -> None:
    body = (resources.files("framework") / "lua" / f"{name}.lua").read_text(encoding="utf-8")
    text = source(name)
    assert text.endswith(body)
    included = [function for function, block in _library().items() if block in text]
    assert included == _needed(body)


def test_some_script_needs_a_function_only_another_function_calls() -> None:
    """The case the transitive search is for is one the scripts have."""
    library = _library()
    bodies = {
        name: (resources.files("framework") / "lua" / f"{name}.lua").read_text(encoding="utf-8")
        for name in SCRIPTS
    }
    assert any(
        not _calls(body, function)
        for name, body in bodies.items()
        for function, block in library.items()
        if block in source(name)
    )
