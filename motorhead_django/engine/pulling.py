"""The pull side of the sync: the server's window and summary back into Django.

Motorhead changes on its own: it summarises and trims, other clients write to
it, its Redis can be flushed. A pull reads one session's window and:

* brings messages other clients wrote into the local history, at their place
  in the server's order, as ``origin=remote`` and ``synced``;
* takes the server's ``context`` and ``tokens``, and keeps every summary
  version it sees in :class:`~motorhead_django.models.SummaryVersion`;
* reports drift: our messages missing from the window, or an empty server.

The server has no message ids, so the window is matched with our history by
content (:mod:`.compare`); docs/pull.md
says what this can and cannot decide. A pull holds the same per-session lock
as the push, so the two never interleave on a session.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from motorhead_django import memory, redaction, signals, states
from motorhead_django.client import Memory as RemoteMemory
from motorhead_django.client import MotorheadClient, get_client
from motorhead_django.conf import motorhead_settings
from motorhead_django.exceptions import MotorheadError
from motorhead_django.models import ChatMessage, ChatSession, SummaryVersion
from motorhead_django.querysets import ChatMessageQuerySet
from motorhead_django.states import MessageSyncState, SyncState

from . import records
from .compare import Comparison, compare
from .locks import locked_session
from .settle import Pair

# The name operators' logging settings know, and redaction.LOGGERS filters.
logger = logging.getLogger("motorhead_django.pull")

# Renumbered rows pass through this range, clear of every real sequence, so the
# (session, sequence) unique constraint holds after each statement.
_PARKING_OFFSET = 1 << 40

ROLE_MAX_LENGTH = ChatMessage._meta.get_field("role").max_length or 255


@dataclass
class PullResult:
    session_pk: int
    busy: bool = False
    skipped: str = ""  # why nothing was done (disabled, deleting, in flight)
    added: int = 0
    summary: SummaryVersion | None = None
    drift: str = ""
    error: str = ""
    refused: str = ""  # the server holds text this database cannot store (also in error)


def unstorable(remote: RemoteMemory) -> str:
    """What in the server's answer the local tables cannot hold, or "" when all of it fits."""
    for number, message in enumerate(remote.chronological, start=1):
        for name, value in (("role", message.role), ("content", message.content)):
            problem = memory.text_problem(value)
            if problem is None and name == "role" and len(value) > ROLE_MAX_LENGTH:
                problem = f"At most {ROLE_MAX_LENGTH} characters."
            if problem:
                return f"text this database cannot store (message {number}, {name}): {problem}"
    if remote.context is not None and (problem := memory.text_problem(remote.context)):
        return f"text this database cannot store (the context): {problem}"
    return ""


def pull_session(session_pk: int, *, client: MotorheadClient | None = None) -> PullResult:
    """Bring one session's server window, context and tokens into the local record."""
    result = PullResult(session_pk)
    if not motorhead_settings.SYNC_ENABLED:
        result.skipped = "disabled"
        return result
    with locked_session(session_pk) as (acquired, session):
        if not acquired:
            result.busy = True
            return result
        if session is None or session.delete_requested_at is not None:
            result.skipped = "deleted"
            return result
        try:
            remote = (client or get_client()).get_memory(session.remote_id)
        except MotorheadError as exc:
            result.error = redaction.error_text(exc)
            logger.warning("Pull of %s failed: %s", session, result.error)
            return result
        problem = unstorable(remote)
        if problem:
            # Storing it would fail half-way on PostgreSQL (or store text SQLite
            # cannot read back): keep what we have and say why.
            result.error = result.refused = f"the server's window holds {problem}"
            logger.warning("Pull of %s refused: %s", session, result.error)
            return result
        added = _apply(session, remote, result)
    signals.post_pull.send(sender=ChatSession, session=session, added=added, summary=result.summary)
    if result.drift:
        signals.drift_found.send(sender=ChatSession, session=session, drift=result.drift)
    return result


