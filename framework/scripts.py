"""The Lua scripts of ``framework/lua/``: what each takes, by name, and one way to call them.

Every job state change is one script, so it is atomic and one round trip. Each
script is declared here as a :class:`Script`: the names of the keys it touches
(passed in ``KEYS``, so a Cluster sees every key) and of its arguments. The
source sent to Redis is a generated prelude, the functions of ``_lib.lua``
the script uses, then the script. The prelude holds the constants of :mod:`framework.keys` and
:mod:`framework.defaults` the scripts need, and binds the names::

    local K = {waiting = KEYS[1], active = KEYS[2], paused = KEYS[3], limiter = KEYS[4]}
    local A = {job_prefix = ARGV[1], lease_ms = ARGV[2], ...}

so a script reads ``K.waiting`` and ``A.lease_ms``, never ``KEYS[1]`` or
``ARGV[17]``. Callers name them too::

    scripts.call("claim", queue_keys, args={"job_prefix": ..., "lease_ms": 30000, ...})

Keys named like a field of :class:`~framework.QueueKeys` come from the
queue's keys; others (``job``, ``logs``, ``lock``, ``set``) are given in
``keys=``. A script that takes a list (jobs of a batch, ids) reads it with
``rows()``, one table per row, named by :attr:`Script.row`.

Every script checks before it writes (``_lib.lua``): a key of the wrong type
stops it with an error reply, and nothing is written. :func:`storage_error`
turns that reply, and any other error Redis answers a script or a command
with, into a :class:`~framework.errors.StorageError` that names the key, the
problem and the fix; a Redis that does not answer stays a connection error.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import cache
from importlib import resources
from typing import Any

import redis
from redis.client import Pipeline
from redis.cluster import ClusterPipeline
from redis.commands.core import Script as RedisScript
from redis.exceptions import ClusterDownError, NoScriptError

from framework import defaults
from framework.connection import ThreadClients
from framework.errors import (
    HueyardError,
    ReadOnlyReplicaError,
    RedisUnavailableError,
    StorageError,
    WrongKeyError,
)
from framework.keys import CHILDREN, LOGS, SAMPLES, QueueKeys

__all__ = [
    "COUNT_DIGITS",
    "SCRIPTS",
    "Script",
    "Scripts",
    "is_count",
    "refuses_scripts",
    "storage_error",
]

_QUEUE_KEYS = frozenset(field.name for field in fields(QueueKeys))


@dataclass(frozen=True)
class Script:
    """One script's contract: its key names, argument names and, if any, its rows."""

    name: str
    keys: tuple[str, ...]
    args: tuple[str, ...] = ()
    row: tuple[str, ...] = ()
    """Names of the values of one row of a list passed after ``args``."""

    def prelude(self) -> str:
        """The Lua that binds this script's names (part of the generated source)."""
        lines = [
            "local K = {" + ", ".join(f"{n} = KEYS[{i}]" for i, n in enumerate(self.keys, 1)) + "}",
            "local A = {" + ", ".join(f"{n} = ARGV[{i}]" for i, n in enumerate(self.args, 1)) + "}",
        ]
        if self.row:
            first, width = len(self.args) + 1, len(self.row)
            names = ", ".join(f"{n} = ARGV[i + {offset}]" for offset, n in enumerate(self.row))
            lines += [
                "-- The rows passed after the named arguments, one table each.",
                "local function rows()",
                f"  local i = {first} - {width}",
                "  return function()",
                f"    i = i + {width}",
                "    if i > #ARGV then return nil end",
                f"    return {{{names}}}",
                "  end",
                "end",
                f"local ROW_COUNT = (#ARGV - {len(self.args)}) / {width}",
            ]
        return "\n".join(lines)

    def key_values(self, queue: QueueKeys | None, given: Mapping[str, str]) -> list[str]:
        out = []
        for name in self.keys:
            if name in given:
                out.append(given[name])
            elif queue is not None and name in _QUEUE_KEYS:
                out.append(getattr(queue, name))
            else:
                raise HueyardError(f"script {self.name!r} needs key {name!r}; pass it in keys=")
        return out

    def arg_values(self, given: Mapping[str, Any], rows: Iterable[Sequence[Any]]) -> list[Any]:
        try:
            out = [given[name] for name in self.args]
        except KeyError as exc:
            raise HueyardError(f"script {self.name!r} needs argument {exc.args[0]!r}") from None
        if len(given) != len(self.args):
            extra = sorted(set(given) - set(self.args))
            raise HueyardError(f"script {self.name!r} takes no argument {', '.join(extra)}")
        width = len(self.row)
        for row in rows:
            if len(row) != width:
                raise HueyardError(
                    f"script {self.name!r}: a row has {len(row)} values, not {width} "
                    f"({', '.join(self.row)})"
                )
            out.extend(row)
        return out


