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

import heapq
import logging
import operator
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import reduce
from typing import Any

from django.db import transaction
from django.db.models import Case, DateTimeField, Exists, F, OuterRef, Q, Value, When, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from . import signals
from .client import Memory as RemoteMemory
from .client import MotorheadClient, get_client
from .conf import motorhead_settings
from .exceptions import MotorheadError, is_retryable, may_have_applied
from .locks import locked_session, session_push_locks
from .models import ChatMessage, ChatSession, MessageSyncState, SyncState

logger = logging.getLogger(__name__)

# Pending messages read at a time for one session.
_READ_CHUNK = 1000

# Sessions pushed together in one pass by `drain` and the sweep's tasks.
PASS_SIZE = 50


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
    return push_sessions([session_pk], client=client)[0]


def push_sessions(
    session_pks: Iterable[int], *, client: MotorheadClient | None = None
) -> list[PushResult]:
    """Push several sessions in one pass; one result per distinct key, in order.

    A pass shares its bookkeeping between its sessions: one statement takes
    their locks and one releases them, one reads the sessions, one their
    pending messages, one marks those in flight, and one transaction records
    what the server confirmed, whether the pass holds one session or fifty.
    While a session waits for the server's compaction, the others are pushed.
    """
    keys = list(dict.fromkeys(session_pks))
    results = {pk: PushResult(pk) for pk in keys}
    if not motorhead_settings.SYNC_ENABLED:
        for result in results.values():
            result.state = "disabled"
        return list(results.values())
    client = client or get_client()
    with session_push_locks(keys) as acquired:
        sessions = ChatSession.objects.in_bulk(list(acquired))
        pushers = []
        for pk in keys:
            results[pk].busy = pk not in acquired
            if pk in sessions:
                pushers.append(_Pusher(sessions[pk], client, results[pk]))
        if pushers:
            _read_chunks(pushers)
            _mark_inflight(pushers)
            _run_interleaved(pushers)
            _record(pushers)
            _send_outcome_signals(pushers)
    # After the unlock: a push scheduled while we held the locks found them
    # busy and gave up; the messages it was for committed before that.
    _read_outcome([results[pusher.session.pk] for pusher in pushers])
    return list(results.values())


