"""Admin: browse sessions, read and extend conversations, see and drive the sync.

Read-mostly on purpose: history is never edited here (it is the record), new
messages and context changes go through the memory core like any other write,
and the sync actions call the sync core (inline when Celery runs eagerly,
through the broker otherwise).
"""

from __future__ import annotations

import contextvars
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Count, Min, QuerySet, Sum
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.timesince import timesince
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import charts, memory, pull, redaction, sync, tasks
from .client import MotorheadClient
from .conf import motorhead_settings
from .exceptions import MotorheadError, MotorheadSessionExistsError, MotorheadValidationError
from .governance_admin import GOVERNANCE_FIELDSET, SessionGovernanceMixin
from .memory import MAX_JSON_DEPTH, json_too_deep
from .models import (
    ApiKey,
    ChatMessage,
    ChatSession,
    LangGraphBlob,
    LangGraphCheckpoint,
    LangGraphWrite,
    SummaryVersion,
    SyncState,
)

# Newest messages shown on a session page; older ones are counted, not listed.
TRANSCRIPT_LIMIT = 500
# How long the overview page trusts its last health check of the server.
HEALTH_CACHE_SECONDS = 30
_HEALTH_CACHE_KEY = "motorhead_django:admin:health"
# A confirmation page names at most this many of the selected rows (and counts the rest).
CONFIRM_LIST_LIMIT = 100
_CONFIRM_TEMPLATE = "admin/motorhead_django/action_confirmation.html"
# Characters of a session id shown in the changelist (the whole id is its tooltip).
ID_DISPLAY_LENGTH = 40
# The session page's request, for the transcript's paging links (a read-only field gets no
# request; a context variable keeps concurrent requests apart).
_page_request: contextvars.ContextVar[HttpRequest | None] = contextvars.ContextVar(
    "motorhead_admin_page_request", default=None
)
# Roles styled alike in the transcript; any other role gets a neutral style.
_ROLE_KINDS = {"human": "human", "user": "human", "ai": "ai", "assistant": "ai", "system": "system"}


class EstimatedCountPaginator(Paginator):
    """An unfiltered changelist of a large table counts from PostgreSQL's statistics.

    ``COUNT(*)`` reads every row; the planner's estimate is free and close
    enough to size the page links. Filtered lists and small tables count exactly.
    """

    estimate_above = 50_000

    @cached_property
    def count(self) -> int:
        query = getattr(self.object_list, "query", None)
        connection = connections[getattr(self.object_list, "db", "default")]
        if query is not None and not query.where and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                    [query.model._meta.db_table],
                )
                row = cursor.fetchone()
            if row and row[0] > self.estimate_above:
                return int(row[0])
        return super().count


class BoundedJSONFormField(forms.JSONField):
    """Django's JSON form field, with the nesting bounded before ``json.loads`` recurses."""

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str) and json_too_deep(value):
            raise forms.ValidationError(_("Nested deeper than %d levels.") % MAX_JSON_DEPTH)
        return super().to_python(value)


def _confirmed(request: HttpRequest) -> bool:
    """Whether this is the POST of an action's confirmation page (as Django's *delete selected*)."""
    return request.method == "POST" and request.POST.get("post") == "yes"


def _confirmation_page(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet[Any],
    *,
    action: str,
    title: Any,
    consequences: list[str],
) -> TemplateResponse:
    """The intermediate page of a destructive action: what, how many, and what happens to them."""
    opts = model_admin.model._meta
    count = queryset.count()
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "opts": opts,
        "action": action,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "select_across": request.POST.get("select_across", "0"),
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "objects": list(queryset[:CONFIRM_LIST_LIMIT]),
        "count": count,
        "more": max(0, count - CONFIRM_LIST_LIMIT),
        "noun": opts.verbose_name if count == 1 else opts.verbose_name_plural,
        "consequences": consequences,
        "cancel_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
    }
    return TemplateResponse(request, _CONFIRM_TEMPLATE, context)