SCRIPTS: dict[str, Script] = {
    script.name: script
    for script in (
        Script(
            "enqueue",
            keys=("waiting", "delayed", "seq", "wake", "completed", "failed"),
            args=(
                "job_prefix",
                "key_prefix",
                "handler",
                "priority",
                "delay_ms",
                "options",
            ),
            row=("id", "payload", "key"),
        ),
        Script(
            "claim",
            keys=("waiting", "active", "failed", "paused", "limiter", "outbox"),
            args=(
                "job_prefix",
                "key_prefix",
                "lease_ms",
                "token",
                "consumer",
                "rate_max",
                "rate_per_ms",
            ),
        ),
        Script(
            "release",
            keys=(
                "job",
                "active",
                "waiting",
                "delayed",
                "completed",
                "failed",
                "wake",
                "paused",
                "limiter",
                "waiting_children",
                "outbox",
            ),
            args=(
                "job_prefix",
                "key_prefix",
                "stats_prefix",
                "metrics_ttl",
                "default_priority",
                "keep_completed",
                "keep_failed",
                "id",
                "token",
                "outcome",
                "value",
                "traceback",
                "delay_ms",
                "duration_ms",
                "fetch",
                "next_token",
                "consumer",
                "lease_ms",
                "rate_max",
                "rate_per_ms",
                "follow_up",
            ),
        ),
        Script(
            "promote",
            keys=("delayed", "waiting", "failed", "seq", "wake", "outbox"),
            args=("job_prefix", "key_prefix", "default_priority", "limit"),
            row=("id",),
        ),
        Script("renew", keys=("active",), args=("job_prefix", "lease_ms"), row=("id", "token")),
        Script(
            "giveback",
            keys=("active", "waiting", "failed", "wake", "outbox"),
            args=(
                "job_prefix",
                "key_prefix",
                "stats_prefix",
                "metrics_ttl",
                "default_priority",
                "keep_failed",
                "limit",
            ),
            row=("token",),
        ),
        Script(
            "recover",
            keys=("active", "waiting", "failed", "wake", "outbox"),
            args=(
                "job_prefix",
                "key_prefix",
                "stats_prefix",
                "metrics_ttl",
                "default_priority",
                "keep_failed",
                "max_stalls",
                "limit",
            ),
        ),
        Script(
            "retry",
            keys=("failed", "waiting", "seq", "wake"),
            args=("job_prefix", "key_prefix", "default_priority", "limit", "skip"),
            row=("id",),
        ),
        Script(
            "remove",
            keys=(
                "waiting",
                "active",
                "delayed",
                "completed",
                "failed",
                "waiting_children",
                "outbox",
            ),
            args=("job_prefix", "key_prefix", "id", "queue"),
        ),
        Script("clean", keys=("set",), args=("job_prefix", "age_ms", "limit")),
        Script(
            "cancel",
            keys=(
                "waiting",
                "active",
                "delayed",
                "completed",
                "failed",
                "waiting_children",
                "outbox",
            ),
            args=(
                "job_prefix",
                "key_prefix",
                "stats_prefix",
                "metrics_ttl",
                "keep_failed",
                "id",
                "queue",
            ),
        ),
        Script(
            "children",
            keys=("job", "waiting_children", "completed", "failed", "outbox"),
            args=(
                "job_prefix",
                "key_prefix",
                "stats_prefix",
                "metrics_ttl",
                "keep_completed",
                "id",
                "max_children",
            ),
            row=("child", "state"),
        ),
        Script("update", keys=("job", "logs"), args=("token", "kind", "value", "max_lines")),
        Script("resume", keys=("paused", "waiting", "wake")),
        Script(
            "schedule_mark",
            keys=("schedule",),
            args=("tick_ms", "job", "fired_ms", "ttl_ms", "reset_above_ms", "spec", "seen_ms"),
        ),
        Script("cache_unlock", keys=("lock",), args=("token",)),
        Script("cache_incr", keys=("counter",), args=("amount", "ttl")),
        Script("peek", keys=("hash",), row=("field", "cap")),
        Script("peek_lines", keys=("list",), args=("count", "cap")),
    )
}
"""Every script, by name."""