class _Pusher:
    """One session's part of a pass.

    ``run`` is a generator: it yields the seconds it wants to wait (for the
    server's compaction), and the pass pushes other sessions meanwhile. What
    the server confirms is counted here (``confirmed``, a prefix of ``chunk``)
    and recorded for the whole pass at its end; the in-flight mark, written
    before the first POST, covers the chunk until then.
    """

    def __init__(self, session: ChatSession, client: MotorheadClient, result: PushResult) -> None:
        self.session = session
        self.client = client
        self.result = result
        self.window = motorhead_settings.WINDOW_SIZE
        # Messages on the server's list; None when unknown (read it first).
        self.remote_length: int | None = None
        # Consecutive pending messages, oldest first; the server has the first `confirmed`.
        self.chunk: list[ChatMessage] = []
        self.confirmed = 0
        # Leading messages of the chunk an earlier run may have sent (under its mark).
        self.in_doubt = 0
        # The local context, until a batch carrying it is confirmed; then `context_sent`.
        self.context = session.context if session.context_pending else None
        self.context_sent: str | None = None
        self.landed: list[ChatMessage] = []  # every message confirmed in this run
        self.error: MotorheadError | None = None
        # An ambiguous POST could not be settled: the mark must stay for the next run.
        self.unsettled = False
        # The highest sequence this run has read: anything above it came later.
        self.seen = session.last_sequence

    @property
    def complete(self) -> bool:
        return len(self.chunk) < _READ_CHUNK

    def take_chunk(self, chunk: list[ChatMessage]) -> None:
        self.chunk, self.confirmed = chunk, 0
        if chunk:
            self.seen = max(self.seen, chunk[-1].sequence)
        mark = self.session.inflight_through
        self.in_doubt = sum(1 for m in chunk if mark is not None and m.sequence <= mark)

    def run(self) -> Iterator[float]:
        try:
            yield from self._push()
        except MotorheadError as exc:
            self.error = exc

    def _push(self) -> Iterator[float]:
        if self.in_doubt:
            # An earlier run may have sent these: look before sending anything.
            self._settle(self.in_doubt, last=self.chunk[self.in_doubt - 1].sequence)
        while True:
            while self.confirmed < len(self.chunk):
                if self.remote_length is None or self.remote_length > self.window:
                    yield from self._wait_for_compaction()
                assert self.remote_length is not None
                room = self.window + 1 - self.remote_length
                self._send(self.chunk[self.confirmed : self.confirmed + room])
            if self.complete:
                return
            self._next_chunk()

    def _wait_for_compaction(self) -> Iterator[float]:
        deadline = time.monotonic() + motorhead_settings.COMPACTION_TIMEOUT
        delay = 0.05
        if self.remote_length is not None:
            yield 0.0  # our last batch started a compaction: the other sessions go first
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
            yield delay
            delay = min(delay * 2, 1.0)

    def _read_window(self) -> RemoteMemory:
        return self.client.get_memory(self.session.session_id)

    def _send(self, segment: list[ChatMessage]) -> None:
        """POST a segment (what the server can take now) in batches, until one fails."""
        session = self.session
        size = motorhead_settings.BATCH_SIZE
        for start in range(0, len(segment), size):
            batch = segment[start : start + size]
            signals.pre_push.send(sender=ChatSession, session=session, messages=batch)
            try:
                self.client.add_memory(
                    session.session_id,
                    [(m.role, m.content) for m in batch],
                    context=self.context,
                    namespace=session.namespace or None,
                )
            except MotorheadError as exc:
                if not may_have_applied(exc):
                    raise
                # It may have landed: look before sending anything again.
                if self._settle(len(batch), last=self.chunk[-1].sequence) < len(batch):
                    raise
                return  # the window read gave the server's length: the caller goes on
            self._confirm(len(batch))
            self.result.batches += 1
            assert self.remote_length is not None
            self.remote_length += len(batch)

    def _settle(self, count: int, last: int) -> int:
        """Confirm what the server's window shows of the next ``count`` messages; returns how many.

        ``last`` ends the in-flight range named in the result's note. Should
        the window not be readable, the mark stays for the next run to settle.
        """
        inflight = self.chunk[self.confirmed : self.confirmed + count]
        try:
            memory = self._read_window()
        except MotorheadError:
            self.unsettled = True
            raise
        landed = landed_prefix(
            [(m.role, m.content) for m in memory.chronological],
            self._history_before(self.confirmed),
            [(m.role, m.content) for m in inflight],
        )
        self.remote_length = len(memory.messages) if len(memory.messages) <= self.window else None
        if landed:
            self._confirm(landed)  # the context, if pending, went with the first of them
        first = self.chunk[0].sequence
        if self.confirmed == 0:
            note = f"seq {first}-{last}: not applied"
        elif self.chunk[self.confirmed - 1].sequence == last:
            note = f"seq {first}-{last}: landed"
        else:
            note = (
                f"seq {first}-{last}: landed through seq {self.chunk[self.confirmed - 1].sequence}"
            )
        self.result.resolved.append(note)
        logger.info("Settled an ambiguous push of %s: %s", self.session, note)
        return landed

    def _history_before(self, index: int) -> list[tuple[str, str]]:
        """Our newest ``WINDOW_SIZE + 1`` messages before ``chunk[index]``, oldest first."""
        wanted = self.window + 1
        local = self.chunk[max(0, index - wanted) : index]
        if len(local) < wanted:
            older = self.session.messages.filter(sequence__lt=self.chunk[0].sequence)
            local = older.newest(wanted - len(local)) + local
        return [(m.role, m.content) for m in local]

    def _confirm(self, count: int) -> None:
        messages = self.chunk[self.confirmed : self.confirmed + count]
        self.confirmed += count
        self.landed.extend(messages)
        self.result.pushed += count
        if self.context is not None:
            self.context_sent, self.context = self.context, None

    def _next_chunk(self) -> None:
        """Record the finished chunk, then read and mark the next (a backlog beyond one chunk)."""
        _record([self], finished=False)
        after = self.chunk[-1].sequence
        self.take_chunk(
            list(
                self.session.messages.pending()
                .filter(sequence__gt=after)
                .chronological()[:_READ_CHUNK]
            )
        )
        _mark_inflight([self])