class ChatSessionForm(forms.ModelForm):
    add_role = forms.CharField(
        label=_("Role"),
        required=False,
        initial="Human",
        max_length=255,
        help_text=_("Free text, as Motorhead stores it: Human, AI, System…"),
    )
    add_content = forms.CharField(
        label=_("New message"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Appended after the newest message and pushed like any other write."),
    )

    class Meta:
        model = ChatSession
        fields = ("session_id", "namespace", "owner", "metadata", "context")
        field_classes = {"metadata": BoundedJSONFormField}

    def _core(self, name: str, check: Any) -> Any:
        # The memory core's rules, as this field's error.
        value = self.cleaned_data[name]
        try:
            check(value)
        except MotorheadValidationError as exc:
            raise forms.ValidationError(list(exc.errors.values())) from None
        return value

    def clean_namespace(self) -> str:
        return self._core("namespace", memory.validate_namespace)

    def clean_metadata(self) -> Any:
        return self._core("metadata", memory.validate_metadata)

    def clean_context(self) -> str | None:
        return self._core("context", memory.validate_context)

    def clean_session_id(self) -> str:
        session_id = self.cleaned_data["session_id"]
        try:
            memory.validate_session_id(session_id)
        except MotorheadValidationError as exc:
            raise forms.ValidationError(exc.errors["session_id"]) from None
        return session_id

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        if self.instance.pk is None and not cleaned.get("owner") and cleaned.get("session_id"):
            try:
                memory.validate_ownerless_id(cleaned["session_id"])
            except MotorheadValidationError as exc:
                self.add_error("session_id", exc.errors["session_id"])
        if cleaned.get("add_content"):
            try:
                memory.validate_messages([(cleaned.get("add_role") or "", cleaned["add_content"])])
            except MotorheadValidationError as exc:
                raise forms.ValidationError(list(exc.errors.values())) from None
        return cleaned


class SummaryVersionInline(admin.TabularInline):
    model = SummaryVersion
    fields = ("pulled_at", "through_sequence", "tokens", "context")
    readonly_fields = fields
    ordering = ("-pulled_at",)
    extra = 0
    can_delete = False
    verbose_name_plural = _("summary timeline (pulled from the server)")
    # Newest first, as a timeline (its template keeps the inline's management form).
    template = "admin/motorhead_django/summaryversion/timeline.html"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class NulSafeChangelist(admin.ModelAdmin):
    """A changelist whose search or filter parameters hold a NUL character is Django's
    "invalid lookup" redirect (``?e=1``): PostgreSQL cannot compare with NUL (a 500)."""

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        if any("\x00" in value for values in request.GET.lists() for value in values[1]):
            return HttpResponseRedirect(f"{request.path}?e=1")
        return super().changelist_view(request, extra_context)


@admin.register(ChatSession)
class ChatSessionAdmin(SessionGovernanceMixin, NulSafeChangelist):
    form = ChatSessionForm
    change_list_template = "admin/motorhead_django/chatsession/change_list.html"
    list_display = (
        "short_session_id",
        "short_namespace",
        "owner",
        "message_count",
        "last_activity",
        "sync_badge",
        "short_error",
        "context_excerpt",
    )
    list_filter = (
        "sync_state",
        "namespace",
        "legal_hold",
        ("owner", admin.RelatedOnlyFieldListFilter),
        "created_at",
        "updated_at",
    )
    list_select_related = ("owner",)
    list_per_page = 50
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    ordering = ("-updated_at", "-id")
    raw_id_fields = ("owner",)
    date_hierarchy = None
    actions = (
        "push_now",
        "pull_now",
        "full_resync",
        "delete_on_server",
        "delete_everywhere",
        "export_jsonl",
        "export_markdown",
    )
    sync_fields = (
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
    )
    readonly_fields = (
        "transcript",
        "tokens",
        *sync_fields,
        "error_status",
        "drift_status",
        "created_at",
        "updated_at",
    )

    class Media:
        css = {"all": ("motorhead_django/admin.css",)}

    def get_search_fields(self, request: HttpRequest) -> tuple[str, ...]:
        username = get_user_model().USERNAME_FIELD
        return ("session_id", f"owner__{username}", "messages__content")

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            new = (None, {"fields": ("session_id", "namespace", "owner", "metadata")})
            return (new, (_("Summary"), {"fields": ("context",)}))
        identity = (None, {"fields": ("session_id", "namespace", "remote_id", "owner", "metadata")})
        # Adding messages is a change: a view-only page shows the transcript alone.
        writable = self.has_change_permission(request, obj)
        conversation = ("transcript", "add_role", "add_content") if writable else ("transcript",)
        return (
            identity,
            (_("Conversation"), {"fields": conversation}),
            (_("Summary"), {"fields": ("context", "tokens")}),
            (
                _("Sync"),
                {"fields": (*self._sync_fields_for(request, obj), "created_at", "updated_at")},
            ),
            GOVERNANCE_FIELDSET,
        )

    def _sync_fields_for(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        """The sync fields; upstream error text only for those who may act on it (*change*)."""
        if self.has_change_permission(request, obj):
            return self.sync_fields
        hidden = {"last_error": "error_status", "drift": "drift_status"}
        return tuple(hidden.get(name, name) for name in self.sync_fields)

    def get_list_display(self, request: HttpRequest) -> Any:
        if self.has_change_permission(request):
            return self.list_display
        return tuple("error_status" if n == "short_error" else n for n in self.list_display)

    def get_inlines(self, request: HttpRequest, obj: Any = None) -> Any:
        # The summary timeline belongs to an existing session's page only.
        return (SummaryVersionInline,) if obj is not None else ()

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # The id and namespace name the session on the server: fixed once created.
        fixed = ("session_id", "namespace", "remote_id") if obj is not None else ()
        return fixed + tuple(self.readonly_fields) + self.hold_readonly(request)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: Any = None,
    ) -> HttpResponse:
        token = _page_request.set(request)
        try:
            response = super().changeform_view(request, object_id, form_url, extra_context)
            if isinstance(response, TemplateResponse):
                response.render()  # the transcript reads the request while rendering
            return response
        except MotorheadSessionExistsError:
            # Lost a race the form's uniqueness check could not see: the other one stands.
            self.message_user(
                request,
                _(
                    "A session with this id exists for this owner (created meanwhile), or holds "
                    "its server id in another namespace (Motorhead's ids are not namespaced); "
                    "nothing saved."
                ),
                messages.ERROR,
            )
            return HttpResponseRedirect(request.get_full_path())
        finally:
            _page_request.reset(token)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        # Says what a search looked in, next to the result count.
        searched = [_("session ids"), _("owners' usernames"), _("message content")]
        context = {"mh_searched": searched, **(extra_context or {})}
        return super().changelist_view(request, context)

    def _may_choose_owner(self, request: HttpRequest) -> bool:
        """Whether this user may add sessions for anyone: a superuser or a holder of
        *change* on sessions (who could give any session any owner anyway). Others, with
        *add* alone, add only their own: else they could take another user's id, with a
        context of their choosing planted in it."""
        return bool(request.user.is_superuser) or self.has_change_permission(request)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "owner" and not self._may_choose_owner(request):
            kwargs["queryset"] = get_user_model()._default_manager.filter(pk=request.user.pk or 0)
            kwargs["initial"] = request.user.pk
            kwargs["required"] = True  # not the ownerless scope either: anonymous callers' ids
            kwargs["help_text"] = _(
                "Sessions you add are yours (choosing another owner needs the change permission)."
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: ChatSession, form: Any, change: bool) -> None:
        if not change and obj.owner_id != request.user.pk and not self._may_choose_owner(request):
            # The form's choices already say so: a crafted POST still ends here.
            raise PermissionDenied
        if not change:
            # Through the core, which lets the database's constraints decide.
            extra = {} if obj.context is None else {"context": obj.context}
            created = memory.create_session(
                obj.session_id,
                namespace=obj.namespace,
                owner=obj.owner,
                metadata=obj.metadata,
                **extra,
            )
            for field in ChatSession._meta.concrete_fields:
                setattr(obj, field.attname, getattr(created, field.attname))
            obj._state.adding, obj._state.db = False, created._state.db
            return
        super().save_model(request, obj, form, change)
        if change and "context" in form.changed_data:
            memory.set_context(obj, obj.context)  # so the sync pushes it
        content = form.cleaned_data.get("add_content")
        # Only on an existing session's page, which saves only with *change*.
        if content and change:
            memory.append_messages(obj, [(form.cleaned_data["add_role"], content)])

    # -- changelist columns ------------------------------------------------------

    @admin.display(description=_("messages"), ordering="last_sequence")
    def message_count(self, obj: ChatSession) -> int:
        # Sequences run 1..N and are never reused: no COUNT per row.
        return obj.last_sequence

    @admin.display(description=_("session id"), ordering="session_id")
    def short_session_id(self, obj: ChatSession) -> str:
        return _shortened(obj.session_id)

    @admin.display(description=_("namespace"), ordering="namespace")
    def short_namespace(self, obj: ChatSession) -> str:
        return _shortened(obj.namespace)

    @admin.display(description=_("last activity"), ordering="updated_at")
    def last_activity(self, obj: ChatSession) -> str:
        return _ago(obj.updated_at)

    @admin.display(description=_("sync"), ordering="sync_state")
    def sync_badge(self, obj: ChatSession) -> str:
        return format_html(
            '<span class="mh-badge mh-{}">{}</span>', obj.sync_state, obj.get_sync_state_display()
        )

    @admin.display(description=_("last error"))
    def short_error(self, obj: ChatSession) -> str:
        return Truncator(obj.last_error).chars(80)

    @admin.display(description=_("last error"))
    def error_status(self, obj: ChatSession) -> str:
        # Without *change*: that there is an error, not the server's text.
        return str(_("yes (details need the change permission)")) if obj.last_error else ""

    @admin.display(description=_("drift"))
    def drift_status(self, obj: ChatSession) -> str:
        return str(_("yes (details need the change permission)")) if obj.drift else ""

    @admin.display(description=_("context"))
    def context_excerpt(self, obj: ChatSession) -> str:
        return Truncator(obj.context or "").chars(60)

    # -- the session page --------------------------------------------------------

    @admin.display(description=_("transcript"))
    def transcript(self, obj: ChatSession) -> str:
        request = _page_request.get()
        before = _sequence(request.GET.get("before")) if request is not None else None
        query = obj.messages.all() if before is None else obj.messages.filter(sequence__lt=before)
        newest = list(query.order_by("-sequence")[:TRANSCRIPT_LIMIT])
        window = motorhead_settings.WINDOW_SIZE + 1
        cut = obj.last_sequence - window  # after this sequence: on the server's window
        entries = [
            {
                "message": message,
                "kind": _ROLE_KINDS.get(message.role.lower(), "other"),
                "in_window": message.sequence > cut,
                "divider": message.sequence == cut + 1 and cut > 0,
            }
            for message in reversed(newest)
        ]
        first = newest[-1].sequence if newest else 1
        last = newest[0].sequence if newest else 0
        newer_before = last + 1 + TRANSCRIPT_LIMIT
        return render_to_string(
            "motorhead_django/admin/transcript.html",
            {
                "entries": entries,
                "older": max(0, first - 1),
                "newer": max(0, obj.last_sequence - last),
                "older_url": _page_url(request, first) if first > 1 else "",
                "newer_url": _page_url(
                    request, newer_before if newer_before <= obj.last_sequence else None
                ),
                "newest_url": _page_url(request, None),
                "window": window,
            },
        )

    # -- actions -------------------------------------------------------------------

    def _inline_keys(
        self, request: HttpRequest, queryset: QuerySet[ChatSession], task: Any
    ) -> list[int]:
        """The sessions to handle in this request; with a broker they are queued instead."""
        if not motorhead_settings.SYNC_ENABLED:
            self.message_user(
                request, _("Sync is not enabled: set MOTORHEAD['URL']."), messages.ERROR
            )
            return []
        keys = list(queryset.values_list("pk", flat=True))
        if tasks.runs_inline():
            return keys
        for pk in keys:
            tasks.schedule(task, pk)
        self.message_user(
            request,
            ngettext(
                "Queued %d session for a worker.", "Queued %d sessions for a worker.", len(keys)
            )
            % len(keys),
        )
        return []

    def _report_errors(self, request: HttpRequest, errors: dict[int, tuple[str, str]]) -> None:
        names = dict(ChatSession.objects.filter(pk__in=errors).values_list("pk", "session_id"))
        detailed = self.has_change_permission(request)
        for pk, (state, error) in errors.items():
            if not detailed:  # a delete-only user learns the outcome, not the server's text
                error = str(_("the server refused (details need the change permission)"))
            self.message_user(
                request,
                # Not led by the id: the admin capitalises a message's first letter.
                _("Session “%(session)s” is %(state)s: %(error)s")
                % {"session": names.get(pk, pk), "state": state, "error": error},
                messages.ERROR,
            )

    @admin.action(description=_("Push now"), permissions=["change"])
    def push_now(self, request: HttpRequest, queryset: QuerySet[ChatSession]) -> None:
        keys = self._inline_keys(request, queryset, tasks.push_session)
        if not keys:
            return
        results = sync.drain(keys)
        pushed = sum(result.pushed for result in results)
        self.message_user(
            request,
            ngettext(
                "Pushed %(messages)d message(s) of %(count)d session.",
                "Pushed %(messages)d message(s) of %(count)d sessions.",
                len(results),
            )
            % {"messages": pushed, "count": len(results)},
        )
        self._report_errors(request, {r.session_pk: (r.state, r.error) for r in results if r.error})

    @admin.action(description=_("Pull now"), permissions=["change"])
    def pull_now(self, request: HttpRequest, queryset: QuerySet[ChatSession]) -> None:
        keys = self._inline_keys(request, queryset, tasks.pull_session)
        if not keys:
            return
        results = [pull.pull_session(pk) for pk in keys]
        found = sum(result.added for result in results)
        summaries = sum(1 for result in results if result.summary is not None)
        self.message_user(
            request,
            ngettext(
                "Pulled %(count)d session: %(found)d message(s) found only on the server, "
                "%(summaries)d new summary version(s).",
                "Pulled %(count)d sessions: %(found)d message(s) found only on the server, "
                "%(summaries)d new summary version(s).",
                len(results),
            )
            % {"count": len(results), "found": found, "summaries": summaries},
        )
        self._report_errors(
            request, {r.session_pk: ("not pulled", r.error) for r in results if r.error}
        )

    def _sync_disabled(self, request: HttpRequest) -> bool:
        if motorhead_settings.SYNC_ENABLED:
            return False
        self.message_user(request, _("Sync is not enabled: set MOTORHEAD['URL']."), messages.ERROR)
        return True

    def _confirm_sessions(
        self, request: HttpRequest, queryset: QuerySet[ChatSession], action: str, what: list[str]
    ) -> TemplateResponse:
        total = queryset.aggregate(n=Sum("last_sequence"))["n"] or 0
        how = (
            _("It runs now, in this request.")
            if tasks.runs_inline()
            else _("One task per session is queued for the workers.")
        )
        return _confirmation_page(
            self,
            request,
            queryset.order_by("session_id"),
            action=action,
            title=_("Are you sure?"),
            consequences=[
                *what,
                ngettext(
                    "The selection holds %d message in all.",
                    "The selection holds %d messages in all.",
                    total,
                )
                % total,
                str(how),
            ],
        )

    @admin.action(
        description=_("Full resync: push the whole history into a fresh server session"),
        permissions=["change"],
    )
    def full_resync(
        self, request: HttpRequest, queryset: QuerySet[ChatSession]
    ) -> TemplateResponse | None:
        if self._sync_disabled(request):
            return None
        if not _confirmed(request):
            return self._confirm_sessions(
                request,
                queryset,
                "full_resync",
                [
                    str(
                        _(
                            "The server's copy of each session is deleted, then its whole local "
                            "history is marked pending and pushed again, paced so that every "
                            "message passes through the server's summariser."
                        )
                    ),
                    str(_("The local sessions and their messages are kept.")),
                ],
            )
        keys = self._inline_keys(request, queryset, tasks.resync_session)
        if not keys:
            return None
        results = [sync.resync_session(pk) for pk in keys]
        pushed = sum(result.pushed for result in results)
        self.message_user(
            request,
            ngettext(
                "Resynced %(count)d session: %(messages)d message(s) pushed, paced.",
                "Resynced %(count)d sessions: %(messages)d message(s) pushed, paced.",
                len(results),
            )
            % {"count": len(results), "messages": pushed},
        )
        self._report_errors(request, {r.session_pk: (r.state, r.error) for r in results if r.error})
        return None

    @admin.action(description=_("Delete on the server (keep here)"), permissions=["delete"])
    def delete_on_server(
        self, request: HttpRequest, queryset: QuerySet[ChatSession]
    ) -> TemplateResponse | None:
        if self._sync_disabled(request):
            return None
        if not _confirmed(request):
            return self._confirm_sessions(
                request,
                queryset,
                "delete_on_server",
                [
                    str(_("The server's copy of each session (messages and summary) is deleted.")),
                    str(
                        _(
                            "The local sessions and their messages are kept, marked drifted "
                            "until a full resync."
                        )
                    ),
                ],
            )
        keys = self._inline_keys(request, queryset, tasks.delete_on_server)
        if not keys:
            return None
        errors = {pk: error for pk in keys if (error := sync.delete_on_server(pk))}
        done = len(keys) - len(errors)
        self.message_user(
            request,
            ngettext(
                "Deleted %d session on the server; the local record is kept.",
                "Deleted %d sessions on the server; the local records are kept.",
                done,
            )
            % done,
        )
        self._report_errors(request, {pk: ("not deleted", error) for pk, error in errors.items()})
        return None

    @admin.action(
        description=_("Delete everywhere (here and on the server)"), permissions=["delete"]
    )
    def delete_everywhere(
        self, request: HttpRequest, queryset: QuerySet[ChatSession]
    ) -> TemplateResponse | None:
        if not _confirmed(request):
            remote = (
                _(
                    "their copy on the server too; until the server confirms, each stays as a "
                    "tombstone and the delete is retried"
                )
                if motorhead_settings.SYNC_ENABLED
                else _("sync is not enabled, so a server keeps any copy it has")
            )
            return self._confirm_sessions(
                request,
                queryset,
                "delete_everywhere",
                [
                    str(_("Each session and all its messages are deleted here, and %s.") % remote),
                    str(_("This cannot be undone.")),
                ],
            )
        queryset = self.without_held(request, queryset)
        keys = list(queryset.values_list("pk", flat=True))
        for session in queryset:
            memory.delete_session(session, remote=True)
        waiting = ChatSession.objects.filter(pk__in=keys).count()
        self.message_user(
            request,
            ngettext(
                "Deleted %(done)d of %(count)d session.",
                "Deleted %(done)d of %(count)d sessions.",
                len(keys),
            )
            % {"done": len(keys) - waiting, "count": len(keys)}
            + (
                " " + _("%d wait for the server to confirm (retried while it is down).") % waiting
                if waiting
                else ""
            ),
        )
        return None

    def delete_model(self, request: HttpRequest, obj: ChatSession) -> None:
        # Through the core: with DELETE_REMOTE (the default) the server's copy goes too.
        memory.delete_session(obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ChatSession]) -> None:
        for session in self.without_held(request, queryset):
            memory.delete_session(session)

    # -- the sync overview page -----------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        overview = path(
            "sync-overview/",
            self.admin_site.admin_view(self.sync_overview_view),
            name="motorhead_django_sync_overview",
        )
        return [overview, *super().get_urls()]

    def sync_overview_view(self, request: HttpRequest) -> HttpResponse:
        # admin_view only checks is_staff: the page itself needs *view*, the import *add*.
        if request.method == "POST":
            if not self.has_add_permission(request):
                raise PermissionDenied
            self._import(request)
            return HttpResponseRedirect(request.path)
        if not self.has_view_permission(request):
            raise PermissionDenied
        detailed = self.has_change_permission(request)
        counts = dict(
            ChatSession.objects.order_by().values_list("sync_state").annotate(n=Count("pk"))
        )
        oldest = ChatMessage.objects.pending().aggregate(oldest=Min("created_at"))["oldest"]
        failures = (
            ChatSession.objects.filter(
                sync_state__in=(SyncState.FAILED, SyncState.RETRYING, SyncState.IN_DOUBT)
            )
            .order_by("-updated_at")
            .only("pk", "session_id", "namespace", "sync_state", "last_error", "sync_attempts")[:20]
        )
        context = {
            **self.admin_site.each_context(request),
            "title": _("Motorhead sync overview"),
            "opts": self.model._meta,
            "states": [(state, label, counts.get(state, 0)) for state, label in SyncState.choices],
            "oldest_pending_age": timezone.now() - oldest if oldest else None,
            "oldest_pending_since": oldest,
            "state_chart": charts.bar_chart(
                charts.state_bars(counts, reverse("admin:motorhead_django_chatsession_changelist")),
                str(_("Sessions by sync state")),
            ),
            "lag_chart": charts.bar_chart(charts.lag_bars(), str(_("Pending messages by age"))),
            # Causes are read from error texts: only for those who may see them.
            "cause_chart": (
                charts.bar_chart(causes, str(_("Failures by cause")))
                if detailed and (causes := charts.cause_bars())
                else None
            ),
            "failures": failures,
            "health": upstream_health(),
            # Error text and the upstream's address, only for those who may act on them.
            "show_details": detailed,
            "can_import": self.has_add_permission(request),
            "upstream": motorhead_settings.URL if detailed else "",
        }
        return TemplateResponse(request, "admin/motorhead_django/sync_overview.html", context)

    def _import(self, request: HttpRequest) -> None:
        if not motorhead_settings.SYNC_ENABLED:
            self.message_user(
                request, _("Sync is not enabled: set MOTORHEAD['URL']."), messages.ERROR
            )
            return
        text = request.POST.get("namespaces", "").strip()
        namespaces = (
            [ns.strip() for ns in text.split(",")] if text else [motorhead_settings.NAMESPACE]
        )
        if not tasks.runs_inline():
            if tasks.schedule_import(namespaces):
                self.message_user(request, _("Queued an import from the server for a worker."))
            else:
                self.message_user(request, _("The broker refused the import."), messages.ERROR)
            return
        try:
            result = pull.import_sessions(namespaces)
        except MotorheadError as exc:
            detail = exc if self.has_change_permission(request) else _("the server refused")
            self.message_user(
                request, _("Could not list the server's sessions: %s") % detail, messages.ERROR
            )
            return
        self.message_user(
            request,
            _("Imported %(imported)d session(s) from the server; %(skipped)d were here already.")
            % {"imported": result.imported, "skipped": result.skipped},
        )
        problems = [problem for problem in [*result.refused, result.stopped] if problem]
        if problems and not self.has_change_permission(request):
            problems = [
                ngettext(
                    "%d problem (details need the change permission).",
                    "%d problems (details need the change permission).",
                    len(problems),
                )
                % len(problems)
            ]
        for problem in problems:
            self.message_user(request, _("Import: %s") % problem, messages.WARNING)


