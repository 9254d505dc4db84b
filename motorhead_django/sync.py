"""The push side of the sync: local records to the Motorhead server.

The guarantees and their limits are written down in docs/sync.md. In short:

* one pusher per session at a time (:mod:`motorhead_django.locks`);
* messages go in sequence order, in non-empty batches the server can keep;
* before a batch is sent, its last sequence is recorded (``inflight_through``),
  so that after any failure that may have applied it (timeout, dropped
  connection, 5xx, a killed worker) the server's window is read and compared
  with our history before anything is sent again;
* batches are paced so that every message passes through the server's
  summariser: a batch never takes the server's list past ``WINDOW_SIZE + 1``,
  and after a batch that triggers a compaction the next one waits for it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Case, F, Value, When
from django.utils import timezone

from . import signals
from .client import Memory as RemoteMemory
from .client import MotorheadClient, get_client
from .conf import motorhead_settings
from .exceptions import MotorheadError, is_retryable, may_have_applied
from .locks import locked_session
from .models import ChatMessage, ChatSession, MessageSyncState, SyncState

logger = logging.getLogger(__name__)

# Pending messages read at a time by a push.
_READ_CHUNK = 1000


@dataclass
class PushResult:
    """What one push run did for one session."""

    session_pk: int
    pushed: int = 0
    batches: int = 0
    busy: bool = False  # another worker holds the session's push lock
    state: str = ""
    error: str = ""
    retry_at: datetime | None = None
    resolved: list[str] = field(default_factory=list)  # how ambiguous batches were settled
    more: bool = False  # pending messages arrived while the lock was held: push again


class CompactionTimeout(MotorheadError):
    """The server did not summarise its full window in time; pushing more would lose messages."""


def push_session(session_pk: int, *, client: MotorheadClient | None = None) -> PushResult:
    """Push a session's pending messages, in order, exactly once each."""
    result = PushResult(session_pk)
    if not motorhead_settings.SYNC_ENABLED:
        result.state = "disabled"
        return result
    with locked_session(session_pk) as (acquired, session):
        if not acquired:
            result.busy = True
            return result
        if session is None:
            return result
        pusher = _Pusher(session, client or get_client(), result)
        try:
            pusher.run()
        except MotorheadError as exc:
            _record_failure(session, exc, result)
        else:
            _record_success(session, result, seen=pusher.seen)
    # A push scheduled while we held the lock found it busy and gave up; the
    # messages it was for committed before that, so we see them now.
    result.more = result.error == "" and (
        ChatMessage.objects.filter(
            session_id=session_pk, sync_state=MessageSyncState.PENDING
        ).exists()
    )
    return result


