"""Every state change: a POST with a CSRF token, behind a confirm step.

::

    POST /admin/queues/<queue>/pause | resume | retry-all | promote-all | clean
    POST /admin/queues/<queue>/jobs/<job_id>/retry | promote | cancel | remove
    POST /admin/schedules/<name>/run | pause | resume

A POST without ``confirm=yes`` changes nothing: it answers with a page that
says what will happen and asks again (Sidekiq Web's confirm, without
JavaScript). With ``confirm=yes`` the action runs and the browser is sent
back (303) to the queue, job or schedules page, which says what was done,
or that nothing was (paused already, the job gone): to the job's page only
while the job is there to show, else to its queue's. An id that can not name a
job (``<id>:logs``: :func:`framework.ids.check_job_id`) answers 400 before
the confirm page, and nothing is read or changed. In read-only mode every
action answers 403 before it reads anything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from dashboard import csrf
from dashboard.auth import current_user
from dashboard.state import DashboardState, current
from framework.errors import JobActionError, QueueError
from framework.ids import check_job_id
from framework.jobs import FINISHED_STATES, MAX_OLDER_THAN, STATES, check_older_than
from framework.schedules import Schedule

__all__ = ["blueprint"]

logger = logging.getLogger("hueyard.dashboard")

blueprint = Blueprint("actions", __name__)

CLEAN_AGES = ((3600, "1 hour"), (86400, "1 day"), (7 * 86400, "7 days"), (0, "any age"))


@dataclass(frozen=True)
class _Action:
    title: str  # for the confirm page: what will happen
    run: Callable[[DashboardState, str, str | None], int | bool | str]
    """What it did: a count, whether it did anything, or which of several things (a word)."""
    needs_job: bool = False
    danger: bool = False


def _clean(state: DashboardState, queue: str, _: str | None) -> int:
    job_state = request.form.get("state", "")
    if job_state not in FINISHED_STATES:
        abort(400, "clean deletes completed or failed jobs: state must be completed or failed.")
    return state.jobs.clean(queue, job_state, _older_than())


def _older_than() -> float:
    try:
        return check_older_than(float(request.form.get("older_than", "")))
    except (ValueError, JobActionError):
        abort(400, f"older_than must be a number of seconds, from 0 to {MAX_OLDER_THAN:,}.")


QUEUE_ACTIONS: dict[str, _Action] = {
    "pause": _Action("Pause queue {queue}: no new jobs start; running jobs finish.",
                     lambda s, q, _: s.jobs.pause(q)),
    "resume": _Action("Resume queue {queue}: its paused jobs start again.",
                      lambda s, q, _: s.jobs.resume(q)),
    "retry-all": _Action("Retry every failed job of queue {queue} ({failed} now).",
                         lambda s, q, _: s.jobs.retry_all(q)),
    "promote-all": _Action("Run every delayed job of queue {queue} now ({delayed} now).",
                           lambda s, q, _: s.jobs.promote_all(q)),
    "clean": _Action("Delete the {clean_state} jobs of queue {queue} that finished over "
                     "{older_than} ago.", _clean, danger=True),
}  # fmt: skip

JOB_ACTIONS: dict[str, _Action] = {
    "retry": _Action("Retry failed job {job_id} of queue {queue}.",
                     lambda s, q, j: s.jobs.retry(q, j or ""), needs_job=True),
    "promote": _Action("Run delayed job {job_id} of queue {queue} now.",
                       lambda s, q, j: s.jobs.promote(q, j or ""), needs_job=True),
    "cancel": _Action("Cancel job {job_id} of queue {queue}: if it waits, it fails now; if it "
                      "runs, its consumer stops it within one lease renewal. It is not retried.",
                      lambda s, q, j: str(s.jobs.cancel(q, j or "")), needs_job=True,
                      danger=True),
    "remove": _Action("Delete job {job_id} of queue {queue}, with its payload and logs.",
                      lambda s, q, j: s.jobs.remove(q, j or ""), needs_job=True, danger=True),
}  # fmt: skip


@blueprint.before_request
def guard() -> None:
    """The Origin header, then the CSRF token, before any read (read-only mode refused the
    request already, in :mod:`dashboard.guard`)."""
    state = current()
    origin, referer = request.headers.get("Origin"), request.headers.get("Referer")
    if not csrf.trusted_source(origin, referer, state.allowed_hosts, request.host):
        abort(403, "This form was sent from another site; reload the page and try again.")
    if not csrf.valid_token(state.csrf_secret, current_user(), request.form.get(csrf.FIELD)):
        abort(403, "The form's security token is missing or expired; reload the page and retry.")


@blueprint.post("/admin/queues/<queue>/<action>")
def queue_action(queue: str, action: str) -> ResponseReturnValue:
    return _act(queue, action, None, QUEUE_ACTIONS)


@blueprint.post("/admin/queues/<queue>/jobs/<job_id>/<action>")
def job_action(queue: str, job_id: str, action: str) -> ResponseReturnValue:
    return _act(queue, action, job_id, JOB_ACTIONS)


def _act(
    queue: str, action: str, job_id: str | None, table: dict[str, _Action]
) -> ResponseReturnValue:
    state = current()
    if action not in table:
        abort(404, f"There is no action {action!r}; use one of {', '.join(table)}.")
    try:
        name = state.app.queue(queue).name
    except QueueError:
        abort(404, f"There is no queue named {queue!r}.")
    spec = table[action]
    if job_id is not None:
        try:
            check_job_id(job_id)
        except JobActionError as exc:
            abort(400, str(exc))
    if request.form.get("confirm") != "yes":
        return _confirm_page(state, name, action, job_id, spec)
    try:
        outcome = spec.run(state, name, job_id)
    except JobActionError as exc:
        abort(409, str(exc))
    logger.info("dashboard: %s ran %s on queue %s%s", current_user(), action, name,
                f" job {job_id}" if job_id else "")  # fmt: skip
    return _back(state, name, action, job_id, outcome)


def _back(
    state: DashboardState, name: str, action: str, job_id: str | None, outcome: int | bool | str
) -> ResponseReturnValue:
    """The 303 to the page that says what ``action`` did: its notice is ``done``."""
    if isinstance(outcome, str):
        done = f"{action}-{outcome}"
    elif isinstance(outcome, bool):  # did it, or found nothing to do (another tab did it)
        done = action if outcome else f"{action}-none"
    else:
        done = action
    args: dict[str, Any]
    # The job's page only while it has a job to show: after a remove, or an action
    # on a job another tab removed, that page would answer 404 and hide the notice.
    if job_id is not None and action != "remove":
        if state.jobs.find(job_id) is not None:
            args = {"queue": name, "job_id": job_id, "done": done}
            return redirect(url_for("pages.job_page", **args), code=303)
        if done.endswith("-none"):
            done = f"{action}-gone"
    if job_id is not None:
        args = {"queue": name, "done": done, "state": _back_state()}
    else:
        args = {"queue": name, "state": _back_state(), "done": done}
        if not isinstance(outcome, bool):
            args["n"] = int(outcome)
    return redirect(url_for("pages.queue_page", **args), code=303)


def _confirm_page(
    state: DashboardState, queue: str, action: str, job_id: str | None, spec: _Action
) -> str:
    counts = state.jobs.counts(queue)
    clean_state = request.form.get("state", "")
    ages = dict(CLEAN_AGES)
    older = request.form.get("older_than", "")
    older_text = ages.get(int(float(older)), f"{older} s") if _is_number(older) else older
    description = spec.title.format(
        queue=queue,
        job_id=job_id,
        failed=counts.failed,
        delayed=counts.delayed,
        clean_state=clean_state,
        older_than=older_text,
    )
    fields = {k: v for k, v in request.form.items() if k not in (csrf.FIELD, "confirm")}
    if job_id is not None:
        cancel = url_for("pages.job_page", queue=queue, job_id=job_id)
    else:
        cancel = url_for("pages.queue_page", queue=queue, state=_back_state())
    return render_template(
        "confirm.html",
        queue=queue,
        action=action,
        description=description,
        fields=fields,
        danger=spec.danger,
        post_to=request.path,
        cancel=cancel,
    )


@dataclass(frozen=True)
class _ScheduleAction:
    title: str  # for the confirm page
    run: Callable[[DashboardState, str], str | bool]
    """The job id it enqueued, or whether it changed anything."""


SCHEDULE_ACTIONS: dict[str, _ScheduleAction] = {
    "run": _ScheduleAction("Run schedule {name} now: enqueue one job of {handler} on queue "
                           "{queue} with the schedule's payload. Its calendar does not change.",
                           lambda s, n: s.schedules.run(n)),
    "pause": _ScheduleAction("Pause schedule {name}: its ticks are not enqueued until it is "
                             "resumed, and are not caught up then.",
                             lambda s, n: s.schedules.pause(n)),
    "resume": _ScheduleAction("Resume schedule {name}: it fires again from its next tick.",
                              lambda s, n: s.schedules.resume(n)),
}  # fmt: skip


@blueprint.post("/admin/schedules/<name>/<action>")
def schedule_action(name: str, action: str) -> ResponseReturnValue:
    state = current()
    if action not in SCHEDULE_ACTIONS:
        abort(404, f"There is no action {action!r}; use one of {', '.join(SCHEDULE_ACTIONS)}.")
    schedule = _schedule_or_404(state, name)
    spec = SCHEDULE_ACTIONS[action]
    if request.form.get("confirm") != "yes":
        return render_template(
            "confirm.html",
            action=action,
            description=spec.title.format(
                name=name, queue=schedule.queue, handler=f"{schedule.queue}.{schedule.handler}"
            ),
            fields={},
            danger=False,
            post_to=request.path,
            cancel=url_for("pages.schedules"),
        )
    outcome = spec.run(state, name)
    logger.info("dashboard: %s ran %s on schedule %s", current_user(), action, name)
    if isinstance(outcome, str):
        args: dict[str, Any] = {"done": action, "schedule": name, "job": outcome}
    else:
        args = {"done": action if outcome else f"{action}-none", "schedule": name}
    return redirect(url_for("pages.schedules", **args), code=303)


def _schedule_or_404(state: DashboardState, name: str) -> Schedule:
    schedule = state.app.schedules.get(name)
    if schedule is None:
        known = ", ".join(state.app.schedules) or "none is declared"
        abort(404, f"There is no schedule named {name!r} (schedules: {known}).")
    return schedule


def _is_number(text: str) -> bool:
    try:
        check_older_than(float(text))
    except (ValueError, JobActionError):
        return False
    return True


def _back_state() -> str:
    back = request.form.get("back_state", "")
    return back if back in STATES else "waiting"
