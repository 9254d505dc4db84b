"""The sync engine as the management commands call it: the one place they reach it.

Each verb is a call to the façade (:mod:`motorhead_django.engine`), each
selection a queryset or a façade query. The commands see :class:`Outcome` and
nothing of the engine's :class:`~motorhead_django.engine.Result`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db.models import QuerySet

from motorhead_django import engine
from motorhead_django.models import ChatSession
from motorhead_django.states import SyncState


@dataclass(frozen=True)
class Outcome:
    """What one step did to one session, in the words a command prints."""

    session_pk: int
    said: str  # "2 message(s) in 1 batch(es)", "in step", the error...
    failed: bool = False
    left: bool = False  # the push: something is still not on the server
    pushed: int = 0
    drift: str = ""  # the verify: what differs


Each = Callable[[Outcome], None]


# -- which sessions each verb takes when no --session is given ----------------------------


def to_push(*, include_failed: bool = False) -> list[int]:
    states = [SyncState.PENDING, SyncState.RETRYING, SyncState.IN_DOUBT]
    if include_failed:
        states.append(SyncState.FAILED)
    return _keys(ChatSession.objects.filter(sync_state__in=states))


def to_pull() -> list[int]:
    """The active sessions (pull and verify)."""
    return engine.active_sessions()


def to_rehydrate(*, drifted_only: bool = False) -> list[int]:
    query = ChatSession.objects.filter(delete_requested_at__isnull=True).exclude(
        sync_state=SyncState.LOCAL
    )
    if drifted_only:
        query = query.filter(sync_state=SyncState.DRIFTED)
    return _keys(query)


def _keys(query: QuerySet[ChatSession]) -> list[int]:
    return list(query.order_by("pk").values_list("pk", flat=True))


# -- the verbs: each runs over ``keys`` in order and calls ``each`` after every session ---


def push(keys: list[int], each: Each) -> None:
    """Push synchronously, in order, ignoring back-off times."""

    def pushed(index: int, total: int, result: engine.Result) -> None:
        if result.busy:
            said = "busy (another worker is pushing it)"
        elif result.error:
            said = f"{result.state}: {result.error}"
        else:
            said = f"{result.pushed} message(s) in {result.batches} batch(es)"
        failed = bool(result.busy or result.error)
        left = failed or result.state == SyncState.PENDING
        each(Outcome(result.session_pk, said, failed, left, pushed=result.pushed))

    engine.drain(keys, progress=pushed)


def pull(keys: list[int], each: Each) -> None:
    for pk in keys:
        result = engine.pull(pk)
        error = result.error or ("busy" if result.busy else "")
        said = error or f"{result.pulled} new message(s)" + (
            f"; drift: {result.drift}" if result.drift else ""
        )
        each(Outcome(pk, said, failed=bool(error), left=bool(error)))


def verify(keys: list[int], each: Each) -> None:
    """Compare with the server; a session that differs is marked drifted."""
    for pk in keys:
        result = engine.verify(pk)
        if result.error:
            each(Outcome(pk, result.error, failed=True, left=True))
            continue
        drift = result.drift
        each(Outcome(pk, f"drifted: {drift}" if drift else "in step", drift=drift))


def rehydrate(keys: list[int], each: Each) -> None:
    """Rebuild each session on the server from its latest summary and newest window."""
    for pk in keys:
        result = engine.rehydrate(pk)
        error = result.error or ("busy" if result.busy else "")
        said = error or (
            f"{result.pushed} message(s)" + (" and the summary" if result.summary else "")
        )
        each(Outcome(pk, said, failed=bool(error), left=bool(error)))
