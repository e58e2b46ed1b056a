"""The Schedules page, its actions, /api/v1/schedules, and schedules in /metrics and /health.

Against the real Redis server: a schedule's state is what ``Schedules`` (the
read/act API the CLI uses too) keeps there. A schedule is made overdue the way
it happens in production: its newest tick was noted an hour ago (by a consumer
that then stopped), and no consumer noted one since.
"""

from __future__ import annotations

import datetime
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from dashboard import create_app, csrf
from dashboard.state import EXTENSION
from framework.application import Hueyard
from framework.jobs import Jobs
from framework.ticks import Schedules
from tests.dashboard.conftest import ENV, USER, Dash, MakeApp, basic
from tests.integration.redis_server import RedisServer

UTC = datetime.UTC
SCHEDULES = """
[schedules.nightly]
handler = "work.job"
cron = "5 0 * * *"
timezone = "Europe/Berlin"
payload = {{ n = 7, customer = "<b>Ada</b>" }}
description = "yesterday's <i>numbers</i>"

[schedules.often]
handler = "hooks.deliver"
every = 60
{often}
"""
PAYLOAD = {"n": 7, "customer": "<b>Ada</b>"}
OVERDUE_PUBLIC = (
    "schedules: 1 overdue, a due tick not enqueued in time "
    "(sign in to see which, or run: hueyard schedules)"
)


@pytest.fixture
def app(make_app: MakeApp) -> Hueyard:
    return make_app(schedules=SCHEDULES.format(often=""))


def dash_of(app: Hueyard) -> Dash:
    return Dash(create_app(app, {"TESTING": True}, env=ENV).test_client())


def row(html: str, name: str) -> str:
    """The table row of schedule ``name``."""
    match = re.search(rf'<tr id="schedule-{name}">(.*?)</tr>', html, re.S)
    assert match, f"no row for schedule {name}"
    return match.group(1)


def every_job(app: Hueyard) -> list[str]:
    jobs = Jobs(app)
    return [
        job.id
        for queue in app.queues
        for state in ("waiting", "paused", "delayed", "active", "completed", "failed")
        for job in jobs.list_jobs(queue, state, page_size=500).items
    ]


def ticked_an_hour_ago(app: Hueyard, name: str = "often") -> datetime.datetime:
    """Note the schedule's tick of an hour ago as its newest, as a consumer that stopped
    then would have; return that tick."""
    schedule, now = app.schedules[name], datetime.datetime.now(UTC)
    tick = schedule.latest_tick(now - datetime.timedelta(hours=1))
    Schedules(app).mark(schedule, tick, None, tick)
    return tick


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


# -- the page --------------------------------------------------------------------------------


def test_the_page_shows_each_schedule_with_the_columns_of_hueyard_schedules(
    app: Hueyard, dash: Dash
) -> None:
    # Given one schedule run by hand and one that never ran
    job_id = Schedules(app).run("often")
    nightly = Schedules(app).info("nightly")
    # When
    response = dash.get("/admin/schedules")
    # Then both rows, in config order, with queue, handler, spec, next and last run, state
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.index('id="schedule-nightly"') < html.index('id="schedule-often"')
    first = row(html, "nightly")
    assert "<strong>nightly</strong>" in first
    assert 'href="/admin/queues/work">work</a>' in first
    assert ">job</td>" in first
    assert "cron 5 0 * * * (Europe/Berlin)" in first
    next_run = nightly.next_tick.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert next_run in first and ">in " in first  # absolute and relative
    assert "never" in first and '<span class="badge ok">ok</span>' in first
    # the description, escaped
    assert "yesterday&#39;s &lt;i&gt;numbers&lt;/i&gt;" in first and "<i>" not in html
    second = row(html, "often")
    assert "every 60 s" in second and ">deliver</td>" in second
    assert f'href="/admin/queues/hooks/jobs/{job_id}">{job_id}</a>' in second
    assert " ago</span>" in second  # its last run
    # and every page's navigation leads here
    assert 'href="/admin/schedules">Schedules</a>' in dash.get("/admin/queues").get_data(
        as_text=True
    )


def test_without_schedules_the_page_says_how_to_add_one(make_app: MakeApp) -> None:
    html = dash_of(make_app()).get("/admin/schedules").get_data(as_text=True)
    assert "No schedules: add a [schedules.&lt;name&gt;] table to config/queues.toml." in html
    assert "<table>" not in html


def test_every_form_carries_a_token_and_no_script_or_style_is_inline(
    app: Hueyard, dash: Dash
) -> None:
    Schedules(app).pause("nightly")
    html = dash.get("/admin/schedules").get_data(as_text=True)
    assert html.count('method="post"') == html.count('name="csrf_token"') == 4
    assert "<script>" not in html and "<style" not in html and " style=" not in html
    assert re.search(r"\son[a-z]+\s*=", html) is None  # no event handler attribute


