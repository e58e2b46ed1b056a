"""The main job, end to end: one job on each of the CRM's ten queues.

``make demo`` (or ``python -m pipelines._demo``) compiles ``config/queues.toml``
(``$HUEYARD_CONFIG``), starts an in-process consumer for every queue, enqueues
one realistic job per queue (a webhook goes to a receiver on 127.0.0.1 that
checks its signature), waits for every result and prints them. Exit status 0
when every job completed, 1 otherwise. It uses the configured Redis server.

It uses the providers the environment configures (docs/pipelines.md), falling
back to the development ones, which say ``"dryRun": true``. The demo's own
phone number and address are made up, so its message goes through a configured
WhatsApp API only to a number of yours, ``HUEYARD_DEMO_PHONE``; without it, to
the ``log`` sender. Its email goes to ``HUEYARD_DEMO_EMAIL``, else to an
``example.com`` address (reserved: nothing is delivered there).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from framework.consumer import MultiQueueConsumer
from framework.errors import HueyardError
from framework.runtime import get_app

WEBHOOK_SECRET = "demo-secret-0123456789abcdef"  # noqa: S105 - a throwaway key for the local receiver
TIMEOUT = 30.0


def _receiver() -> tuple[HTTPServer, list[bool]]:
    from pipelines.webhooks import verify

    verdicts: list[bool] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            ok = verify(
                WEBHOOK_SECRET,
                int(self.headers.get("X-Hueyard-Timestamp", "0")),
                body,
                self.headers.get("X-Hueyard-Signature", ""),
            )
            verdicts.append(ok)
            self.send_response(200 if ok else 401)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, verdicts


def _jobs(webhook_url: str) -> list[tuple[str, str, dict[str, Any]]]:
    phone = os.environ.get("HUEYARD_DEMO_PHONE") or "+14155550123"
    email = os.environ.get("HUEYARD_DEMO_EMAIL") or "jane@example.com"
    return [
        ("messages", "send_message", {"to": phone, "content": "Hello World"}),
        (
            "campaigns",
            "run_campaign",
            {
                "campaignId": "camp-123",
                "recipients": [phone] if phone != "+14155550123" else [phone, "+447700900123"],
                "content": "Our sale starts today",
            },
        ),
        (
            "flows",
            "execute_flow",
            {
                "flow": "welcome",  # config/flows/welcome.yaml: greets, then waits a day
                "contactId": "c-42",
                "trigger": "contact.created",
                "phone": phone,
                "variables": {"name": "Ada"},
            },
        ),
        (
            "emails",
            "send_email",
            {"to": email, "subject": "Your export is ready", "body": "Hi Jane"},
        ),
        (
            "webhooks",
            "deliver_webhook",
            {
                "url": webhook_url,
                "event": "contact.created",
                "body": {"contactId": "c-42"},
                "secret": WEBHOOK_SECRET,
            },
        ),
        ("ai", "generate_reply", {"conversationId": "conv-7", "prompt": "Opening hours?"}),
        (
            "imports",
            "import_contacts",
            {
                "importId": "imp-9",
                "rows": [
                    {"name": "Ada Lovelace", "phone": "+44 20 7946 0958"},
                    {"name": "", "phone": "12345"},
                ],
            },
        ),
        (
            "exports",
            "export_data",
            {
                "exportId": "exp-demo",
                "kind": "contacts",
                "format": "csv",
                "rows": [{"name": "Ada", "phone": "+442079460958"}],
            },
        ),
        (
            "analytics",
            "snapshot",
            {"period": "weekly", "date": "2025-11-05", "metrics": {"messages_sent": [120, 80]}},
        ),
        (
            "notifications",
            "notify",
            {"userId": "u-1", "title": "Import finished", "body": "2 rows", "severity": "info"},
        ),
    ]


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HUEYARD_WEBHOOK_ALLOW_PRIVATE", "1")  # the receiver is local
    if not os.environ.get("HUEYARD_DEMO_PHONE"):
        # The demo's number is made up: never send it through a configured WhatsApp API.
        os.environ["HUEYARD_MESSAGE_SENDER"] = "log"
    try:
        app = get_app()
    except HueyardError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    server, verdicts = _receiver()
    consumer = MultiQueueConsumer(app, list(app.queues), shutdown_timeout=5)
    consumer.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hooks/crm"
        enqueued = [
            (queue, name, app.enqueue(queue, name, payload)) for queue, name, payload in _jobs(url)
        ]
        print(f"enqueued {len(enqueued)} jobs on {len(app.queues)} queues; waiting for results\n")
        failures = 0
        for queue, name, job_id in enqueued:
            outcome = _wait(app, queue, job_id)
            failures += outcome is None
            shown = "did not complete" if outcome is None else json.dumps(outcome)[:90]
            print(f"  {queue + '.' + name:34} {shown}")
        print(f"\nwebhook signature verified by the receiver: {all(verdicts) and bool(verdicts)}")
    except HueyardError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    finally:
        consumer.stop(graceful=True)
        server.shutdown()
    print("demo: all jobs completed" if not failures else f"demo: {failures} job(s) failed")
    return 0 if not failures else 1


def _wait(app: Any, queue: str, job_id: str) -> Any:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            result = app.result(queue, job_id)
        except Exception:
            return None
        if result is not None:
            return result
        time.sleep(0.05)
    return None


if __name__ == "__main__":
    sys.exit(main())
