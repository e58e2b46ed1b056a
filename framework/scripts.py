"""The Lua scripts of ``framework/lua/``, loaded once and called by name.

Each script is ``_lib.lua`` followed by the script itself, registered with
``SCRIPT LOAD`` semantics (EVALSHA, falling back to EVAL after a Redis restart
flushed the script cache). Every job state change is one of these scripts, so
each is atomic and one round trip.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from framework.connection import ThreadClients

__all__ = ["SCRIPT_NAMES", "Scripts"]

SCRIPT_NAMES = (
    "enqueue",
    "claim",
    "release",
    "promote",
    "renew",
    "recover",
    "retry",
    "remove",
    "clean",
    "update",
)


@cache
def _source(name: str) -> str:
    lua = resources.files("framework") / "lua"
    library = (lua / "_lib.lua").read_text(encoding="utf-8")
    return library + "\n" + (lua / f"{name}.lua").read_text(encoding="utf-8")


class Scripts:
    """The registered scripts on one connection: ``scripts.claim(keys=..., args=...)``."""

    def __init__(self, conn: redis.Redis, clients: ThreadClients | None = None) -> None:
        self._conn = conn
        self._clients = clients
        self._scripts: dict[str, Script] = {
            name: conn.register_script(_source(name)) for name in SCRIPT_NAMES
        }

    def __getattr__(self, name: str) -> Script:
        try:
            return self._scripts[name]
        except KeyError:
            raise AttributeError(name) from None

    def run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Call a script: one EVALSHA (the hot path of enqueue and release).

        With ``clients``, on this thread's own connection (see
        :class:`~framework.connection.ThreadClients`). After a Redis restart or
        ``SCRIPT FLUSH`` the server no longer knows the script; it is loaded
        again and the call repeated, once.
        """
        script = self._scripts[name]
        conn = self._conn if self._clients is None else self._clients.get()
        try:
            return conn.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            script.sha = conn.script_load(script.script)
            return conn.evalsha(script.sha, len(keys), *keys, *args)
