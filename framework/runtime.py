"""The process's app: built once, on first use, from the environment.

``framework.app`` and ``framework.get_app()`` are this module's
:func:`get_app`; the handlers of the global registry enqueue through it.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from types import FrameType

from framework.application import Hueyard
from framework.config import load_settings
from framework.errors import HandlerError
from framework.handlers import REGISTRY, discover

__all__ = ["get_app", "reset_app", "set_app"]

_app: Hueyard | None = None
_lock = threading.Lock()
_building = threading.local()


def get_app(env: Mapping[str, str] | None = None) -> Hueyard:
    """The process's app, built once: config from ``$HUEYARD_CONFIG``, handlers discovered,
    their start-up checks passed (:mod:`framework.checks`), in test mode when
    ``$HUEYARD_IMMEDIATE`` says so (:mod:`framework.immediate`).

    A handler module that asks for the app while it is being imported by this
    very build (at module level) gets a :class:`HandlerError` at once, naming
    the fix, instead of waiting for itself forever.
    """
    app = _app
    if app is not None:
        return app
    if getattr(_building, "active", False):
        raise HandlerError(
            f"framework.get_app() was called while the app is being built, from handler "
            f"module {_importing_module()!r} imported by that build (at module level); the "
            "app does not exist yet. Call it inside the handler or a function instead"
        )
    with _lock:
        if _app is None:
            _building.active = True
            try:
                _set(_build(os.environ if env is None else env))
            finally:
                _building.active = False
        assert _app is not None
        return _app


def _importing_module() -> str:
    """The module whose top-level code is running further up this thread's stack (the
    handler module being imported), or ``?``."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>":
            return str(frame.f_globals.get("__name__", "?"))
        frame = frame.f_back
    return "?"


def _build(env: Mapping[str, str]) -> Hueyard:
    from framework.immediate import mode_of

    settings = load_settings(env=env)
    mode = mode_of(env)  # HUEYARD_IMMEDIATE: the test mode (framework/immediate.py)
    discover(env)
    app = Hueyard(settings, REGISTRY)
    if mode is not None:
        app.immediate_use_memory = mode == "memory"
        app.immediate = True
    return app


def _set(app: Hueyard | None) -> None:
    global _app  # noqa: PLW0603 - one app per process, built lazily
    _app = app


def set_app(app: Hueyard) -> None:
    """Make ``app`` the process's app: ``framework.app``, ``framework.enqueue`` and the
    handlers of the global registry use it (an app built from other settings, a test's).
    """
    with _lock:
        _set(app)
        REGISTRY.bind(app)


def reset_app() -> None:
    """Close and forget the process's app (tests, or after changing the environment)."""
    with _lock:
        if _app is not None:
            REGISTRY.unbind(_app)
            _app.close()
        _set(None)


REGISTRY.use_factory(get_app)
