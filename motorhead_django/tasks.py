"""Celery tasks: thin wrappers over :mod:`motorhead_django.sync`.

Add the sweep to your beat schedule (``BEAT_SCHEDULE`` below is a ready-made
entry); it finds pending work whose task never ran (the broker was down at
write time, a worker died) and pushes it.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from celery import shared_task
from django.utils import timezone

from . import memory, sync
from .conf import motorhead_settings
from .models import ChatSession

logger = logging.getLogger(__name__)

# After a failed enqueue, this process leaves the broker alone for this many
# seconds: a broker outage then costs one slow write per interval (kombu waits
# for its connection retries), not every write. The sweep pushes the rest.
BROKER_RETRY_AFTER = 5.0
_broker_down_until = 0.0

# A ready-made beat entry at the default SWEEP_INTERVAL (60 s); if you change
# the setting, use the same number of seconds in your schedule.
BEAT_SCHEDULE = {
    "motorhead-django-sweep": {"task": "motorhead_django.sweep", "schedule": 60.0},
}


@shared_task(
    name="motorhead_django.push_session",
    # Late ack: a worker killed mid-push leaves the task to be redelivered;
    # the push is idempotent (see sync.py), so running it twice is safe.
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def push_session(session_pk: int) -> dict[str, Any]:
    result = sync.push_session(session_pk)
    if result.retry_at is not None:
        schedule_push(session_pk, eta=result.retry_at)
    elif result.more:
        schedule_push(session_pk)
    return {
        "session": session_pk,
        "pushed": result.pushed,
        "state": result.state,
        "busy": result.busy,
    }


@shared_task(name="motorhead_django.summarize_session", ignore_result=True)
def summarize_session(session_pk: int, first: int, last: int) -> None:
    memory.summarize(session_pk, first, last)


def schedule_summary(session_pk: int, first: int, last: int) -> None:
    """Enqueue a local summary; if the broker is down, that stretch stays unsummarised."""
    options: dict[str, Any] = {"retry": False}
    if motorhead_settings.TASK_QUEUE:
        options["queue"] = motorhead_settings.TASK_QUEUE
    try:
        summarize_session.apply_async((session_pk, first, last), **options)
    except Exception:  # the broker's errors vary by transport
        logger.warning("Could not enqueue the summary of session %s.", session_pk, exc_info=True)


@shared_task(name="motorhead_django.sweep", ignore_result=True)
def sweep(limit: int | None = None) -> int:
    """Enqueue a push for every session whose push is due; returns how many."""
    keys = sync.due_sessions(limit or motorhead_settings.SWEEP_LIMIT)
    if not keys:
        return 0
    # Not due again until well after this sweep, so a slow queue is not
    # flooded with copies of the same push.
    later = timezone.now() + timedelta(seconds=motorhead_settings.SWEEP_INTERVAL * 2)
    ChatSession.objects.filter(pk__in=keys, next_attempt_at__isnull=True).update(
        next_attempt_at=later
    )
    for pk in keys:
        schedule_push(pk)
    return len(keys)


def runs_inline() -> bool:
    """Whether tasks run in this process (``task_always_eager``) rather than on a worker."""
    return bool(push_session.app.conf.task_always_eager)


def schedule_push(session_pk: int, eta: datetime | None = None) -> None:
    """Enqueue a push; never raises: if the broker is down, the sweep catches up."""
    global _broker_down_until
    if eta is not None and runs_inline():
        return  # eager mode cannot wait: the next write, the sweep or motorhead_sync retries
    if time.monotonic() < _broker_down_until:
        logger.debug("Broker recently unreachable; the sweep will push session %s.", session_pk)
        return
    options: dict[str, Any] = {"retry": False}
    if eta is not None:
        options["eta"] = eta
    if motorhead_settings.TASK_QUEUE:
        options["queue"] = motorhead_settings.TASK_QUEUE
    try:
        push_session.apply_async((session_pk,), **options)
    except Exception:  # the broker's errors vary by transport
        _broker_down_until = time.monotonic() + BROKER_RETRY_AFTER
        logger.warning(
            "Could not enqueue the push of session %s; the sweep will pick it up.",
            session_pk,
            exc_info=True,
        )
