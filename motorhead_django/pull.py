"""The pull side of the sync: the server's window and summary back into Django.

Motorhead changes on its own: it summarises and trims, other clients write to
it, its Redis can be flushed. A pull reads one session's window and:

* brings messages other clients wrote into the local history, at their place
  in the server's order, as ``origin=remote`` and ``synced``;
* takes the server's ``context`` and ``tokens``, and keeps every summary
  version it sees in :class:`~motorhead_django.models.SummaryVersion`;
* reports drift: our messages missing from the window, or an empty server.

The server has no message ids, so the window is matched with our history by
content (as :func:`motorhead_django.sync.landed_prefix` does); docs/pull.md
says what this can and cannot decide. A pull holds the same per-session lock
as the push, so the two never interleave on a session.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from . import memory, redact, redaction, signals, states
from .client import Memory as RemoteMemory
from .client import MotorheadClient, get_client
from .conf import motorhead_settings
from .exceptions import MotorheadError, MotorheadSessionExistsError, MotorheadValidationError
from .locks import locked_session
from .models import ChatMessage, ChatSession, SummaryVersion, parse_server_id
from .querysets import ChatMessageQuerySet
from .states import MessageOrigin, MessageSyncState, SyncState

logger = logging.getLogger(__name__)

# Renumbered rows pass through this range, clear of every real sequence, so the
# (session, sequence) unique constraint holds after each statement.
_PARKING_OFFSET = 1 << 40

Pair = tuple[str, str]

ROLE_MAX_LENGTH = ChatMessage._meta.get_field("role").max_length or 255


@dataclass
class Comparison:
    """How the server's window lines up with our synced history."""

    # Messages only the server has, each with the local sequence it follows.
    extras: list[tuple[int, Pair]] = field(default_factory=list)
    missing: int = 0  # our synced messages the window should show and does not
    wiped: bool = False  # the server has nothing, and we have synced messages
    overlap: bool = True  # False: nothing in the window matches our history
    through: int = 0  # newest local sequence matched in the window

    def describe(self, *, with_extras: bool) -> str:
        parts = []
        if self.wiped:
            parts.append("the server has no messages (wiped, flushed or deleted)")
        if self.missing:
            parts.append(f"{self.missing} local message(s) missing from the server's window")
        if not self.overlap:
            parts.append("nothing in the server's window is in the local history")
        if with_extras and self.extras:
            parts.append(f"{len(self.extras)} message(s) on the server not in the local history")
        return "; ".join(parts)


@dataclass
class PullResult:
    session_pk: int
    busy: bool = False
    skipped: str = ""  # why nothing was done (disabled, deleting, in flight)
    added: int = 0
    summary: SummaryVersion | None = None
    drift: str = ""
    error: str = ""
    refused: str = ""  # the server holds text this database cannot store (also in error)


def unstorable(remote: RemoteMemory) -> str:
    """What in the server's answer the local tables cannot hold, or "" when all of it fits."""
    for number, message in enumerate(remote.chronological, start=1):
        for name, value in (("role", message.role), ("content", message.content)):
            problem = memory.text_problem(value)
            if problem is None and name == "role" and len(value) > ROLE_MAX_LENGTH:
                problem = f"At most {ROLE_MAX_LENGTH} characters."
            if problem:
                return f"text this database cannot store (message {number}, {name}): {problem}"
    if remote.context is not None and (problem := memory.text_problem(remote.context)):
        return f"text this database cannot store (the context): {problem}"
    return ""


def compare(window: list[Pair], synced: list[ChatMessage]) -> Comparison:
    """Line up the server's window (oldest first) with our synced history's tail.

    The longest common subsequence of the two, matched as late as possible,
    says which window entries are ours; the others were written by other
    clients and are placed after the nearest earlier match (or before the
    nearest later one).
    """
    result = Comparison()
    if not window:
        result.wiped = bool(synced)
        return result
    tail = synced[-(len(window) + 1) :]
    pairs = redact.pairs(tail)  # as they were sent
    matches = _match(window, pairs)
    if not matches:
        result.overlap = not tail
        after = tail[-1].sequence if tail else 0
        result.extras = [(after, entry) for entry in window]
        return result
    matched = dict(matches)  # window index -> tail index
    first_tail = matches[0][1]
    result.missing = sum(1 for j in range(first_tail, len(tail)) if j not in matched.values())
    result.through = tail[matches[-1][1]].sequence
    anchor = tail[first_tail].sequence - 1  # extras before the first match go before it
    for index, entry in enumerate(window):
        if index in matched:
            anchor = tail[matched[index]].sequence
        else:
            result.extras.append((anchor, entry))
    return result