class _Pusher:
    def __init__(self, session: ChatSession, client: MotorheadClient, result: PushResult) -> None:
        self.session = session
        self.client = client
        self.result = result
        self.window = motorhead_settings.WINDOW_SIZE
        # Messages on the server's list; None when unknown (read it first).
        self.remote_length: int | None = None
        # The highest sequence this run has seen: anything above it came later.
        self.seen = session.last_sequence

    def run(self) -> None:
        if self.session.inflight_through is not None:
            self._settle_inflight()
        while True:
            # Read in chunks, not per batch; what is written meanwhile comes
            # with the next chunk (or the next run, see `more`).
            pending = list(self.session.messages.pending().order_by("sequence")[:_READ_CHUNK])
            if not pending:
                return
            self.seen = max(self.seen, pending[-1].sequence)
            complete = len(pending) < _READ_CHUNK
            while pending:
                segment, pending = self._split(pending)
                if not self._send_segment(segment):
                    complete = False  # settled part-way: read what is left again
                    break
            if complete:
                return

    def _split(self, pending: list[ChatMessage]) -> tuple[list[ChatMessage], list[ChatMessage]]:
        """As many messages as the server can take now without losing any."""
        room = self._room()
        return pending[:room], pending[room:]

    def _room(self) -> int:
        if self.remote_length is None or self.remote_length > self.window:
            self._wait_for_compaction()
        assert self.remote_length is not None
        return self.window + 1 - self.remote_length

    def _wait_for_compaction(self) -> None:
        deadline = time.monotonic() + motorhead_settings.COMPACTION_TIMEOUT
        delay = 0.05
        while True:
            memory = self._read_window()
            # GET returns at most window + 1 messages: fewer means we know the length.
            if len(memory.messages) <= self.window:
                self.remote_length = len(memory.messages)
                return
            if time.monotonic() >= deadline:
                raise CompactionTimeout(
                    f"the server still holds more than {self.window} messages after "
                    f"{motorhead_settings.COMPACTION_TIMEOUT:g}s: "
                    "its summariser is slow or failing",
                    session_id=self.session.session_id,
                )
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _read_window(self) -> RemoteMemory:
        return self.client.get_memory(self.session.session_id)

    def _send_segment(self, segment: list[ChatMessage]) -> bool:
        """POST a segment in batches; True when all of it is confirmed.

        One in-flight mark covers the whole segment and is written before the
        first POST: after a crash the next run finds from the server's window
        how much of the segment landed. One confirmation follows the last POST.
        """
        session = self.session
        context = session.context if session.context_pending else None
        self._mark_inflight(segment[-1].sequence)
        size = motorhead_settings.BATCH_SIZE
        sent = 0
        for start in range(0, len(segment), size):
            batch = segment[start : start + size]
            signals.pre_push.send(sender=ChatSession, session=session, messages=batch)
            try:
                self.client.add_memory(
                    session.session_id,
                    [(m.role, m.content) for m in batch],
                    # The context travels with the segment's first batch.
                    context=context if start == 0 else None,
                    namespace=session.namespace or None,
                )
            except MotorheadError as exc:
                if not may_have_applied(exc):
                    if sent:
                        self._confirm(segment[:sent], context_sent=context)
                    else:
                        self._clear_inflight()
                    raise
                # It may have landed: look before sending anything again.
                if self._settle_inflight(known_landed=sent) < sent + len(batch):
                    raise
                return False
            sent += len(batch)
            self.result.batches += 1
            if self.remote_length is not None:
                self.remote_length += len(batch)
        self._confirm(segment, context_sent=context)
        return True

    def _settle_inflight(self, known_landed: int = 0) -> int:
        """Confirm the part of the in-flight messages the server's window shows; returns how many.

        ``known_landed`` messages at the start were answered by the server and
        count as landed whatever the window shows.
        """
        session = self.session
        inflight = list(
            session.messages.pending()
            .filter(sequence__lte=session.inflight_through)
            .order_by("sequence")
        )
        if not inflight:
            self._clear_inflight()
            return 0
        memory = self._read_window()
        before = session.messages.filter(sequence__lt=inflight[0].sequence).order_by("-sequence")
        earlier = [(m.role, m.content) for m in reversed(before[: self.window + 1])]
        landed = max(
            known_landed,
            landed_prefix(
                [(m.role, m.content) for m in memory.chronological],
                earlier,
                [(m.role, m.content) for m in inflight],
            ),
        )
        first, last = inflight[0].sequence, inflight[-1].sequence
        if landed == len(inflight):
            note = f"seq {first}-{last}: landed"
        elif landed == 0:
            note = f"seq {first}-{last}: not applied"
        else:
            note = f"seq {first}-{last}: landed through seq {inflight[landed - 1].sequence}"
        self.result.resolved.append(note)
        logger.info("Settled an ambiguous push of %s: %s", session, note)
        self.remote_length = len(memory.messages) if len(memory.messages) <= self.window else None
        if landed:
            # The context, if pending, went with the first in-flight batch.
            context = session.context if session.context_pending else None
            self._confirm(inflight[:landed], context_sent=context)
        else:
            self._clear_inflight()
        return landed

    def _mark_inflight(self, through: int) -> None:
        ChatSession.objects.filter(pk=self.session.pk).update(inflight_through=through)
        self.session.inflight_through = through

    def _confirm(self, messages: list[ChatMessage], context_sent: str | None) -> None:
        """Record that the server has ``messages`` (consecutive pending ones) and clear the mark."""
        session = self.session
        now = timezone.now()
        updates: dict[str, object] = {"inflight_through": None, "last_pushed_at": now}
        if context_sent is not None:
            # Only if nobody changed the context meanwhile.
            updates["context_pending"] = Case(
                When(context=context_sent, then=Value(False)), default=F("context_pending")
            )
        # No transaction needed: should we stop between the two updates, the
        # in-flight mark is left over synced messages, and the next run clears
        # it without asking the server.
        ChatMessage.objects.filter(
            session=session,
            sync_state=MessageSyncState.PENDING,
            sequence__gte=messages[0].sequence,
            sequence__lte=messages[-1].sequence,
        ).update(sync_state=MessageSyncState.SYNCED, synced_at=now)
        ChatSession.objects.filter(pk=session.pk).update(**updates)
        session.inflight_through, session.last_pushed_at = None, now
        if context_sent is not None:
            session.refresh_from_db(fields=["context", "context_pending"])
        for message in messages:
            message.sync_state = MessageSyncState.SYNCED
        self.result.pushed += len(messages)
        signals.post_push.send(sender=ChatSession, session=session, messages=messages)

    def _clear_inflight(self) -> None:
        ChatSession.objects.filter(pk=self.session.pk).update(inflight_through=None)
        self.session.inflight_through = None


