"""The sync engine's one interface: what the tasks, views, commands, admin and adapters call.

Each operation takes primary keys (or sessions), holds the session's lock
(:mod:`.locks`, one helper for all of them) while it talks to the server, and
returns one :class:`Result`. Everything else in this package is internal:

* :mod:`.passes` runs pushes in passes; :mod:`.pusher` is one session's push,
  :mod:`.settle` decides ambiguous writes, :mod:`.pacing` waits for the
  server's compaction, :mod:`.bookkeeping` records a pass's progress;
* :mod:`.pulling`, :mod:`.verifying`, :mod:`.compare` bring the server's side back;
* :mod:`.rehydration`, :mod:`.resyncing`, :mod:`.deletion` rebuild or remove the
  server's copy; :mod:`.imports` brings the server's sessions in.

docs/architecture.md draws the layers; docs/sync.md and docs/pull.md state
the guarantees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from django.db.models import Count

from motorhead_django import memory, redaction
from motorhead_django.client import MotorheadClient
from motorhead_django.exceptions import MotorheadError
from motorhead_django.models import ChatMessage, ChatSession

from . import deletion as _delete
from . import imports as _imports
from . import passes as _passes
from . import pulling as _pull
from . import records
from . import rehydration as _rehydrate
from . import resyncing as _resync
from . import verifying as _verify
from .results import PushResult, Result, Scope

__all__ = [
    "PASS_SIZE",
    "Result",
    "Scope",
    "active_sessions",
    "defer",
    "delete",
    "due_deletions",
    "due_pushes",
    "import_sessions",
    "pull",
    "push",
    "push_pass",
    "rehydrate",
    "resync",
    "verify",
]

#: Sessions one push pass takes (the sweep enqueues passes of this size).
PASS_SIZE = _passes.PASS_SIZE

SessionRef = ChatSession | int


def _pk(session: SessionRef) -> int:
    return session if isinstance(session, int) else session.pk


def _pending_counts(keys: list[int]) -> dict[int, int]:
    """Messages still waiting for a push, per session (one query)."""
    rows = (
        ChatMessage.objects.pending()
        .filter(session_id__in=keys)
        .values_list("session_id")
        .annotate(count=Count("pk"))
    )
    return dict(rows)


def _push_result(run: PushResult, pending: int, action: str = "push") -> Result:
    if run.state == "disabled":
        outcome = "sync is disabled"
    elif run.busy:
        outcome = "busy: another worker holds the session"
    elif run.error:
        outcome = f"failed: {run.error}"
    elif run.deferred:
        outcome = f"pushed {run.pushed}; the rest waits for the server's compaction"
    else:
        outcome = f"pushed {run.pushed}"
    return Result(
        action,
        run.session_pk,
        done=not (run.busy or run.error or run.state == "disabled"),
        outcome=outcome,
        pushed=run.pushed,
        pending=pending,
        state=run.state,
        error=run.error,
        busy=run.busy,
        retry_at=run.retry_at,
        more=run.more,
        deferred=run.deferred,
        notes=tuple(run.resolved),
        batches=run.batches,
    )


def push(
    session: SessionRef, *, client: MotorheadClient | None = None, wait: bool = True
) -> Result:
    """Push a session's pending messages (and context), in order, exactly once each.

    ``wait=False`` (a push inside a web request) never sleeps on the server's
    compaction: the rest is left pending and the result says ``deferred``.
    """
    return push_pass([_pk(session)], client=client, wait=wait)[0]


def push_pass(
    sessions: Iterable[SessionRef], *, client: MotorheadClient | None = None, wait: bool = True
) -> list[Result]:
    """Push several sessions in one pass (shared bookkeeping); one result per distinct key."""
    runs = _passes.push_sessions([_pk(s) for s in sessions], client=client, wait=wait)
    pending = _pending_counts([run.session_pk for run in runs])
    return [_push_result(run, pending.get(run.session_pk, 0)) for run in runs]


def drain(
    sessions: list[int] | None = None,
    *,
    client: MotorheadClient | None = None,
    progress: Callable[[int, int, Result], object] | None = None,
    wait: bool = True,
) -> list[Result]:
    """Push every session with something to push now (or ``sessions``), ignoring back-off."""
    report = None
    if progress is not None:

        def report(done: int, total: int, run: PushResult) -> None:
            progress(done, total, _push_result(run, 0))

    runs = _passes.drain(sessions, client=client, progress=report, wait=wait)
    pending = _pending_counts([run.session_pk for run in runs])
    return [_push_result(run, pending.get(run.session_pk, 0)) for run in runs]


def pull(session: SessionRef, *, client: MotorheadClient | None = None) -> Result:
    """Bring the server's window, summary and tokens in; report drift."""
    pk = _pk(session)
    run = _pull.pull_session(pk, client=client)
    outcome = run.skipped or ("busy" if run.busy else run.error or f"pulled {run.added}")
    return Result(
        "pull",
        pk,
        done=not (run.busy or run.error or run.skipped),
        outcome=outcome,
        pulled=run.added,
        pending=_pending_counts([pk]).get(pk, 0),
        error=run.error,
        busy=run.busy,
        drift=run.drift,
        notes=(f"skipped: {run.skipped}",) if run.skipped else (),
        summary=run.summary is not None,
    )


