"""Huey's consumer run under a tracer, as coverage, pdb or an IDE's debugger run it.

    python -m tests.e2e.traced_consumer framework.app [huey_consumer's options]

Every thread gets a trace function (``sys.settrace``, ``threading.settrace``)
that traces no line: the cheapest tracer, enough to put CPython's
interpreter on its tracing path.
"""

from __future__ import annotations

import sys
import threading
from types import FrameType
from typing import Any

from huey.bin.huey_consumer import consumer_main


def _trace(frame: FrameType, event: str, arg: Any) -> None:
    return None


if __name__ == "__main__":
    threading.settrace(_trace)
    sys.settrace(_trace)
    consumer_main()