def _match(window: list[Pair], tail: list[Pair]) -> list[tuple[int, int]]:
    """LCS of two short lists, as (window index, tail index), preferring late matches."""
    rows, cols = len(window), len(tail)
    table = [[0] * (cols + 1) for _ in range(rows + 1)]
    for i in range(rows):
        for j in range(cols):
            if window[i] == tail[j]:
                table[i + 1][j + 1] = table[i][j] + 1
            else:
                table[i + 1][j + 1] = max(table[i][j + 1], table[i + 1][j])
    matches, i, j = [], rows, cols
    while i and j:
        if window[i - 1] == tail[j - 1] and table[i][j] == table[i - 1][j - 1] + 1:
            matches.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif table[i - 1][j] >= table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return matches[::-1]


def pull_session(session_pk: int, *, client: MotorheadClient | None = None) -> PullResult:
    """Bring one session's server window, context and tokens into the local record."""
    result = PullResult(session_pk)
    if not motorhead_settings.SYNC_ENABLED:
        result.skipped = "disabled"
        return result
    with locked_session(session_pk) as (acquired, session):
        if not acquired:
            result.busy = True
            return result
        if session is None or session.delete_requested_at is not None:
            result.skipped = "deleted"
            return result
        try:
            remote = (client or get_client()).get_memory(session.remote_id)
        except MotorheadError as exc:
            result.error = redaction.error_text(exc)
            logger.warning("Pull of %s failed: %s", session, result.error)
            return result
        problem = unstorable(remote)
        if problem:
            # Storing it would fail half-way on PostgreSQL (or store text SQLite
            # cannot read back): keep what we have and say why.
            result.error = result.refused = f"the server's window holds {problem}"
            logger.warning("Pull of %s refused: %s", session, result.error)
            return result
        added = _apply(session, remote, result)
    signals.post_pull.send(sender=ChatSession, session=session, added=added, summary=result.summary)
    if result.drift:
        signals.drift_found.send(sender=ChatSession, session=session, drift=result.drift)
    return result


def _apply(session: ChatSession, remote: RemoteMemory, result: PullResult) -> list[ChatMessage]:
    window = [(m.role, m.content) for m in remote.chronological]
    now = timezone.now()
    added: list[ChatMessage] = []
    with transaction.atomic():
        # Writers update this row first, so holding it orders us with them.
        locked = ChatSession.objects.select_for_update().get(pk=session.pk)
        if locked.inflight_through is not None:
            # A push may have landed a batch we have not confirmed: the next push
            # settles it; until then its messages would look like extras.
            result.skipped = "in flight"
            comparison = Comparison()
        else:
            tail = _synced(locked).newest(len(window) + 1)
            comparison = compare(window, tail)
            if comparison.extras:
                added = _insert(locked, comparison.extras, now)
                # Sequences moved: the newest synced message is the window's end.
                comparison.through = _synced(locked).newest(1)[-1].sequence
            elif comparison.through:
                comparison.through = tail[-1].sequence
        updates: dict[str, object] = {"last_pulled_at": now}
        if motorhead_settings.SUMMARIZES_LOCALLY:
            pass  # CONTEXT_OWNER "local": the built-in summariser writes context and tokens
        elif remote.context is not None and not locked.context_pending:
            # A null never replaces a real summary; "NONE" is kept as the server said it.
            updates["context"] = remote.context
        if remote.tokens and not motorhead_settings.SUMMARIZES_LOCALLY:
            # 0 is what a server that lost the key, or a hosted one without the
            # field, reports: it never replaces a count we have.
            updates["tokens"] = remote.tokens
        if (
            remote.context is not None or remote.tokens
        ) and not motorhead_settings.SUMMARIZES_LOCALLY:
            result.summary = _record_summary(locked, remote, comparison.through, now)
        result.drift = comparison.describe(with_extras=False)
        if result.skipped:
            pass  # nothing can be said about drift until the push settled its batch
        elif result.drift and locked.sync_state in states.MIRRORED:
            updates.update(sync_state=SyncState.DRIFTED, drift=result.drift)
        elif not result.drift and locked.sync_state == SyncState.DRIFTED:
            updates.update(sync_state=SyncState.SYNCED, drift="")
        ChatSession.objects.filter(pk=session.pk).update(**updates)
    session.refresh_from_db()
    result.added = len(added)
    return added


