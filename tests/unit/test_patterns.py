"""Every regular expression that validates input checks the whole value, in ASCII.

Two mistakes let input through that a check was written to refuse:

- Python's ``$`` also matches before a final newline, so ``re.match(r"^[a-z]+$", v)``
  accepts ``"alpha\\n"``: a queue name, an email address ending in a newline (a
  blank line inside an email's headers), a key with a control character;
- ``\\d`` and ``\\w`` match every script's digits and letters, in Python and in
  pydantic's Rust engine alike, so ``+1\\uff14\\uff11...`` (fullwidth) passes for a phone number,
  and one number written three ways makes three recipients.

These tests read the source of ``framework``, ``dashboard`` and ``pipelines`` and
name each check that makes either mistake (``fullmatch`` and ``[0-9]`` are the
fixes). The modules' own tests prove what each check refuses.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("framework", "dashboard", "pipelines")
MATCHERS = {"match", "fullmatch", "search"}


def _sources() -> Iterator[tuple[Path, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path, ast.parse(path.read_text(encoding="utf-8"), str(path))


def _text(node: ast.expr | None) -> str | None:
    """A pattern written as a literal (or literals joined with ``+``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left), _text(node.right)
        return left + right if left is not None and right is not None else None
    return None


def _is_re_call(node: ast.AST, names: set[str]) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "re"
        and node.func.attr in names
    )


def _ascii_flag(call: ast.Call) -> bool:
    return "ASCII" in ast.unparse(call) or "(?a)" in (_text(call.args[0]) or "")


def _ends_with_dollar(pattern: str) -> bool:
    return pattern.endswith("$") and not pattern.endswith("\\$")


def _validations() -> Iterator[tuple[str, str, str, bool]]:
    """``(where, pattern, how, ascii)`` for each pattern a value is checked against."""
    for path, tree in _sources():
        where = str(path.relative_to(ROOT))
        compiled: dict[str, tuple[str, bool]] = {}
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Assign)
                and _is_re_call(node.value, {"compile"})
                and isinstance(node.value, ast.Call)
            ):
                pattern = _text(node.value.args[0])
                for target in node.targets:
                    if isinstance(target, ast.Name) and pattern is not None:
                        compiled[target.id] = (pattern, _ascii_flag(node.value))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            line = f"{where}:{node.lineno}"
            func = node.func
            if _is_re_call(node, MATCHERS) and isinstance(func, ast.Attribute):
                pattern = _text(node.args[0])
                if pattern is not None:
                    yield line, pattern, f"re.{func.attr}", _ascii_flag(node)
            elif (
                isinstance(func, ast.Attribute)
                and func.attr in MATCHERS
                and isinstance(func.value, ast.Name)
                and func.value.id in compiled
            ):
                pattern, ascii_only = compiled[func.value.id]
                yield line, pattern, f"{func.value.id}.{func.attr}", ascii_only
            for keyword in node.keywords:
                if keyword.arg == "pattern":
                    pattern = _text(keyword.value)
                    if pattern is None and isinstance(keyword.value, ast.Attribute):
                        name = keyword.value.value
                        if isinstance(name, ast.Name) and name.id in compiled:
                            pattern = compiled[name.id][0]
                    if pattern is not None:
                        yield line, pattern, "Field(pattern=...)", False


def test_text_is_read_as_a_number_only_after_it_is_checked_to_be_ascii_digits() -> None:
    # str.isdigit() takes "²", which int() refuses, and every script's digits
    wrong = []
    for path, tree in _sources():
        guarded: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):
                calls = [v for v in node.values if isinstance(v, ast.Call)]
                ascii_of = {
                    ast.dump(c.func.value)
                    for c in calls
                    if isinstance(c.func, ast.Attribute) and c.func.attr == "isascii"
                }
                guarded |= {
                    id(c)
                    for c in calls
                    if isinstance(c.func, ast.Attribute)
                    and c.func.attr == "isdigit"
                    and ast.dump(c.func.value) in ascii_of
                }
        wrong += [
            f"{path.relative_to(ROOT)}:{node.lineno}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"isdigit", "isdecimal", "isnumeric"}
            and id(node) not in guarded
        ]
    assert not wrong, "write text.isascii() and text.isdigit():\n" + "\n".join(wrong)


def test_the_checks_are_found() -> None:
    # the scan itself works: it sees the checks this test is about
    hows = {how for _, _, how, _ in _validations()}
    assert {"QUEUE_NAME.fullmatch", "Field(pattern=...)"} <= hows


def test_no_check_lets_a_value_end_with_a_newline() -> None:
    wrong = [
        f"{line}: {how} with {pattern!r}"
        for line, pattern, how, _ in _validations()
        if _ends_with_dollar(pattern)
        and (how.endswith(".match") or (how.endswith(".search") and pattern.startswith("^")))
    ]
    assert not wrong, "use fullmatch ('$' matches before a final newline):\n" + "\n".join(wrong)


def test_no_check_takes_digits_or_letters_of_other_scripts() -> None:
    wrong = [
        f"{line}: {how} with {pattern!r}"
        for line, pattern, how, ascii_only in _validations()
        if not ascii_only
        and ("\\d" in pattern or "\\w" in pattern)
        and (
            how.endswith("fullmatch")
            or how == "Field(pattern=...)"
            or (pattern.startswith("^") and _ends_with_dollar(pattern))
        )
    ]
    assert not wrong, "use [0-9] and [A-Za-z0-9_] (or re.ASCII):\n" + "\n".join(wrong)
