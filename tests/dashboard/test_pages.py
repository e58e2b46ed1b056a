"""Every page through the Flask client, against the real Redis with real jobs."""

from __future__ import annotations

import re
import threading

import pytest
from flask import Flask

from dashboard.readmodel import search_payloads
from dashboard.state import EXTENSION
from framework.application import Hueyard
from framework.consumer import MultiQueueConsumer
from tests.dashboard.conftest import Dash, add, finish, storage_of


def text(response: object) -> str:
    return response.get_data(as_text=True)  # type: ignore[attr-defined, no-any-return]


def test_root_redirects_to_the_overview(dash: Dash) -> None:
    response = dash.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/queues"


def test_overview_shows_every_queue_with_its_counts_policy_and_redis(
    app: Hueyard, dash: Dash
) -> None:
    # Given jobs in every state of "work", and "hooks" paused
    add(app, 4)
    add(app, 2, delay=60)
    finish(app, "completed")
    finish(app, "failed")
    storage_of(app).claim()
    app.enqueue("hooks", "deliver", {"n": 1})
    dash.post("/admin/queues/hooks/pause")
    # When
    response = dash.get("/admin/queues")
    html = text(response)
    # Then
    assert response.status_code == 200
    assert 'href="/admin/queues/work"' in html and 'href="/admin/queues/hooks"' in html
    assert "Work for the tests" in html
    assert re.search(r'state=failed">1</a>', html)
    assert re.search(r'state=delayed">2</a>', html)
    assert re.search(r'queues/hooks\?state=paused">1</a>', html)
    assert '<span class="badge paused">paused</span>' in html
    assert "100 / 60 s" in html  # the rate limit
    assert 'class="spark"' in html  # the sparkline
    assert "Version" in html and "Clients" in html  # Redis status


def test_queue_page_has_a_tab_per_state_and_lists_newest_first(app: Hueyard, dash: Dash) -> None:
    add(app, 3)
    first, second = finish(app, "failed", 2)
    html = text(dash.get("/admin/queues/work?state=failed"))
    for state in ("waiting", "active", "delayed", "completed", "failed", "paused"):
        assert f"state={state}" in html
    assert html.index(second) < html.index(first)  # newest first
    assert f"ValueError: boom {first}" in html


def test_queue_page_paginates_with_a_chosen_page_size(app: Hueyard, dash: Dash) -> None:
    ids = add(app, 7)
    page1 = text(dash.get("/admin/queues/work?state=waiting&page=1&page_size=3"))
    page3 = text(dash.get("/admin/queues/work?state=waiting&page=3&page_size=3"))
    assert "Page 1 of 3" in page1 and "7 job(s)" in page1
    assert ids[0] in page1 and ids[3] not in page1  # waiting: run order
    assert ids[6] in page3 and ids[0] not in page3
    assert 'rel="next"' in page1 and 'rel="next"' not in page3
    assert "No waiting jobs on this page" in text(dash.get("/admin/queues/work?page=9&page_size=3"))


@pytest.mark.parametrize(
    ("query", "status"),
    [("state=nope", 400), ("page=0", 400), ("page=x", 400), ("page_size=501", 400)],
)
def test_queue_page_refuses_bad_queries(dash: Dash, query: str, status: int) -> None:
    assert dash.get(f"/admin/queues/work?{query}").status_code == status


@pytest.mark.parametrize(
    "path",
    ["/admin/queues/", "/admin/queues/work/", "/admin/workers/", "/api/v1/queues/health/"],
)
def test_a_url_with_a_trailing_slash_answers_as_without(dash: Dash, path: str) -> None:
    # Bull Board's Express routes answer /admin/queues/ as /admin/queues
    assert dash.get(path).status_code == 200


def test_an_open_endpoint_is_open_at_its_exact_path_only(flask_app: Flask) -> None:
    client = flask_app.test_client()
    assert client.get("/health").status_code == 200
    assert client.get("/health/").status_code == 401  # served, behind basic auth


def test_an_unknown_queue_is_404(dash: Dash) -> None:
    response = dash.get("/admin/queues/nope")
    assert response.status_code == 404
    assert "There is no queue named" in text(response)


def test_job_page_shows_everything_about_a_failed_job(app: Hueyard, dash: Dash) -> None:
    [job_id] = add(app, 1)
    finish(app, "failed")
    html = text(dash.get(f"/admin/queues/work/jobs/{job_id}"))
    assert job_id in html
    assert "work.job" in html
    assert "ValueError: boom" in html and "Traceback: boom" in html
    assert "&#34;n&#34;: 0" in html  # the payload, pretty and escaped
    assert "1 of 1" in html  # attempts
    assert "/retry" in html and "/remove" in html and "/promote" not in html


def test_job_page_of_a_delayed_job_offers_promote(app: Hueyard, dash: Dash) -> None:
    [job_id] = add(app, 1, delay=60)
    html = text(dash.get(f"/admin/queues/work/jobs/{job_id}"))
    assert "/promote" in html and "/retry" not in html and "Due" in html