def _synced(session: ChatSession) -> ChatMessageQuerySet:
    return session.messages.filter(sync_state=MessageSyncState.SYNCED)


def _insert(
    session: ChatSession, extras: list[tuple[int, Pair]], now: datetime
) -> list[ChatMessage]:
    """Insert the server-only messages after their anchors, moving later local ones down."""
    groups: dict[int, list[Pair]] = defaultdict(list)
    for anchor, pair in extras:
        groups[anchor].append(pair)
    anchors = sorted(groups)

    def shift(sequence: int) -> int:  # inserted messages that go before this local one
        return sum(len(groups[a]) for a in anchors if a < sequence)

    later = session.messages.filter(sequence__gt=anchors[0])
    moving = list(later.order_by("sequence"))
    if moving:
        later.update(sequence=F("sequence") + _PARKING_OFFSET)
        for message in moving:
            message.sequence += shift(message.sequence)
        ChatMessage.objects.bulk_update(moving, ["sequence"])
    rows = [
        ChatMessage(
            session=session,
            sequence=anchor + shift(anchor) + offset,
            role=role,
            content=content,
            origin=MessageOrigin.REMOTE,
            sync_state=MessageSyncState.SYNCED,
            synced_at=now,
        )
        for anchor in anchors
        for offset, (role, content) in enumerate(groups[anchor], start=1)
    ]
    ChatMessage.objects.bulk_create(rows)
    ChatSession.objects.filter(pk=session.pk).update(last_sequence=F("last_sequence") + len(rows))
    return rows


def _record_summary(
    session: ChatSession, remote: RemoteMemory, through: int, now: datetime
) -> SummaryVersion | None:
    latest = session.summaries.order_by("-pulled_at", "-pk").first()
    if latest is not None and (latest.context, latest.tokens) == (remote.context, remote.tokens):
        return None
    return SummaryVersion.objects.create(
        session=session,
        context=remote.context,
        tokens=remote.tokens,
        through_sequence=through,
        pulled_at=now,
    )


def verify_session(session_pk: int, *, client: MotorheadClient | None = None) -> str:
    """Compare the server's window with our history; mark the session drifted if they differ.

    Read-only on the server and on the messages. Returns what differs ("" when
    nothing does, or when the session cannot be checked now: busy, pending work).
    Raises :class:`MotorheadError` when the server cannot be read.
    """
    with locked_session(session_pk) as (_, session):
        if session is None or session.inflight_through is not None:
            return ""
        if session.sync_state not in states.MIRRORED:
            return ""  # pending work first: the push is about to change the window
        remote = (client or get_client()).get_memory(session.remote_id)
        window = [(m.role, m.content) for m in remote.chronological]
        drift = compare(window, _synced(session).newest(len(window) + 1)).describe(with_extras=True)
        now = timezone.now()
        if drift:
            ChatSession.objects.filter(pk=session_pk, sync_state=session.sync_state).update(
                sync_state=SyncState.DRIFTED, drift=drift, last_pulled_at=now
            )
            logger.warning("Session %s drifted: %s", session, drift)
            signals.drift_found.send(sender=ChatSession, session=session, drift=drift)
        else:
            ChatSession.objects.filter(pk=session_pk).update(last_pulled_at=now)
    return drift


def active_sessions(limit: int | None = None) -> list[int]:
    """Synced or drifted sessions written within ``ACTIVE_PERIOD``, least recently pulled first."""
    since = timezone.now() - timedelta(seconds=motorhead_settings.ACTIVE_PERIOD)
    query = (
        ChatSession.objects.mirrored()
        .filter(updated_at__gte=since)
        .order_by(F("last_pulled_at").asc(nulls_first=True), "pk")
        .values_list("pk", flat=True)
    )
    return list(query[:limit] if limit else query)


def remote_session_ids(
    client: MotorheadClient, namespace: str | None, *, size: int = 1000
) -> Iterator[list[str]]:
    """Every page of ``GET /sessions`` for one namespace (``None``: the un-namespaced set).

    The server refuses pages past 100, so ``size`` bounds what can be listed:
    a full 100th page raises rather than silently stopping short.
    """
    for page in range(1, 101):
        ids = client.list_sessions(page=page, size=size, namespace=namespace)
        if ids:
            yield ids
        if len(ids) < size:
            return
    raise MotorheadError(
        f"more than {100 * size} sessions in namespace {namespace!r}: "
        "the server lists at most 100 pages; use a larger page size"
    )