def test_an_overdue_or_paused_schedule_is_marked(app: Hueyard, dash: Dash) -> None:
    ticked_an_hour_ago(app)
    Schedules(app).pause("nightly")
    html = dash.get("/admin/schedules").get_data(as_text=True)
    assert re.search(r'<span class="badge bad"[^>]*>overdue \d+ s</span>', row(html, "often"))
    assert '<span class="badge paused">paused</span>' in row(html, "nightly")


# -- the actions -----------------------------------------------------------------------------


def test_run_now_asks_first_then_enqueues_one_job_with_the_schedule_s_payload(
    app: Hueyard, dash: Dash
) -> None:
    # When Run now is posted without confirm=yes
    ask = dash.post("/admin/schedules/nightly/run", confirm=False)
    # Then a confirm page says what will happen, and nothing is enqueued
    assert ask.status_code == 200
    html = ask.get_data(as_text=True)
    assert "Are you sure?" in html
    assert (
        "Run schedule nightly now: enqueue one job of work.job on queue work with the "
        "schedule&#39;s payload. Its calendar does not change." in html
    )
    assert 'name="confirm" value="yes"' in html and 'action="/admin/schedules/nightly/run"' in html
    assert 'href="/admin/schedules">Cancel' in html
    assert every_job(app) == []
    # When it is confirmed
    done = dash.post("/admin/schedules/nightly/run")
    # Then exactly one job, with the schedule's payload, and the page names it
    assert done.status_code == 303
    location = urlsplit(done.headers["Location"])
    query = parse_qs(location.query)
    assert location.path == "/admin/schedules"
    assert (query["done"], query["schedule"]) == (["run"], ["nightly"])
    [job_id] = query["job"]
    assert every_job(app) == [job_id]
    job = Jobs(app).get(job_id)
    assert job is not None and (job.queue, job.state) == ("work", "waiting")
    assert job.payload == PAYLOAD
    assert Schedules(app).info("nightly").last_job == job_id
    page = dash.get(done.headers["Location"]).get_data(as_text=True)
    link = f'<a class="mono" href="/admin/queues/work/jobs/{job_id}">{job_id}</a>'
    assert f"Schedule nightly ran now: job {link} is enqueued on queue work." in page
    assert f'href="/admin/queues/work/jobs/{job_id}">{job_id}</a>' in row(page, "nightly")


def test_pause_then_resume_changes_the_schedule_s_state_in_redis(
    app: Hueyard, dash: Dash, redis_conn: redis.Redis
) -> None:
    key = app.keys.schedule("often")
    # the confirm step first
    ask = dash.post("/admin/schedules/often/pause", confirm=False).get_data(as_text=True)
    assert "Pause schedule often: its ticks are not enqueued until it is resumed" in ask
    assert redis_conn.hget(key, "paused") is None
    # When paused
    paused = dash.post("/admin/schedules/often/pause")
    # Then
    assert paused.status_code == 303
    assert paused.headers["Location"] == "/admin/schedules?done=pause&schedule=often"
    assert redis_conn.hget(key, "paused") == b"1"
    page = dash.get(paused.headers["Location"]).get_data(as_text=True)
    assert "Schedule often paused: its ticks are not enqueued until it is resumed." in page
    assert '<span class="badge paused">paused</span>' in row(page, "often")
    assert 'action="/admin/schedules/often/resume"' in row(page, "often")
    assert 'action="/admin/schedules/often/pause"' not in row(page, "often")
    # a second pause has nothing to do, and says so
    again = dash.post("/admin/schedules/often/pause")
    assert again.headers["Location"].endswith("done=pause-none&schedule=often")
    assert "Schedule often was paused already." in dash.get(again.headers["Location"]).get_data(
        as_text=True
    )
    # When resumed
    resumed = dash.post("/admin/schedules/often/resume")
    # Then
    assert resumed.headers["Location"] == "/admin/schedules?done=resume&schedule=often"
    assert redis_conn.hget(key, "paused") is None
    assert not Schedules(app).info("often").paused
    assert (
        dash.post("/admin/schedules/often/resume")
        .headers["Location"]
        .endswith("done=resume-none&schedule=often")
    )


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/admin/schedules/nope/run", "There is no schedule named &#39;nope&#39; (schedules: "
                                      "nightly, often)."),
        ("/admin/schedules/nope/pause", "There is no schedule named &#39;nope&#39;"),
        ("/admin/schedules/nightly/explode", "There is no action &#39;explode&#39;; use one of "
                                             "run, pause, resume."),
    ],
)  # fmt: skip
def test_an_unknown_schedule_or_action_is_404_with_what_exists(
    app: Hueyard, dash: Dash, path: str, message: str
) -> None:
    response = dash.post(path)
    assert response.status_code == 404
    assert message in response.get_data(as_text=True)
    assert every_job(app) == []


