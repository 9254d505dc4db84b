"""One pusher per session, across worker processes and machines.

On PostgreSQL a session-level advisory lock: it is held by the database
connection, so a worker killed with SIGKILL releases it when the server drops
the connection, and no lease can expire under a slow worker. Other databases
get an in-process lock only: run several worker processes on PostgreSQL (see
docs/sync.md). Connection poolers in transaction mode (PgBouncer) break
session-level locks; point the workers at PostgreSQL directly.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from django.db import connections

if TYPE_CHECKING:
    from .models import ChatSession

# High bits that mark our keys in pg_locks, so they do not collide with other
# apps' advisory locks on small integers.
_KEY_BASE = 0x4D48 << 48

_local_locks: dict[int, threading.Lock] = {}
_local_locks_guard = threading.Lock()


@contextmanager
def session_push_lock(session_pk: int, using: str = "default") -> Iterator[bool]:
    """Try to take the push lock of one session; yields whether it was taken."""
    connection = connections[using]
    if connection.vendor == "postgresql":
        key = _KEY_BASE + session_pk
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
            acquired = bool(cursor.fetchone()[0])
        try:
            yield acquired
        finally:
            if acquired:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
        return
    with _local_locks_guard:
        lock = _local_locks.setdefault(session_pk, threading.Lock())
    acquired = lock.acquire(blocking=False)
    try:
        yield acquired
    finally:
        if acquired:
            lock.release()


@contextmanager
def locked_session(session_pk: int) -> Iterator[tuple[bool, ChatSession | None]]:
    """The session's push lock, and the session read under it: ``(acquired, session)``.

    ``session`` is None when the lock was not taken (nothing is read then) or
    the row is gone. Every sync step that talks to the server for one session
    goes through here, so none of them interleave and none acts on a stale row.
    """
    from .models import ChatSession

    with session_push_lock(session_pk) as acquired:
        yield acquired, ChatSession.objects.filter(pk=session_pk).first() if acquired else None
