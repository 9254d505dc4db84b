"""The push side of the sync: local records to the Motorhead server.

The guarantees and their limits are written down in docs/sync.md. In short:

* one pusher per session at a time (:mod:`motorhead_django.locks`);
* messages go in sequence order, in non-empty batches the server can keep;
* before a segment is sent, its last sequence is recorded (``inflight_through``),
  so that after any failure that may have applied it (timeout, dropped
  connection, 5xx, a killed worker) the server's window is read before
  anything is sent again; what it shows (its length, its summary's progress,
  its content) settles the write only when exactly one outcome fits
  (:func:`landed_count`); otherwise the session is *in doubt* and the
  server's copy is rebuilt from ours before anything more is sent;
* a context changed on its own is pushed too (by that rebuild: Motorhead
  takes a context only with a message);
* batches are paced so that every message passes through the server's
  summariser: a batch never takes the server's list past ``WINDOW_SIZE + 1``,
  and after a batch that triggers a compaction the next one waits for it;
* sessions are pushed in passes that share the database work
  (:func:`push_sessions`).
"""

from __future__ import annotations

import heapq
import logging
import random
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, transaction
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
    Window,
)
from django.db.models.functions import RowNumber
from django.utils import timezone

from . import redact, redaction, signals
from .client import Memory as RemoteMemory
from .client import MotorheadClient, get_client
from .conf import motorhead_settings
from .exceptions import (
    CompactionTimeout,
    MotorheadAPIError,
    MotorheadError,
    MotorheadResponseError,
    WindowTooLarge,
    is_retryable,
    may_have_applied,
)
from .locks import PushLocks, locked_session
from .models import ChatMessage, ChatSession
from .states import MessageSyncState, SyncState

logger = logging.getLogger(__name__)

# Pending messages read at a time for one session.
_READ_CHUNK = 1000

# Messages marked synced per statement (a bound on its parameters).
_UPDATE_BATCH = 5000

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
    # wait=False, and the server was compacting: the rest is left pending, unsent.
    deferred: bool = False


Pair = tuple[str, str]


@dataclass(frozen=True)
class WindowState:
    """What the server showed of a session: its list's length, its tokens, its messages.

    ``length`` is what GET returned (it returns at most ``WINDOW_SIZE + 1``,
    and our pacing never takes the list further); ``messages`` are oldest
    first. ``tokens`` only grow, and only when a compaction ends.
    """

    length: int
    tokens: int
    messages: tuple[Pair, ...] = ()


@dataclass(frozen=True)
class Observed:
    """How many in-flight messages a window read shows as applied; None: it cannot tell."""

    landed: int | None
    why: str


def push_session(
    session_pk: int, *, client: MotorheadClient | None = None, wait: bool = True
) -> PushResult:
    """Push a session's pending messages, in order, exactly once each (see push_sessions)."""
    return push_sessions([session_pk], client=client, wait=wait)[0]


def push_sessions(
    session_pks: Iterable[int], *, client: MotorheadClient | None = None, wait: bool = True
) -> list[PushResult]:
    """Push several sessions in one pass; one result per distinct key, in order.

    With ``wait=False`` (a push run inside a web request) nothing ever sleeps
    on the server: a session that would have to wait for the server's
    compaction stops there, its rest left pending (``PushResult.deferred``)
    for a run that may wait (:func:`motorhead_django.tasks.hand_off`, the sweep).

    A pass shares its bookkeeping between its sessions: one statement takes
    their locks, one reads the sessions, one their pending messages and one
    marks their first segments in flight; then the sessions are pushed in
    turn, and while one waits for the server's compaction the others go on.
    Whenever sessions need a record (a new segment's mark, or they are done),
    one transaction writes it for all of them, and one statement releases the
    locks of those that are done, so a long session does not hold up the rest.
    """
    keys = list(dict.fromkeys(session_pks))
    results = {pk: PushResult(pk) for pk in keys}
    if not motorhead_settings.SYNC_ENABLED:
        for result in results.values():
            result.state = "disabled"
        return list(results.values())
    client = client or get_client()
    with PushLocks() as locks:
        acquired = locks.acquire(keys)
        sessions = ChatSession.objects.in_bulk(list(acquired))
        pushers = []
        for pk in keys:
            results[pk].busy = pk not in acquired
            if pk in sessions:
                pushers.append(_Pusher(sessions[pk], client, results[pk], wait=wait))
        locks.release(acquired - set(sessions))  # deleted meanwhile
        if pushers:
            _read_chunks(pushers)
            _mark_first_segments(pushers)
            _Pass(pushers, locks).run()
    return list(results.values())


