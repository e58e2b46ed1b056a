"""The JSON endpoints and the Prometheus scrape.

::

    GET /health                     200 or 503, the spec's shape plus "reasons" (no internal
                                    names unless signed in or [health] details = true)
    GET /api/v1/queues/health       the spec's shape, exactly
    GET /api/v1/queues/metrics      per queue: summary and one point per minute
    GET /api/v1/queues/statistics   per queue: counts and summary
    GET /api/v1/schedules           every schedule: next and last run, last job, paused
    GET /metrics                    Prometheus text format

``metrics`` and ``statistics`` take ``?minutes=`` (default 60) and
``?queue=`` (default every queue). Every JSON answer has ``success``; an
error has ``error`` with what to fix.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from dashboard.auth import current_user
from dashboard.prometheus import scrape
from dashboard.state import DashboardState, current
from framework.errors import JobActionError, QueueError, RedisUnavailableError
from framework.health import HealthReport, check, iso_timestamp

__all__ = ["blueprint"]

blueprint = Blueprint("api", __name__)

DEFAULT_MINUTES = 60


@blueprint.get("/health")
def health() -> tuple[Response, int]:
    """Healthy or not, and why. The reasons name no host, port or URL, unless the client
    signed in or ``[health] details = true``: then the Redis error is spelled out."""
    state = current()
    report = check(state.app, state.jobs, state.schedules)
    detailed = state.app.settings.health.details or bool(current_user())
    body = {
        "status": "ok" if report.healthy else "error",
        "timestamp": report.timestamp,
        "uptime": state.uptime,
        "environment": state.environment.name,
        "redis": {"connected": report.redis_connected},
        "queues": _queues_word(report),
        "reasons": list(report.detailed_reasons if detailed else report.reasons),
    }
    return _no_store(jsonify(body)), 200 if report.healthy else 503


@blueprint.get("/api/v1/queues/health")
def queues_health() -> tuple[Response, int]:
    state = current()
    report = check(state.app, state.jobs, state.schedules)
    body = {
        "success": report.redis_connected,
        "data": {
            "status": "healthy" if report.healthy else "unhealthy",
            "redis": {"connected": report.redis_connected},
            "queues": report.queues_json(),
            "totals": report.totals(),
            "timestamp": report.timestamp,
        },
    }
    return _no_store(jsonify(body)), 200 if report.redis_connected else 503


@blueprint.get("/api/v1/queues/metrics")
def queues_metrics() -> tuple[Response, int]:
    def build(state: DashboardState, names: list[str], minutes: int) -> dict[str, Any]:
        return {
            name: {
                "summary": state.jobs.summary(name, minutes).to_json(),
                "series": [point.to_json() for point in state.jobs.metrics(name, minutes)],
            }
            for name in names
        }

    return _per_queue(build)


@blueprint.get("/api/v1/queues/statistics")
def queues_statistics() -> tuple[Response, int]:
    def build(state: DashboardState, names: list[str], minutes: int) -> dict[str, Any]:
        counts = state.jobs.counts_all()
        return {
            name: {
                "counts": counts[name].to_json(),
                **state.jobs.summary(name, minutes).to_json(),
                "concurrency": state.app.queue(name).policy.concurrency,
            }
            for name in names
        }

    return _per_queue(build)


@blueprint.get("/api/v1/schedules")
def schedules() -> tuple[Response, int]:
    """What ``hueyard schedules --json`` prints, for each schedule in config order."""
    state = current()
    try:
        infos = state.schedules.list()
    except RedisUnavailableError as exc:
        return _error(str(exc), 503)
    body = {"success": True, "data": {"schedules": [info.to_json() for info in infos],
                                      "timestamp": iso_timestamp()}}  # fmt: skip
    return _no_store(jsonify(body)), 200


@blueprint.get("/metrics")
def metrics() -> Response:
    text, content_type = scrape(current())
    return _no_store(Response(text, content_type=content_type))


# -- helpers ---------------------------------------------------------------------------------


def _queues_word(report: HealthReport) -> str:
    if not report.redis_connected:
        return "unknown"
    return "healthy" if report.healthy else "unhealthy"


def _per_queue(build: Any) -> tuple[Response, int]:
    state = current()
    try:
        minutes = int(request.args.get("minutes", DEFAULT_MINUTES))
        wanted = request.args.get("queue")
        names = [state.app.queue(wanted).name] if wanted else list(state.app.queues)
        if not state.app.cache.health()["connected"]:
            raise RedisUnavailableError("Redis does not answer; check that it runs")
        data = build(state, names, minutes)
    except ValueError:
        return _error("minutes must be a whole number of minutes, e.g. ?minutes=60", 400)
    except (JobActionError, QueueError) as exc:
        return _error(str(exc), 400)
    except RedisUnavailableError as exc:
        return _error(str(exc), 503)
    body = {"success": True, "data": {"minutes": minutes, "queues": data,
                                      "timestamp": iso_timestamp()}}  # fmt: skip
    return _no_store(jsonify(body)), 200


def _error(message: str, status: int) -> tuple[Response, int]:
    return _no_store(jsonify({"success": False, "error": message})), status


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response