@dataclass
class ImportResult:
    imported: int = 0
    skipped: int = 0  # imported by an earlier run (resumable)
    refused: list[str] = field(default_factory=list)  # ids this app cannot hold
    stopped: str = ""  # why the run stopped early; run it again to resume


def import_sessions(
    namespaces: list[str],
    *,
    page_size: int = 1000,
    refresh: bool = False,
    owner: Any = None,
    client: MotorheadClient | None = None,
    progress: Callable[[str, int, int, str, int], object] | None = None,
) -> ImportResult:
    """Bring every session the server lists in ``namespaces`` into Django, resumably.

    A server id ``u<pk>:<id>`` (what this app names a user's session by) comes back
    as that user's session ``<id>`` (with ``owner`` given, only when it is that user:
    any other is refused, listed in ``refused``); any other id becomes a session of ``owner``
    (default: none) that keeps the server's id. A session imported before (it has
    been pulled) is skipped unless ``refresh``. The run stops at the first session
    it cannot pull, so a rerun resumes there. ``progress(namespace, index, total,
    session_id, added)`` is called after each session.
    """
    client = client or get_client()
    result = ImportResult()
    for namespace in dict.fromkeys(namespaces):
        # A session written during the listing moves to the last page: count it once.
        pages = remote_session_ids(client, namespace or None, size=page_size)
        ids = list(dict.fromkeys(remote_id for page in pages for remote_id in page))
        known = dict(
            ChatSession.objects.filter(namespace=namespace, remote_id__in=ids).values_list(
                "remote_id", "last_pulled_at"
            )
        )
        for index, remote_id in enumerate(ids, start=1):
            if known.get(remote_id) is not None and not refresh:
                result.skipped += 1
                continue
            try:
                session = _imported_session(remote_id, namespace, owner)
            except MotorheadValidationError as exc:
                result.refused.append(f"{remote_id!r}: {exc}")
                continue
            pulled = pull_session(session.pk, client=client)
            if pulled.refused:
                # Nothing a rerun can change: say so and go on with the others.
                result.refused.append(f"{remote_id!r}: {pulled.refused}")
                continue
            if pulled.error or pulled.busy:
                why = pulled.error or "busy (a worker holds its lock)"
                result.stopped = f"stopped at {remote_id!r}: {why}"
                return result
            result.imported += 1
            if progress is not None:
                progress(namespace, index, len(ids), remote_id, pulled.added)
    return result


def _imported_session(remote_id: str, namespace: str, owner: Any) -> ChatSession:
    """The local session of a server id, created (through the core) when missing."""
    found = ChatSession.objects.filter(remote_id=remote_id).first()
    if found is not None and found.namespace != namespace:
        # Motorhead lists one conversation under every namespace it was posted with.
        raise MotorheadValidationError(
            {
                "session_id": "Already held here under namespace "
                f"{found.namespace!r}: the server keeps one conversation per id, "
                "whatever the namespace."
            }
        )
    if found is not None:
        return found
    owner_pk, session_id = parse_server_id(remote_id)
    if owner_pk is not None and owner is not None and owner_pk != owner.pk:
        # The id names another user's session; whose it really is (this app's session
        # of user owner_pk, or an older app's thread) only the operator can tell.
        raise MotorheadValidationError(
            {
                "session_id": f"The id names user {owner_pk}'s session (u<user id>:…), "
                "not the --owner's: not given to either. Import it without --owner to "
                f"give it to user {owner_pk}."
            }
        )
    if owner_pk is not None:
        owner = get_user_model().objects.filter(pk=owner_pk).first()
        if owner is None:
            raise MotorheadValidationError(
                {"session_id": f"Its owner (user {owner_pk}) does not exist here."}
            )
    try:
        return memory.create_session(
            session_id, namespace=namespace, owner=owner, remote_id=remote_id
        )
    except MotorheadSessionExistsError:
        # Created meanwhile under this server id (a concurrent import): that one.
        found = ChatSession.objects.filter(namespace=namespace, remote_id=remote_id).first()
        if found is None:  # the owner already has another session with this id, or the
            # server id is held under another namespace (created meanwhile)
            raise
        return found
