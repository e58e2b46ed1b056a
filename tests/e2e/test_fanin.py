"""Fan-in and chains under real ``huey_consumer`` processes.

- a parent (queue ``parents``) and its children (queue ``kids``) run in consumers
  of different queues, and its follow-up (``beta.summary``) gets its result;
- the consumer running the children is SIGKILLed while they run: its children come
  back by their leases, the notices it did not deliver are delivered by the next
  consumer's recovery pass, and the parent completes exactly once, with the right
  counts, and starts its follow-up once.

The handlers are ``tests/e2e/e2e_handlers.py``'s ``parents.fan`` (spawns ``n``
keyed children that sleep ``ms``, those listed in ``fail`` failing) and
``kids.work`` (``attempts = 1``: a failure is final).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from framework import defaults
from framework.application import Hueyard
from framework.config import parse_settings
from framework.handlers import HandlerRegistry
from framework.jobs import JobInfo, Jobs
from pipelines import campaigns, messages
from tests.e2e.conftest import E2E, wait_until
from tests.e2e.e2e_handlers import beta_summary, parents_fan

pytestmark = pytest.mark.e2e

LEASE = 2


def finished(get: Callable[[str], JobInfo | None], job_id: str, timeout: float) -> JobInfo:
    """Wait until job ``job_id`` (as ``get`` reads it) completed or failed; return it."""

    def probe() -> JobInfo | None:
        info = get(job_id)
        return info if info is not None and info.state in ("completed", "failed") else None

    return wait_until(probe, timeout=timeout, what=f"job {job_id} to finish", interval=0.1)


def completed_in_metrics(e2e: E2E, queue: str) -> int:
    return sum(point.completed for point in e2e.jobs.metrics(queue, minutes=10))


@pytest.mark.untimed
def test_a_parent_and_its_children_in_consumers_of_different_queues_then_its_follow_up(
    e2e: E2E,
) -> None:
    # Given one consumer for the parents and another for the children and follow-ups
    e2e.start_consumer(env={"HUEYARD_QUEUES": "parents"})
    e2e.start_consumer(env={"HUEYARD_QUEUES": "kids,beta"})
    # When a parent fans out five children, two of which fail, with a follow-up
    parent = parents_fan.enqueue({"tag": "t1", "n": 5, "fail": [1, 3], "ms": 50},
                                 then=beta_summary)  # fmt: skip
    # Then it completes when they finished, with the counts
    info = finished(e2e.job, parent, timeout=30)
    assert info.state == "completed", info.error
    assert (info.children, info.children_completed, info.children_failed) == (5, 3, 2)
    assert info.result == {"tag": "t1", "spawned": 5}
    ends = e2e.records.ends("kids.work", "t1")
    assert sorted(entry["i"] for entry in ends) == [0, 2, 4]
    # and its follow-up got its result, once
    [summary] = e2e.records.wait_for(1, job="beta.summary", tag="t1", event="end")
    assert summary["payload"] == {"tag": "t1", "spawned": 5}
    follow = e2e.job(summary["id"])
    assert follow is not None and follow.follows == f"parents:{parent}"
    links = e2e.jobs.children("parents", parent, page_size=10)
    assert [link.state for link in links.items].count("failed") == 2
    assert {link.queue for link in links.items} == {"kids"}


def test_a_parent_completes_once_with_the_counts_though_a_consumer_dies_while_children_run(
    e2e: E2E,
) -> None:
    # Given a consumer with a short lease serving every queue, four workers for children
    config = e2e.write_config("fanin.toml", lease=LEASE, concurrency={"kids": 4})
    first = e2e.start_consumer(config=config)
    # When a parent fans out 60 children of 300 ms, 6 of which fail, with a follow-up
    n, failing = 60, [5, 15, 25, 35, 45, 55]
    parent = parents_fan.enqueue({"tag": "k1", "n": n, "fail": failing, "ms": 300},
                                 then=beta_summary)  # fmt: skip
    # and the consumer is SIGKILLed while children run (some done, some running, some waiting)
    e2e.records.wait_for(12, job="kids.work", tag="k1", event="end", timeout=60)
    first.kill()
    info = e2e.job(parent)
    assert info is not None and info.state == "waiting-children"
    assert 0 < info.children_completed + info.children_failed < n
    # and another consumer starts
    killed_at = time.time()
    e2e.start_consumer(config=config)
    # Then the parent completes, exactly once, with the right counts
    info = finished(e2e.job, parent, timeout=120)
    assert info.state == "completed", info.error
    assert (info.children, info.children_completed, info.children_failed) == (n, n - 6, 6)
    assert completed_in_metrics(e2e, "parents") == 1
    # every child that did not fail ended at least once, and one ran again after the kill
    ends = e2e.records.ends("kids.work", "k1")
    assert {entry["i"] for entry in ends} == set(range(n)) - set(failing)
    assert any(entry["t"] > killed_at for entry in ends)
    # and its follow-up started once, with its result
    [summary] = e2e.records.wait_for(1, job="beta.summary", tag="k1", event="end")
    assert summary["payload"] == {"tag": "k1", "spawned": n}
    time.sleep(LEASE)  # a recovery pass or two: nothing more may come
    assert len(e2e.records.of("beta.summary", "k1")) == 1
    assert e2e.counts("beta").completed == 1
    # and nothing is left in any outbox
    for queue in ("parents", "kids"):
        outbox = e2e.app.queue(queue).storage.q.outbox
        assert e2e.conn.zcard(outbox) == 0, queue


CONTACTS = 2000


def campaign_config(e2e: E2E) -> str:
    return e2e.pipeline_config(
        """
