"""A campaign under real ``huey_consumer`` processes: its consumer is killed mid-fan-out,
the campaign job comes back after its lease and runs again, and every contact still
has exactly one message job.

The messages queue is paused, so the fan-out's jobs wait there to be counted (a
paused queue keeps taking jobs), and the campaign job, their parent, waits for them
in ``waiting-children``; sending them is tests/e2e/test_whatsapp.py's part, and a
campaign completing with its messages tests/e2e/test_fanin.py's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from framework.application import Hueyard
from framework.config import parse_settings
from framework.handlers import HandlerRegistry
from framework.jobs import Jobs
from pipelines import campaigns, messages
from tests.e2e.conftest import E2E, wait_until

pytestmark = pytest.mark.e2e

CONTACTS = 40_000
BATCH = 250
LEASE = 3.0


def config(e2e: E2E) -> str:
    return e2e.pipeline_config(
        """
[queues.campaigns]
attempts = 2
concurrency = 1

[queues.messages]
keep_completed = 10
""",
        lease=LEASE,
        max_stalls=2,
    )


def test_a_campaign_killed_mid_fan_out_runs_again_and_messages_each_contact_once(
    e2e: E2E, tmp_path: Path
) -> None:
    # Given a segment of 40,000 contacts, the messages queue paused, and one consumer
    directory = tmp_path / "campaigns"
    directory.mkdir(mode=0o700)  # a campaign directory must be private
    rows = "".join(f"+1415{n:07d},contact-{n}\n" for n in range(CONTACTS))
    (directory / "segment.csv").write_text("phone,contactId\n" + rows, encoding="utf-8")
    path = tmp_path / "campaign.toml"
    path.write_text(config(e2e), encoding="utf-8")
    registry = HandlerRegistry()
    registry.register(campaigns.run_campaign.spec)
    registry.register(messages.send_message.spec)
    app = Hueyard(parse_settings(config(e2e), env={}), registry)
    jobs = Jobs(app)
    jobs.pause("messages")
    env = {
        "HUEYARD_HANDLER_PACKAGES": "",
        "HUEYARD_HANDLER_MODULES": "pipelines.campaigns,pipelines.messages",
        "HUEYARD_CAMPAIGN_DIR": str(directory),
        "HUEYARD_QUEUES": "campaigns",
    }
    consumer = e2e.start_consumer(config=path, env=env)
    campaign: dict[str, Any] = {
        "campaignId": "spring-sale",
        "recipients_file": "segment.csv",
        "content": "Spring sale: 20% off this week",
        "batch_size": BATCH,
    }
    job_id = app.enqueue("campaigns", "run_campaign", campaign)

    # When the consumer is killed after some batches and before the last
    def fanned_out() -> int:
        return jobs.counts("messages").paused

    wait_until(lambda: fanned_out() >= 2 * BATCH, timeout=30, what="2 batches", interval=0.02)
    consumer.kill()
    at_kill = fanned_out()
    assert at_kill < CONTACTS, "the fan-out finished before the kill; make it longer"

    # And a consumer comes back: the campaign job's lease runs out, and it runs again
    e2e.start_consumer(config=path, env=env)
    wait_until(
        lambda: (info := jobs.get(job_id)) is not None and info.state == "waiting-children",
        timeout=120,
        what="the campaign job to finish its fan-out after its lease",
        interval=0.2,
    )

    # Then every contact has exactly one message job, keyed by campaign and contact, each
    # one a child of the campaign job (the ones of the killed run found by their keys)
    info = jobs.get(job_id)
    assert info is not None and info.result is not None
    assert (info.children, info.children_pending) == (CONTACTS, CONTACTS)
    assert fanned_out() == CONTACTS
    assert info.result["recipients"] == CONTACTS
    assert info.result["enqueued"] + info.result["alreadyEnqueued"] == CONTACTS
    assert info.result["alreadyEnqueued"] >= at_kill  # the run after the kill skipped them
    conn = e2e.conn
    pattern = f"{{{e2e.prefix}:messages}}:key:spring-sale:*"
    keys = sum(1 for _ in conn.scan_iter(pattern, count=5000))
    assert keys == CONTACTS
    assert info.stalls == 1  # it came back once, by its lease
    app.close()
