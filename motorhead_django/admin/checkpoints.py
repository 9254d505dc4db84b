"""Admin for LangGraph checkpoints (motorhead_django.langgraph)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from motorhead_django import memory
from motorhead_django.models import (
    ChatSession,
    LangGraphBlob,
    LangGraphCheckpoint,
    LangGraphWrite,
    LegalHold,
)

from .common import EstimatedCountPaginator, NulSafeChangelist

# LangGraph checkpoints (motorhead_django.langgraph): written by the saver only, so
# read-only here; rows may be deleted by those with the delete permission, unless their
# thread is under a legal hold (its checkpoints hold the whole conversation).

NO_OWNER = "none"


class OwnerFilter(admin.SimpleListFilter):
    """The thread's owner (``DjangoSaver(owner=...)``), or none.

    Its choices are the users owning a row, found per user through the owner's
    index: a ``DISTINCT owner`` (``RelatedOnlyFieldListFilter``) would read every
    row of a table that grows by a checkpoint per step.
    """

    title = _("owner")
    parameter_name = "owner"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        users = get_user_model()._default_manager
        rows = model_admin.model._default_manager.filter(owner=OuterRef("pk"))
        owners = users.filter(Exists(rows)).order_by(get_user_model().USERNAME_FIELD)
        return [(NO_OWNER, _("No owner")), *((str(u.pk), str(u)) for u in owners)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value is None:
            return queryset
        if value == NO_OWNER:
            return queryset.filter(owner__isnull=True)
        if not (value.isascii() and value.isdigit()):
            return queryset.none()
        return queryset.filter(owner_id=int(value))


def thread_is_held(row: Any) -> bool:
    """Whether a legal hold covers this row's thread: its mirrored session's, or its owner's."""
    if row.owner_id is not None and LegalHold.objects.filter(owner_id=row.owner_id).exists():
        return True
    mirror = ChatSession.objects.filter(session_id=row.thread_id, owner_id=row.owner_id)
    return mirror.filter(memory.held()).exists()


class ReadOnlyCheckpointAdmin(NulSafeChangelist):
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    search_fields = ("=thread_id",)
    list_per_page = 50
    list_filter = (OwnerFilter,)
    list_select_related = ("owner",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Django asks this per row on the delete page and for *delete selected*
        # (get_deleted_objects), so a held thread's rows are refused on both.
        if obj is not None and thread_is_held(obj):
            return False
        return super().has_delete_permission(request, obj)

    @admin.display(description=_("size"))
    def size(self, obj: Any) -> str:
        data = obj.blob if isinstance(obj, LangGraphBlob | LangGraphWrite) else obj.checkpoint
        return ngettext("%d byte", "%d bytes", len(data)) % len(data)


@admin.register(LangGraphCheckpoint)
class LangGraphCheckpointAdmin(ReadOnlyCheckpointAdmin):
    list_display = (
        "checkpoint_id",
        "thread_id",
        "owner",
        "checkpoint_ns",
        "source",
        "step",
        "created_at",
    )
    search_fields = ("=thread_id", "=checkpoint_id", "=run_id")  # type: ignore[assignment]
    readonly_fields = (
        "thread_id",
        "owner",
        "checkpoint_ns",
        "checkpoint_id",
        "parent_checkpoint_id",
        "run_id",
        "metadata",
        "type",
        "size",
        "created_at",
    )
    fields = readonly_fields

    @admin.display(description=_("source"))
    def source(self, obj: LangGraphCheckpoint) -> str:
        return str(obj.metadata.get("source", "")) if isinstance(obj.metadata, dict) else ""

    @admin.display(description=_("step"))
    def step(self, obj: LangGraphCheckpoint) -> str:
        return str(obj.metadata.get("step", "")) if isinstance(obj.metadata, dict) else ""


@admin.register(LangGraphBlob)
class LangGraphBlobAdmin(ReadOnlyCheckpointAdmin):
    list_display = ("thread_id", "owner", "checkpoint_ns", "channel", "version", "type", "size")
    readonly_fields = (
        "thread_id",
        "owner",
        "checkpoint_ns",
        "channel",
        "version",
        "type",
        "size",
    )
    fields = readonly_fields


@admin.register(LangGraphWrite)
class LangGraphWriteAdmin(ReadOnlyCheckpointAdmin):
    list_display = (
        "thread_id",
        "owner",
        "checkpoint_id",
        "task_id",
        "idx",
        "channel",
        "type",
        "size",
    )
    search_fields = ("=thread_id", "=checkpoint_id", "=task_id")  # type: ignore[assignment]
    readonly_fields = (
        "thread_id",
        "owner",
        "checkpoint_ns",
        "checkpoint_id",
        "task_id",
        "task_path",
        "idx",
        "channel",
        "type",
        "size",
        "created_at",
    )
    fields = readonly_fields
