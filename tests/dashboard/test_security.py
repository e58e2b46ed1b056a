"""CSRF, escaping, Content-Security-Policy, masked secrets, large payloads, no leaks."""

from __future__ import annotations

import logging
import re
import time

import pytest
import redis
from flask import Flask

from dashboard import create_app, csrf
from dashboard.app import CONTENT_SECURITY_POLICY
from dashboard.state import EXTENSION
from framework.application import Hueyard
from framework.jobs import Jobs
from tests.dashboard.conftest import ENV, Dash, MakeApp, add, basic, finish, storage_of

XSS = "<script>alert('pwned')</script>"


# -- CSRF ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "123.abc", "not.a.token.at.all", "\u00b2.abc", "\uff11\uff12.abc"],
    ids=["missing", "garbage", "bad-signature", "malformed", "superscript", "fullwidth"],
)
def test_a_post_without_a_valid_csrf_token_is_refused(app: Hueyard, dash: Dash, token: str) -> None:
    add(app, 1)
    response = dash.post("/admin/queues/work/pause", token=token)
    assert response.status_code == 403
    assert "security token" in response.get_data(as_text=True)
    assert Jobs(app).is_paused("work") is False


def test_a_token_of_another_user_or_expired_is_refused(flask_app: Flask, dash: Dash) -> None:
    secret = flask_app.extensions[EXTENSION].csrf_secret
    other_user = csrf.make_token(secret, "someone-else")
    expired = csrf.make_token(secret, "ops", now=time.time() - csrf.TOKEN_LIFETIME - 1)
    for token in (other_user, expired):
        assert dash.post("/admin/queues/work/pause", token=token).status_code == 403


