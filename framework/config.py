"""Read ``config/queues.toml`` and the environment into :class:`Settings`.

All problems of a file are reported together, each naming the file, the table,
the field, the bad value and what is allowed::

    config/queues.toml: 2 problems
      [queues.messages] attempts = 0: must be at least 1
      [queues.emails] atempts: unknown field; did you mean 'attempts'?

Environment (wins over the file):

- ``HUEYARD_CONFIG``: path of the TOML file (default ``config/queues.toml``).
- ``REDIS_URL``: the whole connection URL; or the spec's ``REDIS_HOST``,
  ``REDIS_PORT``, ``REDIS_PASSWORD``, ``REDIS_DB`` to change parts of it.
- ``REDIS_SENTINELS`` (``host:port,host:port``), ``REDIS_MASTER_NAME``,
  ``REDIS_SENTINEL_PASSWORD``: Sentinel discovery (``[redis] sentinels``, ...).
- ``REDIS_TLS_CA_FILE``, ``REDIS_TLS_CERT_FILE``, ``REDIS_TLS_KEY_FILE``: TLS files.
- ``REDIS_CLUSTER`` (``1``/``true``/``yes`` or ``0``/``false``/``no``): a Redis
  Cluster (``[redis] cluster``); ``REDIS_CLUSTER_NODES`` (``host:port,host:port``):
  more of its nodes to find it through (``[redis] cluster_nodes``).
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import BaseModel, ValidationError

from framework import defaults
from framework.connection import redact_url
from framework.errors import ConfigError
from framework.huey_names import huey_hint
from framework.settings import Settings

__all__ = ["config_path", "load_settings", "parse_settings", "read_config_file"]

_URL_FIELDS = frozenset({"url"})

_HOST_LISTS = ("sentinels", "cluster_nodes")
"""``[redis]`` lists of ``host:port`` the environment may set, comma-separated
(``REDIS_SENTINELS``, ``REDIS_CLUSTER_NODES``)."""
_SECRET_FIELDS = frozenset({"password", "sentinel_password"})
_REDIS_ENV = {
    "REDIS_MASTER_NAME": "master_name",
    "REDIS_SENTINEL_PASSWORD": "sentinel_password",
    "REDIS_TLS_CA_FILE": "tls_ca_file",
    "REDIS_TLS_CERT_FILE": "tls_cert_file",
    "REDIS_TLS_KEY_FILE": "tls_key_file",
}

_BOOLEANS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """The configuration file: ``$HUEYARD_CONFIG`` or ``config/queues.toml``."""
    env = os.environ if env is None else env
    return Path(env.get("HUEYARD_CONFIG") or defaults.CONFIG_PATH)


def load_settings(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Read, override from the environment, and validate. Raises :class:`ConfigError`."""
    env = os.environ if env is None else env
    file = Path(path) if path is not None else config_path(env)
    try:
        # a BOM (Windows editors write one) is dropped
        text = read_config_file(file, "configuration file", encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(
            f"{file}: configuration file not found (working directory {Path.cwd()}); "
            "set HUEYARD_CONFIG to its path or run from the project root"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read the configuration file: {exc}") from None
    return parse_settings(text, source=str(file), env=env)


def read_config_file(
    path: Path,
    what: str,
    *,
    encoding: str = "utf-8",
    limit: int = defaults.MAX_CONFIG_FILE_BYTES,
) -> str:
    """The text of a file read whole at start-up (the config, a flow, a template).

    A path that is not a regular file (a FIFO, which would block the read forever, a
    device such as ``/dev/zero``, endless) or one over ``limit`` bytes is a
    :class:`ConfigError` naming it; a missing or unreadable file raises the
    :class:`OSError` (``FileNotFoundError``...) for the caller to word."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO's open does not wait
    try:
        kind = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(kind):
            found = "a directory" if stat.S_ISDIR(kind) else "not a regular file"
            raise ConfigError(
                f"{path}: the {what} is {found} (a FIFO, a device or a socket is never read); "
                "point at the file itself"
            )
        with os.fdopen(descriptor, "rb", closefd=False) as file:
            data = file.read(limit + 1)
    finally:
        os.close(descriptor)
    if len(data) > limit:
        raise ConfigError(
            f"{path}: the {what} is over {limit:,} bytes, more than one ever needs; "
            "check that the path names the right file"
        )
    return data.decode(encoding)


def parse_settings(
    text: str, *, source: str = "<string>", env: Mapping[str, str] | None = None
) -> Settings:
    """Validate TOML text; ``source`` names it in every error message."""
    env = os.environ if env is None else env
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: malformed TOML: {exc}") from None
    raw = _apply_environment(raw, env)
    origins = _origins(env)
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        problems = [_describe(error) + _origin(error, origins) for error in exc.errors()]
        heading = f"{source}: {len(problems)} problem{'s' if len(problems) != 1 else ''}"
        raise ConfigError("\n  ".join([heading, *problems])) from None


def _apply_environment(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    redis_table = raw.get("redis", {})
    if not isinstance(redis_table, dict):
        return raw  # validation reports the wrong type
    url = env.get("REDIS_URL") or str(redis_table.get("url", defaults.REDIS_URL))
    parts = {name: env.get(f"REDIS_{name}") for name in ("HOST", "PORT", "PASSWORD", "DB")}
    if not env.get("REDIS_URL") and any(value is not None for value in parts.values()):
        url = _with_parts(url, parts)
    table = dict(redis_table)
    if url != redis_table.get("url", defaults.REDIS_URL):
        table["url"] = url
    for variable, name in _REDIS_ENV.items():
        if env.get(variable, "").strip():
            table[name] = env[variable].strip()
    cluster = env.get("REDIS_CLUSTER", "").strip().lower()
    if cluster:
        if cluster not in _BOOLEANS:
            raise ConfigError(
                f"REDIS_CLUSTER={env['REDIS_CLUSTER']!r} is not a yes or no; use 1 or 0 "
                "(true/false, yes/no)"
            )
        table["cluster"] = _BOOLEANS[cluster]
    for name in _HOST_LISTS:
        listed = env.get(f"REDIS_{name.upper()}", "")
        if listed.strip():
            table[name] = [entry.strip() for entry in listed.split(",")]
    return {**raw, "redis": table} if table != redis_table else raw


def _origins(env: Mapping[str, str]) -> dict[str, str]:
    """The ``[redis]`` fields the environment set (:func:`_apply_environment`), and from
    which variables: an error about one names them, since the file does not hold it."""
    found = {}
    parts = [
        f"REDIS_{name}"
        for name in ("HOST", "PORT", "PASSWORD", "DB")
        if env.get(f"REDIS_{name}") is not None
    ]
    if env.get("REDIS_URL"):
        found["url"] = "REDIS_URL"
    elif parts:
        found["url"] = ", ".join(parts)
    for variable, name in _REDIS_ENV.items():
        if env.get(variable, "").strip():
            found[name] = variable
    for name in ("cluster", *_HOST_LISTS):
        if env.get(f"REDIS_{name.upper()}", "").strip():
            found[name] = f"REDIS_{name.upper()}"
    return found


def _origin(error: Mapping[str, Any], origins: Mapping[str, str]) -> str:
    loc = [str(part) for part in error["loc"]]
    if len(loc) >= 2 and loc[0] == "redis" and loc[1] in origins:
        return f" (set by {origins[loc[1]]} in the environment, not by the file)"
    if len(loc) == 1 and loc[0] == "redis" and origins:  # about the whole table
        return f" (the environment sets {', '.join(sorted(set(origins.values())))})"
    return ""


def _digits(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also takes superscripts and other scripts' digits."""
    return text.isascii() and text.isdigit()


def _with_parts(url: str, parts: Mapping[str, str | None]) -> str:
    split = urlsplit(url)
    host = parts["HOST"] or split.hostname or "localhost"
    if host.count(":") == 1 or "/" in host or "@" in host:  # one ":" is no IPv6 address
        raise ConfigError(
            f"REDIS_HOST={host!r} is not a host name or address; put the port in REDIS_PORT "
            "and the password in REDIS_PASSWORD, or give the whole URL as REDIS_URL"
        )
    port_text = parts["PORT"]
    if port_text is not None and not (_digits(port_text) and 0 < int(port_text) < 65536):
        raise ConfigError(
            f"REDIS_PORT={port_text!r} is not a TCP port; use a number from 1 to 65535"
        )
    port = port_text or (str(split.port) if split.port else "6379")
    db_text = parts["DB"]
    if db_text is not None and not _digits(db_text):
        raise ConfigError(f"REDIS_DB={db_text!r} is not a database number; use 0, 1, 2, ...")
    path = f"/{db_text}" if db_text is not None else (split.path or "/0")
    password = parts["PASSWORD"] if parts["PASSWORD"] is not None else split.password
    user = split.username or ""
    auth = f"{quote(user, safe='')}:{quote(password, safe='')}@" if password else ""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return urlunsplit((split.scheme or "redis", f"{auth}{host}:{port}", path, split.query, ""))


def _describe(error: Mapping[str, Any]) -> str:
    """One line: ``[table] field = value: what is wrong; what is allowed``."""
    loc = [str(part) for part in error["loc"]]
    if not loc:
        return _message(error)
    if loc[-1] == "[key]":
        table = ".".join(loc[:-1])
        return f"[{table}]: {_message(error)}"
    table, field = _split_location(loc)
    where = f"[{table}] {field}" if table else field
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{where}: unknown field; {_suggest(loc)}"
    if kind == "missing":
        return f"{where}: missing; add it to [{table}]" if table else f"{where}: missing"
    value = error.get("input")
    if isinstance(value, dict):  # about a whole table ([redis]: sentinels with cluster, ...)
        return f"[{'.'.join(loc)}]: {_message(error)}"
    if loc[-1] in _SECRET_FIELDS:
        shown = "'***'"
    elif loc[-1] in _URL_FIELDS:
        shown = redact_url(str(value))
    else:
        shown = repr(_plain(value))
    message = _message(error)
    if field:
        return f"{where} = {shown}: {message}"
    return f"[{table}]: {message}"


_MESSAGES = {
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "greater_than": "must be greater than {gt}",
    "less_than": "must be less than {lt}",
    "literal_error": "must be one of {expected}",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number, not a fraction",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number, not nan or inf",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string in quotes",
    "dict_type": "must be a table, e.g. {{ key = value }}",
    "model_type": "must be a table, e.g. {{ key = value }}",
    "model_attributes_type": "must be a table, e.g. {{ key = value }}",
    "list_type": 'must be a list, e.g. ["a", "b"]',
    "too_short": "must not be empty; leave the field out for its default",
}


def _message(error: Mapping[str, Any]) -> str:
    template = _MESSAGES.get(error["type"])
    if template is not None:
        try:
            return template.format(**error.get("ctx", {}))
        except (KeyError, IndexError):
            pass
    return str(error["msg"]).removeprefix("Value error, ")


def _split_location(loc: list[str]) -> tuple[str, str]:
    """``['queues','messages','rate_limit','max']`` -> ``('queues.messages', 'rate_limit.max')``."""
    if len(loc) < 2:
        return "", "".join(loc)  # a top-level key of the file
    head = 2 if loc[0] in ("queues", "schedules") and len(loc) > 1 else 1
    if loc[0] == "cache" and len(loc) > 1 and loc[1] == "ttl":
        head = 2
    table = ".".join(loc[:head])
    field = ".".join(loc[head:])
    return table, field


def _suggest(loc: list[str]) -> str:
    model = _model_at(loc[:-1])
    if model is None:
        return "remove it"
    allowed = sorted(model.model_fields)
    huey = huey_hint(loc[-1]) if "attempts" in allowed else None  # a policy's table
    if huey is not None:
        return f"{huey}. Allowed: {', '.join(allowed)}"
    import difflib  # only for an error's hint

    close = difflib.get_close_matches(loc[-1], allowed, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}allowed: {', '.join(allowed)}"


def _model_at(loc: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] = Settings
    index = 0
    while index < len(loc):
        name = loc[index]
        field = model.model_fields.get(name)
        if field is None:
            return None
        target = _model_of(field.annotation)
        if target is None:
            return None
        if name in ("queues", "schedules"):
            index += 1  # skip the queue's or schedule's own name
        model = target
        index += 1
    return model


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, dict) and len(repr(value)) > 80:
        return {key: "..." for key in value}
    return value