def landed_prefix(
    window: list[tuple[str, str]],
    earlier: list[tuple[str, str]],
    inflight: list[tuple[str, str]],
) -> int:
    """How many of the in-flight messages the server's window (oldest first) shows as applied.

    ``earlier`` is our history just before them. They were sent in order, so
    what landed is a prefix: the longest ``k`` for which the window is a tail
    of ``earlier + inflight[:k]`` (the window is always the newest part of the
    server's list, compaction or not). Preferring the longest prefix means a
    conversation that repeats itself exactly is counted as landed: no duplicate
    on the server rather than a resend. When no prefix fits (another client
    wrote meanwhile, the server was wiped), a prefix counts as landed if the
    window holds its end, matching backwards up to the window's start or over
    the whole prefix (what follows it there is the other writer's).
    """
    if not window:
        return 0  # whatever landed would show: an empty list means nothing did
    for k in range(len(inflight), -1, -1):
        if _is_tail(window, earlier + inflight[:k]):
            return k
    for k in range(len(inflight), 0, -1):
        for end in range(len(window) - 1, -1, -1):
            span = min(end + 1, k)  # back to the window's start, or the whole prefix
            if window[end - span + 1 : end + 1] == inflight[k - span : k]:
                return k
    return 0


def _is_tail(window: list[tuple[str, str]], history: list[tuple[str, str]]) -> bool:
    return len(window) <= len(history) and history[len(history) - len(window) :] == window


def backoff_delay(attempt: int) -> float:
    """Seconds before retry ``attempt`` (1-based): exponential, capped, full jitter."""
    ceiling = min(
        motorhead_settings.RETRY_BACKOFF_MAX, motorhead_settings.RETRY_BACKOFF * 2 ** (attempt - 1)
    )
    return random.uniform(ceiling / 2, ceiling)


def _record_success(session: ChatSession, result: PushResult, seen: int) -> None:
    done = {"sync_attempts": 0, "last_error": "", "next_attempt_at": None}
    # Synced only if nothing was written after the messages this run read. One
    # statement is enough: a write in progress holds the row (append_messages
    # updates it first), and PostgreSQL re-checks this WHERE against the row's
    # newest version once the writer commits.
    if ChatSession.objects.filter(pk=session.pk, last_sequence__lte=seen).update(
        sync_state=SyncState.SYNCED, **done
    ):
        result.state = SyncState.SYNCED
    else:
        ChatSession.objects.filter(pk=session.pk).update(sync_state=SyncState.PENDING, **done)
        result.state = SyncState.PENDING


