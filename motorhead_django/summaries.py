"""The built-in summariser: Motorhead's progressive summary, every message exactly once.

When ``MOTORHEAD["SUMMARIZER"]`` is a dict (and this process owns the context,
see ``CONTEXT_OWNER``), the messages that leave a session's window (older than
its newest ``WINDOW_SIZE + 1``) are folded into ``context`` by calls to an
OpenAI-compatible ``/chat/completions`` with Motorhead's prompt: the previous
summary plus the new lines, oldest first, in batches of at most ``BATCH_TOKENS``.

Unlike Motorhead (MOTORHEAD_API.md §4, §7), nothing is skipped or dropped: the
session's ``summarized_through`` is a durable high-water mark, advanced in the
same UPDATE that writes the new context and only over the mark the call started
from. A failed call moves nothing (the task retries it with back-off), writes
that arrive meanwhile are the next batch's, and one summariser runs per session
(a lock, re-checked after release so no write waits for the next one). Every
version is kept in the :class:`~motorhead_django.models.SummaryVersion` timeline.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.db import connections, transaction

from . import llm, memory, redact
from .conf import LLMSettings, motorhead_settings
from .models import ChatSession, SummaryVersion

# Motorhead's prompt (reducer.rs), LangChain's progressive-summary prompt.
PROMPT = """Progressively summarize the lines of conversation provided, adding onto the previous \
summary returning a new summary. If the lines are meaningless just return NONE

EXAMPLE
Current summary:
The human asks who is the lead singer of Motörhead. The AI responds Lemmy Kilmister.

New lines of conversation:
Human: What are the other members of Motörhead?
AI: The original members included Lemmy Kilmister (vocals, bass), Larry Wallis (guitar), and \
Lucas Fox (drums), with notable members throughout the years including "Fast" Eddie Clarke \
(guitar), Phil "Philthy Animal" Taylor (drums), and Mikkey Dee (drums).

New summary:
The human asks who is the lead singer and other members of Motörhead. The AI responds Lemmy \
Kilmister is the lead singer and other original members include Larry Wallis, and Lucas Fox, with \
notable past members including "Fast" Eddie Clarke, Phil "Philthy Animal" Taylor, and Mikkey Dee.
END OF EXAMPLE

Current summary:
{previous}

New lines of conversation:
{lines}

New summary:
"""

# Most messages read for one batch (a batch is usually bounded by BATCH_TOKENS first).
_BATCH_SCAN = 500
# Advisory-lock keys apart from the push locks' (locks.py uses 0x4D48).
_LOCK_BASE = 0x4D53 << 48
_local_locks: dict[int, threading.Lock] = {}
_local_locks_guard = threading.Lock()


@dataclass
class SummaryResult:
    calls: int = 0
    summarized: int = 0
    tokens: int = 0
    busy: bool = False  # another summariser held the session's lock


def outgoing_text(role: str, content: str) -> str:
    """The text of a message as it is sent to the LLM or the embeddings API.

    The one place content leaves for a model: ``MOTORHEAD["REDACT"]`` applies
    here as it does to the push (:func:`motorhead_django.redact.text`).
    """
    return redact.text(role, content)


def approximate_tokens(text: str) -> int:
    """About four characters a token (p50k_base averages close to it for English)."""
    return max(1, math.ceil(len(text) / 4))


def pending_through(session: ChatSession) -> int:
    """The last sequence that has left the window (0 when none has)."""
    return max(0, session.last_sequence - (motorhead_settings.WINDOW_SIZE + 1))


def has_pending(session: ChatSession) -> bool:
    return pending_through(session) > session.summarized_through


def summarize_pending(session_pk: int) -> SummaryResult:
    """Fold every message that left the window and is not yet summarised into the context.

    Raises :class:`~motorhead_django.llm.LLMError` when a call fails; what was
    summarised before it stays, and the next run resumes at the high-water mark.
    """
    result = SummaryResult()
    config = motorhead_settings.BUILTIN_SUMMARIZER
    if config is None:
        return result
    while True:
        with _summary_lock(session_pk) as acquired:
            if not acquired:
                # The holder re-checks after it releases, so this write is not left behind.
                result.busy = True
                return result
            while _step(session_pk, config, result):
                pass
        session = ChatSession.objects.filter(pk=session_pk).first()
        if session is None or not has_pending(session):
            return result


def _step(session_pk: int, config: LLMSettings, result: SummaryResult) -> bool:
    """One summarisation call; False when nothing is left to summarise."""
    session = ChatSession.objects.filter(pk=session_pk).first()
    if session is None or not has_pending(session):
        return False
    start, last = session.summarized_through, pending_through(session)
    rows = list(
        session.messages.filter(sequence__gt=start, sequence__lte=last)
        .order_by("sequence")
        .values_list("sequence", "role", "content")[:_BATCH_SCAN]
    )
    lines: list[str] = []
    used = 0
    through = last if len(rows) < _BATCH_SCAN else rows[-1][0]
    for sequence, role, content in rows:
        line = f"{role}: {outgoing_text(role, content)}"
        cost = approximate_tokens(line)
        # A message larger than the budget goes alone (Motorhead first sends an empty batch).
        if lines and used + cost > config.BATCH_TOKENS:
            through = sequence - 1
            break
        lines.append(line)
        used += cost
    previous = session.context or ""
    text: str | None
    if lines:
        completion = llm.complete(config, PROMPT.format(previous=previous, lines="\n".join(lines)))
        text, spent = completion.text, completion.total_tokens
        result.calls += 1
    else:
        text, spent = session.context, 0  # only deleted messages in the stretch
    with transaction.atomic():
        # The tokens were spent whether or not this summary is kept.
        tokens = memory.record_summary(
            session_pk,
            start=start,
            previous=session.context,
            context=text,
            through=through,
            spent=spent,
        )
        moved = tokens is not None
        if tokens is not None and lines:
            SummaryVersion.objects.create(
                session_id=session_pk, context=text, tokens=tokens, through_sequence=through
            )
    result.tokens += spent
    if moved:
        result.summarized += len(lines)
    # Not moved: the context was replaced meanwhile; the next step summarises onto it.
    return True


@contextmanager
def _summary_lock(session_pk: int) -> Iterator[bool]:
    """One summariser per session: an advisory lock on PostgreSQL, in-process elsewhere."""
    connection = connections["default"]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [_LOCK_BASE + session_pk])
            acquired = bool(cursor.fetchone()[0])
        try:
            yield acquired
        finally:
            if acquired:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [_LOCK_BASE + session_pk])
        return
    with _local_locks_guard:
        lock = _local_locks.setdefault(session_pk, threading.Lock())
    acquired = lock.acquire(blocking=False)
    try:
        yield acquired
    finally:
        if acquired:
            lock.release()