[queues.campaigns]
attempts = 2
concurrency = 1

[queues.messages]
concurrency = 4
keep_completed = 10
""",
        lease=LEASE,
        max_stalls=3,
    )


def test_a_campaign_completes_when_its_messages_did_though_their_consumer_was_killed(
    e2e: E2E, tmp_path: Path
) -> None:
    # Given the real campaigns and messages pipelines (the log sender), messages paused
    path = tmp_path / "campaign.toml"
    path.write_text(campaign_config(e2e), encoding="utf-8")
    registry = HandlerRegistry()
    registry.register(campaigns.run_campaign.spec)
    registry.register(messages.send_message.spec)
    app = Hueyard(parse_settings(campaign_config(e2e), env={}), registry)
    jobs = Jobs(app)
    jobs.pause("messages")
    env = {
        "HUEYARD_HANDLER_PACKAGES": "",
        "HUEYARD_HANDLER_MODULES": "pipelines.campaigns,pipelines.messages",
        "HUEYARD_MESSAGE_SENDER": "log",
    }
    consumer = e2e.start_consumer(config=path, env=env)
    # When a campaign to 2,000 contacts fans out
    recipients = [f"+1415{n:07d}" for n in range(CONTACTS)]
    campaign = app.enqueue(
        "campaigns", "run_campaign",
        {"campaignId": "autumn", "recipients": recipients, "content": "Autumn sale"},
    )  # fmt: skip
    wait_until(
        lambda: (info := jobs.get(campaign)) is not None and info.state == "waiting-children",
        timeout=60, what="the campaign to fan out", interval=0.1,
    )  # fmt: skip
    # and five of its messages are cancelled before they are sent, the rest resumed
    for job in jobs.list_jobs("messages", "paused", page_size=5).items:
        jobs.cancel("messages", job.id)
    jobs.resume("messages")
    # and the consumer is SIGKILLed while the messages are being sent
    wait_until(lambda: jobs.counts("messages").completed >= 10, timeout=60, what="10 sent")
    wait_until(
        lambda: (info := jobs.get(campaign)) is not None and info.children_completed >= 300,
        timeout=60, what="300 messages counted", interval=0.02,
    )  # fmt: skip
    consumer.kill()
    info = jobs.get(campaign)
    assert info is not None and info.state == "waiting-children"
    assert info.children_completed < CONTACTS - 5, "every message was sent before the kill"
    # and a consumer starts again
    e2e.start_consumer(config=path, env=env)
    # Then the campaign completes, once, counting every message once: the 5 cancelled and
    # those its consumer was killed while sending (at most one send per message job: they
    # fail "may have been sent", pipelines/_once.py) failed, the others completed
    info = finished(jobs.get, campaign, timeout=120)
    assert info.state == "completed", info.error
    failed = [job.error or "" for job in jobs.list_jobs("messages", "failed", page_size=50).items]
    assert failed.count("cancelled") == 5
    assert all(error == "cancelled" or "SendOutcomeUnknown" in error for error in failed)
    assert (info.children, info.children_completed, info.children_failed) == (
        CONTACTS, CONTACTS - len(failed), len(failed),
    )  # fmt: skip
    assert sum(point.completed for point in jobs.metrics("campaigns", minutes=10)) == 1
    assert info.result is not None and info.result["enqueued"] == CONTACTS
    # though the messages' own records are mostly gone by retention (keep_completed = 10)
    assert jobs.counts("messages").completed == 10
    links = jobs.children("campaigns", campaign, page_size=100)
    assert links.total == defaults.CHILD_LINKS_KEPT
    assert [link.state for link in links.items[: len(failed)]] == ["failed"] * len(failed)
    app.close()
