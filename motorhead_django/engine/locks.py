"""The session lock: one sync step per session at a time, across processes and machines.

Every engine step that talks to the server for a session (a push, pull,
verify, resync, rehydration or remote delete) holds it, so none interleave.

On PostgreSQL a session-level advisory lock: it is held by the database
connection, so a worker killed with SIGKILL releases it when the server drops
the connection, and no lease can expire under a slow worker. Other databases
get an in-process lock only: run several worker processes on PostgreSQL (see
docs/sync.md). Connection poolers in transaction mode (PgBouncer) break
session-level locks; point the workers at PostgreSQL directly.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from django.db import connections

if TYPE_CHECKING:
    from motorhead_django.models import ChatSession

# High bits that mark our keys in pg_locks, so they do not collide with other
# apps' advisory locks on small integers.
_KEY_BASE = 0x4D48 << 48

_local_locks: dict[int, threading.Lock] = {}
_local_locks_guard = threading.Lock()


@contextmanager
def session_lock(session_pk: int, using: str = "default") -> Iterator[bool]:
    """Try to take one session's lock; yields whether it was taken."""
    with SessionLocks(using) as locks:
        yield session_pk in locks.acquire([session_pk])


class SessionLocks:
    """The locks of many sessions, taken together and released in groups.

    On PostgreSQL one statement takes any number of them and one releases a
    group, so a push pass shares this cost between its sessions. Leaving the
    ``with`` block releases whatever is still held.
    """

    def __init__(self, using: str = "default") -> None:
        self.connection = connections[using]
        self.held: set[int] = set()

    def acquire(self, session_pks: Iterable[int]) -> set[int]:
        """Try to take each lock; returns the keys taken."""
        # PostgreSQL counts a lock taken twice by one connection: take each once.
        keys = [pk for pk in dict.fromkeys(session_pks) if pk not in self.held]
        if self.connection.vendor == "postgresql":
            with self.connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pk FROM unnest(%s::bigint[]) AS pk WHERE pg_try_advisory_lock(%s + pk)",
                    [keys, _KEY_BASE],
                )
                acquired = {row[0] for row in cursor.fetchall()}
        else:
            acquired = set()
            for pk in keys:
                with _local_locks_guard:
                    lock = _local_locks.setdefault(pk, threading.Lock())
                if lock.acquire(blocking=False):
                    acquired.add(pk)
        self.held |= acquired
        return acquired

    def release(self, session_pks: Iterable[int]) -> None:
        keys = sorted(self.held.intersection(session_pks))
        if not keys:
            return
        self.held.difference_update(keys)
        if self.connection.vendor == "postgresql":
            with self.connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_unlock(%s + pk) FROM unnest(%s::bigint[]) AS pk",
                    [_KEY_BASE, keys],
                )
        else:
            for pk in keys:
                _local_locks[pk].release()

    def __enter__(self) -> SessionLocks:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release(list(self.held))


@contextmanager
def locked_session(session_pk: int) -> Iterator[tuple[bool, ChatSession | None]]:
    """The session's lock, and the session read under it: ``(acquired, session)``.

    ``session`` is None when the lock was not taken (nothing is read then) or
    the row is gone. Every sync step that talks to the server for one session
    goes through here, so none of them interleave and none acts on a stale row.
    """
    from motorhead_django.models import ChatSession

    with session_lock(session_pk) as acquired:
        yield acquired, ChatSession.objects.filter(pk=session_pk).first() if acquired else None