def test_an_unknown_schedule_without_any_declared_is_404(make_app: MakeApp) -> None:
    response = dash_of(make_app()).post("/admin/schedules/nightly/run")
    assert response.status_code == 404
    assert "(schedules: none is declared)" in response.get_data(as_text=True)


def test_schedule_actions_are_post_only(flask_app: Flask) -> None:
    client = flask_app.test_client()
    assert client.get("/admin/schedules/nightly/run", headers=basic()).status_code == 405


@pytest.mark.parametrize(
    ("token", "headers", "message"),
    [
        ("", {}, "security token is missing or expired"),
        ("1.forged", {}, "security token is missing or expired"),
        (None, {"Origin": "https://evil.example"}, "sent from another site"),
    ],
    ids=["no-token", "bad-token", "other-origin"],
)
def test_an_action_without_a_valid_token_or_from_another_site_is_refused(
    app: Hueyard, dash: Dash, token: str | None, headers: dict[str, str], message: str
) -> None:
    form = {"confirm": "yes", "csrf_token": dash.token() if token is None else token}
    for action in ("run", "pause"):
        response = dash.client.post(
            f"/admin/schedules/often/{action}", data=form, headers={**basic(), **headers}
        )
        assert response.status_code == 403
        assert message in response.get_data(as_text=True)
    assert every_job(app) == [] and not Schedules(app).info("often").paused


def test_read_only_hides_the_buttons_and_refuses_every_action(make_app: MakeApp) -> None:
    app = make_app(dashboard="read_only = true", schedules=SCHEDULES.format(often=""))
    Schedules(app).pause("nightly")
    flask_app = create_app(app, env=ENV)
    dash = Dash(flask_app.test_client())
    html = dash.get("/admin/schedules").get_data(as_text=True)
    assert "Read-only mode" in html and 'id="schedule-often"' in html
    assert 'method="post"' not in html
    token = csrf.make_token(flask_app.extensions[EXTENSION].csrf_secret, USER)
    for path in ("often/run", "often/pause", "nightly/resume"):
        response = dash.post(f"/admin/schedules/{path}", token=token)
        assert response.status_code == 403
        assert "read-only" in response.get_data(as_text=True)
    assert every_job(app) == []
    assert Schedules(app).info("nightly").paused and not Schedules(app).info("often").paused


def test_the_notice_escapes_what_the_query_says_and_ignores_unknown_schedules(
    app: Hueyard, dash: Dash
) -> None:
    evil = "<script>alert(1)</script>"
    html = dash.get(f"/admin/schedules?done=run&schedule=nightly&job={evil}").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and evil not in html
    other = dash.get("/admin/schedules?done=pause&schedule=nope").get_data(as_text=True)
    assert 'role="status"' not in other


def test_with_redis_down_the_page_and_the_api_answer_503(make_app: MakeApp) -> None:
    with RedisServer() as server:
        app = make_app(url=server.url, schedules=SCHEDULES.format(often=""))
        dash = dash_of(app)
        assert dash.get("/admin/schedules").status_code == 200
        server.stop()
        page = dash.get("/admin/schedules")
        api = dash.get("/api/v1/schedules")
    assert page.status_code == 503
    assert "Redis does not answer" in page.get_data(as_text=True)
    assert api.status_code == 503 and api.get_json()["success"] is False
    assert "did not answer" in api.get_json()["error"]


# -- /api/v1/schedules -----------------------------------------------------------------------


def test_the_api_lists_what_hueyard_schedules_json_prints(app: Hueyard, flask_app: Flask) -> None:
    job_id = Schedules(app).run("often")
    Schedules(app).pause("nightly")
    client = flask_app.test_client()
    assert client.get("/api/v1/schedules").status_code == 401  # behind the same auth
    response = client.get("/api/v1/schedules", headers=basic())
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["success"] is True
    nightly, often = body["data"]["schedules"]
    assert set(nightly) == set(Schedules(app).info("nightly").to_json())
    assert (nightly["name"], nightly["queue"], nightly["handler"], nightly["paused"]) == (
        "nightly", "work", "work.job", True,
    )  # fmt: skip
    assert nightly["schedule"] == "cron 5 0 * * * (Europe/Berlin)"
    assert nightly["last_job"] is None and nightly["last_run"] is None
    assert (often["last_job"], often["paused"], often["overdue_seconds"]) == (job_id, False, None)
    assert body["data"]["timestamp"].endswith("Z")


