"""The pages (GET only; nothing here changes state).

::

    /admin/queues                                  overview
    /admin/queues/<queue>?state=&page=&page_size=  one queue, a tab per state
    /admin/queues/<queue>/jobs/<job_id>            one job
    /admin/queues/<queue>/jobs/<job_id>/raw        the job as JSON (secrets masked)
    /admin/queues/<queue>/metrics?range=hour|day   charts
    /admin/search?job_id= | ?queue=&state=&text=   search
    /admin/workers                                 live consumers
    /admin/schedules                               schedules: next and last run, paused
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from dashboard.charts import counts_chart, timing_chart
from dashboard.present import preview
from dashboard.readmodel import (
    overview,
    queue_row,
    redis_status,
    schedule_notice,
    search_payloads,
)
from dashboard.state import current
from framework.errors import JobActionError, QueueError
from framework.ids import check_job_id
from framework.jobs import MAX_PAGE, MAX_PAGE_SIZE, STATES

__all__ = ["blueprint"]

blueprint = Blueprint("pages", __name__)

DEFAULT_STATE = "waiting"
CHILDREN_SHOWN = 50
"""Children a parent's page and raw JSON link to (failed first); the counts are whole."""
PAGE_SIZES = (10, 25, 50, 100, 250, 500)
RANGES = {"hour": (60, 1, "last hour, per minute"), "day": (1440, 10, "last day, per 10 minutes")}


def _queue_or_404(name: str) -> str:
    try:
        return current().app.queue(name).name
    except QueueError:
        abort(404, f"There is no queue named {name!r}.")


def _job_id_or_400(job_id: str) -> str:
    """``job_id``, or a 400 page when it can not name a job (``<id>:logs`` is a job's
    log list: :func:`framework.ids.check_job_id`), before anything is read."""
    try:
        return check_job_id(job_id)
    except JobActionError as exc:
        abort(400, str(exc))


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        abort(400, f"{name} must be a whole number from {low} to {high}.")
    if not low <= value <= high:
        abort(400, f"{name} must be a whole number from {low} to {high}.")
    return value


@blueprint.get("/")
def root() -> ResponseReturnValue:
    return redirect(url_for("pages.index"))


@blueprint.get("/admin/queues")
def index() -> str:
    return render_template("overview.html", view=overview(current()), refresh=True)


@blueprint.get("/admin/queues/<queue>")
def queue_page(queue: str) -> str:
    state = current()
    name = _queue_or_404(queue)
    job_state = request.args.get("state", DEFAULT_STATE)
    if job_state not in STATES:
        abort(400, f"Unknown state {job_state!r}; use one of {', '.join(STATES)}.")
    page_size = _int_arg("page_size", state.page_size, 1, MAX_PAGE_SIZE)
    page_number = _int_arg("page", 1, 1, MAX_PAGE)
    counts = state.jobs.counts(name)
    page = state.jobs.list_jobs(name, job_state, page=page_number, page_size=page_size)
    row = queue_row(state, name, counts, tuple(state.jobs.live_consumers()[0]), with_spark=False)
    return render_template(
        "queue.html",
        row=row,
        counts=counts,
        job_state=job_state,
        states=STATES,
        page=page,
        page_sizes=sorted({*PAGE_SIZES, page_size}),
        done=request.args.get("done"),
        n=_int_arg("n", 0, 0, 10**12),
        refresh=True,
    )


@blueprint.get("/admin/queues/<queue>/jobs/<job_id>")
def job_page(queue: str, job_id: str) -> Any:
    state = current()
    name = _queue_or_404(queue)
    job_id = _job_id_or_400(job_id)
    limit = state.preview_chars
    # the page shows no more of a value than `limit`
    job = state.jobs.get(job_id, queue=name, field_bytes=limit)
    if job is None:
        place = state.jobs.find(job_id)  # a link with the wrong queue: go to the right one
        if place is not None:
            return redirect(url_for("pages.job_page", queue=place.queue, job_id=job_id))
        abort(404, f"No queue holds a job with id {job_id!r}; it may have been removed.")
    return render_template(
        "job.html",
        queue=name,
        job=job,
        children=state.jobs.children(name, job_id, page_size=CHILDREN_SHOWN)
        if job.children
        else None,
        payload=preview(job.payload, limit),
        result=None if job.result is None else preview(job.result, limit),
        progress=None if job.progress is None else preview(job.progress, limit),
        done=request.args.get("done"),
        refresh=job.state in ("waiting", "active", "delayed", "paused", "waiting-children"),
    )


