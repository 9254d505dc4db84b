"""Rehydration: a server-side session rebuilt from the local record.

Rehydration replaces a session on the server with what we hold: the latest
summary (sent as the POST's ``context``) and the newest window of synced
messages, in batches that never take the server's list past ``WINDOW_SIZE``,
so no compaction runs and the summary arrives as we sent it. It starts with a
DELETE, so a rehydration that failed half-way is simply run again.

It holds the session's lock (:mod:`.locks`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db.models import Case, F, Value, When
from django.utils import timezone

from motorhead_django import redact, redaction
from motorhead_django.client import MotorheadClient, get_client
from motorhead_django.conf import motorhead_settings
from motorhead_django.exceptions import MotorheadError
from motorhead_django.states import MessageSyncState, SyncState

from . import records
from .locks import locked_session
from .pacing import send_window

# The name operators' logging settings know, and redaction.LOGGERS filters.
logger = logging.getLogger("motorhead_django.rehydrate")


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
            records.update_session(session_pk, last_error=result.error)
            logger.warning("Rehydration of %s failed: %s", session, result.error)
            return result
        result.sent = len(pairs)
        result.context_sent = bool(pairs) and session.context is not None
        result.pending = session.messages.pending().exists()
        updates: dict[str, Any] = {
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
        records.update_session(session_pk, **updates)
    return result