def _shortened(text: str) -> str:
    """``text`` cut to ID_DISPLAY_LENGTH characters, the whole of it on hover."""
    short = Truncator(text).chars(ID_DISPLAY_LENGTH)
    if short == text:
        return text
    return format_html('<span class="mh-id" title="{}">{}</span>', text, short)


def _ago(moment: Any) -> str:
    """ "3 minutes ago", with the exact time on hover."""
    if moment is None:
        return ""
    exact = timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S")
    words = _("%(time)s ago") % {"time": timesince(moment)}
    return format_html('<time datetime="{}" title="{}">{}</time>', moment.isoformat(), exact, words)


def _sequence(value: str | None) -> int | None:
    """A ``before`` parameter: a positive whole number, or None (the newest page)."""
    if value is None or not value.isdigit() or len(value) > 18:
        return None
    return int(value) or None


def _page_url(request: HttpRequest | None, before: int | None) -> str:
    """This page's URL with ``before`` set (None: removed), other parameters kept."""
    params = request.GET.copy() if request is not None else QueryDict(mutable=True)
    params.pop("before", None)
    if before is not None:
        params["before"] = str(before)
    return f"?{params.urlencode()}" if params else "?"


def upstream_health() -> dict[str, Any] | None:
    """The upstream server's answer to ``GET /``, cached: the page never waits on a slow server."""
    if not motorhead_settings.URL:
        return None
    cached = cache.get(_HEALTH_CACHE_KEY)
    if cached is not None and cached["url"] == motorhead_settings.URL:
        return cached
    client = MotorheadClient(
        motorhead_settings.URL,
        api_key=motorhead_settings.API_KEY,
        client_id=motorhead_settings.CLIENT_ID,
        connect_timeout=1.0,
        read_timeout=2.0,
        user_agent=motorhead_settings.USER_AGENT,
    )
    try:
        client.health()
        health = {"ok": True, "detail": _("answering")}
    except MotorheadError as exc:
        health = {"ok": False, "detail": redaction.error_text(exc)}
    finally:
        client.close()
    health.update(url=motorhead_settings.URL, checked_at=timezone.now())
    cache.set(_HEALTH_CACHE_KEY, health, HEALTH_CACHE_SECONDS)
    return health


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ("name", "owner", "namespace")

    def clean_namespace(self) -> str | None:
        # A namespace the memory core refuses would make the key answer 400 everywhere.
        namespace = self.cleaned_data.get("namespace")
        if namespace is not None:
            try:
                memory.validate_namespace(namespace)
            except MotorheadValidationError as exc:
                raise forms.ValidationError(list(exc.errors.values())) from None
        return namespace


