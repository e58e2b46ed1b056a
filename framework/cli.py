"""The ``hueyard`` command.

::

    hueyard check [--json]                  validate config, handlers and their start-up checks
                                            (framework/checks.py); show the queues (and flows)
    hueyard enqueue QUEUE HANDLER --data JSON [--priority N] [--delay S | --eta TIME]
                    [--attempts N] [--timeout S] [--key KEY [--key-ttl S]]
                    [--keep-completed N] [--keep-failed N]
    hueyard status [--json]                 jobs per queue and state, paused or not
    hueyard jobs QUEUE --state STATE [--page N] [--page-size N] [--json]
    hueyard job ID [--json]                 one job: payload, result, error, traceback, logs
    hueyard retry QUEUE (--all | JOB_ID)    failed jobs back to waiting
    hueyard cancel QUEUE JOB_ID             stop a job: waiting -> failed, running -> stopped
    hueyard pause QUEUE / hueyard resume QUEUE
    hueyard clean QUEUE --state STATE --older-than SECONDS
    hueyard schedules [--json]              the schedules: next run, last run and its job
    hueyard schedule (run | pause | resume) NAME
    hueyard doctor [QUEUE...] [--json]      why a queue does not move: findings and fixes
    hueyard upgrade-keys [--force]          move hueyard 0.1.0's keys to the per-queue layout

The job commands read and act through :class:`framework.jobs.Jobs`
(``docs/jobs.md``).

Exit status 0 on success, 1 on any error (the message names the problem and
the fix), 2 on a usage error: a bad argument, or an enqueue option out of range
(``--delay nan``, ``--priority 0``), said in one line. ``hueyard doctor`` reports
problems rather than having them: 1 when a finding is an error, 2 when it could
not look (usage, config, Redis unreachable); see ``framework/doctor_cli.py``.

Plugins add commands
--------------------

Other packages add commands through the ``hueyard.commands`` entry-point
group, so that ``framework`` never imports them. The dashboard adds
``hueyard dashboard`` and ``hueyard up`` this way (``dashboard/cli.py``)::

    [project.entry-points."hueyard.commands"]
    dashboard = "dashboard.cli:add_dashboard"
    up = "dashboard.cli:add_up"

Each entry point is an :data:`AddCommands`: a callable that receives the
``add_subparsers()`` object (:data:`Subcommands`) and adds its command with
``add_parser``, setting ``set_defaults(run=...)`` to a :data:`RunCommand`
(``args -> exit status``)::

    def add_dashboard(commands: Subcommands) -> None:
        command = commands.add_parser("dashboard", help="serve the web dashboard")
        command.add_argument("--port", type=int)
        command.set_defaults(run=serve)        # serve(args) -> int

The entry point's name is the command it adds. Only the plugin of the
command being run is loaded (a built-in command loads none, so ``hueyard
status`` never imports Flask); ``hueyard --help`` and an unknown command
load them all, in name order, after the built-in commands. One that fails to
load, or whose callable raises, breaks nothing else: its name becomes a
command that exits 1 with one line naming the plugin and the error.
A :class:`~framework.errors.HueyardError` raised by a ``run`` is printed as
``hueyard: error: ...`` with exit status 1, as for the built-in commands.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import logging
import os
import signal
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import redis

from framework import defaults
from framework.checks import CheckReport
from framework.connection import connection_failure
from framework.cut import render, shorten
from framework.doctor_cli import add_doctor_command
from framework.errors import (
    HueyardError,
    JobActionError,
    OptionError,
    PayloadError,
    StorageError,
)
from framework.forget_cli import add_forget_command
from framework.ids import check_job_id
from framework.immediate import ENV
from framework.jobs import (
    FINISHED_STATES,
    MAX_OLDER_THAN,
    MAX_PAGE,
    MAX_PAGE_SIZE,
    STATES,
    Cancel,
    JobInfo,
    Jobs,
    check_older_than,
)
from framework.options import OPTION_NAMES, shown
from framework.runtime import get_app
from framework.schedule_cli import add_schedule_commands
from framework.textgrid import grid, moment, printable_output, utc
from framework.upgrade_cli import add_upgrade_command

__all__ = ["COMMANDS_GROUP", "AddCommands", "RunCommand", "Subcommands", "main"]

COMMANDS_GROUP = "hueyard.commands"
"""The entry-point group of the commands that other packages add."""

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What ``add_subparsers()`` returns: plugins call its ``add_parser``."""

