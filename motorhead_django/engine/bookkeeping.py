"""The push's bookkeeping: a pass's progress written to the mirrored tables in a few statements.

Whatever the number of sessions in a pass, the same few statements record it:
messages marked synced, the sessions' in-flight marks, states, attempts and
errors as ``CASE`` expressions. The pushers compute; this module writes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db.models import (
    Case,
    CharField,
    DateTimeField,
    Exists,
    F,
    Field,
    OuterRef,
    PositiveIntegerField,
    Q,
    TextField,
    Value,
    When,
)
from django.utils import timezone

from motorhead_django import redaction, signals
from motorhead_django.conf import motorhead_settings
from motorhead_django.exceptions import MotorheadError, is_retryable
from motorhead_django.models import ChatMessage, ChatSession
from motorhead_django.states import SyncState

from . import records
from .pacing import backoff_delay
from .results import PushResult

if TYPE_CHECKING:
    from .pusher import _Pusher

# The name operators' logging settings know, and redaction.LOGGERS filters.
logger = logging.getLogger("motorhead_django.sync")


def record(pushers: list[_Pusher]) -> list[list[ChatMessage]]:
    """Record the pushers' progress; returns the messages each had confirmed.

    The same few statements whatever the number of sessions, each committed
    on its own (not one transaction: their order makes a stop between them
    safe, see below): the confirmed messages become synced, then the
    sessions' rows get their new mark (cleared, or kept where an ambiguous
    POST could not be settled) and, for runs that finished, their sync state.
    Each pusher then takes in what was recorded (:meth:`_Pusher.recorded`).
    """
    now = timezone.now()
    confirmed = [p for p in pushers if p.confirmed]
    marks = group_by_value(
        (p.session.pk, p.next_mark) for p in pushers if p.next_mark is not None and not p.done
    )
    rows: dict[str, Any] = {
        "inflight_through": Case(
            When(pk__in=[p.session.pk for p in pushers if p.unsettled], then=F("inflight_through")),
            *(When(pk__in=keys, then=Value(mark)) for mark, keys in marks.items()),
            default=Value(None),
        ),
        "last_pushed_at": Case(
            When(pk__in=[p.session.pk for p in confirmed], then=Value(now)),
            default=F("last_pushed_at"),
        ),
    }
    sent = [p for p in pushers if p.sent_context]
    if sent:
        # Only if nobody changed the context meanwhile.
        contexts = group_by_value((p.session.pk, p.context_sent) for p in sent)
        rows["context_pending"] = Case(
            *(
                When(pk__in=keys, context=context, then=Value(False))
                for context, keys in contexts.items()
            ),
            default=F("context_pending"),
        )
    finished = [p for p in pushers if p.finished and p.crash is None]
    if finished:
        rows.update(_state_updates(finished, now))
    records.mark_messages_synced([m.pk for p in confirmed for m in p.chunk[: p.confirmed]], now)
    # Should we stop before the sessions' update, a mark is left over synced
    # messages: the next run finds nothing pending under it, and clears it.
    records.update_sessions([p.session.pk for p in pushers], rows)
    return [pusher.recorded(now) for pusher in pushers]


def _state_updates(pushers: list[_Pusher], now: datetime) -> dict[str, Any]:
    """The sync state, attempts, error and next attempt time of finished runs, as CASE expressions.

    A session that pushed without error is synced only if nothing was
    written after the messages its run read: a write in progress holds the
    row (append_messages updates it first), and PostgreSQL re-checks the CASE
    against the row's newest version once the writer commits. A session
    being deleted keeps its state: the delete owns it now.
    """
    fields: dict[str, Field[Any, Any]] = {
        "sync_state": CharField(),
        "sync_attempts": PositiveIntegerField(),
        "last_error": TextField(),
        "next_attempt_at": DateTimeField(),
    }
    cases: dict[str, list[When]] = {
        name: [When(delete_requested_at__isnull=False, then=F(name))] for name in fields
    }
    succeeded = [p for p in pushers if p.error is None]
    if succeeded:
        # Synced only if no message came after the run's last read, no context
        # change is left unpushed (one sent meanwhile counts only if it is still
        # the context), and the run was not deferred.
        plain = [p for p in succeeded if not p.result.deferred and not p.sent_context]
        seen = group_by_value((p.session.pk, p.seen) for p in plain)
        cases["sync_state"] += [
            When(
                pk__in=keys,
                last_sequence__lte=last,
                context_pending=False,
                then=Value(SyncState.SYNCED),
            )
            for last, keys in seen.items()
        ]
        for p in succeeded:
            if not p.result.deferred and p.sent_context:
                cases["sync_state"].append(
                    When(
                        Q(pk=p.session.pk, last_sequence__lte=p.seen)
                        & (Q(context_pending=False) | Q(context=p.context_sent)),
                        then=Value(SyncState.SYNCED),
                    )
                )
        keys = [p.session.pk for p in succeeded]
        cleared = {"sync_state": SyncState.PENDING, "sync_attempts": 0, "last_error": ""}
        for name, value in cleared.items():
            cases[name].append(When(pk__in=keys, then=Value(value)))
        cases["next_attempt_at"].append(
            When(pk__in=keys, then=Value(None, output_field=DateTimeField()))
        )
    for pusher in pushers:
        if pusher.error is not None:
            values = pusher.failure(now)
            for name, value in values.items():
                cases[name].append(
                    When(pk=pusher.session.pk, then=Value(value, output_field=fields[name]))
                )
    return {
        name: Case(*whens, default=F(name), output_field=fields[name])
        for name, whens in cases.items()
    }


def group_by_value(pairs: Iterable[tuple[int, Any]]) -> dict[Any, list[int]]:
    """Session keys grouped by a value, for one ``WHEN pk IN (...)`` per value."""
    groups: dict[Any, list[int]] = {}
    for pk, value in pairs:
        groups.setdefault(value, []).append(pk)
    return groups


def read_outcome(results: list[PushResult]) -> None:
    """Each successful run's state, and whether pending messages are left (one query)."""
    done = {result.session_pk: result for result in results}
    if not done:
        return
    pending = ChatMessage.objects.pending().filter(session_id=OuterRef("pk"))
    rows = (
        ChatSession.objects.filter(pk__in=list(done))
        .annotate(more=Exists(pending))
        .values_list("pk", "sync_state", "more")
    )
    for pk, state, more in rows:
        done[pk].state, done[pk].more = state, more


def failure(
    session: ChatSession, exc: MotorheadError, result: PushResult, now: datetime
) -> dict[str, Any]:
    """The session's fields after a failed run (also set on ``result``, the run's own)."""
    attempts = session.sync_attempts + 1
    retry = is_retryable(exc) and attempts <= motorhead_settings.MAX_RETRIES
    result.error = redaction.error_text(exc)
    result.retry_at = now + timedelta(seconds=backoff_delay(attempts)) if retry else None
    result.state = SyncState.RETRYING if retry else SyncState.FAILED
    return {
        "sync_state": result.state,
        "sync_attempts": attempts,
        "last_error": result.error,
        "next_attempt_at": result.retry_at,
    }


def record_failure(session: ChatSession, exc: MotorheadError, result: PushResult) -> None:
    records.update_session(session.pk, **failure(session, exc, result, timezone.now()))
    report_failure(session, exc, result)


def report_failure(session: ChatSession, exc: MotorheadError, result: PushResult) -> None:
    logger.warning(
        "Push of %s failed (attempt %d): %s", session, session.sync_attempts + 1, result.error
    )
    signals.push_failed.send(
        sender=ChatSession, session=session, error=exc, will_retry=result.retry_at is not None
    )