_CONSTANTS: dict[str, int | str] = {
    "SEQ_SPAN": defaults.SEQ_SPAN,
    "WAKE_MAX": defaults.WAKE_MAX,
    "MAX_SAMPLES": defaults.MAX_SAMPLES,
    "LOGS": LOGS,
    "SAMPLES": SAMPLES,
    "CHILDREN": CHILDREN,
    "CHILD_BAND": defaults.CHILD_BAND,
    "CHILD_LINKS_KEPT": defaults.CHILD_LINKS_KEPT,
    "OUTBOX_MAX": defaults.OUTBOX_MAX,
    "CANCELLED": defaults.CANCELLED,
    "PRIORITY_HIGHEST": defaults.PRIORITY_HIGHEST,
    "PRIORITY_LOWEST": defaults.PRIORITY_LOWEST,
    "MAX_ATTEMPTS": defaults.MAX_ATTEMPTS,
    "MAX_TIMEOUT": int(defaults.MAX_TIMEOUT),
}


def _lua_literal(value: int | str) -> str:
    if isinstance(value, int):
        return str(value)
    if any(char in value for char in "'\\\n"):
        raise ValueError(f"constant {value!r} can not be a plain Lua string")
    return f"'{value}'"


_FUNCTION = re.compile(r"^local function (\w+)\(", re.MULTILINE)


@cache
def _library() -> dict[str, str]:
    """The functions of ``_lib.lua`` by name, each with the comment above it."""
    text = (resources.files("framework") / "lua" / "_lib.lua").read_text(encoding="utf-8")
    blocks = {}
    for chunk in text.split("\n\n"):
        found = _FUNCTION.search(chunk)
        if found:
            blocks[found.group(1)] = chunk.strip("\n")
    return blocks


_CALL = re.compile(r"\b(\w+)\(")
"""A call: a whole word and an opening parenthesis (each name found once per text, not
one search per library function: a consumer builds every script at start-up)."""


def _used(code: str, library: dict[str, str]) -> list[str]:
    """The library functions ``code`` calls, with those they call, in library order."""
    wanted: set[str] = set()
    pending = [code]
    while pending:
        for name in set(_CALL.findall(pending.pop())) - wanted:
            if name in library:
                wanted.add(name)
                pending.append(library[name])
    return [name for name in library if name in wanted]


@cache
def source(name: str) -> str:
    """The whole source of script ``name`` as Redis runs it.

    Only the library functions the script uses are included: Lua makes a
    closure of every ``local function`` each time a script runs.
    """
    body = (resources.files("framework") / "lua" / f"{name}.lua").read_text(encoding="utf-8")
    library = _library()
    header = ["-- Generated by framework/scripts.py: constants from keys.py and defaults.py."]
    header += [f"local {n} = {_lua_literal(v)}" for n, v in _CONSTANTS.items()]
    header.append("local TOLD = {} -- the notices this call posts to the outbox (post())")
    header.append("local CHECKED = {} -- keys whose type this call found right (wrong_type())")
    functions = [library[function] for function in _used(body, library)]
    return "\n".join([*header, SCRIPTS[name].prelude(), *functions, body])


