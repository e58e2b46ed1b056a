"""YAML read safely, with the line of every value, and validation errors that point at it.

:func:`read_yaml` parses with PyYAML's ``SafeLoader`` (no Python tags, no
code, no aliases), refuses duplicate keys (which PyYAML would silently resolve to the last
one) and returns the data with a map from each value's path (``("nodes", 2,
"content")``) to its 1-based line. :func:`describe` turns one pydantic error
into ``<file>:<line>: <where>: <problem>; <fix>``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic_core import ErrorDetails

from framework.errors import ConfigError

__all__ = ["Lines", "Path", "YamlDocument", "describe", "read_yaml", "shown"]

Path = tuple[str | int, ...]
Lines = dict[Path, int]


@dataclass(frozen=True)
class YamlDocument:
    """One parsed file: its data and the line of each value (``lines[()]`` is the first)."""

    source: str
    data: Any
    lines: Lines

    def line(self, path: Path) -> int:
        """The line of ``path``, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return 1


class _AliasFound(Exception):
    def __init__(self, anchor: str, line: int) -> None:
        super().__init__(anchor)
        self.anchor, self.line = anchor, line


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases (``*name``): a flow file has no use for them,
    and aliases of aliases make a few hundred bytes stand for gigabytes ("billion
    laughs"), or a value that holds itself."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise _AliasFound(str(event.anchor), event.start_mark.line + 1)
        return super().compose_node(parent, index)


def read_yaml(text: str, source: str) -> YamlDocument:
    """Parse one YAML document safely. Raises :class:`ConfigError` naming the file and line."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDocument(source, None, {})
        lines: Lines = {}
        _walk(node, (), lines, source)
        return YamlDocument(source, loader.construct_document(node), lines)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else 1
        raise ConfigError(
            f"{source}:{line}: not allowed: {exc.problem}; flow files are plain YAML (safe "
            "loading), remove the tag"
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = " ".join(filter(None, [exc.context, exc.problem]))
        raise ConfigError(
            f"{source}:{line}: not valid YAML: {problem}; check the indentation, and quote text "
            "that holds ': ', ' #' or starts with a special character"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    except _AliasFound as exc:
        raise ConfigError(
            f"{source}:{exc.line}: an alias (*{exc.anchor}) is not allowed in a flow file; "
            "write the value out where it is used"
        ) from None
    except RecursionError:
        raise ConfigError(
            f"{source}: nested too deeply to read; a flow file's values are a few levels deep"
        ) from None
    finally:
        loader.dispose()


def _walk(node: yaml.Node, path: Path, lines: Lines, source: str) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"{source}:{line}: key {key!r} is repeated (first on line {seen[key]}); "
                    "YAML would keep only the last one: remove or rename one of them"
                )
            seen[key] = line
            _walk(value_node, (*path, key), lines, source)
            lines[(*path, key)] = line  # a field's line is its key's
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), lines, source)


def shown(value: Any, limit: int = 60) -> str:
    """A value for an error message: its repr, shortened."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def resolve(data: Any, loc: tuple[str | int, ...]) -> Path:
    """The part of a pydantic error's ``loc`` that exists in ``data`` (union tags and a
    missing field's name are left out), so it can be looked up in the line map."""
    path: list[str | int] = []
    current = data
    for part in loc:
        in_mapping = isinstance(current, Mapping) and part in current
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        if not (in_mapping or in_list):
            continue  # a union's tag, or the name of a missing field
        current = current[part]
        path.append(part)
    return tuple(path)


def describe(
    document: YamlDocument,
    error: ErrorDetails,
    where: Callable[[Path, tuple[str | int, ...]], str],
    allowed: Callable[[Path], list[str]],
) -> str:
    """``<file>:<line>: <where>: <problem>; <fix>`` for one pydantic error.

    ``where(path, loc)`` names the place (a node and its field); ``allowed(path)``
    lists the fields allowed at ``path``, for the "did you mean" of an unknown one.
    """
    loc = tuple(error["loc"])
    path = resolve(document.data, loc)
    tag = str(error.get("ctx", {}).get("discriminator", "")).strip("'")
    if error["type"] == "union_tag_invalid" and (*path, tag) in document.lines:
        path = (*path, tag)  # point at the bad "type:" line, not the node's first
    line = document.line(path)
    kind = error["type"]
    if kind in ("missing", "union_tag_not_found"):
        problem = "missing; add it"
    elif kind == "union_tag_invalid":
        problem = f"unknown type {shown(error.get('ctx', {}).get('tag'))}"
    elif kind == "extra_forbidden":
        parent = path[:-1]
        names = allowed(parent)
        close = difflib.get_close_matches(str(path[-1]), names, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(names)}"
        problem = f"unknown field; {hint}"
    else:
        message = error["msg"].removeprefix("Value error, ")
        value = "" if kind.startswith("union_tag") else f" (got {shown(error.get('input'))})"
        problem = f"{message}{value}"
    return f"{document.source}:{line}: {where(path, loc)}: {problem}"
