"""Long admin actions as background jobs: one task walks the selection and records progress.

The admin (``motorhead_django.admin.actions``) registers what each kind of job
does with :func:`register`; :func:`start` saves an :class:`AdminJob` and
enqueues :func:`run_admin_job`, which runs inline when Celery is eager. The
job's page in the admin reads the row (done/total, rate, state, errors).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import shared_task
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .conf import motorhead_settings
from .job_models import AdminJob, JobState

logger = logging.getLogger(__name__)

# Sessions handled between two progress updates of the row.
CHUNK = 20
# A job keeps the first errors only: the page names them, the count says the rest.
MAX_ERRORS = 100


@dataclass
class Outcome:
    """What one operation did to one session."""

    session_pk: int
    amount: int = 0  # messages pushed, found, sent…
    extra: int = 0  # a second count (new summary versions of a pull)
    error: str = ""
    state: str = ""  # how the session stands when it failed, for the message


Runner = Callable[[list[int]], list[Outcome]]
_RUNNERS: dict[str, Runner] = {}


def register(kind: str, runner: Runner) -> None:
    """Name what a job of ``kind`` does with a batch of session keys."""
    _RUNNERS[kind] = runner


def start(kind: str, description: str, session_pks: list[int], *, user: Any = None) -> AdminJob:
    """Save a job and hand it to a worker (or run it here, when Celery is eager)."""
    job = AdminJob.objects.create(
        kind=kind,
        description=description[:200],
        user=user if user is not None and user.pk else None,
        session_pks=session_pks,
        total=len(session_pks),
    )
    transaction.on_commit(lambda: _enqueue(job.pk))
    return job


def _enqueue(job_pk: int) -> None:
    options: dict[str, Any] = {"retry": False}
    if motorhead_settings.TASK_QUEUE:
        options["queue"] = motorhead_settings.TASK_QUEUE
    try:
        run_admin_job.apply_async((job_pk,), **options)
    except Exception:  # the broker's errors vary by transport
        logger.warning("Could not enqueue admin job %s.", job_pk, exc_info=True)
        AdminJob.objects.filter(pk=job_pk, state=JobState.QUEUED).update(
            state=JobState.FAILED,
            outcome="The broker refused the job: nothing was done.",
            finished_at=timezone.now(),
        )


@shared_task(name="motorhead_django.run_admin_job", ignore_result=True)
def run_admin_job(job_pk: int) -> str:
    return run(job_pk)


def run(job_pk: int) -> str:
    """Run a queued job to its end; returns its final state ("" when it was not queued)."""
    # Claimed by one worker only: a second delivery finds it running.
    claimed = AdminJob.objects.filter(pk=job_pk, state=JobState.QUEUED).update(
        state=JobState.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        return ""
    job = AdminJob.objects.get(pk=job_pk)
    runner = _RUNNERS.get(job.kind)
    if runner is None:
        return _finish(job_pk, JobState.FAILED, f"No operation named {job.kind!r} is registered.")
    errors: list[dict[str, Any]] = []
    keys = [int(pk) for pk in job.session_pks]
    try:
        for start_at in range(0, len(keys), CHUNK):
            outcomes = runner(keys[start_at : start_at + CHUNK])
            failed = [o for o in outcomes if o.error]
            errors.extend(
                {"session_pk": o.session_pk, "state": o.state, "error": o.error}
                for o in failed[: max(0, MAX_ERRORS - len(errors))]
            )
            AdminJob.objects.filter(pk=job_pk).update(
                processed=F("processed") + len(outcomes),
                failed=F("failed") + len(failed),
                amount=F("amount") + sum(o.amount for o in outcomes),
                extra=F("extra") + sum(o.extra for o in outcomes),
                errors=errors,
            )
    except Exception as exc:  # the page says the job stopped, and why
        logger.exception("Admin job %s stopped.", job_pk)
        return _finish(job_pk, JobState.FAILED, f"Stopped: {type(exc).__name__}.")
    return _finish(job_pk, JobState.DONE, "")


def _finish(job_pk: int, state: str, outcome: str) -> str:
    AdminJob.objects.filter(pk=job_pk).update(
        state=state, outcome=outcome, finished_at=timezone.now()
    )
    return state
