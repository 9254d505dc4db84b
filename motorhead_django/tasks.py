"""Celery tasks: thin wrappers over :mod:`motorhead_django.sync`, ``pull`` and ``rehydrate``.

The beat schedule lives in :mod:`motorhead_django.schedule`, which settings
can import (this module imports the models and cannot be imported from
settings); ``BEAT_SCHEDULE`` is re-exported here for compatibility.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from celery import shared_task
from django.utils import timezone

from . import memory, pull, rehydrate, sync
from .conf import motorhead_settings
from .exceptions import MotorheadConfigurationError, MotorheadError
from .models import ChatMessage, ChatSession
from .schedule import BEAT_SCHEDULE  # noqa: F401  (re-exported: import it from .schedule)

logger = logging.getLogger(__name__)

# After a failed enqueue, this process leaves the broker alone for this many
# seconds: a broker outage then costs one slow write per interval (kombu waits
# for its connection retries), not every write. The sweep pushes the rest.
BROKER_RETRY_AFTER = 5.0
_broker_down_until = 0.0


@shared_task(
    name="motorhead_django.push_session",
    # Late ack: a worker killed mid-push leaves the task to be redelivered;
    # the push is idempotent (see sync.py), so running it twice is safe.
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def push_session(session_pk: int) -> dict[str, Any]:
    """Push one session; the result says what was sent and what is still pending."""
    _require_url("push session", [session_pk])
    return _follow_up(sync.push_session(session_pk))


@shared_task(
    name="motorhead_django.push_sessions",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def push_sessions(session_pks: list[int]) -> dict[str, Any]:
    """One push pass over several sessions (how the sweep sends its work)."""
    _require_url("push sessions", session_pks)
    results = [_follow_up(result) for result in sync.push_sessions(session_pks)]
    return {
        "sessions": len(results),
        "sessions_pushed": sum(1 for result in results if result["pushed"]),
        "pushed": sum(result["pushed"] for result in results),
        "pending": sum(result["pending"] for result in results),
        "errors": sum(1 for result in results if result["error"]),
        "results": results,
    }


class SyncNotConfigured(MotorheadConfigurationError):
    """A push task reached a process that has no ``MOTORHEAD["URL"]``."""


def _require_url(what: str, session_pks: list[int]) -> None:
    """Fail a push task loudly when this process has no URL (a worker configured apart from web)."""
    if motorhead_settings.URL:
        return
    message = (
        f"Cannot {what} {', '.join(map(str, session_pks))}: this process has no "
        'MOTORHEAD["URL"], so the messages stay pending. Give the worker the same '
        "MOTORHEAD settings (and environment) as the web process."
    )
    logger.error(message)
    raise SyncNotConfigured(message)


def _follow_up(result: sync.PushResult) -> dict[str, Any]:
    """After a session's push: pull it, and enqueue its retry or the work that arrived meanwhile."""
    pulled = False
    if result.pushed and not result.error and motorhead_settings.PULL_AFTER_PUSH:
        # The server's side back: its summary, what other clients wrote.
        pulled = not pull.pull_session(result.session_pk).busy
    pending = _pending_count(result.session_pk)
    if result.retry_at is not None:
        schedule_push(result.session_pk, eta=result.retry_at)
    elif result.more or (pulled and pending):
        # A push that found our pull holding the lock gave up: do its work.
        schedule_push(result.session_pk)
    return {
        "session": result.session_pk,
        "pushed": result.pushed,
        "pending": pending,
        "state": result.state,
        "busy": result.busy,
        "error": result.error,
        "retry_at": result.retry_at.isoformat() if result.retry_at is not None else None,
    }


@shared_task(name="motorhead_django.summarize_session", ignore_result=True)
def summarize_session(session_pk: int, first: int, last: int) -> None:
    memory.summarize(session_pk, first, last)


def schedule_summary(session_pk: int, first: int, last: int) -> None:
    """Enqueue a local summary; if the broker is down, that stretch stays unsummarised."""
    _enqueue(summarize_session, session_pk, first, last, fallback="it stays unsummarised")


@shared_task(name="motorhead_django.sweep", ignore_result=True)
def sweep(limit: int | None = None) -> dict[str, int]:
    """Enqueue every due push and remote delete; says how many sessions of each."""
    limit = limit or motorhead_settings.SWEEP_LIMIT
    keys = sync.due_sessions(limit)
    deletions = rehydrate.due_deletions(limit)
    if not keys and not deletions:
        return {"pushes": 0, "deletes": 0}
    # Not due again until well after this sweep, so a slow queue is not
    # flooded with copies of the same push.
    later = timezone.now() + timedelta(seconds=motorhead_settings.SWEEP_INTERVAL * 2)
    ChatSession.objects.filter(pk__in=keys + deletions, next_attempt_at__isnull=True).update(
        next_attempt_at=later
    )
    # In passes: a pass shares its bookkeeping between its sessions (see sync.push_sessions).
    for start in range(0, len(keys), sync.PASS_SIZE):
        _enqueue(push_sessions, keys[start : start + sync.PASS_SIZE])
    for pk in deletions:
        schedule_delete(pk)
    return {"pushes": len(keys), "deletes": len(deletions)}


