"""The memory core: the one way to read and write conversations.

Every layer (REST views, Motorhead-compatible views, admin, tasks, commands,
the LangChain adapter) calls these functions. A write stores the messages and
their outbox state in one transaction, then schedules the push to Motorhead
once that transaction commits (``transaction.on_commit``). If the broker is
down at that moment nothing is lost: the messages stay ``pending`` and the
periodic sweep pushes them.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Case, F, Q, QuerySet, Value, When
from django.db.models.functions import Greatest
from django.utils import timezone
from django.utils.module_loading import import_string

from . import outbox, redact
from .client import Memory
from .conf import motorhead_settings
from .exceptions import (
    MotorheadLegalHoldError,
    MotorheadSessionDeletingError,
    MotorheadSessionExistsError,
    MotorheadValidationError,
)
from .models import MOVED_ID, OWNED_ID, ChatMessage, ChatSession, server_id
from .search import search  # the word search lives in motorhead_django.search (issue 21)
from .states import MessageOrigin, MessageSyncState, SyncState

logger = logging.getLogger(__name__)

MessageInput = Mapping[str, Any] | tuple[str, str] | ChatMessage

_UNSET: Any = object()


def create_session(
    session_id: str,
    *,
    namespace: str | None = None,
    owner: Any = None,
    metadata: dict[str, Any] | None = None,
    context: str | None = _UNSET,
    remote_id: str | None = None,
) -> ChatSession:
    """Create a session, or raise :class:`MotorheadSessionExistsError`.

    No check-then-act: the insert runs and the database's unique constraints
    decide (ids are unique per owner and namespace, server ids across namespaces:
    Motorhead's message storage is flat, so one server id is one conversation),
    so of two concurrent creations exactly one wins and the other's caller gets
    the error, with the winner's session untouched. ``remote_id`` (the id on the
    server) defaults to ``u<owner pk>:<session id>``, or the id without an owner;
    only the importer passes one.
    """
    validate_session_id(session_id)
    validate_owner(owner)
    if owner is None:
        validate_ownerless_id(session_id)
    namespace = motorhead_settings.NAMESPACE if namespace is None else namespace
    validate_namespace(namespace)
    if metadata is not None:
        validate_metadata(metadata)
    session = ChatSession(
        session_id=session_id,
        namespace=namespace,
        owner=owner,
        metadata={} if metadata is None else metadata,
        sync_state=initial_sync_state(),
        remote_id=remote_id or server_id(getattr(owner, "pk", None), session_id),
    )
    if context is not _UNSET:
        session.context = validate_context(context)
        session.context_pending = motorhead_settings.SYNC_ENABLED
    try:
        with transaction.atomic():
            session.save(force_insert=True)
    except IntegrityError:
        tombstone = (
            ChatSession.objects.filter(
                session_id=session.session_id,
                namespace=session.namespace,
                owner_id=session.owner_id,
                delete_requested_at__isnull=False,
            )
            .only("next_attempt_at")
            .first()
        )
        if tombstone is not None:
            raise MotorheadSessionDeletingError(
                retry_after=_retry_after(tombstone), session_id=session_id
            ) from None
        raise MotorheadSessionExistsError(session_id=session_id) from None
    return session


def _retry_after(tombstone: ChatSession) -> int:
    # When the server's delete is next tried (the sweep's back-off), else a few seconds.
    due = tombstone.next_attempt_at
    if due is None:
        return 5
    return max(1, min(3600, int((due - timezone.now()).total_seconds()) + 1))


def validate_owner(owner: Any) -> None:
    """An owner is a saved, signed-in user (or None): ``request.user`` of an
    anonymous request is refused clearly, not a ``TypeError`` deep in the ORM."""
    if owner is None:
        return
    if not getattr(owner, "is_authenticated", False) or getattr(owner, "pk", None) is None:
        raise MotorheadValidationError(
            {"owner": f"A saved, signed-in user or None, not {type(owner).__name__}."}
        )


def find_session(
    session_id: str, *, namespace: str | None = None, owner: Any = None
) -> ChatSession | None:
    """The session ``owner`` (None: the ownerless scope) knows by this id, or None.

    Without an owner a session is addressed by its server id, which for a session
    created without an owner is its id: so a session whose owner's account was
    deleted is not reachable there under its owner's id.
    """
    validate_session_id(session_id)
    namespace = motorhead_settings.NAMESPACE if namespace is None else namespace
    validate_namespace(namespace)  # before the query: PostgreSQL refuses a NUL in it
    validate_owner(owner)
    sessions = ChatSession.objects.filter(namespace=namespace)
    if owner is None:
        sessions = sessions.filter(owner__isnull=True, remote_id=session_id)
        return sessions.filter(session_id=session_id).first()
    return sessions.filter(owner=owner, session_id=session_id).first()


def get_or_create_session(
    session_id: str, *, namespace: str | None = None, owner: Any = None
) -> ChatSession:
    """The owner's session with this id in this namespace, created when missing.

    Two concurrent first writes both end on the one session :func:`create_session`
    let win. Raises :class:`MotorheadSessionExistsError` only when the id is held
    in a way this owner cannot reach (a session created before ids were scoped per
    owner, whose server id this is, or one holding the server id in another namespace).
    """
    validate_session_id(session_id)
    session = find_session(session_id, namespace=namespace, owner=owner)
    if session is not None:
        return session
    try:
        return create_session(session_id, namespace=namespace, owner=owner)
    except MotorheadSessionExistsError:
        session = find_session(session_id, namespace=namespace, owner=owner)
        if session is None:
            raise
        return session


def claim_sessions(sessions: Iterable[ChatSession], owner: Any) -> tuple[int, list[ChatSession]]:
    """Give sessions without an owner to ``owner``; returns ``(claimed, conflicts)``.

    A claimed session keeps its server id (so sync and pull go on as before) and
    becomes reachable through the owner's API keys and REST. A session the owner
    already has another one of (same id and namespace) is left alone, in ``conflicts``.
    """
    claimed, conflicts = 0, []
    for session in sessions:
        try:
            with transaction.atomic():
                done = ChatSession.objects.filter(pk=session.pk, owner__isnull=True).update(
                    owner=owner, updated_at=timezone.now()
                )
        except IntegrityError:
            conflicts.append(session)
            continue
        claimed += done
    return claimed, conflicts


def append_messages(
    session: ChatSession,
    messages: Iterable[MessageInput],
    *,
    context: str | None = _UNSET,
    origin: str = MessageOrigin.LOCAL,
    items: Sequence[dict[str, Any] | None] | None = None,
) -> list[ChatMessage]:
    """Add messages (oldest first) to the end of the session, and schedule their push.

    ``context``, when given, replaces the session's summary and is pushed with
    the messages. ``items``, when given, has one entry per message: the exact
    object an agent framework handed over (a JSON object, or None), stored in
    ``ChatMessage.item`` beside the readable ``content`` (see :func:`validate_items`).
    Raises :class:`MotorheadValidationError` for an empty batch, a disallowed role,
    an oversized message or item; nothing is written then.
    """
    pairs = redact.local(validate_messages(messages))  # REDACT_LOCAL: never store the original
    kept = redact.local_items([role for role, _ in pairs], validate_items(items, len(pairs)))
    if context is not _UNSET:
        validate_context(context)
    now = timezone.now()
    pushing = origin == MessageOrigin.LOCAL and motorhead_settings.SYNC_ENABLED
    with transaction.atomic():
        # The UPDATE takes the session's row lock until commit, so concurrent
        # writers to one session get consecutive sequences and commit in order.
        updates: dict[str, Any] = {"last_sequence": F("last_sequence") + len(pairs)}
        if context is not _UNSET:
            updates.update(context=context, context_pending=pushing)
        if pushing:
            updates.update(sync_state=_pending_state(), next_attempt_at=None)
        ChatSession.objects.filter(pk=session.pk).update(updated_at=now, **updates)
        session.refresh_from_db()
        if session.delete_requested_at is not None:  # rolls the update back
            raise MotorheadSessionDeletingError(retry_after=_retry_after(session))
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
                item=kept[offset],
            )
            for offset, (role, content) in enumerate(pairs)
        )
        if motorhead_settings.EMBEDDINGS is not None:
            outbox.embed_pending_after_commit(session.pk)
        if motorhead_settings.SUMMARIZES_LOCALLY:
            # The built-in summariser: it finds what left the window from its high-water mark.
            outbox.summarize_pending_after_commit(session.pk)
        if pushing:
            outbox.push_after_commit(session.pk)
        elif motorhead_settings.SUMMARIZER and not motorhead_settings.SYNC_ENABLED:
            # Local-only: the messages this write pushes out of the window are summarised.
            keep = motorhead_settings.WINDOW_SIZE + 1
            low, high = max(1, first - keep), session.last_sequence - keep
            if high >= low:
                outbox.summary_after_commit(session.pk, low, high)
    return rows


def set_context(session: ChatSession, context: str | None) -> None:
    """Replace the session's summary; the session is pending until the server has it.

    Motorhead only accepts a context together with at least one message: it
    goes with the next batch if there is one, otherwise the push rebuilds the
    server's copy with it (see docs/sync.md). A session without messages keeps
    it pending until its first message.
    """
    validate_context(context)
    pushing = motorhead_settings.SYNC_ENABLED
    with transaction.atomic():
        updates: dict[str, Any] = {"context": context, "context_pending": pushing}
        query = ChatSession.objects.filter(pk=session.pk)
        if pushing:
            # Never "synced" before it was pushed; a tombstone keeps its state.
            query.filter(delete_requested_at__isnull=True).update(
                sync_state=_pending_state(), next_attempt_at=None
            )
            outbox.push_after_commit(session.pk)
        query.update(updated_at=timezone.now(), **updates)
    session.refresh_from_db()


def get_memory(session: ChatSession, window: int | None = None) -> Memory[ChatMessage]:
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
    the session is deleted here at once and the server keeps its copy. A session
    under a legal hold (its own or its owner's) raises MotorheadLegalHoldError.
    """
    refuse_if_held(session)
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
        outbox.delete_after_commit(session.pk)
    # Not re-read: with eager Celery the row is already gone once the block commits.
    for field, value in tombstone.items():
        setattr(session, field, value)


