"""One session's push within a pass: batches in order, paced, every ambiguous write settled.

The pusher owns its state; the pass (:mod:`.passes`) drives its ``run``
generator and :mod:`.bookkeeping` writes what it reports. The guarantees are
listed in :mod:`.passes` and docs/sync.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Iterator
from datetime import datetime
from typing import Any

from motorhead_django import redact, signals
from motorhead_django.client import Memory as RemoteMemory
from motorhead_django.client import MotorheadClient
from motorhead_django.conf import motorhead_settings
from motorhead_django.exceptions import (
    CompactionTimeout,
    MotorheadError,
    WindowTooLarge,
    may_have_applied,
)
from motorhead_django.models import ChatMessage, ChatSession
from motorhead_django.states import MessageSyncState, SyncState

from . import bookkeeping
from .pacing import check_server_window, send_window
from .results import PushResult
from .settle import Pair, WindowState, _is_over, landed_count

# The name operators' logging settings know, and redaction.LOGGERS filters.
logger = logging.getLogger("motorhead_django.sync")


class _Deferred(Exception):
    """A run that may not wait met a compaction: it stops there, the rest stays pending."""


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

    # Pending messages read at a time for one session.
    READ_CHUNK = 1000

    def take_chunk(self, chunk: list[ChatMessage]) -> None:
        self.chunk, self.confirmed, self.complete = chunk, 0, len(chunk) < self.READ_CHUNK
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
            self.take_chunk(list(pending.chronological()[: self.READ_CHUNK]))

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

    def marked(self, mark: int) -> None:
        """The pass wrote this run's first in-flight mark."""
        self.session.inflight_through = mark

    def stop(self) -> None:
        """Another session's run crashed: this one stops between answered requests."""
        self.stopped = True

    def failure(self, now: datetime) -> dict[str, Any]:
        """The session's fields after this run failed; the run's result says the same."""
        assert self.error is not None
        values = bookkeeping.failure(self.session, self.error, self.result, now)
        if self.rebuild and values["sync_state"] == SyncState.RETRYING:
            # Retried like any transient failure, and rebuilt first.
            values["sync_state"] = self.result.state = SyncState.IN_DOUBT
        return values

    def recorded(self, now: datetime) -> list[ChatMessage]:
        """Take in that the pass recorded this run's progress; returns the messages it confirmed.

        The pass wrote the rows (:func:`bookkeeping.record`); only the pusher
        moves its own state on: the confirmed prefix leaves the chunk, the
        mark and the context are what the rows now say.
        """
        session = self.session
        messages, self.chunk = self.chunk[: self.confirmed], self.chunk[self.confirmed :]
        self.confirmed = 0
        for message in messages:
            message.sync_state, message.synced_at = MessageSyncState.SYNCED, now
        if not self.unsettled:
            session.inflight_through = None if self.done else self.next_mark
        self.next_mark = None
        if messages:
            session.last_pushed_at = now
        if self.sent_context:
            session.context_pending = session.context != self.context_sent
            self.context_sent, self.sent_context = None, False
        return messages

    @property
    def done(self) -> bool:
        return self.finished or self.stopped

    @property
    def succeeded(self) -> bool:
        return self.finished and self.error is None and self.crash is None
