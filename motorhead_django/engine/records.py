"""The engine's one write path to the mirrored tables (sessions and messages).

Two owners write these rows, each in one place: :mod:`motorhead_django.memory`
writes what users write (sessions, messages, contexts, tombstones), and this
module writes what the sync learns (sync states, marks, attempts, errors,
drift, and the messages a pull brings in). Every other engine module, and the
tasks through the façade, change a row only by calling one of these.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import connections, transaction
from django.db.models import F, Q

from motorhead_django.models import ChatMessage, ChatSession
from motorhead_django.states import MessageOrigin, MessageSyncState, SyncState

# Messages marked synced per statement (a bound on its parameters).
_UPDATE_BATCH = 5000


def update_session(session_pk: int, *, only_if: Q | None = None, **fields: Any) -> int:
    """Set sync fields of one session (``only_if``: when its row still matches); rows changed."""
    rows = ChatSession.objects.filter(pk=session_pk)
    if only_if is not None:
        rows = rows.filter(only_if)
    return rows.update(**fields)


def update_sessions(keys: list[int], fields: dict[str, Any]) -> None:
    """Update many sessions' rows in one statement, never waiting for a row while holding others.

    A row a writer holds (``append_messages`` updates the session first) is
    skipped by that statement and updated on its own afterwards, holding
    nothing else: waiting for it while holding the others could deadlock
    with a transaction that writes to several sessions.
    """
    features = connections[ChatSession.objects.db].features
    if not features.has_select_for_update_skip_locked:  # SQLite locks the whole database anyway
        ChatSession.objects.filter(pk__in=keys).update(**fields)
        return
    with transaction.atomic():
        rows = ChatSession.objects.filter(pk__in=keys).select_for_update(
            skip_locked=True, no_key=features.has_select_for_no_key_update
        )
        free = set(rows.values_list("pk", flat=True))
        ChatSession.objects.filter(pk__in=free).update(**fields)
    for pk in keys:
        if pk not in free:
            ChatSession.objects.filter(pk=pk).update(**fields)


def defer_attempts(keys: Iterable[int], until: datetime) -> None:
    """Not due again before ``until`` (sessions that have no attempt time of their own)."""
    ChatSession.objects.filter(pk__in=list(keys), next_attempt_at__isnull=True).update(
        next_attempt_at=until
    )


def mark_messages_synced(message_pks: list[int], now: datetime) -> None:
    """The server confirmed these messages."""
    for start in range(0, len(message_pks), _UPDATE_BATCH):
        ChatMessage.objects.filter(pk__in=message_pks[start : start + _UPDATE_BATCH]).update(
            sync_state=MessageSyncState.SYNCED, synced_at=now
        )


def mark_all_pending(session: ChatSession) -> None:
    """Every message of the session to be pushed again, from an empty server (a resync)."""
    session.messages.update(sync_state=MessageSyncState.PENDING, synced_at=None)
    update_session(
        session.pk, sync_state=SyncState.PENDING, inflight_through=None, context_pending=False
    )


def mark_drifted(session_pk: int, drift: str, *, only_if: Q | None = None, **fields: Any) -> int:
    """The server no longer mirrors the session, for the reason ``drift`` names."""
    return update_session(
        session_pk, only_if=only_if, sync_state=SyncState.DRIFTED, drift=drift, **fields
    )


def insert_remote_messages(
    session: ChatSession,
    rows: list[tuple[int, str, str]],
    moving: list[ChatMessage],
    *,
    after: int,
    parking: int,
    now: datetime,
) -> list[ChatMessage]:
    """Messages the server holds and we did not, at ``(sequence, role, content)``.

    ``moving`` are our messages after sequence ``after``, their new sequences
    already set: they pass through ``parking`` (above every real sequence)
    first, so the ``(session, sequence)`` constraint holds after each statement.
    """
    if moving:
        session.messages.filter(sequence__gt=after).update(sequence=F("sequence") + parking)
        ChatMessage.objects.bulk_update(moving, ["sequence"])
    created = ChatMessage.objects.bulk_create(
        ChatMessage(
            session=session,
            sequence=sequence,
            role=role,
            content=content,
            origin=MessageOrigin.REMOTE,
            sync_state=MessageSyncState.SYNCED,
            synced_at=now,
        )
        for sequence, role, content in rows
    )
    update_session(session.pk, last_sequence=F("last_sequence") + len(created))
    return created


def drop(session: ChatSession) -> None:
    """The server confirmed the delete: the row goes, its messages and summaries with it."""
    session.delete()
