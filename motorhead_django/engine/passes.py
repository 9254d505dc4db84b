"""The push side of the sync: local records to the Motorhead server.

The guarantees and their limits are written down in docs/sync.md. In short:

* one pusher per session at a time (:mod:`.locks`);
* messages go in sequence order, in non-empty batches the server can keep;
* before a segment is sent, its last sequence is recorded (``inflight_through``),
  so that after any failure that may have applied it (timeout, dropped
  connection, 5xx, a killed worker) the server's window is read before
  anything is sent again; what it shows (its length, its summary's progress,
  its content) settles the write only when exactly one outcome fits
  (:func:`.settle.landed_count`); otherwise the session is *in doubt* and the
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
import time
from collections.abc import Callable, Iterable

from django.db.models import Case, F, Value, When, Window
from django.db.models.functions import RowNumber

from motorhead_django import signals
from motorhead_django.client import MotorheadClient, get_client
from motorhead_django.conf import motorhead_settings
from motorhead_django.models import ChatMessage, ChatSession

from . import bookkeeping, records
from .locks import SessionLocks
from .pusher import _Pusher
from .results import PushResult

# Sessions pushed together in one pass by `drain` and the sweep's tasks.
PASS_SIZE = 50


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
    with SessionLocks() as locks:
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


def _read_chunks(pushers: list[_Pusher]) -> None:
    """Each session's first ``_Pusher.READ_CHUNK`` pending messages, in one query."""
    by_session: dict[int, list[ChatMessage]] = {p.session.pk: [] for p in pushers}
    rows = (
        ChatMessage.objects.pending()
        .filter(session_id__in=list(by_session))
        .annotate(
            rank=Window(RowNumber(), partition_by=[F("session_id")], order_by=F("sequence").asc())
        )
        .filter(rank__lte=_Pusher.READ_CHUNK)
        .order_by("session_id", "sequence")
    )
    for message in rows:
        by_session[message.session_id].append(message)
    for pusher in pushers:
        chunk = by_session[pusher.session.pk]
        mark = pusher.session.inflight_through
        if mark is not None and len(chunk) == _Pusher.READ_CHUNK and chunk[-1].sequence < mark:
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
    groups = bookkeeping.group_by_value(marks.items())
    records.update_sessions(
        list(marks),
        {"inflight_through": Case(*(When(pk__in=k, then=Value(v)) for v, k in groups.items()))},
    )
    for pusher in pushers:
        if pusher.session.pk in marks:
            pusher.marked(marks[pusher.session.pk])


class _Pass:
    """Runs the pushers of a pass in turn, recording their progress in groups."""

    def __init__(self, pushers: list[_Pusher], locks: SessionLocks) -> None:
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
                self.pushers[order].stop()
                if self.pushers[order] not in self.waiting:
                    self.waiting.append(self.pushers[order])
        self.record()
        if crash is not None:
            raise crash

    def record(self) -> None:
        group, self.waiting = self.waiting, []
        if not group:
            return
        landed = bookkeeping.record(group)
        for pusher, messages in zip(group, landed, strict=True):
            if messages:
                signals.post_push.send(
                    sender=ChatSession, session=pusher.session, messages=messages
                )
            if pusher.finished and pusher.error is not None:
                bookkeeping.report_failure(pusher.session, pusher.error, pusher.result)
        done = [p for p in group if p.done]
        self.locks.release(p.session.pk for p in done)
        # After the unlock: a push scheduled while we held the lock found it
        # busy and gave up; the messages it was for committed before that.
        bookkeeping.read_outcome([p.result for p in done if p.succeeded])


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
