"""Celery beat entries for motorhead-django, importable from ``settings.py``.

This module imports nothing from Django or from the app's models, so a
settings module can use it before the app registry is ready::

    from motorhead_django.schedule import BEAT_SCHEDULE as MOTORHEAD_BEAT_SCHEDULE

    CELERY_BEAT_SCHEDULE = {**MOTORHEAD_BEAT_SCHEDULE}

The sweep finds pending work whose task never ran (the broker was down at
write time, a worker died, the server was unreachable) and pushes it, and
finishes remote deletes; the pull and the drift verify visit the active
sessions; the state sampler records sessions by sync state for the admin's
history chart. ``beat_schedule()`` builds the same entries with other
intervals or a queue; keep ``sweep`` equal to ``MOTORHEAD["SWEEP_INTERVAL"]``
and ``states`` to ``MOTORHEAD["STATE_SAMPLE_INTERVAL"]``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BEAT_SCHEDULE", "beat_schedule"]


def beat_schedule(
    sweep: float = 60.0,
    pull: float = 300.0,
    verify: float = 3600.0,
    retention: float = 3600.0,
    states: float = 300.0,
    *,
    queue: str | None = None,
) -> dict[str, dict[str, Any]]:
    """The beat entries, every ``sweep``/``pull``/``verify``/``retention``/``states``
    seconds, on ``queue`` if given."""
    entries: dict[str, dict[str, Any]] = {
        "motorhead-django-sweep": {"task": "motorhead_django.sweep", "schedule": float(sweep)},
        "motorhead-django-pull": {"task": "motorhead_django.pull_active", "schedule": float(pull)},
        "motorhead-django-verify": {
            "task": "motorhead_django.verify_active",
            "schedule": float(verify),
        },
        # A no-op until MOTORHEAD["RETENTION"] or a session's own retention is set.
        "motorhead-django-retention": {
            "task": "motorhead_django.retention",
            "schedule": float(retention),
        },
        # Sessions by state for the overview's history chart; keep it equal to
        # MOTORHEAD["STATE_SAMPLE_INTERVAL"] (check W090 compares them).
        "motorhead-django-sample-states": {
            "task": "motorhead_django.sample_states",
            "schedule": float(states),
        },
    }
    if queue:
        for entry in entries.values():
            entry["options"] = {"queue": queue}
    return entries


# The default intervals: the sweep at the default SWEEP_INTERVAL (60 s), the state
# samples at the default STATE_SAMPLE_INTERVAL (300 s).
BEAT_SCHEDULE = beat_schedule()
