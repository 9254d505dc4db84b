"""Admin pages: browse sessions and read their conversations.

Read-mostly on purpose: messages and sync bookkeeping are written by the
memory core and the sync engine, never edited by hand here.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .models import ApiKey, ChatMessage, ChatSession


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
                    "created_at",
                    "updated_at",
                )
            },
        ),
    )
    inlines = (ChatMessageInline,)

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


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are issued here (the full key is shown once, in a message) and revoked, never edited."""

    list_display = (
        "name",
        "display_prefix",
        "owner",
        "namespace",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix", "owner__username")
    list_select_related = ("owner",)
    raw_id_fields = ("owner",)
    fields = (
        "name",
        "owner",
        "namespace",
        "display_prefix",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    readonly_fields = ("display_prefix", "created_at", "last_used_at", "revoked_at")
    actions = ("revoke",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # Who and where a key reaches is fixed once issued: revoke and issue anew.
        fixed = ("owner", "namespace") if obj is not None else ()
        return fixed + tuple(self.readonly_fields)

    @admin.display(description=_("key starts with"))
    def display_prefix(self, obj: ApiKey) -> str:
        return f"{ApiKey.PREFIX}{obj.prefix}_…" if obj.prefix else "-"

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            obj.save(update_fields=["name"])
            return
        raw = obj.set_new_secret()
        obj.save()
        self.message_user(
            request,
            _("The new API key is %(key)s. Copy it now: it is not stored and is not shown again.")
            % {"key": raw},
            messages.WARNING,
        )

    @admin.action(description=_("Revoke the selected API keys"))
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = 0
        for key in queryset.active():
            key.revoke()
            count += 1
        self.message_user(
            request,
            ngettext("Revoked %d API key.", "Revoked %d API keys.", count) % count,
            messages.SUCCESS,
        )
