"""The memory core: the one way to read and write conversations.

Every layer (REST views, Motorhead-compatible views, admin, tasks, commands,
the LangChain adapter) calls these functions. A write stores the messages and
their outbox state in one transaction, then schedules the push to Motorhead
once that transaction commits (``transaction.on_commit``). If the broker is
down at that moment nothing is lost: the messages stay ``pending`` and the
periodic sweep pushes them.
"""

from __future__ import annotations

import logging
import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.module_loading import import_string

from .conf import motorhead_settings
from .exceptions import MotorheadValidationError
from .models import ChatMessage, ChatSession, MessageOrigin, MessageSyncState, SyncState

logger = logging.getLogger(__name__)

MessageInput = Mapping[str, Any] | tuple[str, str] | ChatMessage

_UNSET: Any = object()


@dataclass(frozen=True)
class Memory:
    """A session's memory as Motorhead shapes it: the newest window, newest first."""

    messages: tuple[ChatMessage, ...]
    context: str | None
    tokens: int

    @property
    def chronological(self) -> tuple[ChatMessage, ...]:
        return tuple(reversed(self.messages))


def get_or_create_session(
    session_id: str, *, namespace: str | None = None, owner: Any = None
) -> ChatSession:
    """The session with this id in this namespace, created when missing."""
    validate_session_id(session_id)
    namespace = motorhead_settings.NAMESPACE if namespace is None else namespace
    defaults = {"owner": owner, "sync_state": initial_sync_state()}
    try:
        session, _ = ChatSession.objects.get_or_create(
            session_id=session_id, namespace=namespace, defaults=defaults
        )
    except IntegrityError:
        # A concurrent request created it between our read and our insert.
        session = ChatSession.objects.get(session_id=session_id, namespace=namespace)
    return session


def append_messages(
    session: ChatSession,
    messages: Iterable[MessageInput],
    *,
    context: str | None = _UNSET,
    origin: str = MessageOrigin.LOCAL,
) -> list[ChatMessage]:
    """Add messages (oldest first) to the end of the session, and schedule their push.

    ``context``, when given, replaces the session's summary and is pushed with
    the messages. Raises :class:`MotorheadValidationError` for an empty batch,
    a disallowed role or an oversized message; nothing is written then.
    """
    pairs = validate_messages(messages)
    now = timezone.now()
    pushing = origin == MessageOrigin.LOCAL and motorhead_settings.SYNC_ENABLED
    with transaction.atomic():
        # The UPDATE takes the session's row lock until commit, so concurrent
        # writers to one session get consecutive sequences and commit in order.
        updates: dict[str, Any] = {"last_sequence": F("last_sequence") + len(pairs)}
        if context is not _UNSET:
            updates.update(context=context, context_pending=pushing)
        if pushing:
            updates.update(sync_state=SyncState.PENDING, next_attempt_at=None)
        ChatSession.objects.filter(pk=session.pk).update(updated_at=now, **updates)
        session.refresh_from_db()
        if session.delete_requested_at is not None:  # rolls the update back
            raise MotorheadValidationError({"session_id": "This session is being deleted."})
        first = session.last_sequence - len(pairs) + 1
        state = MessageSyncState.PENDING if pushing else MessageSyncState.SYNCED
        rows = ChatMessage.objects.bulk_create(
            ChatMessage(
                session=session,
                sequence=first + offset,
                role=role,
                content=content,
                origin=origin,
                sync_state=state,
                synced_at=None if pushing else now,
            )
            for offset, (role, content) in enumerate(pairs)
        )
        if pushing:
            transaction.on_commit(lambda: _schedule_push(session.pk))
        elif motorhead_settings.SUMMARIZER and not motorhead_settings.SYNC_ENABLED:
            # Local-only: the messages this write pushes out of the window are summarised.
            keep = motorhead_settings.WINDOW_SIZE + 1
            low, high = max(1, first - keep), session.last_sequence - keep
            if high >= low:
                transaction.on_commit(lambda: _schedule_summary(session.pk, low, high))
    return rows


def set_context(session: ChatSession, context: str | None) -> None:
    """Replace the session's summary; it is pushed with the next message batch.

    Motorhead only accepts a context together with at least one message, so a
    context-only change waits for the next write (or a rehydration).
    """
    pushing = motorhead_settings.SYNC_ENABLED
    ChatSession.objects.filter(pk=session.pk).update(
        context=context, context_pending=pushing, updated_at=timezone.now()
    )
    session.refresh_from_db()


