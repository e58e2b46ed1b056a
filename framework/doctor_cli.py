"""``hueyard doctor [QUEUE...] [--json]``: why a queue does not move (docs/operations.md).

Exit status: 0 when nothing is an error, 1 when a finding is an error, 2
when the doctor could not look (a usage error, an unknown queue, a config
error, Redis unreachable: then the one finding says so).
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections import Counter
from typing import TYPE_CHECKING

from framework.doctor import Check, Finding, Severity, diagnose, exit_status
from framework.errors import HueyardError
from framework.runtime import get_app

if TYPE_CHECKING:
    from framework.cli import Subcommands

__all__ = ["add_doctor_command", "report"]

WIDTH = 100
"""Columns the text report is wrapped to."""


def add_doctor_command(commands: Subcommands) -> None:
    doctor = commands.add_parser(
        "doctor",
        help="explain a queue that does not move: Redis, pause, rate limit, consumers, "
        "workers, delayed and failed jobs",
    )
    doctor.add_argument(
        "queues", nargs="*", metavar="QUEUE", help="the queues to look at (default: every queue)"
    )
    doctor.add_argument("--json", action="store_true", help="print the findings as a JSON list")
    doctor.set_defaults(run=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    try:
        app = get_app()
        findings = diagnose(app, args.queues)
    except HueyardError as exc:  # could not look: an unknown queue, the config, Redis' answers
        print(f"hueyard: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([finding.to_json() for finding in findings], indent=2))
    else:
        print(report(findings))
    return exit_status(findings)


def report(findings: list[Finding]) -> str:
    """The findings as text: one block each (what, evidence, fix), then a count."""
    blocks = []
    for finding in findings:
        where = f"queue {finding.queue}: " if finding.queue is not None else "redis: "
        if finding.check is Check.FINE:
            where = ""
        lines = [f"{finding.severity.value.upper():<8} {where}{finding.what}"]
        for label, text in (("evidence", finding.evidence), ("fix", finding.fix)):
            if text:
                lines.append(
                    textwrap.fill(
                        text,
                        WIDTH,
                        initial_indent=f"{'':9}{label:<9} ",
                        subsequent_indent=" " * 19,
                        break_on_hyphens=False,
                        break_long_words=False,
                    )
                )
        blocks.append("\n".join(lines))
    counts = Counter(finding.severity for finding in findings)
    tally = ", ".join(
        f"{severity.value} {counts[severity]}"
        for severity in (Severity.ERROR, Severity.WARNING, Severity.INFO)
    )
    return "\n\n".join(blocks) + f"\n\n{tally}"