def _apply(session: ChatSession, remote: RemoteMemory, result: PullResult) -> list[ChatMessage]:
    window = [(m.role, m.content) for m in remote.chronological]
    now = timezone.now()
    added: list[ChatMessage] = []
    with transaction.atomic():
        # Writers update this row first, so holding it orders us with them.
        locked = ChatSession.objects.select_for_update().get(pk=session.pk)
        if locked.inflight_through is not None:
            # A push may have landed a batch we have not confirmed: the next push
            # settles it; until then its messages would look like extras.
            result.skipped = "in flight"
            comparison = Comparison()
        else:
            tail = _synced(locked).newest(len(window) + 1)
            comparison = compare(window, tail)
            if comparison.extras:
                added = _insert(locked, comparison.extras, now)
                # Sequences moved: the newest synced message is the window's end.
                comparison.through = _synced(locked).newest(1)[-1].sequence
            elif comparison.through:
                comparison.through = tail[-1].sequence
        updates: dict[str, Any] = {"last_pulled_at": now}
        if motorhead_settings.SUMMARIZES_LOCALLY:
            pass  # CONTEXT_OWNER "local": the built-in summariser writes context and tokens
        elif remote.context is not None and not locked.context_pending:
            # A null never replaces a real summary; "NONE" is kept as the server said it.
            updates["context"] = remote.context
        if remote.tokens and not motorhead_settings.SUMMARIZES_LOCALLY:
            # 0 is what a server that lost the key, or a hosted one without the
            # field, reports: it never replaces a count we have.
            updates["tokens"] = remote.tokens
        if (
            remote.context is not None or remote.tokens
        ) and not motorhead_settings.SUMMARIZES_LOCALLY:
            result.summary = _record_summary(locked, remote, comparison.through, now)
        result.drift = comparison.describe(with_extras=False)
        if result.skipped:
            pass  # nothing can be said about drift until the push settled its batch
        elif result.drift and locked.sync_state in states.MIRRORED:
            updates.update(sync_state=SyncState.DRIFTED, drift=result.drift)
        elif not result.drift and locked.sync_state == SyncState.DRIFTED:
            updates.update(sync_state=SyncState.SYNCED, drift="")
        records.update_session(session.pk, **updates)
    session.refresh_from_db()
    result.added = len(added)
    return added


def _synced(session: ChatSession) -> ChatMessageQuerySet:
    return session.messages.filter(sync_state=MessageSyncState.SYNCED)


def _insert(
    session: ChatSession, extras: list[tuple[int, Pair]], now: datetime
) -> list[ChatMessage]:
    """Insert the server-only messages after their anchors, moving later local ones down."""
    groups: dict[int, list[Pair]] = defaultdict(list)
    for anchor, pair in extras:
        groups[anchor].append(pair)
    anchors = sorted(groups)

    def shift(sequence: int) -> int:  # inserted messages that go before this local one
        return sum(len(groups[a]) for a in anchors if a < sequence)

    moving = list(session.messages.filter(sequence__gt=anchors[0]).order_by("sequence"))
    for message in moving:
        message.sequence += shift(message.sequence)
    rows = [
        (anchor + shift(anchor) + offset, role, content)
        for anchor in anchors
        for offset, (role, content) in enumerate(groups[anchor], start=1)
    ]
    return records.insert_remote_messages(
        session, rows, moving, after=anchors[0], parking=_PARKING_OFFSET, now=now
    )


def _record_summary(
    session: ChatSession, remote: RemoteMemory, through: int, now: datetime
) -> SummaryVersion | None:
    latest = session.summaries.order_by("-pulled_at", "-pk").first()
    if latest is not None and (latest.context, latest.tokens) == (remote.context, remote.tokens):
        return None
    return SummaryVersion.objects.create(
        session=session,
        context=remote.context,
        tokens=remote.tokens,
        through_sequence=through,
        pulled_at=now,
    )


def active_sessions(limit: int | None = None) -> list[int]:
    """Synced or drifted sessions written within ``ACTIVE_PERIOD``, least recently pulled first."""
    since = timezone.now() - timedelta(seconds=motorhead_settings.ACTIVE_PERIOD)
    query = (
        ChatSession.objects.mirrored()
        .filter(updated_at__gte=since)
        .order_by(F("last_pulled_at").asc(nulls_first=True), "pk")
        .values_list("pk", flat=True)
    )
    return list(query[:limit] if limit else query)