def test_a_post_from_another_origin_is_refused(flask_app: Flask, dash: Dash) -> None:
    token = dash.token()
    response = flask_app.test_client().post(
        "/admin/queues/work/pause",
        data={"csrf_token": token, "confirm": "yes"},
        headers={**basic(), "Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    same = flask_app.test_client().post(
        "/admin/queues/work/pause",
        data={"csrf_token": token, "confirm": "yes"},
        headers={**basic(), "Origin": "http://localhost"},
    )
    assert same.status_code == 303


def test_every_form_on_a_page_carries_a_token(app: Hueyard, dash: Dash) -> None:
    add(app, 1, delay=60)
    add(app, 1)
    finish(app, "failed")
    html = dash.get("/admin/queues/work?state=failed").get_data(as_text=True)
    assert html.count('method="post"') == html.count('name="csrf_token"') >= 4


# -- escaping and headers --------------------------------------------------------------------


def test_job_data_is_escaped_everywhere(app: Hueyard, dash: Dash) -> None:
    # Given a job whose payload, error and logs hold a script
    [job_id] = app.enqueue_many("work", "job", [{"name": XSS, XSS: "key"}])
    storage = app.queue("work").huey.storage
    claimed = storage.claim()
    storage.release(claimed, "failed", value=XSS, traceback=XSS)
    # When every page that shows it is read
    pages = [
        f"/admin/queues/work/jobs/{job_id}",
        "/admin/queues/work?state=failed",
        "/admin/search?queue=work&state=failed&text=script",
        f"/admin/search?job_id={XSS}",
        f"/admin/queues/work?state={XSS}",
    ]
    for path in pages:
        html = dash.get(path).get_data(as_text=True)
        # Then the script shows as text, never as markup
        assert "<script>alert" not in html, path
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in dash.get(pages[0]).get_data(
        as_text=True
    )


def test_every_page_sends_a_strict_content_security_policy(dash: Dash) -> None:
    response = dash.get("/admin/queues")
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"


def test_no_page_has_inline_script_or_style(app: Hueyard, dash: Dash) -> None:
    [job_id] = add(app, 1)
    finish(app, "failed")
    for path in ("/admin/queues", "/admin/queues/work", f"/admin/queues/work/jobs/{job_id}",
                 "/admin/queues/work/metrics", "/admin/workers", "/admin/search",
                 "/admin/schedules"):  # fmt: skip
        html = dash.get(path).get_data(as_text=True)
        assert "<script>" not in html and "<style" not in html and " style=" not in html
        assert " on" not in html.replace(" one", "").replace(" only", "").replace(" on ", "")


# -- secrets ---------------------------------------------------------------------------------


def test_secret_fields_are_masked_on_the_job_page_and_in_raw_json(
    app: Hueyard, dash: Dash, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a webhook-like payload with secrets at several depths
    payload = {
        "url": "https://example.com/hook",
        "secret": "whsec_TOPSECRET_1",
        "body": {"contactId": "c-42", "apiKey": "TOPSECRET_2"},
        "headers": [{"Authorization": "Bearer TOPSECRET_3"}],
        "max_tokens": 256,
    }
    with caplog.at_level(logging.DEBUG):
        job_id = app.enqueue("hooks", "deliver", payload)
        page = dash.get(f"/admin/queues/hooks/jobs/{job_id}").get_data(as_text=True)
        raw = dash.get(f"/admin/queues/hooks/jobs/{job_id}/raw").get_data(as_text=True)
        listing = dash.get("/admin/queues/hooks?state=waiting").get_data(as_text=True)
        found = dash.get("/admin/search?queue=hooks&state=waiting&text=TOPSECRET")
    # Then no secret is shown, and the rest is
    for text in (page, raw, listing, found.get_data(as_text=True), caplog.text):
        for secret in ("whsec_TOPSECRET_1", "TOPSECRET_2", "TOPSECRET_3"):
            assert secret not in text
    assert "c-42" in page and "********" in page
    # max_tokens contains "token": masked too (safe beats pretty). (Not `"256" not in page`:
    # the job's id and times may hold those digits.)
    assert "max_tokens" in page
    assert re.search(r"max_tokens[^,}\n]{0,20}256", page) is None
    assert "0 match(es)" in found.get_data(as_text=True)  # masked fields are not searched


def test_secrets_in_errors_tracebacks_logs_and_results_are_masked_on_every_page(
    app: Hueyard, dash: Dash, redis_conn: redis.Redis
) -> None:
    # Given a failed job whose error, traceback and log lines quote secrets
    [failed_id] = app.enqueue_many("work", "job", [{"n": 1, "card": {"pin": 1}}])
    redis_conn.rpush(
        app.keys.job_logs("work", failed_id), "calling https://api.x/y?api_key=LOGSECRET"
    )
    storage = storage_of(app)
    claimed = storage.claim()
    assert claimed is not None
    storage.release(
        claimed, "failed", value="ValueError: login failed {'password': 'ERRSECRET'}",
        traceback="Traceback\n  File x\nheaders={'Authorization': 'Bearer TBSECRET'}",
    )  # fmt: skip
    # And a completed job whose result holds a session token
    [done_id] = add(app, 1)
    claimed = storage.claim()
    assert claimed is not None
    storage.release(claimed, "completed", value='{"session_token": "RESULTSECRET", "ok": 1}')
    # When every page that shows them is read
    pages = [
        f"/admin/queues/work/jobs/{failed_id}",
        f"/admin/queues/work/jobs/{failed_id}/raw",
        f"/admin/queues/work/jobs/{done_id}",
        f"/admin/queues/work/jobs/{done_id}/raw",
        "/admin/queues/work?state=failed",
        "/admin/queues/work?state=completed",
    ]
    for path in pages:
        text = dash.get(path).get_data(as_text=True)
        # Then no secret shows, and the mask does
        for secret in ("LOGSECRET", "ERRSECRET", "TBSECRET", "RESULTSECRET"):
            assert secret not in text, (path, secret)
        assert "********" in text, path
    assert "login failed" in dash.get(pages[0]).get_data(as_text=True)


def test_mask_fields_extend_the_secret_words(make_app: MakeApp) -> None:
    # Given [dashboard] mask_fields = ["phone"]
    app = make_app(dashboard='mask_fields = ["phone"]')
    dash = Dash(create_app(app, env=ENV).test_client())
    [job_id] = app.enqueue_many("work", "job", [{"contactPhone": "+14155550123", "n": 7}])
    # When the job is shown
    raw = dash.get(f"/admin/queues/work/jobs/{job_id}/raw").get_json()
    # Then the configured word is masked like the built-in ones
    assert raw["payload"] == {"contactPhone": "********", "n": 7}


# -- large payloads --------------------------------------------------------------------------


def test_a_5_mb_payload_is_cut_with_a_link_to_the_raw_json(make_app: MakeApp) -> None:
    # Given a queue that takes payloads of 8 MiB, and a job with a 5 MB payload
    app = make_app(work="max_payload_bytes = 8388608")
    dash = Dash(create_app(app, env=ENV).test_client())
    rows = [{"id": i, "note": "x" * 100} for i in range(45_000)]
    job_id = app.enqueue("work", "job", {"rows": rows})
    # When its page is read
    started = time.monotonic()
    response = dash.get(f"/admin/queues/work/jobs/{job_id}")
    elapsed = time.monotonic() - started
    html = response.get_data(as_text=True)
    # Then it is a small page, folded, with the start of the payload and a link to the job
    assert response.status_code == 200
    assert len(html) < 200_000
    assert "Only the start is shown: … [cut: 5,523,900 bytes, showing 65,536]." in html
    assert f'href="/admin/queues/work/jobs/{job_id}/raw"' in html
    assert "(cut)" in html
    print(f"job page with a 5 MB payload: {elapsed * 1000:.0f} ms, {len(html)} bytes")
    # And the list shows a short snippet
    listing = dash.get("/admin/queues/work?state=waiting").get_data(as_text=True)
    assert len(listing) < 50_000
    raw = dash.get(f"/admin/queues/work/jobs/{job_id}/raw")
    assert len(raw.get_json()["payload"]["rows"]) == 45_000


# -- no leaks in errors and logs -------------------------------------------------------------


def test_a_crash_shows_no_detail_and_logs_no_message(
    flask_app: Flask, dash: Dash, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    jobs = flask_app.extensions[EXTENSION].jobs

    def explode(*args: object, **kwargs: object) -> None:
        leaked = "password=" + "TOPSECRET"
        raise KeyError(leaked)

    monkeypatch.setattr(jobs, "consumers", explode)
    with caplog.at_level(logging.ERROR, logger="hueyard.dashboard"):
        response = dash.get("/admin/workers")
    assert response.status_code == 500
    assert "TOPSECRET" not in response.get_data(as_text=True)
    assert "TOPSECRET" not in caplog.text
    assert "KeyError on GET /admin/workers" in caplog.text