class _Deferred(Exception):
    """A run that may not wait met a compaction: it stops there, the rest stays pending."""


# Server windows already probed in this process: (url, WINDOW_SIZE) -> the server's is larger.
_probed_windows: dict[tuple[str, int], bool] = {}


def check_server_window(
    client: MotorheadClient, window: int, *, session_id: str | None = None
) -> None:
    """Raise :class:`WindowTooLarge` if the server keeps more than ``window + 1`` messages.

    A list at ``window + 1`` that is not compacted means either a slow or
    failing summariser or a server window larger than ours; the session
    itself cannot tell them apart without going past ``window + 1``. So,
    once per process and server, a scratch session gets ``window + 2``
    messages: a server whose window is larger returns them all, one whose
    window is ours returns at most ``window + 1``. The scratch session is
    deleted at once (a compaction it started may leave its context and
    tokens keys behind; it is never listed). An unreachable server decides
    nothing: the wait goes on.
    """
    key = (client.url, window)
    if key not in _probed_windows:
        probe = f"motorhead-django-window-probe-{uuid.uuid4().hex}"
        try:
            client.add_memory(probe, [("Human", "window probe")] * (window + 2))
            seen = len(client.get_memory(probe).messages)
            client.delete_memory(probe)
        except MotorheadError as exc:
            logger.info("Could not probe the server's window: %s", exc)
            return
        _probed_windows[key] = seen > window + 1
        if _probed_windows[key]:
            logger.error(
                "The Motorhead server at %s keeps more than WINDOW_SIZE + 1 = %d messages",
                client.url,
                window + 1,
            )
    if _probed_windows[key]:
        raise WindowTooLarge(seen=window + 2, window=window, probe=True, session_id=session_id)


def _is_over(exc: MotorheadError) -> bool:
    """Whether the failed request is over on the server: what it applied, it has applied.

    The server answered (a 5xx, an unreadable body) once its handler ended;
    a timeout, a dropped connection or a gateway's 504 may leave it running.
    Motorhead's own 500 comes from a failed Redis command before the LPUSH
    or of it (MOTORHEAD_API.md section 2.4), so it usually means "not
    applied", but not always (a Redis connection lost after the LPUSH went
    out, a proxy in between): the window still decides.
    """
    if isinstance(exc, MotorheadAPIError):
        return exc.status != 504
    return isinstance(exc, MotorheadResponseError)


def send_window(
    client: MotorheadClient, session: ChatSession, pairs: list[Pair], context: str | None
) -> None:
    """Replace the server's copy of a session: a DELETE, then ``pairs`` with ``context``.

    ``pairs`` (oldest first, at most ``WINDOW_SIZE``) go in ``BATCH_SIZE``
    batches, the context with the first, so no compaction runs and the
    summary arrives as sent. A failure half-way is repaired by running it
    again (it starts with the DELETE). Shared by the push's rebuild of a
    session in doubt and :func:`motorhead_django.rehydrate.rehydrate_session`.
    """
    namespace = session.namespace or None
    client.delete_memory(session.remote_id, namespace=namespace)
    size = motorhead_settings.BATCH_SIZE
    for start in range(0, len(pairs), size):
        client.add_memory(
            session.remote_id,
            pairs[start : start + size],
            context=context if start == 0 else None,
            namespace=namespace,
        )