def test_job_page_shows_the_jobs_key_and_own_timeout(app: Hueyard, dash: Dash) -> None:
    job_id = app.enqueue("work", "job", {"n": 1}, key="order-7<b>", key_ttl=600, timeout=30)
    html = text(dash.get(f"/admin/queues/work/jobs/{job_id}"))
    assert "order-7&lt;b&gt;" in html and "(kept 600 s after it finishes)" in html
    assert "30 s" in html


def test_job_page_redirects_to_the_queue_that_holds_the_job(app: Hueyard, dash: Dash) -> None:
    [job_id] = add(app, 1, queue="hooks")
    response = dash.get(f"/admin/queues/work/jobs/{job_id}")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/admin/queues/hooks/jobs/{job_id}"


def test_an_unknown_job_is_404(dash: Dash) -> None:
    assert dash.get("/admin/queues/work/jobs/nope").status_code == 404
    assert dash.get("/admin/queues/work/jobs/nope/raw").status_code == 404


def test_raw_json_has_the_whole_job(app: Hueyard, dash: Dash) -> None:
    [job_id] = add(app, 1)
    finish(app, "completed")
    response = dash.get(f"/admin/queues/work/jobs/{job_id}/raw")
    body = response.get_json()
    assert body["id"] == job_id and body["state"] == "completed"
    assert body["payload"] == {"n": 0} and body["result"] == {"ok": 1}
    # a job's record is kept by no browser's cache, as no page of the dashboard is
    assert response.headers["Cache-Control"] == "no-store"


def test_search_by_id_goes_to_the_job(app: Hueyard, dash: Dash) -> None:
    [job_id] = add(app, 1)
    response = dash.get(f"/admin/search?job_id={job_id}")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/admin/queues/work/jobs/{job_id}"
    assert "No queue holds a job with id" in text(dash.get("/admin/search?job_id=missing"))


def test_payload_search_is_bounded_and_says_how_much_it_searched(
    make_app: object, redis_conn: object
) -> None:
    from dashboard import create_app
    from tests.dashboard.conftest import ENV

    # Given 30 failed jobs, and a search limit of 20
    app = make_app(dashboard="search_limit = 20")  # type: ignore[operator]
    app.enqueue_many("work", "job", [{"customer": f"c-{i}", "fail": True} for i in range(30)])
    finish(app, "failed", 30)
    client = Dash(create_app(app, env=ENV).test_client())
    # When
    html = text(client.get("/admin/search?queue=work&state=failed&text=C-2"))
    # Then: only the newest 20 (c-29 .. c-10) were read; c-2x match, c-2 itself is too old
    assert "Searched 20 of 30 job(s)" in html
    assert "10 match(es)" in html
    # And a search over everything says so
    html = text(client.get("/admin/search?queue=work&state=failed&text=c-29"))
    assert "1 match(es)" in html


def test_a_payload_search_lists_and_counts_each_job_once_while_jobs_complete_meanwhile(
    app: Hueyard, flask_app: Flask
) -> None:
    # Given 40 completed jobs whose payload holds the needle, and 400 more to run
    app.enqueue_many("work", "job", [{"tag": f"needle-{i}"} for i in range(40)])
    finished = finish(app, "completed", 40)
    app.enqueue_many("work", "job", [{"tag": f"needle-late-{i}"} for i in range(400)])
    storage = storage_of(app)
    stop = threading.Event()

    def complete_jobs() -> None:  # a consumer at work: each job completes, newest first
        while not stop.is_set() and (claimed := storage.claim()) is not None:
            storage.release(claimed, "completed", value='{"ok":1}')

    # When the completed jobs are searched 3 a round trip while jobs keep completing
    worker = threading.Thread(target=complete_jobs)
    worker.start()
    try:
        with flask_app.app_context():
            result = search_payloads(
                flask_app.extensions[EXTENSION], "work", "completed", "needle",
                max_matches=1000, batch=3,
            )  # fmt: skip
    finally:
        stop.set()
        worker.join()
    # Then no job is listed twice, "searched" counts each job once, and every job that
    # was there when the search began is found (a page number would shift under it)
    ids = [job.id for job in result.matches]
    assert len(ids) == len(set(ids)) == result.searched
    assert set(finished) <= set(ids)
    assert result.complete
    finish_times = [job.finished for job in result.matches]
    assert finish_times == sorted(finish_times, reverse=True)  # newest first


def test_metrics_page_draws_svg_charts(app: Hueyard, dash: Dash) -> None:
    add(app, 3)
    finish(app, "completed", 2)
    finish(app, "failed")
    for range_name in ("hour", "day"):
        html = text(dash.get(f"/admin/queues/work/metrics?range={range_name}"))
        assert html.count("<svg") == 2
        assert "<polyline" in html
        assert "Completed and failed" in html and "p50 / p95" in html
    assert dash.get("/admin/queues/work/metrics?range=year").status_code == 400


def test_workers_page_lists_live_consumers(app: Hueyard, dash: Dash) -> None:
    assert "No live consumer" in text(dash.get("/admin/workers"))
    consumer = MultiQueueConsumer(app, ["work"])
    consumer.heartbeat()
    add(app, 1)
    [held] = [storage_of(app).claim()]
    assert held is not None
    html = text(dash.get("/admin/workers"))
    assert consumer.consumer_id in html
    assert held.id in html  # the job it runs
    assert ">work<" in html
    assert "abandoned" not in html
    assert f"of {app.pool.max_connections} Redis connections" in html