RunCommand: TypeAlias = Callable[[argparse.Namespace], int]
"""A command's body: the parsed arguments in, the exit status out."""

AddCommands: TypeAlias = Callable[[Subcommands], None]
"""An entry point of :data:`COMMANDS_GROUP`: adds its command to the ``hueyard`` parser."""


def _build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hueyard", description="Declarative background jobs on Huey and Redis."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("check", help="validate config and handlers, list the queues")
    check.add_argument("--json", action="store_true", help="print the queues as a JSON list")
    check.set_defaults(run=_check)

    enqueue = commands.add_parser("enqueue", help="enqueue one job and print its id")
    enqueue.add_argument("queue")
    enqueue.add_argument("handler", help="handler name, e.g. send_message")
    enqueue.add_argument("--data", required=True, help="the payload as JSON")
    enqueue.add_argument("--priority", type=int, help="1 (runs first) to 10 (runs last)")
    enqueue.add_argument("--delay", type=float, help="seconds to wait before the job may run")
    enqueue.add_argument("--eta", help="when the job may run: an ISO 8601 time with its zone")
    enqueue.add_argument("--attempts", type=int, help="override the queue's attempts")
    enqueue.add_argument("--timeout", type=float, help="seconds one run may take")
    enqueue.add_argument(
        "--key",
        help="idempotency key: while a job of the queue with this key is unfinished, "
        "store nothing and print its id",
    )
    enqueue.add_argument(
        "--key-ttl", type=float, help="seconds the key stays taken after the job finished"
    )
    enqueue.add_argument(
        "--keep-completed",
        type=int,
        help="keep this job when completed among the newest N (0: delete)",
    )
    enqueue.add_argument(
        "--keep-failed", type=int, help="keep this job when failed among the newest N (0: delete)"
    )
    enqueue.set_defaults(run=_enqueue)
    _add_job_commands(commands)
    add_schedule_commands(commands)
    add_doctor_command(commands)
    add_upgrade_command(commands)
    add_forget_command(commands)
    _add_plugin_commands(commands, _command_name(argv))
    return parser


