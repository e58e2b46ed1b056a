"""The dashboard in a real browser: headless Chromium (Debian's), driven by Playwright.

Select with ``-m browser``; ``.ci/ensure-chromium`` installs ``/usr/bin/chromium``.
Playwright's own browser download is never used (``executable_path``).
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from dashboard import create_app
from dashboard.server import DashboardServer
from framework.application import Hueyard
from framework.consumer import MultiQueueConsumer
from framework.jobs import Jobs
from tests.dashboard.conftest import ENV, PASSWORD, USER, MakeApp, finish, stop_server

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("HUEYARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = os.environ.get("HUEYARD_SCREENSHOTS")
"""A folder to copy the screenshots to, for a person to look at."""


@pytest.fixture
def app(make_app: MakeApp) -> Hueyard:
    """Leases of 2 s: a running job's consumer hears of a cancel within 0.7 s."""
    return make_app(consumer="lease = 2")


@contextmanager
def serving(app: Hueyard) -> Iterator[str]:
    """The dashboard of ``app`` served on a free port: its base URL."""
    server = DashboardServer(create_app(app, env=ENV), "127.0.0.1", 0, grace=2)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        stop_server(server, thread)


@pytest.fixture
def served(app: Hueyard) -> Iterator[str]:
    with serving(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium for the module; each test has its own context (:func:`signed_in`)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"no Chromium at {CHROMIUM}; run: bash .ci/ensure-chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        yield browser
        browser.close()


@pytest.fixture
def consumer(app: Hueyard) -> Iterator[MultiQueueConsumer]:
    """A real consumer in this process (worker threads), not started yet."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT,
                                                                 signal.SIGHUP)}  # fmt: skip
    consumer = MultiQueueConsumer(app, ["work"], initial_delay=0.05, max_delay=0.2)
    yield consumer
    if any(process.is_alive() for _, _, process in consumer.workers):
        consumer.stop(graceful=True)
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def signed_in(browser: Any) -> tuple[Any, Any, list[str]]:
    """A browser context with the credentials, a page, and the page's script errors."""
    context = browser.new_context(
        http_credentials={"username": USER, "password": PASSWORD},
        viewport={"width": 1280, "height": 900},
    )
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    return context, page, problems


def follow(page: Any, target: Any) -> None:
    """Click ``target`` (a selector or a locator), which leads to another page, and wait
    until that page has loaded: a click returns as soon as it was made, and reading the
    page then (its title, URL or headings) could read the page being left."""
    with page.expect_navigation():
        if isinstance(target, str):
            page.click(target)
        else:
            target.click()


def shoot(page: Any, path: Path, name: str) -> None:
    page.screenshot(path=str(path), full_page=True)
    if SCREENSHOTS:
        os.makedirs(SCREENSHOTS, exist_ok=True)
        shutil.copy(path, Path(SCREENSHOTS) / name)


def test_retry_a_failed_job_and_watch_it_complete(
    app: Hueyard, served: str, browser: Any, consumer: MultiQueueConsumer, tmp_path: Path
) -> None:
    # Given a failed job, some history, and no consumer running
    job_id = app.enqueue("work", "job", {"n": 1, "customer": "<b>Ada</b>"})
    app.enqueue_many("work", "job", [{"n": i} for i in range(2, 6)])
    finish(app, "failed")
    finish(app, "completed", 3)
    context, page, problems = signed_in(browser)
    page.clock.install()  # the page's timers run on, and the test can move them on

    # When ops sign in and open the overview
    page.goto(f"{served}/admin/queues")
    assert page.title() == "Queues · hueyard"
    assert page.locator("table tbody tr").count() == 2
    shoot(page, tmp_path / "overview.png", "overview.png")

    # ... open the queue, its failed tab, and the job
    follow(page, "td a[href='/admin/queues/work']")
    follow(page, ".tabs a[href*='state=failed']")
    assert "state=failed" in page.url
    follow(page, f"a:has-text('{job_id}')")
    assert page.locator("h1 .badge").inner_text() == "failed"
    assert "<b>Ada</b>" in page.locator("section[aria-label=payload] pre").inner_text()

    # ... retry it, through the confirm step
    follow(page, "button:has-text('Retry')")
    assert page.locator("h1").inner_text() == "Are you sure?"
    shoot(page, tmp_path / "confirm.png", "confirm.png")
    follow(page, "#confirm")
    assert page.locator("[role=status]").inner_text() == "Job back to waiting."
    assert page.locator("h1 .badge").inner_text() == "waiting"

    # ... and let the page refresh itself every 5 s while a consumer starts
    page.select_option("#refresh", "5")
    consumer.start()
    consumer.heartbeat()

    # Then, once the job completed and the page's 5 s passed (on its clock, moved on
    # rather than waited for), the job completes on the page, without a click
    jobs = Jobs(app)
    deadline = time.monotonic() + 10
    while (place := jobs.find(job_id)) is None or place.state != "completed":
        assert time.monotonic() < deadline, "the job did not complete"
        time.sleep(0.05)
    page.clock.run_for(5_000)
    page.wait_for_selector("h1 .badge.completed", timeout=20_000)
    assert "Job back to waiting." not in page.content()  # reloaded: the notice was once
    assert '"done": 1' in page.locator("section[aria-label=result] pre").inner_text()
    shoot(page, tmp_path / "job-completed.png", "job-completed.png")
    consumer.stop(graceful=True)

    # And dark mode and a phone-sized screen work too
    page.click("#theme")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{served}/admin/queues/work?state=completed")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1
    shoot(page, tmp_path / "phone-dark.png", "phone-dark.png")
    page.goto(f"{served}/admin/queues/work/metrics")
    shoot(page, tmp_path / "metrics-dark.png", "metrics-dark.png")
    assert problems == []  # no script error, no Content-Security-Policy violation
    context.close()


def test_cancel_a_running_job_from_the_active_tab(
    app: Hueyard, served: str, browser: Any, consumer: MultiQueueConsumer, tmp_path: Path
) -> None:
    # Given a job that a consumer runs (a pure-Python loop of 60 s)
    job_id = app.enqueue("work", "job", {"n": 7, "spin": 60})
    consumer.start()
    jobs = Jobs(app)
    deadline = time.monotonic() + 10
    while (place := jobs.find(job_id)) is None or place.state != "active":
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.05)
    context, page, problems = signed_in(browser)

    # When ops open the queue's Active tab and cancel it, through the confirm step
    page.goto(f"{served}/admin/queues/work?state=active")
    follow(page, f"tr:has-text('{job_id}') button:has-text('Cancel')")
    assert page.locator("h1").inner_text() == "Are you sure?"
    follow(page, "#confirm")
    assert page.locator("[role=status]").inner_text().startswith("Cancel requested")
    shoot(page, tmp_path / "cancel-requested.png", "cancel-requested.png")

    # Then its consumer stops it within a lease renewal: failed, "cancelled", not retried
    deadline = time.monotonic() + 10
    page.goto(f"{served}/admin/queues/work/jobs/{job_id}")
    while page.locator("h1 .badge").inner_text() != "failed":
        assert time.monotonic() < deadline, "the job did not stop"
        time.sleep(0.2)
        page.reload()
    assert "cancelled" in page.content()
    assert not page.locator("button:has-text('Cancel')").count()  # a finished job has none
    assert page.locator("button:has-text('Retry')").count() == 1  # ... but can be retried
    consumer.stop(graceful=True)
    assert problems == []
    context.close()


