"""Admin for sessions: browse them, read and extend conversations, see and drive the sync.

Read-mostly on purpose: history is never edited here (it is the record), new
messages and context changes go through the memory core like any other write,
and the sync actions go through :mod:`.actions` (inline when Celery runs
eagerly, through the broker or a background job otherwise). The actions are in
:mod:`.session_actions`, the overview page in :mod:`.overview`, holds, export
and erasure in :mod:`.governance`.
"""

from __future__ import annotations

import contextvars
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _

from motorhead_django import memory, search, summaries
from motorhead_django.conf import motorhead_settings
from motorhead_django.exceptions import MotorheadSessionExistsError, MotorheadValidationError
from motorhead_django.memory import MAX_JSON_DEPTH, json_too_deep
from motorhead_django.models import ChatSession, SummaryVersion

from .common import EstimatedCountPaginator, NulSafeChangelist, ago, shortened
from .governance import GOVERNANCE_FIELDSET, SessionGovernanceMixin
from .overview import SyncOverviewMixin
from .session_actions import SessionActions

# Newest messages shown on a session page; older ones are counted, not listed.
TRANSCRIPT_LIMIT = 500
# The session page's request, for the transcript's paging links (a read-only field gets no
# request; a context variable keeps concurrent requests apart).
_page_request: contextvars.ContextVar[HttpRequest | None] = contextvars.ContextVar(
    "motorhead_admin_page_request", default=None
)
# Roles styled alike in the transcript; any other role gets a neutral style.
_ROLE_KINDS = {"human": "human", "user": "human", "ai": "ai", "assistant": "ai", "system": "system"}


class BoundedJSONFormField(forms.JSONField):
    """Django's JSON form field, with the nesting bounded before ``json.loads`` recurses."""

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str) and json_too_deep(value):
            raise forms.ValidationError(_("Nested deeper than %d levels.") % MAX_JSON_DEPTH)
        return super().to_python(value)


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


@admin.register(ChatSession)
class ChatSessionAdmin(
    SessionGovernanceMixin, SessionActions, SyncOverviewMixin, NulSafeChangelist
):
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
        "delete_selected",  # Django's, behind the legal-hold check (session_actions)
        "push_now",
        "pull_now",
        "verify_now",
        "full_resync",
        "rehydrate_now",
        "delete_on_server",
        "delete_everywhere",
        "erase_everywhere",
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
        "summary_progress",
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

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[ChatSession], search_term: str
    ) -> tuple[QuerySet[ChatSession], bool]:
        # The same fields as get_search_fields, served by motorhead_django.search without the
        # message join (trigram-indexed on PostgreSQL): no duplicates to remove.
        username = get_user_model().USERNAME_FIELD
        return search.admin_sessions(queryset, search_term, username), False

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
            (_("Summary"), {"fields": ("context", "tokens", "summary_progress")}),
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
        return shortened(obj.session_id)

    @admin.display(description=_("namespace"), ordering="namespace")
    def short_namespace(self, obj: ChatSession) -> str:
        return shortened(obj.namespace)

    @admin.display(description=_("last activity"), ordering="updated_at")
    def last_activity(self, obj: ChatSession) -> str:
        return ago(obj.updated_at)

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

    @admin.display(description=_("summarised through"))
    def summary_progress(self, obj: ChatSession) -> str:
        """The built-in summariser's high-water mark, and how far it is behind the window."""
        if not motorhead_settings.BUILTIN_SUMMARIZER:
            return str(_("the built-in summariser is off"))
        due = summaries.pending_through(obj)
        if obj.summarized_through >= due:
            return str(_("message #%(through)d: up to date") % {"through": obj.summarized_through})
        return str(
            _("message #%(through)d: %(left)d message(s) left the window and wait to be summarised")
            % {"through": obj.summarized_through, "left": due - obj.summarized_through}
        )

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


def _sequence(value: str | None) -> int | None:
    """A ``before`` parameter: a positive whole number, or None (the newest page)."""
    if value is None or not (value.isascii() and value.isdigit()) or len(value) > 18:
        return None
    return int(value) or None


def _page_url(request: HttpRequest | None, before: int | None) -> str:
    """This page's URL with ``before`` set (None: removed), other parameters kept."""
    params = request.GET.copy() if request is not None else QueryDict(mutable=True)
    params.pop("before", None)
    if before is not None:
        params["before"] = str(before)
    return f"?{params.urlencode()}" if params else "?"