def _command_name(argv: Sequence[str]) -> str | None:
    """The command ``argv`` runs (its first argument that is not an option), if any."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def _add_plugin_commands(commands: Subcommands, wanted: str | None) -> None:
    """Load the plugin that adds ``wanted``; all of them when it is none of theirs (help,
    a typo: argparse lists every command) and none when it is a built-in command."""
    if wanted in commands.choices:
        return
    found = importlib.metadata.entry_points(group=COMMANDS_GROUP)
    if wanted in found.names:
        found = found.select(name=wanted)
    for entry_point in sorted(found, key=lambda entry_point: entry_point.name):
        try:
            add: AddCommands = entry_point.load()
            add(commands)
        except Exception as exc:  # a broken plugin must not break the other commands
            _add_unavailable(commands, entry_point, exc)


@dataclass(frozen=True)
class _Unavailable:
    """The body of a command whose plugin failed to load: it says why."""

    reason: str

    def __call__(self, args: argparse.Namespace) -> int:
        raise HueyardError(self.reason)


def _add_unavailable(
    commands: Subcommands, entry_point: importlib.metadata.EntryPoint, exc: Exception
) -> None:
    name = entry_point.name
    dist = entry_point.dist
    origin = f"{entry_point.value} of {dist.name} {dist.version}" if dist else entry_point.value
    error = " ".join(f"{type(exc).__name__}: {exc}".split())
    fix = ""
    if isinstance(exc, ImportError):
        fix = f"; reinstall {dist.name if dist else 'it'} with its dependencies"
    reason = f"command {name!r} is unavailable: its plugin {origin} failed to load: {error}{fix}"
    if name in commands.choices:  # the name is taken: nowhere to report it but here
        print(f"hueyard: warning: {reason}", file=sys.stderr)
        return
    text = f"(unavailable: its plugin failed to load; run hueyard {name} for why)"
    # No -h of its own, so that `hueyard NAME --help` says why too.
    command = commands.add_parser(name, help=text, add_help=False)
    command.set_defaults(run=_Unavailable(reason))


def _add_job_commands(commands: Subcommands) -> None:
    states = ", ".join(STATES)
    status = commands.add_parser("status", help="jobs per queue and state")
    status.add_argument("--json", action="store_true", help="print a JSON object per queue")
    status.set_defaults(run=_status)

    jobs = commands.add_parser("jobs", help="list the jobs of a queue in one state")
    jobs.add_argument("queue")
    jobs.add_argument("--state", required=True, type=_state(STATES), help=states)
    jobs.add_argument(
        "--page", type=_whole(1, MAX_PAGE), default=1, help="page number, from 1 (default 1)"
    )
    jobs.add_argument(
        "--page-size",
        type=_whole(1, MAX_PAGE_SIZE),
        default=25,
        help=f"jobs a page, 1 to {MAX_PAGE_SIZE} (default 25)",
    )
    jobs.add_argument("--json", action="store_true", help="print the page as JSON")
    jobs.set_defaults(run=_list)

    job = commands.add_parser("job", help="show one job")
    job.add_argument("job_id", metavar="ID", type=_job_id)
    job.add_argument("--json", action="store_true", help="print the job as JSON")
    job.set_defaults(run=_show)

    retry = commands.add_parser("retry", help="put failed jobs back in waiting")
    retry.add_argument("queue")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "job_id", nargs="?", metavar="JOB_ID", type=_job_id, help="the failed job to retry"
    )
    which.add_argument("--all", action="store_true", help="every failed job of the queue")
    retry.set_defaults(run=_retry)

    cancel = commands.add_parser("cancel", help="cancel a job: fail it, or stop it if it runs")
    cancel.add_argument("queue")
    cancel.add_argument("job_id", metavar="JOB_ID", type=_job_id)
    cancel.set_defaults(run=_cancel)

    pause = commands.add_parser("pause", help="stop handing out jobs; running jobs finish")
    pause.add_argument("queue")
    pause.set_defaults(run=_pause)
    resume = commands.add_parser("resume", help="hand out the jobs of a paused queue again")
    resume.add_argument("queue")
    resume.set_defaults(run=_resume)

    clean = commands.add_parser("clean", help="delete old completed or failed jobs")
    clean.add_argument("queue")
    clean.add_argument(
        "--state", required=True, type=_state(FINISHED_STATES), help="completed or failed"
    )
    clean.add_argument(
        "--older-than",
        type=_older_than,
        required=True,
        metavar="SECONDS",
        help="finished this long ago",
    )
    clean.set_defaults(run=_clean)


def _state(allowed: Sequence[str]) -> Callable[[str], str]:
    """A ``--state`` argument: one of ``allowed``, else a usage error (exit status 2)."""

    def state(text: str) -> str:
        if text not in allowed:
            raise argparse.ArgumentTypeError(
                f"unknown job state {text!r} here; use one of {', '.join(allowed)}"
            )
        return text

    return state


def _whole(low: int, high: int) -> Callable[[str], int]:
    """A whole-number argument from ``low`` to ``high``, else a usage error."""

    def whole(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not allowed; use a whole number from {low:,} to {high:,}"
            )
        return value

    return whole


def _older_than(text: str) -> float:
    """``--older-than SECONDS``: what :func:`framework.jobs.check_older_than` takes."""
    try:
        return check_older_than(float(text))
    except (ValueError, JobActionError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not allowed; use seconds from 0 to {MAX_OLDER_THAN:,} (about 31 years)"
        ) from None


def _job_id(text: str) -> str:
    """A job id argument: one that can not name a job (``<id>:logs``) is a usage error
    (exit status 2), refused before anything is read."""
    try:
        return check_job_id(text)
    except JobActionError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser(sys.argv[1:] if argv is None else argv)
    args, unknown = parser.parse_known_args(argv)
    run: RunCommand = args.run
    # A command whose plugin failed to load says so whatever its arguments were.
    if unknown and not isinstance(run, _Unavailable):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # What hueyard's own commands print shows others' text (payloads, errors, log lines
    # from Redis): never as escape sequences a terminal would act on. A plugin's command
    # (the dashboard's servers) keeps its own streams.
    module = getattr(run, "__module__", type(run).__module__)
    own = module.startswith("framework.") or module == __name__  # __main__ under python -m
    if own and sys.stdout is None:  # started with its standard output closed (>&-)
        print(
            "hueyard: error: standard output is closed, so what the command does could not "
            "be told (an enqueued job's id would be lost); nothing was done",
            file=sys.stderr,
        )
        return 1
    try:
        with printable_output() if own else contextlib.nullcontext():
            try:
                status = run(args)
                if sys.stdout is not None:
                    sys.stdout.flush()  # a full disk says so here, not as an error at exit
                return status
            except KeyboardInterrupt as exc:  # Ctrl-C: no traceback; what was done, if told
                done = "".join(f"; {note}" for note in getattr(exc, "__notes__", ()))
                print(f"hueyard: interrupted{done}", file=sys.stderr)
                return 128 + signal.SIGINT
            except OptionError as exc:  # an option's value: a usage error
                print(f"hueyard: error: {exc}", file=sys.stderr)
                return 2
            except HueyardError as exc:
                print(f"hueyard: error: {exc}", file=sys.stderr)
                return 1
            except redis.RedisError as exc:  # what no command turned into its own error
                url = _redis_url()
                print(
                    f"hueyard: error: Redis at {url} {connection_failure(exc, 0, url)}",
                    file=sys.stderr,
                )
                return 1
    except BrokenPipeError:
        # The reader went away (hueyard jobs ... | head): stop quietly, as a command killed
        # by SIGPIPE would, and let nothing try to flush into the closed pipe at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as exc:  # the output could not be written (a full disk: > /dev/full)
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(f"hueyard: error: {_unwritten(exc)}", file=sys.stderr)
        return 1


def _unwritten(exc: OSError) -> str:
    """Why the output was not written, with what it would have said if it was kept."""
    told = getattr(exc, "hueyard_output", None)
    said = f"; it would have said: {told}" if told else ""
    return f"could not write to standard output ({exc.strerror or exc}){said}"


def _redis_url() -> str:
    """The app's Redis URL, redacted, for an error that names none."""
    try:
        return get_app().settings.redis.connection.redacted_url
    except HueyardError:
        return "[redis] url"


