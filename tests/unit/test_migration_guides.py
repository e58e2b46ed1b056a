"""The migration guides stay true.

``docs/coming-from-bull.md`` names every environment variable, endpoint, option, call,
queue and Bull Board feature of the original system's documentation
(``spec/original-system.md``, read with regexes), and every TOML snippet of either guide
is a valid ``config/queues.toml``. ``docs/coming-from-huey.md`` has a row, with a
verdict, for every public name of the installed Huey: found by introspection, so a Huey
upgrade that adds a method or a ``huey_consumer`` flag fails here until the guide says
what hueyard does with it.
"""

from __future__ import annotations

import inspect
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import huey.exceptions
import huey.signals
import pytest
from huey.api import Huey, Result, ResultGroup, TaskWrapper
from huey.consumer_options import OptionParserHandler
from huey.storage import RedisStorage

from framework.config import parse_settings
from framework.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SPEC = (ROOT / "spec" / "original-system.md").read_text(encoding="utf-8")
BULL = (ROOT / "docs" / "coming-from-bull.md").read_text(encoding="utf-8")
HUEY = (ROOT / "docs" / "coming-from-huey.md").read_text(encoding="utf-8")

PLACEHOLDER_REDIS = "redis://placeholder.invalid:6379/0"
VERDICTS = {"same", "different", "refused", "warned", "internal"}

# -- reading markdown ---------------------------------------------------------------------

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def fenced(text: str, language: str) -> list[str]:
    """The bodies of the ``language`` code blocks of ``text``."""
    return [body for lang, body in _FENCE.findall(text) if lang == language]


def prose(text: str) -> str:
    """``text`` without its code blocks."""
    return _FENCE.sub("", text)


def code_spans(text: str) -> list[str]:
    """Every inline code span (`...`) of ``text``."""
    return re.findall(r"`([^`\n]+)`", text)


def code_naming(text: str, word: str) -> list[str]:
    """The code of ``text`` (inline spans and code blocks) that holds ``word`` as a whole
    word."""
    pattern = re.compile(rf"(?<![\w$]){re.escape(word)}(?![\w$])")
    code = code_spans(prose(text)) + [body for _, body in _FENCE.findall(text)]
    return [piece for piece in code if pattern.search(piece)]


def table_rows(text: str) -> list[tuple[str, str]]:
    """(first cell, second cell) of every row of every table whose second column is
    the verdict."""
    rows: list[tuple[str, str]] = []
    in_verdict_table = False
    for line in text.splitlines():
        if not line.startswith("|"):
            in_verdict_table = False
            continue
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) < 2 or set(cells[0]) <= {"-", ":"}:
            continue
        if cells[1] == "verdict":
            in_verdict_table = True
        elif in_verdict_table:
            rows.append((cells[0], cells[1]))
    return rows


HUEY_ROWS = table_rows(HUEY)


def verdicts_of(pattern: str) -> list[str]:
    """The verdicts of the guide's rows whose first cell matches ``pattern``."""
    found = re.compile(pattern)
    return [verdict for first, verdict in HUEY_ROWS if found.search(first)]


# -- the spec, read ------------------------------------------------------------------------

_UPPER_SNAKE = r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+"


def spec_environment_variables() -> list[str]:
    """Names assigned in the spec's shell blocks (``REDIS_HOST=localhost``), and the
    upper-case names its prose mentions (``configurable via BULL_BOARD_USERNAME``)."""
    assigned = re.findall(rf"^\s*({_UPPER_SNAKE})=", SPEC, re.MULTILINE)
    mentioned = re.findall(rf"\b({_UPPER_SNAKE})\b", prose(SPEC))
    return sorted(set(assigned) | set(mentioned))


def spec_endpoints() -> list[str]:
    """Paths after an HTTP method (``GET /health``) and of local URLs
    (``http://localhost:5000/admin/queues``)."""
    methods = re.findall(r"\b(?:GET|POST|PUT|PATCH|DELETE)\s+(/[\w/.-]*)", SPEC)
    urls = re.findall(r"https?://localhost(?::\d+)?(/[\w/.-]*)", SPEC)
    return sorted(set(methods) | set(urls))


