"""Resync: the server's copy replaced by the whole local history, pushed and paced anew."""

from __future__ import annotations

from motorhead_django.client import MotorheadClient, get_client
from motorhead_django.conf import motorhead_settings
from motorhead_django.exceptions import MotorheadError

from . import bookkeeping, records
from .locks import locked_session
from .passes import push_session
from .results import PushResult


def resync_session(session_pk: int, *, client: MotorheadClient | None = None) -> PushResult:
    """Replace the server's copy with the whole local history, pushed and paced from the start.

    The server's session is deleted (under the namespace it was written under),
    every local message becomes pending again, and a push sends them all in
    order, waiting for each compaction, so every message passes through the
    server's summariser and the server builds its summary from the whole
    conversation. (``rehydrate.rehydrate_session`` is the quick way back: the
    latest summary and the newest window only.)
    """
    if not motorhead_settings.SYNC_ENABLED:
        return PushResult(session_pk, state="disabled")
    client = client or get_client()
    with locked_session(session_pk) as (acquired, session):
        if session is None or session.delete_requested_at is not None:
            return PushResult(session_pk, busy=not acquired)
        try:
            client.delete_memory(session.remote_id, namespace=session.namespace or None)
        except MotorheadError as exc:
            result = PushResult(session_pk)
            bookkeeping.record_failure(session, exc, result)
            return result
        # The server starts empty: its summary comes from the history, not from ours.
        records.mark_all_pending(session)
    return push_session(session_pk, client=client)