@admin.register(ApiKey)
class ApiKeyAdmin(NulSafeChangelist):
    """Keys are issued here and revoked, never edited.

    The full key is shown once, in the body of the page answering the add form
    (:meth:`response_add`): never in a message (a cookie), the session or a log.
    """

    form = ApiKeyForm

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

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        # A key acts as its owner: only a superuser may issue one for someone else,
        # or *add* on keys would let a staff member act as any user (a superuser too).
        if db_field.name == "owner" and not request.user.is_superuser:
            kwargs["queryset"] = get_user_model()._default_manager.filter(pk=request.user.pk or 0)
            kwargs["initial"] = request.user.pk
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            obj.save(update_fields=["name"])
            return
        # Kept on the instance only until response_add renders it; never saved.
        obj._issued_key = obj.set_new_secret()  # type: ignore[attr-defined]
        obj.save()

    def response_add(
        self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        raw = obj.__dict__.pop("_issued_key", None)
        if raw is None:  # not issued by this request's save_model
            return super().response_add(request, obj, post_url_continue)
        opts = self.model._meta
        if "_addanother" in request.POST:
            next_url = reverse(f"admin:{opts.app_label}_{opts.model_name}_add")
        elif "_continue" in request.POST:
            next_url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
        else:
            next_url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        context = {
            **self.admin_site.each_context(request),
            "title": _("Copy the new API key"),
            "opts": opts,
            "original": obj,
            "key": raw,
            "next_url": next_url,
        }
        # admin_view already sends never_cache (no-store): the page is not kept by the browser.
        return TemplateResponse(request, "admin/motorhead_django/apikey/key_issued.html", context)

    @admin.action(description=_("Revoke the selected API keys"), permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> TemplateResponse | None:
        if not _confirmed(request):
            active = queryset.filter(revoked_at__isnull=True).count()
            return _confirmation_page(
                self,
                request,
                queryset.select_related("owner"),
                action="revoke",
                title=_("Are you sure?"),
                consequences=[
                    ngettext(
                        "%d active key stops working at once: every client using it gets 401.",
                        "%d active keys stop working at once: every client using them gets 401.",
                        active,
                    )
                    % active,
                    str(_("A revoked key cannot be restored; issue a new one instead.")),
                ],
            )
        count = 0
        for key in queryset.filter(revoked_at__isnull=True):
            key.revoke()
            count += 1
        self.message_user(
            request,
            ngettext("Revoked %d API key.", "Revoked %d API keys.", count) % count,
            messages.SUCCESS,
        )
        return None


# LangGraph checkpoints (motorhead_django.langgraph): written by the saver only, so
# read-only here; rows may be deleted by those with the delete permission.


class ReadOnlyCheckpointAdmin(NulSafeChangelist):
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    search_fields = ("=thread_id",)
    list_per_page = 50

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("size"))
    def size(self, obj: Any) -> str:
        data = obj.blob if isinstance(obj, LangGraphBlob | LangGraphWrite) else obj.checkpoint
        return ngettext("%d byte", "%d bytes", len(data)) % len(data)


@admin.register(LangGraphCheckpoint)
class LangGraphCheckpointAdmin(ReadOnlyCheckpointAdmin):
    list_display = ("checkpoint_id", "thread_id", "checkpoint_ns", "source", "step", "created_at")
    search_fields = ("=thread_id", "=checkpoint_id", "=run_id")  # type: ignore[assignment]
    readonly_fields = (
        "thread_id",
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
    list_display = ("thread_id", "checkpoint_ns", "channel", "version", "type", "size")
    readonly_fields = ("thread_id", "checkpoint_ns", "channel", "version", "type", "size")
    fields = readonly_fields


@admin.register(LangGraphWrite)
class LangGraphWriteAdmin(ReadOnlyCheckpointAdmin):
    list_display = ("thread_id", "checkpoint_id", "task_id", "idx", "channel", "type", "size")
    search_fields = ("=thread_id", "=checkpoint_id", "=task_id")  # type: ignore[assignment]
    readonly_fields = (
        "thread_id",
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