class Scripts:
    """Every script on one client: ``scripts.call(name, queue_keys, keys=..., args=...)``.

    With ``clients``, calls run on the calling thread's own connection (see
    :class:`~framework.connection.ThreadClients`): the hot paths, a producer's
    enqueue and a worker's release.
    """

    def __init__(self, conn: redis.Redis, clients: ThreadClients | None = None) -> None:
        self._conn = conn
        self._clients = clients
        self._scripts: dict[str, RedisScript] = {
            name: conn.register_script(source(name)) for name in SCRIPTS
        }
        self._queue_keys: dict[tuple[str, str], list[str]] = {}

    def client(self) -> redis.Redis:
        """The client calls run on: this thread's own (with ``clients``), else the shared one."""
        return self._conn if self._clients is None else self._clients.get()

    def _keys(
        self, script: Script, queue: QueueKeys | None, given: Mapping[str, str] | None
    ) -> list[str]:
        if given:
            return script.key_values(queue, given)
        # The queue's keys only: the same list every time.
        cache_key = (script.name, queue.waiting if queue is not None else "")
        found = self._queue_keys.get(cache_key)
        if found is None:
            found = self._queue_keys[cache_key] = script.key_values(queue, {})
        return found

    def call(
        self,
        name: str,
        queue: QueueKeys | None = None,
        *,
        keys: Mapping[str, str] | None = None,
        args: Mapping[str, Any] | None = None,
        rows: Iterable[Sequence[Any]] = (),
        client: Any = None,
    ) -> Any:
        """Run script ``name``; its keys come from ``queue`` and ``keys``, its arguments by name.

        One EVALSHA. After a Redis restart (or ``SCRIPT FLUSH``) the server no
        longer knows the script: it is loaded again and the call repeated,
        once. In a pipeline (``client=pipe``), redis-py loads it before the
        pipeline runs.
        """
        script = SCRIPTS[name]
        key_values = self._keys(script, queue, keys)
        arg_values = script.arg_values(args or {}, rows)
        registered = self._scripts[name]
        if client is None:  # the usual call: no isinstance of redis-py's Protocol classes
            conn = self.client()
        elif isinstance(client, Pipeline):
            return registered(keys=key_values, args=arg_values, client=client)
        elif isinstance(client, ClusterPipeline):
            # No SCRIPT EXISTS round before a Cluster's pipeline: a node that does not
            # know the script answers NOSCRIPT in this command's reply (see ``load``).
            return client.evalsha(registered.sha, len(key_values), *key_values, *arg_values)
        else:
            conn = client
        try:
            try:
                return conn.evalsha(registered.sha, len(key_values), *key_values, *arg_values)
            except NoScriptError:
                registered.sha = conn.script_load(registered.script)
                return conn.evalsha(registered.sha, len(key_values), *key_values, *arg_values)
        except redis.ResponseError as exc:
            raise storage_error(exc, f"script {name!r}") from None

    def queue(
        self,
        name: str,
        pipe: Pipeline,
        queue: QueueKeys | None = None,
        *,
        keys: Mapping[str, str] | None = None,
        args: Mapping[str, Any] | None = None,
        rows: Iterable[Sequence[Any]] = (),
    ) -> None:
        """Queue script ``name`` on ``pipe`` by its SHA alone, without the ``SCRIPT EXISTS``
        round trip redis-py makes before a pipeline with scripts: for reads that promise
        one round trip, and an idle worker's wait-then-claim. A server that does not know
        the script answers ``NOSCRIPT`` in that command's reply; :meth:`load` it, then
        run the pipeline again."""
        script = SCRIPTS[name]
        key_values = self._keys(script, queue, keys)
        arg_values = script.arg_values(args or {}, rows)
        pipe.evalsha(self._scripts[name].sha, len(key_values), *key_values, *arg_values)

    def load(self, *names: str) -> None:
        """Load scripts ``names`` into the server (after a ``NOSCRIPT`` reply); on a
        Cluster, into every master."""
        for name in names:
            registered = self._scripts[name]
            registered.sha = self._conn.script_load(registered.script)


COUNT_DIGITS = 18
"""The most digits of a count hueyard's scripts take (``_lib.lua``: never overflows)."""

_COUNT = re.compile(rb"0|[1-9][0-9]{0,%d}" % (COUNT_DIGITS - 1))


def is_count(value: bytes) -> bool:
    """Whether a counter's value is one hueyard's scripts count on: ``_lib.lua``'s
    ``is_count`` (a whole number >= 0 as INCR reads it: no sign, no leading zero, no
    exponent, at most :data:`COUNT_DIGITS` digits). A key holding anything else makes
    every enqueue of its queue refuse to run.

    >>> [is_count(v) for v in (b"0", b"42", b"-5", b"007", b"abc", b"1e3")]
    [True, True, False, False, False, False]
    """
    return _COUNT.fullmatch(value) is not None


def refuses_scripts(error: BaseException) -> bool:
    """Whether Redis answered that it runs no Lua script: EVALSHA / EVAL renamed or
    removed (``rename-command``: "unknown command"), or forbidden to the user by an ACL
    (``NOPERM``). hueyard changes every job with a script, so nothing moves then."""
    text = str(error).lower()
    refused = "unknown command" in text or "noperm" in text
    return refused and ("'evalsha'" in text or "'eval'" in text)


_REPLY = re.compile(
    r"HUEYARD_(?P<code>WRONGTYPE|COUNTER|EXISTS) (?P<rest>.*?)"
    r"(?: script: \w+, on @user_script:\d+\.)?$",
    re.DOTALL,
)
"""The error replies of ``_lib.lua`` (what follows a script error in Redis 7 is cut off)."""

_SCRIPTS_FIX = (
    "Un-rename EVAL and EVALSHA (drop their rename-command lines from redis.conf and "
    "restart Redis), or grant hueyard's Redis user +@scripting (ACL); a managed Redis that "
    "disallows scripts is not supported"
)

_FIX = (
    "Find what wrote it (redis-cli TYPE / DUMP the key), then DEL or RENAME it; "
    "hueyard recreates a key that is absent"
)


