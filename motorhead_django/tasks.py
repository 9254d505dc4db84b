"""Celery tasks: thin wrappers over the engine's interface (:mod:`motorhead_django.engine`).

The beat schedule lives in :mod:`motorhead_django.schedule`, which settings
can import (this module imports the models and cannot be imported from
settings); ``BEAT_SCHEDULE`` is re-exported here for compatibility.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from celery import shared_task
from django.db import connections
from django.utils import timezone

from . import engine, memory, outbox
from .conf import motorhead_settings
from .exceptions import MotorheadConfigurationError, SessionDrifted
from .models import ChatMessage, ChatSession
from .schedule import BEAT_SCHEDULE  # noqa: F401  (re-exported: import it from .schedule)

logger = logging.getLogger(__name__)

# After a failed enqueue, this process leaves the broker alone for this many
# seconds: a broker outage then costs one slow write per interval (kombu waits
# for its connection retries), not every write. The sweep pushes the rest.
BROKER_RETRY_AFTER = 5.0
# A resync that finds a push holding the session tries again after this many seconds.
RESYNC_RETRY = 2.0
_broker_down_until = 0.0


@shared_task(
    name="motorhead_django.push_session",
    # Late ack: a worker killed mid-push leaves the task to be redelivered;
    # the push is idempotent (see engine/passes.py), so running it twice is safe.
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def push_session(session_pk: int) -> dict[str, Any]:
    """Push one session; the result says what was sent and what is still pending."""
    _require_url("push session", [session_pk])
    # Run inline (eager mode), this is a web request's push: it never waits on
    # the server's compaction; what would have to wait is handed off.
    inline = runs_inline()
    return _follow_up(engine.push(session_pk, wait=not inline), inline=inline)


@shared_task(
    name="motorhead_django.push_sessions",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def push_sessions(session_pks: list[int]) -> dict[str, Any]:
    """One push pass over several sessions (how the sweep sends its work)."""
    _require_url("push sessions", session_pks)
    inline = runs_inline()
    results = [
        _follow_up(result, inline=inline)
        for result in engine.push_pass(session_pks, wait=not inline)
    ]
    return {
        "sessions": len(results),
        "sessions_pushed": sum(1 for result in results if result["pushed"]),
        "pushed": sum(result["pushed"] for result in results),
        "pending": sum(result["pending"] for result in results),
        "errors": sum(1 for result in results if result["error"]),
        "results": results,
    }


class SyncNotConfigured(MotorheadConfigurationError):
    """A push task reached a process that has no ``MOTORHEAD["URL"]``."""


def _require_url(what: str, session_pks: list[int]) -> None:
    """Fail a push task loudly when this process has no URL (a worker configured apart from web)."""
    if motorhead_settings.URL:
        return
    message = (
        f"Cannot {what} {', '.join(map(str, session_pks))}: this process has no "
        'MOTORHEAD["URL"], so the messages stay pending. Give the worker the same '
        "MOTORHEAD settings (and environment) as the web process."
    )
    logger.error(message)
    raise SyncNotConfigured(message)


def _follow_up(result: engine.Result, *, inline: bool = False) -> dict[str, Any]:
    """After a session's push: pull it, and enqueue its retry or the work that arrived meanwhile."""
    if result.deferred:
        # It stopped where it would have waited: a thread finishes it (or the sweep).
        if inline:
            hand_off([result.session_pk])
        return _summary(result)
    pulled = False
    if result.pushed and not result.error and motorhead_settings.PULL_AFTER_PUSH:
        # The server's side back: its summary, what other clients wrote.
        pulled = not engine.pull(result.session_pk).busy
    if result.retry_at is not None:
        schedule_push(result.session_pk, eta=result.retry_at)
    elif result.more or (pulled and _pending_count(result.session_pk)):
        # A push that found our pull holding the lock gave up: do its work.
        schedule_push(result.session_pk)
    return _summary(result)


def _summary(result: engine.Result) -> dict[str, Any]:
    return {
        "session": result.session_pk,
        "pushed": result.pushed,
        "pending": _pending_count(result.session_pk),
        "state": result.state,
        "busy": result.busy,
        "error": result.error,
        "retry_at": result.retry_at.isoformat() if result.retry_at is not None else None,
        "deferred": result.deferred,
    }