# -- /metrics --------------------------------------------------------------------------------


def test_metrics_give_each_schedule_s_last_tick_age_paused_and_overdue(
    app: Hueyard, dash: Dash
) -> None:
    # Given "often" last ticked an hour ago, and "nightly" never ticked and is paused
    tick = ticked_an_hour_ago(app)
    Schedules(app).pause("nightly")
    # When
    response = dash.get("/metrics")
    # Then
    found = samples(response.get_data(as_text=True))
    often, nightly = (("queue", "hooks"), ("schedule", "often")), (
        ("queue", "work"), ("schedule", "nightly"),
    )  # fmt: skip
    age = found[("hueyard_schedule_seconds_since_last_tick", often)]
    assert 3600 <= age < (datetime.datetime.now(UTC) - tick).total_seconds() + 1
    assert ("hueyard_schedule_seconds_since_last_tick", nightly) not in found  # never ticked
    assert found[("hueyard_schedule_overdue", often)] == 1
    assert found[("hueyard_schedule_overdue", nightly)] == 0  # paused: never overdue
    assert found[("hueyard_schedule_paused", often)] == 0
    assert found[("hueyard_schedule_paused", nightly)] == 1
    assert found[("hueyard_healthy", ())] == 0


# -- /health ---------------------------------------------------------------------------------


def test_health_is_503_for_an_overdue_schedule_named_only_to_those_allowed(
    app: Hueyard, flask_app: Flask, dash: Dash
) -> None:
    # Given a healthy system with schedules that never ticked (as right after a deploy)
    client = flask_app.test_client()
    assert client.get("/health").status_code == 200
    # When "often" has not ticked for an hour
    ticked_an_hour_ago(app)
    # Then /health says a schedule is overdue, without naming it to an anonymous client
    anonymous = client.get("/health")
    assert anonymous.status_code == 503
    assert anonymous.get_json()["reasons"] == [OVERDUE_PUBLIC]
    for internal in ("often", "hooks", "deliver"):
        assert internal not in anonymous.get_data(as_text=True)
    # ... and names it, and its queue, to a signed-in client and on the overview
    [detail] = client.get("/health", headers=basic()).get_json()["reasons"]
    assert re.fullmatch(
        r"schedule often: a tick due \d+ s ago is not enqueued yet \(overdue after 60 s, one "
        r"period\); is a consumer of queue hooks running\?",
        detail,
    ), detail
    assert detail in dash.get("/admin/queues").get_data(as_text=True)
    assert client.get("/api/v1/queues/health", headers=basic()).get_json()["data"]["status"] == (
        "unhealthy"
    )


def test_health_names_overdue_schedules_to_anyone_with_details_on(make_app: MakeApp) -> None:
    app = make_app(health="details = true", schedules=SCHEDULES.format(often=""))
    ticked_an_hour_ago(app)
    reasons = create_app(app, env=ENV).test_client().get("/health").get_json()["reasons"]
    assert len(reasons) == 1 and reasons[0].startswith("schedule often: a tick due ")


@pytest.mark.parametrize(
    ("health", "often", "pause", "status"),
    [
        ("", "", False, 503),
        ("", "", True, 200),
        ("check_schedules = false", "", False, 200),
        ("", "overdue_after = 7200", False, 200),
        ("", "overdue_after = 600", False, 503),
    ],
    ids=["overdue", "paused", "check-off", "overdue-after-longer", "overdue-after-shorter"],
)
def test_a_paused_schedule_or_check_schedules_off_or_a_longer_overdue_after_keeps_health_200(
    make_app: MakeApp, health: str, often: str, pause: bool, status: int
) -> None:
    app = make_app(health=health, schedules=SCHEDULES.format(often=often))
    ticked_an_hour_ago(app)
    if pause:
        Schedules(app).pause("often")
    client = create_app(app, env=ENV).test_client()
    response = client.get("/health", headers=basic())
    assert response.status_code == status, response.get_json()
    if status == 503:
        [reason] = response.get_json()["reasons"]
        limit = "600 s, overdue_after" if often else "60 s, one period"
        assert f"(overdue after {limit})" in reason
    # the metric tells the fact whatever /health is set to check
    overdue = samples(client.get("/metrics", headers=basic()).get_data(as_text=True))[
        ("hueyard_schedule_overdue", (("queue", "hooks"), ("schedule", "often")))
    ]
    assert overdue == (0 if pause or often == "overdue_after = 7200" else 1)
