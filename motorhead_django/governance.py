"""Data governance: legal holds, retention, verified erasure and the audit of reads.

Everything here deletes through the memory core's one delete path
(:func:`motorhead_django.memory.delete_session`, which refuses held sessions:
:func:`refuse_if_held` is the core's) and finishes a remote delete through the
sync engine's façade (``engine.delete(..., scope=engine.Scope.BOTH)``). Export and import are in
:mod:`motorhead_django.export`, redaction in :mod:`motorhead_django.redact`.
See docs/governance.md for the guarantees and their limits.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from . import engine, memory, redaction, signals
from .client import get_client
from .conf import motorhead_settings
from .exceptions import MotorheadError, MotorheadLegalHoldError
from .memory import held, refuse_if_held  # the core enforces holds; they are named here
from .models import (
    ApiKey,
    ChatMessage,
    ChatSession,
    ErasureReceipt,
    LangGraphBlob,
    LangGraphCheckpoint,
    LangGraphWrite,
    LegalHold,
    MessageEmbedding,
    ReadAudit,
)

logger = logging.getLogger(__name__)

#: The permission that sets and lifts holds (on sessions and on owners).
HOLD_PERMISSION = "motorhead_django.set_legal_hold"
#: The permission that erases sessions everywhere from the admin (and reads the receipts).
ERASE_PERMISSION = "motorhead_django.erase_sessions"


# -- legal hold ----------------------------------------------------------------------
# held() and refuse_if_held() live in the memory core, whose delete path refuses held
# sessions: the core imports nothing from this (outer) module.


def is_held(session: ChatSession) -> bool:
    if session.legal_hold:
        return True
    return session.owner_id is not None and owner_held(session.owner_id)


def owner_held(owner_pk: Any) -> bool:
    return LegalHold.objects.filter(owner_id=owner_pk).exists()


def can_set_hold(user: Any) -> bool:
    return bool(user is not None and user.is_active and user.has_perm(HOLD_PERMISSION))


def can_erase(user: Any) -> bool:
    return bool(user is not None and user.is_active and user.has_perm(ERASE_PERMISSION))


def set_hold(session: ChatSession, on: bool) -> None:
    """Set or lift a session's hold (the caller checked :func:`can_set_hold`)."""
    memory.set_legal_hold(session, on)
    logger.info("Legal hold %s on session %s.", "set" if on else "lifted", session.pk)


def hold_owner(owner: Any, *, by: Any = None, reason: str = "") -> LegalHold:
    hold, _created = LegalHold.objects.get_or_create(
        owner=owner, defaults={"set_by": by, "reason": reason}
    )
    return hold


def release_owner(owner: Any) -> bool:
    return bool(LegalHold.objects.filter(owner=owner).delete()[0])


# -- retention -----------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    days: int | None = None
    messages: int | None = None

    @property
    def empty(self) -> bool:
        return self.days is None and self.messages is None


def policy_for(session: ChatSession) -> Policy:
    """The session's retention: its own fields over its namespace's policy (or ``"*"``)."""
    policies = motorhead_settings.RETENTION
    base = policies.get(session.namespace, policies.get("*")) or {}
    days = session.retention_days if session.retention_days is not None else base.get("days")
    keep = session.retention_messages
    if keep is None:
        keep = base.get("messages")
    return Policy(None if days is None else int(days), None if keep is None else int(keep))


@dataclass
class RetentionPlan:
    """What one retention run deletes (or, in a dry run, would delete)."""

    sessions: list[ChatSession] = field(default_factory=list)
    trims: list[tuple[ChatSession, int]] = field(default_factory=list)  # (session, keep newest)
    held: int = 0
    more: bool = False  # the batch was full: run again for the rest