def held() -> Q:
    """Sessions under a legal hold: their own, or their owner's."""
    return Q(legal_hold=True) | Q(owner__motorhead_legal_hold__isnull=False)


def refuse_if_held(session: ChatSession) -> None:
    """Raise :class:`MotorheadLegalHoldError` for a session under a legal hold (its own or
    its owner's): every delete path calls it. Re-read, so a hold set since ``session``
    was loaded counts. (The holds themselves are :mod:`motorhead_django.governance`'s.)"""
    fresh = ChatSession.objects.filter(pk=session.pk)
    if fresh.filter(held()).exists():
        raise MotorheadLegalHoldError(
            "This session is under a legal hold and cannot be deleted.",
            session_id=session.session_id,
        )


# -- removing messages: the writes that are not appends ------------------------------


def pop_message(session: ChatSession, *, drift: str) -> ChatMessage | None:
    """Remove and return the session's newest message (None when it has none).

    When the server may hold it (synced, or in a batch a push sent and has not
    confirmed yet), the session is marked drifted for the reason ``drift`` and
    the server's copy is rebuilt from ours once this commits. Raises
    ``ChatSession.DoesNotExist`` when the row went meanwhile.
    """
    with transaction.atomic():
        locked = lock_session(session)
        refuse_if_held(locked)  # removing a message is a delete, and a hold stops every delete
        newest = locked.messages.order_by("-sequence").first()
        if newest is None:
            return None
        newest.delete()
        sent = locked.inflight_through is not None and newest.sequence <= locked.inflight_through
        if newest.sync_state == MessageSyncState.SYNCED or sent:
            _server_copy_is_stale(locked.pk, drift)
    return newest


