"""Admin pages: browse sessions and read their conversations.

Read-mostly on purpose: messages and sync bookkeeping are written by the
memory core and the sync engine, never edited by hand here.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from .models import ChatMessage, ChatSession, SummaryVersion


class ChatMessageInline(admin.TabularInline):
    model = ChatMessage
    fields = ("sequence", "role", "content", "origin", "sync_state", "created_at")
    readonly_fields = fields
    ordering = ("sequence",)
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SummaryVersionInline(admin.TabularInline):
    model = SummaryVersion
    fields = ("pulled_at", "through_sequence", "tokens", "context")
    readonly_fields = fields
    ordering = ("-pulled_at",)
    extra = 0
    can_delete = False
    verbose_name_plural = _("summary timeline (pulled from the server)")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ChatSession)
class ChatSessionAdmin(admin.ModelAdmin):
    list_display = (
        "session_id",
        "namespace",
        "owner",
        "message_count",
        "sync_state",
        "updated_at",
    )
    list_filter = ("sync_state", "namespace")
    search_fields = ("session_id",)
    list_select_related = ("owner",)
    raw_id_fields = ("owner",)
    date_hierarchy = "created_at"
    readonly_fields = (
        "tokens",
        "last_sequence",
        "sync_state",
        "context_pending",
        "inflight_through",
        "sync_attempts",
        "last_error",
        "next_attempt_at",
        "last_pushed_at",
        "last_pulled_at",
        "drift",
        "delete_requested_at",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("session_id", "namespace", "owner", "metadata")}),
        (_("Summary"), {"fields": ("context", "tokens", "last_sequence")}),
        (
            _("Sync"),
            {
                "fields": (
                    "sync_state",
                    "context_pending",
                    "inflight_through",
                    "sync_attempts",
                    "last_error",
                    "next_attempt_at",
                    "last_pushed_at",
                    "last_pulled_at",
                    "drift",
                    "delete_requested_at",
                    "created_at",
                    "updated_at",
                )
            },
        ),
    )
    inlines = (SummaryVersionInline, ChatMessageInline)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # The id and namespace name the session on the server: fixed once created.
        fixed = ("session_id", "namespace") if obj is not None else ()
        return fixed + tuple(self.readonly_fields)

    def get_queryset(self, request: HttpRequest) -> QuerySet[ChatSession]:
        # One annotated query for the whole page, not a count per row.
        return super().get_queryset(request).annotate(_message_count=Count("messages"))

    @admin.display(description=_("messages"), ordering="_message_count")
    def message_count(self, obj: ChatSession) -> int:
        return obj._message_count  # type: ignore[attr-defined]