def hand_off(session_pks: list[int]) -> threading.Thread:
    """Finish pushes in a background thread, which may wait for the server's compaction.

    In eager mode (no broker) a push runs inside the web request that wrote the
    messages; it stops rather than sleep (``wait=False``) and its rest comes
    here, so the response goes out at once. Should the process end first, the
    messages are still pending: the sweep or ``motorhead_sync`` sends them.
    """

    def finish() -> None:
        try:
            keys = session_pks
            while keys:
                results = engine.push_pass(keys)
                keys = [r.session_pk for r in results if r.more and not r.error]
        except Exception:
            logger.exception("Background push of session(s) %s failed", session_pks)
        finally:
            connections.close_all()

    thread = threading.Thread(target=finish, name="motorhead-push", daemon=True)
    thread.start()
    return thread


@shared_task(name="motorhead_django.summarize_session", ignore_result=True)
def summarize_session(session_pk: int, first: int, last: int) -> None:
    memory.summarize(session_pk, first, last)


def schedule_summary(session_pk: int, first: int, last: int) -> None:
    """Enqueue a local summary; if the broker is down, that stretch stays unsummarised."""
    _enqueue(summarize_session, session_pk, first, last, fallback="it stays unsummarised")


@shared_task(
    bind=True,
    name="motorhead_django.summarize_pending",
    # Idempotent (the high-water mark moves only with the summary): safe to redeliver.
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def summarize_pending(self: Any, session_pk: int) -> dict[str, Any]:
    """The built-in summariser for one session (summaries.py), retried with back-off."""
    from . import summaries

    return _with_llm_retries(
        self,
        session_pk,
        "Summary",
        motorhead_settings.BUILTIN_SUMMARIZER,
        lambda: vars(summaries.summarize_pending(session_pk)),
    )


def _with_llm_retries(
    task: Any, session_pk: int, what: str, config: Any, work: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """Run ``work`` (a call to the LLM or embeddings API); retry a transient error with back-off.

    Nothing is skipped when the retries run out: the next write (or ``motorhead_summarize``)
    resumes where the durable mark stands.
    """
    from .llm import LLMError

    try:
        return {"session": session_pk, **work()}
    except LLMError as exc:
        retries = task.request.retries or 0
        if not exc.transient or config is None or retries >= config.RETRIES:
            logger.warning(
                "%s of session %s failed, left for the next write: %s", what, session_pk, exc
            )
            return {"session": session_pk, "error": str(exc)}
        delay = min(
            motorhead_settings.RETRY_BACKOFF * 2**retries, motorhead_settings.RETRY_BACKOFF_MAX
        )
        raise task.retry(exc=exc, countdown=delay, max_retries=config.RETRIES) from None


def schedule_summarize_pending(session_pk: int) -> None:
    """Enqueue the built-in summariser; if the broker is down, the next write catches up."""
    if runs_inline():
        hand_off_llm(summarize_pending, session_pk)
        return
    _enqueue(summarize_pending, session_pk, fallback="the next write catches up")


@shared_task(
    bind=True,
    name="motorhead_django.embed_pending",
    acks_late=True,  # idempotent: one embedding per message
    reject_on_worker_lost=True,
    ignore_result=True,
)
def embed_pending(self: Any, session_pk: int) -> dict[str, Any]:
    """Embed a session's messages that have no embedding yet (embeddings.py), with back-off."""
    from . import embeddings

    return _with_llm_retries(
        self,
        session_pk,
        "Embedding",
        motorhead_settings.EMBEDDINGS,
        lambda: {"stored": embeddings.embed_pending(session_pk)},
    )


def schedule_embed_pending(session_pk: int) -> None:
    if runs_inline():
        hand_off_llm(embed_pending, session_pk)
        return
    _enqueue(embed_pending, session_pk, fallback="the next write catches up")


# -- eager mode: the LLM's work leaves the request (issue 17) ---------------------------------
# In eager mode an enqueued task runs inside the web request that wrote, and a model
# can take seconds (or minutes, retries included). As with pushes (hand_off), the
# call goes to a background thread. One thread per (task, session): a write that
# arrives while it runs asks it to go once more, instead of starting another.
_llm_runs: dict[tuple[str, int], bool] = {}  # -> another run was asked for meanwhile
_llm_runs_lock = threading.Lock()


def hand_off_llm(task: Any, session_pk: int) -> threading.Thread | None:
    """Run an LLM task (summarize_pending, embed_pending) for a session in a background thread.

    None when a thread already works on it (it runs once more for this write).
    Should the process end first, nothing is lost: the durable marks make the
    next write or ``motorhead_summarize`` resume where the work stopped.
    """
    key = (task.name, session_pk)
    with _llm_runs_lock:
        if key in _llm_runs:
            _llm_runs[key] = True
            return None
        _llm_runs[key] = False

    def run() -> None:
        try:
            while True:
                try:
                    task.apply(args=(session_pk,))
                except Exception:
                    logger.exception("Background %s of session %s failed", task.name, session_pk)
                with _llm_runs_lock:
                    if not _llm_runs.get(key):
                        break
                    _llm_runs[key] = False
        finally:
            with _llm_runs_lock:
                _llm_runs.pop(key, None)
            connections.close_all()

    thread = threading.Thread(target=run, name="motorhead-llm", daemon=True)
    thread.start()
    return thread


@shared_task(name="motorhead_django.sweep", ignore_result=True)
def sweep(limit: int | None = None) -> dict[str, int]:
    """Enqueue every due push and remote delete; says how many sessions of each."""
    limit = limit or motorhead_settings.SWEEP_LIMIT
    keys = engine.due_pushes(limit)
    deletions = engine.due_deletions(limit)
    if not keys and not deletions:
        return {"pushes": 0, "deletes": 0}
    # Not due again until well after this sweep, so a slow queue is not
    # flooded with copies of the same push.
    later = timezone.now() + timedelta(seconds=motorhead_settings.SWEEP_INTERVAL * 2)
    engine.defer(keys + deletions, later)
    # In passes: a pass shares its bookkeeping between its sessions (see engine.push_pass).
    for start in range(0, len(keys), engine.PASS_SIZE):
        _enqueue(push_sessions, keys[start : start + engine.PASS_SIZE])
    for pk in deletions:
        schedule_delete(pk)
    return {"pushes": len(keys), "deletes": len(deletions)}


@shared_task(
    name="motorhead_django.pull_session",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def pull_session(session_pk: int) -> dict[str, Any]:
    result = engine.pull(session_pk)
    if not result.busy and result.pending:
        schedule_push(session_pk)
    skipped = next(
        (n.removeprefix("skipped: ") for n in result.notes if n.startswith("skipped")), ""
    )
    return {
        "session": session_pk,
        "added": result.pulled,
        "drift": result.drift,
        "busy": result.busy,
        "skipped": skipped,
        "error": result.error,
    }


@shared_task(name="motorhead_django.pull_active", ignore_result=True)
def pull_active(limit: int | None = None) -> dict[str, int]:
    """Enqueue a pull for every active session (see ACTIVE_PERIOD); says how many."""
    keys = engine.active_sessions(limit or motorhead_settings.SWEEP_LIMIT)
    enqueued = sum(1 for pk in keys if _enqueue(pull_session, pk))
    return {"sessions": len(keys), "enqueued": enqueued}


@shared_task(name="motorhead_django.resync_session", acks_late=True, ignore_result=True)
def resync_session(session_pk: int) -> dict[str, Any]:
    _require_url("resync session", [session_pk])
    result = engine.resync(session_pk)
    if result.retry_at is not None:
        schedule_push(session_pk, eta=result.retry_at)
    elif result.busy:  # a push holds the session: resync once it is done, not never
        _enqueue(resync_session, session_pk, eta=timezone.now() + timedelta(seconds=RESYNC_RETRY))
    return {
        "session": session_pk,
        "pushed": result.pushed,
        "pending": _pending_count(session_pk),
        "error": result.error,
    }


@shared_task(name="motorhead_django.delete_on_server", acks_late=True, ignore_result=True)
def delete_on_server(session_pk: int) -> str:
    """Delete the server's copy and keep ours; returns an error text or ""."""
    result = engine.delete(session_pk, scope=engine.Scope.REMOTE)
    return result.error or ("busy: a worker is pushing this session" if result.busy else "")


@shared_task(name="motorhead_django.import_sessions", ignore_result=True)
def import_sessions(namespaces: list[str]) -> int:
    result = engine.import_sessions(namespaces)
    if result.error:
        logger.warning("Import %s; the next run resumes there.", result.error)
    return result.sessions


def schedule_import(namespaces: list[str]) -> bool:
    """Enqueue an import of the server's sessions; False when the broker refused it."""
    return _enqueue(import_sessions, namespaces, fallback="run it again")


def schedule(task: Any, session_pk: int) -> None:
    """Enqueue one of the per-session tasks; never raises (see schedule_push)."""
    _enqueue(task, session_pk)


def runs_inline() -> bool:
    """Whether tasks run in this process (``task_always_eager``) rather than on a worker."""
    return bool(push_session.app.conf.task_always_eager)


@shared_task(name="motorhead_django.verify_session", acks_late=True, ignore_result=True)
def verify_session(session_pk: int) -> str:
    """Verify one session; raises :class:`SessionDrifted` naming it when it drifted."""
    result = engine.verify(session_pk)
    if result.error:  # the next scheduled verify tries again
        logger.warning("Could not verify session %s: %s", session_pk, result.error)
        return ""
    drift = result.drift
    if drift:
        session = ChatSession.objects.filter(pk=session_pk).first()
        raise SessionDrifted({str(session or f"#{session_pk}"): drift})
    return drift


@shared_task(name="motorhead_django.verify_active", ignore_result=True)
def verify_active(limit: int | None = None) -> dict[str, int]:
    """Verify every active session; says how many were checked or enqueued.

    On a worker each session is its own task (one that found drift fails,
    naming its session). Run inline (eager mode), the sessions are verified
    here and one :class:`SessionDrifted` names every drifted session.
    """
    keys = engine.active_sessions(limit or motorhead_settings.SWEEP_LIMIT)
    if not runs_inline():
        enqueued = sum(1 for pk in keys if _enqueue(verify_session, pk))
        return {"sessions": len(keys), "enqueued": enqueued}
    drifted: dict[str, str] = {}
    for pk in keys:
        try:
            verify_session(pk)
        except SessionDrifted as exc:
            drifted.update(exc.drifted)
    if drifted:
        raise SessionDrifted(drifted)
    return {"sessions": len(keys), "enqueued": 0}


@shared_task(
    name="motorhead_django.delete_session",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def delete_session(session_pk: int) -> bool:
    if not ChatSession.objects.filter(pk=session_pk, delete_requested_at__isnull=False).exists():
        return False  # only a tombstone's remote delete is this task's (BOTH would make one)
    result = engine.delete(session_pk, scope=engine.Scope.BOTH)
    if result.retry_at is not None:
        schedule_delete(session_pk, eta=result.retry_at)
    return result.done


def schedule_pull(session_pk: int) -> None:
    """Enqueue a pull; never raises: if the broker is down, the next pull catches up."""
    _enqueue(pull_session, session_pk)


def schedule_delete(session_pk: int, eta: datetime | None = None) -> None:
    """Enqueue a remote delete; never raises: if the broker is down, the sweep catches up."""
    _enqueue(delete_session, session_pk, eta=eta)


def _pending_count(session_pk: int) -> int:
    return ChatMessage.objects.filter(session_id=session_pk).pending().count()


def schedule_push(session_pk: int, eta: datetime | None = None) -> None:
    """Enqueue a push; never raises: if the broker is down, the sweep catches up.

    Inside :func:`motorhead_django.outbox.suspended` nothing is enqueued: the
    automatic pushes after a write and a push's follow-ups (its retry, the
    work that arrived meanwhile) wait for the sweep or ``motorhead_push``.
    """
    if outbox.is_suspended():
        return
    _enqueue(push_session, session_pk, eta=eta)


def _enqueue(
    task: Any, *args: Any, eta: datetime | None = None, fallback: str = "the sweep will pick it up"
) -> bool:
    """``apply_async`` that never raises; False when the task was not enqueued."""
    global _broker_down_until
    what = _describe(task, args)
    if eta is not None and runs_inline():
        return False  # eager mode cannot wait: the next write, the sweep or motorhead_sync retries
    if time.monotonic() < _broker_down_until:
        logger.debug("Broker recently unreachable; not enqueuing %s; %s.", what, fallback)
        return False
    options: dict[str, Any] = {"retry": False}
    if eta is not None:
        options["eta"] = eta
    if motorhead_settings.TASK_QUEUE:
        options["queue"] = motorhead_settings.TASK_QUEUE
    try:
        task.apply_async(args, **options)
    except Exception:  # the broker's errors vary by transport
        _broker_down_until = time.monotonic() + BROKER_RETRY_AFTER
        logger.warning("Could not enqueue %s; %s.", what, fallback, exc_info=True)
        return False
    return True


def _describe(task: Any, args: tuple[Any, ...]) -> str:
    if task is import_sessions:
        return "an import"
    if task is push_sessions:
        return f"the push of {len(args[0])} session(s)"
    kind = "push" if task is push_session else task.name.rpartition(".")[2].replace("_", " ")
    return f"the {kind} of session {args[0]}"


@shared_task(name="motorhead_django.retention", ignore_result=True)
def retention() -> dict[str, Any]:
    """One bounded batch of retention (docs/governance.md); without a policy, nothing."""
    from . import governance

    result = governance.apply_retention()
    return {
        "deleted": result.deleted,
        "trimmed": result.trimmed_messages,
        "held": result.plan.held,
        "more": result.plan.more,
    }