def clear_messages(session: ChatSession, *, drift: str) -> None:
    """Remove every message, the context and the tokens; the id can be used again at once.

    Without sync the row goes too (no server copy to replace). With sync it stays:
    the server's copy is replaced through it (a resync, marked drifted for the
    reason ``drift``), in order with the writes that follow, so a new
    conversation never meets the old one.
    """
    with transaction.atomic():
        locked = lock_session(session)
        refuse_if_held(locked)
        if not motorhead_settings.SYNC_ENABLED:
            ChatSession.objects.filter(pk=locked.pk).delete()
            return
        stale = locked.messages.filter(sync_state=MessageSyncState.SYNCED).exists()
        locked.messages.all().delete()
        ChatSession.objects.filter(pk=locked.pk).update(
            context=None, tokens=0, context_pending=False, updated_at=timezone.now()
        )
        if stale:
            _server_copy_is_stale(locked.pk, drift)


def trim_messages(session: ChatSession, keep: int) -> int:
    """Delete all but the newest ``keep`` messages (retention); how many went.

    The server's window may still hold what went: when ``keep`` is within it,
    the server's copy is rebuilt from what is left once this commits.
    """
    with transaction.atomic():
        count, _ = ChatMessage.objects.filter(
            session=session, sequence__lte=session.last_sequence - keep
        ).delete()
        if motorhead_settings.SYNC_ENABLED and keep <= motorhead_settings.WINDOW_SIZE:
            outbox.resync_after_commit(session.pk)
    return count