class _Pusher:
    """One session's part of a pass.

    ``run`` is a generator that yields the seconds it wants to wait (for the
    server's compaction), or None when it needs its progress recorded before
    it goes on. What the server confirms is counted here (``confirmed``, a
    prefix of ``chunk``) until the next record; the in-flight mark, written
    before a segment's first POST, covers the segment until then.
    """

    def __init__(
        self, session: ChatSession, client: MotorheadClient, result: PushResult, *, wait: bool
    ) -> None:
        self.session = session
        self.client = client
        self.result = result
        self.wait = wait
        self.window = motorhead_settings.WINDOW_SIZE
        # Messages on the server's list; None when unknown (read it first).
        self.remote_length: int | None = None
        # The server's tokens as last read: they change only when a compaction ends.
        self.remote_tokens: int | None = None
        # The server's context as last read (its summary may be newer than ours).
        self.remote_context: str | None = None
        # The server's copy must be rebuilt from ours before anything more is sent
        # (an ambiguous write nothing could settle); persisted as SyncState.IN_DOUBT.
        self.rebuild = session.sync_state == SyncState.IN_DOUBT
        # Unrecorded pending messages, oldest first; the server has the first `confirmed`.
        self.chunk: list[ChatMessage] = []
        self.confirmed = 0
        self.complete = True  # no pending messages beyond the chunk when it was read
        # Leading messages of the chunk an earlier run may have sent (under its mark).
        self.in_doubt = 0
        # The mark the next record writes (None: clear it).
        self.next_mark: int | None = None
        # The local context while it is due (changed here, not yet on the server);
        # once a batch or a rebuild carried it, `context_sent` (`sent_context` set).
        self.context_due = session.context_pending
        self.context = session.context
        self.context_sent: str | None = None
        self.sent_context = False
        self.error: MotorheadError | None = None
        # An ambiguous POST could not be settled: the mark must stay for the next run.
        self.unsettled = False
        # The highest sequence this run has read: anything above it came later.
        self.seen = session.last_sequence
        # How the run ended: on its own, or stopped because another session's run crashed.
        self.finished = self.stopped = False
        self.crash: Exception | None = None

    def take_chunk(self, chunk: list[ChatMessage]) -> None:
        self.chunk, self.confirmed, self.complete = chunk, 0, len(chunk) < _READ_CHUNK
        if chunk:
            self.seen = max(self.seen, chunk[-1].sequence)
        mark = self.session.inflight_through
        self.in_doubt = sum(1 for m in chunk if mark is not None and m.sequence <= mark)
        # Until they are settled, that mark stays, whatever stops this run.
        self.unsettled = self.in_doubt > 0

    def run(self) -> Generator[float | None, None, None]:
        try:
            yield from self._push()
        except _Deferred:
            self.result.deferred = True
        except MotorheadError as exc:
            self.error = exc
        except Exception as exc:  # not the server's doing: the pass stops and re-raises it
            self.crash, self.unsettled = exc, True
        self.finished = True

    def _push(self) -> Iterator[float | None]:
        if self.rebuild:
            # An earlier run could not settle its write: rebuild before sending more.
            self._rebuild(self.in_doubt, "in doubt since an earlier run")
        elif self.in_doubt:
            # An earlier run may have sent these (its request is over): look first.
            self._settle(self.in_doubt, last=self.chunk[self.in_doubt - 1].sequence, final=True)
        while True:
            while self.confirmed < len(self.chunk):
                if self.remote_length is None or self.remote_length > self.window:
                    yield from self._wait_for_compaction()
                assert self.remote_length is not None
                room = self.window + 1 - self.remote_length
                segment = self.chunk[self.confirmed : self.confirmed + room]
                if segment[-1].sequence > (self.session.inflight_through or 0):
                    # One segment in flight at a time: a killed run leaves at
                    # most WINDOW_SIZE + 1 messages for the next to settle.
                    self.next_mark = segment[-1].sequence
                    yield None
                self._send(segment)
            if self.complete:
                if self.context_due and self.session.last_sequence:
                    # A context changed on its own: Motorhead takes one only with a
                    # message, so the server's copy is rebuilt with it.
                    self._rebuild(0, "context changed")
                return
            # A backlog beyond one chunk: record this one, then read the next.
            after = self.chunk[-1].sequence
            yield None
            self.session.refresh_from_db(fields=["context", "context_pending"])
            self.context_due, self.context = self.session.context_pending, self.session.context
            pending = self.session.messages.pending().filter(sequence__gt=after)
            self.take_chunk(list(pending.chronological()[:_READ_CHUNK]))

    def _wait_for_compaction(self) -> Iterator[float | None]:
        deadline = time.monotonic() + motorhead_settings.COMPACTION_TIMEOUT
        delay = 0.05
        probed = False
        if self.remote_length is not None and self.wait:
            yield 0.0  # our last batch started a compaction: the other sessions go first
        while True:
            memory = self._read_window()
            # GET returns at most window + 1 messages: fewer means we know the length.
            if len(memory.messages) <= self.window:
                self.remote_length = len(memory.messages)
                return
            if not self.wait:
                raise _Deferred
            if not probed:  # before the first sleep: will a compaction come at our window?
                check_server_window(self.client, self.window, session_id=self.session.session_id)
                probed = True
            if time.monotonic() >= deadline:
                raise CompactionTimeout(
                    f"the server still holds {self.window + 1} messages after "
                    f"{motorhead_settings.COMPACTION_TIMEOUT:g}s without compacting them: "
                    "its summariser is slow or failing, or its window "
                    "(MOTORHEAD_MAX_WINDOW_SIZE) is larger than MOTORHEAD['WINDOW_SIZE'] = "
                    f"{self.window}. HINT: check the server's log and its "
                    "MOTORHEAD_MAX_WINDOW_SIZE",
                    session_id=self.session.session_id,
                )
            yield delay
            delay = min(delay * 2, 1.0)

    def _read_window(self) -> RemoteMemory:
        memory = self.client.get_memory(self.session.remote_id)
        if len(memory.messages) > self.window + 1:
            # Our pacing never takes the list there: the server keeps more than we think.
            error = WindowTooLarge(
                seen=len(memory.messages), window=self.window, session_id=self.session.session_id
            )
            logger.error("Push of %s stopped: %s", self.session, error)
            raise error
        self.remote_tokens, self.remote_context = memory.tokens, memory.context
        return memory

    def _send(self, segment: list[ChatMessage]) -> None:
        """POST a segment (what the server can take now) in batches, until one fails."""
        session = self.session
        size = motorhead_settings.BATCH_SIZE
        for start in range(0, len(segment), size):
            batch = segment[start : start + size]
            signals.pre_push.send(sender=ChatSession, session=session, messages=batch)
            before = None
            if self.remote_length is not None and self.remote_tokens is not None:
                before = (self.remote_length, self.remote_tokens)
            try:
                self.client.add_memory(
                    session.remote_id,
                    redact.pairs(batch),
                    # A null context cannot be sent: it waits for the rebuild at the end.
                    context=self.context if self.context_due else None,
                    namespace=session.namespace or None,
                )
            except MotorheadError as exc:
                if not may_have_applied(exc):
                    raise
                # It may have landed: look before sending anything again.
                mark = session.inflight_through or batch[-1].sequence
                landed = self._settle(len(batch), last=mark, before=before, final=_is_over(exc))
                if landed < len(batch):
                    raise
                return  # the window read gave the server's length: the caller goes on
            self._confirm(len(batch))
            self.result.batches += 1
            assert self.remote_length is not None
            self.remote_length += len(batch)

    def _settle(
        self, count: int, last: int, *, before: tuple[int, int] | None = None, final: bool
    ) -> int:
        """Confirm what the server's window shows of the next ``count`` messages; returns how many.

        ``before`` is the server's length and tokens just before the one POST
        that carried them (None: an earlier run sent them, maybe in several);
        ``final``: that request is over, so what the window shows is all it
        will ever apply. ``last`` ends the in-flight range named in the note.
        When the window cannot tell, a final request is settled by rebuilding
        the server's copy now; otherwise the session is left in doubt (the
        mark stays) and the next run rebuilds first. Should the window not be
        readable, the mark stays for the next run to settle.
        """
        inflight = self.chunk[self.confirmed : self.confirmed + count]
        # The mark stays unless this settles it.
        self.unsettled = True
        memory = self._read_window()
        window = tuple((m.role, m.content) for m in memory.chronological)
        observed = landed_count(
            None if before is None else WindowState(*before),
            WindowState(len(window), memory.tokens, window),
            self._history_before(self.confirmed),
            redact.pairs(inflight),
            window=self.window,
        )
        self.remote_length = len(memory.messages) if len(memory.messages) <= self.window else None
        first = self.chunk[0].sequence
        if observed.landed is None:
            logger.warning(
                "An ambiguous push of %s cannot be settled from the server (%s)",
                self.session,
                observed.why,
            )
            if not final:
                # The request may still be applied: rebuild once it surely is over.
                self.rebuild = True
                self.result.resolved.append(f"seq {first}-{last}: in doubt ({observed.why})")
                return 0
            self._rebuild(count, observed.why, first=first, last=last)
            return count
        landed = observed.landed
        if landed:
            self._confirm(landed)  # the context, if pending, went with the first of them
        # A slow server may still apply a request that is not over: look again next time.
        self.unsettled = landed < count and not final
        through = self.chunk[self.confirmed - 1].sequence if self.confirmed else None
        if through is None:
            note = f"seq {first}-{last}: not applied"
        elif through == last:
            note = f"seq {first}-{last}: landed"
        else:
            note = f"seq {first}-{last}: landed through seq {through}"
        self.result.resolved.append(note)
        logger.info("Settled an ambiguous push of %s: %s (%s)", self.session, note, observed.why)
        return landed

    def _rebuild(self, count: int, why: str, *, first: int = 0, last: int = 0) -> None:
        """Replace the server's copy with ours through the next ``count`` messages; confirm them.

        Our newest ``WINDOW_SIZE`` messages up to there and the local context go
        after a DELETE (:func:`send_window`, what a rehydration does), so the
        server holds them exactly once, in order, whatever the earlier write did.
        """
        self.unsettled = count > 0
        pairs = self._history_before(self.confirmed + count, wanted=self.window)
        # Ours if it changed here; else the server's summary, which may be newer.
        context = self.session.context
        if not self.context_due and self.remote_context is not None:
            context = self.remote_context
        try:
            send_window(self.client, self.session, pairs, context)
        except MotorheadError:
            self.rebuild = True  # the mark stays; the next run rebuilds first
            raise
        self.rebuild = self.unsettled = False
        self.remote_length, self.remote_tokens = len(pairs), 0
        if count:
            self._confirm(count)
            first = first or self.chunk[self.confirmed - count].sequence
            last = last or self.chunk[self.confirmed - 1].sequence
            note = f"seq {first}-{last}: rebuilt on the server ({why})"
        else:
            note = f"rebuilt on the server ({why})"
        if self.context_due:
            self._context_went()
        self.result.resolved.append(note)
        logger.info("Push of %s: %s", self.session, note)

    def _history_before(self, index: int, wanted: int | None = None) -> list[Pair]:
        """Our newest ``wanted`` (default ``WINDOW_SIZE + 1``) messages before ``chunk[index]``."""
        wanted = self.window + 1 if wanted is None else wanted
        local = self.chunk[max(0, index - wanted) : index]
        if len(local) < wanted:
            older = self.session.messages.all()
            if self.chunk:
                older = older.filter(sequence__lt=self.chunk[0].sequence)
            else:  # nothing pending was read: every message is older (and synced)
                older = older.filter(sequence__lte=self.seen)
            local = older.newest(wanted - len(local)) + local
        return redact.pairs(local)

    def _confirm(self, count: int) -> None:
        self.confirmed += count
        self.result.pushed += count
        if self.context_due and self.context is not None:
            self._context_went()

    def _context_went(self) -> None:
        self.context_sent, self.sent_context, self.context_due = self.context, True, False

    @property
    def done(self) -> bool:
        return self.finished or self.stopped

    @property
    def succeeded(self) -> bool:
        return self.finished and self.error is None and self.crash is None


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
            pending = pusher.session.messages.pending().filter(sequence__lte=mark)
            chunk = list(pending.chronological())
        pusher.take_chunk(chunk)