def spec_option_keys() -> list[str]:
    """Every object key of the spec's JavaScript: connection options, job options, the
    limiter, the cache TTL names, the job data and results."""
    keys: set[str] = set()
    for body in fenced(SPEC, "javascript"):
        keys |= set(re.findall(r"(?<=[{,\s])([A-Za-z_$][\w$]*)\s*:(?!:)", body))
    return sorted(keys)


def spec_calls() -> list[str]:
    """Methods the spec calls on its Redis client and its queues (``redis.getCached``,
    ``messageQueue.add``)."""
    calls: set[str] = set()
    for body in fenced(SPEC, "javascript"):
        calls |= set(re.findall(r"\b(?:redis|\w+Queue)\.(\w+)\(", body))
    return sorted(calls)


def spec_queues() -> list[str]:
    return re.findall(r"^### \d+\. .*\(`(\w+)`\)", SPEC, re.MULTILINE)


def spec_bull_board_features() -> list[str]:
    section = SPEC.split("### Bull Board Dashboard", 1)[1]
    listing = re.search(r"\*\*Features\*\*:\n((?:- .*\n)+)", section)
    assert listing is not None, "the spec's Bull Board section lists no **Features**"
    return [line.removeprefix("- ").strip() for line in listing.group(1).splitlines()]


def test_the_spec_is_read() -> None:
    # Each reader finds something, so none of the tests below passes by finding nothing.
    for found in (
        spec_environment_variables(),
        spec_endpoints(),
        spec_option_keys(),
        spec_calls(),
        spec_queues(),
        spec_bull_board_features(),
    ):
        assert found


# -- coming from Bull ---------------------------------------------------------------------


@pytest.mark.parametrize("name", spec_environment_variables())
def test_every_environment_variable_of_the_spec_is_mapped(name: str) -> None:
    assert f"\n| `{name}` |" in BULL, f"docs/coming-from-bull.md has no row for `{name}`"


@pytest.mark.parametrize("path", spec_endpoints())
def test_every_endpoint_of_the_spec_is_mapped(path: str) -> None:
    row = re.compile(rf"^\| `(?:GET )?{re.escape(path)}` \|", re.MULTILINE)
    assert row.search(BULL), f"docs/coming-from-bull.md has no row for `{path}`"


@pytest.mark.parametrize("key", spec_option_keys())
def test_every_option_of_the_spec_is_mapped(key: str) -> None:
    assert code_naming(BULL, key), f"docs/coming-from-bull.md names no `{key}`"


@pytest.mark.parametrize("call", spec_calls())
def test_every_call_of_the_spec_is_mapped(call: str) -> None:
    assert code_naming(BULL, call), f"docs/coming-from-bull.md names no `{call}(...)`"


@pytest.mark.parametrize("queue", spec_queues())
def test_every_queue_of_the_spec_is_mapped(queue: str) -> None:
    assert f"| `{queue}` |" in BULL, f"docs/coming-from-bull.md has no row for `{queue}`"


@pytest.mark.parametrize("feature", spec_bull_board_features())
def test_every_bull_board_feature_of_the_spec_is_mapped(feature: str) -> None:
    assert f"| {feature} |" in BULL, f"docs/coming-from-bull.md has no row for {feature!r}"


SNIPPETS = [
    pytest.param(guide, index, body, id=f"{guide}-{index}")
    for guide, text in (("coming-from-bull", BULL), ("coming-from-huey", HUEY))
    for index, body in enumerate(fenced(text, "toml"), start=1)
]


def test_the_guides_show_config() -> None:
    assert sum(1 for snippet in SNIPPETS if snippet.values[0] == "coming-from-bull") >= 5


CRM_QUEUES = list(tomllib.loads((ROOT / "config" / "queues.toml").read_text())["queues"])


