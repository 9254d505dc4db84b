"""Where the sync stands, read from the database: for ``motorhead_status`` and the metrics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Min
from django.utils import timezone

from .models import ChatMessage, ChatSession, SyncState


@dataclass(frozen=True)
class SyncStatus:
    counts: dict[str, int]  # sessions by sync state, every state present
    pending_messages: int
    oldest_pending: datetime | None
    due: int  # pending sessions whose next attempt time has come

    @property
    def lag(self) -> timedelta:
        """Age of the oldest pending message (zero when nothing is pending)."""
        return timezone.now() - self.oldest_pending if self.oldest_pending else timedelta(0)


def snapshot() -> SyncStatus:
    """Four indexed queries (the partial indexes on pending work serve three)."""
    found = dict(ChatSession.objects.order_by().values_list("sync_state").annotate(n=Count("pk")))
    pending = ChatMessage.objects.pending()
    return SyncStatus(
        counts={state: found.get(state, 0) for state in SyncState.values},
        pending_messages=pending.count(),
        oldest_pending=pending.aggregate(oldest=Min("created_at"))["oldest"],
        due=ChatSession.objects.due().count(),
    )


def last_errors(limit: int = 5) -> list[ChatSession]:
    """The most recently updated sessions that failed or wait for a retry, with their error."""
    return list(
        ChatSession.objects.filter(sync_state__in=(SyncState.FAILED, SyncState.RETRYING))
        .exclude(last_error="")
        .order_by("-updated_at", "-pk")
        .only("pk", "session_id", "namespace", "sync_state", "last_error", "updated_at")[:limit]
    )