def storage_error(
    exc: redis.ResponseError,
    what: str,
    *,
    key: str | None = None,
    wanted: str | None = None,
    conn: redis.Redis | None = None,
) -> StorageError:
    """The :class:`StorageError` for an error Redis answered ``what`` (a script, a command) with.

    A replica's ``READONLY`` is a :class:`ReadOnlyReplicaError`; a Redis out of memory
    (``OOM``, with ``noeviction``) says so. Both say what to do.

    A key of the wrong type is named, with its type, the type hueyard keeps
    there and the fix; for a script, nothing was written (scripts check
    first). For a plain command on ``key`` (which should be a ``wanted``),
    pass them, and ``conn`` to look the key's type up.
    """
    text = str(exc)
    if isinstance(exc, ClusterDownError):
        return RedisUnavailableError(
            f"Redis refused {what}: the Redis Cluster is down ({text}), during a failover or "
            "while a slot has no master; nothing was written, try again"
        )
    if isinstance(exc, redis.ReadOnlyError):
        return ReadOnlyReplicaError(
            f"Redis refused {what}: it is a read-only replica ({text}). Point REDIS_URL "
            "([redis] url) at the primary"
        )
    if isinstance(exc, redis.OutOfMemoryError):
        return StorageError(
            f"Redis refused {what}: it is out of memory (used_memory over maxmemory, "
            f"maxmemory-policy noeviction), so it refuses writes and transactions ({text}). "
            "Free memory or raise maxmemory; hueyard doctor says how"
        )
    if refuses_scripts(exc) and "NOPERM" not in text:  # an ACL's: the NOPERM hint says it
        return StorageError(
            f"Redis refused {what}: it runs no Lua scripts ({text}), and hueyard stores and "
            f"moves every job with one. {_SCRIPTS_FIX}"
        )
    found = _REPLY.search(text)
    if found is None and key is not None and wanted is not None and "WRONGTYPE" in text:
        kind = "?"
        if conn is not None:
            with contextlib.suppress(redis.RedisError):
                found_kind = conn.type(key)
                kind = found_kind.decode() if isinstance(found_kind, bytes) else found_kind
        return _wrong_type(key, kind, wanted, f"{what} failed")
    if found is None:
        return StorageError(f"Redis answered {what} with an error: {text}. {_hint(text)}")
    code, rest = found.group("code"), found.group("rest")
    if code == "WRONGTYPE":
        kind, wanted, key = rest.split(" ", 2)
        return _wrong_type(key, kind, wanted, f"{what} stopped before writing anything")
    if code == "COUNTER":
        return StorageError(
            f"Redis key {rest!r} holds something other than the whole number hueyard counts "
            f"with; {what} stopped before writing anything. {_FIX}"
        )
    kind, key = rest.split(" ", 1)
    return StorageError(
        f"Redis key {key!r} exists already (a {kind} this call did not write), so a new "
        f"job's record can not be stored there; {what} stopped before writing anything of "
        "its batch. Enqueue again (new ids), and look at the key: hueyard did not write it"
    )


_HINTS = (
    (
        ("DB index is out of range",),
        "The database number of [redis] url (or REDIS_DB) is not one this server has: "
        "it has `databases` of them (redis-cli CONFIG GET databases), numbered from 0",
    ),
    (
        ("NOPERM",),
        "The Redis user of [redis] url may not run this command or touch this key (ACL): "
        "grant it the commands and the keys under the app's prefix, or use another user",
    ),
    (
        ("unknown command", "unknown subcommand"),
        "This Redis lacks a command hueyard uses (a server too old, or a command "
        "renamed or disabled in its config)",
    ),
)
"""An error Redis answered, by what its text holds -> what to do about it."""

_DATA_HINT = (
    "A key under the app's prefix may hold data hueyard did not write; look for it with "
    "redis-cli --scan and TYPE"
)


def _hint(text: str) -> str:
    """What to do about an error Redis answered that hueyard's scripts did not name."""
    for marks, hint in _HINTS:
        if any(mark in text for mark in marks):
            return hint
    return _DATA_HINT


def _wrong_type(key: str, kind: str, wanted: str, happened: str) -> WrongKeyError:
    return WrongKeyError(
        f"Redis key {key!r} is a {_KINDS.get(kind, kind)}, not the "
        f"{_KINDS.get(wanted, wanted)} hueyard keeps there; {happened}. {_FIX}",
        key=key,
    )


_KINDS = {"zset": "sorted set"}
"""Redis's type names, as a message says them."""