def _mark_first_segments(pushers: list[_Pusher]) -> None:
    """Mark each session's first segment in flight before anything is sent (one statement).

    The server's length is not known yet, so the mark covers the most a
    segment can hold. A session whose earlier run's mark covers pending
    messages keeps it until that is settled.
    """
    marks = {
        p.session.pk: p.chunk[min(len(p.chunk), p.window + 1) - 1].sequence
        for p in pushers
        if p.chunk and not p.in_doubt
    }
    if not marks:
        return
    groups = _group_by_value(marks.items())
    _update_sessions(
        list(marks),
        {"inflight_through": Case(*(When(pk__in=k, then=Value(v)) for v, k in groups.items()))},
    )
    for pusher in pushers:
        if pusher.session.pk in marks:
            pusher.session.inflight_through = marks[pusher.session.pk]


class _Pass:
    """Runs the pushers of a pass in turn, recording their progress in groups."""

    def __init__(self, pushers: list[_Pusher], locks: PushLocks) -> None:
        self.pushers = pushers
        self.locks = locks
        self.waiting: list[_Pusher] = []  # to record: before they go on, or because they are done

    def run(self) -> None:
        queue = [(0.0, order, pusher.run()) for order, pusher in enumerate(self.pushers)]
        while queue:
            ready_at, order, steps = queue[0]
            pusher = self.pushers[order]
            # Record before a pusher that asked for it goes on, and rather than sleep.
            if self.waiting and (pusher in self.waiting or ready_at > time.monotonic()):
                self.record()
                continue
            heapq.heappop(queue)
            pause = ready_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            try:
                wait = next(steps)
            except StopIteration:
                self.waiting.append(pusher)
                if pusher.crash is not None:
                    break
                continue
            if wait is None:
                self.waiting.append(pusher)
                wait = 0.0
            heapq.heappush(queue, (time.monotonic() + wait, order, steps))
        crash = next((p.crash for p in self.pushers if p.crash is not None), None)
        if crash is not None:
            # Stop the others where they stand: between answered requests,
            # so nothing of theirs is in doubt; record what they pushed.
            for _, order, steps in queue:
                steps.close()
                self.pushers[order].stopped = True
                if self.pushers[order] not in self.waiting:
                    self.waiting.append(self.pushers[order])
        self.record()
        if crash is not None:
            raise crash

    def record(self) -> None:
        group, self.waiting = self.waiting, []
        if not group:
            return
        landed = _record(group)
        for pusher, messages in zip(group, landed, strict=True):
            if messages:
                signals.post_push.send(
                    sender=ChatSession, session=pusher.session, messages=messages
                )
            if pusher.finished and pusher.error is not None:
                _report_failure(pusher.session, pusher.error, pusher.result)
        done = [p for p in group if p.done]
        self.locks.release(p.session.pk for p in done)
        # After the unlock: a push scheduled while we held the lock found it
        # busy and gave up; the messages it was for committed before that.
        _read_outcome([p.result for p in done if p.succeeded])