def verify(session: SessionRef, *, client: MotorheadClient | None = None) -> Result:
    """Compare the server's window with our history; a drifted session is marked so."""
    pk = _pk(session)
    try:
        drift = _verify.verify_session(pk, client=client)
    except MotorheadError as exc:
        error = redaction.error_text(exc)
        return Result("verify", pk, outcome=f"failed: {error}", error=error)
    return Result("verify", pk, done=True, outcome=drift or "no drift", drift=drift)


def resync(session: SessionRef, *, client: MotorheadClient | None = None) -> Result:
    """Replace the server's copy with the whole local history, paced from the start."""
    pk = _pk(session)
    run = _resync.resync_session(pk, client=client)
    return _push_result(run, _pending_counts([pk]).get(pk, 0), action="resync")


def rehydrate(session: SessionRef, *, client: MotorheadClient | None = None) -> Result:
    """Rebuild the server's copy from the latest summary and the newest window (quick)."""
    pk = _pk(session)
    run = _rehydrate.rehydrate_session(pk, client=client)
    return Result(
        "rehydrate",
        pk,
        done=not (run.busy or run.error),
        outcome="busy" if run.busy else run.error or f"sent {run.sent}",
        pushed=run.sent,
        pending=_pending_counts([pk]).get(pk, 0),
        error=run.error,
        busy=run.busy,
        summary=run.context_sent,
    )


def delete(
    session: SessionRef,
    *,
    scope: Scope | None = None,
    client: MotorheadClient | None = None,
) -> Result:
    """Delete a session's copies: ``scope`` says which (default: ``DELETE_REMOTE`` decides).

    * ``LOCAL``: ours goes at once; the server keeps its copy.
    * ``REMOTE``: the server's goes; ours stays, marked drifted until a resync
      or rehydration restores it.
    * ``BOTH``: a live session becomes a tombstone and its remote delete is
      queued (the row goes once the server confirmed); for a tombstone, that
      remote delete runs now (backing off on failure: see ``retry_at``).

    A session under a legal hold raises :class:`MotorheadLegalHoldError`
    (``LOCAL`` and a live session's ``BOTH``: the refusal is the core's).
    """
    pk = _pk(session)
    if scope is Scope.REMOTE:
        error = _delete.delete_on_server(pk, client=client)
        busy = error.startswith("busy")
        return Result(
            "delete",
            pk,
            done=not error,
            outcome=error or "deleted on the server",
            error="" if busy else error,
            busy=busy,
        )
    row = session if isinstance(session, ChatSession) else ChatSession.objects.filter(pk=pk).first()
    if row is None:
        return Result("delete", pk, outcome="gone already")
    if scope is Scope.BOTH and row.delete_requested_at is not None:
        run = _delete.delete_remote(pk, client=client)
        outcome = "deleted" if run.deleted else ("busy" if run.busy else run.error or "kept")
        return Result(
            "delete",
            pk,
            done=run.deleted,
            outcome=outcome,
            error=run.error,
            busy=run.busy,
            retry_at=run.retry_at,
        )
    remote = None if scope is None else scope is Scope.BOTH
    memory.delete_session(row, remote=remote)
    tombstoned = row.delete_requested_at is not None
    return Result(
        "delete",
        pk,
        done=not tombstoned,
        outcome="tombstoned: the server's delete is queued" if tombstoned else "deleted here",
        state=row.sync_state,
    )


def import_sessions(
    namespaces: list[str],
    *,
    page_size: int = 1000,
    refresh: bool = False,
    owner: Any = None,
    client: MotorheadClient | None = None,
    progress: Callable[[str, int, int, str, int], object] | None = None,
) -> Result:
    """Bring every session the server lists in ``namespaces`` in, resumably (see :mod:`.imports`).

    ``sessions`` counts the imported ones; ``error`` says where a run stopped
    (run it again to resume there); ``notes`` lists the ids refused.
    """
    run = _imports.import_sessions(
        namespaces,
        page_size=page_size,
        refresh=refresh,
        owner=owner,
        client=client,
        progress=progress,
    )
    return Result(
        "import",
        0,
        done=not run.stopped,
        outcome=run.stopped or f"imported {run.imported}, skipped {run.skipped}",
        sessions=run.imported,
        error=run.stopped,
        notes=tuple(run.refused),
        skipped=run.skipped,
    )


def defer(sessions: Iterable[int], until: datetime) -> None:
    """Not due again before ``until``: the sweep's hold on what it just enqueued."""
    records.defer_attempts(sessions, until)


def due_pushes(limit: int | None = None) -> list[int]:
    """Keys of sessions whose push is due (served by a partial index)."""
    return _passes.due_sessions(limit)


def due_deletions(limit: int | None = None) -> list[int]:
    """Keys of tombstones whose remote delete is due."""
    return _delete.due_deletions(limit)


def active_sessions(limit: int | None = None) -> list[int]:
    """Mirrored sessions written within ``ACTIVE_PERIOD``, least recently pulled first."""
    return _pull.active_sessions(limit)