def _record_failure(session: ChatSession, exc: MotorheadError, result: PushResult) -> None:
    attempts = session.sync_attempts + 1
    retry = is_retryable(exc) and attempts <= motorhead_settings.MAX_RETRIES
    error = str(exc)[:2000]
    updates: dict[str, object] = {"sync_attempts": attempts, "last_error": error}
    if retry:
        result.retry_at = timezone.now() + timedelta(seconds=backoff_delay(attempts))
        updates.update(sync_state=SyncState.RETRYING, next_attempt_at=result.retry_at)
    else:
        updates.update(sync_state=SyncState.FAILED, next_attempt_at=None)
    ChatSession.objects.filter(pk=session.pk).update(**updates)
    result.state = str(updates["sync_state"])
    result.error = error
    logger.warning("Push of %s failed (attempt %d): %s", session, attempts, error)
    signals.push_failed.send(sender=ChatSession, session=session, error=exc, will_retry=retry)


def resync_session(session_pk: int, *, client: MotorheadClient | None = None) -> PushResult:
    """Replace the server's copy with the whole local history, pushed and paced from the start.

    The server's session is deleted (under the namespace it was written under),
    every local message becomes pending again, and a push sends them all in
    order, waiting for each compaction, so every message passes through the
    server's summariser and the server builds its summary from the whole
    conversation. (``rehydrate.rehydrate_session`` is the quick way back: the
    latest summary and the newest window only.)
    """
    if not motorhead_settings.SYNC_ENABLED:
        return PushResult(session_pk, state="disabled")
    client = client or get_client()
    with locked_session(session_pk) as (acquired, session):
        if session is None or session.delete_requested_at is not None:
            return PushResult(session_pk, busy=not acquired)
        try:
            client.delete_memory(session.session_id, namespace=session.namespace or None)
        except MotorheadError as exc:
            result = PushResult(session_pk)
            _record_failure(session, exc, result)
            return result
        # The server starts empty: its summary comes from the history, not from ours.
        session.messages.update(sync_state=MessageSyncState.PENDING, synced_at=None)
        ChatSession.objects.filter(pk=session_pk).update(
            sync_state=SyncState.PENDING, inflight_through=None, context_pending=False
        )
    return push_session(session_pk, client=client)


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
        try:
            client.delete_memory(session.session_id, namespace=session.namespace or None)
        except MotorheadError as exc:
            return str(exc)
        ChatSession.objects.filter(pk=session_pk).update(
            sync_state=SyncState.DRIFTED,
            drift="deleted on the server by an operator; resync or rehydrate to restore it",
        )
    return ""


def due_sessions(limit: int | None = None) -> list[int]:
    """Primary keys of sessions whose push is due (served by a partial index)."""
    query = ChatSession.objects.due().order_by("next_attempt_at", "pk")
    query = query.exclude(sync_state=SyncState.DELETING)
    keys = query.values_list("pk", flat=True)
    return list(keys[:limit] if limit else keys)


def drain(
    session_pks: list[int] | None = None,
    *,
    client: MotorheadClient | None = None,
    progress: Callable[[int, int, PushResult], object] | None = None,
) -> list[PushResult]:
    """Push every pending session now, ignoring back-off times (for the command)."""
    if session_pks is None:
        session_pks = list(
            ChatSession.objects.pending()
            .exclude(sync_state=SyncState.DELETING)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
    results = []
    client = client or get_client()
    for index, pk in enumerate(session_pks, start=1):
        result = push_session(pk, client=client)
        results.append(result)
        if progress is not None:
            progress(index, len(session_pks), result)
    return results