def test_workers_page_flags_a_consumer_with_abandoned_threads(app: Hueyard, dash: Dash) -> None:
    consumer = MultiQueueConsumer(app, ["work"])
    consumer.abandoned = 3
    consumer.heartbeat()
    assert "3 abandoned" in text(dash.get("/admin/workers"))


def test_pages_have_refresh_theme_and_a_phone_viewport(dash: Dash) -> None:
    html = text(dash.get("/admin/queues"))
    assert 'name="viewport" content="width=device-width, initial-scale=1"' in html
    assert 'id="refresh"' in html and 'id="theme"' in html
    assert '<script src="/static/app.js" defer></script>' in html
    assert "<script>" not in html  # nothing inline


def test_redis_down_gives_a_503_page_not_a_crash(make_app: object) -> None:
    from dashboard import create_app
    from tests.dashboard.conftest import ENV
    from tests.integration.redis_server import RedisServer

    with RedisServer() as server:
        app = make_app(url=server.url)  # type: ignore[operator]
        client = Dash(create_app(app, env=ENV).test_client())
        server.stop()
        overview = client.get("/admin/queues")
        assert overview.status_code == 200
        assert "Redis does not answer" in text(overview)
        queue = client.get("/admin/queues/work")
        assert queue.status_code == 503
        assert "Redis does not answer" in text(queue)


def test_a_flow_continuations_page_links_to_the_job_before_it_and_the_runs_first(
    app: Hueyard, dash: Dash
) -> None:
    # Given a flow run's first job and two continuations (pipelines/flows.py's payloads)
    first = app.enqueue("work", "job", {"n": 1})
    second = app.enqueue("work", "job", {"n": 2, "flow_run": first, "previous_job": first})
    third = app.enqueue("work", "job", {"n": 3, "flow_run": first, "previous_job": second})

    # Then the third links to the second and to the first; the first links to nothing
    html = text(dash.get(f"/admin/queues/work/jobs/{third}"))
    assert f'<a href="/admin/queues/work/jobs/{second}">{second}</a>' in html
    assert f'<a href="/admin/queues/work/jobs/{first}">{first}</a>' in html
    html = text(dash.get(f"/admin/queues/work/jobs/{second}"))
    assert "Flow run" not in html  # its run's first job is the one it follows
    assert "Follows" in html
    assert "Follows" not in text(dash.get(f"/admin/queues/work/jobs/{first}"))


def run_one(app: Hueyard, queue: str) -> str:
    """Run the next job of ``queue`` as a worker does (claim, execute, release)."""
    huey = app.queue(queue).huey
    storage_of(app, queue)
    task = huey.dequeue()
    assert task is not None, f"nothing to run on {queue}"
    huey.execute(task)
    return str(task.id)


def test_a_parents_page_shows_its_children_counts_and_links_and_each_child_links_back(
    app: Hueyard, dash: Dash
) -> None:
    # Given a parent that fanned out two children, one of which finished
    parent = app.enqueue("work", "fan", {"n": 2})
    run_one(app, "work")
    child = run_one(app, "hooks")
    # When its page is shown
    html = text(dash.get(f"/admin/queues/work/jobs/{parent}"))
    # Then it waits for its children, with the counts and a link to each
    assert "waiting-children" in html
    assert "2: 1 completed, 0 failed, 1 pending" in html
    assert f'<a href="/admin/queues/hooks/jobs/{child}">{child}</a>' in html
    assert html.count('href="/admin/queues/hooks/jobs/') == 2
    # and the child's page links to its parent
    html = text(dash.get(f"/admin/queues/hooks/jobs/{child}"))
    assert f'<a href="/admin/queues/work/jobs/{parent}">{parent}</a>' in html
    assert "it waits for this job" in html
    # and the queue has a waiting-children tab that lists it with its counts
    html = text(dash.get("/admin/queues/work?state=waiting-children"))
    assert parent in html and "1 pending of 2" in html
    assert re.search(r'state=waiting-children[^>]*>waiting-children <span class="badge">1<', html)


def test_a_parents_raw_json_has_its_counts_and_links_and_a_childs_its_parent(
    app: Hueyard, dash: Dash
) -> None:
    parent = app.enqueue("work", "fan", {"n": 2})
    run_one(app, "work")
    run_one(app, "hooks")
    child = run_one(app, "hooks")
    body = dash.get(f"/admin/queues/work/jobs/{parent}/raw").get_json()
    assert body["state"] == "completed"
    assert (body["children"], body["children_completed"], body["children_failed"]) == (2, 2, 0)
    assert {link["queue"] for link in body["children_links"]} == {"hooks"}
    assert child in {link["id"] for link in body["children_links"]}
    assert {link["state"] for link in body["children_links"]} == {"completed"}
    child_body = dash.get(f"/admin/queues/hooks/jobs/{child}/raw").get_json()
    assert child_body["parent"] == f"work:{parent}"