def plan_retention(*, days: int | None = None, limit: int | None = None) -> RetentionPlan:
    """The sessions past their policy, oldest activity first, at most ``limit`` of them.

    ``days`` replaces every policy for this run (sessions idle for longer go).
    Held sessions are counted, never planned.
    """
    limit = motorhead_settings.RETENTION_BATCH if limit is None else limit
    plan = RetentionPlan()
    now = timezone.now()
    query = ChatSession.objects.filter(delete_requested_at__isnull=True)
    if days is not None:
        query = query.filter(updated_at__lt=now - timedelta(days=days))
    else:
        # In SQL, so a run reads only sessions that may be due, never every session.
        query = query.filter(_maybe_due(motorhead_settings.RETENTION, now))
    plan.held = query.filter(held()).count()
    candidates = query.exclude(held()).order_by("updated_at", "pk")
    for visited, session in enumerate(candidates.iterator(chunk_size=200)):
        if len(plan.sessions) + len(plan.trims) >= limit or visited >= limit * 10:
            plan.more = True
            break
        policy = Policy(days=days) if days is not None else policy_for(session)
        if policy.days is not None and session.updated_at < now - timedelta(days=policy.days):
            plan.sessions.append(session)
        elif policy.messages is not None and session.last_sequence > policy.messages:
            over = session.messages.filter(sequence__lte=session.last_sequence - policy.messages)
            if over.exists():
                plan.trims.append((session, policy.messages))
    return plan


def _maybe_due(policies: dict[str, dict[str, int]], now: Any) -> Q:
    """Sessions a policy may make due: their own policy, or their namespace's is met."""
    due = Q(retention_days__isnull=False) | Q(retention_messages__isnull=False)
    named = [ns for ns in policies if ns != "*"]
    for namespace, policy in policies.items():
        where = ~Q(namespace__in=named) if namespace == "*" else Q(namespace=namespace)
        if policy.get("days") is not None:
            due |= where & Q(updated_at__lt=now - timedelta(days=int(policy["days"])))
        if policy.get("messages") is not None:
            keep = int(policy["messages"])
            older = ChatMessage.objects.filter(
                session=OuterRef("pk"), sequence__lte=OuterRef("last_sequence") - keep
            )
            due |= where & Q(Exists(older))
    return due


@dataclass
class RetentionResult:
    plan: RetentionPlan
    deleted: int = 0
    trimmed_messages: int = 0
    receipt: ErasureReceipt | None = None
    audit_purged: int = 0


# Called after each session is handled, with a line saying what happened (a command's progress).
Done = Callable[[str], object]


def _quiet(line: str) -> None:
    """The :data:`Done` of callers that show no progress."""


def apply_retention(
    *,
    days: int | None = None,
    limit: int | None = None,
    by: Any = None,
    plan: RetentionPlan | None = None,
    done: Done | None = None,
) -> RetentionResult:
    """Delete what ``plan`` (default: :func:`plan_retention`) holds, here and on the server.

    Writes a receipt. ``done`` hears of each trimmed or deleted session.
    """
    done = done or _quiet
    result = RetentionResult(plan if plan is not None else plan_retention(days=days, limit=limit))
    for session, keep in result.plan.trims:
        trimmed = _trim(session, keep)
        result.trimmed_messages += trimmed
        done(f"session {session.pk} ({session}): {trimmed} message(s) trimmed")
    if result.plan.sessions:
        erasure = erase_sessions(
            result.plan.sessions,
            kind=ErasureReceipt.RETENTION,
            subject="retention",
            by=by,
            done=done,
        )
        result.receipt = erasure.receipt
        result.deleted = erasure.receipt.counts.get("sessions", 0)
    result.audit_purged = purge_read_audit()
    return result


def _trim(session: ChatSession, keep: int) -> int:
    """Delete all but the newest ``keep`` messages; the server's copy is rebuilt from ours."""
    over = ChatMessage.objects.filter(session=session, sequence__lte=session.last_sequence - keep)
    count = over.count()
    signals.pre_retention_delete.send(
        sender=ChatSession, session=session, what="messages", count=count
    )
    if is_held(session):  # a hold set while the run went on
        return 0
    return memory.trim_messages(session, keep)


# -- verified erasure ----------------------------------------------------------------


@dataclass
class Erasure:
    receipt: ErasureReceipt
    waiting: list[int] = field(default_factory=list)  # tombstones the server did not confirm