def lock_session(session: ChatSession) -> ChatSession:
    """The session re-read under its row lock (inside a transaction), which orders a
    change after (and before) concurrent writes to it; ``DoesNotExist`` if it went."""
    return ChatSession.objects.select_for_update().get(pk=session.pk)


def _server_copy_is_stale(session_pk: int, drift: str) -> None:
    """Drifted until the resync queued for after the commit replaces the server's copy."""
    if not motorhead_settings.SYNC_ENABLED:
        return
    ChatSession.objects.filter(pk=session_pk).update(sync_state=SyncState.DRIFTED, drift=drift)
    outbox.resync_after_commit(session_pk)


# -- other writes of the session row -------------------------------------------------


def set_metadata(session: ChatSession, metadata: dict[str, Any]) -> None:
    """Replace the session's metadata (the caller validated it; never pushed)."""
    validate_metadata(metadata)
    ChatSession.objects.filter(pk=session.pk).update(metadata=metadata)
    session.metadata = metadata


def set_legal_hold(session: ChatSession, on: bool) -> None:
    """Set or lift the session's own hold (governance decides who may)."""
    ChatSession.objects.filter(pk=session.pk).update(legal_hold=on)
    session.legal_hold = on


def restore_session(owner: Any, fields: dict[str, Any]) -> ChatSession:
    """A session exactly as an export recorded it (:mod:`motorhead_django.export`):
    its fields, sync history included, and ``created_at`` as exported."""
    session = ChatSession(owner=owner, **fields)
    session.save()
    return session


def restore_messages(messages: list[ChatMessage]) -> int:
    """Messages exactly as an export recorded them (unsaved rows, sequences included)."""
    return len(ChatMessage.objects.bulk_create(messages, batch_size=2000))


def restore_updated_at(session_pk: int, updated_at: Any) -> None:
    """Put the exported last activity back (``auto_now`` set it when the row was restored)."""
    ChatSession.objects.filter(pk=session_pk).update(updated_at=updated_at)