@shared_task(
    name="motorhead_django.pull_session",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def pull_session(session_pk: int) -> dict[str, Any]:
    result = pull.pull_session(session_pk)
    if not result.busy and _has_pending(session_pk):
        schedule_push(session_pk)
    return {
        "session": session_pk,
        "added": result.added,
        "drift": result.drift,
        "busy": result.busy,
        "skipped": result.skipped,
        "error": result.error,
    }


@shared_task(name="motorhead_django.pull_active", ignore_result=True)
def pull_active(limit: int | None = None) -> dict[str, int]:
    """Enqueue a pull for every active session (see ACTIVE_PERIOD); says how many."""
    keys = pull.active_sessions(limit or motorhead_settings.SWEEP_LIMIT)
    enqueued = sum(1 for pk in keys if _enqueue(pull_session, pk))
    return {"sessions": len(keys), "enqueued": enqueued}


@shared_task(name="motorhead_django.resync_session", acks_late=True, ignore_result=True)
def resync_session(session_pk: int) -> dict[str, Any]:
    _require_url("resync session", [session_pk])
    result = sync.resync_session(session_pk)
    if result.retry_at is not None:
        schedule_push(session_pk, eta=result.retry_at)
    return {
        "session": session_pk,
        "pushed": result.pushed,
        "pending": _pending_count(session_pk),
        "error": result.error,
    }


@shared_task(name="motorhead_django.delete_on_server", acks_late=True, ignore_result=True)
def delete_on_server(session_pk: int) -> str:
    return sync.delete_on_server(session_pk)


@shared_task(name="motorhead_django.import_sessions", ignore_result=True)
def import_sessions(namespaces: list[str]) -> int:
    result = pull.import_sessions(namespaces)
    if result.stopped:
        logger.warning("Import %s; the next run resumes there.", result.stopped)
    return result.imported


def schedule_import(namespaces: list[str]) -> bool:
    """Enqueue an import of the server's sessions; False when the broker refused it."""
    return _enqueue(import_sessions, namespaces, fallback="run it again")


def schedule(task: Any, session_pk: int) -> None:
    """Enqueue one of the per-session tasks; never raises (see schedule_push)."""
    _enqueue(task, session_pk)


def runs_inline() -> bool:
    """Whether tasks run in this process (``task_always_eager``) rather than on a worker."""
    return bool(push_session.app.conf.task_always_eager)


@shared_task(name="motorhead_django.verify_session", acks_late=True, ignore_result=True)
def verify_session(session_pk: int) -> str:
    try:
        return pull.verify_session(session_pk)
    except MotorheadError as exc:  # the next scheduled verify tries again
        logger.warning("Could not verify session %s: %s", session_pk, exc)
        return ""


@shared_task(name="motorhead_django.verify_active", ignore_result=True)
def verify_active(limit: int | None = None) -> dict[str, int]:
    """Enqueue a drift verify for every active session; says how many."""
    keys = pull.active_sessions(limit or motorhead_settings.SWEEP_LIMIT)
    enqueued = sum(1 for pk in keys if _enqueue(verify_session, pk))
    return {"sessions": len(keys), "enqueued": enqueued}


@shared_task(
    name="motorhead_django.delete_session",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def delete_session(session_pk: int) -> bool:
    result = rehydrate.delete_remote(session_pk)
    if result.retry_at is not None:
        schedule_delete(session_pk, eta=result.retry_at)
    return result.deleted


def schedule_delete(session_pk: int, eta: datetime | None = None) -> None:
    """Enqueue a remote delete; never raises: if the broker is down, the sweep catches up."""
    _enqueue(delete_session, session_pk, eta=eta)


def _has_pending(session_pk: int) -> bool:
    return ChatMessage.objects.filter(session_id=session_pk, sync_state="pending").exists()


def _pending_count(session_pk: int) -> int:
    return ChatMessage.objects.filter(session_id=session_pk, sync_state="pending").count()


def schedule_push(session_pk: int, eta: datetime | None = None) -> None:
    """Enqueue a push; never raises: if the broker is down, the sweep catches up."""
    _enqueue(push_session, session_pk, eta=eta)


def _enqueue(
    task: Any, *args: Any, eta: datetime | None = None, fallback: str = "the sweep will pick it up"
) -> bool:
    """``apply_async`` that never raises; False when the task was not enqueued."""
    global _broker_down_until
    what = _describe(task, args)
    if eta is not None and runs_inline():
        return False  # eager mode cannot wait: the next write, the sweep or motorhead_sync retries
    if time.monotonic() < _broker_down_until:
        logger.debug("Broker recently unreachable; not enqueuing %s; %s.", what, fallback)
        return False
    options: dict[str, Any] = {"retry": False}
    if eta is not None:
        options["eta"] = eta
    if motorhead_settings.TASK_QUEUE:
        options["queue"] = motorhead_settings.TASK_QUEUE
    try:
        task.apply_async(args, **options)
    except Exception:  # the broker's errors vary by transport
        _broker_down_until = time.monotonic() + BROKER_RETRY_AFTER
        logger.warning("Could not enqueue %s; %s.", what, fallback, exc_info=True)
        return False
    return True


def _describe(task: Any, args: tuple[Any, ...]) -> str:
    if task is import_sessions:
        return "an import"
    if task is push_sessions:
        return f"the push of {len(args[0])} session(s)"
    kind = "push" if task is push_session else task.name.rpartition(".")[2].replace("_", " ")
    return f"the {kind} of session {args[0]}"


@shared_task(name="motorhead_django.retention", ignore_result=True)
def retention() -> dict[str, Any]:
    """One bounded batch of retention (docs/governance.md); without a policy, nothing."""
    from . import governance

    result = governance.apply_retention()
    return {
        "deleted": result.deleted,
        "trimmed": result.trimmed_messages,
        "held": result.plan.held,
        "more": result.plan.more,
    }
