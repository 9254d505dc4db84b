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

from django.db import connections

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