def erase_user(user: Any, *, by: Any = None) -> Erasure:
    """Erase every session of ``user`` and their API keys; refused under an owner hold."""
    if owner_held(user.pk):
        raise MotorheadLegalHoldError(f"User {user.pk} is under a legal hold.")
    sessions = ChatSession.objects.filter(owner=user)
    keys = ApiKey.objects.filter(owner=user)
    api_keys = keys.count()
    keys.delete()
    return erase_sessions(
        sessions,
        kind=ErasureReceipt.USER,
        subject=f"user:{user.pk}",
        by=by,
        api_keys=api_keys,
        threads_of=user.pk,
    )


def erase_session(session: ChatSession, *, by: Any = None) -> Erasure:
    refuse_if_held(session)
    return erase_sessions(
        [session], kind=ErasureReceipt.SESSION, subject=f"session:{session.pk}", by=by
    )


def erase_sessions(
    sessions: Iterable[ChatSession] | QuerySet[ChatSession],
    *,
    kind: str,
    subject: str,
    by: Any = None,
    api_keys: int = 0,
    done: Done | None = None,
    threads_of: Any = None,
) -> Erasure:
    """Delete ``sessions`` here and on the server, read the server back, and keep a receipt.

    Held sessions are skipped (and counted). Each goes through
    :func:`memory.delete_session`; a tombstone the task did not finish yet is
    finished inline, so the receipt can say what the server confirmed. The
    LangGraph thread a session mirrors goes too (its checkpoints hold the whole
    conversation), and with ``threads_of`` (an owner's key) every thread of that owner.
    """
    done = done or _quiet
    counts = {
        "sessions": 0,
        "messages": 0,
        "summaries": 0,
        "embeddings": 0,
        "checkpoints": 0,
        "api_keys": api_keys,
    }
    remote_ids: list[tuple[str, str]] = []
    waiting: list[int] = []
    held_count = 0
    for session in list(sessions):
        if is_held(session):
            held_count += 1
            done(f"session {session.pk} ({session}): held, kept")
            continue
        messages = session.messages.count()
        summaries = session.summaries.count()
        vectors = session.embeddings.count()  # with pgvector, the same rows hold the vector
        if kind == ErasureReceipt.RETENTION:
            signals.pre_retention_delete.send(
                sender=ChatSession, session=session, what="session", count=messages
            )
        try:
            memory.delete_session(session, remote=True)
        except MotorheadLegalHoldError:
            held_count += 1
            done(f"session {session.pk} ({session}): held, kept")
            continue
        # Vectors are derived from the content: gone now, even from a tombstone that
        # waits for the server (the rest of its rows go when the server confirms).
        MessageEmbedding.objects.filter(session_id=session.pk).delete()
        counts["checkpoints"] += _erase_threads(session.owner_id, thread_of=session)
        if not _finish_delete(session.pk):
            waiting.append(session.pk)  # the sweep keeps retrying the server
        counts["sessions"] += 1
        counts["messages"] += messages
        counts["summaries"] += summaries
        counts["embeddings"] += vectors
        remote_ids.append((session.namespace, session.remote_id))
        done(f"session {session.pk} ({session}): deleted, {messages} message(s)")
    if threads_of is not None and not held_count:  # a held session keeps its thread too
        counts["checkpoints"] += _erase_threads(threads_of)
    confirmed, detail = _read_back(remote_ids, waiting, get_client)
    digest = hashlib.sha256(
        "\n".join(sorted(f"{ns}/{rid}" for ns, rid in remote_ids)).encode("utf-8", "surrogatepass")
    ).hexdigest()
    receipt = ErasureReceipt.objects.create(
        kind=kind,
        subject=subject,
        counts=counts,
        ids_sha256=digest,
        server_confirmed=confirmed,
        server_detail=detail,
        held=held_count,
        erased_by=by if by is not None and by.pk else None,
        erased_by_name=_name(by),
    )
    signals.post_erasure.send(sender=ErasureReceipt, receipt=receipt)
    return Erasure(receipt, waiting)


_THREAD_TABLES = (LangGraphWrite, LangGraphBlob, LangGraphCheckpoint)


