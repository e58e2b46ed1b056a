"""The web dashboard: a Flask app on the framework's read/act API.

::

    from dashboard import create_app
    flask_app = create_app()          # the process's app (framework.get_app())

Pages under ``/admin/queues``, JSON under ``/api/v1/queues``, ``/health`` and
``/metrics`` (``docs/dashboard.md``). Templates see small dataclasses, never
Redis; every state change is a POST with a CSRF token and a confirm step.
"""

from __future__ import annotations

from dashboard.app import create_app

__all__ = ["create_app"]