def record_summary(
    session_pk: int,
    *,
    start: int,
    previous: str | None,
    context: str | None,
    through: int,
    spent: int,
) -> int | None:
    """The built-in summariser's result: ``context`` covers messages up to ``through``.

    ``spent`` tokens are counted whatever happens. The context is written only
    over the one the run started from (``previous``, summarised up to ``start``);
    returns the session's tokens when it was, None when a concurrent write
    replaced it (the next run summarises onto that one).
    """
    with transaction.atomic():
        ChatSession.objects.filter(pk=session_pk).update(tokens=F("tokens") + spent)
        same = ChatSession.objects.filter(pk=session_pk, summarized_through=start)
        same = (
            same.filter(context__isnull=True) if previous is None else same.filter(context=previous)
        )
        if not same.update(context=context, summarized_through=through, updated_at=timezone.now()):
            return None
        return ChatSession.objects.values_list("tokens", flat=True).get(pk=session_pk)


def adopt_contexts(sessions: QuerySet[ChatSession]) -> int:
    """Mark what left the window as summarised, for sessions with a context and no mark
    (switching from a Motorhead server to the built-in summariser); how many."""
    return sessions.filter(summarized_through=0, context__isnull=False).update(
        summarized_through=Greatest(
            F("last_sequence") - Value(motorhead_settings.WINDOW_SIZE + 1), Value(0)
        )
    )


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
        for message in messages:  # unsaved copies: the summariser sees what may leave
            message.content = redact.text(message.role, message.content)
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
    validate_text(text, field="text")
    if motorhead_settings.LONG_TERM_MEMORY and motorhead_settings.SYNC_ENABLED:
        from .client import get_client
        from .exceptions import MotorheadError

        try:
            found = get_client().retrieve(session.remote_id, text)
        except MotorheadError as exc:
            logger.warning("Upstream retrieval for %s failed, searching locally: %s", session, exc)
        else:
            return [{"role": r.role, "content": r.content, "dist": r.dist} for r in found[:limit]]
    if motorhead_settings.EMBEDDINGS is not None:
        from . import embeddings
        from .llm import LLMError

        try:
            return embeddings.retrieve(session, text, limit=limit)
        except LLMError as exc:
            logger.warning("Embedding the query for %s failed, searching words: %s", session, exc)
    return [
        {"role": m.role, "content": m.content, "dist": dist}
        for m, dist in search(session, text, limit=limit)
    ]


def initial_sync_state() -> str:
    """The state of a session with nothing to push yet."""
    return SyncState.SYNCED if motorhead_settings.SYNC_ENABLED else SyncState.LOCAL


def _pending_state() -> Case:
    """Pending, except that a session in doubt stays so: its push rebuilds the server first."""
    return Case(
        When(sync_state=SyncState.IN_DOUBT, then=Value(SyncState.IN_DOUBT)),
        default=Value(SyncState.PENDING),
    )


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
                "messages per request. The limit is MOTORHEAD['MAX_MESSAGES_PER_REQUEST']."
            }
        )
    limit = motorhead_settings.MAX_CONTENT_LENGTH
    for index, (role, content) in enumerate(pairs):
        validate_role(role, field=f"messages[{index}].role")
        if len(content) > limit:
            raise MotorheadValidationError(
                {
                    f"messages[{index}].content": f"At most {limit} characters. "
                    "The limit is MOTORHEAD['MAX_CONTENT_LENGTH']."
                }
            )
        validate_text(content, field=f"messages[{index}].content", max_length=limit)
    return pairs


def validate_items(
    items: Sequence[dict[str, Any] | None] | None, count: int
) -> list[dict[str, Any] | None]:
    """One item per message, each None or a JSON object :func:`validate_metadata`
    accepts whose JSON text is at most ``MAX_REQUEST_BYTES`` (what a request could carry)."""
    if items is None:
        return [None] * count
    items = list(items)
    if len(items) != count:
        raise MotorheadValidationError({"items": f"One item per message: {count} expected."})
    limit = motorhead_settings.MAX_REQUEST_BYTES
    for index, item in enumerate(items):
        if item is None:
            continue
        field = f"messages[{index}].item"
        validate_metadata(item, field=field)
        if limit is not None and len(json.dumps(item, ensure_ascii=False).encode()) > limit:
            raise MotorheadValidationError(
                {
                    field: f"At most {limit} bytes of JSON. "
                    "The limit is MOTORHEAD['MAX_REQUEST_BYTES']."
                }
            )
    return items


