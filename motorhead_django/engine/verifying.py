"""Verify: the server's window compared with our history, read-only on both sides."""

from __future__ import annotations

import logging

from django.db.models import Q
from django.utils import timezone

from motorhead_django import signals, states
from motorhead_django.client import MotorheadClient, get_client
from motorhead_django.models import ChatSession

from . import records
from .compare import compare
from .locks import locked_session
from .pulling import _synced

# The name operators' logging settings know, and redaction.LOGGERS filters.
logger = logging.getLogger("motorhead_django.pull")


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
            records.mark_drifted(
                session_pk, drift, only_if=Q(sync_state=session.sync_state), last_pulled_at=now
            )
            logger.warning("Session %s drifted: %s", session, drift)
            signals.drift_found.send(sender=ChatSession, session=session, drift=drift)
        else:
            records.update_session(session_pk, last_pulled_at=now)
    return drift