def _read_chunks(pushers: list[_Pusher]) -> None:
    """Each session's first ``_READ_CHUNK`` pending messages, in one query."""
    by_session: dict[int, list[ChatMessage]] = {p.session.pk: [] for p in pushers}
    rows = (
        ChatMessage.objects.pending()
        .filter(session_id__in=list(by_session))
        .annotate(
            rank=Window(RowNumber(), partition_by=[F("session_id")], order_by=F("sequence").asc())
        )
        .filter(rank__lte=_READ_CHUNK)
        .order_by("session_id", "sequence")
    )
    for message in rows:
        by_session[message.session_id].append(message)
    for pusher in pushers:
        chunk = by_session[pusher.session.pk]
        mark = pusher.session.inflight_through
        if mark is not None and len(chunk) == _READ_CHUNK and chunk[-1].sequence < mark:
            # An earlier run's mark covers more than a chunk: settle all of it at once.
            chunk = list(
                pusher.session.messages.pending().filter(sequence__lte=mark).chronological()
            )
        pusher.take_chunk(chunk)


def _mark_inflight(pushers: list[_Pusher]) -> None:
    """Store each chunk's last sequence before anything of it is sent (one statement)."""
    marks = {
        p.session.pk: p.chunk[-1].sequence
        for p in pushers
        if p.chunk and p.session.inflight_through != p.chunk[-1].sequence
    }
    if not marks:
        return
    ChatSession.objects.filter(pk__in=list(marks)).update(
        inflight_through=Case(*(When(pk=pk, then=Value(seq)) for pk, seq in marks.items()))
    )
    for pusher in pushers:
        if pusher.session.pk in marks:
            pusher.session.inflight_through = marks[pusher.session.pk]


def _run_interleaved(pushers: list[_Pusher]) -> None:
    """Run the pushers one step at a time, each when the wait it asked for is over."""
    queue = [(0.0, order, pusher.run()) for order, pusher in enumerate(pushers)]
    while queue:
        ready_at, order, steps = heapq.heappop(queue)
        pause = ready_at - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        try:
            wait = next(steps)
        except StopIteration:
            continue
        heapq.heappush(queue, (time.monotonic() + wait, order, steps))


def _record(pushers: list[_Pusher], *, finished: bool = True) -> None:
    """Record what the server confirmed and each session's state, in one transaction.

    Two statements whatever the number of sessions: the confirmed messages
    become synced, and the sessions' rows get their mark cleared (kept where
    an ambiguous POST could not be settled) and, when the run is ``finished``,
    their sync state.
    """
    now = timezone.now()
    confirmed = [p for p in pushers if p.confirmed]
    rows: dict[str, Any] = {
        "inflight_through": Case(
            When(pk__in=[p.session.pk for p in pushers if p.unsettled], then=F("inflight_through")),
            default=Value(None),
        ),
        "last_pushed_at": Case(
            When(pk__in=[p.session.pk for p in confirmed], then=Value(now)),
            default=F("last_pushed_at"),
        ),
    }
    sent = [p for p in pushers if p.context_sent is not None]
    if sent:
        # Only if nobody changed the context meanwhile.
        rows["context_pending"] = Case(
            *(When(pk=p.session.pk, context=p.context_sent, then=Value(False)) for p in sent),
            default=F("context_pending"),
        )
    if finished:
        rows.update(_state_updates(pushers, now))
    with transaction.atomic():
        if confirmed:
            ranges = (
                Q(
                    session_id=p.session.pk,
                    sequence__gte=p.chunk[0].sequence,
                    sequence__lte=p.chunk[p.confirmed - 1].sequence,
                )
                for p in confirmed
            )
            ChatMessage.objects.pending().filter(reduce(operator.or_, ranges)).update(
                sync_state=MessageSyncState.SYNCED, synced_at=now
            )
        ChatSession.objects.filter(pk__in=[p.session.pk for p in pushers]).update(**rows)
    for pusher in pushers:
        session = pusher.session
        if not pusher.unsettled:
            session.inflight_through = None
        if pusher.confirmed:
            session.last_pushed_at = now
        if pusher.context_sent is not None:
            session.context_pending = session.context != pusher.context_sent
        pusher.context_sent = None