# What every stored string must be: Unicode scalar values (a lone surrogate cannot be
# encoded as UTF-8, so PostgreSQL refuses it and SQLite stores text no list can render)
# and no NUL (PostgreSQL's text and jsonb cannot hold one).
_CONTROL = re.compile("[\x00-\x1f\x7f]")
#: Roles: 1 to 255 characters, no control characters (so no newline) and never ": ".
#: Motorhead stores "role: content" and splits at the first ": " when read back.
ROLE_PATTERN = "^(?!.*: )[^\\u0000-\\u001f\\u007f]{1,255}$"
MAX_ID_LENGTH = 255
#: The deepest nesting ``metadata`` may have (the object itself is level 1).
MAX_METADATA_DEPTH = 32
_MAX_METADATA_INT = 2**63 - 1
_MAX_METADATA_FLOAT = 2.0**53


def text_problem(value: Any, *, control: bool = True) -> str | None:
    """Why ``value`` cannot be stored as text on every database, or None when it can.

    With ``control=False``, control characters (U+0000 to U+001F, U+007F) are refused too.
    """
    if not isinstance(value, str):
        return "A string."
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "Not valid Unicode text: lone surrogates (U+D800 to U+DFFF) cannot be stored."
    if not control and _CONTROL.search(value):
        return "No control characters (U+0000 to U+001F, U+007F)."
    if "\x00" in value:
        return "No NUL characters (U+0000)."
    return None


def validate_text(
    value: Any,
    *,
    field: str,
    max_length: int | None = None,
    min_length: int = 0,
    control: bool = True,
) -> str:
    """``value`` when it is storable text of the allowed length, else
    :class:`MotorheadValidationError` naming ``field``."""
    problem = text_problem(value, control=control)
    if problem is None and not (min_length <= len(value) <= (max_length or len(value))):
        if max_length is None:
            problem = f"At least {min_length} characters."
        elif min_length:
            problem = f"{min_length} to {max_length} characters."
        else:
            problem = f"At most {max_length} characters."
    if problem is not None:
        raise MotorheadValidationError({field: problem})
    return value


def validate_role(role: Any, *, field: str = "role") -> str:
    """A role Motorhead reads back unchanged (:data:`ROLE_PATTERN`), and one of
    ``ALLOWED_ROLES`` when that is set."""
    if isinstance(role, str) and not 1 <= len(role) <= 255:
        raise MotorheadValidationError({field: "A role is 1 to 255 characters."})
    validate_text(role, field=field, control=False)
    if ": " in role:
        raise MotorheadValidationError(
            {field: 'A role cannot contain ": " (Motorhead splits "role: content" there).'}
        )
    allowed = motorhead_settings.ALLOWED_ROLES
    if allowed is not None and role not in allowed:
        raise MotorheadValidationError(
            {field: f"Unknown role {role!r}; use one of {sorted(allowed)}."}
        )
    return role


def validate_session_id(session_id: Any) -> None:
    """Refuse ids the server or the database cannot hold (:class:`MotorheadValidationError`)."""
    problem = text_problem(session_id, control=False)
    if problem is None and not 1 <= len(session_id) <= MAX_ID_LENGTH:
        problem = "A session id is 1 to 255 characters."
    if problem is None and not session_id.strip():
        problem = "A session id cannot be only whitespace."
    if problem is not None:
        if "control" in problem:
            problem = "A session id cannot contain control characters."
        raise MotorheadValidationError({"session_id": problem})


