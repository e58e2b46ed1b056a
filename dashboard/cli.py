"""The dashboard's ``hueyard`` commands, added through the ``hueyard.commands`` entry points.

::

    hueyard dashboard [--host H] [--port P]  serve the dashboard (waitress; SIGTERM is graceful)
    hueyard up [--host H] [--port P]         a consumer and the dashboard together

Both follow the dashboard's credential rules: outside ``HUEYARD_ENV=development``
they refuse to start without ``DASHBOARD_USERNAME`` / ``DASHBOARD_PASSWORD``.

``pyproject.toml`` registers :func:`add_dashboard` and :func:`add_up`; the
protocol is described in :mod:`framework.cli`, which never imports this module.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from dashboard.server import run_dashboard, run_up

if TYPE_CHECKING:
    from framework.cli import RunCommand, Subcommands

__all__ = ["add_dashboard", "add_up"]


def add_dashboard(commands: Subcommands) -> None:
    """Add ``hueyard dashboard``."""
    _add(commands, "dashboard", "serve the web dashboard and health endpoints", _dashboard)


def add_up(commands: Subcommands) -> None:
    """Add ``hueyard up``."""
    _add(
        commands,
        "up",
        "run a consumer for every queue and the dashboard in one process (the dashboard's "
        "credential rules apply: HUEYARD_ENV=development allows the defaults)",
        _up,
    )


def _add(commands: Subcommands, name: str, text: str, run: RunCommand) -> None:
    command = commands.add_parser(name, help=text, description=text)
    command.add_argument("--host", help="address to listen on (default: [dashboard] host)")
    command.add_argument(
        "--port", type=_port, help="port, 1 to 65535 (default: [dashboard] port, 5000)"
    )
    command.set_defaults(run=run)


def _dashboard(args: argparse.Namespace) -> int:
    logging.getLogger("hueyard").setLevel(logging.INFO)
    run_dashboard(args.host, args.port)
    return 0


def _up(args: argparse.Namespace) -> int:
    logging.getLogger("hueyard").setLevel(logging.INFO)
    run_up(args.host, args.port)
    return 0


def _port(text: str) -> int:
    """``--port``: a TCP port (waitress would take 70000 as 70000 mod 65536)."""
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 65535):
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port; use 1 to 65535")
    return int(text)
