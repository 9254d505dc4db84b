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
    with session_push_locks([session_pk], using) as acquired:
        yield session_pk in acquired


@contextmanager
def session_push_locks(session_pks: list[int], using: str = "default") -> Iterator[set[int]]:
    """Try to take the push locks of many sessions; yields the keys taken.

    On PostgreSQL one statement takes them all and one releases them, however
    many there are (a push pass shares this cost between its sessions).
    """
    connection = connections[using]
    keys = list(dict.fromkeys(session_pks))  # a lock taken twice would be held twice
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pk FROM unnest(%s::bigint[]) AS pk WHERE pg_try_advisory_lock(%s + pk)",
                [keys, _KEY_BASE],
            )
            acquired = {row[0] for row in cursor.fetchall()}
        try:
            yield acquired
        finally:
            if acquired:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT pg_advisory_unlock(%s + pk) FROM unnest(%s::bigint[]) AS pk",
                        [_KEY_BASE, sorted(acquired)],
                    )
        return
    acquired = set()
    try:
        for pk in keys:
            with _local_locks_guard:
                lock = _local_locks.setdefault(pk, threading.Lock())
            if lock.acquire(blocking=False):
                acquired.add(pk)
        yield acquired
    finally:
        for pk in acquired:
            _local_locks[pk].release()


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