def _state_updates(pushers: list[_Pusher], now: datetime) -> dict[str, Any]:
    """Each session's sync state, attempts, error and next attempt time, as CASE expressions.

    A session that pushed without error is synced only if nothing was
    written after the messages its run read: a write in progress holds the
    row (append_messages updates it first), and PostgreSQL re-checks the CASE
    against the row's newest version once the writer commits.
    """
    states: list[When] = []
    attempts: list[When] = []
    errors: list[When] = []
    retry_times: list[When] = []
    for pusher in pushers:
        pk, result = pusher.session.pk, pusher.result
        if pusher.error is None:
            states.append(When(pk=pk, last_sequence__lte=pusher.seen, then=Value(SyncState.SYNCED)))
            continue
        failure = _failure(pusher.session, pusher.error, result, now)
        states.append(When(pk=pk, then=Value(failure["sync_state"])))
        attempts.append(When(pk=pk, then=Value(failure["sync_attempts"])))
        errors.append(When(pk=pk, then=Value(failure["last_error"])))
        if failure["next_attempt_at"] is not None:
            retry_times.append(When(pk=pk, then=Value(failure["next_attempt_at"])))
    no_time = Value(None, output_field=DateTimeField())
    return {
        "sync_state": Case(*states, default=Value(SyncState.PENDING)),
        "sync_attempts": Case(*attempts, default=Value(0)) if attempts else 0,
        "last_error": Case(*errors, default=Value("")) if errors else "",
        "next_attempt_at": (
            Case(*retry_times, default=no_time, output_field=DateTimeField())
            if retry_times
            else None
        ),
    }


def _send_outcome_signals(pushers: list[_Pusher]) -> None:
    for pusher in pushers:
        session = pusher.session
        if pusher.landed:
            signals.post_push.send(sender=ChatSession, session=session, messages=pusher.landed)
        if pusher.error is not None:
            _report_failure(session, pusher.error, pusher.result)


def _read_outcome(results: list[PushResult]) -> None:
    """Each successful run's state, and whether pending messages are left (one query)."""
    done = {result.session_pk: result for result in results if not result.error}
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


def _failure(
    session: ChatSession, exc: MotorheadError, result: PushResult, now: datetime
) -> dict[str, Any]:
    """The session's fields after a failed run (also set on ``result``)."""
    attempts = session.sync_attempts + 1
    retry = is_retryable(exc) and attempts <= motorhead_settings.MAX_RETRIES
    result.error = str(exc)[:2000]
    result.retry_at = now + timedelta(seconds=backoff_delay(attempts)) if retry else None
    result.state = SyncState.RETRYING if retry else SyncState.FAILED
    return {
        "sync_state": result.state,
        "sync_attempts": attempts,
        "last_error": result.error,
        "next_attempt_at": result.retry_at,
    }


def _record_failure(session: ChatSession, exc: MotorheadError, result: PushResult) -> None:
    ChatSession.objects.filter(pk=session.pk).update(
        **_failure(session, exc, result, timezone.now())
    )
    _report_failure(session, exc, result)


def _report_failure(session: ChatSession, exc: MotorheadError, result: PushResult) -> None:
    logger.warning(
        "Push of %s failed (attempt %d): %s", session, session.sync_attempts + 1, result.error
    )
    signals.push_failed.send(
        sender=ChatSession, session=session, error=exc, will_retry=result.retry_at is not None
    )


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
    results: list[PushResult] = []
    client = client or get_client()
    for start in range(0, len(session_pks), PASS_SIZE):
        for result in push_sessions(session_pks[start : start + PASS_SIZE], client=client):
            results.append(result)
            if progress is not None:
                progress(len(results), len(session_pks), result)
    return results