def _check(args: argparse.Namespace) -> int:
    app = get_app()
    rows = [_queue_row(app, name) for name in app.queues]
    reports = app.reports
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(_table(rows))
        for report in reports:
            print(f"\n{_report(report)}")
        extra = "".join(f", {report.summary}" for report in reports)
        print(
            f"\nconfig OK: {len(rows)} queues, {len(app.registry)} handlers, "
            f"{len(app.schedules)} schedules{extra}"
        )
    return 0


def _report(report: CheckReport) -> str:
    """A handler module's check (:mod:`framework.checks`): its title, then its table."""
    if not report.rows:
        return f"{report.title}: {report.summary}"
    return f"{report.title}:\n{grid(report.headers, report.rows)}"


def _queue_row(app: Any, name: str) -> dict[str, Any]:
    runtime = app.queue(name)
    policy = runtime.policy
    return {
        "name": name,
        "attempts": policy.attempts,
        "backoff": policy.backoff.model_dump(),
        "timeout": policy.timeout,
        "priority": policy.priority,
        "concurrency": policy.concurrency,
        "rate_limit": policy.rate_limit.model_dump() if policy.rate_limit else None,
        "keep_completed": policy.keep_completed,
        "keep_failed": policy.keep_failed,
        "handlers": sorted(runtime.handlers),
    }


