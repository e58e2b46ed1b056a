"""What the benchmark runs: one realistic payload, one result, and a probe.

Both sides (raw Huey and hueyard) run handlers that do the same work: call
:meth:`Probe.hit`, which notes the start time and does one ``INCR`` on Redis.
The ``INCR`` reply tells the probe when the last job of a drain is done, so no
polling loop competes with the workers for the CPU.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis
from pydantic import BaseModel

__all__ = ["COUNTER_KEY", "RESULT", "Probe", "WhatsAppMessage", "whatsapp_message"]

COUNTER_KEY = "bench:done"
"""The completion counter both sides' handlers increment (in the benchmark DB)."""

RESULT: dict[str, Any] = {
    "status": "sent",
    "message_id": "wamid.HBgNNDkxNTExMjM0NTY3OBUCABEYEjQ1QjBDMjg3RTFBNkQ5QkQ3RAA=",
    "provider": "whatsapp",
}
"""What a ``send`` handler returns: small, like a provider's acknowledgement."""


class WhatsAppMessage(BaseModel):
    """The payload as a pydantic model, for the "validated enqueue" row."""

    to: str
    contact_id: int
    conversation_id: str
    type: str
    content: str
    template: str | None = None
    campaign_id: int | None = None
    metadata: dict[str, str] = {}


def whatsapp_message(n: int) -> dict[str, Any]:
    """One outbound WhatsApp message, as the CRM's ``messages`` queue carries it (~300 B JSON)."""
    return {
        "to": "+4915112345678",
        "contact_id": 48_213 + n,
        "conversation_id": "5f0c2a4e-7d1b-4c55-9a0e-2b8f1d3c6e71",
        "type": "text",
        "content": (
            "Hi Anna, your order #10482 has shipped and should arrive on Thursday. "
            "Reply STOP to opt out."
        ),
        "template": None,
        "campaign_id": 731,
        "metadata": {"source": "campaign", "locale": "de-DE"},
    }


class Probe:
    """Shared by the handlers of both sides: start times and a completion count.

    It has its own connection pool, so its traffic is never counted as a side's
    round trips; both sides pay for it equally (one ``INCR`` per job).
    """

    def __init__(self, url: str) -> None:
        self.conn = redis.Redis.from_url(url)
        self.target = 0
        self.done = threading.Event()
        self.started = threading.Event()
        self.started_at = 0.0

    def arm(self, target: int) -> None:
        """Expect ``target`` completions (the counter is reset by the caller's FLUSHDB)."""
        self.target = target
        self.done.clear()
        self.started.clear()

    def hit(self) -> None:
        """The handler's work: note the start, count the job in Redis."""
        self.started_at = time.perf_counter()
        self.started.set()
        if int(self.conn.incr(COUNTER_KEY)) >= self.target > 0:
            self.done.set()

    def count(self) -> int:
        return int(self.conn.get(COUNTER_KEY) or 0)

    def close(self) -> None:
        self.conn.close()
        self.conn.connection_pool.disconnect()
