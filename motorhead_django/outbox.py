"""The outbox's hand-off: once a write commits, the work it left is enqueued.

The write path stores the outbox rows (pending messages, a tombstone) in the
write's own transaction; this module enqueues the push, the remote delete, the
summary or the embeddings once that transaction commits. Should the broker be
down then, nothing is lost: the rows stay pending and the sweep sends them.

The task queue is an outer layer: it imports the engine, never the reverse. So
the enqueue functions are named here by dotted path and resolved when called
(the way Django names backends in settings), which also honours a project or a
test that replaces one of them.

:func:`suspended` switches the automatic push off, for tests and bulk loads:
the messages stay pending until ``motorhead_push`` or the sweep sends them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils.module_loading import import_string

_TASKS = "motorhead_django.tasks"

# Process-wide, like the broker it stands for: a push enqueued from a thread
# (a hand-off, a test's second writer) is switched off too.
_suspended = 0
_guard = threading.Lock()


@contextmanager
def suspended() -> Iterator[None]:
    """No automatic push inside the block (nesting is fine); remote deletes still go."""
    global _suspended
    with _guard:
        _suspended += 1
    try:
        yield
    finally:
        with _guard:
            _suspended -= 1


def is_suspended() -> bool:
    return _suspended > 0


def _task_function(name: str) -> Callable[..., Any]:
    function: Callable[..., Any] = import_string(f"{_TASKS}.{name}")
    return function


def push(session_pk: int, eta: datetime | None = None) -> None:
    """Enqueue a push of the session now (at ``eta`` if given); never raises.

    The queue's function checks :func:`is_suspended` (it also serves a push's
    follow-ups), so one that a test put in its place sees every call.
    """
    _task_function("schedule_push")(session_pk, **({"eta": eta} if eta else {}))


def pull(session_pk: int) -> None:
    """Enqueue a pull of the session (a user asked for the server's side); never raises."""
    _task_function("schedule_pull")(session_pk)


def delete_remotely(session_pk: int) -> None:
    """Enqueue the remote delete of a tombstone now; never raises (not suspended: a delete
    is what the user asked for, and it waits for no sweep)."""
    _task_function("schedule_delete")(session_pk)


def run(task: str, session_pk: int) -> None:
    """Enqueue one of the per-session tasks by name (``"resync_session"``, an admin action
    handed to a worker); never raises."""
    _task_function("schedule")(_task_function(task), session_pk)


def import_sessions(namespaces: list[str]) -> bool:
    """Enqueue an import of the server's sessions; False when the broker refused it."""
    return bool(_task_function("schedule_import")(namespaces))


def runs_inline() -> bool:
    """Whether the queue runs its tasks in this process (eager mode) rather than on a worker."""
    return bool(_task_function("runs_inline")())


def push_after_commit(session_pk: int) -> None:
    transaction.on_commit(lambda: push(session_pk))


def delete_after_commit(session_pk: int) -> None:
    transaction.on_commit(lambda: delete_remotely(session_pk))


def summary_after_commit(session_pk: int, first: int, last: int) -> None:
    """A project summariser's run over ``first``..``last`` (``MOTORHEAD["SUMMARIZER"]``)."""
    transaction.on_commit(lambda: _task_function("schedule_summary")(session_pk, first, last))


def summarize_pending_after_commit(session_pk: int) -> None:
    """The built-in summariser's run (``MOTORHEAD["BUILTIN_SUMMARIZER"]``)."""
    transaction.on_commit(lambda: _task_function("schedule_summarize_pending")(session_pk))


def embed_pending_after_commit(session_pk: int) -> None:
    transaction.on_commit(lambda: _task_function("schedule_embed_pending")(session_pk))


def resync_after_commit(session_pk: int) -> None:
    """Rebuild the server's copy from ours once this transaction commits (messages the
    server holds were removed here: a push of what is left could not undo that)."""
    transaction.on_commit(
        lambda: _task_function("schedule")(_task_function("resync_session"), session_pk)
    )