def get_memory(session: ChatSession, window: int | None = None) -> Memory:
    """The newest ``window`` messages (default: the server's ``WINDOW_SIZE + 1``)."""
    size = motorhead_settings.WINDOW_SIZE + 1 if window is None else window
    newest = tuple(session.messages.order_by("-sequence")[:size])
    return Memory(messages=newest, context=session.context, tokens=session.tokens)


def history(session: ChatSession) -> list[ChatMessage]:
    """The whole conversation, oldest first."""
    return list(session.messages.chronological())


def delete_session(session: ChatSession, *, remote: bool | None = None) -> None:
    """Delete a session; with ``remote`` (default: ``DELETE_REMOTE``) on the server too.

    A remote delete leaves the session as a tombstone (state ``deleting``) and
    schedules the server's DELETE, under the namespace the session was written
    under; the row and its content go once the server confirmed. While the
    server is away the sweep retries. Without sync, or with ``remote=False``,
    the session is deleted here at once and the server keeps its copy.
    """
    remote = motorhead_settings.DELETE_REMOTE if remote is None else remote
    if not (remote and motorhead_settings.SYNC_ENABLED):
        ChatSession.objects.filter(pk=session.pk).delete()
        return
    tombstone = {
        "sync_state": SyncState.DELETING,
        "delete_requested_at": timezone.now(),
        "next_attempt_at": None,
        "sync_attempts": 0,
        "last_error": "",
    }
    with transaction.atomic():
        ChatSession.objects.filter(pk=session.pk).update(**tombstone)
        transaction.on_commit(lambda: _schedule_delete(session.pk))
    # Not re-read: with eager Celery the row is already gone once the block commits.
    for field, value in tombstone.items():
        setattr(session, field, value)


def summarize(session_pk: int, first: int, last: int) -> str | None:
    """Fold messages ``first``..``last`` into the session's context with ``SUMMARIZER``.

    For local-only mode, where no server summarises: ``append_messages`` calls
    it (through a task) for the messages a write pushes out of the window, so
    each message is summarised once. The slow call runs outside any lock; the
    result is written only over the context it started from (retried if a
    concurrent write changed it). Returns the new context.
    """
    path = motorhead_settings.SUMMARIZER
    if not path:
        return None
    summarizer = import_string(path)
    for _attempt in range(3):
        session = ChatSession.objects.filter(pk=session_pk).first()
        if session is None:
            return None
        messages = list(session.messages.filter(sequence__gte=first, sequence__lte=last))
        context = summarizer(session.context, messages)
        same = ChatSession.objects.filter(pk=session_pk, context=session.context)
        if session.context is None:
            same = ChatSession.objects.filter(pk=session_pk, context__isnull=True)
        if same.update(context=context, updated_at=timezone.now()):
            return context
    return None


def retrieve(session: ChatSession, text: str, *, limit: int = 10) -> list[dict[str, Any]]:
    """Motorhead's retrieval for a session: ``[{"role", "content", "dist"}]``, nearest first.

    The server's long-term memory search when it is on upstream (``LONG_TERM_MEMORY``
    with a server configured); otherwise, or when the server fails (it answers
    500 for any id with punctuation, UUIDs included), a local :func:`search`.
    """
    if motorhead_settings.LONG_TERM_MEMORY and motorhead_settings.SYNC_ENABLED:
        from .client import get_client
        from .exceptions import MotorheadError

        try:
            found = get_client().retrieve(session.session_id, text)
        except MotorheadError as exc:
            logger.warning("Upstream retrieval for %s failed, searching locally: %s", session, exc)
        else:
            return [{"role": r.role, "content": r.content, "dist": r.dist} for r in found[:limit]]
    return [
        {"role": m.role, "content": m.content, "dist": dist}
        for m, dist in search(session, text, limit=limit)
    ]


