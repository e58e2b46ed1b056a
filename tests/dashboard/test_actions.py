"""Every action: a POST with a CSRF token, a confirm step, then the change, through Jobs."""

from __future__ import annotations

import re
from html import unescape

import pytest
import redis
from flask import Flask

from dashboard import create_app, csrf
from dashboard.state import EXTENSION
from framework.application import Hueyard
from framework.execution import QueueHuey
from framework.jobs import Jobs
from tests.conftest import job_keys
from tests.dashboard.conftest import ENV, USER, Dash, MakeApp, add, basic, finish


def counts(app: Hueyard, queue: str = "work") -> dict[str, object]:
    return Jobs(app).counts(queue).to_json()


def notice(dash: Dash, location: str) -> str | None:
    """The notice the page at ``location`` shows (it must answer 200)."""
    page = dash.get(location)
    assert page.status_code == 200, (location, page.status_code)
    found = re.search(r'role="status">([^<]*)<', page.get_data(as_text=True))
    return unescape(found.group(1)) if found else None


def run_one(app: Hueyard, queue: str) -> str:
    huey: QueueHuey = app.queue(queue).huey
    huey.storage.read_timeout = 0.1
    task = huey.dequeue()
    assert task is not None, f"nothing to run on {queue}"
    huey.execute(task)
    return str(task.id)


def test_an_action_without_confirm_only_asks(app: Hueyard, dash: Dash) -> None:
    # Given 2 failed jobs
    add(app, 2)
    finish(app, "failed", 2)
    # When retry-all is posted without confirm=yes
    response = dash.post("/admin/queues/work/retry-all", {"back_state": "failed"}, confirm=False)
    # Then a confirm page answers, and nothing changed
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Are you sure?" in html
    assert "Retry every failed job of queue work (2 now)." in html
    assert 'name="confirm" value="yes"' in html
    assert 'name="back_state" value="failed"' in html
    assert 'href="/admin/queues/work?state=failed">Cancel' in html
    assert counts(app)["failed"] == 2


