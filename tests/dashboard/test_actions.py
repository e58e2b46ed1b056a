"""Every action: a POST with a CSRF token, a confirm step, then the change, through Jobs."""

from __future__ import annotations

import pytest
from flask import Flask

from dashboard import create_app, csrf
from dashboard.state import EXTENSION
from framework.application import Hueyard
from framework.jobs import Jobs
from tests.dashboard.conftest import ENV, USER, Dash, MakeApp, add, basic, finish


def counts(app: Hueyard, queue: str = "work") -> dict[str, object]:
    return Jobs(app).counts(queue).to_json()


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
    ],
)
def test_clean_refuses_bad_input(dash: Dash, form: dict[str, str]) -> None:
    assert dash.post("/admin/queues/work/clean", form).status_code == 400


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