@blueprint.get("/admin/queues/<queue>/jobs/<job_id>/raw")
def job_raw(queue: str, job_id: str) -> Response:
    """The job as JSON, secrets masked (the page shows a preview): each value whole up to
    the largest ``max_payload_bytes``, cut past it with a marker (:meth:`Jobs.get`)."""
    state = current()
    name = _queue_or_404(queue)
    job_id = _job_id_or_400(job_id)
    job = state.jobs.get(job_id, queue=name)
    if job is None:
        abort(404, f"Queue {name!r} holds no job with id {job_id!r}.")
    body = job.to_json()  # masked: state.jobs masks every job it returns
    if job.children:  # a parent: the links to its first children, failed first
        page = state.jobs.children(name, job_id, page_size=CHILDREN_SHOWN)
        body["children_links"] = [link.to_json() for link in page.items]
    response = jsonify(body)
    response.headers["Content-Disposition"] = f'inline; filename="{_safe(job_id)}.json"'
    return response


@blueprint.get("/admin/queues/<queue>/metrics")
def metrics_page(queue: str) -> str:
    state = current()
    name = _queue_or_404(queue)
    range_name = request.args.get("range", "hour")
    if range_name not in RANGES:
        abort(400, "range must be hour or day.")
    minutes, bucket, label = RANGES[range_name]
    minutes = min(minutes, max(state.app.settings.consumer.metrics_ttl // 60, 1))
    points = state.jobs.metrics(name, minutes)
    return render_template(
        "metrics.html",
        queue=name,
        range_name=range_name,
        ranges=RANGES,
        counts_chart=counts_chart(f"Completed and failed, {label}", points, bucket),
        timing_chart=timing_chart(f"Processing time p50 / p95, {label}", points, bucket),
        summary=state.jobs.summary(name, minutes),
        refresh=True,
    )


@blueprint.get("/admin/search")
def search() -> Any:
    state = current()
    job_id = request.args.get("job_id", "").strip()
    if job_id:
        place = state.jobs.find(_job_id_or_400(job_id))
        if place is not None:
            return redirect(url_for("pages.job_page", queue=place.queue, job_id=job_id))
        return render_template(
            "search.html",
            missing_id=job_id,
            result=None,
            args=request.args,
            queues=list(state.app.queues),
            states=STATES,
        )
    text = request.args.get("text", "").strip()
    queue = request.args.get("queue", "")
    result = None
    if text and queue:
        name = _queue_or_404(queue)
        job_state = request.args.get("state", "failed")
        if job_state not in STATES:
            abort(400, f"Unknown state {job_state!r}; use one of {', '.join(STATES)}.")
        result = search_payloads(state, name, job_state, text)
    return render_template(
        "search.html",
        missing_id=None,
        result=result,
        args=request.args,
        queues=list(state.app.queues),
        states=STATES,
    )


@blueprint.get("/admin/workers")
def workers() -> str:
    state = current()
    consumers, unseen = state.jobs.live_consumers()
    return render_template(
        "workers.html",
        consumers=consumers,
        consumers_error=None if unseen is None else state.app.masker.text(str(unseen)),
        redis=redis_status(state),
        refresh=True,
    )


@blueprint.get("/admin/schedules")
def schedules() -> str:
    state = current()
    infos = state.schedules.list()
    notice = schedule_notice(
        state, request.args.get("done", ""), request.args.get("schedule", ""),
        request.args.get("job"),
    )  # fmt: skip
    return render_template("schedules.html", schedules=infos, notice=notice, refresh=True)


def _safe(text: str) -> str:
    return "".join(ch for ch in text if ch.isalnum() or ch in "-_")[:64] or "job"
