"""Query predicates for the mirrored models, exposed with ``.as_manager()``."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import models
from django.utils import timezone

if TYPE_CHECKING:
    from .models import ApiKey, ChatMessage, ChatSession  # noqa: F401  (named in strings below)

# States in which a session still has work for the sync engine.
ACTIVE_SYNC_STATES = ("pending", "retrying", "in_doubt", "deleting")


class ChatSessionQuerySet(models.QuerySet["ChatSession"]):
    def in_namespace(self, namespace: str) -> ChatSessionQuerySet:
        return self.filter(namespace=namespace)

    def owned_by(self, user: Any) -> ChatSessionQuerySet:
        """The user's own sessions (none for an anonymous user), whoever the user is."""
        if user is None or not user.is_authenticated:
            return self.none()
        return self.filter(owner=user)

    def visible_to(self, user: Any, action: str = "view") -> ChatSessionQuerySet:
        """Sessions ``user`` may ``view``/``change``/``delete`` (:mod:`motorhead_django.policy`)."""
        from .policy import visible_to

        return visible_to(user, action, self)  # type: ignore[return-value]

    def pending(self) -> ChatSessionQuerySet:
        """Sessions with sync work left (served by a partial index)."""
        return self.filter(sync_state__in=ACTIVE_SYNC_STATES)

    def due(self, now: datetime | None = None) -> ChatSessionQuerySet:
        """Pending sessions whose next attempt time has come."""
        return self.pending().attempt_due(now)

    def attempt_due(self, now: datetime | None = None) -> ChatSessionQuerySet:
        """Sessions with no next attempt time, or one that has come (pushes and remote deletes)."""
        now = now or timezone.now()
        return self.filter(
            models.Q(next_attempt_at__isnull=True) | models.Q(next_attempt_at__lte=now)
        )

    def failed(self) -> ChatSessionQuerySet:
        return self.filter(sync_state="failed")


class ChatMessageQuerySet(models.QuerySet["ChatMessage"]):
    def chronological(self) -> ChatMessageQuerySet:
        return self.order_by("sequence")

    def pending(self) -> ChatMessageQuerySet:
        """Messages written here that the server has not confirmed yet."""
        return self.filter(sync_state="pending")

    def newest(self, count: int) -> list[ChatMessage]:
        """The newest ``count`` messages, oldest first (one indexed query)."""
        return list(reversed(self.order_by("-sequence")[:count]))


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def active(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True)