def _erase_threads(owner_pk: Any, *, thread_of: ChatSession | None = None) -> int:
    """Delete LangGraph threads' rows (checkpoints, blobs, writes); how many checkpoints.

    ``thread_of``: only the thread that session mirrors (the saver mirrors thread
    ``T`` of an owner into that owner's session ``T`` in the default namespace, so a
    session elsewhere mirrors none); otherwise every thread of ``owner_pk``.
    """
    if thread_of is not None and thread_of.namespace != motorhead_settings.NAMESPACE:
        return 0
    deleted: dict[str, int] = {}
    for model in _THREAD_TABLES:
        rows = model.objects.filter(owner_id=owner_pk)
        if thread_of is not None:
            rows = rows.filter(thread_id=thread_of.session_id)
        deleted.update(rows.delete()[1])
    return deleted.get(LangGraphCheckpoint._meta.label, 0)


def _finish_delete(session_pk: int, timeout: float = 10.0) -> bool:
    """Finish a tombstone's remote delete inline; whether the row is gone.

    The delete task the tombstone enqueued may hold the session's lock meanwhile
    (a real worker): then wait for it, a bounded time.
    """
    deadline = time.monotonic() + timeout
    while ChatSession.objects.filter(pk=session_pk).exists():
        result = engine.delete(session_pk, scope=engine.Scope.BOTH)  # the tombstone's step, inline
        if result.done:
            return True
        if not result.busy or time.monotonic() > deadline:
            return not ChatSession.objects.filter(pk=session_pk).exists()
        time.sleep(0.05)
    return True


def _read_back(
    remote_ids: list[tuple[str, str]], waiting: list[int], get_client: Any
) -> tuple[bool | None, str]:
    """Whether the server holds nothing of the erased sessions any more (None: no server)."""
    if not motorhead_settings.SYNC_ENABLED:
        return None, "Sync is not enabled: no server copy was deleted or checked."
    if waiting:
        return False, f"{len(waiting)} session(s) wait for the server to confirm the delete."
    client = get_client()
    left = 0
    for _namespace, remote_id in remote_ids:
        try:
            found = client.get_memory(remote_id)
        except MotorheadError as exc:
            return False, f"The server could not be read back: {redaction.error_text(exc)}"
        if found.messages or found.context:
            left += 1
    if left:
        return False, f"The server still holds {left} of {len(remote_ids)} session(s)."
    if motorhead_settings.LONG_TERM_MEMORY:
        # Motorhead's DELETE leaves the motorhead:{nanoid} hashes: a retrieval finds them.
        indexed = 0
        for _namespace, remote_id in remote_ids:
            try:
                indexed += bool(client.retrieve(remote_id, "erased"))
            except MotorheadError as exc:
                detail = redaction.error_text(exc)
                return False, f"The server's long-term memory could not be read back: {detail}"
        if indexed:
            return False, (
                f"Long-term memory still holds entries of {indexed} session(s): Motorhead's "
                "DELETE cannot remove them (docs/governance.md)."
            )
    return True, f"Read back {len(remote_ids)} session(s): the server holds no messages or summary."


def _name(user: Any) -> str:
    if user is None or not getattr(user, "pk", None):
        return "system"
    return str(user.get_username())[:150]


# -- audit of reads ------------------------------------------------------------------


def audit_read(request: Any, session: ChatSession, surface: str) -> None:
    """Record that ``request.user`` read ``session`` (never fails the read)."""
    user = getattr(request, "user", None)
    if not motorhead_settings.READ_AUDIT or user is None or not user.is_authenticated:
        return
    try:
        ReadAudit.objects.create(
            reader=user,
            reader_name=_name(user),
            session_pk=session.pk,
            owner_pk=session.owner_id,
            surface=surface,
            path=request.get_full_path()[:500],
        )
    except Exception:  # the audit must never make a read fail
        logger.exception("Could not record a read of session %s.", session.pk)


def purge_read_audit() -> int:
    days = motorhead_settings.READ_AUDIT_DAYS
    if days is None:
        return 0
    cutoff = timezone.now() - timedelta(days=days)
    return int(ReadAudit.objects.filter(read_at__lt=cutoff).delete()[0])
