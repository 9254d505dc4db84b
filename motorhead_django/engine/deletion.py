"""Deleting a session's server copy: a tombstone's remote delete, or the server's copy alone.

A remote delete finishes a local :func:`motorhead_django.memory.delete_session`:
the session stays as a tombstone (``delete_requested_at``, state ``deleting``)
until the server confirmed the DELETE, then the row and its content go.
Both hold the session's lock (:mod:`.locks`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from motorhead_django import memory, redaction
from motorhead_django.client import MotorheadClient, get_client
from motorhead_django.conf import motorhead_settings
from motorhead_django.exceptions import MotorheadError, is_retryable
from motorhead_django.models import ChatSession
from motorhead_django.states import SyncState

from . import records
from .locks import locked_session
from .pacing import backoff_delay

# The name operators' logging settings know, and redaction.LOGGERS filters.
logger = logging.getLogger("motorhead_django.rehydrate")


@dataclass
class DeleteResult:
    session_pk: int
    deleted: bool = False
    busy: bool = False
    error: str = ""
    retry_at: datetime | None = None


def delete_remote(session_pk: int, *, client: MotorheadClient | None = None) -> DeleteResult:
    """Delete a tombstoned session on the server, then locally; back off on failure."""
    result = DeleteResult(session_pk)
    with locked_session(session_pk) as (acquired, session):
        if not acquired:
            result.busy = True
            return result
        if session is None or session.delete_requested_at is None:
            return result
        try:
            (client or get_client()).delete_memory(
                session.remote_id, namespace=session.namespace or None
            )
        except MotorheadError as exc:
            _record_delete_failure(session, exc, result)
            return result
        records.drop(session)
        result.deleted = True
    return result


def _record_delete_failure(session: ChatSession, exc: MotorheadError, result: DeleteResult) -> None:
    attempts = session.sync_attempts + 1
    result.error = redaction.error_text(exc)
    updates: dict[str, Any] = {"sync_attempts": attempts, "last_error": result.error}
    if is_retryable(exc):
        # Unlike a push, a delete never gives up on a transient error: the
        # tombstone waits for the server however long it is away.
        delay = backoff_delay(min(attempts, motorhead_settings.MAX_RETRIES))
        result.retry_at = timezone.now() + timedelta(seconds=delay)
        updates["next_attempt_at"] = result.retry_at
    else:
        updates.update(sync_state=SyncState.FAILED, next_attempt_at=None)
    records.update_session(session.pk, **updates)
    logger.warning("Remote delete of %s failed (attempt %d): %s", session, attempts, result.error)


def due_deletions(limit: int | None = None) -> list[int]:
    """Tombstones whose remote delete is due (served by a partial index)."""
    query = ChatSession.objects.to_delete_remotely().attempt_due().order_by("next_attempt_at", "pk")
    keys = query.values_list("pk", flat=True)
    return list(keys[:limit] if limit else keys)


def delete_on_server(session_pk: int, *, client: MotorheadClient | None = None) -> str:
    """Delete the server's copy of a session and keep ours; returns an error text or "".

    The session is then marked drifted (the server no longer mirrors it) until a
    resync or a rehydration restores it; new writes are pushed as usual.
    """
    client = client or get_client()
    with locked_session(session_pk) as (acquired, session):
        if not acquired:
            return "busy: a worker is pushing this session"
        if session is None:
            return ""
        # Re-read under the lock: a hold set since the action was chosen (a queued job) wins.
        if ChatSession.objects.filter(pk=session.pk).filter(memory.held()).exists():
            return "held: the session is under a legal hold; the server's copy stays"
        try:
            client.delete_memory(session.remote_id, namespace=session.namespace or None)
        except MotorheadError as exc:
            return redaction.error_text(exc)
        records.mark_drifted(
            session_pk, "deleted on the server by an operator; resync or rehydrate to restore it"
        )
    return ""