def search(session: ChatSession, text: str, *, limit: int = 10) -> list[tuple[ChatMessage, float]]:
    """The session's messages nearest to ``text``, nearest first, as ``(message, dist)``.

    On PostgreSQL, full-text search (``SEARCH_CONFIG`` stems the words, so
    "ordered" finds "order"): ``dist`` is ``1 - rank / (rank + 1)``. Elsewhere
    a portable word search: ``dist`` is the share of the query's words a
    message lacks (0 = all present). Ties go to the newest; at most the newest
    ``_SEARCH_SCAN`` matches are read.
    """
    if transaction.get_connection().vendor == "postgresql":
        return _full_text_search(session, text, limit)
    terms = set(_words(text)[:_SEARCH_TERMS])
    if not terms:
        return []
    matches = Q()
    for term in terms:
        matches |= Q(content__icontains=term)
    candidates = session.messages.filter(matches).order_by("-sequence")[:_SEARCH_SCAN]
    scored = []
    for message in candidates:
        dist = 1 - len(terms & set(_words(message.content))) / len(terms)
        if dist < 1:
            scored.append((message, round(dist, 6)))
    scored.sort(key=lambda pair: (pair[1], -pair[0].sequence))
    return scored[:limit]


def _full_text_search(
    session: ChatSession, text: str, limit: int
) -> list[tuple[ChatMessage, float]]:
    from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector

    terms = _words(text)[:_SEARCH_TERMS]
    if not terms:
        return []
    config = motorhead_settings.SEARCH_CONFIG
    # Any of the words, like the portable search; more of them rank higher.
    query = reduce(operator.or_, (SearchQuery(term, config=config) for term in terms))
    vector = SearchVector("content", config=config)
    candidates = (
        session.messages.annotate(
            # Normalisation 32 maps a rank to rank / (rank + 1): into [0, 1).
            document=vector,
            rank=SearchRank(vector, query, normalization=32),
        )
        .filter(document=query)
        .order_by("-rank", "-sequence")[:limit]
    )
    return [(message, round(1 - message.rank, 6)) for message in candidates]


_SEARCH_TERMS = 20
_SEARCH_SCAN = 1000


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def initial_sync_state() -> str:
    """The state of a session with nothing to push yet."""
    return SyncState.SYNCED if motorhead_settings.SYNC_ENABLED else SyncState.LOCAL


def _schedule_push(session_pk: int) -> None:
    from . import tasks

    tasks.schedule_push(session_pk)


def _schedule_summary(session_pk: int, first: int, last: int) -> None:
    from . import tasks

    tasks.schedule_summary(session_pk, first, last)


def _schedule_delete(session_pk: int) -> None:
    from . import tasks

    tasks.schedule_delete(session_pk)


def _as_pair(message: MessageInput) -> tuple[str, str]:
    if isinstance(message, ChatMessage):
        return message.role, message.content
    if isinstance(message, Mapping):
        role, content = message.get("role"), message.get("content")
    elif isinstance(message, Sequence) and not isinstance(message, str) and len(message) == 2:
        role, content = message
    else:
        raise MotorheadValidationError({"messages": "Each message needs a role and a content."})
    if not isinstance(role, str) or not isinstance(content, str):
        raise MotorheadValidationError({"messages": "role and content must be strings."})
    return role, content


def validate_messages(messages: Iterable[MessageInput]) -> list[tuple[str, str]]:
    """The messages as (role, content) pairs, or :class:`MotorheadValidationError`."""
    pairs = [_as_pair(message) for message in messages]
    if not pairs:
        raise MotorheadValidationError({"messages": "At least one message is required."})
    if len(pairs) > motorhead_settings.MAX_MESSAGES_PER_REQUEST:
        raise MotorheadValidationError(
            {
                "messages": f"At most {motorhead_settings.MAX_MESSAGES_PER_REQUEST} "
                "messages per request."
            }
        )
    allowed = motorhead_settings.ALLOWED_ROLES
    limit = motorhead_settings.MAX_CONTENT_LENGTH
    for index, (role, content) in enumerate(pairs):
        if allowed is not None and role not in allowed:
            raise MotorheadValidationError(
                {f"messages[{index}].role": f"Unknown role {role!r}; use one of {sorted(allowed)}."}
            )
        if not role or len(role) > 255:
            raise MotorheadValidationError(
                {f"messages[{index}].role": "A role is 1 to 255 characters."}
            )
        if len(content) > limit:
            raise MotorheadValidationError(
                {f"messages[{index}].content": f"At most {limit} characters."}
            )
    return pairs


def validate_session_id(session_id: str) -> None:
    """Refuse ids the server or the database cannot hold (:class:`MotorheadValidationError`)."""
    if not isinstance(session_id, str) or not session_id or len(session_id) > 255:
        raise MotorheadValidationError({"session_id": "A session id is 1 to 255 characters."})
    if any(ord(char) < 32 or ord(char) == 127 for char in session_id):
        raise MotorheadValidationError(
            {"session_id": "A session id cannot contain control characters."}
        )