def _table(rows: list[dict[str, Any]]) -> str:
    headers = [
        "queue",
        "attempts",
        "backoff",
        "timeout",
        "priority",
        "concurrency",
        "rate limit",
        "keep ok/failed",
        "handlers",
    ]

    def cells(row: dict[str, Any]) -> list[str]:
        backoff = row["backoff"]
        rate = row["rate_limit"]
        return [
            row["name"],
            str(row["attempts"]),
            f"{backoff['type']} {backoff['delay']:g}s",
            f"{row['timeout']:g}s" if row["timeout"] else "-",
            str(row["priority"]),
            str(row["concurrency"]),
            f"{rate['max']}/{rate['per']:g}s" if rate else "-",
            f"{row['keep_completed']}/{row['keep_failed']}",
            ", ".join(row["handlers"]) or "(none)",
        ]

    body = [cells(row) for row in rows]
    widths = [max(len(line[i]) for line in [headers, *body]) for i in range(len(headers))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in [headers, *body]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def _enqueue(args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.data)
    except json.JSONDecodeError as exc:
        raise OptionError(f"--data is not valid JSON: {exc}") from None
    except RecursionError:
        raise PayloadError(
            f"--data nests deeper than JSON can be read here; a payload may nest at most "
            f"{defaults.MAX_PAYLOAD_DEPTH} levels"
        ) from None
    eta = None
    if args.eta is not None:
        try:
            eta = datetime.datetime.fromisoformat(args.eta)
        except ValueError:
            raise OptionError(
                f"--eta {shown(args.eta)} is not an ISO 8601 time; e.g. 2026-12-01T09:00:00+01:00"
            ) from None
        if eta.tzinfo is None:
            raise OptionError(
                f"--eta {shown(args.eta)} has no time zone, so its moment would be a guess; "
                f"add one: {args.eta}+00:00 (UTC), or the offset where it is meant"
            )
    if args.key_ttl is not None and args.key is None:
        raise OptionError("--key-ttl keeps a job key taken after its job: give --key with it")
    app = get_app()
    try:
        job_id = app.enqueue(
            args.queue,
            args.handler,
            payload,
            priority=args.priority,
            delay=args.delay,
            eta=eta,
            attempts=args.attempts,
            timeout=args.timeout,
            keep_completed=args.keep_completed,
            keep_failed=args.keep_failed,
            key=args.key,
            key_ttl=args.key_ttl,
        )
    except OptionError as exc:  # said with the command's flag, not the API's name=
        raise OptionError(_as_flag(str(exc))) from None
    try:
        print(job_id, flush=True)
    except OSError as exc:  # stored, but its id could not be written: it is told anyway
        exc.hueyard_output = f"job {job_id} was enqueued on {args.queue}"  # type: ignore[attr-defined]
        raise
    if app.immediate:  # HUEYARD_IMMEDIATE: the job ran in this process; say how it ended
        info = Jobs(app, masked=True).get(job_id)
        state = info.state if info is not None else "removed by its retention"
        error = f": {info.error}" if info is not None and info.error else ""
        print(f"test mode ({ENV}): the job ran here and is {state}{error}", file=sys.stderr)
    return 0


def _as_flag(message: str) -> str:
    """An enqueue option's error as the command names the option: ``delay=nan is not
    allowed`` becomes ``--delay nan is not allowed``."""
    name, sep, rest = message.partition("=")
    if sep and name in OPTION_NAMES:
        return f"--{name.replace('_', '-')} {rest}"
    return message


# -- job commands ----------------------------------------------------------------------------


def _jobs() -> Jobs:
    # What the commands print has its secrets masked, as on the dashboard.
    return Jobs(get_app(), masked=True)


def _status(args: argparse.Namespace) -> int:
    counts = _jobs().counts_all()
    unreadable = [line for c in counts.values() for line in c.unreadable_reasons()]
    for line in unreadable:  # stderr: --json stays the spec's shape
        print(f"hueyard: error: {line}", file=sys.stderr)
    status = 1 if unreadable else 0
    if args.json:
        print(json.dumps({name: c.to_json() for name, c in counts.items()}, indent=2))
        return status
    headers = ["queue", "waiting", "active", "delayed", "completed", "failed", "paused",
               "waiting-children", "state"]  # fmt: skip
    body = [
        [
            c.queue,
            *map(str, (c.waiting, c.active, c.delayed, c.completed, c.failed, c.paused)),
            str(c.waiting_children),
            "paused" if c.is_paused else "running",
        ]
        for c in counts.values()
    ]
    print(grid(headers, body, numeric=range(1, 8)))
    return status


def _list(args: argparse.Namespace) -> int:
    page = _jobs().list_jobs(args.queue, args.state, page=args.page, page_size=args.page_size)
    if page.unreadable:
        raise StorageError(
            f"key {page.unreadable} is not the sorted set hueyard keeps there, so its "
            f"{args.state} jobs can not be listed, and none of them can move; "
            f"hueyard doctor {args.queue} says what to do"
        )
    if args.json:
        out = {
            "queue": args.queue,
            "state": args.state,
            "page": page.page,
            "pages": page.pages,
            "page_size": page.page_size,
            "total": page.total,
            "items": [item.to_json() for item in page.items],
        }
        print(json.dumps(out, indent=2, default=str))
        return 0
    first = (page.page - 1) * page.page_size + 1
    shown = f"{first}-{first + len(page.items) - 1} of {page.total}" if page.items else "none"
    print(f"{args.state} jobs of {args.queue}: {shown} (page {page.page} of {page.pages})")
    if not page.items:
        return 0
    when = _WHEN[args.state]
    headers = ["id", "handler", "priority", "attempts", f"{when} (UTC)", "details"]
    body = [
        [
            job.id,
            job.handler or "?",
            str(job.priority or "?"),
            f"{job.attempts}/{job.max_attempts or '?'}",
            moment(getattr(job, when)),
            _details(job, args.state),
        ]
        for job in page.items
    ]
    print()
    print(grid(headers, body, numeric=[2]))
    return 0


def _key_shown(key: str | None, ttl: float | None) -> str | None:
    if key is None:
        return None
    return key if not ttl else f"{key} (kept {ttl:g} s after the job finishes)"


def _children_shown(job: JobInfo) -> str | None:
    if not job.children:
        return None
    return (
        f"{job.children} ({job.children_completed} completed, {job.children_failed} failed, "
        f"{job.children_pending} pending)"
    )


def _show(args: argparse.Namespace) -> int:
    job = _jobs().get(args.job_id)
    if job is None:
        print(f"hueyard: error: no job {args.job_id!r} in any queue", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(job.to_json(), indent=2, default=str))
        return 0
    rows = [
        ("queue", job.queue),
        ("state", job.state),
        ("handler", job.name),
        ("priority", job.priority),
        ("attempts", f"{job.attempts} of {job.max_attempts or '?'} (stalls: {job.stalls})"),
        ("created", utc(job.created)),
        ("started", utc(job.started)),
        ("finished", utc(job.finished)),
        ("due", utc(job.due)),
        ("timeout", None if job.timeout is None else f"{job.timeout:g} s"),
        ("key", _key_shown(job.key, job.key_ttl)),
        ("consumer", job.consumer),
        ("parent", job.parent),
        ("children", _children_shown(job)),
        ("follows", job.follows),
        ("then", " -> ".join(job.then) or None),
        ("payload", _json(job.payload)),
        ("result", None if job.result is None else _json(job.result)),
        ("progress", None if job.progress is None else _json(job.progress)),
        ("error", job.error),
        ("problem", job.problem),
    ]
    print(f"job {job.id}")
    for label, value in rows:
        if value not in (None, ""):
            print(f"  {label:<9} {value}")
    if job.traceback:
        print("traceback:")
        print(textwrap.indent(job.traceback.rstrip(), "  "))
    if job.logs:
        print(f"logs ({len(job.logs)}):")
        for line in job.logs:
            print(f"  {line}")
    return 0


def _retry(args: argparse.Namespace) -> int:
    jobs = _jobs()
    if args.all:
        moved = jobs.retry_all(args.queue)
        print(f"retried {moved} failed job(s) of queue {args.queue!r}")
        if moved.skipped:
            print(
                f"hueyard: error: {moved.skipped} failed job(s) of queue {args.queue!r} were "
                "left failed: their records can not be read (hueyard jobs "
                f"{args.queue} --state failed lists them; hueyard job ID says why)",
                file=sys.stderr,
            )
            return 1
        return 0
    if jobs.retry(args.queue, args.job_id):
        place = jobs.find(args.job_id)  # waiting, or paused with its queue
        now = place.state if place is not None else "waiting"
        held = " (the queue is paused: it runs once resumed)" if now == "paused" else ""
        print(f"job {args.job_id} of queue {args.queue!r}: failed -> {now}{held}")
        return 0
    place = jobs.find(args.job_id)
    where = f"it is {place.state} in queue {place.queue!r}" if place else "no queue has it"
    print(
        f"hueyard: error: job {args.job_id!r} is not a failed job of queue {args.queue!r}; {where}",
        file=sys.stderr,
    )
    return 1


def _cancel(args: argparse.Namespace) -> int:
    app = get_app()
    if Jobs(app).cancel(args.queue, args.job_id) is Cancel.CANCELLED:
        print(f"job {args.job_id} of queue {args.queue!r}: cancelled (failed, not retried)")
        return 0
    within = app.settings.consumer.lease / 3
    print(
        f"job {args.job_id} of queue {args.queue!r} is running: its consumer stops it within "
        f"{within:g} s (one lease renewal) and fails it as cancelled"
    )
    return 0


def _pause(args: argparse.Namespace) -> int:
    jobs = _jobs()
    if not jobs.pause(args.queue):
        print(f"queue {args.queue!r} was already paused")
        return 0
    held = jobs.counts(args.queue).paused
    print(f"queue {args.queue!r} paused: {held} job(s) held; running jobs finish")
    return 0


def _resume(args: argparse.Namespace) -> int:
    jobs = _jobs()
    if not jobs.resume(args.queue):
        print(f"queue {args.queue!r} was not paused")
        return 0
    print(f"queue {args.queue!r} resumed: {jobs.counts(args.queue).waiting} job(s) waiting")
    return 0


def _clean(args: argparse.Namespace) -> int:
    deleted = _jobs().clean(args.queue, args.state, args.older_than)
    print(
        f"deleted {deleted} {args.state} job(s) of queue {args.queue!r} "
        f"that finished over {args.older_than:g} s ago"
    )
    return 0


DETAILS_CHARS = 60
"""Characters of a job's details in a line of ``hueyard jobs``."""

_WHEN = {
    "waiting": "created",
    "paused": "created",
    "active": "started",
    "delayed": "due",
    "completed": "finished",
    "failed": "finished",
    "waiting-children": "started",
}
"""The time each state's list shows: every state of :data:`framework.jobs.STATES`."""


def _details(job: JobInfo, state: str) -> str:
    if job.problem:
        return shorten(f"! {job.problem}", DETAILS_CHARS, text=True)
    if state == "failed":
        return shorten(job.error or "", DETAILS_CHARS, text=True)
    return shorten(job.result if state == "completed" else job.payload, DETAILS_CHARS)


def _json(value: Any) -> str:
    """``value`` as one line of JSON (a value read only in part: its start and the marker)."""
    return str(render(value))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