@pytest.mark.parametrize(("guide", "index", "body"), SNIPPETS)
def test_every_toml_snippet_is_a_valid_config(guide: str, index: int, body: str) -> None:
    # A snippet is a part of the CRM's config: the shipped queues it does not declare
    # itself are added (a config declares at least one queue; a schedule names one).
    # A snippet without its own [redis] url gets a placeholder; nothing connects.
    snippet = tomllib.loads(body)
    declared = snippet.get("queues", {})
    text = body + "".join(f"\n[queues.{name}]\n" for name in CRM_QUEUES if name not in declared)
    env = {} if "url" in snippet.get("redis", {}) else {"REDIS_URL": PLACEHOLDER_REDIS}
    try:
        parse_settings(text, source=f"docs/{guide}.md, toml block {index}", env=env)
    except ConfigError as exc:
        pytest.fail(str(exc))


# -- coming from Huey ---------------------------------------------------------------------


def public(cls: type) -> list[str]:
    """The public methods and properties of ``cls``, inherited ones included."""
    return sorted(
        name
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and (inspect.isfunction(member) or isinstance(member, property))
    )


def parameters(function: Callable[..., Any]) -> list[str]:
    return [
        name
        for name, parameter in inspect.signature(function).parameters.items()
        if name != "self" and parameter.kind is not inspect.Parameter.VAR_KEYWORD
    ]


def consumer_options() -> list[str]:
    parser = OptionParserHandler().get_option_parser()
    options = list(parser.option_list)
    for group in parser.option_groups:
        options.extend(group.option_list)
    return sorted({flag for option in options for flag in option._short_opts + option._long_opts})


def assert_has_verdict(name: str, pattern: str) -> None:
    verdicts = verdicts_of(pattern)
    assert verdicts, f"docs/coming-from-huey.md has no row for {name}"
    assert set(verdicts) <= VERDICTS, f"{name}: verdicts {verdicts}, allowed {sorted(VERDICTS)}"


def test_the_huey_guide_has_rows() -> None:
    assert len(HUEY_ROWS) > 100
    assert {verdict for _, verdict in HUEY_ROWS} <= VERDICTS


@pytest.mark.parametrize("name", public(Huey))
def test_every_huey_method_has_a_row(name: str) -> None:
    assert_has_verdict(f"huey.{name}", rf"huey\.{name}\b")


@pytest.mark.parametrize("name", parameters(Huey.__init__) + parameters(RedisStorage.__init__))
def test_every_huey_constructor_argument_has_a_row(name: str) -> None:
    assert_has_verdict(f"RedisHuey({name}=...)", rf"`{name}`")


@pytest.mark.parametrize("name", parameters(Huey.task))
def test_every_task_option_has_a_row(name: str) -> None:
    assert_has_verdict(f"@huey.task({name}=...)", rf"`{name}=")


@pytest.mark.parametrize("name", public(TaskWrapper))
def test_every_task_wrapper_method_has_a_row(name: str) -> None:
    assert_has_verdict(f"task.{name}", rf"task\.{name}\b")


@pytest.mark.parametrize(
    ("prefix", "name"),
    [("result", name) for name in public(Result)]
    + [("result_group", name) for name in public(ResultGroup)],
)
def test_every_result_method_has_a_row(prefix: str, name: str) -> None:
    assert_has_verdict(f"{prefix}.{name}", rf"\b{prefix}\.{name}\b")


@pytest.mark.parametrize("name", sorted(n for n in dir(huey.signals) if n.startswith("SIGNAL_")))
def test_every_signal_has_a_row(name: str) -> None:
    assert_has_verdict(name, rf"`{name}`")


@pytest.mark.parametrize(
    "name",
    sorted(
        name
        for name, member in vars(huey.exceptions).items()
        if inspect.isclass(member) and issubclass(member, BaseException)
    ),
)
def test_every_huey_exception_has_a_row(name: str) -> None:
    assert_has_verdict(name, rf"`{name}\b")


@pytest.mark.parametrize("flag", consumer_options())
def test_every_huey_consumer_flag_has_a_row(flag: str) -> None:
    assert_has_verdict(flag, rf"`{re.escape(flag)}(?![\w-])")