def _record(pushers: list[_Pusher]) -> list[list[ChatMessage]]:
    """Record the pushers' progress in one transaction; returns the messages each had confirmed.

    The same few statements whatever the number of sessions: the confirmed
    messages become synced, then the sessions' rows get their new mark
    (cleared, or kept where an ambiguous POST could not be settled) and, for
    runs that finished, their sync state.
    """
    now = timezone.now()
    confirmed = [p for p in pushers if p.confirmed]
    marks = _group_by_value(
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
        contexts = _group_by_value((p.session.pk, p.context_sent) for p in sent)
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
    ids = [m.pk for p in confirmed for m in p.chunk[: p.confirmed]]
    for start in range(0, len(ids), _UPDATE_BATCH):
        ChatMessage.objects.filter(pk__in=ids[start : start + _UPDATE_BATCH]).update(
            sync_state=MessageSyncState.SYNCED, synced_at=now
        )
    # Should we stop before the sessions' update, a mark is left over synced
    # messages: the next run finds nothing pending under it, and clears it.
    _update_sessions([p.session.pk for p in pushers], rows)
    landed = []
    for pusher in pushers:
        session = pusher.session
        messages, pusher.chunk = pusher.chunk[: pusher.confirmed], pusher.chunk[pusher.confirmed :]
        pusher.confirmed = 0
        for message in messages:
            message.sync_state, message.synced_at = MessageSyncState.SYNCED, now
        landed.append(messages)
        if not pusher.unsettled:
            session.inflight_through = None if pusher.done else pusher.next_mark
        pusher.next_mark = None
        if messages:
            session.last_pushed_at = now
        if pusher.sent_context:
            session.context_pending = session.context != pusher.context_sent
            pusher.context_sent, pusher.sent_context = None, False
    return landed


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
        seen = _group_by_value((p.session.pk, p.seen) for p in plain)
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
            values = _failure(pusher.session, pusher.error, pusher.result, now)
            if pusher.rebuild and values["sync_state"] == SyncState.RETRYING:
                # Retried like any transient failure, and rebuilt first.
                values["sync_state"] = pusher.result.state = SyncState.IN_DOUBT
            for name, value in values.items():
                cases[name].append(
                    When(pk=pusher.session.pk, then=Value(value, output_field=fields[name]))
                )
    return {
        name: Case(*whens, default=F(name), output_field=fields[name])
        for name, whens in cases.items()
    }


def _update_sessions(keys: list[int], fields: dict[str, Any]) -> None:
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


def _group_by_value(pairs: Iterable[tuple[int, Any]]) -> dict[Any, list[int]]:
    """Session keys grouped by a value, for one ``WHEN pk IN (...)`` per value."""
    groups: dict[Any, list[int]] = {}
    for pk, value in pairs:
        groups.setdefault(value, []).append(pk)
    return groups


def _read_outcome(results: list[PushResult]) -> None:
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


def landed_count(
    before: WindowState | None,
    after: WindowState,
    earlier: list[Pair],
    inflight: list[Pair],
    *,
    window: int,
) -> Observed:
    """What a window read after an ambiguous write says about the in-flight messages.

    ``before`` is the server just before the one POST that carried them all
    (one LPUSH: all of them landed or none), or None when an earlier run sent
    them, maybe in several POSTs (any prefix may have landed). ``earlier`` is
    our history just before them. Each possible outcome is checked against
    everything the server shows, and the write is settled only when exactly
    one fits (the rule table is in docs/sync.md):

    * content: the window is the newest part of the server's list, so it is a
      tail of ``earlier + inflight[:k]`` (an empty window: nothing landed);
    * length, when ``before`` is known: with no compaction since (the same
      tokens) the list grew by exactly ``k``; a compaction that ended since
      (more tokens) can only have been started by our batch, so the list
      then went past the window (``before.length + k > window``).

    When the length rules out every outcome the content allows, the content
    alone decides if it allows exactly one (a compaction caught half-way),
    unless the window is empty where it was not: the server lost the
    session (cannot tell). When no outcome fits at all,
    another client wrote meanwhile: the longest prefix whose end the window
    holds decides, unless those messages repeat our earlier ones.
    Several outcomes fitting, as in a conversation that repeats itself
    ("ok" / "ok"), is "cannot tell" (``landed=None``): never a guess.
    """
    candidates = [0, len(inflight)] if before is not None else list(range(len(inflight) + 1))
    messages = list(after.messages)
    # An empty window: whatever landed would show (a compaction keeps half the window).
    by_content = [
        k for k in candidates if (messages or not k) and _is_tail(messages, earlier + inflight[:k])
    ]
    fits, why = by_content, "content"
    if before is not None:
        if after.tokens != before.tokens:
            fits = [k for k in fits if before.length + k > window]
            why = "content and a compaction since"
        else:
            fits = [k for k in fits if after.length == before.length + k]
            why = "content and the window's length"
    if len(fits) == 1:
        return Observed(fits[0], why)
    if len(fits) > 1:
        return Observed(None, f"{len(fits)} outcomes fit the window")
    if before is not None and before.length and not messages:
        return Observed(None, "the server lost the session")
    if len(by_content) == 1:
        # The length moved otherwise (a compaction caught half-way): the content still tells.
        return Observed(by_content[0], "content alone")
    if by_content:
        return Observed(None, f"{len(by_content)} outcomes fit the window")
    matches = [k for k in candidates if k and _ends_in(messages, inflight[:k])]
    if not matches:
        return Observed(0, "another writer: none of our messages is in the window")
    if set(inflight[: max(matches)]) & set(earlier):
        # Our earlier messages say the same: what the window holds may be theirs.
        return Observed(None, "another writer, and our messages repeat")
    return Observed(max(matches), "another writer: our messages' end is in the window")


def _ends_in(window: list[Pair], prefix: list[Pair]) -> bool:
    """Whether the window holds ``prefix``'s end, matched back to its start or the window's."""
    k = len(prefix)
    for end in range(len(window) - 1, -1, -1):
        span = min(end + 1, k)
        if window[end - span + 1 : end + 1] == prefix[k - span : k]:
            return True
    return False


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
    result.error = redaction.error_text(exc)
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
            client.delete_memory(session.remote_id, namespace=session.namespace or None)
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
            client.delete_memory(session.remote_id, namespace=session.namespace or None)
        except MotorheadError as exc:
            return redaction.error_text(exc)
        ChatSession.objects.filter(pk=session_pk).update(
            sync_state=SyncState.DRIFTED,
            drift="deleted on the server by an operator; resync or rehydrate to restore it",
        )
    return ""


def due_sessions(limit: int | None = None) -> list[int]:
    """Primary keys of sessions whose push is due (served by a partial index)."""
    query = ChatSession.objects.to_push().attempt_due().order_by("next_attempt_at", "pk")
    keys = query.values_list("pk", flat=True)
    return list(keys[:limit] if limit else keys)


def drain(
    session_pks: list[int] | None = None,
    *,
    client: MotorheadClient | None = None,
    progress: Callable[[int, int, PushResult], object] | None = None,
    wait: bool = True,
) -> list[PushResult]:
    """Push every pending session now, ignoring back-off times (for the command)."""
    if session_pks is None:
        session_pks = list(
            ChatSession.objects.to_push().order_by("pk").values_list("pk", flat=True)
        )
    results: list[PushResult] = []
    client = client or get_client()
    for start in range(0, len(session_pks), PASS_SIZE):
        for result in push_sessions(
            session_pks[start : start + PASS_SIZE], client=client, wait=wait
        ):
            results.append(result)
            if progress is not None:
                progress(len(results), len(session_pks), result)
    return results