def validate_ownerless_id(session_id: str) -> None:
    """Refuse, for a session without an owner, an id in the ``u<digits>:`` form that the
    server ids of owned sessions take, or the ``n<digits>:`` form of sessions migration
    0006 moved to a server id of their own (so none of them can ever collide)."""
    if OWNED_ID.fullmatch(session_id):
        raise MotorheadValidationError(
            {
                "session_id": "Ids of the form u<digits>:… are reserved for sessions with "
                "an owner (they name them on the server)."
            }
        )
    if MOVED_ID.fullmatch(session_id):
        raise MotorheadValidationError(
            {
                "session_id": "Ids of the form n<digits>:… are reserved (they name sessions "
                "moved to a server id of their own on the server)."
            }
        )


def validate_namespace(namespace: Any) -> str:
    """A namespace: 0 to 255 characters of storable text, no control characters."""
    return validate_text(namespace, field="namespace", max_length=MAX_ID_LENGTH, control=False)


def validate_context(context: Any) -> str | None:
    """A context (the session's summary): None, or storable text."""
    if context is None:
        return None
    return validate_text(context, field="context")


def validate_metadata(metadata: Any, *, field: str = "metadata") -> dict[str, Any]:
    """A JSON object both databases store and read back unchanged.

    Keys are storable text, values are null, booleans, whole numbers within 64 bits,
    finite floats below 2**53 in size, storable text, lists and objects, nested at most
    :data:`MAX_METADATA_DEPTH` deep. Walked without recursion, so depth is no risk.
    """
    if not isinstance(metadata, dict):
        raise MotorheadValidationError({field: "A JSON object."})
    stack: list[tuple[Any, str, int]] = [(metadata, field, 1)]
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, dict | list | tuple):
            if depth > MAX_METADATA_DEPTH:
                raise MotorheadValidationError(
                    {where: f"Nested deeper than {MAX_METADATA_DEPTH} levels."}
                )
            if isinstance(value, dict):
                for key, item in value.items():
                    path = f"{where}.{_printable(key)}"
                    problem = text_problem(key)
                    if problem is not None:
                        raise MotorheadValidationError({path: f"Key: {problem}"})
                    stack.append((item, path, depth + 1))
            else:
                stack.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value))
        elif isinstance(value, str):
            problem = text_problem(value)
            if problem is not None:
                raise MotorheadValidationError({where: problem})
        elif isinstance(value, bool) or value is None:
            pass
        elif isinstance(value, int):
            if abs(value) > _MAX_METADATA_INT:
                raise MotorheadValidationError({where: "A whole number within 64 bits."})
        elif isinstance(value, float):
            # PostgreSQL keeps a number's decimal digits: 1e+17 comes back as the
            # whole number 100000000000000000, which is not the float that went in.
            if not (math.isfinite(value) and abs(value) < _MAX_METADATA_FLOAT):
                raise MotorheadValidationError(
                    {where: "A finite number below 2**53 in size (no NaN or infinity)."}
                )
        else:
            raise MotorheadValidationError({where: "Not a JSON value."})
    return metadata


#: The deepest nesting of arrays and objects a JSON request body may have.
MAX_JSON_DEPTH = 64

# A JSON string (escapes included) or one bracket: strings are skipped whole, so a
# bracket inside one is not counted. An unterminated string runs to the end (the
# body is invalid anyway), so the scan stays linear.
_JSON_TOKENS = re.compile(r'"(?:[^"\\]+|\\.)*"?|[\[\]{}]', re.DOTALL)


def json_too_deep(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON ``text`` nests arrays and objects deeper than ``limit``, found
    without parsing it: Python's parser recurses once per level."""
    if text.count("[") + text.count("{") <= limit:
        return False  # the fast common case: not enough brackets to be too deep
    depth = 0
    for match in _JSON_TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > limit:
                return True
        elif token in "]}":
            depth -= 1
    return False


def _printable(key: Any) -> str:
    # Error texts are rendered as UTF-8: a lone surrogate in one would fail the answer.
    text = key if isinstance(key, str) else repr(key)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")[:100]
