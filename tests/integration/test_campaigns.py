"""Campaigns fan out through ``enqueue_many`` with one job key per contact.

Against the real Redis server, with the real ``config/queues.toml`` and the
pipelines' handlers: campaign jobs run through the real execution path (the
queue's Huey dequeues and executes them, so ``current_job()`` reports
progress), message jobs are counted in Redis per contact.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from framework.application import Hueyard
from framework.config import parse_settings
from framework.errors import PayloadError
from framework.handlers import REGISTRY, HandlerRegistry, discover
from framework.jobs import JobInfo, Jobs
from framework.runtime import reset_app, set_app
from pipelines import campaigns
from pipelines._recipients import CAMPAIGN_DIR_ENV, MAX_CONTACT_ID

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def app(redis_conn: redis.Redis, redis_url: str) -> Iterator[Hueyard]:
    """The real config/queues.toml on the test database, installed as the process app."""
    discover(env={})  # every pipeline: the config's schedules name their handlers
    registry = HandlerRegistry()
    for spec in REGISTRY:
        if spec.module.startswith("pipelines."):
            registry.register(spec)
    text = (ROOT / "config" / "queues.toml").read_text(encoding="utf-8")
    app = Hueyard(parse_settings(text, env={"REDIS_URL": redis_url}), registry)
    for queue in ("campaigns", "messages"):
        app.queue(queue).storage.read_timeout = 0.1
    set_app(app)
    yield app
    reset_app()
    app.close()


@pytest.fixture
def campaign_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(CAMPAIGN_DIR_ENV, str(tmp_path))
    monkeypatch.setenv("HUEYARD_MESSAGE_SENDER", "log")
    return tmp_path


def phone(n: int) -> str:
    return f"+1415{n:07d}"


def run_next(app: Hueyard, queue: str = "campaigns") -> JobInfo:
    """Dequeue and execute the next job of ``queue`` as a worker would; its record after."""
    huey = app.queue(queue).huey
    task = huey.dequeue()
    assert task is not None, f"no job waiting on {queue}"
    huey.execute(task)
    info = Jobs(app).get(task.id)
    assert info is not None
    return info


def message_jobs(app: Hueyard) -> list[JobInfo]:
    jobs = Jobs(app)
    found: list[JobInfo] = []
    for state in ("waiting", "completed", "failed", "delayed"):
        page = 1
        while True:
            listed = jobs.list_jobs("messages", state, page=page, page_size=500)
            found.extend(listed.items)
            if len(listed.items) < 500:
                break
            page += 1
    return found


def per_contact(app: Hueyard) -> Counter[str]:
    return Counter(job.payload["to"] for job in message_jobs(app))


# -- inline recipients ------------------------------------------------------------------------


def test_a_campaign_enqueues_one_keyed_message_job_per_contact(app: Hueyard) -> None:
    # Given five recipients, one of them twice, in batches of two
    recipients = [phone(1), phone(2), phone(1), phone(3), phone(4)]
    campaigns.run_campaign.enqueue(
        {"campaignId": "camp-1", "recipients": recipients, "content": "Sale!", "batch_size": 2}
    )

    # When the campaign job runs
    done = run_next(app)

    # Then each contact has one message job, keyed <campaign>:<phone>, at priority 8, and
    # the campaign job waits for the four: they are its children
    assert done.state == "waiting-children"
    assert (done.children, done.children_pending) == (4, 4)
    assert done.result == {
        "campaignId": "camp-1",
        "recipients": 5,
        "enqueued": 4,
        "alreadyEnqueued": 1,
        "rejected": 0,
        "batches": 3,
        "rejections": [],
    }
    assert done.progress == {
        k: v for k, v in done.result.items() if k not in ("campaignId", "rejections")
    }
    waiting = message_jobs(app)
    assert sorted(job.key or "" for job in waiting) == [f"camp-1:{phone(n)}" for n in (1, 2, 3, 4)]
    assert {job.priority for job in waiting} == {8}
    assert {job.key_ttl for job in waiting} == {campaigns.KEY_TTL}
    assert {job.payload["content"] for job in waiting} == {"Sale!"}
    assert {job.parent for job in waiting} == {f"campaigns:{done.id}"}


def test_a_campaign_completes_when_every_message_finished_with_how_many_failed(
    app: Hueyard, campaign_dir: Path
) -> None:
    # Given a campaign to three contacts, fanned out
    campaign = campaigns.run_campaign.enqueue(
        {"campaignId": "camp-9", "recipients": [phone(1), phone(2), phone(3)], "content": "Hi"}
    )
    run_next(app)
    # When one message is cancelled before it is sent, and the other two are sent
    jobs = Jobs(app)
    first = jobs.list_jobs("messages", "waiting").items[0]
    jobs.cancel("messages", first.id)
    info = jobs.get(campaign)
    assert info is not None and info.state == "waiting-children"
    sent = [run_next(app, "messages") for _ in range(2)]
    # Then the campaign completed with the last one, counting 2 completed and 1 failed
    assert [job.state for job in sent] == ["completed", "completed"]
    info = jobs.get(campaign)
    assert info is not None and info.state == "completed"
    assert (info.children, info.children_completed, info.children_failed) == (3, 2, 1)
    assert info.result is not None and info.result["enqueued"] == 3


def test_a_campaign_run_again_days_later_messages_nobody_twice(
    app: Hueyard, redis_conn: redis.Redis, campaign_dir: Path
) -> None:
    # Given a campaign whose message jobs ran (and were even removed by retention)
    payload = {"campaignId": "camp-2", "recipients": [phone(1), phone(2)], "content": "Hi"}
    campaigns.run_campaign.enqueue(payload)
    run_next(app)
    sent = [run_next(app, "messages") for _ in range(2)]
    assert [job.state for job in sent] == ["completed", "completed"]
    completed = app.queue("messages").storage.q.completed
    for job in sent:  # what retention does to old jobs: the records go, the keys stay
        redis_conn.delete(app.keys.job("messages", job.id))
        redis_conn.zrem(completed, job.id)
    index = app.queue("messages").storage.q.key(f"camp-2:{phone(1)}")
    assert campaigns.KEY_TTL - 60 < redis_conn.ttl(index) <= campaigns.KEY_TTL  # bounded

    # When the same campaign is enqueued and run again
    campaigns.run_campaign.enqueue(payload)
    again = run_next(app)

    # Then no message job is made: both contacts already had theirs
    assert again.result["enqueued"] == 0
    assert again.result["alreadyEnqueued"] == 2
    assert message_jobs(app) == []


# -- recipients files -------------------------------------------------------------------------


def test_a_csv_file_names_contacts_and_its_bad_rows_are_counted_by_line(
    app: Hueyard, campaign_dir: Path
) -> None:
    # Given a CSV from a spreadsheet (BOM, extra column) with two bad rows
    long_id = "c" * (MAX_CONTACT_ID + 1)
    (campaign_dir / "segment-7.csv").write_text(
        "\ufeffname,contactId,phone\n"
        f"Ada,c-1,{phone(1)}\n"
        "Bob,c-2,0415 555\n"
        f"Cy,,{phone(3)}\n"
        f"Di,{long_id},{phone(4)}\n"
        f"Ed,c-5, {phone(5)} \n",
        encoding="utf-8",
    )
    campaigns.run_campaign.enqueue(
        {"campaignId": "camp-3", "recipients_file": "segment-7.csv", "content": "Hi"}
    )

    # When the campaign runs
    done = run_next(app)

    # Then every message is keyed by the number messaged; bad rows are named by line
    assert done.result["enqueued"] == 3
    assert done.result["rejected"] == 2
    assert done.result["rejections"] == [
        {"line": 3, "reason": "phone is missing or not E.164 ('+', country code, 7 to 15 digits)"},
        {"line": 5, "reason": f"contactId is not 1 to {MAX_CONTACT_ID} letters, digits, '_', "
         "'.', ':' or '-', starting with a letter or digit"},
    ]  # fmt: skip
    assert "0415" not in json.dumps(done.result)  # the data is never quoted
    assert sorted((job.key, job.payload["to"]) for job in message_jobs(app)) == [
        (f"camp-3:{phone(n)}", phone(n)) for n in (1, 3, 5)
    ]


def test_one_number_on_several_rows_is_messaged_once_whatever_its_contact_ids(
    app: Hueyard, campaign_dir: Path
) -> None:
    # Given a file whose rows give one number three times (with two contact ids and
    # none, spaced differently), and a contact id reused for another number
    (campaign_dir / "dupes.csv").write_text(
        "\ufeffphone,contactId\r\n"
        f"{phone(1)},c-1\r\n"
        f" {phone(1)} ,\r\n"
        f"{phone(1)},c-2\r\n"
        f"{phone(2)},c-1\r\n",
        encoding="utf-8",
    )
    campaigns.run_campaign.enqueue(
        {"campaignId": "camp-d", "recipients_file": "dupes.csv", "content": "Hi"}
    )
    done = run_next(app)
    # Then each number got one message: the first once, the second too
    assert (done.result["enqueued"], done.result["alreadyEnqueued"]) == (2, 2)
    assert per_contact(app) == Counter({phone(1): 1, phone(2): 1})


def test_a_quoted_field_with_a_line_break_is_one_row_named_by_its_first_line(
    app: Hueyard, campaign_dir: Path
) -> None:
    # Given a CSV whose note column holds a line break, and phones in other scripts' digits
    (campaign_dir / "notes.csv").write_text(
        "contactId,phone,note\n"
        f'c-1,{phone(1)},"call after 5\nnot on Sundays"\n'
        "c-2,+1\uff14\uff11\uff15\uff15\uff15\uff15\uff10\uff11\uff12\uff13,\n"
        "c-3,+1\u0664\u0661\u0665\u0665\u0665\u0665\u0660\u0661\u0662\u0663,\n"
        f"c-4,{phone(4)},\n",
        encoding="utf-8",
    )
    campaigns.run_campaign.enqueue(
        {"campaignId": "camp-n", "recipients_file": "notes.csv", "content": "Hi"}
    )

    done = run_next(app)

    # Then the quoted row is one recipient, the lookalike phones are rejected by line
    reason = "phone is missing or not E.164 ('+', country code, 7 to 15 digits)"
    assert (done.result["recipients"], done.result["enqueued"]) == (4, 2)
    assert done.result["rejections"] == [
        {"line": 4, "reason": reason},
        {"line": 5, "reason": reason},
    ]
    assert sorted(per_contact(app)) == [phone(1), phone(4)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(
            f'contactId,phone,note\nc-1,{phone(1)},"oops\nc-2,{phone(2)},x\nc-3,{phone(3)},y\n',
            "broken.csv, line 2: a '\"' opened on this line is never closed",
            id="unclosed-quote-at-the-end",
        ),
        pytest.param(
            f'contactId,phone,note\nc-1,{phone(1)},"oops\nc-2,{phone(2)},"x"\n',
            "broken.csv, line 2: a quoted field opened on this line runs on to line 3",
            id="unclosed-quote-then-a-quoted-field",
        ),
        pytest.param(  # past csv's 128 KiB field limit, in lines shorter than 4 KiB
            f'contactId,phone,note\nc-1,{phone(1)},"' + "aaaaaaaaaaaaaaa\n" * 10_000 + '"\n'
            f"c-2,{phone(2)},x\n",
            "broken.csv, line 2: a quoted field opened on this line is still open on line 256",
            id="quoted-field-over-the-limits",
        ),
    ],
)
def test_a_csv_with_an_unclosed_quote_fails_at_once_naming_the_line(
    app: Hueyard, campaign_dir: Path, content: str, message: str
) -> None:
    # Given a CSV in which a '"' is never closed: every later row would be one field
    (campaign_dir / "broken.csv").write_text(content, encoding="utf-8")
    campaigns.run_campaign.enqueue(
        {"campaignId": "camp-q", "recipients_file": "broken.csv", "content": "Hi"}
    )

    # When the campaign runs
    done = run_next(app)

    # Then it fails at once, naming the file and the line the quote opened on, and
    # nobody is messaged (not the rows before it either: they were in the same batch)
    assert done.state == "failed"
    assert done.attempts == 1
    assert message in (done.error or "")
    assert str(campaign_dir) in (done.error or "")
    assert message_jobs(app) == []


def test_a_jsonl_file_fans_out_and_skips_what_is_not_a_recipient(
    app: Hueyard, campaign_dir: Path
) -> None:
    lines = [json.dumps({"contactId": f"c-{n}", "phone": phone(n)}) for n in range(5)]
    lines[2] = "[1, 2]"
    lines.insert(3, "")
    (campaign_dir / "vip.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    campaigns.run_campaign.enqueue(
        {"campaignId": "camp-4", "recipients_file": "vip.jsonl", "content": "Hi"}
    )

    done = run_next(app)

    assert (done.result["enqueued"], done.result["rejected"]) == (4, 1)
    assert done.result["rejections"] == [{"line": 3, "reason": "not a JSON object"}]
    assert sorted(per_contact(app)) == [phone(n) for n in (0, 1, 3, 4)]


def test_a_line_nested_too_deep_is_one_rejection_not_a_failed_campaign(
    app: Hueyard, campaign_dir: Path
) -> None:
    # Given a recipients file with a line nested 4,000 deep, under the line limit
    lines = [json.dumps({"phone": phone(1)}), "[" * 4000, json.dumps({"phone": phone(2)})]
    (campaign_dir / "deep.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    campaigns.run_campaign.enqueue(
        {"campaignId": "camp-deep", "recipients_file": "deep.jsonl", "content": "Hi"}
    )

    # When the campaign runs
    done = run_next(app)

    # Then that line is rejected like any line that is not an object, the others messaged
    assert done.state == "waiting-children"
    assert (done.result["enqueued"], done.result["rejected"]) == (2, 1)
    assert done.result["rejections"] == [
        {"line": 2, "reason": "not a JSON object (nested too deep)"}
    ]


def test_a_campaign_dir_open_to_others_is_refused_naming_the_fix(
    app: Hueyard, campaign_dir: Path
) -> None:
    # Given a campaign directory others may write into (they could swap the audience)
    (campaign_dir / "seg.csv").write_text(f"phone\n{phone(1)}\n", encoding="utf-8")
    campaign_dir.chmod(0o777)
    campaigns.run_campaign.enqueue(
        {"campaignId": "camp-open", "recipients_file": "seg.csv", "content": "Hi"}
    )

    done = run_next(app)

    assert (done.state, done.attempts) == ("failed", 1)
    assert f"{campaign_dir} ($HUEYARD_CAMPAIGN_DIR) has mode 777" in (done.error or "")
    assert f"chmod 700 {campaign_dir}" in (done.error or "")
    assert message_jobs(app) == []


def test_a_campaign_killed_mid_fan_out_and_run_again_enqueues_only_the_missing(
    app: Hueyard, campaign_dir: Path
) -> None:
    # Given 2,300 contacts in batches of 500, the file broken at line 1,700 (not UTF-8)
    rows = [json.dumps({"contactId": f"c-{n}", "phone": phone(n)}) for n in range(2300)]
    good = "\n".join(rows) + "\n"
    broken = good.encode().replace(rows[1699].encode(), b'{"phone": "\xff"}')
    (campaign_dir / "all.jsonl").write_bytes(broken)
    job_id = campaigns.run_campaign.enqueue(
        {"campaignId": "camp-5", "recipients_file": "all.jsonl", "content": "Hi"}
    )

    # When the campaign runs, it stops after three batches, and says why
    first = run_next(app)
    assert first.state == "failed"
    assert first.error is not None
    assert "all.jsonl, line 1700: not UTF-8" in first.error
    assert first.progress["batches"] == 3
    assert len(message_jobs(app)) == 1500

    # When the file is fixed and the operator retries the failed campaign job
    (campaign_dir / "all.jsonl").write_text(good, encoding="utf-8")
    assert Jobs(app).retry("campaigns", job_id)
    second = run_next(app)

    # Then only the 800 missing contacts were enqueued, and every contact has exactly one job,
    # all 2,300 of them the campaign's children (the 1,500 found again by their keys)
    assert second.state == "waiting-children"
    assert (second.result["enqueued"], second.result["alreadyEnqueued"]) == (800, 1500)
    assert (second.children, second.children_pending) == (2300, 2300)
    counts = per_contact(app)
    assert len(counts) == 2300
    assert set(counts.values()) == {1}


def test_a_missing_recipients_file_fails_the_campaign_at_once_naming_the_fix(
    app: Hueyard, campaign_dir: Path
) -> None:
    campaigns.run_campaign.enqueue(
        {"campaignId": "camp-6", "recipients_file": "nope.csv", "content": "Hi"}
    )

    done = run_next(app)

    assert done.state == "failed"
    assert done.attempts == 1  # not retried: the next attempt would read the same directory
    assert f"recipients file {campaign_dir / 'nope.csv'} does not exist" in (done.error or "")
    assert CAMPAIGN_DIR_ENV in (done.error or "")
    assert message_jobs(app) == []


def test_a_csv_without_a_phone_column_fails_naming_the_header(
    app: Hueyard, campaign_dir: Path
) -> None:
    (campaign_dir / "x.csv").write_text(f"id,mobile\n1,{phone(1)}\n", encoding="utf-8")
    campaigns.run_campaign.enqueue({"campaignId": "c", "recipients_file": "x.csv", "content": "Hi"})

    done = run_next(app)

    assert done.state == "failed"
    assert "the first line must be a header naming a 'phone' column" in (done.error or "")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"recipients_file": "../etc/passwd.csv"},
            "recipients_file: Value error, must be the name",
        ),
        ({"recipients_file": "list.txt"}, "must be the name of a .csv or .jsonl file"),
        ({"recipients_file": "a.csv"}, "give either recipients"),
        ({"recipients": None}, "give either recipients"),
        ({"batch_size": 1001}, "batch_size: Input should be less than or equal to 1000"),
        ({"campaignId": "camp-7\n"}, "campaignId: Value error, must be 1 to 128"),
        ({"recipients": [phone(1), phone(2) + "\n"]}, "recipients.1: Value error, must be an E"),
        (
            {"recipients": ["+1\uff14\uff11\uff15\uff15\uff15\uff15\uff10\uff11\uff12\uff13"]},
            "recipients.0: Value error, must be an E",
        ),
    ],
)
def test_a_campaign_payload_is_refused_at_enqueue(
    app: Hueyard, change: dict[str, Any], message: str
) -> None:
    payload = {"campaignId": "camp-7", "recipients": [phone(1)], "content": "Hi", **change}
    with pytest.raises(PayloadError, match=message.replace("(", r"\(").replace(".", r"\.")):
        campaigns.run_campaign.enqueue(payload)
    assert Jobs(app).counts("campaigns").waiting == 0
