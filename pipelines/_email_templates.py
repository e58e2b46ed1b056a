"""Email bodies from Jinja templates kept in the repo: ``pipelines/templates/email/``.

A template ``<name>`` is one or two files: ``<name>.txt`` (the plain-text
part) and ``<name>.html`` (the HTML part); an email gets the parts that exist.
The HTML part is autoescaped (a variable's ``<`` becomes ``&lt;``), the text
part is not (it is never read as HTML). Every variable a part uses must be
given: :class:`jinja2.StrictUndefined` makes a missing one an error, never an
empty string::

    >>> parts = render("export_ready", {"name": "Ada & co", "url": "https://crm.example/x",
    ...                                 "expires": "2025-11-12"})
    >>> "Ada &amp; co" in parts.html and "Ada & co" in parts.text
    True

Templates are code (trusted, reviewed, deployed with the app); the variables
are data from the payload. A payload's strings are never rendered as templates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta

__all__ = [
    "TEMPLATE_DIR",
    "EmailTemplateError",
    "Parts",
    "render",
    "template_names",
]

TEMPLATE_DIR = Path(__file__).parent / "templates" / "email"
"""Where the templates are: ``<name>.txt`` and ``<name>.html``."""

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
SUFFIXES = ("txt", "html")


class EmailTemplateError(ValueError):
    """The template is unknown, broken, or needs a variable the payload does not give."""


@dataclass(frozen=True)
class Parts:
    """The rendered parts of one email; at least one is not None."""

    text: str | None
    html: str | None


def _environment(autoescape: bool) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=autoescape,  # noqa: S701 - False only for the text part, never HTML
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        auto_reload=False,  # templates change with a deploy, which restarts the workers
    )


_ENVIRONMENTS = {"txt": _environment(autoescape=False), "html": _environment(autoescape=True)}


def template_names() -> list[str]:
    """The names of the templates in :data:`TEMPLATE_DIR`, sorted."""
    if not TEMPLATE_DIR.is_dir():
        return []
    return sorted({path.stem for path in TEMPLATE_DIR.iterdir() if path.suffix[1:] in SUFFIXES})


def _source_files(name: str) -> dict[str, Path]:
    if not NAME.fullmatch(name):
        raise EmailTemplateError(
            f"template {name!r} is not a template name: 1 to 64 lowercase letters, digits, "
            "'_' or '-', starting with a letter or digit"
        )
    files = {suffix: TEMPLATE_DIR / f"{name}.{suffix}" for suffix in SUFFIXES}
    files = {suffix: path for suffix, path in files.items() if path.is_file()}
    if not files:
        known = ", ".join(template_names()) or "none"
        raise EmailTemplateError(
            f"unknown email template {name!r}: there is no {name}.txt or {name}.html in "
            f"{TEMPLATE_DIR}; known templates: {known}"
        )
    return files


def _render_part(suffix: str, path: Path, variables: dict[str, Any]) -> str:
    environment = _ENVIRONMENTS[suffix]
    try:
        template = environment.get_template(path.name)
        return template.render(variables)
    except jinja2.TemplateSyntaxError as exc:
        raise EmailTemplateError(
            f"email template {path.name} line {exc.lineno}: {exc.message}; fix the template"
        ) from None
    except jinja2.UndefinedError as exc:
        raise EmailTemplateError(
            f"email template {path.name}: {exc.message}; give it in the payload's variables"
        ) from None


def _missing(suffix: str, path: Path, variables: dict[str, Any]) -> set[str]:
    environment = _ENVIRONMENTS[suffix]
    try:
        parsed = environment.parse(path.read_text(encoding="utf-8"))
    except jinja2.TemplateSyntaxError as exc:
        raise EmailTemplateError(
            f"email template {path.name} line {exc.lineno}: {exc.message}; fix the template"
        ) from None
    return meta.find_undeclared_variables(parsed) - set(variables)


def render(name: str, variables: dict[str, Any]) -> Parts:
    """Both parts of template ``name`` filled with ``variables``.

    Raises :class:`EmailTemplateError` naming the template and the problem: an
    unknown name (with the known ones), every missing top-level variable, a
    missing attribute or key of a variable, a syntax error (file and line).
    """
    files = _source_files(name)
    missing = set().union(*(_missing(s, p, variables) for s, p in files.items()))
    if missing:
        names = ", ".join(sorted(missing))
        raise EmailTemplateError(
            f"email template {name!r} needs variables that the payload does not give: "
            f"{names}; add them to variables"
        )
    rendered = {suffix: _render_part(suffix, path, variables) for suffix, path in files.items()}
    return Parts(text=rendered.get("txt"), html=rendered.get("html"))