SCHEDULE = """
[schedules.hourly_sync]
handler = "hooks.deliver"
cron = "0 * * * *"
payload = { url = "https://example.com/<hook>" }
description = "push the <b>CRM</b> contacts"
"""


def test_run_a_schedule_now_and_open_its_job(
    make_app: MakeApp, browser: Any, tmp_path: Path
) -> None:
    # Given a schedule on a queue no consumer serves (so it never fires by itself)
    app = make_app(schedules=SCHEDULE)
    with serving(app) as served:
        context, page, problems = signed_in(browser)
        # When ops open the Schedules page from the navigation
        page.goto(f"{served}/admin/queues")
        follow(page, "header nav a:has-text('Schedules')")
        assert page.title() == "Schedules · hueyard"
        row = page.locator("#schedule-hourly_sync")
        assert "push the <b>CRM</b> contacts" in row.inner_text()
        assert row.locator("td").nth(6).inner_text() == "-"  # no last job yet
        shoot(page, tmp_path / "schedules.png", "schedules.png")

        # ... and run it now, through the confirm step
        follow(page, row.locator("button:has-text('Run now')"))
        assert page.locator("h1").inner_text() == "Are you sure?"
        assert "Run schedule hourly_sync now" in page.locator(".panel p").inner_text()
        follow(page, "#confirm")

        # Then the page names the job it enqueued, and links to it
        notice = page.locator("[role=status]")
        job_id = notice.locator("a").inner_text()
        assert notice.inner_text() == (
            f"Schedule hourly_sync ran now: job {job_id} is enqueued on queue hooks."
        )
        assert Jobs(app).get(job_id) is not None
        assert page.locator("#schedule-hourly_sync a").filter(has_text=job_id).count() == 1
        shoot(page, tmp_path / "schedules-ran.png", "schedules-ran.png")
        follow(page, notice.locator("a"))
        assert page.locator("h1").inner_text().startswith(job_id)
        assert page.locator("h1 .badge").inner_text() == "waiting"
        assert (
            "https://example.com/<hook>"
            in page.locator("section[aria-label=payload] pre").inner_text()
        )
        assert problems == []
        context.close()
