"""Sync states, in one place: what each mirrored row can be, and which states mean work left.

Stored values and labels are the ones the migrations recorded, so moving
them here changed no column. Only the sync engine (:mod:`motorhead_django.engine`)
and the write path (:mod:`motorhead_django.engine.records`) move a row from one
state to another.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class SyncState(models.TextChoices):
    """Where a session stands with the upstream server."""

    PENDING = "pending", _("Pending")  # local work waits to be pushed
    SYNCED = "synced", _("Synced")
    RETRYING = "retrying", _("Retrying")  # a transient failure; a retry is scheduled
    FAILED = "failed", _("Failed")  # gave up: needs an operator
    DRIFTED = "drifted", _("Drifted")  # the server's window disagrees with ours
    # An ambiguous write the server's answer could not settle: the server's copy
    # is rebuilt from ours before anything more is sent (see docs/sync.md).
    IN_DOUBT = "in_doubt", _("In doubt")
    DELETING = "deleting", _("Deleting")  # tombstone until the server confirms
    LOCAL = "local", _("Local only")  # never synced (no server configured)


class MessageOrigin(models.TextChoices):
    LOCAL = "local", _("Written here")
    REMOTE = "remote", _("Found on the server")


class MessageSyncState(models.TextChoices):
    PENDING = "pending", _("Pending")
    SYNCED = "synced", _("Synced")


#: States in which a session still has work for the sync engine (a push, a
#: settling, a rebuild or a remote delete); the partial index ``motorhead_session_due``
#: covers exactly these.
ACTIVE = (SyncState.PENDING, SyncState.RETRYING, SyncState.IN_DOUBT, SyncState.DELETING)

#: States in which the server is believed to mirror the session: pulls and verifies look at these.
MIRRORED = (SyncState.SYNCED, SyncState.DRIFTED)
