"""Rebuilding and deleting server-side sessions from the local record.

Rehydration replaces a session on the server with what we hold: the latest
summary (sent as the POST's ``context``) and the newest window of synced
messages, in batches that never take the server's list past ``WINDOW_SIZE``,
so no compaction runs and the summary arrives as we sent it. It starts with a
DELETE, so a rehydration that failed half-way is simply run again.

A remote delete finishes a local :func:`motorhead_django.memory.delete_session`:
the session stays as a tombstone (``delete_requested_at``, state ``deleting``)
until the server confirmed the DELETE, then the row and its content go.
Both hold the session's push lock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Case, F, Value, When
from django.utils import timezone

from . import redact, redaction
from .client import MotorheadClient, get_client
from .conf import motorhead_settings
from .exceptions import MotorheadError, is_retryable
from .locks import locked_session
from .models import ChatSession
from .states import MessageSyncState, SyncState
from .sync import backoff_delay, send_window

logger = logging.getLogger(__name__)


@dataclass
class RehydrateResult:
    session_pk: int
    busy: bool = False
    sent: int = 0
    context_sent: bool = False
    error: str = ""
    pending: bool = False  # local messages still wait for a push


def rehydrate_session(session_pk: int, *, client: MotorheadClient | None = None) -> RehydrateResult:
    """Replace the session on the server with its latest summary and newest window."""
    result = RehydrateResult(session_pk)
    with locked_session(session_pk) as (acquired, session):
        if session is None or session.delete_requested_at is not None:
            result.busy = not acquired
            return result
        client = client or get_client()
        window = session.messages.filter(sync_state=MessageSyncState.SYNCED).newest(
            motorhead_settings.WINDOW_SIZE
        )
        pairs = redact.pairs(window)
        try:
            send_window(client, session, pairs, session.context)
        except MotorheadError as exc:
            result.error = redaction.error_text(exc)
            ChatSession.objects.filter(pk=session_pk).update(last_error=result.error)
            logger.warning("Rehydration of %s failed: %s", session, result.error)
            return result
        result.sent = len(pairs)
        result.context_sent = bool(pairs) and session.context is not None
        result.pending = session.messages.pending().exists()
        updates: dict[str, object] = {
            "sync_state": SyncState.PENDING if result.pending else SyncState.SYNCED,
            "drift": "",
            # The server now holds none of a batch in flight: it is sent again.
            "inflight_through": None,
            "last_error": "",
            "sync_attempts": 0,
            "next_attempt_at": None,
            "last_pushed_at": timezone.now(),
        }
        if result.context_sent:
            # Only if nobody changed the context meanwhile.
            updates["context_pending"] = Case(
                When(context=session.context, then=Value(False)), default=F("context_pending")
            )
        ChatSession.objects.filter(pk=session_pk).update(**updates)
    return result


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
        session.delete()  # the messages and summaries go with it (CASCADE)
        result.deleted = True
    return result


def _record_delete_failure(session: ChatSession, exc: MotorheadError, result: DeleteResult) -> None:
    attempts = session.sync_attempts + 1
    result.error = redaction.error_text(exc)
    updates: dict[str, object] = {"sync_attempts": attempts, "last_error": result.error}
    if is_retryable(exc):
        # Unlike a push, a delete never gives up on a transient error: the
        # tombstone waits for the server however long it is away.
        delay = backoff_delay(min(attempts, motorhead_settings.MAX_RETRIES))
        result.retry_at = timezone.now() + timedelta(seconds=delay)
        updates["next_attempt_at"] = result.retry_at
    else:
        updates.update(sync_state=SyncState.FAILED, next_attempt_at=None)
    ChatSession.objects.filter(pk=session.pk).update(**updates)
    logger.warning("Remote delete of %s failed (attempt %d): %s", session, attempts, result.error)


def due_deletions(limit: int | None = None) -> list[int]:
    """Tombstones whose remote delete is due (served by a partial index)."""
    query = ChatSession.objects.to_delete_remotely().attempt_due().order_by("next_attempt_at", "pk")
    keys = query.values_list("pk", flat=True)
    return list(keys[:limit] if limit else keys)
