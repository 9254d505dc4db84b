"""Query predicates for the mirrored models, exposed with ``.as_manager()``."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import models
from django.utils import timezone

from . import states
from .states import MessageSyncState, SyncState

if TYPE_CHECKING:  # the models import this module: only type checkers look back at them
    from .models import ApiKey, ChatMessage, ChatSession  # noqa: F401  (named in strings below)


class ChatSessionQuerySet(models.QuerySet["ChatSession"]):
    def in_namespace(self, namespace: str) -> ChatSessionQuerySet:
        return self.filter(namespace=namespace)

    def owned_by(self, user: Any) -> ChatSessionQuerySet:
        """The user's own sessions (none for an anonymous user), whoever the user is."""
        if user is None or not user.is_authenticated:
            return self.none()
        return self.filter(owner=user)

    def with_work(self) -> ChatSessionQuerySet:
        """Sessions with sync work left: a push, a settling, a rebuild or a remote delete.

        Served by the partial index ``motorhead_session_due``.
        """
        return self.filter(sync_state__in=states.ACTIVE)

    def due(self, now: datetime | None = None) -> ChatSessionQuerySet:
        """Sessions with work left whose next attempt time has come (pushes and remote deletes)."""
        return self.with_work().attempt_due(now)

    def to_push(self) -> ChatSessionQuerySet:
        """Sessions with messages or a context to send (not tombstones: their delete owns them)."""
        return self.with_work().exclude(sync_state=SyncState.DELETING)

    def to_delete_remotely(self) -> ChatSessionQuerySet:
        """Tombstones whose remote delete has not given up."""
        return self.filter(delete_requested_at__isnull=False).exclude(sync_state=SyncState.FAILED)

    def to_rehydrate(self) -> ChatSessionQuerySet:
        """Sessions the server no longer mirrors (drifted): rehydrate or resync restores them."""
        return self.filter(sync_state=SyncState.DRIFTED)

    def mirrored(self) -> ChatSessionQuerySet:
        """Sessions the server is believed to mirror (synced, or drifted and not yet restored)."""
        return self.filter(sync_state__in=states.MIRRORED)

    def attempt_due(self, now: datetime | None = None) -> ChatSessionQuerySet:
        """Sessions with no next attempt time, or one that has come (pushes and remote deletes)."""
        now = now or timezone.now()
        return self.filter(
            models.Q(next_attempt_at__isnull=True) | models.Q(next_attempt_at__lte=now)
        )

    def failed(self) -> ChatSessionQuerySet:
        return self.filter(sync_state=SyncState.FAILED)


class ChatMessageQuerySet(models.QuerySet["ChatMessage"]):
    def chronological(self) -> ChatMessageQuerySet:
        return self.order_by("sequence")

    def pending(self) -> ChatMessageQuerySet:
        """Messages written here that the server has not confirmed yet."""
        return self.filter(sync_state=MessageSyncState.PENDING)

    def newest(self, count: int) -> list[ChatMessage]:
        """The newest ``count`` messages, oldest first (one indexed query)."""
        return list(reversed(self.order_by("-sequence")[:count]))


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def active(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True)