def test_retry_all_moves_every_failed_job_back(app: Hueyard, dash: Dash) -> None:
    add(app, 3)
    finish(app, "failed", 3)
    response = dash.post("/admin/queues/work/retry-all", {"back_state": "failed"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/queues/work?state=failed&done=retry-all&n=3"
    assert counts(app)["failed"] == 0 and counts(app)["waiting"] == 3
    page = dash.get(response.headers["Location"]).get_data(as_text=True)
    assert "3 failed job(s) back to waiting." in page


def test_promote_all_runs_delayed_jobs_now(app: Hueyard, dash: Dash) -> None:
    add(app, 2, delay=600)
    response = dash.post("/admin/queues/work/promote-all")
    assert response.status_code == 303
    assert counts(app)["delayed"] == 0 and counts(app)["waiting"] == 2


def test_pausing_twice_and_resuming_twice_say_the_second_time_changed_nothing(
    app: Hueyard, dash: Dash
) -> None:
    # Given a running queue, When two tabs pause it, then two tabs resume it
    said = []
    for action in ("pause", "pause", "resume", "resume"):
        response = dash.post(f"/admin/queues/work/{action}")
        assert response.status_code == 303
        said.append((response.headers["Location"], notice(dash, response.headers["Location"])))
    # Then the second of each says nothing changed, as the CLI does
    assert said == [
        ("/admin/queues/work?state=waiting&done=pause",
         "Queue paused: no new job starts; running jobs finish."),
        ("/admin/queues/work?state=waiting&done=pause-none",
         "Nothing changed: the queue was already paused."),
        ("/admin/queues/work?state=waiting&done=resume", "Queue resumed."),
        ("/admin/queues/work?state=waiting&done=resume-none",
         "Nothing changed: the queue was not paused."),
    ]  # fmt: skip


def test_pause_and_resume(app: Hueyard, dash: Dash) -> None:
    add(app, 2)
    assert dash.post("/admin/queues/work/pause").status_code == 303
    assert counts(app)["isPaused"] is True and counts(app)["paused"] == 2
    page = dash.get("/admin/queues/work?done=pause").get_data(as_text=True)
    assert "Queue paused" in page and "/admin/queues/work/resume" in page
    assert dash.post("/admin/queues/work/resume").status_code == 303
    assert counts(app)["isPaused"] is False and counts(app)["waiting"] == 2


@pytest.mark.parametrize(("older_than", "deleted"), [("0", 2), ("3600", 0)])
def test_clean_deletes_finished_jobs_older_than_asked(
    app: Hueyard, dash: Dash, older_than: str, deleted: int
) -> None:
    add(app, 3)
    finish(app, "completed", 2)
    finish(app, "failed")
    response = dash.post(
        "/admin/queues/work/clean", {"state": "completed", "older_than": older_than}
    )
    assert response.status_code == 303
    assert f"n={deleted}" in response.headers["Location"]
    assert counts(app)["completed"] == 2 - deleted and counts(app)["failed"] == 1


def test_clean_asks_with_the_age_in_words(app: Hueyard, dash: Dash) -> None:
    html = dash.post("/admin/queues/work/clean", {"state": "failed", "older_than": "86400"},
                     confirm=False).get_data(as_text=True)  # fmt: skip
    assert "Delete the failed jobs of queue work that finished over 1 day ago." in html


@pytest.mark.parametrize(
    "form",
    [
        {"state": "waiting", "older_than": "0"},
        {"state": "completed", "older_than": "soon"},
        {"state": "completed", "older_than": "-1"},
        {"state": "completed", "older_than": "inf"},
        {"state": "completed", "older_than": "1e306"},
        {"state": "failed", "older_than": "1000000001"},
    ],
)
def test_clean_refuses_bad_input(app: Hueyard, dash: Dash, form: dict[str, str]) -> None:
    add(app, 1)
    finish(app, "completed")
    response = dash.post("/admin/queues/work/clean", form)
    assert response.status_code == 400
    assert counts(app)["completed"] == 1
    if form["state"] != "waiting":
        assert "from 0 to 1,000,000,000." in response.get_data(as_text=True)


def test_retry_one_failed_job(app: Hueyard, dash: Dash) -> None:
    [job_id] = add(app, 1)
    finish(app, "failed")
    # the confirm page first
    ask = dash.post(f"/admin/queues/work/jobs/{job_id}/retry", confirm=False)
    assert f"Retry failed job {job_id} of queue work." in ask.get_data(as_text=True)
    # then the retry
    response = dash.post(f"/admin/queues/work/jobs/{job_id}/retry")
    assert response.status_code == 303
    assert response.headers["Location"] == f"/admin/queues/work/jobs/{job_id}?done=retry"
    assert Jobs(app).find(job_id).state == "waiting"  # type: ignore[union-attr]
    assert "Job back to waiting." in dash.get(response.headers["Location"]).get_data(as_text=True)
    # a second retry has nothing to do, and says so
    again = dash.post(f"/admin/queues/work/jobs/{job_id}/retry")
    assert again.headers["Location"].endswith("done=retry-none")


def test_promote_one_delayed_job(app: Hueyard, dash: Dash) -> None:
    [job_id] = add(app, 1, delay=600)
    assert dash.post(f"/admin/queues/work/jobs/{job_id}/promote").status_code == 303
    assert Jobs(app).find(job_id).state == "waiting"  # type: ignore[union-attr]


def test_remove_one_job_goes_back_to_its_state(app: Hueyard, dash: Dash) -> None:
    [job_id] = add(app, 1)
    finish(app, "failed")
    response = dash.post(f"/admin/queues/work/jobs/{job_id}/remove", {"back_state": "failed"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/queues/work?done=remove&state=failed"
    assert Jobs(app).get(job_id) is None


def test_removing_a_job_another_tab_removed_says_so_on_its_queue_page(
    app: Hueyard, dash: Dash
) -> None:
    # Given a waiting job, removed in one tab
    [job_id] = add(app, 1)
    first = dash.post(f"/admin/queues/work/jobs/{job_id}/remove", {"back_state": "waiting"})
    assert notice(dash, first.headers["Location"]) == "Job deleted."
    # When a second tab removes it too
    again = dash.post(f"/admin/queues/work/jobs/{job_id}/remove", {"back_state": "waiting"})
    # Then it lands on the queue's page (the job's would be a 404), which says so
    assert again.headers["Location"] == "/admin/queues/work?done=remove-none&state=waiting"
    assert notice(dash, again.headers["Location"]) == "Nothing deleted: the job was already gone."


@pytest.mark.parametrize(
    ("action", "back", "said"),
    [
        ("retry", "failed", "Nothing retried: the job is gone (removed, or past its queue's "
                            "retention)."),
        ("promote", "delayed", "Nothing promoted: the job is gone (removed, or already run and "
                               "past its queue's retention)."),
    ],
)  # fmt: skip
def test_an_action_on_a_job_another_tab_removed_says_so_on_its_queue_page(
    app: Hueyard, dash: Dash, action: str, back: str, said: str
) -> None:
    # Given a failed or delayed job that another tab removed
    [job_id] = add(app, 1, delay=600) if action == "promote" else add(app, 1)
    if action == "retry":
        finish(app, "failed")
    assert Jobs(app).remove("work", job_id)
    # When it is retried or promoted
    response = dash.post(f"/admin/queues/work/jobs/{job_id}/{action}", {"back_state": back})
    # Then the queue's page says it is gone
    location = response.headers["Location"]
    assert location == f"/admin/queues/work?done={action}-gone&state={back}"
    assert notice(dash, location) == said


@pytest.mark.parametrize("suffix", [":children", ":logs"])
def test_an_id_naming_a_jobs_own_key_is_refused_by_every_action_and_page(
    app: Hueyard, dash: Dash, redis_conn: redis.Redis, suffix: str
) -> None:
    # Given a parent waiting for its child, with its children set and a log line
    parent = app.enqueue("work", "fan", {"n": 1})
    run_one(app, "work")
    q = app.keys.queue("work")
    redis_conn.rpush(q.logs(parent), "a line it logged")

    before = job_keys(redis_conn, q, parent)
    assert all(before)
    sub_key = parent + suffix
    # When every action is posted on "<id>:children" or "<id>:logs", confirmed or not,
    # and its pages are asked for
    answers = {
        f"{action} {confirm}": dash.post(
            f"/admin/queues/work/jobs/{sub_key}/{action}", confirm=confirm
        )
        for action in ("retry", "promote", "cancel", "remove")
        for confirm in (False, True)
    }
    for path in ("", "/raw"):
        answers[f"page{path}"] = dash.get(f"/admin/queues/work/jobs/{sub_key}{path}")
    answers["search"] = dash.get(f"/admin/search?job_id={sub_key}")
    # Then each answers 400, saying why
    for name, answer in answers.items():
        assert answer.status_code == 400, name
        assert "is not a job id: a job id never contains" in answer.get_data(as_text=True), name
    # And nothing was deleted: the parent still waits for its child, then completes
    assert job_keys(redis_conn, q, parent) == before
    assert counts(app)["waiting-children"] == 1
    run_one(app, "hooks")
    job = Jobs(app).get(parent)
    assert job is not None and job.state == "completed"
    assert (job.children, job.children_completed, job.children_failed) == (1, 1, 0)


def test_cancel_a_waiting_job_and_a_running_one(app: Hueyard, dash: Dash) -> None:
    running, waiting = add(app, 2)
    assert app.queue("work").huey.storage.claim() is not None  # `running` runs
    # The job page and the active tab offer Cancel
    assert f"/jobs/{waiting}/cancel" in dash.get(f"/admin/queues/work/jobs/{waiting}").get_data(
        as_text=True
    )
    active_tab = dash.get("/admin/queues/work?state=active").get_data(as_text=True)
    assert f"/jobs/{running}/cancel" in active_tab
    # behind the confirm step
    ask = dash.post(f"/admin/queues/work/jobs/{waiting}/cancel", confirm=False)
    assert f"Cancel job {waiting} of queue work" in ask.get_data(as_text=True)
    # A waiting job fails at once
    response = dash.post(f"/admin/queues/work/jobs/{waiting}/cancel")
    assert response.headers["Location"].endswith("done=cancel-cancelled")
    assert "Job cancelled: it failed" in dash.get(response.headers["Location"]).get_data(
        as_text=True
    )
    job = Jobs(app).get(waiting)
    assert job is not None and (job.state, job.error) == ("failed", "cancelled")
    # A running one is stopped by its consumer
    response = dash.post(f"/admin/queues/work/jobs/{running}/cancel")
    assert response.headers["Location"].endswith("done=cancel-requested")
    # A finished one can not be cancelled
    again = dash.post(f"/admin/queues/work/jobs/{waiting}/cancel")
    assert again.status_code == 409
    assert "has finished already" in again.get_data(as_text=True)


def test_removing_an_active_job_is_refused_with_the_reason(app: Hueyard, dash: Dash) -> None:
    [job_id] = add(app, 1)
    app.queue("work").huey.storage.claim()
    response = dash.post(f"/admin/queues/work/jobs/{job_id}/remove")
    assert response.status_code == 409
    assert "is active (a worker runs it)" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/admin/queues/nope/pause", 404),
        ("/admin/queues/work/explode", 404),
        ("/admin/queues/work/jobs/x/explode", 404),
    ],
)
def test_unknown_queues_and_actions_are_404(dash: Dash, path: str, status: int) -> None:
    assert dash.post(path).status_code == status


def test_actions_are_post_only(flask_app: Flask) -> None:
    client = flask_app.test_client()
    for path in ("/admin/queues/work/pause", "/admin/queues/work/jobs/x/retry"):
        assert client.get(path, headers=basic()).status_code == 405


# -- read-only mode --------------------------------------------------------------------------


@pytest.fixture
def read_only(make_app: MakeApp) -> tuple[Hueyard, Dash, str]:
    app = make_app(dashboard="read_only = true")
    flask_app = create_app(app, env=ENV)
    # No page of a read-only dashboard has a form, so the token is made here.
    token = csrf.make_token(flask_app.extensions[EXTENSION].csrf_secret, USER)
    return app, Dash(flask_app.test_client()), token


def test_read_only_hides_every_action(read_only: tuple[Hueyard, Dash, str]) -> None:
    app, dash, _ = read_only
    [job_id] = add(app, 1)
    finish(app, "failed")
    add(app, 1, delay=60)
    for path in ("/admin/queues/work?state=failed", f"/admin/queues/work/jobs/{job_id}"):
        html = dash.get(path).get_data(as_text=True)
        assert "Read-only mode" in html
        assert 'method="post"' not in html


@pytest.mark.parametrize(
    "action",
    ["pause", "resume", "retry-all", "promote-all", "clean", "jobs/{id}/retry",
     "jobs/{id}/promote", "jobs/{id}/cancel", "jobs/{id}/remove"],
)  # fmt: skip
def test_read_only_refuses_every_action(read_only: tuple[Hueyard, Dash, str], action: str) -> None:
    app, dash, token = read_only
    [job_id] = add(app, 1)
    finish(app, "failed")
    path = f"/admin/queues/work/{action.format(id=job_id)}"
    response = dash.post(path, {"state": "failed", "older_than": "0"}, token=token)
    assert response.status_code == 403
    assert "read-only" in response.get_data(as_text=True)
    assert counts(app)["failed"] == 1 and counts(app)["isPaused"] is False


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", ["/admin/queues", "/health", "/api/v1/queues/health", "/nowhere"])
def test_read_only_answers_403_to_every_write_on_every_url(
    read_only: tuple[Hueyard, Dash, str], method: str, path: str
) -> None:
    _, dash, _ = read_only
    response = dash.client.open(path, method=method, headers=basic())
    assert response.status_code == 403, (method, path)
    assert "read-only" in response.get_data(as_text=True)
